//! `curfew next`: the schedule preview, in JSON and tables, across daylight-saving changes.

use crate::common::{assert_fails, curfew};
use serde_json::{json, Value};

fn next(cron: &str, tz: &str, after: &str, count: u32) -> Value {
    let out = curfew()
        .args(["next", "--cron", cron, "--tz", tz, "--after", after])
        .args(["--count", &count.to_string(), "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn berlin_spring_forward_fires_a_skipped_time_once_right_after_the_jump() {
    assert_eq!(
        next("30 2 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z", 2),
        json!([
            {"utc": "2027-03-28T01:00:00Z", "local": "2027-03-28T03:00:00+02:00"},
            {"utc": "2027-03-29T00:30:00Z", "local": "2027-03-29T02:30:00+02:00"},
        ])
    );
}

#[test]
fn berlin_fall_back_fires_a_repeated_time_once_at_its_first_occurrence() {
    assert_eq!(
        next("30 2 * * *", "Europe/Berlin", "2027-10-30T12:00:00Z", 2),
        json!([
            {"utc": "2027-10-31T00:30:00Z", "local": "2027-10-31T02:30:00+02:00"},
            {"utc": "2027-11-01T01:30:00Z", "local": "2027-11-01T02:30:00+01:00"},
        ])
    );
}

#[test]
fn a_real_time_schedule_keeps_its_interval_through_the_berlin_fall_back() {
    assert_eq!(
        next("*/30 * * * *", "Europe/Berlin", "2027-10-31T00:00:00Z", 4),
        json!([
            {"utc": "2027-10-31T00:30:00Z", "local": "2027-10-31T02:30:00+02:00"},
            {"utc": "2027-10-31T01:00:00Z", "local": "2027-10-31T02:00:00+01:00"},
            {"utc": "2027-10-31T01:30:00Z", "local": "2027-10-31T02:30:00+01:00"},
            {"utc": "2027-10-31T02:00:00Z", "local": "2027-10-31T03:00:00+01:00"},
        ])
    );
}

#[test]
fn lord_howe_half_hour_shifts_follow_the_same_rules() {
    // 2027-10-03 02:00 +10:30 becomes 02:30 +11:00: 02:15 fires at 02:30.
    assert_eq!(
        next(
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2027-10-02T00:00:00Z",
            1
        ),
        json!([{"utc": "2027-10-02T15:30:00Z", "local": "2027-10-03T02:30:00+11:00"}])
    );
    // 2027-04-04 02:00 +11:00 becomes 01:30 +10:30: 01:45 fires once, the first time.
    assert_eq!(
        next(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2027-04-03T00:00:00Z",
            2
        ),
        json!([
            {"utc": "2027-04-03T14:45:00Z", "local": "2027-04-04T01:45:00+11:00"},
            {"utc": "2027-04-04T15:15:00Z", "local": "2027-04-05T01:45:00+10:30"},
        ])
    );
}

#[test]
fn last_day_and_nth_weekday_and_quarter_hour_zones_work() {
    assert_eq!(
        next("0 22 L * *", "Europe/Berlin", "2027-01-01T00:00:00Z", 2),
        json!([
            {"utc": "2027-01-31T21:00:00Z", "local": "2027-01-31T22:00:00+01:00"},
            {"utc": "2027-02-28T21:00:00Z", "local": "2027-02-28T22:00:00+01:00"},
        ])
    );
    assert_eq!(
        next("0 9 * * 1#1", "Europe/Berlin", "2027-01-01T00:00:00Z", 1),
        json!([{"utc": "2027-01-04T08:00:00Z", "local": "2027-01-04T09:00:00+01:00"}])
    );
    assert_eq!(
        next("0 9 * * *", "Asia/Kathmandu", "2027-06-01T00:00:00Z", 1),
        json!([{"utc": "2027-06-01T03:15:00Z", "local": "2027-06-01T09:00:00+05:45"}])
    );
}

#[test]
fn fire_times_are_strictly_after_the_given_instant() {
    let fires = next("0 * * * *", "UTC", "2027-01-01T10:00:00Z", 1);
    assert_eq!(fires[0]["utc"], "2027-01-01T11:00:00Z");
    assert_eq!(fires[0]["local"], "2027-01-01T11:00:00+00:00");
}

#[test]
fn the_count_flag_sets_how_many_fire_times_and_defaults_to_five() {
    assert_eq!(
        next("0 * * * *", "UTC", "2027-01-01T00:00:00Z", 7)
            .as_array()
            .unwrap()
            .len(),
        7
    );
    let out = curfew()
        .args([
            "next", "--cron", "@daily", "--tz", "UTC", "--output", "json",
        ])
        .output()
        .unwrap();
    let fires: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fires.as_array().unwrap().len(), 5);
}

#[test]
fn the_table_shows_utc_and_local_times_for_people() {
    curfew()
        .args(["next", "--cron", "30 2 * * *", "--tz", "Europe/Berlin"])
        .args(["--after", "2027-03-27T12:00:00Z", "--count", "1"])
        .assert()
        .success()
        .stdout(predicates::str::contains("2027-03-28T01:00:00Z"))
        .stdout(predicates::str::contains("2027-03-28T03:00:00+02:00"))
        .stdout(predicates::str::contains("Sun 03:00 CEST"))
        .stdout(predicates::str::contains("local (Europe/Berlin)"));
}

#[test]
fn a_bad_cron_expression_names_the_cron_flag() {
    for cron in [
        "61 * * * *",
        "0 9 * *",
        "0 0 30 2 *",
        "* * * * * *",
        "nonsense",
    ] {
        assert_fails(
            curfew().args(["next", "--cron", cron, "--tz", "UTC"]),
            2,
            &["--cron"],
        );
    }
}

#[test]
fn an_unknown_zone_names_the_tz_flag_and_the_zone() {
    assert_fails(
        curfew().args(["next", "--cron", "0 9 * * *", "--tz", "Mars/Olympus"]),
        2,
        &["--tz", "Mars/Olympus"],
    );
}

#[test]
fn a_bad_after_or_count_names_its_flag() {
    assert_fails(
        curfew().args([
            "next",
            "--cron",
            "0 9 * * *",
            "--tz",
            "UTC",
            "--after",
            "tomorrow",
        ]),
        2,
        &["--after", "tomorrow"],
    );
    assert_fails(
        curfew().args(["next", "--cron", "0 9 * * *", "--tz", "UTC", "--count", "0"]),
        2,
        &["--count"],
    );
    assert_fails(
        curfew().args([
            "next",
            "--cron",
            "0 9 * * *",
            "--tz",
            "UTC",
            "--count",
            "many",
        ]),
        2,
        &["--count"],
    );
}

#[test]
fn a_missing_flag_is_named() {
    assert_fails(curfew().args(["next", "--tz", "UTC"]), 2, &["--cron"]);
    assert_fails(curfew().args(["next", "--cron", "@daily"]), 2, &["--tz"]);
}

/// `curfew next ... --count 1000 | head -1`: more output than a pipe holds, and a reader that
/// has gone before any of it is written.
fn next_into_a_closed_pipe(output: &str) -> std::process::Output {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("curfew"))
        .args(["next", "--cron", "* * * * *", "--tz", "UTC"])
        .args(["--after", "2027-01-01T00:00:00Z", "--count", "1000"])
        .args(["--output", output])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_reader_that_closes_stdout_early_ends_the_command_quietly() {
    for output in ["table", "json"] {
        let out = next_into_a_closed_pipe(output);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{output}: {stderr}");
        assert!(stderr.is_empty(), "{output}: {stderr}");
    }
}
