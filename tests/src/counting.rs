//! [`CountingStore`]: the state table with a counter on every port call, so a benchmark over the
//! in-memory fakes can report what the DynamoDB adapter would be asked for per target, observed
//! from the calls the real services make rather than worked out from the code.
//!
//! A port call is not always one DynamoDB request: the adapter (`curfew-aws`, `dynamo/`) turns
//! `plan_shard` into one conditional PutItem per task plus one transaction, reads a running
//! operation's counter stripes with a BatchGetItem after its GetItem (`get_operation`,
//! `finalize_operation`), and follows Query pages. [`dynamo::TABLE`] says, per port method,
//! what the adapter sends; the store applies it to every call with what the call handled (the
//! items it returned or was given), so [`StoreCounts::dynamo`] holds the DynamoDB requests,
//! items and request units of the calls observed. [`cpu`] times the inner calls for
//! `curfew-scale`'s CPU time per target.

pub mod cpu;
pub mod dynamo;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use curfew_aws::dynamo::{
    finishing, inventory_bucket, part_marker as dynamo_part, shard_marker as dynamo_marker,
    LISTING_BYTES,
};
use curfew_core::account::Account;
use curfew_core::calendar::Calendar;
use curfew_core::cluster_hold::ClusterHold;
use curfew_core::health::{AccountContact, HealthStore, PollerTick};
use curfew_core::inventory::{self, StoredBucket};
use curfew_core::operation::{Operation, Shard, Task, TaskOutcome};
use curfew_core::ports::Finalized;
use curfew_core::ports::Spokes;
use curfew_core::ports::{
    AccountStore, Baseline, ChangeInFlight, EndsWrite, Interrupted, Lease, LeaseToken,
    OperationPage, OperationStore, Override, PortResult, RecordedFinish, ScheduleStore, ShardParts,
    StateStore, TargetStore, TaskEnd,
};
use curfew_core::schedule::{Schedule, ScheduleList};
use curfew_core::target::{Sizes, Target};
use curfew_core::trail::{Append, AuditLog, AuditRecord, ChainHead, Link};
use futures::future::BoxFuture;

use crate::around::{AroundCall, AroundSpokes, InnerCall};
use crate::item_size::{item_size, WRITE_UNIT_BYTES};
use cpu::FakeTime;
use dynamo::{dynamo_use, DynamoUse, Seen};

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
    /// `enforced_schedules`.
    EnforcedSchedules,
    /// `create_calendar`.
    CreateCalendar,
    /// `get_calendar`.
    GetCalendar,
    /// `list_calendars`.
    ListCalendars,
    /// `delete_calendar`.
    DeleteCalendar,
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
    /// `plan_part`.
    PlanPart,
    /// `shard_parts`.
    ShardParts,
    /// `unfinished_tasks`.
    UnfinishedTasks,
    /// `list_tasks`.
    ListTasks,
    /// `get_task`.
    GetTask,
    /// `mark_interrupted`.
    MarkInterrupted,
    /// `finish_task`.
    FinishTask,
    /// `finish_task_recorded`.
    FinishTaskRecorded,
    /// `finish_tasks`.
    FinishTasks,
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
    /// `mark_in_flight`.
    MarkInFlight,
    /// `record_update`.
    RecordUpdate,
    /// `change_in_flight`.
    ChangeInFlight,
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
    /// `audit_head`.
    AuditHead,
    /// `append_audit`.
    AppendAudit,
    /// `change_recorded`.
    ChangeRecorded,
    /// `audit_heads`.
    AuditHeads,
    /// `audit_chain`.
    AuditChain,
    /// `audit_between`.
    AuditBetween,
    /// `record_poller_tick`.
    RecordPollerTick,
    /// `poller_tick`.
    PollerTick,
    /// `record_account_contact`.
    RecordAccountContact,
    /// `account_contacts`.
    AccountContacts,
}

impl StoreCall {
    /// Every method, in declaration order (the index of a call in [`StoreCounts`]).
    pub const ALL: [StoreCall; 61] = [
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
        StoreCall::EnforcedSchedules,
        StoreCall::CreateCalendar,
        StoreCall::GetCalendar,
        StoreCall::ListCalendars,
        StoreCall::DeleteCalendar,
        StoreCall::CreateOperation,
        StoreCall::GetOperation,
        StoreCall::ListOperationsPage,
        StoreCall::FixShards,
        StoreCall::ShardPlanned,
        StoreCall::PlanShard,
        StoreCall::PlanPart,
        StoreCall::ShardParts,
        StoreCall::UnfinishedTasks,
        StoreCall::ListTasks,
        StoreCall::GetTask,
        StoreCall::MarkInterrupted,
        StoreCall::FinishTask,
        StoreCall::FinishTaskRecorded,
        StoreCall::FinishTasks,
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
        StoreCall::MarkInFlight,
        StoreCall::RecordUpdate,
        StoreCall::ChangeInFlight,
        StoreCall::ReleaseLease,
        StoreCall::PutOverride,
        StoreCall::ActiveOverrides,
        StoreCall::RemoveOverride,
        StoreCall::PutInventory,
        StoreCall::InvalidateInventory,
        StoreCall::GetInventory,
        StoreCall::AuditHead,
        StoreCall::AppendAudit,
        StoreCall::ChangeRecorded,
        StoreCall::AuditHeads,
        StoreCall::AuditChain,
        StoreCall::AuditBetween,
        StoreCall::RecordPollerTick,
        StoreCall::PollerTick,
        StoreCall::RecordAccountContact,
        StoreCall::AccountContacts,
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
            StoreCall::EnforcedSchedules => "enforced_schedules",
            StoreCall::CreateCalendar => "create_calendar",
            StoreCall::GetCalendar => "get_calendar",
            StoreCall::ListCalendars => "list_calendars",
            StoreCall::DeleteCalendar => "delete_calendar",
            StoreCall::CreateOperation => "create_operation",
            StoreCall::GetOperation => "get_operation",
            StoreCall::ListOperationsPage => "list_operations_page",
            StoreCall::FixShards => "fix_shards",
            StoreCall::ShardPlanned => "shard_planned",
            StoreCall::PlanShard => "plan_shard",
            StoreCall::PlanPart => "plan_part",
            StoreCall::ShardParts => "shard_parts",
            StoreCall::UnfinishedTasks => "unfinished_tasks",
            StoreCall::ListTasks => "list_tasks",
            StoreCall::GetTask => "get_task",
            StoreCall::MarkInterrupted => "mark_interrupted",
            StoreCall::FinishTask => "finish_task",
            StoreCall::FinishTaskRecorded => "finish_task_recorded",
            StoreCall::FinishTasks => "finish_tasks",
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
            StoreCall::MarkInFlight => "mark_in_flight",
            StoreCall::RecordUpdate => "record_update",
            StoreCall::ChangeInFlight => "change_in_flight",
            StoreCall::ReleaseLease => "release_lease",
            StoreCall::PutOverride => "put_override",
            StoreCall::ActiveOverrides => "active_overrides",
            StoreCall::RemoveOverride => "remove_override",
            StoreCall::PutInventory => "put_inventory",
            StoreCall::InvalidateInventory => "invalidate_inventory",
            StoreCall::GetInventory => "get_inventory",
            StoreCall::AuditHead => "audit_head",
            StoreCall::AppendAudit => "append_audit",
            StoreCall::ChangeRecorded => "change_recorded",
            StoreCall::AuditHeads => "audit_heads",
            StoreCall::AuditChain => "audit_chain",
            StoreCall::AuditBetween => "audit_between",
            StoreCall::RecordPollerTick => "record_poller_tick",
            StoreCall::PollerTick => "poller_tick",
            StoreCall::RecordAccountContact => "record_account_contact",
            StoreCall::AccountContacts => "account_contacts",
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
                | StoreCall::EnforcedSchedules
                | StoreCall::GetCalendar
                | StoreCall::ListCalendars
                | StoreCall::GetOperation
                | StoreCall::ListOperationsPage
                | StoreCall::ShardPlanned
                | StoreCall::ShardParts
                | StoreCall::UnfinishedTasks
                | StoreCall::ListTasks
                | StoreCall::GetTask
                | StoreCall::GetBaseline
                | StoreCall::ActiveOverrides
                | StoreCall::GetInventory
                | StoreCall::AuditHead
                | StoreCall::AuditHeads
                | StoreCall::AuditChain
                | StoreCall::AuditBetween
                | StoreCall::PollerTick
                | StoreCall::AccountContacts
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
    /// What the DynamoDB adapter sends for these calls ([`dynamo::TABLE`]).
    pub dynamo: DynamoUse,
    /// Items the reading calls returned through the port: a list's length, 1 for an item
    /// found (what the services asked for, before the adapter's own extra reads).
    pub items_returned: u64,
    /// Of `dynamo`'s write units, those of each method's calls ([`StoreCall::index`] order).
    write_units: Vec<u64>,
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
            dynamo: self.dynamo.since(&earlier.dynamo),
            items_returned: self.items_returned - earlier.items_returned,
            write_units: StoreCall::ALL
                .iter()
                .map(|c| self.write_units_of(*c) - earlier.write_units_of(*c))
                .collect(),
        }
    }

    /// The write units `call`'s calls cost.
    pub fn write_units_of(&self, call: StoreCall) -> u64 {
        self.write_units.get(call.index()).copied().unwrap_or(0)
    }

    /// The methods whose calls wrote, with their write units, most first.
    pub fn writers(&self) -> Vec<(StoreCall, u64)> {
        let mut writers: Vec<(StoreCall, u64)> = StoreCall::ALL
            .iter()
            .map(|c| (*c, self.write_units_of(*c)))
            .filter(|(_, units)| *units > 0)
            .collect();
        writers.sort_by_key(|(_, units)| std::cmp::Reverse(*units));
        writers
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

/// The state table with a counter per port method and the DynamoDB traffic the adapter would
/// make for the calls ([`dynamo::TABLE`]). No lock on the counts: one atomic per counter, so
/// counting does not serialize the concurrent batches it observes.
pub struct CountingStore {
    inner: Arc<dyn StateStore>,
    calls: Vec<AtomicU64>,
    planned_tasks: AtomicU64,
    /// [`DynamoUse`]'s counters (`DynamoUse::to_array` order).
    dynamo: [AtomicU64; 13],
    items_returned: AtomicU64,
    /// How long every call takes before it reaches `inner` (the simulation's DynamoDB
    /// latency; zero in the plain in-memory runs).
    latency: std::time::Duration,
    /// Where the thread CPU time of each inner call (and the counting around it) goes, once
    /// [`CountingStore::time_into`] is called.
    timer: OnceLock<Arc<FakeTime>>,
    /// Of the write units, those of each method's calls ([`StoreCall::index`] order).
    write_units: Vec<AtomicU64>,
    /// Targets a baseline was saved for (on the lease item, which then marks that no
    /// baseline item of the earlier layout is left).
    saved_on_lease: std::sync::Mutex<HashSet<String>>,
    /// The account-regions each execution environment asked gsi1 about the earlier layout's
    /// baseline items (the adapter's `EarlierBaselines`, kept for the life of its process).
    earlier_asked: std::sync::Mutex<HashSet<(crate::sim::Environment, String)>>,
}

impl CountingStore {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn StateStore>) -> CountingStore {
        CountingStore {
            inner,
            calls: StoreCall::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            planned_tasks: AtomicU64::new(0),
            dynamo: Default::default(),
            items_returned: AtomicU64::new(0),
            latency: std::time::Duration::ZERO,
            timer: OnceLock::new(),
            write_units: StoreCall::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            saved_on_lease: Default::default(),
            earlier_asked: Default::default(),
        }
    }

    /// The same, every call taking `latency` (on tokio's clock, virtual in a simulation).
    pub fn with_latency(self, latency: std::time::Duration) -> CountingStore {
        CountingStore { latency, ..self }
    }

    /// From now on adds the thread CPU time of every inner call (with its counting) to
    /// `timer`. False, and nothing changes, if the store already has a timer.
    pub fn time_into(&self, timer: Arc<FakeTime>) -> bool {
        self.timer.set(timer).is_ok()
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
            dynamo: DynamoUse::from_array(
                self.dynamo
                    .each_ref()
                    .map(|counter| counter.load(Ordering::Relaxed)),
            ),
            items_returned: self.items_returned.load(Ordering::Relaxed),
            write_units: self
                .write_units
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// [`CountingStore::observe`] for `plan_shard` and `plan_part`: the item the adapter writes
    /// (`marker`, and whether it lists the targets) billed on its size when it lists them, else
    /// a task item per task; the `planned` tasks counted once the plan was written.
    async fn observe_plan<'a>(
        &'a self,
        call: StoreCall,
        (marker, listed): (HashMap<String, AttributeValue>, bool),
        planned: usize,
        request: BoxFuture<'a, PortResult<bool>>,
    ) -> PortResult<bool> {
        let listed_units = if listed {
            item_size(&marker).div_ceil(WRITE_UNIT_BYTES) as u64
        } else {
            0
        };
        let written = self
            .observe(call, request, move |_| Seen {
                listed_units,
                ..items(planned)
            })
            .await?;
        if written {
            self.planned_tasks
                .fetch_add(planned as u64, Ordering::Relaxed);
        }
        Ok(written)
    }

    /// Counts `call`, waits its latency, runs `request` (the inner call) and adds what the
    /// adapter would have sent for it, given what `seen` reads from its result.
    async fn observe<'a, T>(
        &'a self,
        call: StoreCall,
        request: BoxFuture<'a, PortResult<T>>,
        seen: impl FnOnce(&T) -> Seen + Send,
    ) -> PortResult<T> {
        self.calls[call.index()].fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let timer = self.timer.get();
        let started = timer.map(|t| t.start());
        let result = request.await;
        let seen = result.as_ref().map(seen).unwrap_or_default();
        if call.is_read() {
            let returned = seen.items.max(u64::from(seen.found));
            self.items_returned.fetch_add(returned, Ordering::Relaxed);
        }
        let used = dynamo_use(call, &seen);
        self.write_units[call.index()].fetch_add(used.write_units, Ordering::Relaxed);
        let used = used.to_array();
        for (counter, n) in self.dynamo.iter().zip(used) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if let (Some(timer), Some(started)) = (timer, started) {
            timer.stop(started);
        }
        result
    }
}

/// The buckets the adapter holds for `targets` (`curfew_core::inventory`), laid out afresh: the
/// in-memory store keeps targets, not the layout the adapter's refreshes left.
fn inventory_buckets(targets: &[Target]) -> Vec<StoredBucket> {
    let laid = inventory::refresh(&[], targets);
    laid.put
        .into_iter()
        .map(|(index, body)| StoredBucket {
            index,
            of: laid.buckets,
            body,
        })
        .collect()
}

/// The DynamoDB size of the item the adapter writes for `bucket` of `account` and `region`.
fn bucket_bytes(account: &str, region: &str, bucket: &StoredBucket) -> u64 {
    let item = inventory_bucket(account, region, bucket.index, bucket.of, &bucket.body);
    item_size(&item) as u64
}

/// What a refresh of `account` and `region`'s inventory cache from `had` to `listed` reads and
/// writes (`put_inventory` in the adapter's `targets.rs`).
fn inventory_refresh(account: &str, region: &str, had: &[Target], listed: &[Target]) -> Seen {
    let stored = inventory_buckets(had);
    let refresh = inventory::refresh(&stored, listed);
    let units: u64 = refresh
        .put
        .iter()
        .map(|(index, body)| {
            let bucket = StoredBucket {
                index: *index,
                of: refresh.buckets,
                body: body.clone(),
            };
            bucket_bytes(account, region, &bucket).div_ceil(WRITE_UNIT_BYTES as u64)
        })
        .sum();
    Seen {
        items: (refresh.put.len() + refresh.delete.len()) as u64,
        extra_units: units - refresh.put.len() as u64,
        cached: stored.len() as u64 + u64::from(!had.is_empty()),
        cached_bytes: stored
            .iter()
            .map(|b| bucket_bytes(account, region, b))
            .sum(),
        forgotten: refresh.forget_first,
        ..Seen::default()
    }
}

fn items(n: usize) -> Seen {
    Seen {
        items: n as u64,
        ..Seen::default()
    }
}

fn found(found: bool) -> Seen {
    Seen {
        found,
        ..Seen::default()
    }
}

fn nothing<T>(_: &T) -> Seen {
    Seen::default()
}

#[async_trait]
impl AccountStore for CountingStore {
    async fn put_account(&self, account: &Account) -> PortResult<()> {
        let request = self.inner.put_account(account);
        self.observe(StoreCall::PutAccount, request, nothing).await
    }
    async fn get_account(&self, id: &str) -> PortResult<Option<Account>> {
        let request = self.inner.get_account(id);
        self.observe(StoreCall::GetAccount, request, |a| found(a.is_some()))
            .await
    }
    async fn list_accounts(&self) -> PortResult<Vec<Account>> {
        let request = self.inner.list_accounts();
        self.observe(StoreCall::ListAccounts, request, |a| items(a.len()))
            .await
    }
    async fn delete_account(&self, id: &str) -> PortResult<bool> {
        let request = self.inner.delete_account(id);
        self.observe(StoreCall::DeleteAccount, request, |d| found(*d))
            .await
    }
}

#[async_trait]
impl ScheduleStore for CountingStore {
    async fn create_schedule(&self, schedule: &Schedule) -> PortResult<()> {
        // Only an enabled schedule with a next fire is written to the due index, and only an
        // enabled enforced one to the enforce index.
        let indexed = usize::from(schedule.enabled && schedule.next_fire.is_some())
            + usize::from(schedule.enabled && schedule.enforce);
        let request = self.inner.create_schedule(schedule);
        self.observe(StoreCall::CreateSchedule, request, move |_| items(indexed))
            .await
    }
    async fn get_schedule(&self, name: &str) -> PortResult<Option<Schedule>> {
        let request = self.inner.get_schedule(name);
        self.observe(StoreCall::GetSchedule, request, |s| found(s.is_some()))
            .await
    }
    async fn list_schedules(&self) -> PortResult<ScheduleList> {
        let request = self.inner.list_schedules();
        self.observe(StoreCall::ListSchedules, request, |l| {
            items(l.schedules.len() + l.broken.len())
        })
        .await
    }
    async fn delete_schedule(&self, name: &str) -> PortResult<bool> {
        let request = self.inner.delete_schedule(name);
        self.observe(StoreCall::DeleteSchedule, request, |d| found(*d))
            .await
    }
    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        next_fire: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        let request = self.inner.set_schedule_enabled(name, enabled, next_fire);
        self.observe(StoreCall::SetScheduleEnabled, request, |f| found(*f))
            .await
    }
    async fn due_schedules(&self, now: DateTime<Utc>) -> PortResult<ScheduleList> {
        let request = self.inner.due_schedules(now);
        self.observe(StoreCall::DueSchedules, request, |l| {
            items(l.schedules.len() + l.broken.len())
        })
        .await
    }
    async fn advance_schedule(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        let request = self.inner.advance_schedule(name, expected, next);
        self.observe(StoreCall::AdvanceSchedule, request, |a| found(*a))
            .await
    }
    async fn enforced_schedules(&self) -> PortResult<ScheduleList> {
        let request = self.inner.enforced_schedules();
        self.observe(StoreCall::EnforcedSchedules, request, |l| {
            items(l.schedules.len() + l.broken.len())
        })
        .await
    }
    async fn create_calendar(&self, calendar: &Calendar, replace: bool) -> PortResult<()> {
        let request = self.inner.create_calendar(calendar, replace);
        self.observe(StoreCall::CreateCalendar, request, |_| items(0))
            .await
    }
    async fn get_calendar(&self, name: &str) -> PortResult<Option<Calendar>> {
        let request = self.inner.get_calendar(name);
        self.observe(StoreCall::GetCalendar, request, |c| found(c.is_some()))
            .await
    }
    async fn list_calendars(&self) -> PortResult<Vec<Calendar>> {
        let request = self.inner.list_calendars();
        self.observe(StoreCall::ListCalendars, request, |l| items(l.len()))
            .await
    }
    async fn delete_calendar(&self, name: &str) -> PortResult<bool> {
        let request = self.inner.delete_calendar(name);
        self.observe(StoreCall::DeleteCalendar, request, |d| found(*d))
            .await
    }
}

/// An operation read back: found, and running (read with its counter stripes) or final.
fn operation_seen(op: &Option<Operation>) -> Seen {
    Seen {
        found: op.is_some(),
        running: u64::from(op.as_ref().is_some_and(|op| !op.status.is_final())),
        ..Seen::default()
    }
}

#[async_trait]
impl OperationStore for CountingStore {
    async fn create_operation(&self, op: &Operation) -> PortResult<bool> {
        let request = self.inner.create_operation(op);
        self.observe(StoreCall::CreateOperation, request, |c| found(*c))
            .await
    }
    async fn get_operation(&self, id: &str) -> PortResult<Option<Operation>> {
        let request = self.inner.get_operation(id);
        self.observe(StoreCall::GetOperation, request, operation_seen)
            .await
    }
    async fn list_operations_page(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> PortResult<OperationPage> {
        let request = self.inner.list_operations_page(limit, after);
        self.observe(StoreCall::ListOperationsPage, request, |page| Seen {
            items: page.operations.len() as u64,
            running: page
                .operations
                .iter()
                .filter(|op| !op.status.is_final())
                .count() as u64,
            ..Seen::default()
        })
        .await
    }
    async fn fix_shards(&self, op_id: &str, shards: &[Shard]) -> PortResult<Vec<Shard>> {
        let request = self.inner.fix_shards(op_id, shards);
        self.observe(StoreCall::FixShards, request, nothing).await
    }
    async fn shard_planned(&self, op_id: &str, shard: &Shard) -> PortResult<bool> {
        let request = self.inner.shard_planned(op_id, shard);
        self.observe(StoreCall::ShardPlanned, request, |p| found(*p))
            .await
    }
    async fn plan_shard(
        &self,
        op_id: &str,
        shard: &Shard,
        parts: u32,
        tasks: &[Task],
        note: Option<String>,
    ) -> PortResult<bool> {
        // The marker the adapter would write for this plan, billed on its size.
        let marker = dynamo_marker(op_id, shard, tasks, LISTING_BYTES);
        let request = self.inner.plan_shard(op_id, shard, parts, tasks, note);
        self.observe_plan(StoreCall::PlanShard, marker, tasks.len(), request)
            .await
    }
    async fn plan_part(
        &self,
        op_id: &str,
        shard: &Shard,
        part: u32,
        tasks: &[Task],
    ) -> PortResult<bool> {
        let marker = dynamo_part(op_id, shard, part, tasks, LISTING_BYTES);
        let request = self.inner.plan_part(op_id, shard, part, tasks);
        self.observe_plan(StoreCall::PlanPart, marker, tasks.len(), request)
            .await
    }
    async fn shard_parts(&self, op_id: &str, shard: &Shard) -> PortResult<ShardParts> {
        let request = self.inner.shard_parts(op_id, shard);
        self.observe(StoreCall::ShardParts, request, |p| items(p.tasks.len()))
            .await
    }
    async fn unfinished_tasks(&self, op_id: &str, shard: &Shard) -> PortResult<Vec<Task>> {
        let request = self.inner.unfinished_tasks(op_id, shard);
        self.observe(StoreCall::UnfinishedTasks, request, |t| items(t.len()))
            .await
    }
    async fn list_tasks(&self, op_id: &str) -> PortResult<Vec<Task>> {
        let request = self.inner.list_tasks(op_id);
        self.observe(StoreCall::ListTasks, request, |tasks| {
            let partitions: HashSet<(&str, &str)> = tasks
                .iter()
                .map(|t| (t.target.account.as_str(), t.target.region.as_str()))
                .collect();
            Seen {
                items: tasks.len() as u64,
                partitions: partitions.len() as u64,
                open: tasks.iter().filter(|t| !t.status.is_final()).count() as u64,
                ..Seen::default()
            }
        })
        .await
    }
    async fn get_task(&self, op_id: &str, target_key: &str) -> PortResult<Option<Task>> {
        let request = self.inner.get_task(op_id, target_key);
        self.observe(StoreCall::GetTask, request, |t| found(t.is_some()))
            .await
    }
    async fn mark_interrupted(
        &self,
        op_id: &str,
        target: &Target,
        before: Sizes,
        planned: Sizes,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let request = self
            .inner
            .mark_interrupted(op_id, target, before, planned, now);
        self.observe(StoreCall::MarkInterrupted, request, |b| found(*b))
            .await
    }
    async fn finish_task(
        &self,
        op_id: &str,
        target: &Target,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let request = self.inner.finish_task(op_id, target, outcome, now);
        self.observe(StoreCall::FinishTask, request, |f| found(*f))
            .await
    }
    async fn finish_task_recorded(
        &self,
        op_id: &str,
        target: &Target,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
        link: &Link,
        expected: u64,
    ) -> PortResult<RecordedFinish> {
        let request = self
            .inner
            .finish_task_recorded(op_id, target, outcome, now, link, expected);
        self.observe(StoreCall::FinishTaskRecorded, request, |r| Seen {
            found: *r == RecordedFinish::Finished,
            // The chain's first record creates its head.
            items: u64::from(*r == RecordedFinish::Finished && expected == 0),
            ..Seen::default()
        })
        .await
    }
    async fn finish_tasks(
        &self,
        writes: &[EndsWrite],
        now: DateTime<Utc>,
    ) -> PortResult<Vec<RecordedFinish>> {
        let request = self.inner.finish_tasks(writes, now);
        self.observe(StoreCall::FinishTasks, request, |results| {
            finishing_seen(writes, results, now)
        })
        .await
    }
    async fn dead_letter_task(
        &self,
        op_id: &str,
        target: &Target,
        reason: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let request = self.inner.dead_letter_task(op_id, target, reason, now);
        self.observe(StoreCall::DeadLetterTask, request, |d| found(*d))
            .await
    }
    async fn reopen_task(
        &self,
        op_id: &str,
        target_key: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let request = self.inner.reopen_task(op_id, target_key, now);
        self.observe(StoreCall::ReopenTask, request, |r| found(*r))
            .await
    }
    async fn finalize_operation(
        &self,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<Option<Finalized>> {
        let request = self.inner.finalize_operation(op_id, now);
        // `by_this_call`: it read the running operation and wrote the final one; otherwise
        // the operation was already final and was only read. None: it is running (or gone).
        self.observe(StoreCall::FinalizeOperation, request, |status| {
            let settled_now = status.is_some_and(|f| f.by_this_call);
            Seen {
                found: settled_now,
                running: u64::from(status.is_none() || settled_now),
                ..Seen::default()
            }
        })
        .await
    }
}

#[async_trait]
impl TargetStore for CountingStore {
    async fn get_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>> {
        let request = self.inner.get_baseline(target_key);
        self.observe(StoreCall::GetBaseline, request, |b| found(b.is_some()))
            .await
    }
    async fn save_baseline(
        &self,
        baseline: &Baseline,
        lease: &LeaseToken,
        replacing_own: bool,
        change: &ChangeInFlight,
    ) -> PortResult<bool> {
        let request = self
            .inner
            .save_baseline(baseline, lease, replacing_own, change);
        let saved = self
            .observe(StoreCall::SaveBaseline, request, |s| found(*s))
            .await;
        // The adapter marks the lease item with a first save (not one replacing its own).
        if let (Ok(true), false) = (&saved, replacing_own) {
            self.saved_on_lease
                .lock()
                .expect("not poisoned")
                .insert(baseline.target_key.clone());
        }
        saved
    }
    async fn retire_baseline(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        let request = self.inner.retire_baseline(target_key, saved_by, lease);
        self.observe(StoreCall::RetireBaseline, request, |r| found(*r))
            .await
    }
    async fn asleep_baselines(&self, account: &str, region: &str) -> PortResult<Vec<Baseline>> {
        let request = self.inner.asleep_baselines(account, region);
        self.observe(StoreCall::AsleepBaselines, request, |b| items(b.len()))
            .await
    }
    async fn get_cluster_hold(&self, cluster_key: &str) -> PortResult<Option<ClusterHold>> {
        let request = self.inner.get_cluster_hold(cluster_key);
        self.observe(StoreCall::GetClusterHold, request, |h| found(h.is_some()))
            .await
    }
    async fn put_cluster_hold(
        &self,
        hold: &ClusterHold,
        read: u64,
        target_key: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        let request = self.inner.put_cluster_hold(hold, read, target_key, lease);
        self.observe(StoreCall::PutClusterHold, request, |p| found(*p))
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
        let request = self
            .inner
            .acquire_lease(target_key, lease, op_created_at, now, ttl);
        let no_legacy = self
            .saved_on_lease
            .lock()
            .expect("not poisoned")
            .contains(target_key);
        self.observe(StoreCall::AcquireLease, request, |l| match l {
            // `items`: the baseline the take returned (1: read off the lease item).
            Lease::Acquired { baseline, .. } => Seen {
                found: true,
                items: u64::from(baseline.is_some()),
                no_legacy,
                // A take with neither asks once per environment and account-region.
                asks_earlier: baseline.is_none() && !no_legacy && {
                    let partition: Vec<&str> = target_key.splitn(3, '#').take(2).collect();
                    self.earlier_asked
                        .lock()
                        .expect("not poisoned")
                        .insert((crate::sim::environment(), partition.join("#")))
                },
                ..Seen::default()
            },
            _ => Seen::default(),
        })
        .await
    }
    async fn mark_in_flight(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        change: &ChangeInFlight,
    ) -> PortResult<()> {
        let request = self.inner.mark_in_flight(target_key, lease, change);
        self.observe(StoreCall::MarkInFlight, request, nothing)
            .await
    }
    async fn record_update(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        update_id: &str,
    ) -> PortResult<()> {
        let request = self.inner.record_update(target_key, lease, update_id);
        self.observe(StoreCall::RecordUpdate, request, nothing)
            .await
    }
    async fn change_in_flight(&self, target_key: &str) -> PortResult<Option<Interrupted>> {
        let request = self.inner.change_in_flight(target_key);
        self.observe(StoreCall::ChangeInFlight, request, |m| found(m.is_some()))
            .await
    }
    async fn release_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        finished: bool,
    ) -> PortResult<()> {
        let request = self.inner.release_lease(target_key, lease, finished);
        self.observe(StoreCall::ReleaseLease, request, nothing)
            .await
    }
    async fn put_override(&self, o: &Override) -> PortResult<()> {
        let request = self.inner.put_override(o);
        self.observe(StoreCall::PutOverride, request, nothing).await
    }
    async fn active_overrides(&self, now: DateTime<Utc>) -> PortResult<Vec<Override>> {
        let request = self.inner.active_overrides(now);
        self.observe(StoreCall::ActiveOverrides, request, |o| items(o.len()))
            .await
    }
    async fn remove_override(&self, id: &str) -> PortResult<bool> {
        let request = self.inner.remove_override(id);
        self.observe(StoreCall::RemoveOverride, request, |r| found(*r))
            .await
    }
    async fn put_inventory(
        &self,
        account: &str,
        region: &str,
        targets: &[Target],
        now: DateTime<Utc>,
    ) -> PortResult<()> {
        // What the adapter reads and writes depends on what the cache held: read it first,
        // uncounted (the adapter's own Query of it is counted below).
        let had = self
            .inner
            .get_inventory(account, region)
            .await?
            .map(|(_, had)| had)
            .unwrap_or_default();
        let listed = targets.to_vec();
        let request = self.inner.put_inventory(account, region, targets, now);
        self.observe(StoreCall::PutInventory, request, move |_| {
            inventory_refresh(account, region, &had, &listed)
        })
        .await
    }
    async fn invalidate_inventory(&self, account: &str, region: &str) -> PortResult<()> {
        let request = self.inner.invalidate_inventory(account, region);
        self.observe(StoreCall::InvalidateInventory, request, nothing)
            .await
    }
    async fn get_inventory(
        &self,
        account: &str,
        region: &str,
    ) -> PortResult<Option<(DateTime<Utc>, Vec<Target>)>> {
        let request = self.inner.get_inventory(account, region);
        self.observe(StoreCall::GetInventory, request, |inventory| {
            inventory
                .as_ref()
                .map_or_else(Seen::default, |(_, targets)| {
                    let buckets = inventory_buckets(targets);
                    Seen {
                        items: buckets.len() as u64,
                        cached_bytes: buckets
                            .iter()
                            .map(|b| bucket_bytes(account, region, b))
                            .sum(),
                        found: true,
                        ..Seen::default()
                    }
                })
        })
        .await
    }
}

#[async_trait]
impl AuditLog for CountingStore {
    async fn audit_head(&self, chain: &str) -> PortResult<Option<ChainHead>> {
        let request = self.inner.audit_head(chain);
        self.observe(StoreCall::AuditHead, request, |h| found(h.is_some()))
            .await
    }
    async fn append_audit(
        &self,
        link: &Link,
        expected: u64,
        at: DateTime<Utc>,
    ) -> PortResult<Append> {
        let request = self.inner.append_audit(link, expected, at);
        self.observe(StoreCall::AppendAudit, request, |a| Seen {
            found: *a == Append::Appended,
            // The chain's first record creates its head.
            items: u64::from(*a == Append::Appended && expected == 0),
            ..Seen::default()
        })
        .await
    }
    async fn change_recorded(&self, chain: &str, key_of_change: &str) -> PortResult<bool> {
        let request = self.inner.change_recorded(chain, key_of_change);
        self.observe(StoreCall::ChangeRecorded, request, |r| found(*r))
            .await
    }
    async fn audit_heads(&self) -> PortResult<Vec<ChainHead>> {
        let request = self.inner.audit_heads();
        self.observe(StoreCall::AuditHeads, request, |h| items(h.len()))
            .await
    }
    async fn audit_chain(&self, chain: &str) -> PortResult<Vec<AuditRecord>> {
        let request = self.inner.audit_chain(chain);
        self.observe(StoreCall::AuditChain, request, |r| items(r.len()))
            .await
    }
    async fn audit_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<AuditRecord>> {
        let request = self.inner.audit_between(since, until);
        self.observe(StoreCall::AuditBetween, request, |r| items(r.len()))
            .await
    }
}

/// The spoke clients with the thread CPU time of every call added to a [`FakeTime`]: in a plain
/// run the spokes are [`curfew_core::fakes::FakeSpokes`], whose cost is not curfew's.
pub struct TimedSpokes {
    timer: Arc<FakeTime>,
}

impl TimedSpokes {
    /// Times `inner`'s calls into `timer`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(inner: Arc<dyn Spokes>, timer: Arc<FakeTime>) -> AroundSpokes<TimedSpokes> {
        AroundSpokes::new(inner, TimedSpokes { timer })
    }
}

#[async_trait]
impl AroundCall for TimedSpokes {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        _account: &'a str,
        _region: &'a str,
        call: &'a InnerCall<'a, T>,
    ) -> PortResult<T> {
        let started = self.timer.start();
        let result = call().await;
        self.timer.stop(started);
        result
    }
}

#[async_trait]
impl HealthStore for CountingStore {
    async fn record_poller_tick(&self, tick: &PollerTick) -> PortResult<()> {
        let request = self.inner.record_poller_tick(tick);
        self.observe(StoreCall::RecordPollerTick, request, nothing)
            .await
    }
    async fn poller_tick(&self) -> PortResult<Option<PollerTick>> {
        let request = self.inner.poller_tick();
        self.observe(StoreCall::PollerTick, request, |t| found(t.is_some()))
            .await
    }
    async fn record_account_contact(&self, contact: &AccountContact) -> PortResult<()> {
        let request = self.inner.record_account_contact(contact);
        self.observe(StoreCall::RecordAccountContact, request, nothing)
            .await
    }
    async fn account_contacts(&self) -> PortResult<Vec<AccountContact>> {
        let request = self.inner.account_contacts();
        self.observe(StoreCall::AccountContacts, request, |c| items(c.len()))
            .await
    }
}

/// What the adapter writes for `writes` finished as `results` say: each write is one
/// transaction of the ends finished in it (the ends refused in a cancelled try are left out of
/// the next), with its record unless that was left out (billed on its size) and the record's
/// by-time index entry; a chain's first record creates its head's.
fn finishing_seen(writes: &[EndsWrite], results: &[RecordedFinish], now: DateTime<Utc>) -> Seen {
    let mut seen = Seen::default();
    let mut results = results.iter();
    for write in writes {
        let written: Vec<(&TaskEnd, RecordedFinish)> = write
            .ends
            .iter()
            .zip(results.by_ref())
            .filter(|(_, result)| **result == RecordedFinish::Finished)
            .map(|(end, result)| (end, *result))
            .collect();
        if written.is_empty() {
            continue;
        }
        // The record was left out when its recorded ends came back to be linked again.
        let recorded = write.record.is_some() && written.iter().any(|(end, _)| end.recorded);
        seen.transactions += 1;
        seen.items += EndsWrite::items(written.iter().map(|(end, _)| *end), recorded) as u64;
        if !recorded {
            continue;
        }
        if let Some((_, expected)) = &write.record {
            // The chain's first record creates its head, indexed in gsi3.
            seen.index_entries += u64::from(*expected == 0);
        }
        // The record, billed on its size in the transaction.
        if let Some(record) = finishing::record_of(write, now) {
            let units = item_size(&record).div_ceil(WRITE_UNIT_BYTES) as u64;
            seen.extra_units += 2 * (units - 1);
        }
        // The record's index entry (in gsi2, which projects it whole), billed on its size in
        // the transaction and in the index.
        if let Some(index) = finishing::records_index(write, now) {
            let units = item_size(&index).div_ceil(WRITE_UNIT_BYTES) as u64;
            seen.index_entries += units;
            seen.extra_units += 2 * (units - 1);
        }
    }
    seen.found = seen.transactions > 0;
    seen
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

    #[tokio::test]
    async fn the_dynamodb_items_a_query_reads_are_the_items_the_call_returned() {
        let memory = Arc::new(MemoryStore::new());
        for id in ["123456789012", "123456789013", "123456789014"] {
            let role = format!("arn:aws:iam::{id}:role/curfew-spoke");
            let account = Account::new(id, &role, None, &["eu-west-1".to_string()]).unwrap();
            memory.put_account(&account).await.unwrap();
        }
        let store = CountingStore::new(memory);
        store.list_accounts().await.unwrap();
        store.get_account("999999999999").await.unwrap();
        let dynamo = store.counts().dynamo;
        assert_eq!(dynamo.requests(dynamo::DynamoApi::Query), 1);
        assert_eq!(dynamo.requests(dynamo::DynamoApi::GetItem), 1);
        assert_eq!(
            dynamo.items_read,
            3 + 1,
            "three accounts listed, one key read"
        );
        assert_eq!(dynamo.read_units(), 1.0 + 1.0);
        assert_eq!(
            store.counts().items_returned,
            3,
            "the key read found nothing"
        );
    }

    /// The cache is billed by its buckets' kilobytes: a first listing at about a tenth of a
    /// unit a target (an item a target was 1), an unchanged one at its marker only, a retagged
    /// target at its own bucket.
    #[tokio::test]
    async fn an_inventory_refresh_writes_the_buckets_that_changed_and_its_marker() {
        let store = CountingStore::new(Arc::new(MemoryStore::new()));
        let listed: Vec<Target> = (0..1_000)
            .map(|i| crate::scale::seeded_target("123456789012", "eu-west-1", i))
            .collect();
        let now = Utc::now();
        let writes = |store: &CountingStore| store.counts().write_units_of(StoreCall::PutInventory);
        store
            .put_inventory("123456789012", "eu-west-1", &listed, now)
            .await
            .unwrap();
        let first = writes(&store);
        assert!(
            (40..=125).contains(&first),
            "{first} units for 1,000 targets"
        );
        store
            .put_inventory("123456789012", "eu-west-1", &listed, now)
            .await
            .unwrap();
        assert_eq!(
            writes(&store),
            first + 1,
            "nothing changed: the marker only"
        );
        let mut changed = listed.clone();
        changed[0].tags.insert("team".into(), "web".into());
        store
            .put_inventory("123456789012", "eu-west-1", &changed, now)
            .await
            .unwrap();
        let retag = writes(&store) - first - 1;
        assert!(
            (2..=12).contains(&retag),
            "one bucket of some 8 KB and the marker: {retag}"
        );
    }

    #[tokio::test]
    async fn every_call_to_the_fakes_is_timed_once_when_asked() {
        let timer = Arc::new(FakeTime::new());
        let store = CountingStore::new(Arc::new(MemoryStore::new()));
        assert!(store.time_into(timer.clone()));
        assert!(
            !store.time_into(Arc::new(FakeTime::new())),
            "one timer only"
        );
        store.list_accounts().await.unwrap();
        store.get_baseline("k").await.unwrap();
        let fake = Arc::new(curfew_core::fakes::FakeSpokes::new());
        let target = crate::scale::seeded_target("123456789012", "eu-west-1", 0);
        fake.add(target.clone(), curfew_core::target::Sizes::new(1, 3, 2));
        let spokes = TimedSpokes::new(fake.clone(), timer.clone());
        let role = curfew_core::account::SpokeRole {
            account: target.account.clone(),
            role_arn: "arn:aws:iam::123456789012:role/curfew-spoke".into(),
            external_id: None,
        };
        spokes.live_state(&role, &target).await.unwrap();
        assert_eq!(timer.totals().calls, 3);
        assert_eq!(fake.calls(), 1, "the spoke call reached the fake");
        let untimed = CountingStore::new(Arc::new(MemoryStore::new()));
        untimed.list_accounts().await.unwrap();
        assert_eq!(
            timer.totals().calls,
            3,
            "a store not asked to time is not timed"
        );
    }
}
