//! Schedules: a cron expression in a time zone, an action and a selector.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::cron::{CronError, CronSpec, FireTime};
use crate::decision::Action;
use crate::hold::{HoldError, HoldModes, Source};
use crate::ports::{ErrorKind, PortError};
use crate::selector::{Selector, SelectorError};
use crate::target::Sizes;

/// A schedule field that failed validation.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// The name is not usable.
    #[error("invalid name {0:?}: use 1-64 letters, digits, '-' or '_'")]
    Name(String),
    /// Bad cron expression or zone.
    #[error(transparent)]
    Cron(#[from] CronError),
    /// Bad selector.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// Bad action.
    #[error("invalid action {0:?}: expected stop or start")]
    Action(String),
    /// Bad prewarm duration.
    #[error("invalid prewarm {0:?}: expected a duration such as 15m or 1h, at most 24h")]
    Prewarm(String),
    /// Bad skip date.
    #[error("invalid skip date {0:?}: expected YYYY-MM-DD")]
    SkipDate(String),
    /// Default start sizes that are not min <= desired <= max.
    #[error("invalid default start sizes {0}: need 0 <= min <= desired <= max")]
    DefaultStart(Sizes),
    /// Hold modes that do not parse.
    #[error(transparent)]
    Hold(#[from] HoldError),
}

impl ScheduleError {
    /// The name of the bad field, as operators type it.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::Name(_) => "name",
            ScheduleError::Cron(e) => e.field(),
            ScheduleError::Selector(_) => "select",
            ScheduleError::Action(_) => "action",
            ScheduleError::Prewarm(_) => "prewarm",
            ScheduleError::SkipDate(_) => "skip-dates",
            ScheduleError::DefaultStart(_) => "default-start",
            ScheduleError::Hold(_) => "hold",
        }
    }
}

/// A schedule as stored and exchanged: plain fields. [`Schedule::try_from`] validates it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// Unique name.
    pub name: String,
    /// 5-field cron expression.
    pub cron: String,
    /// IANA time zone.
    pub tz: String,
    /// `stop` or `start`.
    pub action: String,
    /// Selector.
    pub selector: String,
    /// Disabled schedules never fire.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Plan only: tasks record what would change and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Fire this many minutes before the cron time (warm up before people arrive).
    #[serde(default)]
    pub prewarm_minutes: i64,
    /// Local dates on which the schedule does not fire.
    #[serde(default)]
    pub skip_dates: Vec<String>,
    /// Sizes a start uses for targets with no baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_start: Option<Sizes>,
    /// Hold modes for the node groups it acts on (`ca-tags,karpenter`), winning over their
    /// clusters' `curfew/hold` tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// The next instant this schedule fires (UTC), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<DateTime<Utc>>,
}

fn yes() -> bool {
    true
}

/// A validated schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleRecord", into = "ScheduleRecord")]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// When, in which zone.
    pub cron: CronSpec,
    /// What to do.
    pub action: Action,
    /// To what.
    pub selector: Selector,
    /// Disabled schedules never fire.
    pub enabled: bool,
    /// Plan only.
    pub dry_run: bool,
    /// Fire this long before the cron time.
    pub prewarm: Duration,
    /// Local dates on which it does not fire.
    pub skip_dates: Vec<NaiveDate>,
    /// Sizes a start uses for targets with no baseline.
    pub default_start: Option<Sizes>,
    /// Hold modes for its node groups, winning over their clusters' tags.
    pub hold: Option<HoldModes>,
    /// The next instant it fires.
    pub next_fire: Option<DateTime<Utc>>,
}

/// A stored schedule that no longer reads as a valid one: a field became invalid (a cron
/// expression or zone a newer version refuses, a hand edit) or is missing. It never fires; the
/// poller reports it every tick until someone deletes it (and adds it again, fixed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenSchedule {
    /// The name in the schedule's key.
    pub name: String,
    /// What is wrong with it, naming the field.
    pub problem: String,
}

impl std::fmt::Display for BrokenSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schedule {:?} is broken: {}", self.name, self.problem)
    }
}

impl From<BrokenSchedule> for PortError {
    /// Reading a broken schedule as a schedule is refused, naming it and its problem.
    fn from(broken: BrokenSchedule) -> Self {
        PortError::new(ErrorKind::Invalid, broken.to_string())
    }
}

/// Schedules read from the store: the valid ones, and apart from them the broken ones, so one
/// bad item never hides the others.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleList {
    /// Schedules that read as valid.
    pub schedules: Vec<Schedule>,
    /// Schedules that do not.
    pub broken: Vec<BrokenSchedule>,
}

/// Parses `90s`, `15m`, `2h`, `1h30m`, `7d` or a bare number of minutes. `None` for anything
/// else, including amounts too large to represent (they would overflow every date they touch).
pub fn parse_duration(input: &str) -> Option<Duration> {
    let s = input.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(minutes) = s.parse::<i64>() {
        return (minutes >= 0)
            .then(|| Duration::try_minutes(minutes))
            .flatten();
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let part = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            _ => return None,
        }?;
        total = total.checked_add(&part)?;
    }
    digits.is_empty().then_some(total)
}

/// Checks a schedule name.
pub fn validate_name(name: &str) -> Result<(), ScheduleError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ScheduleError::Name(name.to_string()))
    }
}

impl TryFrom<ScheduleRecord> for Schedule {
    type Error = ScheduleError;

    fn try_from(r: ScheduleRecord) -> Result<Self, Self::Error> {
        validate_name(&r.name)?;
        let cron = CronSpec::parse(&r.cron, &r.tz)?;
        let action =
            Action::parse(&r.action).ok_or_else(|| ScheduleError::Action(r.action.clone()))?;
        let selector = Selector::parse(&r.selector)?;
        if !(0..=24 * 60).contains(&r.prewarm_minutes) {
            return Err(ScheduleError::Prewarm(format!("{}m", r.prewarm_minutes)));
        }
        let skip_dates = r
            .skip_dates
            .iter()
            .map(|d| {
                NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                    .map_err(|_| ScheduleError::SkipDate(d.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(sizes) = r.default_start {
            if !sizes.is_valid() {
                return Err(ScheduleError::DefaultStart(sizes));
            }
        }
        let hold = r
            .hold
            .as_deref()
            .map(|modes| HoldModes::parse(modes, Source::Flag))
            .transpose()?;
        Ok(Schedule {
            name: r.name,
            cron,
            action,
            selector,
            enabled: r.enabled,
            dry_run: r.dry_run,
            prewarm: Duration::minutes(r.prewarm_minutes),
            skip_dates,
            default_start: r.default_start,
            hold,
            next_fire: r.next_fire,
        })
    }
}

impl From<Schedule> for ScheduleRecord {
    fn from(s: Schedule) -> Self {
        ScheduleRecord {
            name: s.name,
            cron: s.cron.expression().to_string(),
            tz: s.cron.zone_name().to_string(),
            action: s.action.as_str().to_string(),
            selector: s.selector.as_str().to_string(),
            enabled: s.enabled,
            dry_run: s.dry_run,
            prewarm_minutes: s.prewarm.num_minutes(),
            skip_dates: s.skip_dates.iter().map(|d| d.to_string()).collect(),
            default_start: s.default_start,
            hold: s.hold.map(|m| m.to_string().replace('+', ",")),
            next_fire: s.next_fire,
        }
    }
}

impl Schedule {
    /// The first instant strictly after `after` at which this schedule fires: the cron fire
    /// minus the prewarm, skipping fires whose local date is a skip date.
    pub fn next_fire_after(&self, after: DateTime<Utc>) -> Option<FireTime> {
        let mut cursor = after + self.prewarm;
        // A skip list can only hide a bounded number of fires in a row; bound the walk anyway.
        for _ in 0..10_000 {
            let fire = self.cron.next_after(cursor)?;
            if !self.skip_dates.contains(&fire.local.date_naive()) {
                // The prewarmed instant's local time carries the offset in force then, which
                // differs from the cron fire's when a DST change falls in between.
                let utc = fire.utc - self.prewarm;
                return Some(FireTime {
                    utc,
                    local: utc.with_timezone(&self.cron.zone()).fixed_offset(),
                });
            }
            cursor = fire.utc;
        }
        None
    }

    /// Every fire instant strictly after `after`, oldest first. Endless for most schedules:
    /// bound it (`take_while`, `take`).
    pub fn fires_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_fire_after(after).map(|f| f.utc), |fire| {
            self.next_fire_after(*fire).map(|f| f.utc)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record() -> ScheduleRecord {
        ScheduleRecord {
            name: "dev-nights".into(),
            cron: "0 19 * * 1-5".into(),
            tz: "Europe/Berlin".into(),
            action: "stop".into(),
            selector: "tag:env=dev".into(),
            enabled: true,
            dry_run: false,
            prewarm_minutes: 0,
            skip_dates: vec![],
            default_start: None,
            next_fire: None,
            hold: None,
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = fn(&mut ScheduleRecord);
        let cases: Vec<(Mutation, &str)> = vec![
            (|r| r.name = "bad name".into(), "name"),
            (|r| r.cron = "61 * * * *".into(), "cron"),
            (|r| r.tz = "Mars/Olympus".into(), "tz"),
            (|r| r.action = "pause".into(), "action"),
            (|r| r.selector = "env=dev".into(), "select"),
            (|r| r.skip_dates = vec!["24.12.2027".into()], "skip-dates"),
            (
                |r| r.default_start = Some(Sizes::new(2, 1, 1)),
                "default-start",
            ),
        ];
        for (mutate, field) in cases {
            let mut r = record();
            mutate(&mut r);
            assert_eq!(Schedule::try_from(r).unwrap_err().field(), field);
        }
    }

    #[test]
    fn a_prewarmed_fire_across_a_dst_change_shows_the_offset_in_force_then() {
        let mut r = record();
        r.cron = "30 3 28 3 *".into();
        r.tz = "Europe/Berlin".into();
        r.prewarm_minutes = 120;
        let s = Schedule::try_from(r).unwrap();
        let fire = s
            .next_fire_after(Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap())
            .unwrap();
        assert_eq!(fire.utc.to_rfc3339(), "2027-03-27T23:30:00+00:00");
        assert_eq!(fire.local.to_rfc3339(), "2027-03-28T00:30:00+01:00");
    }

    #[test]
    fn durations_too_large_to_represent_are_refused_not_panicked_on() {
        assert_eq!(parse_duration("99999999999999h"), None);
        assert_eq!(parse_duration("99999999999999999"), None);
        assert_eq!(parse_duration("9999999999999999s"), None);
        assert_eq!(parse_duration("106751991167d1d"), None);
    }

    #[test]
    fn skip_dates_and_prewarm_shift_the_next_fire() {
        let mut r = record();
        r.skip_dates = vec!["2027-01-04".into()];
        r.prewarm_minutes = 15;
        let s = Schedule::try_from(r).unwrap();
        let after = Utc.with_ymd_and_hms(2027, 1, 4, 0, 0, 0).unwrap();
        // Monday 4 January is skipped; Tuesday 19:00 CET = 18:00Z, minus 15 minutes.
        assert_eq!(
            s.next_fire_after(after).unwrap().utc,
            Utc.with_ymd_and_hms(2027, 1, 5, 17, 45, 0).unwrap()
        );
    }

    #[test]
    fn durations_parse_in_operator_units() {
        assert_eq!(parse_duration("15m"), Some(Duration::minutes(15)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("45"), Some(Duration::minutes(45)));
        assert_eq!(parse_duration("2x"), None);
        assert_eq!(parse_duration("h"), None);
    }

    #[test]
    fn schedules_round_trip_through_their_record() {
        let s = Schedule::try_from(record()).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["tz"], "Europe/Berlin");
        assert_eq!(serde_json::from_value::<Schedule>(json).unwrap(), s);
    }
}
