//! The fault layer: decorators around the in-memory fakes that consult a seeded [`Faults`]
//! before and after every port call. A call may be throttled (nothing happened), slowed (the
//! virtual clock jumps), cut off by a crash of the whole handler invocation (the Lambda died:
//! nothing after that point runs, not even a lease release), or answer with an error after its
//! effect took place (the answer was lost on the way back).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use curfew_core::account::{Account, SpokeRole};
use curfew_core::calendar::Calendar;
use curfew_core::clock::{Clock, ManualClock};
use curfew_core::cluster::{
    ClusterApi, ClusterRef, CronJob, Hpa, Namespace, NodePool, Workload, WorkloadKind,
};
use curfew_core::cluster_hold::ClusterHold;
use curfew_core::health::{AccountContact, HealthStore, PollerTick};
use curfew_core::hold::CaTag;
use curfew_core::operation::{Operation, Shard, Task, TaskOutcome};
use curfew_core::ports::Finalized;
use curfew_core::ports::{
    AccountStore, Baseline, ChangeInFlight, EndsWrite, ErrorKind, Interrupted, Lease, LeaseToken,
    OperationPage, OperationStore, Override, PortError, PortResult, RecordedFinish, ScheduleStore,
    ShardParts, Spokes, StateStore, TargetStore, UpdateState,
};
use curfew_core::schedule::{Schedule, ScheduleList};
use curfew_core::target::{LiveState, Processes, Sizes, Target};
use curfew_core::trail::{Append, AuditLog, AuditRecord, ChainHead, Link};
use futures::stream::{BoxStream, StreamExt};
use rand::rngs::StdRng;
use rand::RngExt;
use tokio::sync::Notify;

/// One handler invocation (a Lambda running one batch): it dies when a fault crashes it or when
/// it runs past its timeout.
pub struct Invocation {
    /// Signalled when the invocation crashed; the driver then drops it.
    pub crashed: Notify,
    /// The function timeout: past it, the next port call kills the invocation.
    pub deadline: DateTime<Utc>,
}

tokio::task_local! {
    /// The invocation whose code is running (each concurrent batch runs in its own scope).
    pub static INVOCATION: Arc<Invocation>;
}

/// Probabilities of each fault at one port call.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// The handler crashes here.
    pub crash: f64,
    /// The call fails as throttled before it takes effect.
    pub throttle: f64,
    /// The call takes effect but its answer is lost (the caller sees a transient error).
    pub lost_answer: f64,
    /// The call is slow: the virtual clock jumps forward.
    pub slow: f64,
    /// The call yields to the other invocations running at the same time (interleaving).
    pub interleave: f64,
    /// A queue stores a sent message twice, or a delete is lost (at-least-once delivery).
    pub duplicate: f64,
}

/// The seeded source of faults, shared by every decorated port.
pub struct Faults {
    rng: Mutex<StdRng>,
    rates: Rates,
    enabled: AtomicBool,
    injected: AtomicU64,
    clock: Arc<ManualClock>,
    /// Crash right after the n-th port call that took effect (a deterministic crash point).
    crash_after: Option<u64>,
    calls: AtomicU64,
}

/// No faults at all (used with a deterministic crash point).
const QUIET: Rates = Rates {
    crash: 0.0,
    throttle: 0.0,
    lost_answer: 0.0,
    slow: 0.0,
    interleave: 0.0,
    duplicate: 0.0,
};

/// Runs `handler` as one invocation (its own crash signal and function timeout) and drops it
/// at a crash: `None` if it crashed, as a Lambda that died returns nothing.
pub async fn invoke_once<T>(
    deadline: DateTime<Utc>,
    handler: impl std::future::Future<Output = T>,
) -> Option<T> {
    let invocation = Arc::new(Invocation {
        crashed: Notify::new(),
        deadline,
    });
    let crashed = invocation.crashed.notified();
    tokio::select! {
        biased;
        outcome = INVOCATION.scope(invocation.clone(), handler) => Some(outcome),
        _ = crashed => None,
    }
}

enum Stage {
    Before,
    After,
}

impl Faults {
    /// Faults drawn from `rng` at `rates`, slow calls moving `clock`.
    pub fn new(rng: StdRng, rates: Rates, clock: Arc<ManualClock>) -> Self {
        Faults {
            rng: Mutex::new(rng),
            rates,
            enabled: AtomicBool::new(true),
            injected: AtomicU64::new(0),
            clock,
            crash_after: None,
            calls: AtomicU64::new(0),
        }
    }

    /// No random faults; the invocation crashes right after the `n`-th port call (counting
    /// from 1) has taken effect, before its caller sees the answer.
    pub fn crash_after(n: u64, clock: Arc<ManualClock>) -> Self {
        Faults {
            crash_after: Some(n),
            ..Faults::new(rand::SeedableRng::seed_from_u64(0), QUIET, clock)
        }
    }

    /// Port calls that took effect inside invocations so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Stops injecting faults (the system is left to quiesce).
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn roll(&self, p: f64) -> bool {
        self.enabled.load(Ordering::SeqCst) && self.rng.lock().expect("rng lock").random_bool(p)
    }

    fn count(&self) {
        self.injected.fetch_add(1, Ordering::SeqCst);
    }

    /// Crashes the running invocation: signals the driver and never returns.
    async fn crash(&self) -> ! {
        if let Ok(invocation) = INVOCATION.try_with(Arc::clone) {
            invocation.crashed.notify_one();
        }
        std::future::pending::<()>().await;
        unreachable!("a crashed invocation is never polled again")
    }

    /// Kills the invocation if it has run past its function timeout.
    async fn enforce_timeout(&self) {
        let over = INVOCATION
            .try_with(|i| self.clock.now() > i.deadline)
            .unwrap_or(false);
        if over {
            self.crash().await;
        }
    }

    /// True when a queue should deliver a message once more than it was sent.
    pub fn duplicate(&self) -> bool {
        let twice = self.roll(self.rates.duplicate);
        if twice {
            self.count();
        }
        twice
    }

    async fn point(&self, call: &str, stage: Stage) -> PortResult<()> {
        // Faults strike the handlers (router and worker invocations), not the operator's own
        // calls that create operations.
        if INVOCATION.try_with(|_| ()).is_err() {
            return Ok(());
        }
        self.enforce_timeout().await;
        if self.roll(self.rates.interleave) {
            tokio::task::yield_now().await;
            self.enforce_timeout().await;
        }
        if self.roll(self.rates.slow) {
            self.count();
            let seconds = self.rng.lock().expect("rng lock").random_range(5..45);
            self.clock.advance(Duration::seconds(seconds));
            tokio::task::yield_now().await;
            self.enforce_timeout().await;
        }
        if self.roll(self.rates.crash) {
            self.count();
            self.crash().await;
        }
        if let Stage::After = stage {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.crash_after == Some(call) {
                self.count();
                self.crash().await;
            }
        }
        let (p, what) = match stage {
            Stage::Before => (self.rates.throttle, "throttled"),
            Stage::After => (self.rates.lost_answer, "answer lost"),
        };
        if self.roll(p) {
            self.count();
            return Err(PortError::new(
                ErrorKind::Throttled,
                format!("{call}: {what} (injected)"),
            ));
        }
        Ok(())
    }

    /// Before a call takes effect.
    pub async fn before(&self, call: &str) -> PortResult<()> {
        self.point(call, Stage::Before).await
    }

    /// After a call took effect, before the caller sees its answer.
    pub async fn after(&self, call: &str) -> PortResult<()> {
        self.point(call, Stage::After).await
    }
}

/// Runs `call` between the fault points around one port call.
macro_rules! hooked {
    ($self:ident, $name:literal, $call:expr) => {{
        $self.faults.before($name).await?;
        let answer = $call.await;
        $self.faults.after($name).await?;
        answer
    }};
}

#[async_trait]
impl AuditLog for ChaosStore {
    async fn audit_head(&self, chain: &str) -> PortResult<Option<ChainHead>> {
        hooked!(self, "audit_head", self.inner.audit_head(chain))
    }
    async fn append_audit(
        &self,
        link: &Link,
        expected: u64,
        at: DateTime<Utc>,
    ) -> PortResult<Append> {
        hooked!(
            self,
            "append_audit",
            self.inner.append_audit(link, expected, at)
        )
    }
    async fn change_recorded(&self, chain: &str, key_of_change: &str) -> PortResult<bool> {
        hooked!(
            self,
            "change_recorded",
            self.inner.change_recorded(chain, key_of_change)
        )
    }
    async fn audit_heads(&self) -> PortResult<Vec<ChainHead>> {
        hooked!(self, "audit_heads", self.inner.audit_heads())
    }
    async fn audit_chain(&self, chain: &str) -> PortResult<Vec<AuditRecord>> {
        hooked!(self, "audit_chain", self.inner.audit_chain(chain))
    }
    async fn audit_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<AuditRecord>> {
        hooked!(
            self,
            "audit_between",
            self.inner.audit_between(since, until)
        )
    }
}

/// The state table with faults.
pub struct ChaosStore {
    /// The table.
    pub inner: Arc<dyn StateStore>,
    /// Where faults come from.
    pub faults: Arc<Faults>,
}

#[async_trait]
impl AccountStore for ChaosStore {
    async fn put_account(&self, account: &Account) -> PortResult<()> {
        hooked!(self, "put_account", self.inner.put_account(account))
    }
    async fn get_account(&self, id: &str) -> PortResult<Option<Account>> {
        hooked!(self, "get_account", self.inner.get_account(id))
    }
    async fn list_accounts(&self) -> PortResult<Vec<Account>> {
        hooked!(self, "list_accounts", self.inner.list_accounts())
    }
    async fn delete_account(&self, id: &str) -> PortResult<bool> {
        hooked!(self, "delete_account", self.inner.delete_account(id))
    }
}

#[async_trait]
impl ScheduleStore for ChaosStore {
    async fn create_schedule(&self, schedule: &Schedule) -> PortResult<()> {
        hooked!(
            self,
            "create_schedule",
            self.inner.create_schedule(schedule)
        )
    }
    async fn get_schedule(&self, name: &str) -> PortResult<Option<Schedule>> {
        hooked!(self, "get_schedule", self.inner.get_schedule(name))
    }
    async fn list_schedules(&self) -> PortResult<ScheduleList> {
        hooked!(self, "list_schedules", self.inner.list_schedules())
    }
    async fn delete_schedule(&self, name: &str) -> PortResult<bool> {
        hooked!(self, "delete_schedule", self.inner.delete_schedule(name))
    }
    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        next_fire: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "set_schedule_enabled",
            self.inner.set_schedule_enabled(name, enabled, next_fire)
        )
    }
    async fn due_schedules(&self, now: DateTime<Utc>) -> PortResult<ScheduleList> {
        hooked!(self, "due_schedules", self.inner.due_schedules(now))
    }
    async fn advance_schedule(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "advance_schedule",
            self.inner.advance_schedule(name, expected, next)
        )
    }
    async fn enforced_schedules(&self) -> PortResult<ScheduleList> {
        hooked!(self, "enforced_schedules", self.inner.enforced_schedules())
    }
    async fn create_calendar(&self, calendar: &Calendar, replace: bool) -> PortResult<()> {
        hooked!(
            self,
            "create_calendar",
            self.inner.create_calendar(calendar, replace)
        )
    }
    async fn get_calendar(&self, name: &str) -> PortResult<Option<Calendar>> {
        hooked!(self, "get_calendar", self.inner.get_calendar(name))
    }
    async fn list_calendars(&self) -> PortResult<Vec<Calendar>> {
        hooked!(self, "list_calendars", self.inner.list_calendars())
    }
    async fn delete_calendar(&self, name: &str) -> PortResult<bool> {
        hooked!(self, "delete_calendar", self.inner.delete_calendar(name))
    }
}

#[async_trait]
impl OperationStore for ChaosStore {
    async fn create_operation(&self, op: &Operation) -> PortResult<bool> {
        hooked!(self, "create_operation", self.inner.create_operation(op))
    }
    async fn get_operation(&self, id: &str) -> PortResult<Option<Operation>> {
        hooked!(self, "get_operation", self.inner.get_operation(id))
    }
    async fn list_operations_page(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> PortResult<OperationPage> {
        hooked!(
            self,
            "list_operations_page",
            self.inner.list_operations_page(limit, after)
        )
    }
    async fn fix_shards(&self, op_id: &str, shards: &[Shard]) -> PortResult<Vec<Shard>> {
        hooked!(self, "fix_shards", self.inner.fix_shards(op_id, shards))
    }
    async fn shard_planned(&self, op_id: &str, shard: &Shard) -> PortResult<bool> {
        hooked!(
            self,
            "shard_planned",
            self.inner.shard_planned(op_id, shard)
        )
    }
    async fn plan_shard(
        &self,
        op_id: &str,
        shard: &Shard,
        parts: u32,
        tasks: &[Task],
        note: Option<String>,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "plan_shard",
            self.inner.plan_shard(op_id, shard, parts, tasks, note)
        )
    }
    async fn plan_part(
        &self,
        op_id: &str,
        shard: &Shard,
        part: u32,
        tasks: &[Task],
    ) -> PortResult<bool> {
        hooked!(
            self,
            "plan_part",
            self.inner.plan_part(op_id, shard, part, tasks)
        )
    }
    async fn shard_parts(&self, op_id: &str, shard: &Shard) -> PortResult<ShardParts> {
        hooked!(self, "shard_parts", self.inner.shard_parts(op_id, shard))
    }
    async fn unfinished_tasks(&self, op_id: &str, shard: &Shard) -> PortResult<Vec<Task>> {
        hooked!(
            self,
            "unfinished_tasks",
            self.inner.unfinished_tasks(op_id, shard)
        )
    }
    async fn list_tasks(&self, op_id: &str) -> PortResult<Vec<Task>> {
        hooked!(self, "list_tasks", self.inner.list_tasks(op_id))
    }
    async fn get_task(&self, op_id: &str, target_key: &str) -> PortResult<Option<Task>> {
        hooked!(self, "get_task", self.inner.get_task(op_id, target_key))
    }
    async fn mark_interrupted(
        &self,
        op_id: &str,
        target: &Target,
        before: Sizes,
        planned: Sizes,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "mark_interrupted",
            self.inner
                .mark_interrupted(op_id, target, before, planned, now)
        )
    }
    async fn finish_task(
        &self,
        op_id: &str,
        target: &Target,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "finish_task",
            self.inner.finish_task(op_id, target, outcome, now)
        )
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
        hooked!(
            self,
            "finish_task_recorded",
            self.inner
                .finish_task_recorded(op_id, target, outcome, now, link, expected)
        )
    }
    async fn finish_tasks(
        &self,
        writes: &[EndsWrite],
        now: DateTime<Utc>,
    ) -> PortResult<Vec<RecordedFinish>> {
        hooked!(self, "finish_tasks", self.inner.finish_tasks(writes, now))
    }
    async fn dead_letter_task(
        &self,
        op_id: &str,
        target: &Target,
        reason: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "dead_letter_task",
            self.inner.dead_letter_task(op_id, target, reason, now)
        )
    }
    async fn reopen_task(
        &self,
        op_id: &str,
        target_key: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "reopen_task",
            self.inner.reopen_task(op_id, target_key, now)
        )
    }
    async fn finalize_operation(
        &self,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<Option<Finalized>> {
        hooked!(
            self,
            "finalize_operation",
            self.inner.finalize_operation(op_id, now)
        )
    }
}

/// The health records are outside the chaos model (nothing the invariants check depends on
/// them): forwarded without faults, so the seeded runs draw the same faults as before.
#[async_trait]
impl HealthStore for ChaosStore {
    async fn record_poller_tick(&self, tick: &PollerTick) -> PortResult<()> {
        self.inner.record_poller_tick(tick).await
    }
    async fn poller_tick(&self) -> PortResult<Option<PollerTick>> {
        self.inner.poller_tick().await
    }
    async fn record_account_contact(&self, contact: &AccountContact) -> PortResult<()> {
        self.inner.record_account_contact(contact).await
    }
    async fn account_contacts(&self) -> PortResult<Vec<AccountContact>> {
        self.inner.account_contacts().await
    }
}

#[async_trait]
impl TargetStore for ChaosStore {
    async fn get_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>> {
        hooked!(self, "get_baseline", self.inner.get_baseline(target_key))
    }
    async fn save_baseline(
        &self,
        baseline: &Baseline,
        lease: &LeaseToken,
        replacing_own: bool,
        change: &ChangeInFlight,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "save_baseline",
            self.inner
                .save_baseline(baseline, lease, replacing_own, change)
        )
    }
    async fn retire_baseline(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "retire_baseline",
            self.inner.retire_baseline(target_key, saved_by, lease)
        )
    }
    async fn asleep_baselines(&self, account: &str, region: &str) -> PortResult<Vec<Baseline>> {
        hooked!(
            self,
            "asleep_baselines",
            self.inner.asleep_baselines(account, region)
        )
    }
    async fn get_cluster_hold(&self, cluster_key: &str) -> PortResult<Option<ClusterHold>> {
        hooked!(
            self,
            "get_cluster_hold",
            self.inner.get_cluster_hold(cluster_key)
        )
    }
    async fn put_cluster_hold(
        &self,
        hold: &ClusterHold,
        read: u64,
        target_key: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        hooked!(
            self,
            "put_cluster_hold",
            self.inner.put_cluster_hold(hold, read, target_key, lease)
        )
    }
    async fn acquire_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        op_created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> PortResult<Lease> {
        hooked!(
            self,
            "acquire_lease",
            self.inner
                .acquire_lease(target_key, lease, op_created_at, now, ttl)
        )
    }
    async fn mark_in_flight(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        change: &ChangeInFlight,
    ) -> PortResult<()> {
        hooked!(
            self,
            "mark_in_flight",
            self.inner.mark_in_flight(target_key, lease, change)
        )
    }
    async fn record_update(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        update_id: &str,
    ) -> PortResult<()> {
        hooked!(
            self,
            "record_update",
            self.inner.record_update(target_key, lease, update_id)
        )
    }
    async fn change_in_flight(&self, target_key: &str) -> PortResult<Option<Interrupted>> {
        hooked!(
            self,
            "change_in_flight",
            self.inner.change_in_flight(target_key)
        )
    }
    async fn release_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        finished: bool,
    ) -> PortResult<()> {
        hooked!(
            self,
            "release_lease",
            self.inner.release_lease(target_key, lease, finished)
        )
    }
    async fn put_override(&self, o: &Override) -> PortResult<()> {
        hooked!(self, "put_override", self.inner.put_override(o))
    }
    async fn active_overrides(&self, now: DateTime<Utc>) -> PortResult<Vec<Override>> {
        hooked!(self, "active_overrides", self.inner.active_overrides(now))
    }
    async fn remove_override(&self, id: &str) -> PortResult<bool> {
        hooked!(self, "remove_override", self.inner.remove_override(id))
    }
    async fn put_inventory(
        &self,
        account: &str,
        region: &str,
        targets: &[Target],
        now: DateTime<Utc>,
    ) -> PortResult<()> {
        hooked!(
            self,
            "put_inventory",
            self.inner.put_inventory(account, region, targets, now)
        )
    }
    async fn invalidate_inventory(&self, account: &str, region: &str) -> PortResult<()> {
        hooked!(
            self,
            "invalidate_inventory",
            self.inner.invalidate_inventory(account, region)
        )
    }
    async fn get_inventory(
        &self,
        account: &str,
        region: &str,
    ) -> PortResult<Option<(DateTime<Utc>, Vec<Target>)>> {
        hooked!(
            self,
            "get_inventory",
            self.inner.get_inventory(account, region)
        )
    }
}

/// Spoke accounts with faults.
pub struct ChaosSpokes {
    /// The fleet.
    pub inner: Arc<dyn Spokes>,
    /// Where faults come from.
    pub faults: Arc<Faults>,
}

#[async_trait]
impl Spokes for ChaosSpokes {
    async fn ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>> {
        hooked!(self, "ca_tags", self.inner.ca_tags(role, target))
    }
    async fn remove_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        hooked!(
            self,
            "remove_ca_tags",
            self.inner.remove_ca_tags(role, target, tags)
        )
    }
    async fn restore_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        hooked!(
            self,
            "restore_ca_tags",
            self.inner.restore_ca_tags(role, target, tags)
        )
    }
    async fn suspend_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        hooked!(
            self,
            "suspend_processes",
            self.inner.suspend_processes(role, target, processes)
        )
    }
    async fn resume_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        hooked!(
            self,
            "resume_processes",
            self.inner.resume_processes(role, target, processes)
        )
    }
    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>> {
        hooked!(self, "discover", self.inner.discover(role, region))
    }
    /// Each page between fault points: a listing can stop (crash, throttle, lost answer) after
    /// any page, with the parts planned before it standing.
    fn discover_pages<'a>(
        &'a self,
        role: &'a SpokeRole,
        region: &'a str,
    ) -> BoxStream<'a, PortResult<Vec<Target>>> {
        Box::pin(
            self.inner
                .discover_pages(role, region)
                .then(move |page| async move {
                    self.faults.before("discover").await?;
                    let page = page?;
                    self.faults.after("discover").await?;
                    Ok(page)
                }),
        )
    }
    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        hooked!(self, "live_state", self.inner.live_state(role, target))
    }
    async fn set_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>> {
        hooked!(self, "set_sizes", self.inner.set_sizes(role, target, sizes))
    }
    async fn update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        expected: Sizes,
    ) -> PortResult<UpdateState> {
        hooked!(
            self,
            "update_state",
            self.inner.update_state(role, target, update_id, expected)
        )
    }
}

/// Clusters' Kubernetes APIs with faults.
pub struct ChaosClusters {
    /// The clusters.
    pub inner: Arc<dyn ClusterApi>,
    /// Where faults come from.
    pub faults: Arc<Faults>,
}

#[async_trait]
impl ClusterApi for ChaosClusters {
    async fn deployment_replicas(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
    ) -> PortResult<Option<i32>> {
        hooked!(
            self,
            "deployment_replicas",
            self.inner.deployment_replicas(at, namespace, name)
        )
    }
    async fn scale(
        &self,
        at: &ClusterRef,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> PortResult<()> {
        hooked!(
            self,
            "scale",
            self.inner.scale(at, kind, namespace, name, replicas)
        )
    }
    async fn node_pools(&self, at: &ClusterRef) -> PortResult<Vec<NodePool>> {
        hooked!(self, "node_pools", self.inner.node_pools(at))
    }
    async fn set_node_pool_limits(
        &self,
        at: &ClusterRef,
        name: &str,
        limits: Option<&BTreeMap<String, String>>,
    ) -> PortResult<()> {
        hooked!(
            self,
            "set_node_pool_limits",
            self.inner.set_node_pool_limits(at, name, limits)
        )
    }
    async fn drain_node_pool(&self, at: &ClusterRef, name: &str) -> PortResult<usize> {
        hooked!(
            self,
            "drain_node_pool",
            self.inner.drain_node_pool(at, name)
        )
    }
    async fn namespaces(&self, at: &ClusterRef) -> PortResult<Vec<Namespace>> {
        hooked!(self, "namespaces", self.inner.namespaces(at))
    }
    async fn workloads(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Workload>> {
        hooked!(self, "workloads", self.inner.workloads(at, namespace))
    }
    async fn cron_jobs(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<CronJob>> {
        hooked!(self, "cron_jobs", self.inner.cron_jobs(at, namespace))
    }
    async fn set_cron_job_suspended(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        suspended: bool,
    ) -> PortResult<()> {
        hooked!(
            self,
            "set_cron_job_suspended",
            self.inner
                .set_cron_job_suspended(at, namespace, name, suspended)
        )
    }
    async fn hpas(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Hpa>> {
        hooked!(self, "hpas", self.inner.hpas(at, namespace))
    }
    async fn set_hpa_min(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        min_replicas: i32,
    ) -> PortResult<()> {
        hooked!(
            self,
            "set_hpa_min",
            self.inner.set_hpa_min(at, namespace, name, min_replicas)
        )
    }
}
