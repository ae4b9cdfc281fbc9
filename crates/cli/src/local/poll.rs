//! `curfew local run`: the poller on the real clock against the emulator. Every minute it fires
//! the due schedules (`curfew_core::service::poller::tick`) and drains the queues through the
//! real router and worker code: EventBridge and the SQS event source mappings, locally.

use std::time::Duration as StdDuration;

use anyhow::{Context, Result};
use chrono::{DurationRound, TimeDelta, Utc};
use curfew_core::service::poller::{self, TickReport};
use serde::Serialize;

use crate::cli::{GlobalOpts, Output};
use crate::connect::{self, Queues};
use crate::error::bad_input;
use crate::output::{self, outln};
use crate::progress;

/// One tick, as JSON.
#[derive(Serialize)]
struct TickJson<'a> {
    at: String,
    #[serde(flatten)]
    report: &'a TickReport,
}

/// Ticks every minute (or once) until Ctrl-C.
pub async fn run(opts: &GlobalOpts, once: bool) -> Result<()> {
    if !opts.is_local() {
        return Err(bad_input(
            "local run needs the emulator: set --endpoint or AWS_ENDPOINT_URL (eval \"$(curfew local up)\"); in AWS, EventBridge runs the poller",
        ));
    }
    let (hub, sdk) = connect::hub(opts, true).await?;
    let (router, task) = opts.queues()?;
    let dispatcher =
        connect::dispatcher(&hub, &sdk, &Queues { router, task }, opts.max_concurrency);
    if !once && opts.output == Output::Table {
        eprintln!("curfew local run: the poller ticks every minute; Ctrl-C stops it");
    }
    loop {
        let at = Utc::now();
        let report = poller::tick(&hub).await.context("running the poller")?;
        dispatcher
            .drain()
            .await
            .context("draining the queues through the router and worker")?;
        match opts.output {
            Output::Json if once => output::print_json(&TickJson {
                at: output::utc(at),
                report: &report,
            })?,
            Output::Json => outln!(
                "{}",
                serde_json::to_string(&TickJson {
                    at: output::utc(at),
                    report: &report
                })?
            )?,
            Output::Table => {
                for id in &report.created {
                    let op = progress::load(hub.store.as_ref(), id).await?;
                    let c = op.counts;
                    outln!(
                        "{} fired {id}: {} {} {} ({} changed, {} skipped, {} failed, {} dead-lettered)",
                        output::utc(at),
                        op.action,
                        op.selector,
                        op.status,
                        c.succeeded,
                        c.skipped,
                        c.failed,
                        c.dead_lettered
                    )?;
                }
                for missed in &report.missed {
                    outln!(
                        "{} missed, older than the catch-up window, not fired: {missed}",
                        output::utc(at)
                    )?;
                }
                for broken in &report.broken {
                    outln!(
                        "{} not fired: {broken} (delete it with curfew schedule delete {} and add it again)",
                        output::utc(at),
                        broken.name
                    )?;
                }
                if once && report.created.is_empty() {
                    outln!("{} nothing due", output::utc(at))?;
                }
            }
        }
        if once {
            return Ok(());
        }
        let now = Utc::now();
        let next_minute = now
            .duration_trunc(TimeDelta::minutes(1))
            .map(|m| m + TimeDelta::minutes(1))
            .unwrap_or(now + TimeDelta::minutes(1));
        let wait = (next_minute - now)
            .to_std()
            .unwrap_or(StdDuration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
