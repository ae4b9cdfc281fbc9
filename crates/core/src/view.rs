//! The JSON shapes of the operator's contract: what `curfew ... --output json` prints and what
//! the console's `/api/` answers. Kept in one place so the command line and the console can
//! never drift apart (times as `2027-03-28T01:00:00Z` and `2027-03-28T03:00:00+02:00`).

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::cron::FireTime;
use crate::decision::Action;
use crate::operation::{OpSource, Operation, Task, TaskStatus};
use crate::ports::PlannedChange;
use crate::schedule::{Fire, ScheduleList, ScheduleRecord};
use crate::target::{Sizes, Target};

/// `2027-03-28T01:00:00Z`.
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2027-03-28T03:00:00+02:00`.
pub fn local(t: DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A fire time as the contract's JSON: `{"utc": "...Z", "local": "...+hh:mm"}`, with what it
/// does where that is known (a stored schedule's fires) and why it is skipped if it is.
#[derive(Debug, Serialize)]
pub struct FireJson {
    /// The instant in UTC.
    pub utc: String,
    /// The same instant in the schedule's zone, with its offset.
    pub local: String,
    /// `stop` or `start`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Why it does not fire (`calendar de-holidays`, `skip date`), when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl From<&FireTime> for FireJson {
    fn from(fire: &FireTime) -> Self {
        FireJson {
            utc: utc(fire.utc),
            local: local(fire.local),
            action: None,
            skipped: None,
        }
    }
}

impl From<&Fire> for FireJson {
    fn from(fire: &Fire) -> Self {
        FireJson {
            action: Some(fire.action),
            skipped: fire.skipped.as_ref().map(ToString::to_string),
            ..FireJson::from(&fire.time)
        }
    }
}

/// A task with its target key, for scripts.
#[derive(Debug, Serialize)]
pub struct TaskJson<'a> {
    /// `account#region#kind#[cluster/]name`.
    pub key: String,
    /// The task record.
    #[serde(flatten)]
    pub task: &'a Task,
}

/// A task given up for the dead-letter queue: which target, and why.
#[derive(Debug, Serialize)]
pub struct DeadLetteredJson<'a> {
    /// `account#region#kind#[cluster/]name`.
    pub key: String,
    /// What its message's last receive was waiting for.
    pub reason: Option<&'a str>,
}

/// An operation and its tasks: what `ops show`, `stop --wait` and `audit list` print as JSON.
#[derive(Debug, Serialize)]
pub struct OperationJson<'a> {
    /// The operation.
    pub operation: &'a Operation,
    /// Its tasks, by target key.
    pub tasks: Vec<TaskJson<'a>>,
    /// Its DEAD_LETTERED tasks (also in `tasks`), by target key: their messages wait in the
    /// task dead-letter queue for `curfew dlq redrive`.
    pub dead_lettered: Vec<DeadLetteredJson<'a>>,
}

impl<'a> OperationJson<'a> {
    /// The JSON view of `op` and `tasks`.
    pub fn new(operation: &'a Operation, tasks: &'a [Task]) -> Self {
        OperationJson {
            operation,
            tasks: tasks
                .iter()
                .map(|task| TaskJson {
                    key: task.target.key(),
                    task,
                })
                .collect(),
            dead_lettered: dead_lettered(tasks)
                .map(|task| DeadLetteredJson {
                    key: task.target.key(),
                    reason: task.reason.as_deref(),
                })
                .collect(),
        }
    }
}

/// The DEAD_LETTERED tasks among `tasks`.
pub fn dead_lettered(tasks: &[Task]) -> impl Iterator<Item = &Task> {
    tasks
        .iter()
        .filter(|task| task.status == TaskStatus::DeadLettered)
}

/// Who started an operation, in a word.
pub fn source(op: &Operation) -> String {
    match &op.source {
        OpSource::Schedule { name, .. } => format!("schedule {name}"),
        OpSource::Manual => "manual".to_string(),
        OpSource::Check => "drift check".to_string(),
        OpSource::Enforce { name } => format!("enforce {name}"),
    }
}

/// What an operation does, in a word or two: `stop`, `start (dry run)`, `check (drift)`.
pub fn action(op: &Operation) -> String {
    if op.check {
        "check (drift)".to_string()
    } else {
        format!(
            "{}{}",
            op.action,
            if op.dry_run { " (dry run)" } else { "" }
        )
    }
}

/// One planned change as `curfew plan --output json` prints it.
#[derive(Debug, Serialize)]
pub struct PlannedChangeJson<'a> {
    /// `account#region#kind#[cluster/]name`.
    pub key: String,
    /// The target.
    pub target: &'a Target,
    /// Stop or start.
    pub action: Action,
    /// True when the target would be scaled.
    pub change: bool,
    /// Sizes now.
    pub live: Sizes,
    /// Sizes after, if it would change.
    pub to: Option<Sizes>,
    /// Why not, if it would not.
    pub reason: Option<&'a str>,
    /// What it would hold or undo besides sizes, one line each.
    pub steps: &'a [String],
}

impl<'a> From<&'a PlannedChange> for PlannedChangeJson<'a> {
    fn from(c: &'a PlannedChange) -> Self {
        PlannedChangeJson {
            key: c.target.key(),
            target: &c.target,
            action: c.action,
            change: c.to.is_some(),
            live: c.live,
            to: c.to,
            reason: c.reason.as_deref(),
            steps: &c.steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fire_times_print_in_the_contract_format() {
        let utc_t = Utc.with_ymd_and_hms(2027, 3, 28, 1, 0, 0).unwrap();
        let fire = FireTime {
            utc: utc_t,
            local: utc_t
                .with_timezone(&chrono_tz::Europe::Berlin)
                .fixed_offset(),
        };
        let json = serde_json::to_value(FireJson::from(&fire)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"utc": "2027-03-28T01:00:00Z", "local": "2027-03-28T03:00:00+02:00"})
        );
    }
}

/// One row of `schedule list --output json` and `GET /api/schedules`: a schedule's record, or a
/// stored schedule that no longer reads as one, marked `"broken": true` with its problem.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ScheduleRowJson {
    /// A schedule that reads (boxed: a record is far larger than a broken row).
    Schedule(Box<ScheduleRecord>),
    /// A stored schedule that does not.
    Broken {
        /// The name in its key.
        name: String,
        /// Always true.
        broken: bool,
        /// What is wrong with it, naming the field.
        problem: String,
    },
}

impl ScheduleRowJson {
    /// Every schedule of `list`, the broken ones among them, sorted by name.
    pub fn rows(list: &ScheduleList) -> Vec<ScheduleRowJson> {
        let mut rows: Vec<(String, ScheduleRowJson)> = list
            .schedules
            .iter()
            .map(|s| {
                let row = ScheduleRowJson::Schedule(Box::new(s.clone().into()));
                (s.name.clone(), row)
            })
            .chain(list.broken.iter().map(|b| {
                let row = ScheduleRowJson::Broken {
                    name: b.name.clone(),
                    broken: true,
                    problem: b.problem.clone(),
                };
                (b.name.clone(), row)
            }))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter().map(|(_, row)| row).collect()
    }
}
