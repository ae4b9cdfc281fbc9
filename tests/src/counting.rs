//! [`CountingStore`]: the state table with a counter on every port call, so a benchmark over the
//! in-memory fakes can report what the DynamoDB adapter would be asked for per target, observed
//! from the calls the real services make rather than worked out from the code.
//!
//! A port call is not always one DynamoDB request: the adapter (`curfew-aws`, `dynamo/`) turns
//! `plan_shard` into one conditional PutItem per task plus one transaction, reads a running
//! operation's counter stripes with a BatchGetItem after its GetItem (`get_operation`,
//! `finalize_operation`), and follows Query pages. The counts here are the calls; the report
//! adds the tasks `plan_shard` writes ([`StoreCounts::planned_tasks`]) so the per-task puts are
//! not lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use curfew_core::account::Account;
use curfew_core::cluster_hold::ClusterHold;
use curfew_core::operation::{OpStatus, Operation, Shard, Task, TaskOutcome};
use curfew_core::ports::{
    AccountStore, Baseline, Lease, LeaseToken, OperationPage, OperationStore, Override, PortResult,
    ScheduleStore, StateStore, TargetStore,
};
use curfew_core::schedule::{Schedule, ScheduleList};
use curfew_core::target::{Sizes, Target};

/// One method of the state store's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreCall {
    /// `put_account`.
    PutAccount,
    /// `get_account`.
    GetAccount,
    /// `list_accounts`.
    ListAccounts,
    /// `delete_account`.
    DeleteAccount,
    /// `create_schedule`.
    CreateSchedule,
    /// `get_schedule`.
    GetSchedule,
    /// `list_schedules`.
    ListSchedules,
    /// `delete_schedule`.
    DeleteSchedule,
    /// `set_schedule_enabled`.
    SetScheduleEnabled,
    /// `due_schedules`.
    DueSchedules,
    /// `advance_schedule`.
    AdvanceSchedule,
    /// `create_operation`.
    CreateOperation,
    /// `get_operation`.
    GetOperation,
    /// `list_operations_page`.
    ListOperationsPage,
    /// `fix_shards`.
    FixShards,
    /// `shard_planned`.
    ShardPlanned,
    /// `plan_shard`.
    PlanShard,
    /// `unfinished_tasks`.
    UnfinishedTasks,
    /// `list_tasks`.
    ListTasks,
    /// `get_task`.
    GetTask,
    /// `mark_applying`.
    MarkApplying,
    /// `record_update`.
    RecordUpdate,
    /// `finish_task`.
    FinishTask,
    /// `dead_letter_task`.
    DeadLetterTask,
    /// `reopen_task`.
    ReopenTask,
    /// `finalize_operation`.
    FinalizeOperation,
    /// `get_baseline`.
    GetBaseline,
    /// `save_baseline`.
    SaveBaseline,
    /// `retire_baseline`.
    RetireBaseline,
    /// `asleep_baselines`.
    AsleepBaselines,
    /// `get_cluster_hold`.
    GetClusterHold,
    /// `put_cluster_hold`.
    PutClusterHold,
    /// `acquire_lease`.
    AcquireLease,
    /// `release_lease`.
    ReleaseLease,
    /// `put_override`.
    PutOverride,
    /// `active_overrides`.
    ActiveOverrides,
    /// `remove_override`.
    RemoveOverride,
    /// `put_inventory`.
    PutInventory,
    /// `invalidate_inventory`.
    InvalidateInventory,
    /// `get_inventory`.
    GetInventory,
}

impl StoreCall {
    /// Every method, in declaration order (the index of a call in [`StoreCounts`]).
    pub const ALL: [StoreCall; 40] = [
        StoreCall::PutAccount,
        StoreCall::GetAccount,
        StoreCall::ListAccounts,
        StoreCall::DeleteAccount,
        StoreCall::CreateSchedule,
        StoreCall::GetSchedule,
        StoreCall::ListSchedules,
        StoreCall::DeleteSchedule,
        StoreCall::SetScheduleEnabled,
        StoreCall::DueSchedules,
        StoreCall::AdvanceSchedule,
        StoreCall::CreateOperation,
        StoreCall::GetOperation,
        StoreCall::ListOperationsPage,
        StoreCall::FixShards,
        StoreCall::ShardPlanned,
        StoreCall::PlanShard,
        StoreCall::UnfinishedTasks,
        StoreCall::ListTasks,
        StoreCall::GetTask,
        StoreCall::MarkApplying,
        StoreCall::RecordUpdate,
        StoreCall::FinishTask,
        StoreCall::DeadLetterTask,
        StoreCall::ReopenTask,
        StoreCall::FinalizeOperation,
        StoreCall::GetBaseline,
        StoreCall::SaveBaseline,
        StoreCall::RetireBaseline,
        StoreCall::AsleepBaselines,
        StoreCall::GetClusterHold,
        StoreCall::PutClusterHold,
        StoreCall::AcquireLease,
        StoreCall::ReleaseLease,
        StoreCall::PutOverride,
        StoreCall::ActiveOverrides,
        StoreCall::RemoveOverride,
        StoreCall::PutInventory,
        StoreCall::InvalidateInventory,
        StoreCall::GetInventory,
    ];

    /// The port method's name.
    pub fn name(self) -> &'static str {
        match self {
            StoreCall::PutAccount => "put_account",
            StoreCall::GetAccount => "get_account",
            StoreCall::ListAccounts => "list_accounts",
            StoreCall::DeleteAccount => "delete_account",
            StoreCall::CreateSchedule => "create_schedule",
            StoreCall::GetSchedule => "get_schedule",
            StoreCall::ListSchedules => "list_schedules",
            StoreCall::DeleteSchedule => "delete_schedule",
            StoreCall::SetScheduleEnabled => "set_schedule_enabled",
            StoreCall::DueSchedules => "due_schedules",
            StoreCall::AdvanceSchedule => "advance_schedule",
            StoreCall::CreateOperation => "create_operation",
            StoreCall::GetOperation => "get_operation",
            StoreCall::ListOperationsPage => "list_operations_page",
            StoreCall::FixShards => "fix_shards",
            StoreCall::ShardPlanned => "shard_planned",
            StoreCall::PlanShard => "plan_shard",
            StoreCall::UnfinishedTasks => "unfinished_tasks",
            StoreCall::ListTasks => "list_tasks",
            StoreCall::GetTask => "get_task",
            StoreCall::MarkApplying => "mark_applying",
            StoreCall::RecordUpdate => "record_update",
            StoreCall::FinishTask => "finish_task",
            StoreCall::DeadLetterTask => "dead_letter_task",
            StoreCall::ReopenTask => "reopen_task",
            StoreCall::FinalizeOperation => "finalize_operation",
            StoreCall::GetBaseline => "get_baseline",
            StoreCall::SaveBaseline => "save_baseline",
            StoreCall::RetireBaseline => "retire_baseline",
            StoreCall::AsleepBaselines => "asleep_baselines",
            StoreCall::GetClusterHold => "get_cluster_hold",
            StoreCall::PutClusterHold => "put_cluster_hold",
            StoreCall::AcquireLease => "acquire_lease",
            StoreCall::ReleaseLease => "release_lease",
            StoreCall::PutOverride => "put_override",
            StoreCall::ActiveOverrides => "active_overrides",
            StoreCall::RemoveOverride => "remove_override",
            StoreCall::PutInventory => "put_inventory",
            StoreCall::InvalidateInventory => "invalidate_inventory",
            StoreCall::GetInventory => "get_inventory",
        }
    }

    /// True for calls that only read the table (GetItem, BatchGetItem, Query in the adapter);
    /// the others write (conditional puts and updates, transactions).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            StoreCall::GetAccount
                | StoreCall::ListAccounts
                | StoreCall::GetSchedule
                | StoreCall::ListSchedules
                | StoreCall::DueSchedules
                | StoreCall::GetOperation
                | StoreCall::ListOperationsPage
                | StoreCall::ShardPlanned
                | StoreCall::UnfinishedTasks
                | StoreCall::ListTasks
                | StoreCall::GetTask
                | StoreCall::GetBaseline
                | StoreCall::ActiveOverrides
                | StoreCall::GetInventory
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The calls counted up to some moment, per method; subtract two with [`StoreCounts::since`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    calls: Vec<u64>,
    /// Tasks written by `plan_shard` calls (one conditional PutItem each in the adapter).
    pub planned_tasks: u64,
}

impl StoreCounts {
    /// Calls to `call`.
    pub fn get(&self, call: StoreCall) -> u64 {
        self.calls.get(call.index()).copied().unwrap_or(0)
    }

    /// Every call.
    pub fn total(&self) -> u64 {
        self.calls.iter().sum()
    }

    /// Calls that only read.
    pub fn reads(&self) -> u64 {
        StoreCall::ALL
            .iter()
            .filter(|c| c.is_read())
            .map(|c| self.get(*c))
            .sum()
    }

    /// Calls that write.
    pub fn writes(&self) -> u64 {
        self.total() - self.reads()
    }

    /// The calls made after `earlier` was taken.
    pub fn since(&self, earlier: &StoreCounts) -> StoreCounts {
        StoreCounts {
            calls: StoreCall::ALL
                .iter()
                .map(|c| self.get(*c) - earlier.get(*c))
                .collect(),
            planned_tasks: self.planned_tasks - earlier.planned_tasks,
        }
    }

    /// The methods called at least once, with their counts, in declaration order.
    pub fn nonzero(&self) -> Vec<(StoreCall, u64)> {
        StoreCall::ALL
            .iter()
            .map(|c| (*c, self.get(*c)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// The state table with a counter per port method. No lock: one atomic per method, so counting
/// does not serialize the concurrent batches it observes.
pub struct CountingStore {
    inner: Arc<dyn StateStore>,
    calls: Vec<AtomicU64>,
    planned_tasks: AtomicU64,
    /// How long every call takes before it reaches `inner` (the simulation's DynamoDB
    /// latency; zero in the plain in-memory runs).
    latency: std::time::Duration,
}

impl CountingStore {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn StateStore>) -> CountingStore {
        CountingStore {
            inner,
            calls: StoreCall::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            planned_tasks: AtomicU64::new(0),
            latency: std::time::Duration::ZERO,
        }
    }

    /// The same, every call taking `latency` (on tokio's clock, virtual in a simulation).
    pub fn with_latency(self, latency: std::time::Duration) -> CountingStore {
        CountingStore { latency, ..self }
    }

    /// The counts so far.
    pub fn counts(&self) -> StoreCounts {
        StoreCounts {
            calls: self
                .calls
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            planned_tasks: self.planned_tasks.load(Ordering::Relaxed),
        }
    }

    async fn count(&self, call: StoreCall) -> &Arc<dyn StateStore> {
        self.calls[call.index()].fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        &self.inner
    }
}

#[async_trait]
impl AccountStore for CountingStore {
    async fn put_account(&self, account: &Account) -> PortResult<()> {
        self.count(StoreCall::PutAccount)
            .await
            .put_account(account)
            .await
    }
    async fn get_account(&self, id: &str) -> PortResult<Option<Account>> {
        self.count(StoreCall::GetAccount)
            .await
            .get_account(id)
            .await
    }
    async fn list_accounts(&self) -> PortResult<Vec<Account>> {
        self.count(StoreCall::ListAccounts)
            .await
            .list_accounts()
            .await
    }
    async fn delete_account(&self, id: &str) -> PortResult<bool> {
        self.count(StoreCall::DeleteAccount)
            .await
            .delete_account(id)
            .await
    }
}

#[async_trait]
impl ScheduleStore for CountingStore {
    async fn create_schedule(&self, schedule: &Schedule) -> PortResult<()> {
        self.count(StoreCall::CreateSchedule)
            .await
            .create_schedule(schedule)
            .await
    }
    async fn get_schedule(&self, name: &str) -> PortResult<Option<Schedule>> {
        self.count(StoreCall::GetSchedule)
            .await
            .get_schedule(name)
            .await
    }
    async fn list_schedules(&self) -> PortResult<ScheduleList> {
        self.count(StoreCall::ListSchedules)
            .await
            .list_schedules()
            .await
    }
    async fn delete_schedule(&self, name: &str) -> PortResult<bool> {
        self.count(StoreCall::DeleteSchedule)
            .await
            .delete_schedule(name)
            .await
    }
    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        next_fire: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        self.count(StoreCall::SetScheduleEnabled)
            .await
            .set_schedule_enabled(name, enabled, next_fire)
            .await
    }
    async fn due_schedules(&self, now: DateTime<Utc>) -> PortResult<ScheduleList> {
        self.count(StoreCall::DueSchedules)
            .await
            .due_schedules(now)
            .await
    }
    async fn advance_schedule(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        self.count(StoreCall::AdvanceSchedule)
            .await
            .advance_schedule(name, expected, next)
            .await
    }
}

#[async_trait]
impl OperationStore for CountingStore {
    async fn create_operation(&self, op: &Operation) -> PortResult<bool> {
        self.count(StoreCall::CreateOperation)
            .await
            .create_operation(op)
            .await
    }
    async fn get_operation(&self, id: &str) -> PortResult<Option<Operation>> {
        self.count(StoreCall::GetOperation)
            .await
            .get_operation(id)
            .await
    }
    async fn list_operations_page(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> PortResult<OperationPage> {
        self.count(StoreCall::ListOperationsPage)
            .await
            .list_operations_page(limit, after)
            .await
    }
    async fn fix_shards(&self, op_id: &str, shards: &[Shard]) -> PortResult<Vec<Shard>> {
        self.count(StoreCall::FixShards)
            .await
            .fix_shards(op_id, shards)
            .await
    }
    async fn shard_planned(&self, op_id: &str, shard: &Shard) -> PortResult<bool> {
        self.count(StoreCall::ShardPlanned)
            .await
            .shard_planned(op_id, shard)
            .await
    }
    async fn plan_shard(
        &self,
        op_id: &str,
        shard: &Shard,
        tasks: &[Task],
        note: Option<String>,
    ) -> PortResult<()> {
        self.planned_tasks
            .fetch_add(tasks.len() as u64, Ordering::Relaxed);
        self.count(StoreCall::PlanShard)
            .await
            .plan_shard(op_id, shard, tasks, note)
            .await
    }
    async fn unfinished_tasks(&self, op_id: &str, shard: &Shard) -> PortResult<Vec<Task>> {
        self.count(StoreCall::UnfinishedTasks)
            .await
            .unfinished_tasks(op_id, shard)
            .await
    }
    async fn list_tasks(&self, op_id: &str) -> PortResult<Vec<Task>> {
        self.count(StoreCall::ListTasks)
            .await
            .list_tasks(op_id)
            .await
    }
    async fn get_task(&self, op_id: &str, target_key: &str) -> PortResult<Option<Task>> {
        self.count(StoreCall::GetTask)
            .await
            .get_task(op_id, target_key)
            .await
    }
    async fn mark_applying(
        &self,
        lease: &LeaseToken,
        target_key: &str,
        before: Sizes,
        planned: Sizes,
        now: DateTime<Utc>,
    ) -> PortResult<()> {
        self.count(StoreCall::MarkApplying)
            .await
            .mark_applying(lease, target_key, before, planned, now)
            .await
    }
    async fn record_update(
        &self,
        op_id: &str,
        target_key: &str,
        update_id: &str,
    ) -> PortResult<()> {
        self.count(StoreCall::RecordUpdate)
            .await
            .record_update(op_id, target_key, update_id)
            .await
    }
    async fn finish_task(
        &self,
        op_id: &str,
        target_key: &str,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.count(StoreCall::FinishTask)
            .await
            .finish_task(op_id, target_key, outcome, now)
            .await
    }
    async fn dead_letter_task(
        &self,
        op_id: &str,
        target_key: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.count(StoreCall::DeadLetterTask)
            .await
            .dead_letter_task(op_id, target_key, reason, now)
            .await
    }
    async fn reopen_task(
        &self,
        op_id: &str,
        target_key: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.count(StoreCall::ReopenTask)
            .await
            .reopen_task(op_id, target_key, now)
            .await
    }
    async fn finalize_operation(
        &self,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<Option<OpStatus>> {
        self.count(StoreCall::FinalizeOperation)
            .await
            .finalize_operation(op_id, now)
            .await
    }
}

#[async_trait]
impl TargetStore for CountingStore {
    async fn get_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>> {
        self.count(StoreCall::GetBaseline)
            .await
            .get_baseline(target_key)
            .await
    }
    async fn save_baseline(
        &self,
        baseline: &Baseline,
        lease: &LeaseToken,
        replacing_own: bool,
    ) -> PortResult<bool> {
        self.count(StoreCall::SaveBaseline)
            .await
            .save_baseline(baseline, lease, replacing_own)
            .await
    }
    async fn retire_baseline(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        self.count(StoreCall::RetireBaseline)
            .await
            .retire_baseline(target_key, saved_by, lease)
            .await
    }
    async fn asleep_baselines(&self, account: &str, region: &str) -> PortResult<Vec<Baseline>> {
        self.count(StoreCall::AsleepBaselines)
            .await
            .asleep_baselines(account, region)
            .await
    }
    async fn get_cluster_hold(&self, cluster_key: &str) -> PortResult<Option<ClusterHold>> {
        self.count(StoreCall::GetClusterHold)
            .await
            .get_cluster_hold(cluster_key)
            .await
    }
    async fn put_cluster_hold(
        &self,
        hold: &ClusterHold,
        read: u64,
        target_key: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        self.count(StoreCall::PutClusterHold)
            .await
            .put_cluster_hold(hold, read, target_key, lease)
            .await
    }
    async fn acquire_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        op_created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> PortResult<Lease> {
        self.count(StoreCall::AcquireLease)
            .await
            .acquire_lease(target_key, lease, op_created_at, now, ttl)
            .await
    }
    async fn release_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        finished: bool,
    ) -> PortResult<()> {
        self.count(StoreCall::ReleaseLease)
            .await
            .release_lease(target_key, lease, finished)
            .await
    }
    async fn put_override(&self, o: &Override) -> PortResult<()> {
        self.count(StoreCall::PutOverride)
            .await
            .put_override(o)
            .await
    }
    async fn active_overrides(&self, now: DateTime<Utc>) -> PortResult<Vec<Override>> {
        self.count(StoreCall::ActiveOverrides)
            .await
            .active_overrides(now)
            .await
    }
    async fn remove_override(&self, id: &str) -> PortResult<bool> {
        self.count(StoreCall::RemoveOverride)
            .await
            .remove_override(id)
            .await
    }
    async fn put_inventory(
        &self,
        account: &str,
        region: &str,
        targets: &[Target],
        now: DateTime<Utc>,
    ) -> PortResult<()> {
        self.count(StoreCall::PutInventory)
            .await
            .put_inventory(account, region, targets, now)
            .await
    }
    async fn invalidate_inventory(&self, account: &str, region: &str) -> PortResult<()> {
        self.count(StoreCall::InvalidateInventory)
            .await
            .invalidate_inventory(account, region)
            .await
    }
    async fn get_inventory(
        &self,
        account: &str,
        region: &str,
    ) -> PortResult<Option<(DateTime<Utc>, Vec<Target>)>> {
        self.count(StoreCall::GetInventory)
            .await
            .get_inventory(account, region)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curfew_core::fakes::MemoryStore;

    #[test]
    fn every_call_has_its_own_slot_in_declaration_order() {
        for (i, call) in StoreCall::ALL.iter().enumerate() {
            assert_eq!(call.index(), i, "{}", call.name());
        }
    }

    #[tokio::test]
    async fn each_port_call_is_counted_once_under_its_own_method() {
        let store = CountingStore::new(Arc::new(MemoryStore::new()));
        let before = store.counts();
        store.list_accounts().await.unwrap();
        store.get_account("123456789012").await.unwrap();
        store.get_account("123456789013").await.unwrap();
        store.get_baseline("k").await.unwrap();
        let counts = store.counts().since(&before);
        assert_eq!(counts.get(StoreCall::GetAccount), 2);
        assert_eq!(counts.get(StoreCall::ListAccounts), 1);
        assert_eq!(counts.get(StoreCall::GetBaseline), 1);
        assert_eq!((counts.total(), counts.reads(), counts.writes()), (4, 4, 0));
    }
}
