//! Ports: the small capabilities the services need from the outside world. Adapters in
//! `curfew-aws` implement them over DynamoDB, SQS, STS, Auto Scaling and EKS.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::account::{Account, SpokeRole};
use crate::decision::Action;
use crate::operation::{OpStatus, Operation, Shard, Task, TaskOutcome};
use crate::schedule::{Schedule, ScheduleList};
use crate::selector::Selector;
use crate::target::{LiveState, Sizes, Target};

/// How a call to the outside world failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttled or a transient service fault: retry with backoff.
    Throttled,
    /// The thing does not exist.
    NotFound,
    /// A conflicting change is in flight (EKS ResourceInUse): retry later.
    InUse,
    /// Not allowed (or the role cannot be assumed): retrying will not help.
    AccessDenied,
    /// The request was invalid: retrying will not help.
    Invalid,
    /// A conditional write's condition did not hold (the item already exists, is already
    /// final, is leased by someone else): an answer, not a fault.
    ConditionFailed,
    /// Anything else (network, unexpected response).
    Other,
}

impl ErrorKind {
    /// True when trying the same call again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::InUse | ErrorKind::Other
        )
    }
}

/// An error from a port, classified, with its source kept.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PortError {
    /// How to treat it.
    pub kind: ErrorKind,
    /// One line for people.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl PortError {
    /// An error with no underlying source.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PortError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error wrapping `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        PortError {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Result of a port call.
pub type PortResult<T> = Result<T, PortError>;

/// An override keeping matching targets awake.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Override {
    /// Id (time-ordered).
    pub id: String,
    /// Which targets.
    pub selector: Selector,
    /// Until when stops skip them.
    pub awake_until: DateTime<Utc>,
    /// When it was set.
    pub created_at: DateTime<Utc>,
}

impl Override {
    /// Until when the overrides in `overrides` keep `target` awake, counting only those still
    /// active at `now`: the latest matching expiry, if any.
    pub fn awake_until(
        overrides: &[Override],
        target: &Target,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        overrides
            .iter()
            .filter(|o| o.awake_until > now && o.selector.matches(target))
            .map(|o| o.awake_until)
            .max()
    }
}

/// A saved baseline.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Baseline {
    /// The target's key.
    pub target_key: String,
    /// Sizes before the stop.
    pub sizes: Sizes,
    /// The operation that saved it.
    pub op_id: String,
    /// When.
    pub saved_at: DateTime<Utc>,
}

/// One page of operations, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperationPage {
    /// The operations on this page.
    pub operations: Vec<Operation>,
    /// Where the next page starts, or `None` after the last page. Opaque: pass it back to
    /// [`OperationStore::list_operations_page`] as it is.
    pub next: Option<String>,
}

/// Result of asking for a target's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lease {
    /// Ours until it expires or we release it.
    Acquired,
    /// Another operation holds it: try again later.
    Held {
        /// The holding operation.
        by: String,
    },
    /// A newer operation has acted on this target: this one must not.
    Superseded {
        /// The newer operation.
        by: String,
    },
}

/// Spoke accounts.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Adds or replaces an account.
    async fn put_account(&self, account: &Account) -> PortResult<()>;
    /// One account.
    async fn get_account(&self, id: &str) -> PortResult<Option<Account>>;
    /// All accounts (a Query on one partition, not a Scan).
    async fn list_accounts(&self) -> PortResult<Vec<Account>>;
    /// Removes an account; false if it did not exist.
    async fn delete_account(&self, id: &str) -> PortResult<bool>;
}

/// Schedules.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Creates a schedule; fails with `ConditionFailed` if the name is taken.
    async fn create_schedule(&self, schedule: &Schedule) -> PortResult<()>;
    /// One schedule. A broken one ([`BrokenSchedule`](crate::schedule::BrokenSchedule)) is an
    /// `Invalid` error naming it and its problem.
    async fn get_schedule(&self, name: &str) -> PortResult<Option<Schedule>>;
    /// All schedules, the broken ones apart.
    async fn list_schedules(&self) -> PortResult<ScheduleList>;
    /// Deletes a schedule, broken or not; false if it did not exist.
    async fn delete_schedule(&self, name: &str) -> PortResult<bool>;
    /// Enables or disables, setting the next fire (None when disabled).
    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        next_fire: Option<DateTime<Utc>>,
    ) -> PortResult<bool>;
    /// Enabled schedules whose next fire is at or before `now`, from the due index; the broken
    /// ones in the index apart (they cannot fire, and must not keep the others from firing).
    async fn due_schedules(&self, now: DateTime<Utc>) -> PortResult<ScheduleList>;
    /// Moves a schedule's next fire from `expected` to `next`, only if it is still `expected`
    /// (two pollers cannot both advance it). False if someone else did.
    async fn advance_schedule(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> PortResult<bool>;
}

/// Operations, their shards and tasks.
#[async_trait]
pub trait OperationStore: Send + Sync {
    /// Creates an operation unless one with its id exists. True if this call created it.
    async fn create_operation(&self, op: &Operation) -> PortResult<bool>;
    /// One operation.
    async fn get_operation(&self, id: &str) -> PortResult<Option<Operation>>;
    /// One page of at most `limit` operations (1 to 1000), newest first, starting after the
    /// cursor a previous page returned (`None`: from the newest). Pages never overlap, so
    /// following `next` to the end reads every operation once.
    async fn list_operations_page(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> PortResult<OperationPage>;
    /// The newest `limit` operations first, following pages as needed.
    async fn list_operations(&self, limit: usize) -> PortResult<Vec<Operation>> {
        let mut operations = Vec::new();
        let mut after: Option<String> = None;
        while operations.len() < limit {
            let page = self
                .list_operations_page(limit - operations.len(), after.as_deref())
                .await?;
            operations.extend(page.operations);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        operations.truncate(limit);
        Ok(operations)
    }
    /// Records the shard count and moves the operation to RUNNING, once.
    async fn set_shards(&self, op_id: &str, shards_total: u64) -> PortResult<()>;
    /// True if the shard's tasks were already planned.
    async fn shard_planned(&self, op_id: &str, shard: &Shard) -> PortResult<bool>;
    /// Writes a shard's tasks and marks it planned, adding to the operation's totals once.
    /// A note records a problem with the whole shard (e.g. discovery failed).
    async fn plan_shard(
        &self,
        op_id: &str,
        shard: &Shard,
        tasks: &[Task],
        note: Option<String>,
    ) -> PortResult<()>;
    /// A shard's tasks that are not final yet.
    async fn unfinished_tasks(&self, op_id: &str, shard: &Shard) -> PortResult<Vec<Task>>;
    /// Every task of an operation (adapters follow every page of the Query).
    async fn list_tasks(&self, op_id: &str) -> PortResult<Vec<Task>>;
    /// One task.
    async fn get_task(&self, op_id: &str, target_key: &str) -> PortResult<Option<Task>>;
    /// Records the sizes the worker is about to set (so a redelivery after a crash knows).
    async fn mark_applying(
        &self,
        op_id: &str,
        target_key: &str,
        before: Sizes,
        planned: Sizes,
        now: DateTime<Utc>,
    ) -> PortResult<()>;
    /// Moves a task to its final state and counts it on the operation, atomically and once.
    /// False if it was already final.
    async fn finish_task(
        &self,
        op_id: &str,
        target_key: &str,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> PortResult<bool>;
    /// Sets the operation's final status (and `finished_at = now`) if all its work is done;
    /// returns it.
    async fn finalize_operation(
        &self,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<Option<OpStatus>>;
}

/// Per-target state: baselines, leases, overrides and the inventory cache.
#[async_trait]
pub trait TargetStore: Send + Sync {
    /// The saved baseline of a target.
    async fn get_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>>;
    /// Saves a baseline only if none is saved. False if one already was.
    async fn save_baseline(&self, baseline: &Baseline) -> PortResult<bool>;
    /// Retires (deletes) a baseline.
    async fn retire_baseline(&self, target_key: &str) -> PortResult<()>;
    /// Takes the target's lease for an operation.
    async fn acquire_lease(
        &self,
        target_key: &str,
        op_id: &str,
        op_created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> PortResult<Lease>;
    /// Releases the lease if `op_id` holds it.
    async fn release_lease(&self, target_key: &str, op_id: &str) -> PortResult<()>;
    /// Stores an override.
    async fn put_override(&self, o: &Override) -> PortResult<()>;
    /// Overrides not yet expired at `now`.
    async fn active_overrides(&self, now: DateTime<Utc>) -> PortResult<Vec<Override>>;
    /// Ends an override before it expires. False if there was none with that id.
    async fn remove_override(&self, id: &str) -> PortResult<bool>;
    /// Replaces the cached inventory of one account and region.
    async fn put_inventory(
        &self,
        account: &str,
        region: &str,
        targets: &[Target],
        now: DateTime<Utc>,
    ) -> PortResult<()>;
    /// Forgets the cached inventory of one account and region (a spoke reported a change), so
    /// the next operation there lists it live.
    async fn invalidate_inventory(&self, account: &str, region: &str) -> PortResult<()>;
    /// The cached inventory of one account and region and when it was discovered, if ever.
    async fn get_inventory(
        &self,
        account: &str,
        region: &str,
    ) -> PortResult<Option<(DateTime<Utc>, Vec<Target>)>>;
}

/// Everything the services need from the state table.
pub trait StateStore: AccountStore + ScheduleStore + OperationStore + TargetStore {}
impl<T: AccountStore + ScheduleStore + OperationStore + TargetStore> StateStore for T {}

/// A queue of JSON messages.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends every body (in batches of 10 on SQS). Fails if any could not be sent.
    async fn send(&self, bodies: &[String]) -> PortResult<()>;
}

/// Reaching targets in spoke accounts through their role.
#[async_trait]
pub trait Spokes: Send + Sync {
    /// Lists every ASG and EKS node group in one account and region.
    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>>;
    /// The target's sizes and whether it can take an update now.
    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState>;
    /// Sets the target's sizes.
    async fn set_sizes(&self, role: &SpokeRole, target: &Target, sizes: Sizes) -> PortResult<()>;
}

/// What a caller sees of an action on one target, used by `plan`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedChange {
    /// The target.
    pub target: Target,
    /// Stop or start.
    pub action: Action,
    /// Sizes now.
    pub live: Sizes,
    /// Sizes after, if it would change.
    pub to: Option<Sizes>,
    /// Why not, if it would not.
    pub reason: Option<String>,
}
