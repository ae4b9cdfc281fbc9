//! Verifying the whole audit trail against the store: every chain re-hashed (and its head's
//! signature checked with the key), then every finished operation against its task records and
//! the saved baselines. `curfew audit verify` prints the report; the console shows it on its
//! audit page. The rules are [`crate::trail::verify_chain`] and [`crate::audit`].

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::audit::{self, LastChanges, Problem};
use crate::operation::{Operation, Task};
use crate::ports::{PortResult, StateStore};
use crate::trail::{verify_chain, AuditKey, AuditRecord, ChainHead, ChainProblem};

/// Reads in flight at once (chains, task lists, baselines).
const CONCURRENCY: usize = 8;
/// Operations read per Query of the operations index.
const PAGE: usize = 100;

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Chains read.
    pub chains: u64,
    /// Records in them.
    pub records: u64,
    /// Whether the heads' signatures were checked (a key was given).
    pub signatures_checked: bool,
    /// Each broken chain's first problem.
    pub chain_problems: Vec<ChainProblem>,
    /// Finished operations checked.
    pub operations: u64,
    /// Their tasks.
    pub tasks: u64,
    /// What the operations, tasks and baselines disagree on.
    pub problems: Vec<Problem>,
    /// Targets with work in flight, not compared with their baseline.
    #[serde(skip)]
    pub in_flight: usize,
}

impl VerifyReport {
    /// Problems of either kind.
    pub fn problem_count(&self) -> usize {
        self.chain_problems.len() + self.problems.len()
    }
}

/// Every chain with its head, read concurrently.
pub async fn chains(store: &dyn StateStore) -> PortResult<Vec<(ChainHead, Vec<AuditRecord>)>> {
    let heads = store.audit_heads().await?;
    stream::iter(heads.into_iter().map(|head| async move {
        let records = store.audit_chain(&head.chain).await?;
        Ok((head, records))
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await
}

/// Every chain's first problem. `chains`: each chain's head (if any) and records.
pub fn check_chains<'a>(
    chains: impl IntoIterator<Item = (&'a str, Option<&'a ChainHead>, &'a [AuditRecord])>,
    key: Option<&AuditKey>,
) -> Vec<ChainProblem> {
    chains
        .into_iter()
        .filter_map(|(chain, head, records)| verify_chain(chain, records, head, key).err())
        .collect()
}

/// Each operation with its tasks, in the order given.
async fn with_tasks(
    store: &dyn StateStore,
    ops: Vec<Operation>,
) -> PortResult<Vec<(Operation, Vec<Task>)>> {
    stream::iter(ops.into_iter().map(|op| async move {
        let tasks = store.list_tasks(&op.id).await?;
        Ok((op, tasks))
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await
}

/// Verifies the trail in `store`: its chains (and with `key` their heads' signatures), then
/// every finished operation, one page of the operations index at a time.
pub async fn verify_store(
    store: &dyn StateStore,
    key: Option<&AuditKey>,
) -> PortResult<VerifyReport> {
    let chains = chains(store).await?;
    let mut report = VerifyReport {
        chains: chains.len() as u64,
        records: chains.iter().map(|(_, r)| r.len() as u64).sum(),
        signatures_checked: key.is_some(),
        chain_problems: check_chains(
            chains
                .iter()
                .map(|(head, records)| (head.chain.as_str(), Some(head), records.as_slice())),
            key,
        ),
        ..VerifyReport::default()
    };
    let mut changes = LastChanges::default();
    let mut next: Option<String> = None;
    loop {
        let page = store.list_operations_page(PAGE, next.as_deref()).await?;
        for (op, tasks) in with_tasks(store, page.operations).await? {
            // Unfinished operations are not in the trail, but their tasks say which targets
            // are changing now and which changes already happened.
            if op.status.is_final() {
                report.operations += 1;
                report.tasks += tasks.len() as u64;
                report.problems.extend(audit::check_operation(&op, &tasks));
            }
            changes.record(&op, &tasks);
        }
        match page.next {
            Some(token) => next = Some(token),
            None => break,
        }
    }
    let settled: Vec<_> = changes.settled().collect();
    // Owned keys: a future borrowing from `settled` would not be `Send` for every lifetime, which
    // a web handler (the console's) needs.
    let keys: Vec<String> = settled.iter().map(|(key, _)| key.to_string()).collect();
    let baselines: Vec<_> = stream::iter(
        keys.into_iter()
            .map(|key| async move { store.get_baseline(&key).await }),
    )
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;
    report.problems.extend(
        settled
            .iter()
            .zip(&baselines)
            .filter_map(|((key, last), baseline)| {
                changes.check_baseline(key, last, baseline.as_ref())
            }),
    );
    report.in_flight = changes.in_flight();
    Ok(report)
}
