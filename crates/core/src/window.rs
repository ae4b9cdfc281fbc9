//! Sleep windows: the week as people think of it ("asleep Mon-Fri 19:00-07:00 and all weekend"),
//! in a time zone, turned into the stop and start fires of one schedule.
//!
//! A [`Week`] is the 7 x 1440 minutes from Monday 00:00 to Sunday 24:00 local time, each asleep
//! or awake; it wraps (Sunday night runs into Monday morning). It is written either as window
//! text ([`Week::parse`]) or as a 7 x 24 / 7 x 48 grid ([`Week::parse_grid`]). Its edges become
//! fixed-time cron expressions, one per edge time of day: a stop where sleep begins, a start
//! where it ends. So a window schedule fires exactly as the equivalent cron pair does and keeps
//! every daylight-saving rule of [`crate::cron`]: an edge inside a skipped hour fires once right
//! after the jump, an edge inside a repeated hour fires once at its first occurrence.
//!
//! ```
//! use curfew_core::window::Week;
//!
//! let week = Week::parse("Mon-Fri 19:00-07:00, Sat-Sun all-day").unwrap();
//! let (stops, starts) = week.edge_crons();
//! // One sleep from Friday 19:00 to Monday 07:00, and every weeknight: the classic pair.
//! assert_eq!(stops, ["0 19 * * 1-5"]);
//! assert_eq!(starts, ["0 7 * * 1-5"]);
//! ```

mod grid;
mod text;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;

use crate::cron::{CronError, CronSpec, FireTime};
use crate::decision::Action;

pub use grid::GridError;

/// Minutes in a day.
pub const DAY: usize = 24 * 60;
/// Minutes in a week.
pub const WEEK: usize = 7 * DAY;
/// Day names, Monday first, as window text and grids write them.
pub const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Why window text or a grid was refused. The message names the term, row or cell at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The window text does not parse.
    #[error("invalid window {text:?}: {reason}")]
    Text {
        /// The text as given.
        text: String,
        /// What is wrong, naming the term.
        reason: String,
    },
    /// The grid does not parse.
    #[error(transparent)]
    Grid(#[from] GridError),
    /// The week is asleep all the time: nothing would ever wake it.
    #[error(
        "the window is asleep all week: it never wakes (use a stop schedule with --cron for that)"
    )]
    NeverAwake,
    /// The week is never asleep.
    #[error("the window is never asleep")]
    NeverAsleep,
}

/// The week's 10,080 minutes, each asleep or awake, Monday 00:00 local time first.
#[derive(Clone, PartialEq, Eq)]
pub struct Week {
    asleep: Vec<bool>,
}

impl std::fmt::Debug for Week {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Week({:?})", self.to_text())
    }
}

/// Where sleep begins or ends: a minute of the week and which way it turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Minute of the week, 0 = Monday 00:00.
    pub minute: usize,
    /// `Stop` where sleep begins, `Start` where it ends.
    pub action: Action,
}

impl Week {
    fn from_minutes(asleep: Vec<bool>) -> Result<Week, WindowError> {
        debug_assert_eq!(asleep.len(), WEEK);
        if asleep.iter().all(|a| *a) {
            return Err(WindowError::NeverAwake);
        }
        if !asleep.iter().any(|a| *a) {
            return Err(WindowError::NeverAsleep);
        }
        Ok(Week { asleep })
    }

    /// Whether minute `minute` of the week (0 = Monday 00:00) is asleep.
    pub fn asleep(&self, minute: usize) -> bool {
        self.asleep[minute % WEEK]
    }

    /// Whether the local wall-clock time `local` falls in the asleep part of the week.
    pub fn asleep_at(&self, local: NaiveDateTime) -> bool {
        let day = local.weekday().num_days_from_monday() as usize;
        self.asleep(day * DAY + local.hour() as usize * 60 + local.minute() as usize)
    }

    /// Minutes asleep per week.
    pub fn asleep_minutes(&self) -> usize {
        self.asleep.iter().filter(|a| **a).count()
    }

    /// Every edge of the week, in order from Monday 00:00; the week wraps, so Sunday 23:59
    /// asleep and Monday 00:00 awake is a start at Monday 00:00.
    pub fn edges(&self) -> Vec<Edge> {
        (0..WEEK)
            .filter_map(|m| {
                let before = self.asleep[(m + WEEK - 1) % WEEK];
                match (before, self.asleep[m]) {
                    (false, true) => Some(Edge {
                        minute: m,
                        action: Action::Stop,
                    }),
                    (true, false) => Some(Edge {
                        minute: m,
                        action: Action::Start,
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// The week's edges as fixed-time cron expressions: the stops and the starts, one per time
    /// of day, naming the weekdays it falls on (cron numbering, Sunday 0).
    pub fn edge_crons(&self) -> (Vec<String>, Vec<String>) {
        let edges = self.edges();
        let crons = |action: Action| {
            let mut by_time: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
            for e in edges.iter().filter(|e| e.action == action) {
                // Cron weekdays count from Sunday = 0; ours from Monday = 0.
                let cron_day = (e.minute / DAY + 1) % 7;
                by_time.entry(e.minute % DAY).or_default().push(cron_day);
            }
            by_time
                .into_iter()
                .map(|(time, mut days)| {
                    days.sort_unstable();
                    format!("{} {} * * {}", time % 60, time / 60, day_list(&days))
                })
                .collect::<Vec<_>>()
        };
        (crons(Action::Stop), crons(Action::Start))
    }
}

/// Sorted cron weekdays as a cron list, runs of three or more as ranges: `1-5`, `0,6`.
fn day_list(days: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}-{}", days[i], days[j]));
        } else {
            parts.extend(days[i..=j].iter().map(|d| d.to_string()));
        }
        i = j + 1;
    }
    parts.join(",")
}

/// A week bound to a time zone: the fires of a window schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    week: Week,
    zone: Tz,
    stops: Vec<CronSpec>,
    starts: Vec<CronSpec>,
    /// Local midnight, where a date on an awake-on calendar begins and ends (boxed: a parsed
    /// expression is large, and a window sits in every schedule that has one).
    midnight: Box<CronSpec>,
}

impl Window {
    /// Binds `week` to the IANA zone named `zone`.
    pub fn new(week: Week, zone: &str) -> Result<Window, CronError> {
        let (stops, starts) = week.edge_crons();
        let bind = |exprs: Vec<String>| -> Result<Vec<CronSpec>, CronError> {
            exprs.iter().map(|e| CronSpec::parse(e, zone)).collect()
        };
        let stops = bind(stops)?;
        let starts = bind(starts)?;
        let midnight = Box::new(CronSpec::parse("0 0 * * *", zone)?);
        Ok(Window {
            week,
            zone: midnight.zone(),
            stops,
            starts,
            midnight,
        })
    }

    /// The week.
    pub fn week(&self) -> &Week {
        &self.week
    }

    /// The zone the week is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The cron expressions of the stop edges and of the start edges.
    pub fn crons(&self) -> (Vec<&str>, Vec<&str>) {
        (
            self.stops.iter().map(CronSpec::expression).collect(),
            self.starts.iter().map(CronSpec::expression).collect(),
        )
    }

    /// Whether the week is asleep at the instant `at` (read as wall-clock time in its zone).
    pub fn asleep_at(&self, at: DateTime<Utc>) -> bool {
        self.week
            .asleep_at(at.with_timezone(&self.zone).naive_local())
    }

    /// The first local midnight strictly after `after` (with the fixed-time DST rules: a zone
    /// whose clocks jump at midnight has it right after the jump).
    pub fn next_midnight_after(&self, after: DateTime<Utc>) -> Option<FireTime> {
        self.midnight.next_after(after)
    }

    /// The first edge strictly after `after`, with what it does. Edges that land on the same
    /// instant (daylight saving can push a stop and a start inside a skipped hour onto the
    /// first minute after the jump) are one edge, doing what the week says for that minute; a
    /// schedule fires there only if the week differs from the minute before (see
    /// [`crate::schedule::Schedule::occurrences_after`]), so two such edges cancel out.
    pub fn next_edge_after(&self, after: DateTime<Utc>) -> Option<(FireTime, Action)> {
        let next = |specs: &[CronSpec]| {
            specs
                .iter()
                .filter_map(|s| s.next_after(after))
                .min_by_key(|f| f.utc)
        };
        match (next(&self.stops), next(&self.starts)) {
            (Some(stop), Some(start)) if stop.utc == start.utc => {
                let action = if self.asleep_at(stop.utc) {
                    Action::Stop
                } else {
                    Action::Start
                };
                Some((stop, action))
            }
            (Some(stop), Some(start)) if start.utc < stop.utc => Some((start, Action::Start)),
            (Some(stop), _) => Some((stop, Action::Stop)),
            (None, Some(start)) => Some((start, Action::Start)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests;
