//! When cron schedules fire in real time zones, above all across daylight-saving changes.

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use curfew_core::cron::{CronError, CronSpec, FireTime};
use proptest::prelude::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn spec(expression: &str, zone: &str) -> CronSpec {
    CronSpec::parse(expression, zone).unwrap()
}

fn instants(fires: &[FireTime]) -> Vec<DateTime<Utc>> {
    fires.iter().map(|fire| fire.utc).collect()
}

fn locals(fires: &[FireTime]) -> Vec<String> {
    fires.iter().map(|fire| fire.local.to_rfc3339()).collect()
}

fn gaps(fires: &[FireTime]) -> Vec<TimeDelta> {
    fires.windows(2).map(|w| w[1].utc - w[0].utc).collect()
}

/// The fires of a whole local day, from its first to its last instant.
fn fires_on_local_day(spec: &CronSpec, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<FireTime> {
    spec.fires_between(start - TimeDelta::seconds(1), end - TimeDelta::seconds(1))
}

// ---- Europe/Berlin, fixed time ----

#[test]
fn a_time_skipped_by_spring_forward_fires_once_right_after_the_jump() {
    let fires = spec("30 2 * * *", "Europe/Berlin")
        .fires_between(utc(2027, 3, 27, 12, 0), utc(2027, 3, 28, 12, 0));
    assert_eq!(instants(&fires), [utc(2027, 3, 28, 1, 0)]);
    assert_eq!(locals(&fires), ["2027-03-28T03:00:00+02:00"]);
}

#[test]
fn a_time_repeated_by_fall_back_fires_once_at_its_first_occurrence() {
    let fires = spec("30 2 * * *", "Europe/Berlin")
        .fires_between(utc(2027, 10, 30, 12, 0), utc(2027, 10, 31, 12, 0));
    assert_eq!(instants(&fires), [utc(2027, 10, 31, 0, 30)]);
    assert_eq!(locals(&fires), ["2027-10-31T02:30:00+02:00"]);
}

#[test]
fn starting_between_the_two_occurrences_of_a_repeated_time_does_not_fire_the_second() {
    let spec = spec("30 2 * * *", "Europe/Berlin");
    // 01:10Z is 02:10 CET, after the first 02:30 (00:30Z) and before the second (01:30Z).
    let next = spec.next_after(utc(2027, 10, 31, 1, 10)).unwrap();
    assert_eq!(next.local.to_rfc3339(), "2027-11-01T02:30:00+01:00");
}

#[test]
fn the_days_around_the_changes_fire_at_the_usual_local_time() {
    let fires = spec("30 2 * * *", "Europe/Berlin")
        .fires_between(utc(2027, 3, 26, 0, 0), utc(2027, 3, 30, 0, 0));
    assert_eq!(
        locals(&fires),
        [
            "2027-03-26T02:30:00+01:00",
            "2027-03-27T02:30:00+01:00",
            "2027-03-28T03:00:00+02:00",
            "2027-03-29T02:30:00+02:00",
        ]
    );
}

#[test]
fn several_skipped_times_and_a_real_time_at_the_jump_collapse_into_one_fire() {
    let fires = spec("0,30 2,3 * * *", "Europe/Berlin")
        .fires_between(utc(2027, 3, 27, 12, 0), utc(2027, 3, 28, 12, 0));
    assert_eq!(
        locals(&fires),
        ["2027-03-28T03:00:00+02:00", "2027-03-28T03:30:00+02:00"]
    );
}

#[test]
fn a_fixed_list_of_times_in_the_repeated_hour_fires_each_once() {
    let fires = spec("0,20,40 2 * * *", "Europe/Berlin")
        .fires_between(utc(2027, 10, 30, 12, 0), utc(2027, 10, 31, 12, 0));
    assert_eq!(
        locals(&fires),
        [
            "2027-10-31T02:00:00+02:00",
            "2027-10-31T02:20:00+02:00",
            "2027-10-31T02:40:00+02:00",
        ]
    );
}

#[test]
fn weekday_evenings_skip_from_friday_to_monday_in_winter_time() {
    let spec = spec("0 19 * * 1-5", "Europe/Berlin");
    // Friday 2027-01-15 at 19:30 CET.
    let next = spec.next_after(utc(2027, 1, 15, 18, 30)).unwrap();
    assert_eq!(next.utc, utc(2027, 1, 18, 18, 0));
    assert_eq!(next.local.to_rfc3339(), "2027-01-18T19:00:00+01:00");
}

#[test]
fn weekday_evenings_skip_from_friday_to_monday_in_summer_time() {
    let spec = spec("0 19 * * 1-5", "Europe/Berlin");
    assert_eq!(
        spec.next_after(utc(2027, 7, 2, 12, 0)).unwrap().utc,
        utc(2027, 7, 2, 17, 0)
    );
    // Friday 2027-07-02 at 19:30 CEST.
    let next = spec.next_after(utc(2027, 7, 2, 17, 30)).unwrap();
    assert_eq!(next.utc, utc(2027, 7, 5, 17, 0));
    assert_eq!(next.local.to_rfc3339(), "2027-07-05T19:00:00+02:00");
}

// ---- Europe/Berlin, real time ----

#[test]
fn every_fifteen_minutes_stays_fifteen_real_minutes_apart_across_spring_forward() {
    let fires = spec("*/15 * * * *", "Europe/Berlin")
        .fires_between(utc(2027, 3, 27, 12, 0), utc(2027, 3, 28, 12, 0));
    assert!(gaps(&fires)
        .iter()
        .all(|gap| *gap == TimeDelta::minutes(15)));
    let around_jump = instants(&fires)
        .into_iter()
        .filter(|t| (utc(2027, 3, 28, 0, 30)..=utc(2027, 3, 28, 1, 15)).contains(t))
        .map(|t| t.with_timezone(&chrono_tz::Europe::Berlin).to_rfc3339())
        .collect::<Vec<_>>();
    assert_eq!(
        around_jump,
        [
            "2027-03-28T01:30:00+01:00",
            "2027-03-28T01:45:00+01:00",
            "2027-03-28T03:00:00+02:00",
            "2027-03-28T03:15:00+02:00",
        ]
    );
}

#[test]
fn every_fifteen_minutes_stays_fifteen_real_minutes_apart_across_fall_back() {
    let fires = spec("*/15 * * * *", "Europe/Berlin")
        .fires_between(utc(2027, 10, 30, 12, 0), utc(2027, 10, 31, 12, 0));
    assert!(gaps(&fires)
        .iter()
        .all(|gap| *gap == TimeDelta::minutes(15)));
    let repeated = locals(&fires)
        .into_iter()
        .filter(|local| local.starts_with("2027-10-31T02:00"))
        .collect::<Vec<_>>();
    assert_eq!(
        repeated,
        ["2027-10-31T02:00:00+02:00", "2027-10-31T02:00:00+01:00"]
    );
}

#[test]
fn the_twenty_three_hour_spring_day_has_ninety_two_quarter_hours() {
    // 2027-03-28 runs from 00:00 CET (23:00Z the day before) to 24:00 CEST (22:00Z).
    let fires = fires_on_local_day(
        &spec("*/15 * * * *", "Europe/Berlin"),
        utc(2027, 3, 27, 23, 0),
        utc(2027, 3, 28, 22, 0),
    );
    assert_eq!(fires.len(), 92);
}

#[test]
fn the_twenty_five_hour_autumn_day_has_one_hundred_quarter_hours() {
    // 2027-10-31 runs from 00:00 CEST (22:00Z the day before) to 24:00 CET (23:00Z).
    let fires = fires_on_local_day(
        &spec("*/15 * * * *", "Europe/Berlin"),
        utc(2027, 10, 30, 22, 0),
        utc(2027, 10, 31, 23, 0),
    );
    assert_eq!(fires.len(), 100);
}

#[test]
fn an_hourly_schedule_fires_in_both_occurrences_of_the_repeated_hour() {
    let fires = spec("@hourly", "Europe/Berlin")
        .fires_between(utc(2027, 10, 30, 22, 30), utc(2027, 10, 31, 2, 30));
    assert_eq!(
        locals(&fires),
        [
            "2027-10-31T01:00:00+02:00",
            "2027-10-31T02:00:00+02:00",
            "2027-10-31T02:00:00+01:00",
            "2027-10-31T03:00:00+01:00",
        ]
    );
}

// ---- other zones ----

#[test]
fn new_york_fires_a_skipped_time_at_three_and_a_repeated_time_once() {
    let spring = spec("30 2 * * *", "America/New_York")
        .fires_between(utc(2027, 3, 13, 12, 0), utc(2027, 3, 14, 12, 0));
    assert_eq!(locals(&spring), ["2027-03-14T03:00:00-04:00"]);
    assert_eq!(instants(&spring), [utc(2027, 3, 14, 7, 0)]);

    let autumn = spec("30 1 * * *", "America/New_York")
        .fires_between(utc(2027, 11, 6, 12, 0), utc(2027, 11, 7, 12, 0));
    assert_eq!(locals(&autumn), ["2027-11-07T01:30:00-04:00"]);
    assert_eq!(instants(&autumn), [utc(2027, 11, 7, 5, 30)]);
}

#[test]
fn lord_howe_fires_a_time_in_its_repeated_half_hour_once() {
    // 2027-04-04 02:00 +11:00 becomes 01:30 +10:30, so 01:30-02:00 happens twice.
    let fires = spec("45 1 * * *", "Australia/Lord_Howe")
        .fires_between(utc(2027, 4, 3, 0, 0), utc(2027, 4, 4, 0, 0));
    assert_eq!(locals(&fires), ["2027-04-04T01:45:00+11:00"]);
    assert_eq!(instants(&fires), [utc(2027, 4, 3, 14, 45)]);
}

#[test]
fn lord_howe_fires_a_time_in_its_skipped_half_hour_at_half_past_two() {
    // 2027-10-03 02:00 +10:30 becomes 02:30 +11:00.
    let fires = spec("15 2 * * *", "Australia/Lord_Howe")
        .fires_between(utc(2027, 10, 2, 0, 0), utc(2027, 10, 3, 0, 0));
    assert_eq!(locals(&fires), ["2027-10-03T02:30:00+11:00"]);
    assert_eq!(instants(&fires), [utc(2027, 10, 2, 15, 30)]);
}

#[test]
fn lord_howe_quarter_hours_stay_fifteen_real_minutes_apart_through_half_hour_shifts() {
    let spec = spec("*/15 * * * *", "Australia/Lord_Howe");
    for (after, until) in [
        (utc(2027, 4, 3, 0, 0), utc(2027, 4, 4, 0, 0)),
        (utc(2027, 10, 2, 0, 0), utc(2027, 10, 3, 0, 0)),
    ] {
        let fires = spec.fires_between(after, until);
        assert_eq!(fires.len(), 96);
        assert!(gaps(&fires)
            .iter()
            .all(|gap| *gap == TimeDelta::minutes(15)));
    }
    // The autumn day lasts 24.5 hours, the spring day 23.5.
    let autumn = fires_on_local_day(&spec, utc(2027, 4, 3, 13, 0), utc(2027, 4, 4, 13, 30));
    assert_eq!(autumn.len(), 98);
    let spring = fires_on_local_day(&spec, utc(2027, 10, 2, 13, 30), utc(2027, 10, 3, 13, 0));
    assert_eq!(spring.len(), 94);
}

#[test]
fn adelaide_fires_a_skipped_time_at_the_jump() {
    // 2027-10-03 02:00 +09:30 becomes 03:00 +10:30.
    let fires = spec("30 2 * * *", "Australia/Adelaide")
        .fires_between(utc(2027, 10, 2, 0, 0), utc(2027, 10, 3, 0, 0));
    assert_eq!(locals(&fires), ["2027-10-03T03:00:00+10:30"]);
    assert_eq!(instants(&fires), [utc(2027, 10, 2, 16, 30)]);
}

#[test]
fn kathmandu_and_eucla_fire_at_their_quarter_hour_offsets() {
    let kathmandu = spec("0 9 * * *", "Asia/Kathmandu")
        .next_after(utc(2027, 6, 1, 0, 0))
        .unwrap();
    assert_eq!(kathmandu.utc, utc(2027, 6, 1, 3, 15));
    assert_eq!(kathmandu.local.to_rfc3339(), "2027-06-01T09:00:00+05:45");

    let eucla = spec("0 9 * * *", "Australia/Eucla")
        .next_after(utc(2027, 6, 1, 0, 0))
        .unwrap();
    assert_eq!(eucla.utc, utc(2027, 6, 1, 0, 15));
    assert_eq!(eucla.local.to_rfc3339(), "2027-06-01T09:00:00+08:45");

    let kolkata = spec("*/20 * * * *", "Asia/Kolkata").upcoming(utc(2027, 6, 1, 0, 0), 2);
    assert_eq!(
        instants(&kolkata),
        [utc(2027, 6, 1, 0, 10), utc(2027, 6, 1, 0, 30)]
    );
}

#[test]
fn a_skipped_calendar_day_fires_its_fixed_time_when_the_day_after_begins() {
    // Samoa skipped 2011-12-30 entirely: 23:59:59 -10:00 on the 29th became 00:00 +14:00 on the 31st.
    let fires = spec("0 9 * * *", "Pacific/Apia")
        .fires_between(utc(2011, 12, 29, 0, 0), utc(2011, 12, 31, 0, 0));
    assert_eq!(
        locals(&fires),
        [
            "2011-12-29T09:00:00-10:00",
            "2011-12-31T00:00:00+14:00",
            "2011-12-31T09:00:00+14:00",
        ]
    );
}

// ---- syntax ----

#[test]
fn l_fires_on_the_last_day_of_each_month() {
    let fires = spec("0 22 L * *", "Europe/Berlin").upcoming(utc(2027, 1, 1, 0, 0), 3);
    assert_eq!(
        locals(&fires),
        [
            "2027-01-31T22:00:00+01:00",
            "2027-02-28T22:00:00+01:00",
            "2027-03-31T22:00:00+02:00",
        ]
    );
    let leap = spec("0 22 L 2 *", "Europe/Berlin").next_after(utc(2028, 1, 1, 0, 0));
    assert_eq!(leap.unwrap().utc, utc(2028, 2, 29, 21, 0));
}

#[test]
fn hash_fires_on_the_nth_weekday_of_the_month() {
    let fires = spec("0 9 * * 1#1", "Europe/Berlin").upcoming(utc(2027, 1, 1, 0, 0), 3);
    assert_eq!(
        instants(&fires),
        [
            utc(2027, 1, 4, 8, 0),
            utc(2027, 2, 1, 8, 0),
            utc(2027, 3, 1, 8, 0),
        ]
    );
}

#[test]
fn the_last_sunday_written_as_seven_is_the_day_of_the_spring_change() {
    let fires = spec("0 2 * * 7L", "Europe/Berlin").upcoming(utc(2027, 3, 1, 0, 0), 2);
    assert_eq!(
        locals(&fires),
        ["2027-03-28T03:00:00+02:00", "2027-04-25T02:00:00+02:00"]
    );
}

#[test]
fn w_fires_on_the_weekday_nearest_the_given_day() {
    // 2027-05-15 is a Saturday, so 15W is Friday the 14th.
    let fire = spec("0 9 15W * *", "UTC").next_after(utc(2027, 5, 1, 0, 0));
    assert_eq!(fire.unwrap().utc, utc(2027, 5, 14, 9, 0));
}

#[test]
fn month_and_weekday_names_mean_their_numbers_in_any_case() {
    let after = utc(2027, 1, 1, 0, 0);
    let by_number = spec("0 9 * 1,7 1-5", "Europe/Berlin").upcoming(after, 50);
    let by_name = spec("0 9 * JAN,jul Mon-FRI", "Europe/Berlin").upcoming(after, 50);
    assert_eq!(by_number, by_name);
}

#[test]
fn sunday_is_both_zero_and_seven() {
    let after = utc(2027, 1, 1, 0, 0);
    let zero = spec("0 12 * * 0", "UTC").upcoming(after, 5);
    assert_eq!(zero, spec("0 12 * * 7", "UTC").upcoming(after, 5));
    assert_eq!(zero, spec("0 12 * * SUN", "UTC").upcoming(after, 5));
    assert_eq!(
        zero,
        spec("0 12 * * 6-7", "UTC")
            .fires_between(after, zero[4].utc)
            .into_iter()
            .filter(|fire| fire.local.format("%a").to_string() == "Sun")
            .collect::<Vec<_>>()
    );
    assert_eq!(zero[0].utc, utc(2027, 1, 3, 12, 0));
}

#[test]
fn restricted_day_of_month_and_day_of_week_fire_when_either_matches() {
    // Mondays 2027-02-08 and 2027-02-15, and Wednesday the 10th.
    let fires = spec("0 0 10 * MON", "UTC").upcoming(utc(2027, 2, 1, 12, 0), 3);
    assert_eq!(
        instants(&fires),
        [
            utc(2027, 2, 8, 0, 0),
            utc(2027, 2, 10, 0, 0),
            utc(2027, 2, 15, 0, 0)
        ]
    );
}

#[test]
fn a_day_field_starting_with_a_star_makes_both_day_fields_required() {
    // Odd days of the month that are also Mondays, as in cronie.
    let fires = spec("0 0 */2 * MON", "UTC").upcoming(utc(2027, 1, 1, 0, 0), 3);
    assert_eq!(
        instants(&fires),
        [
            utc(2027, 1, 11, 0, 0),
            utc(2027, 1, 25, 0, 0),
            utc(2027, 2, 1, 0, 0)
        ]
    );
}

#[test]
fn aliases_expand_to_their_five_field_schedules() {
    let after = utc(2027, 5, 5, 5, 5);
    for (alias, fields) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ] {
        let alias = spec(alias, "Europe/Berlin");
        let fields = spec(fields, "Europe/Berlin");
        assert_eq!(alias.upcoming(after, 3), fields.upcoming(after, 3));
        assert_eq!(alias.is_fixed_time(), fields.is_fixed_time());
    }
}

#[test]
fn a_star_in_the_minute_or_hour_field_makes_a_schedule_follow_real_time() {
    for (expression, fixed) in [
        ("30 2 * * *", true),
        ("0,30 1-3 * * *", true),
        ("0-59/15 2 * * *", true),
        ("*/15 * * * *", false),
        ("0 * * * *", false),
        ("0 */2 * * *", false),
        ("* 2 * * *", false),
    ] {
        assert_eq!(
            spec(expression, "UTC").is_fixed_time(),
            fixed,
            "{expression}"
        );
    }
}

#[test]
fn a_schedule_with_no_real_date_is_rejected_when_parsed() {
    let err = CronSpec::parse("0 0 30 2 *", "Europe/Berlin").unwrap_err();
    assert_eq!(err.field(), "cron");
    assert!(err.to_string().contains("never matches"), "{err}");
}

// ---- errors ----

fn expression_reason(expression: &str) -> String {
    match CronSpec::parse(expression, "Europe/Berlin").unwrap_err() {
        err @ CronError::Expression { .. } => {
            assert_eq!(err.field(), "cron");
            err.to_string()
        }
        other => panic!("expected an expression error, got {other:?}"),
    }
}

#[test]
fn an_out_of_range_minute_is_an_expression_error_naming_the_minute_field() {
    let message = expression_reason("61 * * * *");
    assert!(message.contains("minute field \"61\""), "{message}");
    assert!(message.contains("0-59"), "{message}");
}

#[test]
fn four_fields_are_an_expression_error_saying_five_are_expected() {
    let message = expression_reason("* * * *");
    assert!(message.contains("expected 5 fields"), "{message}");
    assert!(message.contains("found 4"), "{message}");
}

#[test]
fn a_seconds_field_is_an_expression_error_saying_seconds_are_not_supported() {
    let message = expression_reason("0 30 2 * * *");
    assert!(message.contains("found 6"), "{message}");
    assert!(message.contains("seconds"), "{message}");
}

#[test]
fn a_word_is_an_expression_error_saying_five_fields_are_expected() {
    let message = expression_reason("nonsense");
    assert!(message.contains("\"nonsense\""), "{message}");
    assert!(message.contains("expected 5 fields"), "{message}");
}

#[test]
fn an_empty_expression_is_an_expression_error_saying_it_is_empty() {
    assert!(expression_reason("  ").contains("empty"));
}

#[test]
fn a_weekday_name_in_the_month_field_is_an_expression_error_naming_the_month_field() {
    let message = expression_reason("0 0 1 MON *");
    assert!(message.contains("month field \"MON\""), "{message}");
}

#[test]
fn an_out_of_range_weekday_is_an_expression_error_naming_the_day_of_week_field() {
    let message = expression_reason("0 0 * * 8");
    assert!(message.contains("day-of-week field \"8\""), "{message}");
}

#[test]
fn an_unknown_alias_is_an_expression_error_listing_the_known_ones() {
    let message = expression_reason("@reboot");
    assert!(message.contains("@daily"), "{message}");
}

#[test]
fn an_unknown_zone_is_a_zone_error_naming_the_zone() {
    let err = CronSpec::parse("0 9 * * *", "Mars/Olympus").unwrap_err();
    assert_eq!(
        err,
        CronError::Zone {
            zone: "Mars/Olympus".to_string()
        }
    );
    assert_eq!(err.field(), "tz");
    assert!(err.to_string().contains("\"Mars/Olympus\""));
    assert!(err.to_string().contains("IANA"));
}

#[test]
fn an_empty_zone_is_a_zone_error() {
    let err = CronSpec::parse("0 9 * * *", "").unwrap_err();
    assert_eq!(err.field(), "tz");
    assert!(matches!(err, CronError::Zone { .. }));
}

// ---- against a minute-by-minute oracle ----

/// Every fire in (`after`, `until`] found by walking real minutes, applying curfew's rules
/// directly: a real-time schedule fires at each minute whose wall-clock reading matches; a
/// fixed-time schedule fires at a minute that is the first to reach or pass a matching
/// wall-clock time. Offsets in the zones used are whole minutes.
fn oracle(
    expression: &str,
    fixed_time: bool,
    zone: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let pattern: croner::Cron = expression.parse().unwrap();
    let matches = |local: NaiveDateTime| pattern.is_time_matching(&local.and_utc()).unwrap();
    let local_at = |instant: DateTime<Utc>| instant.with_timezone(&zone).naive_local();
    let mut fires = Vec::new();
    // Assumes the wall clock did not run backwards in the day before `after`.
    let mut furthest = local_at(after);
    let mut instant = after + TimeDelta::minutes(1);
    while instant <= until {
        let local = local_at(instant);
        let fires_here = if fixed_time {
            let mut candidate = furthest + TimeDelta::minutes(1);
            let mut any = false;
            while candidate <= local {
                any |= matches(candidate);
                candidate += TimeDelta::minutes(1);
            }
            any
        } else {
            matches(local)
        };
        if fires_here {
            fires.push(instant);
        }
        furthest = furthest.max(local);
        instant += TimeDelta::minutes(1);
    }
    fires
}

/// The instants in `year` where `zone`'s UTC offset changes, to the hour.
fn offset_changes(zone: Tz, year: i32) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| {
        t.with_timezone(&zone)
            .fixed_offset()
            .offset()
            .local_minus_utc()
    };
    let mut changes = Vec::new();
    let mut hour = utc(year, 1, 1, 0, 0);
    while hour < utc(year + 1, 1, 1, 0, 0) {
        if offset(hour) != offset(hour + TimeDelta::hours(1)) {
            changes.push(hour);
        }
        hour += TimeDelta::hours(1);
    }
    changes
}

#[test]
fn fires_around_every_offset_change_match_a_minute_by_minute_oracle() {
    let zones = [
        ("Europe/Berlin", 2027),
        ("America/New_York", 2027),
        ("Australia/Lord_Howe", 2027),
        ("Australia/Adelaide", 2027),
        ("America/Santiago", 2027),
        ("America/Sao_Paulo", 2018),
        ("Asia/Kathmandu", 1985),
        ("Pacific/Apia", 2011),
    ];
    let expressions = [
        "30 2 * * *",
        "0 0 * * *",
        "0,30 1-3 * * *",
        "45 23 * * *",
        "*/15 * * * *",
        "0 * * * *",
        "*/7 1-3 * * *",
        "10 */2 * * *",
    ];
    for (name, year) in zones {
        let zone: Tz = name.parse().unwrap();
        let changes = offset_changes(zone, year);
        assert!(!changes.is_empty(), "{name} has no offset change in {year}");
        for change in changes {
            let (after, until) = (change - TimeDelta::hours(30), change + TimeDelta::hours(30));
            for expression in expressions {
                let spec = spec(expression, name);
                let expected = oracle(expression, spec.is_fixed_time(), zone, after, until);
                let actual = instants(&spec.fires_between(after, until));
                assert_eq!(actual, expected, "{expression} in {name} around {change}");
            }
        }
    }
}

// ---- properties ----

const EXPRESSIONS: [&str; 9] = [
    "30 2 * * *",
    "0 19 * * 1-5",
    "0,30 1-3 * * *",
    "0 22 L * *",
    "0 0 * * *",
    "*/15 * * * *",
    "0 * * * *",
    "*/7 1-3 * * *",
    "5 */2 * * 0",
];

const ZONES: [&str; 8] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Australia/Eucla",
    "America/Santiago",
    "Asia/Kolkata",
    "UTC",
];

fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (start, end) = (
        utc(1990, 1, 1, 0, 0).timestamp(),
        utc(2045, 1, 1, 0, 0).timestamp(),
    );
    (start..end, 0u32..1_000_000_000)
        .prop_map(|(seconds, nanos)| DateTime::from_timestamp(seconds, nanos).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_next_fire_is_strictly_after_the_start(
        t in any_instant(),
        expression in proptest::sample::select(&EXPRESSIONS[..]),
        zone in proptest::sample::select(&ZONES[..]),
    ) {
        let next = spec(expression, zone).next_after(t).unwrap();
        prop_assert!(next.utc > t);
    }

    #[test]
    fn fires_in_a_window_strictly_increase_and_stay_inside_it(
        t in any_instant(),
        expression in proptest::sample::select(&EXPRESSIONS[..]),
        zone in proptest::sample::select(&ZONES[..]),
    ) {
        let until = t + TimeDelta::days(3);
        let fires = spec(expression, zone).fires_between(t, until);
        prop_assert!(fires.iter().all(|fire| fire.utc > t && fire.utc <= until));
        prop_assert!(fires.windows(2).all(|w| w[0].utc < w[1].utc));
    }

    #[test]
    fn the_next_fire_after_a_fire_is_the_one_that_follows_it(
        t in any_instant(),
        expression in proptest::sample::select(&EXPRESSIONS[..]),
        zone in proptest::sample::select(&ZONES[..]),
    ) {
        let spec = spec(expression, zone);
        let upcoming = spec.upcoming(t, 6);
        prop_assert_eq!(upcoming.len(), 6);
        prop_assert_eq!(Some(upcoming[0]), spec.next_after(t));
        for pair in upcoming.windows(2) {
            prop_assert_eq!(Some(pair[1]), spec.next_after(pair[0].utc));
        }
    }
}
