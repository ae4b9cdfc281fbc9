use chrono::TimeZone;
use proptest::prelude::*;

use super::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn reason(text: &str) -> String {
    match Week::parse(text).unwrap_err() {
        WindowError::Text { reason, .. } => reason,
        other => panic!("{other}"),
    }
}

#[test]
fn weeknights_and_the_weekend_are_the_classic_cron_pair() {
    let week = Week::parse("Mon-Fri 19:00-07:00, Sat-Sun all-day").unwrap();
    assert_eq!(week.asleep_minutes(), 5 * 12 * 60 + 2 * DAY);
    assert_eq!(
        week.edge_crons(),
        (
            vec!["0 19 * * 1-5".to_string()],
            vec!["0 7 * * 1-5".to_string()]
        )
    );
}

#[test]
fn a_span_across_the_weeks_end_wraps_to_monday() {
    let week = Week::parse("Sun 22:00-Mon 06:00").unwrap();
    assert_eq!(
        week.edge_crons(),
        (
            vec!["0 22 * * 0".to_string()],
            vec!["0 6 * * 1".to_string()]
        )
    );
    assert!(week.asleep(WEEK - 1));
    assert!(week.asleep(0));
    assert!(!week.asleep(6 * 60));
}

#[test]
fn a_wrapping_day_range_covers_both_ends_of_each_day_joining_them_across_midnight() {
    let week = Week::parse("Fri-Mon 20:00-06:00").unwrap();
    // Friday 00:00-06:00 on its own, then every night from Friday 20:00 to Tuesday 00:00.
    let (stops, starts) = week.edge_crons();
    assert_eq!(stops, ["0 0 * * 5", "0 20 * * 0,1,5,6"]);
    assert_eq!(starts, ["0 0 * * 2", "0 6 * * 0,1,5,6"]);
}

#[test]
fn overlapping_terms_are_refused_naming_both_and_the_minute() {
    assert_eq!(
        reason("Mon-Fri 19:00-07:00, Mon 18:00-20:00"),
        "\"Mon-Fri 19:00-07:00\" and \"Mon 18:00-20:00\" overlap at Mon 19:00"
    );
}

#[test]
fn malformed_terms_are_refused_naming_the_part() {
    assert!(reason("Mon-Fry 19:00-07:00").contains("unknown day \"Fry\""));
    assert!(reason("Mon-Fri 19:00-25:00").contains("invalid time \"25:00\""));
    assert!(reason("Mon-Fri 7pm-7am").contains("invalid time"));
    assert!(reason("Mon-Fri").contains("needs days and times"));
    assert!(reason("Mon 09:00-09:00").contains("empty"));
    assert!(reason("Mon-Fri 19:00-07:00,").contains("term 2 is empty"));
    assert!(reason("").contains("names no asleep time"));
    assert_eq!(
        Week::parse("daily all-day").unwrap_err(),
        WindowError::NeverAwake
    );
}

#[test]
fn day_names_read_in_any_case_and_in_full() {
    assert_eq!(
        Week::parse("monday-FRIDAY 19:00-07:00, weekends all-day").unwrap(),
        Week::parse("Mon-Fri 19:00-07:00, Sat-Sun all-day").unwrap()
    );
}

#[test]
fn a_grid_reads_as_the_same_week_as_its_window_text() {
    let night = "#######............#####";
    let grid = format!(
        "Mon {night}\nTue {night}\nWed {night}\nThu {night}\nFri {night}\nSat {all}\nSun {all}\n",
        all = "#".repeat(24)
    );
    assert_eq!(
        Week::parse_grid(&grid).unwrap(),
        Week::parse("Mon-Fri 19:00-07:00, Sat-Sun all-day").unwrap()
    );
    let json =
        serde_json::to_string(&Week::parse_grid(&grid).unwrap().grid_rows().unwrap()).unwrap();
    assert_eq!(
        Week::parse_grid(&json).unwrap(),
        Week::parse_grid(&grid).unwrap()
    );
}

#[test]
fn a_grid_of_the_wrong_shape_is_refused_naming_the_row() {
    let row = "#".repeat(7) + &".".repeat(17);
    let six = vec![row.clone(); 6].join("\n");
    assert_eq!(
        Week::parse_grid(&six).unwrap_err(),
        WindowError::Grid(GridError::Rows(6))
    );
    let mut rows = vec![row.clone(); 7];
    rows[3] = "#".repeat(23);
    assert_eq!(
        Week::parse_grid(&rows.join("\n")).unwrap_err().to_string(),
        "invalid grid: row 4 (Thu) has 23 cells, expected 24"
    );
    rows[3] = row.replace('.', "x");
    assert!(Week::parse_grid(&rows.join("\n"))
        .unwrap_err()
        .to_string()
        .contains("row 4 (Thu) has \"x\""));
    let labelled: String = DAYS.iter().rev().map(|d| format!("{d} {row}\n")).collect();
    assert!(Week::parse_grid(&labelled)
        .unwrap_err()
        .to_string()
        .contains("row 1 is labelled \"Sun\", expected Mon"));
    assert!(matches!(
        Week::parse_grid("[1, 2]").unwrap_err(),
        WindowError::Grid(GridError::Json(_))
    ));
}

#[test]
fn a_quarter_hour_edge_cannot_be_drawn_as_a_grid() {
    let week = Week::parse("Mon-Fri 19:15-07:00").unwrap();
    assert_eq!(
        week.to_grid().unwrap_err(),
        GridError::Resolution("Mon 19:15".into())
    );
    let half = Week::parse("Mon-Fri 19:30-07:00").unwrap();
    assert_eq!(half.grid_rows().unwrap()[0].len(), 48);
}

/// The window's fires and the equivalent cron pair's, merged, from `after` for `count` fires.
fn both(window: &Window, stop: &str, start: &str, after: DateTime<Utc>, count: usize) {
    let stop = CronSpec::parse(stop, window.zone().name()).unwrap();
    let start = CronSpec::parse(start, window.zone().name()).unwrap();
    let mut pair: Vec<(DateTime<Utc>, Action)> = stop
        .upcoming(after, count)
        .into_iter()
        .map(|f| (f.utc, Action::Stop))
        .chain(
            start
                .upcoming(after, count)
                .into_iter()
                .map(|f| (f.utc, Action::Start)),
        )
        .collect();
    pair.sort_by_key(|(t, a)| (*t, a.as_str()));
    pair.truncate(count);
    let mut cursor = after;
    let mut fires = Vec::new();
    while fires.len() < count {
        let (fire, action) = window.next_edge_after(cursor).unwrap();
        fires.push((fire.utc, action));
        cursor = fire.utc;
    }
    assert_eq!(fires, pair);
}

#[test]
fn a_window_fires_as_its_cron_pair_across_both_dst_changes() {
    // Berlin springs forward on 2027-03-28 (02:00 -> 03:00) and falls back on 2027-10-31.
    let window = Window::new(
        Week::parse("Mon-Fri 19:00-07:00, Sat-Sun all-day").unwrap(),
        "Europe/Berlin",
    )
    .unwrap();
    both(
        &window,
        "0 19 * * 1-5",
        "0 7 * * 1-5",
        utc(2027, 3, 20, 0, 0),
        20,
    );
    both(
        &window,
        "0 19 * * 1-5",
        "0 7 * * 1-5",
        utc(2027, 10, 25, 0, 0),
        20,
    );
    // Edges inside the skipped and the repeated hour: 02:30 stops, 05:00 starts.
    let early = Window::new(Week::parse("daily 02:30-05:00").unwrap(), "Europe/Berlin").unwrap();
    both(&early, "30 2 * * *", "0 5 * * *", utc(2027, 3, 26, 0, 0), 8);
    both(
        &early,
        "30 2 * * *",
        "0 5 * * *",
        utc(2027, 10, 29, 0, 0),
        8,
    );
    // A 30-minute shift (Lord Howe) and a 45-minute offset (Chatham).
    for zone in ["Australia/Lord_Howe", "Pacific/Chatham"] {
        let w = Window::new(Week::parse("daily 01:45-02:15").unwrap(), zone).unwrap();
        both(&w, "45 1 * * *", "15 2 * * *", utc(2027, 3, 30, 0, 0), 16);
        both(&w, "45 1 * * *", "15 2 * * *", utc(2027, 9, 28, 0, 0), 16);
    }
}

#[test]
fn a_stop_and_a_start_swallowed_by_the_same_skipped_hour_fire_once_as_the_week_says() {
    // 02:10 stop and 02:40 start both land on 03:00 on spring-forward day: awake then.
    let w = Window::new(Week::parse("daily 02:10-02:40").unwrap(), "Europe/Berlin").unwrap();
    let (fire, action) = w.next_edge_after(utc(2027, 3, 27, 12, 0)).unwrap();
    assert_eq!(fire.utc, utc(2027, 3, 28, 1, 0));
    assert_eq!(action, Action::Start);
    let (next, _) = w.next_edge_after(fire.utc).unwrap();
    assert_eq!(
        next,
        CronSpec::parse("10 2 * * *", "Europe/Berlin")
            .unwrap()
            .next_after(fire.utc)
            .unwrap()
    );
}

fn half_hour_weeks() -> impl Strategy<Value = Week> {
    proptest::collection::vec(any::<bool>(), 7 * 48)
        .prop_filter("has both states", |cells| {
            cells.iter().any(|c| *c) && !cells.iter().all(|c| *c)
        })
        .prop_map(|cells| {
            Week::from_minutes(
                cells
                    .iter()
                    .flat_map(|c| std::iter::repeat_n(*c, 30))
                    .collect(),
            )
            .unwrap()
        })
}

proptest! {
    #[test]
    fn window_text_reads_back_to_the_same_week(week in half_hour_weeks()) {
        prop_assert_eq!(Week::parse(&week.to_text()).unwrap(), week);
    }

    #[test]
    fn a_grid_reads_back_to_the_same_week(week in half_hour_weeks()) {
        prop_assert_eq!(Week::parse_grid(&week.to_grid().unwrap()).unwrap(), week);
    }
}
