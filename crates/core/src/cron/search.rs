//! Finding the next real instant a pattern fires in a zone.
//!
//! croner is only asked about *wall-clock* (naive) times, by evaluating it in UTC where no
//! clock ever jumps; mapping wall-clock times to real instants is done here, so the DST rules
//! are ours rather than croner's (croner 3, for one, can return a time before its start when
//! started inside a repeated hour).

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};
use croner::Cron;

/// Bounds the matching wall-clock times that can lie at or before a search's start in real
/// time: those inside one repeated or skipped interval (a day of every minute at most).
const MAX_PASSED_CANDIDATES: usize = 2 * 24 * 60;

/// Bounds the UTC-offset changes crossed while looking for one fire; a pattern that only fires
/// on Monday 29 February crosses about sixty.
const MAX_OFFSET_CHANGES: usize = 1_000;

/// Offsets are checked at this spacing between a search's start and its candidate, so two
/// offset changes closer together than this that cancel out would go unseen (none in tzdb).
const OFFSET_PROBE_SPACING: TimeDelta = TimeDelta::hours(6);

/// The next wall-clock time after (or at, if `inclusive`) `local` that matches `pattern`.
fn next_match(pattern: &Cron, local: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
    pattern
        .find_next_occurrence(&local.and_utc(), inclusive)
        .ok()
        .map(|found| found.naive_utc())
}

/// Fires land on whole seconds, so "after `t`" is "after `t` rounded down to the second"; it
/// also keeps croner, which carries sub-second parts through its search, on whole seconds.
fn whole_second(instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(instant.timestamp(), 0)
}

fn utc_offset(zone: Tz, instant: DateTime<Utc>) -> TimeDelta {
    let offset = zone.offset_from_utc_datetime(&instant.naive_utc()).fix();
    TimeDelta::seconds(offset.local_minus_utc().into())
}

/// The first real instant at which the wall clock reads `local` or has jumped past it: the
/// instant itself, the first of two in a repeated interval, or the end of a skipped one.
fn first_instant_reaching(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => Some(first.min(second).with_timezone(&Utc)),
        LocalResult::None => GapInfo::new(&local, &zone)?
            .end
            .map(|end| end.with_timezone(&Utc)),
    }
}

/// The next fire of a fixed-time schedule: each matching wall-clock time fires at the first
/// instant the clock reaches it (see [`first_instant_reaching`]).
///
/// That mapping never decreases as wall-clock time increases, so the answer is the first match
/// that maps past `after`. Matches before the wall-clock reading at `after` map at or before
/// it; only matches inside a repeated or skipped interval around `after` need skipping.
pub(super) fn next_fixed_time(
    pattern: &Cron,
    zone: Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let after = whole_second(after)?;
    let mut local = after.with_timezone(&zone).naive_local();
    for _ in 0..MAX_PASSED_CANDIDATES {
        local = next_match(pattern, local, false)?;
        match first_instant_reaching(zone, local) {
            Some(instant) if instant > after => return Some(instant),
            _ => {}
        }
    }
    None
}

/// The next fire of a real-time schedule: the first instant after `after` whose wall-clock
/// reading matches, in whichever occurrence of a repeated interval.
///
/// Within a stretch of constant UTC offset wall-clock and real time advance together, so the
/// first match of the stretch is croner's next match shifted by the offset. If the offset
/// changes before that candidate, the search restarts at the change.
pub(super) fn next_real_time(
    pattern: &Cron,
    zone: Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut from = whole_second(after)?.checked_add_signed(TimeDelta::seconds(1))?;
    for _ in 0..MAX_OFFSET_CHANGES {
        let offset = utc_offset(zone, from);
        let local = from.naive_utc().checked_add_signed(offset)?;
        let candidate = next_match(pattern, local, true)?
            .checked_sub_signed(offset)?
            .and_utc();
        match first_offset_change(zone, from, candidate, offset) {
            None => return Some(candidate),
            Some(change) => from = change,
        }
    }
    None
}

/// The first instant in (`from`, `until`] whose UTC offset is not `offset`, if any.
fn first_offset_change(
    zone: Tz,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    offset: TimeDelta,
) -> Option<DateTime<Utc>> {
    let mut unchanged = from;
    while unchanged < until {
        let probe = unchanged
            .checked_add_signed(OFFSET_PROBE_SPACING)
            .map_or(until, |probe| probe.min(until));
        if utc_offset(zone, probe) != offset {
            return Some(bisect_offset_change(zone, unchanged, probe, offset));
        }
        unchanged = probe;
    }
    None
}

/// Narrows (`unchanged`, `changed`] to the whole second where the offset stops being `offset`;
/// tzdb transitions fall on whole seconds.
fn bisect_offset_change(
    zone: Tz,
    unchanged: DateTime<Utc>,
    changed: DateTime<Utc>,
    offset: TimeDelta,
) -> DateTime<Utc> {
    let (mut same, mut different) = (unchanged.timestamp(), changed.timestamp());
    while different - same > 1 {
        let middle = same + (different - same) / 2;
        let at_middle = DateTime::from_timestamp(middle, 0).unwrap_or(changed);
        if utc_offset(zone, at_middle) == offset {
            same = middle;
        } else {
            different = middle;
        }
    }
    DateTime::from_timestamp(different, 0).unwrap_or(changed)
}
