//! How long one next-fire evaluation takes (`CronSpec::next_after`), the work the poller does
//! for every due schedule on every tick. `make bench` runs it:
//! `cargo bench -p curfew-core --bench next_fire`.
//!
//! The mix is what makes the search work hardest: zones with daylight saving (Berlin, New
//! York), 30- and 45-minute offsets (Kolkata, Kathmandu) and Lord Howe's 30-minute DST shift;
//! fixed-time schedules that land in a skipped or repeated hour (cronie's rules) and real-time
//! `*/n` ones; `L` and `#` day fields. Each is asked for its next fire from an ordinary instant
//! and from the day before each of the 2027 clock changes that concern it, so the DST paths
//! are in every measured iteration, not just the easy ones.

use std::hint::black_box;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use curfew_core::cron::CronSpec;

/// (label, expression, zone).
const SCHEDULES: [(&str, &str, &str); 10] = [
    (
        "berlin_weekday_evening",
        "0 19 * * MON-FRI",
        "Europe/Berlin",
    ),
    ("berlin_in_skipped_hour", "30 2 * * *", "Europe/Berlin"),
    ("berlin_last_day_of_month", "0 22 L * *", "Europe/Berlin"),
    (
        "new_york_weekday_morning",
        "0 7 * * 1-5",
        "America/New_York",
    ),
    ("new_york_every_15_min", "*/15 * * * *", "America/New_York"),
    ("new_york_first_monday", "0 8 * * 1#1", "America/New_York"),
    ("kolkata_half_hour_offset", "0 9 * * *", "Asia/Kolkata"),
    (
        "kathmandu_every_20_min",
        "*/20 9-17 * * 1-5",
        "Asia/Kathmandu",
    ),
    (
        "lord_howe_in_skipped_half_hour",
        "15 2 * * *",
        "Australia/Lord_Howe",
    ),
    (
        "lord_howe_in_repeated_half_hour",
        "45 1 * * *",
        "Australia/Lord_Howe",
    ),
];

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// An ordinary instant, then noon UTC the day before each 2027 clock change of these zones.
fn instants() -> [DateTime<Utc>; 7] {
    [
        utc(2027, 6, 15, 8, 17),
        utc(2027, 3, 13, 12, 0),  // New York springs forward on 03-14
        utc(2027, 3, 27, 12, 0),  // Berlin springs forward on 03-28
        utc(2027, 4, 3, 12, 0),   // Lord Howe falls back half an hour on 04-04
        utc(2027, 10, 2, 12, 0),  // Lord Howe springs forward half an hour on 10-03
        utc(2027, 10, 30, 12, 0), // Berlin falls back on 10-31
        utc(2027, 11, 6, 12, 0),  // New York falls back on 11-07
    ]
}

fn specs() -> Vec<(&'static str, CronSpec)> {
    SCHEDULES
        .iter()
        .map(|(label, expression, zone)| {
            let spec = CronSpec::parse(expression, zone).unwrap_or_else(|e| panic!("{label}: {e}"));
            // A schedule that never fires would measure the search giving up, not a fire.
            for after in instants() {
                assert!(spec.next_after(after).is_some(), "{label} after {after}");
            }
            (*label, spec)
        })
        .collect()
}

fn next_fire(c: &mut Criterion) {
    let specs = specs();
    let instants = instants();

    let mut mix = c.benchmark_group("next_fire_mix");
    // One iteration evaluates every schedule from every instant; per-element time is the
    // figure per evaluation.
    mix.throughput(Throughput::Elements((specs.len() * instants.len()) as u64));
    mix.bench_function("all", |b| {
        b.iter(|| {
            for (_, spec) in &specs {
                for after in &instants {
                    black_box(spec.next_after(black_box(*after)));
                }
            }
        })
    });
    mix.finish();

    let mut each = c.benchmark_group("next_fire");
    each.throughput(Throughput::Elements(instants.len() as u64));
    for (label, spec) in &specs {
        each.bench_function(*label, |b| {
            b.iter(|| {
                for after in &instants {
                    black_box(spec.next_after(black_box(*after)));
                }
            })
        });
    }
    each.finish();
}

criterion_group!(benches, next_fire);
criterion_main!(benches);
