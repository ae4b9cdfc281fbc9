//! Ports: the small capabilities the services need from the outside world. Adapters in
//! `curfew-aws` implement them over DynamoDB, SQS, STS, Auto Scaling and EKS.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::account::{Account, SpokeRole};
use crate::calendar::Calendar;
use crate::cluster_hold::ClusterHold;
use crate::decision::Action;
use crate::hold::CaTag;
use crate::operation::{OpStatus, Operation, Shard, Task, TaskOutcome, TaskStatus};
use crate::schedule::{Schedule, ScheduleList};
use crate::selector::Selector;
use crate::target::{LiveState, Processes, Sizes, Target};
use crate::trail::{AuditLog, Link};

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
    /// The target's lease is no longer held by the caller's token (it expired and another
    /// delivery took it): the caller must stop acting on the target at once. Retryable: the
    /// message goes back to the queue and its next delivery reads the state afresh.
    LeaseLost,
    /// The spoke rejected the session's credentials as expired: a fresh session may work.
    ExpiredCredentials,
    /// The call's turn (a paced spoke's) would come after the invocation's calls must start
    /// ([`crate::service::calls_start_by`]): it was not sent. Retryable: the task goes back to
    /// the queue, for an invocation with time left.
    OutOfTime,
    /// Anything else (network, unexpected response).
    Other,
}

impl ErrorKind {
    /// True when trying the same call again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled
                | ErrorKind::InUse
                | ErrorKind::LeaseLost
                | ErrorKind::OutOfTime
                | ErrorKind::Other
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

/// What became of [`OperationStore::finish_task_recorded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordedFinish {
    /// The task is final, counted, and its change is the chain's new last record.
    Finished,
    /// The task was final already (and its change recorded then): nothing was written.
    AlreadyFinal,
    /// Another append moved the chain's head first: read it again and retry.
    HeadMoved,
}

/// One task's end for [`OperationStore::finish_tasks`]: its final outcome and whether the
/// change it made is in its write's record.
#[derive(Clone, Debug)]
pub struct TaskEnd {
    /// The task's operation.
    pub op_id: String,
    /// The task's target (its task item may not exist yet: see
    /// [`OperationStore::plan_shard`]).
    pub target: Target,
    /// How it ended (SUCCEEDED, FAILED or SKIPPED).
    pub outcome: TaskOutcome,
    /// The change it made is one of its [`EndsWrite::record`]'s.
    pub recorded: bool,
}

/// The most items one atomic write of task ends may hold: DynamoDB's limit on a
/// TransactWriteItems.
pub const MAX_WRITE_ITEMS: usize = 100;

/// Task ends written in one atomic write ([`OperationStore::finish_tasks`]) with the one
/// record of the changes they made.
#[derive(Clone, Debug, Default)]
pub struct EndsWrite {
    /// The ends, each task's final state.
    pub ends: Vec<TaskEnd>,
    /// The changes of the ends `recorded`, in one record linked in its chain (a delivery's,
    /// [`crate::trail::delivery_chain`]), to append in the same write: `expected` is the
    /// record it follows (0 for a new chain).
    pub record: Option<(Link, u64)>,
}

impl EndsWrite {
    /// The items a write of `ends` takes in the adapter, with a record when `recorded`: each
    /// task's final state, one counter stripe per operation among them and, with the record,
    /// the record, its chain's head and its by-day index entry.
    pub fn items<'a>(ends: impl IntoIterator<Item = &'a TaskEnd>, recorded: bool) -> usize {
        let mut count = 0;
        let mut operations = std::collections::BTreeSet::new();
        for end in ends {
            count += 1;
            operations.insert(end.op_id.as_str());
        }
        count + operations.len() + 3 * usize::from(recorded)
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
    /// The Auto Scaling processes the stop suspended (those that were running before it): a
    /// start resumes exactly these, never one its owners had suspended themselves. Left out
    /// when none (every node group): it keeps the lease item carrying the baseline smaller.
    #[serde(default, skip_serializing_if = "holds_no_process")]
    pub held: Processes,
    /// The Cluster Autoscaler tags the stop removed from the node group's ASGs (`ca-tags`
    /// mode): a wake puts exactly these back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_tags: Vec<CaTag>,
    /// True when the stop joined its cluster's hold (see [`crate::cluster_hold`]): the wake
    /// leaves it once the node group is back, and the last to leave restores the cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_hold: bool,
}

fn holds_no_process(held: &Processes) -> bool {
    held.is_empty()
}

/// The parts of a shard planned so far (see [`OperationStore::plan_part`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardParts {
    /// How many: the next part's number.
    pub parts: u32,
    /// Every task they planned, final or not.
    pub tasks: Vec<Task>,
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

/// The proof that one delivery holds a target's lease: every acquisition draws a new token, so
/// two copies of one task message never both hold the lease, and every write made under it
/// (baseline save and retire, the mark of the change in flight) is conditioned on the lease
/// item still holding this token (a fencing token). A delivery whose lease expired and was taken by
/// another can therefore change nothing curfew owns.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseToken {
    /// The operation the delivery belongs to.
    pub op_id: String,
    /// What the operation does (recorded with its changes in flight).
    pub action: Action,
    /// Unique to this acquisition.
    pub token: String,
}

impl LeaseToken {
    /// A fresh token for one delivery of one of `op_id`'s tasks.
    pub fn new(op_id: &str, action: Action) -> Self {
        LeaseToken {
            op_id: op_id.to_string(),
            action,
            token: format!("{op_id}/{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// A change a delivery began under the lease and never saw through (it crashed, its function
/// timed out, or it left the change to finish on a later delivery: an EKS update under way):
/// the last fenced write before the spoke is touched marks the lease with it, and a release
/// after the task finished clears the mark. The next holder settles what it left before
/// deciding: another operation's delivery the baseline it may have spent, a delivery of the same
/// operation the change itself (it is that task's change in flight, shown as APPLYING).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// The operation whose delivery was interrupted.
    pub op_id: String,
    /// What it was doing.
    pub action: Action,
    /// The sizes it was setting (`None`: a mark an earlier version left when it had only saved
    /// a baseline, so the target was never touched).
    pub planned: Option<Sizes>,
    /// The sizes read before the change (`None` in marks earlier versions left: their task
    /// record holds them).
    pub before: Option<Sizes>,
    /// When the change was marked (`None` in marks earlier versions left).
    pub marked_at: Option<DateTime<Utc>>,
    /// The spoke's id for the change's asynchronous update (EKS), once it is known.
    pub update_id: Option<String>,
}

impl Interrupted {
    /// Shows `task` as this mark says it stands: APPLYING, with the change's sizes and update
    /// id, when the mark is the task's own change in flight (its operation's, with sizes) and
    /// the task is not final.
    pub fn show_on(&self, task: &mut Task) {
        let Some(planned) = self.planned else {
            return;
        };
        if task.status.is_final() || task.op_id != self.op_id {
            return;
        }
        task.status = TaskStatus::Applying;
        task.after = Some(planned);
        task.before = self.before.or(task.before);
        if let Some(update_id) = &self.update_id {
            task.update_id = Some(update_id.clone());
        }
        if let Some(at) = self.marked_at {
            task.updated_at = at;
        }
    }
}

/// The change a delivery is about to make to its target, as the lease's mark records it (see
/// [`Interrupted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeInFlight {
    /// The sizes read before the change.
    pub before: Sizes,
    /// The sizes about to be set.
    pub planned: Sizes,
    /// Now: the mark's time, and the moment the lease must still be unexpired at (a delivery
    /// whose lease ran out may have had its task given up meanwhile).
    pub at: DateTime<Utc>,
}

/// An operation found final by [`OperationStore::finalize_operation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finalized {
    /// Its final status.
    pub status: OpStatus,
    /// True for the one call that moved it to final (false: it was final already), so what
    /// happens once per operation end (its duration metric) happens once.
    pub by_this_call: bool,
    /// Its action and creation time, from the read the call made anyway (what the duration
    /// metric needs, without reading the operation again).
    pub action: Action,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Result of asking for a target's lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Lease {
    /// Ours (this token's) until it expires or we release it.
    Acquired {
        /// A change an earlier holder began and never finished, if any.
        interrupted: Option<Interrupted>,
        /// The target's saved baseline as the take found it, what
        /// [`TargetStore::get_baseline`] would read: the lease item carries it, so the take
        /// returns it and the delivery need not read it again. Only the lease's holder writes
        /// a baseline, so it stays current while the lease is held.
        baseline: Option<Baseline>,
    },
    /// Another operation holds it: try again later.
    Held {
        /// The holding operation.
        by: String,
    },
    /// A newer operation has acted on this target: this one must not.
    Superseded {
        /// The newer operation.
        by: String,
        /// The lease's mark of a change in flight as it was read (see [`Interrupted`]): this
        /// operation's own while the newer one has not yet settled a change a delivery of
        /// this operation began.
        mark: Option<Interrupted>,
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
    /// The enabled schedules with `--enforce`, from an index of their own (the poller reads
    /// them every tick, so never all schedules); the broken ones apart.
    async fn enforced_schedules(&self) -> PortResult<ScheduleList>;
    /// Creates a holiday calendar, or with `replace` replaces the one of that name; without
    /// `replace` fails with `ConditionFailed` if the name is taken.
    async fn create_calendar(&self, calendar: &Calendar, replace: bool) -> PortResult<()>;
    /// One calendar.
    async fn get_calendar(&self, name: &str) -> PortResult<Option<Calendar>>;
    /// Every calendar, by name.
    async fn list_calendars(&self) -> PortResult<Vec<Calendar>>;
    /// Deletes a calendar; false if it did not exist. Refusing to delete one a schedule uses
    /// is the caller's job (it knows the schedules).
    async fn delete_calendar(&self, name: &str) -> PortResult<bool>;
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
    /// Fixes the operation's shard set once: the first call stores `shards`, records their
    /// count and moves the operation to RUNNING; every later call (a redelivered operation
    /// message, even after accounts were added or removed) changes nothing. Returns the set in
    /// force, which is what the caller must fan out.
    async fn fix_shards(&self, op_id: &str, shards: &[Shard]) -> PortResult<Vec<Shard>>;
    /// True if the shard's tasks were already planned (its last tasks: see
    /// [`OperationStore::plan_part`]).
    async fn shard_planned(&self, op_id: &str, shard: &Shard) -> PortResult<bool>;
    /// Plans a shard's (last) tasks and marks it planned, adding to the operation's totals,
    /// atomically and once: false, writing nothing, if the shard is already planned or has
    /// other than `parts` parts ([`OperationStore::plan_part`]; the caller reads them and
    /// plans what they left). A note records a problem with the whole shard (e.g. discovery
    /// failed). An adapter may list the tasks' targets on the shard's marker instead of
    /// writing a task item for each (the DynamoDB adapter does, while the listing fits one
    /// item): a planned task then has no item until it is first written (finished, given up,
    /// or marked interrupted), and every writer of a task creates it from its target if it is
    /// missing.
    async fn plan_shard(
        &self,
        op_id: &str,
        shard: &Shard,
        parts: u32,
        tasks: &[Task],
        note: Option<String>,
    ) -> PortResult<bool>;
    /// Plans part `part` (numbered from 0) of a shard still being listed: its tasks are
    /// written (listed, as [`OperationStore::plan_shard`] lists them) and added to the
    /// operation's total, atomically and once, so they can be worked before the listing ends.
    /// False, writing nothing, if the shard is already planned or has other than `part`
    /// parts (another delivery of the plan wrote this one). The shard is not planned until
    /// [`OperationStore::plan_shard`] writes its last tasks, so the operation cannot finish
    /// before; parts hold no task twice because each is written knowing every part before it.
    async fn plan_part(
        &self,
        op_id: &str,
        shard: &Shard,
        part: u32,
        tasks: &[Task],
    ) -> PortResult<bool>;
    /// The parts planned so far of a shard ([`OperationStore::plan_part`]): how many, and
    /// every task they planned, final or not (one listed but never written is PENDING, named
    /// by its key alone).
    async fn shard_parts(&self, op_id: &str, shard: &Shard) -> PortResult<ShardParts>;
    /// A shard's tasks that are not final yet, its parts' included. A task listed but never
    /// written is PENDING, its target named by its key alone ([`Target::from_key`]: no tags,
    /// no instance types).
    async fn unfinished_tasks(&self, op_id: &str, shard: &Shard) -> PortResult<Vec<Task>>;
    /// Every task of an operation (adapters follow every page of the Query). A task not final
    /// whose target's lease is marked with its change in flight (see [`Interrupted`]) is shown
    /// APPLYING, with the mark's sizes and update id: the worker records a change in flight on
    /// the lease only, not on the task. A task listed but never written is shown PENDING, its
    /// target named by its key alone, as in [`OperationStore::unfinished_tasks`].
    async fn list_tasks(&self, op_id: &str) -> PortResult<Vec<Task>>;
    /// One task, as stored (a change in flight is on the target's lease, not here). `None`
    /// when no item was written: a task its shard planned by listing it is PENDING until
    /// its first write, so a caller that knows the task was planned (a worker holding its
    /// message) reads `None` as PENDING.
    async fn get_task(&self, op_id: &str, target_key: &str) -> PortResult<Option<Task>>;
    /// Records on a task that a delivery of it began a change another operation then found in
    /// flight on the target's lease (see [`Interrupted`]): APPLYING, with the sizes `before` and
    /// `planned`, so the task's own later delivery, superseded, says what it had begun. False,
    /// writing nothing, if the task is final.
    async fn mark_interrupted(
        &self,
        op_id: &str,
        target: &Target,
        before: Sizes,
        planned: Sizes,
        now: DateTime<Utc>,
    ) -> PortResult<bool>;
    /// Moves a task to its final state (SUCCEEDED, FAILED or SKIPPED; giving a task up is
    /// [`OperationStore::dead_letter_task`]) and counts it on the operation, atomically and
    /// once. False if it was already final.
    async fn finish_task(
        &self,
        op_id: &str,
        target: &Target,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> PortResult<bool>;
    /// [`OperationStore::finish_task`] and, in the same atomic write, the append of `link` (the
    /// record of the change the task made) to its chain, if the chain's head is still at record
    /// `expected` (0: the chain is empty); `now` places the record in the by-time index. A task
    /// is then final only with its change in the chain, so a redelivery, which finds it final,
    /// never records the change again.
    async fn finish_task_recorded(
        &self,
        op_id: &str,
        target: &Target,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
        link: &Link,
        expected: u64,
    ) -> PortResult<RecordedFinish>;
    /// [`OperationStore::finish_task`] and [`OperationStore::finish_task_recorded`] for many
    /// tasks (a delivery's), each task final and counted once and with its change in its chain
    /// exactly when it is final. Each of `writes` is one atomic write (the adapter: one
    /// transaction, [`EndsWrite::items`] at most [`MAX_WRITE_ITEMS`]) that counts its tasks on
    /// one counter stripe per operation, where a task finished alone takes its own transaction
    /// and its own count, and appends its one record of their changes. The writes' records are
    /// linked in order in one chain, whose head each write moves once. Returns each end's
    /// [`RecordedFinish`], in order across the writes (`Finished` for an end not recorded means
    /// it was finished). An end `AlreadyFinal` or `HeadMoved` wrote nothing; the others are
    /// written all the same, but for the recorded ends of a record left out (one of its ends
    /// was final, or it no longer follows the head) and of every record linked after it: those
    /// come back `HeadMoved`, to be linked again.
    async fn finish_tasks(
        &self,
        writes: &[EndsWrite],
        now: DateTime<Utc>,
    ) -> PortResult<Vec<RecordedFinish>>;
    /// Gives a task up after its message's last receive: moves it from PENDING or APPLYING to
    /// DEAD_LETTERED with `reason` (remembering which of the two it was in `reopens_as`) and
    /// counts it on the operation, atomically and once. Refused (false) when the task is already
    /// final — another delivery finished it, or an earlier run of this one gave it up — and
    /// while a delivery of the same operation holds the target's lease at `now`: that delivery
    /// is working on this very task and finishes it or leaves it as it is.
    async fn dead_letter_task(
        &self,
        op_id: &str,
        target: &Target,
        reason: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool>;
    /// Reopens a dead-lettered task for more deliveries (a redrive): back to the status it was
    /// given up in (`reopens_as`, else PENDING) with its reason cleared, no longer counted as
    /// dead-lettered, and its operation back to RUNNING if it had been finalized (the operation
    /// finalizes again once the task is done), atomically. False if the task is not
    /// dead-lettered (already reopened, or never given up), changing nothing.
    async fn reopen_task(
        &self,
        op_id: &str,
        target_key: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool>;
    /// Sets the operation's final status (and `finished_at = now`) if all its work is done;
    /// returns it, and whether this call is the one that set it.
    async fn finalize_operation(
        &self,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<Option<Finalized>>;
}

/// Per-target state: baselines, leases, overrides and the inventory cache.
#[async_trait]
pub trait TargetStore: Send + Sync {
    /// The saved baseline of a target.
    async fn get_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>>;
    /// Saves a baseline only if none is saved, or if the saved one was written by
    /// `replacing_own` (an operation refreshing the baseline it saved before it ever scaled the
    /// target), and only while `lease` holds the target. The same write marks the lease with
    /// `change`, as [`TargetStore::mark_in_flight`] does (a stop saves its baseline just before
    /// it scales). False if another baseline is kept (nothing is written);
    /// [`ErrorKind::LeaseLost`] if the lease moved on or expired.
    async fn save_baseline(
        &self,
        baseline: &Baseline,
        lease: &LeaseToken,
        replacing_own: bool,
        change: &ChangeInFlight,
    ) -> PortResult<bool>;
    /// The baselines saved in one account and region: the targets curfew holds asleep there
    /// (an index query, never a scan).
    async fn asleep_baselines(&self, account: &str, region: &str) -> PortResult<Vec<Baseline>>;
    /// Deletes the target's baseline if it was saved by operation `saved_by` and `lease` still
    /// holds the target. False if there is no such baseline (already retired, or another
    /// operation's); [`ErrorKind::LeaseLost`] if the lease moved on.
    async fn retire_baseline(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool>;
    /// Takes the target's lease for one delivery of an operation's task: granted when nobody
    /// holds it (or the holder's lease expired) and no newer operation has acted on the target.
    async fn acquire_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        op_created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> PortResult<Lease>;
    /// Marks the lease with `change`, the change in flight (see [`Interrupted`]): `lease`'s
    /// operation is about to set its sizes. Only while `lease` holds the target and has not
    /// expired at `change.at`; [`ErrorKind::LeaseLost`] otherwise, and then the caller must not
    /// touch the target.
    async fn mark_in_flight(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        change: &ChangeInFlight,
    ) -> PortResult<()>;
    /// Adds the id of the spoke's asynchronous update (EKS) to the lease's mark of the change in
    /// flight, so a later delivery can ask how it ended. Only while `lease` holds the target;
    /// [`ErrorKind::LeaseLost`] otherwise.
    async fn record_update(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        update_id: &str,
    ) -> PortResult<()>;
    /// The change in flight the target's lease is marked with, if any (see [`Interrupted`]):
    /// what shows a task APPLYING where it is read on its own.
    async fn change_in_flight(&self, target_key: &str) -> PortResult<Option<Interrupted>>;
    /// Releases the lease if `lease` still holds it. `finished`: the task is final, so the mark
    /// of a change in flight (see [`Interrupted`]) is cleared too.
    async fn release_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        finished: bool,
    ) -> PortResult<()>;
    /// A cluster's hold record (`None`: nothing holds the cluster, as
    /// [`ClusterHold::idle`] says).
    async fn get_cluster_hold(&self, cluster_key: &str) -> PortResult<Option<ClusterHold>>;
    /// Writes `hold` only if the stored record is still at generation `read` (0: absent) and
    /// `lease` still holds `target_key`, the node group on whose behalf it is written. False if
    /// the record changed since it was read (read it again); [`ErrorKind::LeaseLost`] if the
    /// lease moved on.
    async fn put_cluster_hold(
        &self,
        hold: &ClusterHold,
        read: u64,
        target_key: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool>;
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

/// Everything the services need from the state table (the audit trail and the health records
/// included: see [`AuditLog`] and [`crate::health::HealthStore`]).
pub trait StateStore:
    AccountStore + ScheduleStore + OperationStore + TargetStore + AuditLog + crate::health::HealthStore
{
}
impl<
        T: AccountStore
            + ScheduleStore
            + OperationStore
            + TargetStore
            + AuditLog
            + crate::health::HealthStore,
    > StateStore for T
{
}

/// A queue of JSON messages.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends every body (in batches of 10 on SQS). Fails if any could not be sent.
    async fn send(&self, bodies: &[String]) -> PortResult<()>;

    /// Sends every body as a message of `tenant` (SQS's `MessageGroupId` on a standard queue,
    /// which makes it a fair queue: when one tenant holds a disproportionate share of the
    /// messages in flight, receives favour the others). The task queue's tenants are spoke
    /// accounts, so one large account cannot starve the small ones of the worker's concurrency.
    /// A queue without tenants sends them as [`Queue::send`] does.
    async fn send_as(&self, tenant: &str, bodies: &[String]) -> PortResult<()> {
        let _ = tenant;
        self.send(bodies).await
    }
}

/// A message in a dead-letter queue: one SQS moved aside after its last receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message's id (the same as in the queue it came from).
    pub message_id: String,
    /// The handle that deletes this receipt of it.
    pub receipt: String,
    /// The body, as it was sent.
    pub body: String,
    /// Receives so far, as the queue counts them (SQS: `ApproximateReceiveCount`, which
    /// includes the receives in the queue it came from and the one that read it here).
    pub receive_count: u32,
}

/// The task queue's dead-letter queue, read by operators (`curfew dlq list | redrive`).
#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// Up to `limit` messages waiting, none deleted and none kept from a later reader (SQS: each
    /// is received with a short visibility timeout and made visible again at once).
    async fn peek(&self, limit: usize) -> PortResult<Vec<DeadLetter>>;
    /// Up to 10 messages to move elsewhere, hidden from other readers until deleted (or, on
    /// SQS, until their visibility timeout passes, if the mover fails first). Empty once
    /// nothing is left.
    async fn receive(&self) -> PortResult<Vec<DeadLetter>>;
    /// Deletes received messages by their receipts.
    async fn delete(&self, letters: &[DeadLetter]) -> PortResult<()>;
}

/// Reaching targets in spoke accounts through their role.
#[async_trait]
pub trait Spokes: Send + Sync {
    /// Lists every ASG and EKS node group in one account and region.
    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>>;
    /// [`Spokes::discover`] a page at a time, each as soon as it is listed, so an account of
    /// 50,000 targets can be worked while it is still being listed (the router plans it in
    /// parts: `OperationStore::plan_part`). Every target comes once, in no promised order; an
    /// error ends the listing (the pages before it stand). One page by default.
    fn discover_pages<'a>(
        &'a self,
        role: &'a SpokeRole,
        region: &'a str,
    ) -> BoxStream<'a, PortResult<Vec<Target>>> {
        Box::pin(futures::stream::once(self.discover(role, region)))
    }
    /// The target's sizes and whether it can take an update now.
    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState>;
    /// Asks the spoke to set the target's sizes. Auto Scaling applies them at once (`None`); EKS
    /// accepts an update and applies it asynchronously, returning the update's id.
    async fn set_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>>;
    /// Suspends Auto Scaling processes of an ASG (idempotent).
    async fn suspend_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()>;
    /// Resumes Auto Scaling processes of an ASG (idempotent).
    async fn resume_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()>;
    /// The Cluster Autoscaler auto-discovery tags on a node group's own ASGs (EKS reports them
    /// in the node group's `resources.autoScalingGroups`).
    async fn ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>>;
    /// Deletes these tags from their ASGs (idempotent).
    async fn remove_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()>;
    /// Puts these tags back on their ASGs, with their values (idempotent).
    async fn restore_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()>;
    /// How an asynchronous update (the id `set_sizes` returned) stands: done only once the
    /// target is ready again at `expected` sizes.
    async fn update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        expected: Sizes,
    ) -> PortResult<UpdateState>;
    /// What the spoke can tell about the target's last change (when, and by what: a user
    /// request, an alarm's policy, a scheduled action), for a drift record. `None` where the
    /// spoke keeps no such record (EKS updates do not name their cause) or the implementation
    /// reads none.
    async fn last_change(&self, _role: &SpokeRole, _target: &Target) -> PortResult<Option<String>> {
        Ok(None)
    }
}

/// Where an asynchronous update of a target stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateState {
    /// Applied: the target is ready at the requested sizes.
    Done,
    /// Still being applied.
    InProgress,
    /// The service gave up on it; the reason says why (the target kept its old sizes).
    Failed(String),
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
    /// What it would hold or undid besides sizes (`processes: suspend ...`, `ca-tags: ...`).
    pub steps: Vec<String>,
}
