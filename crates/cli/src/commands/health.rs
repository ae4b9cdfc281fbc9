//! `curfew health`: takes the readings (state table, queues) and prints the lights. Every rule
//! is `curfew_core::health`'s; this module only gathers plain data for it, and exits 1 when a
//! light is red.

use anyhow::Result;
use chrono::{DateTime, Utc};
use curfew_aws::SqsQueueInspector;
use curfew_core::health::{
    accounts_check, operations_check, poller_check, queue_check, schedules_check, unreadable,
    Check, HealthReport, HubQueue, Light, QueueInspector,
};
use curfew_core::operation::Operation;
use curfew_core::ports::{PortResult, StateStore};

use crate::cli::{GlobalOpts, HealthArgs, Output};
use crate::connect;
use crate::output::{self, outln};

/// Operations read per page while looking for unfinished ones (the most one Query returns).
const OPERATIONS_PAGE: usize = 1000;

/// At least one light is red: the report is printed, and the command fails naming the checks.
#[derive(Debug, thiserror::Error)]
#[error("health is red: {0}")]
pub struct Red(String);

/// Runs `curfew health`.
pub async fn run(args: HealthArgs, opts: &GlobalOpts) -> Result<()> {
    let (router, task) = opts.queues()?;
    let store = connect::store(opts).await?;
    let sdk = connect::sdk(opts).await?;
    let queues = SqsQueueInspector::new(aws_sdk_sqs::Client::new(&sdk));
    let report = gather(
        store.as_ref(),
        &queues,
        [(HubQueue::Router, router), (HubQueue::Task, task)],
        &args,
        Utc::now(),
    )
    .await;
    match opts.output {
        Output::Json => output::print_json(&report)?,
        Output::Table => print_table(&report)?,
    }
    if report.status == Light::Red {
        let red: Vec<&str> = report.red().map(|c| c.check.as_str()).collect();
        return Err(Red(red.join(", ")).into());
    }
    Ok(())
}

/// Takes every reading at once and applies the rules. A reading that fails turns its checks
/// red ([`unreadable`]) rather than ending the command: the other lights still show.
async fn gather(
    store: &dyn StateStore,
    queues: &dyn QueueInspector,
    urls: [(HubQueue, &str); 2],
    args: &HealthArgs,
    now: DateTime<Utc>,
) -> HealthReport {
    let (router, task, schedules, tick, accounts, contacts, operations) = tokio::join!(
        inspect(queues, urls[0]),
        inspect(queues, urls[1]),
        store.list_schedules(),
        store.poller_tick(),
        store.list_accounts(),
        store.account_contacts(),
        unfinished_operations(store),
    );
    let mut checks: Vec<Check> = vec![router, task];
    checks.push(match (&tick, &schedules) {
        (Ok(tick), Ok(list)) => {
            let enabled = list.schedules.iter().filter(|s| s.enabled).count();
            poller_check(tick.as_ref(), enabled, now, args.lag_bound)
        }
        (Err(e), _) | (_, Err(e)) => unreadable("poller", e),
    });
    checks.push(match (&accounts, &contacts) {
        (Ok(accounts), Ok(contacts)) => {
            let ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
            accounts_check(&ids, contacts)
        }
        (Err(e), _) | (_, Err(e)) => unreadable("accounts", e),
    });
    checks.push(match &operations {
        Ok(ops) => operations_check(ops, now, args.stuck_after),
        Err(e) => unreadable("operations", e),
    });
    checks.push(match &schedules {
        Ok(list) => schedules_check(list),
        Err(e) => unreadable("schedules", e),
    });
    HealthReport::new(checks)
}

async fn inspect(queues: &dyn QueueInspector, (queue, url): (HubQueue, &str)) -> Check {
    match queues.inspect(url).await {
        Ok(reading) => queue_check(queue, &reading),
        Err(e) => unreadable(queue.check(), &e),
    }
}

/// Every operation not yet final, from the operations index page by page (never a Scan): an
/// operation stuck for days is as stuck as one from an hour ago, so every page is read.
async fn unfinished_operations(store: &dyn StateStore) -> PortResult<Vec<Operation>> {
    let mut unfinished = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_operations_page(OPERATIONS_PAGE, after.as_deref())
            .await?;
        unfinished.extend(
            page.operations
                .into_iter()
                .filter(|op| !op.status.is_final()),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(unfinished),
        }
    }
}

fn print_table(report: &HealthReport) -> Result<()> {
    let mut table = output::table(["check", "status", "detail"]);
    for check in &report.checks {
        table.add_row(vec![
            check.check.clone(),
            check.status.to_string(),
            check.detail.clone(),
        ]);
    }
    outln!("{table}")?;
    outln!("health: {}", report.status)
}
