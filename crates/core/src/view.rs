//! The JSON shapes of the operator's contract: what `curfew ... --output json` prints and what
//! the console's `/api/` answers. Kept in one place so the command line and the console can
//! never drift apart (times as `2027-03-28T01:00:00Z` and `2027-03-28T03:00:00+02:00`).

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::cron::FireTime;
use crate::decision::Action;
use crate::operation::{OpSource, Operation, Task, TaskStatus};
use crate::ports::PlannedChange;
use crate::target::{Sizes, Target};

/// `2027-03-28T01:00:00Z`.
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2027-03-28T03:00:00+02:00`.
pub fn local(t: DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A fire time as the contract's JSON: `{"utc": "...Z", "local": "...+hh:mm"}`.
#[derive(Debug, Serialize)]
pub struct FireJson {
    /// The instant in UTC.
    pub utc: String,
    /// The same instant in the schedule's zone, with its offset.
    pub local: String,
}

impl From<&FireTime> for FireJson {
    fn from(fire: &FireTime) -> Self {
        FireJson {
            utc: utc(fire.utc),
            local: local(fire.local),
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
