//! `curfew dlq [list | redrive]`: the task dead-letter queue. What is listed and how a redrive
//! reopens tasks are `curfew_core::service::dlq`'s; this module reads the options and prints.

use anyhow::{Context, Result};
use curfew_aws::dead_letters::PEEK_VISIBILITY_SECONDS;
use curfew_core::service::dlq::{self, DeadLetterEntry, RedriveReport};

use crate::cli::{DlqCommand, GlobalOpts, Output};
use crate::connect::{self, Queues};
use crate::output::{self, outln};

/// Runs a dlq command.
pub async fn run(command: DlqCommand, opts: &GlobalOpts) -> Result<()> {
    match command {
        DlqCommand::List { limit } => list(usize::from(limit), opts).await,
        DlqCommand::Redrive => redrive(opts).await,
    }
}

async fn list(limit: usize, opts: &GlobalOpts) -> Result<()> {
    let dead_letters = connect::dead_letters(opts).await?;
    let store = connect::store(opts).await?;
    let entries = dlq::list(store.as_ref(), &dead_letters, limit)
        .await
        .with_context(|| format!("listing the task dead-letter queue {}", dead_letters.url()))?;
    match opts.output {
        Output::Json => output::print_json(&entries),
        Output::Table if entries.is_empty() => outln!("the task dead-letter queue is empty"),
        Output::Table => {
            let mut table = output::table([
                "message",
                "operation",
                "target",
                "action",
                "receives",
                "task",
                "reason",
            ]);
            for entry in &entries {
                table.add_row(row(entry));
            }
            outln!("{table}")?;
            outln!(
                "{} listed{}; nothing deleted (each was received with a {PEEK_VISIBILITY_SECONDS} s \
                 visibility timeout and made visible again at once). Resume them with `curfew dlq redrive`.",
                output::count(entries.len() as u64, "message"),
                if entries.len() == limit {
                    format!(" (the first {limit}: --limit)")
                } else {
                    String::new()
                },
            )
        }
    }
}

fn row(entry: &DeadLetterEntry) -> Vec<String> {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    vec![
        entry.message_id.clone(),
        or_dash(entry.op_id.clone()),
        or_dash(entry.target.clone()),
        or_dash(entry.action.map(|a| a.to_string())),
        entry.receive_count.to_string(),
        or_dash(entry.task_status.map(|s| s.to_string())),
        entry
            .problem
            .clone()
            .or_else(|| entry.reason.clone())
            .unwrap_or_default(),
    ]
}

async fn redrive(opts: &GlobalOpts) -> Result<()> {
    let dead_letters = connect::dead_letters(opts).await?;
    let report = if opts.is_local() {
        // The dispatcher stands in for the workers' event source: it works what was moved.
        let (hub, sdk) = connect::hub(opts, true).await?;
        let report = dlq::redrive(&hub, &dead_letters)
            .await
            .context("redriving the task dead-letter queue")?;
        let (router, task) = opts.queues()?;
        let drained =
            connect::dispatcher(&hub, &sdk, &Queues { router, task }, opts.max_concurrency)
                .drain()
                .await
                .context("working the redriven tasks locally")?;
        if drained.dead_lettered > 0 {
            eprintln!(
                "warning: {} dead-lettered again (see `curfew dlq list`)",
                output::count(drained.dead_lettered as u64, "task")
            );
        }
        report
    } else {
        let hub = connect::task_hub(opts).await?;
        dlq::redrive(&hub, &dead_letters)
            .await
            .context("redriving the task dead-letter queue")?
    };
    print_report(&report, opts.output)
}

fn print_report(report: &RedriveReport, out: Output) -> Result<()> {
    match out {
        Output::Json => output::print_json(report),
        Output::Table => {
            outln!(
                "moved {} to the task queue; reopened {}{}{}",
                output::count(report.moved, "message"),
                output::count(report.reopened.len() as u64, "dead-lettered task"),
                if report.plans > 0 {
                    format!(
                        "; {} to plan again",
                        output::count(report.plans, "account plan")
                    )
                } else {
                    String::new()
                },
                if report.not_tasks > 0 {
                    format!(
                        "; {} not task messages (moved as they are)",
                        report.not_tasks
                    )
                } else {
                    String::new()
                }
            )?;
            for task in &report.reopened {
                outln!("  {} {}", task.op_id, task.target)?;
            }
            Ok(())
        }
    }
}
