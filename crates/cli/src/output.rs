//! Printing: comfy-table tables for people, JSON for scripts, and the JSON shapes the contract
//! promises (times as `2027-03-28T01:00:00Z` and `2027-03-28T03:00:00+02:00`).
//!
//! Command output goes through [`outln!`] and [`print_json`], never `println!`: when the reader
//! of stdout goes away (`curfew ops | head -1`) they return [`StdoutClosed`] instead of
//! panicking, and `main` ends the command quietly, as Unix tools do.

use std::fmt;
use std::io::{self, Write};

use anyhow::Result;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use curfew_core::operation::{Operation, Task};
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

pub use curfew_core::view::{dead_lettered, local, source, utc, FireJson, OperationJson};

/// `0/4/2` (min/max/desired), or `-`.
pub fn sizes(s: Option<Sizes>) -> String {
    s.map_or_else(|| "-".to_string(), |s| s.to_string())
}

/// The operation's one-row summary columns.
pub fn operation_row(op: &Operation) -> Vec<String> {
    let c = op.counts;
    vec![
        op.id.clone(),
        curfew_core::view::action(op),
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
