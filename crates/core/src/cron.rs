//! Cron schedules bound to a real time zone, with curfew's daylight-saving rules.
//!
//! A [`CronSpec`] is a standard 5-field cron expression (minute hour day-of-month month
//! day-of-week) bound to an IANA time zone. [`croner`] decides which *wall-clock* times match;
//! this module decides which *real instants* fire, because that is where cron implementations
//! disagree and where curfew makes promises (cronie's rules, see its
//! [cron(8)](https://man7.org/linux/man-pages/man8/cron.8.html) "daylight saving time" notes):
//!
//! - A *fixed-time* schedule (no `*` or `*/n` in its minute or hour field) fires once per matching
//!   wall-clock time. A time skipped by spring-forward fires once, at the first instant after the
//!   jump; several skipped times (and a real time at that same instant) collapse into that one
//!   fire. A time repeated by fall-back fires once, at its first occurrence.
//! - Any other schedule follows real time: `*/15 * * * *` fires every 15 real minutes through
//!   both changes, for both occurrences of a repeated hour and never inside a skipped one.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use curfew_core::cron::CronSpec;
//!
//! let spec = CronSpec::parse("30 2 * * *", "Europe/Berlin").unwrap();
//! // Berlin jumps from 02:00 to 03:00 on 2027-03-28, so 02:30 never happens that night.
//! let fire = spec.next_after(Utc.with_ymd_and_hms(2027, 3, 27, 12, 0, 0).unwrap()).unwrap();
//! assert_eq!(fire.local.to_rfc3339(), "2027-03-28T03:00:00+02:00");
//! assert_eq!(fire.utc, Utc.with_ymd_and_hms(2027, 3, 28, 1, 0, 0).unwrap());
//! ```

mod expression;
mod search;

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;

/// A parsed 5-field cron expression bound to an IANA time zone.
///
/// Accepted syntax: numbers, lists, ranges and steps; month names (`JAN`) and weekday names
/// (`MON`) in their own fields; weekday `0` and `7` both mean Sunday; `L` (last day of the
/// month), `nW` (weekday nearest day n), `n#k` (k-th weekday n of the month, `1#1` is the first
/// Monday), `nL` (last weekday n of the month); `?` as `*` in the day fields; and the aliases
/// `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`. A seconds
/// field is rejected.
///
/// When both day fields are restricted a day matches if *either* does (`0 0 1 * MON` fires on
/// the 1st and on every Monday); when either starts with `*` both must match. This is the
/// Vixie/cronie rule; prefix the weekday field with `+` to require both explicitly.
#[derive(Clone, Debug, PartialEq)]
pub struct CronSpec {
    expression: String,
    zone: Tz,
    pattern: croner::Cron,
    fixed_time: bool,
}

/// One moment a schedule fires, in UTC and in the schedule's local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FireTime {
    /// The real instant.
    pub utc: DateTime<Utc>,
    /// The same instant as wall-clock time in the schedule's zone, with the offset in force.
    pub local: DateTime<FixedOffset>,
}

/// Why a schedule could not be parsed; [`CronError::field`] names the input at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CronError {
    /// The cron expression is malformed or can never fire.
    #[error("invalid cron expression {expression:?}: {reason}")]
    Expression {
        /// The expression as given.
        expression: String,
        /// What is wrong, naming the cron field where possible.
        reason: String,
    },
    /// The time zone is not an IANA zone name.
    #[error("unknown time zone {zone:?} (expected an IANA name such as Europe/Berlin)")]
    Zone {
        /// The zone as given.
        zone: String,
    },
}

impl CronError {
    /// The input field at fault: `"cron"` for the expression, `"tz"` for the time zone.
    pub fn field(&self) -> &'static str {
        match self {
            CronError::Expression { .. } => "cron",
            CronError::Zone { .. } => "tz",
        }
    }
}

/// An IANA zone by name, exactly or ignoring ASCII case (`utc`, `europe/berlin`); schedules
/// store the canonical spelling.
fn parse_zone(name: &str) -> Option<Tz> {
    let name = name.trim();
    name.parse::<Tz>().ok().or_else(|| {
        chrono_tz::TZ_VARIANTS
            .iter()
            .copied()
            .find(|tz| tz.name().eq_ignore_ascii_case(name))
    })
}

impl CronSpec {
    /// Parses `expression` and binds it to the IANA zone named `zone` (e.g. `Europe/Berlin`).
    ///
    /// Expressions that can never fire (such as `0 0 30 2 *`) are rejected here rather than
    /// left to search for a date that does not exist.
    pub fn parse(expression: &str, zone: &str) -> Result<CronSpec, CronError> {
        let parsed = expression::parse(expression).map_err(|reason| CronError::Expression {
            expression: expression.to_string(),
            reason,
        })?;
        let zone = parse_zone(zone).ok_or_else(|| CronError::Zone {
            zone: zone.to_string(),
        })?;
        Ok(CronSpec {
            expression: expression.trim().to_string(),
            zone,
            pattern: parsed.pattern,
            fixed_time: parsed.fixed_time,
        })
    }

    /// The expression as given (surrounding whitespace trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is evaluated in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The IANA name of the time zone, e.g. `Europe/Berlin`.
    pub fn zone_name(&self) -> &str {
        self.zone.name()
    }

    /// True for "fixed-time" schedules: neither the minute nor the hour field contains `*`
    /// (incl. `*/n`). Those get the spring-forward and fall-back rules in the module docs; all
    /// other schedules follow real time.
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    /// The first fire strictly after `after`, or `None` if there is none before year 5000.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<FireTime> {
        let utc = if self.fixed_time {
            search::next_fixed_time(&self.pattern, self.zone, after)
        } else {
            search::next_real_time(&self.pattern, self.zone, after)
        }?;
        Some(FireTime {
            utc,
            local: utc.with_timezone(&self.zone).fixed_offset(),
        })
    }

    /// Every fire in (`after`, `until`], in order, each exactly once.
    pub fn fires_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<FireTime> {
        self.fires_from(after)
            .take_while(|fire| fire.utc <= until)
            .collect()
    }

    /// Up to `count` fires strictly after `after`, in order.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<FireTime> {
        self.fires_from(after).take(count).collect()
    }

    fn fires_from(&self, after: DateTime<Utc>) -> impl Iterator<Item = FireTime> + '_ {
        std::iter::successors(self.next_after(after), |fire| self.next_after(fire.utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn fractional_seconds_do_not_hide_a_fire_or_repeat_one() {
        let spec = CronSpec::parse("*/15 * * * *", "UTC").unwrap();
        let just_before = utc(2027, 1, 1, 10, 14) + chrono::TimeDelta::milliseconds(59_500);
        assert_eq!(
            spec.next_after(just_before).unwrap().utc,
            utc(2027, 1, 1, 10, 15)
        );
        let just_after = utc(2027, 1, 1, 10, 15) + chrono::TimeDelta::milliseconds(1);
        assert_eq!(
            spec.next_after(just_after).unwrap().utc,
            utc(2027, 1, 1, 10, 30)
        );
    }

    #[test]
    fn the_local_time_carries_the_offset_in_force() {
        let spec = CronSpec::parse("0 12 * * *", "America/New_York").unwrap();
        let fire = spec.next_after(utc(2027, 7, 1, 0, 0)).unwrap();
        assert_eq!(fire.local.to_rfc3339(), "2027-07-01T12:00:00-04:00");
        assert_eq!(fire.utc, utc(2027, 7, 1, 16, 0));
    }

    #[test]
    fn an_expression_error_is_reported_before_a_zone_error() {
        let err = CronSpec::parse("nonsense", "Mars/Olympus").unwrap_err();
        assert_eq!(err.field(), "cron");
    }

    #[test]
    fn the_expression_is_kept_as_given_and_the_zone_by_its_iana_name() {
        let spec = CronSpec::parse(" 0 9 * * mon-fri ", "Asia/Kolkata").unwrap();
        assert_eq!(spec.expression(), "0 9 * * mon-fri");
        assert_eq!(spec.zone_name(), "Asia/Kolkata");
        assert_eq!(spec.zone(), chrono_tz::Asia::Kolkata);
    }

    #[test]
    fn a_zone_name_in_another_case_is_stored_in_its_iana_spelling() {
        assert_eq!(
            CronSpec::parse("0 9 * * *", "utc").unwrap().zone_name(),
            "UTC"
        );
        assert_eq!(
            CronSpec::parse("0 9 * * *", "europe/berlin")
                .unwrap()
                .zone_name(),
            "Europe/Berlin"
        );
        assert_eq!(
            CronSpec::parse("0 9 * * *", "Europe/Berlín")
                .unwrap_err()
                .field(),
            "tz"
        );
    }
}
