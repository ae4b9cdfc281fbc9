//! Printing: comfy-table tables for people, JSON for scripts, and the JSON shapes the contract
//! promises (times as `2027-03-28T01:00:00Z` and `2027-03-28T03:00:00+02:00`).
//!
//! Command output goes through [`outln!`] and [`print_json`], never `println!`: when the reader
//! of stdout goes away (`curfew ops | head -1`) they return [`StdoutClosed`] instead of
//! panicking, and `main` ends the command quietly, as Unix tools do.

use std::fmt;
use std::io::{self, Write};

use anyhow::Result;
use chrono::{DateTime, FixedOffset, Utc};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use curfew_core::cron::FireTime;
use curfew_core::decision::Action;
use curfew_core::operation::{OpSource, Operation, Task, TaskStatus};
use curfew_core::schedule::Fire;
use curfew_core::target::Sizes;
use serde::Serialize;

/// A table with `header`, sized to the terminal when there is one.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

/// The reader of stdout has gone away: the command stops without an error line, since nobody
/// is left to read its output.
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed")]
pub struct StdoutClosed;

/// True when `err` is (or was caused by) [`StdoutClosed`].
pub fn stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// A failed write to stdout: [`StdoutClosed`] for a broken pipe, else the I/O error.
pub fn stdout_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("writing to stdout")
    }
}

/// Writes formatted text to stdout; what [`outln!`] expands to.
pub fn write_stdout(args: fmt::Arguments<'_>) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// `println!` for command output, returning `Result` (see [`StdoutClosed`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// `2027-03-28T01:00:00Z`.
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2027-03-28T03:00:00+02:00`.
pub fn local(t: DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// `0/4/2` (min/max/desired), or `-`.
pub fn sizes(s: Option<Sizes>) -> String {
    s.map_or_else(|| "-".to_string(), |s| s.to_string())
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

fn dead_lettered(tasks: &[Task]) -> impl Iterator<Item = &Task> {
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

/// The operation's one-row summary columns.
pub fn operation_row(op: &Operation) -> Vec<String> {
    let c = op.counts;
    vec![
        op.id.clone(),
        if op.check {
            "check (drift)".to_string()
        } else {
            format!(
                "{}{}",
                op.action,
                if op.dry_run { " (dry run)" } else { "" }
            )
        },
        op.selector.to_string(),
        source(op),
        utc(op.created_at),
        op.status.to_string(),
        format!("{}/{}", c.done(), c.total),
        c.succeeded.to_string(),
        c.skipped.to_string(),
        c.failed.to_string(),
        c.dead_lettered.to_string(),
    ]
}

/// Header matching [`operation_row`].
pub const OPERATION_HEADER: [&str; 11] = [
    "operation",
    "action",
    "select",
    "source",
    "created (UTC)",
    "status",
    "done",
    "ok",
    "skipped",
    "failed",
    "dead-lettered",
];

/// Prints an operation and its tasks as tables.
pub fn print_operation(op: &Operation, tasks: &[Task]) -> Result<()> {
    let mut summary = table(OPERATION_HEADER);
    summary.add_row(operation_row(op));
    outln!("{summary}")?;
    for note in &op.notes {
        outln!("note: {note}")?;
    }
    if tasks.is_empty() {
        return outln!("no tasks");
    }
    let mut t = table([
        "target", "account", "region", "kind", "status", "before", "after", "holds", "reason",
    ]);
    for task in tasks {
        t.add_row(vec![
            task.target.display_name(),
            task.target.account.clone(),
            task.target.region.clone(),
            task.target.kind.to_string(),
            task.status.to_string(),
            sizes(task.before),
            sizes(task.after),
            task.steps.join("\n"),
            task.reason.clone().unwrap_or_default(),
        ]);
    }
    outln!("{t}")?;
    let given_up: Vec<&Task> = dead_lettered(tasks).collect();
    if given_up.is_empty() {
        return Ok(());
    }
    outln!(
        "{} dead-lettered (their messages wait in the task dead-letter queue: `curfew dlq list`, then `curfew dlq redrive` once the cause is fixed):",
        count(given_up.len() as u64, "task")
    )?;
    let mut t = table(["target", "account", "region", "kind", "reason"]);
    for task in given_up {
        t.add_row(vec![
            task.target.display_name(),
            task.target.account.clone(),
            task.target.region.clone(),
            task.target.kind.to_string(),
            task.reason.clone().unwrap_or_default(),
        ]);
    }
    outln!("{t}")
}

/// `1 task`, `2 tasks`: a count with its noun, for summaries people read.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
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
