//! A schedule's coming week as a 7x24 grid in its own zone: which local hours its targets
//! are asleep, drawn from the real stop and start fires (so DST days come out as they are).

use chrono::{DateTime, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use curfew_core::calendar::Calendars;
use curfew_core::decision::Action;
use curfew_core::schedule::{Fire, Schedule, When};
use serde::Serialize;

/// One local hour of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hour {
    /// Stopped by the last fire before the middle of the hour.
    Asleep,
    /// Started (or never stopped) by the last fire before it.
    Awake,
    /// No fire of these schedules before it: the state is whatever it was.
    Unknown,
    /// This local hour does not exist that day (the clocks jump over it).
    Skipped,
}

/// One local day: 24 hours from midnight.
#[derive(Clone, Debug, Serialize)]
pub struct Day {
    /// The local date.
    pub date: NaiveDate,
    /// Hours 0 to 23.
    pub hours: Vec<Hour>,
    /// Why the day is not an ordinary one of these schedules, if it is not: `skip date`,
    /// `calendar NAME` (a calendar it skips) or `awake on calendar NAME`, with the schedule's
    /// name first when the grid draws several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Seven local days from today.
#[derive(Clone, Debug, Serialize)]
pub struct WeekGrid {
    /// The zone the days and hours are in.
    pub zone: String,
    /// The days, today first.
    pub days: Vec<Day>,
}

/// The week from the local midnight of `now` in `zone`, with each hour's state after the fires
/// of `schedules` (a stop and the starts that wake the same selector, typically). An hour's
/// state is taken at its middle, so a fire at 19:00 makes the 19:00 hour asleep. In a repeated
/// hour (the clocks go back) the first occurrence counts, as cron's fixed-time rule does.
pub fn week(
    schedules: &[&Schedule],
    calendars: &Calendars,
    zone: Tz,
    now: DateTime<Utc>,
) -> WeekGrid {
    let today = now.with_timezone(&zone).date_naive();
    // A week and a day of fires before the grid, so its first hours know their state.
    let from = now - Duration::days(8);
    let until = now + Duration::days(8);
    let mut fires: Vec<(DateTime<Utc>, Action)> = schedules
        .iter()
        .filter(|s| s.enabled)
        .flat_map(|s| {
            s.fires_after(from, calendars)
                .take_while(move |f| f.time.utc < until)
                .map(|f| (f.time.utc, f.action))
        })
        .collect();
    fires.sort_by_key(|(t, _)| *t);
    let days = (0..7)
        .map(|d| {
            let date = today + Duration::days(d);
            let hours = (0..24)
                .map(|h| {
                    let Some(middle) = date.and_hms_opt(h, 30, 0) else {
                        return Hour::Skipped;
                    };
                    let instant = match zone.from_local_datetime(&middle) {
                        LocalResult::Single(t) => t,
                        LocalResult::Ambiguous(first, _) => first,
                        LocalResult::None => return Hour::Skipped,
                    };
                    let instant = instant.with_timezone(&Utc);
                    match fires.iter().rev().find(|(t, _)| *t <= instant) {
                        Some((_, Action::Stop)) => Hour::Asleep,
                        Some((_, Action::Start)) => Hour::Awake,
                        None => Hour::Unknown,
                    }
                })
                .collect();
            let note = schedules.iter().filter(|s| s.enabled).find_map(|s| {
                let skip = s.day_skip(date, calendars)?;
                Some(if schedules.len() > 1 {
                    format!("{}: {skip}", s.name)
                } else {
                    skip.to_string()
                })
            });
            Day { date, hours, note }
        })
        .collect();
    WeekGrid {
        zone: zone.name().to_string(),
        days,
    }
}

/// The next `count` fires of `schedule` after `after` that happen (none when it is disabled).
pub fn upcoming(
    schedule: &Schedule,
    after: DateTime<Utc>,
    count: usize,
    calendars: &Calendars,
) -> Vec<Fire> {
    if !schedule.enabled {
        return Vec::new();
    }
    schedule.fires_after(after, calendars).take(count).collect()
}

/// The schedules that make up `schedule`'s week: a window schedule alone (it stops and
/// starts); a cron schedule with the enabled cron schedules of the same selector and the other
/// action (its stop's start, or its start's stop).
pub fn partners<'a>(schedule: &'a Schedule, all: &'a [Schedule]) -> Vec<&'a Schedule> {
    let When::Cron { action, .. } = &schedule.when else {
        return vec![schedule];
    };
    let other = match action {
        Action::Stop => Action::Start,
        Action::Start => Action::Stop,
    };
    std::iter::once(schedule)
        .chain(all.iter().filter(|s| {
            s.name != schedule.name
                && matches!(&s.when, When::Cron { action, .. } if *action == other)
                && s.selector.as_str() == schedule.selector.as_str()
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curfew_core::calendar::Calendar;

    fn schedule(name: &str, cron: &str, action: &str) -> Schedule {
        // From JSON, as the table stores it: fields added later take their defaults.
        serde_json::from_value(serde_json::json!({
            "name": name, "cron": cron, "tz": "Europe/Berlin", "action": action,
            "selector": "tag:env=dev", "enabled": true,
        }))
        .unwrap()
    }

    fn row(day: &Day) -> String {
        day.hours
            .iter()
            .map(|h| match h {
                Hour::Asleep => '#',
                Hour::Awake => '.',
                Hour::Unknown => '?',
                Hour::Skipped => '-',
            })
            .collect()
    }

    #[test]
    fn weekday_nights_are_asleep_from_the_stop_until_the_start() {
        let stop = schedule("stop", "0 19 * * 1-5", "stop");
        let start = schedule("start", "0 7 * * 1-5", "start");
        // Monday 2027-01-04, 10:00 in Berlin.
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 9, 0, 0).unwrap();
        let grid = week(
            &[&stop, &start],
            &Calendars::none(),
            chrono_tz::Europe::Berlin,
            now,
        );
        assert_eq!(grid.days[0].date.to_string(), "2027-01-04");
        // Monday: asleep since Friday's stop until 07:00, awake until 19:00.
        assert_eq!(row(&grid.days[0]), "#######............#####");
        // Saturday and Sunday: asleep all day.
        assert_eq!(row(&grid.days[5]), "#".repeat(24));
        assert_eq!(row(&grid.days[6]), "#".repeat(24));
    }

    #[test]
    fn a_window_schedule_draws_its_own_week() {
        let window: Schedule = serde_json::from_value(serde_json::json!({
            "name": "nights", "asleep": "Mon-Fri 19:00-07:00, Sat-Sun all-day",
            "tz": "Europe/Berlin", "selector": "tag:env=dev", "enabled": true,
        }))
        .unwrap();
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 9, 0, 0).unwrap();
        assert_eq!(partners(&window, std::slice::from_ref(&window)).len(), 1);
        let grid = week(
            &[&window],
            &Calendars::none(),
            chrono_tz::Europe::Berlin,
            now,
        );
        assert_eq!(row(&grid.days[0]), "#######............#####");
        assert_eq!(row(&grid.days[6]), "#".repeat(24));
    }

    #[test]
    fn days_a_calendar_skips_or_keeps_awake_carry_a_note() {
        let window: Schedule = serde_json::from_value(serde_json::json!({
            "name": "nights", "asleep": "Mon-Fri 19:00-07:00, Sat-Sun all-day",
            "tz": "Europe/Berlin", "selector": "tag:env=dev", "enabled": true,
            "skip_calendars": ["holidays"], "awake_calendars": ["release"],
            "skip_dates": ["2027-01-08"],
        }))
        .unwrap();
        let mut calendars = Calendars::none();
        calendars.insert(Calendar::new("holidays", &["2027-01-06"]).unwrap());
        calendars.insert(Calendar::new("release", &["2027-01-07"]).unwrap());
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 9, 0, 0).unwrap();
        let grid = week(&[&window], &calendars, chrono_tz::Europe::Berlin, now);
        let notes: Vec<Option<&str>> = grid.days.iter().map(|d| d.note.as_deref()).collect();
        assert_eq!(
            notes,
            [
                None,
                None,
                Some("calendar holidays"),
                Some("awake on calendar release"),
                Some("skip date"),
                None,
                None
            ]
        );
        assert_eq!(
            row(&grid.days[3]),
            ".".repeat(24),
            "awake all day on the release date"
        );
    }

    #[test]
    fn the_hour_the_clocks_skip_is_drawn_as_skipped() {
        let stop = schedule("stop", "0 19 * * *", "stop");
        let start = schedule("start", "0 7 * * *", "start");
        // Berlin springs forward on Sunday 2027-03-28 at 02:00.
        let now = Utc.with_ymd_and_hms(2027, 3, 28, 0, 0, 0).unwrap();
        let grid = week(
            &[&stop, &start],
            &Calendars::none(),
            chrono_tz::Europe::Berlin,
            now,
        );
        assert_eq!(row(&grid.days[0]), "##-####............#####");
    }

    #[test]
    fn a_stop_alone_leaves_the_hours_before_its_first_fire_unknown() {
        let stop = schedule("stop", "0 19 10 1 *", "stop");
        let now = Utc.with_ymd_and_hms(2027, 1, 10, 0, 0, 0).unwrap();
        let grid = week(&[&stop], &Calendars::none(), chrono_tz::Europe::Berlin, now);
        assert_eq!(
            row(&grid.days[0]),
            format!("{}{}", "?".repeat(19), "#".repeat(5))
        );
    }

    #[test]
    fn partners_share_the_selector_and_take_the_other_action() {
        let all = vec![
            schedule("stop", "0 19 * * *", "stop"),
            schedule("start", "0 7 * * *", "start"),
            schedule("other-stop", "0 20 * * *", "stop"),
        ];
        let names: Vec<&str> = partners(&all[0], &all)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["stop", "start"]);
    }
}
