//! Issue 11 through the command line, against a hub on the emulator: window schedules and
//! their grids, holiday calendars, `next` marking skipped fires, `start --for`, and bad input
//! for every new argument (named, nothing written).

use std::io::Write;

use serde_json::{json, Value};

use crate::common::{assert_fails, TestHub};

const WINDOW: &str = "Mon-Fri 19:00-07:00, Sat-Sun all-day";

fn add_window(hub: &TestHub, name: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "schedule",
        "add",
        name,
        "--asleep",
        WINDOW,
        "--tz",
        "Europe/Berlin",
        "--select",
        "tag:env=dev",
    ];
    args.extend_from_slice(extra);
    hub.json(&args)
}

fn file_with(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with(text)
}

/// A file under the target dir that is removed when dropped.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);
    impl TempPath {
        pub fn with(text: &str) -> TempPath {
            let dir =
                std::env::temp_dir().join(format!("curfew-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("input");
            let mut f = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut f, text.as_bytes()).unwrap();
            TempPath(path)
        }
        pub fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }
}

#[test]
fn a_window_schedule_is_one_schedule_that_stops_and_starts_and_shows_its_week() {
    let hub = TestHub::new();
    let added = add_window(&hub, "dev-nights", &[]);
    assert_eq!(added["asleep"], WINDOW);
    assert!(added.get("cron").is_none() && added.get("action").is_none());
    assert_eq!(
        added["crons"],
        json!({"stop": ["0 19 * * 1-5"], "start": ["0 7 * * 1-5"]})
    );
    let grid = added["grid"].as_array().unwrap();
    assert_eq!(grid[0], "#######............#####");
    assert_eq!(grid[5], "########################");
    let actions: Vec<&str> = added["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"stop") && actions.contains(&"start"),
        "{actions:?}"
    );

    // `next --schedule` lists both kinds, alternating.
    let next = hub.json(&[
        "next",
        "--schedule",
        "dev-nights",
        "--after",
        "2027-01-04T12:00:00Z",
        "--count",
        "4",
    ]);
    assert_eq!(
        next,
        json!([
            {"utc": "2027-01-04T18:00:00Z", "local": "2027-01-04T19:00:00+01:00", "action": "stop"},
            {"utc": "2027-01-05T06:00:00Z", "local": "2027-01-05T07:00:00+01:00", "action": "start"},
            {"utc": "2027-01-05T18:00:00Z", "local": "2027-01-05T19:00:00+01:00", "action": "stop"},
            {"utc": "2027-01-06T06:00:00Z", "local": "2027-01-06T07:00:00+01:00", "action": "start"}
        ])
    );
    // The table names the action and the window in one row.
    let out = hub.cmd().args(["schedule", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stop+start") && text.contains("asleep Mon-Fri 19:00-07:00"),
        "{text}"
    );
}

#[test]
fn a_grid_round_trips_and_fires_as_its_window_text() {
    let hub = TestHub::new();
    add_window(&hub, "from-text", &[]);
    let out = hub
        .cmd()
        .args(["schedule", "grid", "from-text"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let grid = String::from_utf8(out.stdout).unwrap();
    assert!(grid.starts_with("Mon #######............#####\n"), "{grid}");
    let file = file_with(&grid);
    hub.json(&[
        "schedule",
        "add",
        "from-grid",
        "--grid",
        file.as_str(),
        "--tz",
        "Europe/Berlin",
        "--select",
        "tag:env=dev",
    ]);
    let again = hub
        .cmd()
        .args(["schedule", "grid", "from-grid"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(again.stdout).unwrap(),
        grid,
        "the grid reads back the same"
    );
    let fires = |name: &str| {
        hub.json(&[
            "next",
            "--schedule",
            name,
            "--after",
            "2027-03-22T00:00:00Z",
            "--count",
            "20",
        ])
    };
    assert_eq!(
        hub.json(&[
            "next",
            "from-grid",
            "--after",
            "2027-03-22T00:00:00Z",
            "--count",
            "20"
        ]),
        fires("from-text"),
        "the name as the argument is --schedule"
    );
    assert_eq!(fires("from-grid"), fires("from-text"));
    // JSON rows read too, from stdin.
    let rows = hub.json(&["schedule", "grid", "from-text"]);
    hub.cmd()
        .args([
            "schedule",
            "add",
            "from-json",
            "--grid",
            "-",
            "--tz",
            "Europe/Berlin",
            "--select",
            "tag:env=dev",
        ])
        .write_stdin(rows.to_string())
        .assert()
        .success();
    assert_eq!(fires("from-json"), fires("from-text"));
}

#[test]
fn a_calendar_date_marks_both_fires_of_its_day_skipped_in_next() {
    let hub = TestHub::new();
    let cal = hub.json(&[
        "calendar",
        "add",
        "holidays",
        "--dates",
        "2027-01-06,2027-01-01",
    ]);
    assert_eq!(
        cal,
        json!({"name": "holidays", "dates": ["2027-01-01", "2027-01-06"]})
    );
    add_window(&hub, "dev-nights", &["--skip-calendar", "holidays"]);
    let next = hub.json(&[
        "next",
        "--schedule",
        "dev-nights",
        "--after",
        "2027-01-05T12:00:00Z",
        "--count",
        "2",
    ]);
    assert_eq!(
        next,
        json!([
            {"utc": "2027-01-05T18:00:00Z", "local": "2027-01-05T19:00:00+01:00", "action": "stop"},
            {"utc": "2027-01-06T06:00:00Z", "local": "2027-01-06T07:00:00+01:00", "action": "start", "skipped": "calendar holidays"},
            {"utc": "2027-01-06T18:00:00Z", "local": "2027-01-06T19:00:00+01:00", "action": "stop", "skipped": "calendar holidays"},
            {"utc": "2027-01-07T06:00:00Z", "local": "2027-01-07T07:00:00+01:00", "action": "start"}
        ])
    );
    // The --cron form reads the calendar too, and keeps the contract's keys.
    let cron = hub.json(&[
        "next",
        "--cron",
        "0 19 * * *",
        "--tz",
        "Europe/Berlin",
        "--skip-calendar",
        "holidays",
        "--after",
        "2027-01-05T12:00:00Z",
        "--count",
        "2",
    ]);
    assert_eq!(
        cron,
        json!([
            {"utc": "2027-01-05T18:00:00Z", "local": "2027-01-05T19:00:00+01:00"},
            {"utc": "2027-01-06T18:00:00Z", "local": "2027-01-06T19:00:00+01:00", "skipped": "calendar holidays"},
            {"utc": "2027-01-07T18:00:00Z", "local": "2027-01-07T19:00:00+01:00"}
        ])
    );
    // In use: refused, naming the schedule.
    assert_fails(
        hub.cmd().args(["calendar", "delete", "holidays"]),
        2,
        &["calendar \"holidays\" is used by schedule dev-nights"],
    );
    let listed = hub.json(&["calendar", "list"]);
    assert_eq!(listed[0]["used_by"], json!(["dev-nights"]));
    hub.json(&["schedule", "delete", "dev-nights"]);
    assert_eq!(
        hub.json(&["calendar", "delete", "holidays"]),
        json!({"deleted": "holidays"})
    );
    assert_eq!(hub.json(&["calendar", "list"]), json!([]));
}

#[test]
fn a_calendar_reads_dates_from_a_file_and_an_icalendar_file() {
    let hub = TestHub::new();
    let lines = file_with("# Christmas\n2027-12-24\n2027-12-25\n\n2027-12-26 # Boxing Day\n");
    let from_lines = hub.json(&["calendar", "add", "lines", "--file", lines.as_str()]);
    assert_eq!(
        from_lines["dates"],
        json!(["2027-12-24", "2027-12-25", "2027-12-26"])
    );
    let ics = file_with(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//curfew test//EN\r\n\
         BEGIN:VEVENT\r\nUID:1\r\nDTSTAMP:20270101T000000Z\r\nSUMMARY:Christmas\r\n\
         DTSTART;VALUE=DATE:20271224\r\nDTEND;VALUE=DATE:20271227\r\nEND:VEVENT\r\n\
         END:VCALENDAR\r\n",
    );
    let from_ics = hub.json(&["calendar", "add", "ics", "--file", ics.as_str()]);
    assert_eq!(from_ics["dates"], from_lines["dates"]);
    let shown = hub.json(&["calendar", "show", "ics"]);
    assert_eq!(shown["used_by"], json!([]));
}

#[test]
fn bad_input_for_every_new_argument_is_refused_naming_it_and_writes_nothing() {
    let hub = TestHub::new();
    let add = |extra: &[&str]| {
        let mut cmd = hub.cmd();
        cmd.args([
            "schedule",
            "add",
            "bad",
            "--tz",
            "Europe/Berlin",
            "--select",
            "tag:env=dev",
        ])
        .args(extra);
        cmd
    };
    assert_fails(
        &mut add(&["--asleep", "Mon-Fri 19:00-07:00, Mon 18:00-20:00"]),
        2,
        &["--asleep", "overlap at Mon 19:00"],
    );
    assert_fails(
        &mut add(&["--asleep", "Mon-Fry 19:00-07:00"]),
        2,
        &["--asleep", "unknown day \"Fry\""],
    );
    assert_fails(
        &mut add(&["--asleep", "daily all-day"]),
        2,
        &["--asleep", "never wakes"],
    );
    assert_fails(
        &mut add(&["--asleep", WINDOW, "--cron", "0 19 * * *"]),
        2,
        &["--asleep", "give one"],
    );
    assert_fails(
        &mut add(&["--asleep", WINDOW, "--action", "stop"]),
        2,
        &["--action", "both stops and starts"],
    );
    assert_fails(
        &mut add(&["--cron", "0 19 * * *", "--action", "stop", "--enforce"]),
        2,
        &["--enforce", "needs a sleep window"],
    );
    assert_fails(
        &mut add(&["--asleep", WINDOW, "--skip-calendar", "nope"]),
        2,
        &["--skip-calendar", "no calendar named \"nope\""],
    );
    assert_fails(
        &mut add(&["--asleep", WINDOW, "--awake-on-calendar", "nope"]),
        2,
        &["--awake-on-calendar", "no calendar named \"nope\""],
    );
    let short = file_with(&"#######.................\n".repeat(6));
    assert_fails(
        &mut add(&["--grid", short.as_str()]),
        2,
        &["--grid", "expected 7 rows", "found 6"],
    );
    let ragged = file_with(&format!(
        "{}{}",
        "#######.................\n".repeat(6),
        "####\n"
    ));
    assert_fails(
        &mut add(&["--grid", ragged.as_str()]),
        2,
        &["--grid", "row 7 (Sun) has 4 cells"],
    );
    assert_fails(
        hub.cmd().args(["calendar", "add", "x", "--dates", "12-24"]),
        2,
        &["--dates", "invalid date \"12-24\"", "with its year"],
    );
    assert_fails(
        hub.cmd()
            .args(["start", "--select", "tag:env=dev", "--for", "0m"]),
        2,
        &["--for", "more than zero and at most 7d"],
    );
    assert_fails(
        hub.cmd()
            .args(["start", "--select", "tag:env=dev", "--for", "8d"]),
        2,
        &["--for", "at most 7d"],
    );
    assert_fails(
        hub.cmd()
            .args(["start", "--select", "tag:env=dev", "--for", "soon"]),
        2,
        &["--for", "not a duration"],
    );
    assert_eq!(hub.json(&["schedule", "list"]), json!([]));
    assert_eq!(hub.json(&["calendar", "list"]), json!([]));
    assert_eq!(hub.json(&["override", "list"]), json!([]));
}

#[test]
fn start_for_wakes_now_keeps_awake_through_a_stop_and_the_stop_applies_once_the_override_ends() {
    let (hub, account) = TestHub::with_fleet(4, 1);
    let select = format!("account={account},tag:env=dev");
    hub.json(&["stop", "--select", &select, "--wait"]);
    hub.json(&[
        "schedule",
        "add",
        "dev-stop",
        "--cron",
        "0 19 * * *",
        "--tz",
        "UTC",
        "--action",
        "stop",
        "--select",
        &select,
    ]);
    let started = hub.json(&["start", "--select", &select, "--for", "3h", "--wait"]);
    assert_eq!(started["operation"]["status"], "SUCCEEDED");
    let woke = started["operation"]["counts"]["succeeded"]
        .as_u64()
        .unwrap();
    assert!(woke >= 3, "{started}");
    let overrides = hub.json(&["override", "list"]);
    assert_eq!(overrides.as_array().unwrap().len(), 1, "one override");
    assert_eq!(overrides[0]["selector"], select);
    // The schedule's stop now skips every woken target, kept awake.
    let kept = hub.json(&["trigger", "dev-stop", "--wait"]);
    assert_eq!(
        kept["operation"]["counts"]["skipped"].as_u64(),
        Some(woke),
        "{kept}"
    );
    // With the override ended, the next stop applies.
    let id = overrides[0]["id"].as_str().unwrap();
    hub.json(&["override", "remove", id]);
    let applied = hub.json(&["trigger", "dev-stop", "--wait"]);
    assert_eq!(
        applied["operation"]["counts"]["succeeded"].as_u64(),
        Some(woke),
        "{applied}"
    );
}

#[test]
fn replacing_a_calendar_moves_the_next_fire_of_the_schedules_that_use_it() {
    let hub = TestHub::new();
    let today = chrono::Utc::now().date_naive();
    let days: Vec<String> = (0..3)
        .map(|d| (today + chrono::Duration::days(d)).to_string())
        .collect();
    hub.json(&["calendar", "add", "busy", "--dates", &days.join(",")]);
    hub.json(&[
        "schedule",
        "add",
        "nights",
        "--asleep",
        "daily 19:00-07:00",
        "--tz",
        "UTC",
        "--select",
        "tag:env=dev",
        "--skip-calendar",
        "busy",
    ]);
    let next_fire = || hub.json(&["schedule", "show", "nights"])["next_fire"].clone();
    let after_three_days = format!("{}T07:00:00Z", today + chrono::Duration::days(3));
    assert_eq!(next_fire(), json!(after_three_days), "three days skipped");
    let replaced = hub.json(&[
        "calendar",
        "add",
        "busy",
        "--dates",
        "2030-01-01",
        "--replace",
    ]);
    assert_eq!(replaced["dates"], json!(["2030-01-01"]));
    let moved = next_fire();
    assert!(
        moved.as_str().unwrap() < after_three_days.as_str(),
        "{moved}"
    );
    assert_eq!(
        moved,
        hub.json(&["next", "nights", "--count", "1"])[0]["utc"]
    );
    assert_fails(
        hub.cmd()
            .args(["calendar", "add", "busy", "--dates", "2030-01-02"]),
        1,
        &["already exists", "--replace"],
    );
}
