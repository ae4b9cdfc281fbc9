//! [`MemoryStore`]: the state table in memory, with the DynamoDB store's conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::account::Account;
use crate::calendar::Calendar;
use crate::cluster_hold::ClusterHold;
use crate::health::{AccountContact, HealthStore, PollerTick};
use crate::operation::{OpStatus, Operation, Shard, Task, TaskOutcome, TaskStatus};
use crate::ports::{
    AccountStore, Baseline, ChangeInFlight, EndsWrite, ErrorKind, Finalized, Interrupted, Lease,
    LeaseToken, OperationPage, OperationStore, Override, PortError, PortResult, RecordedFinish,
    ScheduleStore, ShardParts, TargetStore,
};
use crate::schedule::{BrokenSchedule, Schedule, ScheduleList};
use crate::target::{Sizes, Target};
use crate::trail::Link;

use super::lock;

/// The lease item of one target, as the DynamoDB adapter keeps it.
#[derive(Clone, Debug, Default)]
struct LeaseRecord {
    /// The holding delivery's token.
    holder: Option<String>,
    /// The holding delivery's operation.
    holder_op: Option<String>,
    /// A change begun under the lease and not yet seen through.
    inflight: Option<Interrupted>,
    expires_ms: Option<i64>,
    last_op: Option<String>,
    last_op_at_ms: Option<i64>,
}

/// One account and region's cached inventory. `refreshed_at` is the META marker: without it the
/// shard counts as never discovered, even if target items remain.
#[derive(Clone, Debug, Default)]
struct Inventory {
    refreshed_at: Option<DateTime<Utc>>,
    targets: Vec<Target>,
}

#[derive(Default)]
struct State {
    accounts: BTreeMap<String, Account>,
    schedules: BTreeMap<String, Schedule>,
    calendars: BTreeMap<String, Calendar>,
    /// Schedule items that no longer decode: their problem and where they sit in the due index.
    broken_schedules: BTreeMap<String, (String, Option<DateTime<Utc>>)>,
    operations: BTreeMap<String, Operation>,
    /// `(op id, shard key)` of planned shards.
    shards: BTreeSet<(String, String)>,
    /// Each fanned-out operation's fixed shard set.
    shard_sets: BTreeMap<String, Vec<Shard>>,
    /// `(op id, target key)` -> task, once written: a planned task is only listed (below)
    /// until it is finished, given up or marked interrupted, as in the adapter.
    tasks: BTreeMap<(String, String), Task>,
    /// `(op id, shard key)` -> the keys of the targets the shard's plan listed, and when; a
    /// part's listing is under `(op id, <shard key>#PART#<n>)`.
    listings: BTreeMap<(String, String), (Vec<String>, DateTime<Utc>)>,
    /// `(op id, shard key)` -> how many parts of the shard are planned.
    parts: BTreeMap<(String, String), u32>,
    baselines: BTreeMap<String, Baseline>,
    cluster_holds: BTreeMap<String, ClusterHold>,
    leases: BTreeMap<String, LeaseRecord>,
    overrides: BTreeMap<String, Override>,
    inventory: BTreeMap<(String, String), Inventory>,
    poller_tick: Option<PollerTick>,
    contacts: BTreeMap<String, AccountContact>,
}

/// The state table in memory: implements every store port with the DynamoDB adapter's
/// conditions, behind one mutex (so each call is atomic, like a conditional write or a
/// transaction).
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Calls of `finalize_operation` still to fail as throttled (fault injection).
    finalize_faults: AtomicUsize,
    /// Calls of `put_cluster_hold` still to fail as throttled, writing nothing.
    cluster_hold_faults: AtomicUsize,
    /// The audit chains, apart: appends never wait on the rest of the table.
    pub(super) trail: Mutex<super::trail::Chains>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` calls of `finalize_operation` fail as throttled, as DynamoDB may.
    pub fn fail_next_finalizes(&self, n: usize) {
        self.finalize_faults.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` calls of `put_cluster_hold` fail as throttled without writing.
    pub fn fail_next_cluster_hold_writes(&self, n: usize) {
        self.cluster_hold_faults.store(n, Ordering::SeqCst);
    }

    /// The operation that last took each target's lease, by target key (for assertions).
    pub fn last_ops(&self) -> BTreeMap<String, String> {
        lock(&self.state)
            .leases
            .iter()
            .filter_map(|(key, lease)| Some((key.clone(), lease.last_op.clone()?)))
            .collect()
    }

    /// Stores a schedule item that no longer decodes (replacing any schedule of that name), as an
    /// older version or a hand edit may leave one in the table: `problem` is what decoding it
    /// reports, `next_fire` where it sits in the due index (`None`: not in it).
    pub fn put_broken_schedule(&self, name: &str, problem: &str, next_fire: Option<DateTime<Utc>>) {
        let mut state = lock(&self.state);
        state.schedules.remove(name);
        state
            .broken_schedules
            .insert(name.to_string(), (problem.to_string(), next_fire));
    }

    /// Every cluster's hold record, by cluster key (for assertions).
    pub fn cluster_holds(&self) -> BTreeMap<String, ClusterHold> {
        lock(&self.state).cluster_holds.clone()
    }

    /// Every saved baseline, by target key (for assertions).
    pub fn baselines(&self) -> BTreeMap<String, Baseline> {
        lock(&self.state).baselines.clone()
    }
}

/// How a fenced write marks the lease with the change in flight.
enum Mark<'a> {
    /// Leaves the mark as it is.
    Keep,
    /// This change is about to be made (only while the lease is unexpired at its time).
    Change(&'a ChangeInFlight),
    /// The change in flight's asynchronous update.
    Update(&'a str),
}

impl State {
    /// The fencing check every write under a lease makes (the lease still holds `token`), and
    /// the mark of the change in flight that the write leaves on the lease.
    fn fenced(&mut self, target_key: &str, token: &LeaseToken, mark: Mark) -> PortResult<()> {
        let Some(lease) = self
            .leases
            .get_mut(target_key)
            .filter(|l| l.holder.as_deref() == Some(token.token.as_str()))
        else {
            return Err(lease_lost(target_key));
        };
        match mark {
            Mark::Keep => {}
            Mark::Change(change) => {
                // As the adapter compares epoch milliseconds: expired once before `at`.
                if lease
                    .expires_ms
                    .is_some_and(|e| e < change.at.timestamp_millis())
                {
                    return Err(lease_lost(target_key));
                }
                lease.inflight = Some(Interrupted {
                    op_id: token.op_id.clone(),
                    action: token.action,
                    planned: Some(change.planned),
                    before: Some(change.before),
                    marked_at: Some(change.at),
                    update_id: None,
                });
            }
            Mark::Update(update_id) => {
                if let Some(mark) = &mut lease.inflight {
                    mark.update_id = Some(update_id.to_string());
                }
            }
        }
        Ok(())
    }

    /// `task` as the lease's mark of its change in flight shows it (see
    /// [`Interrupted::show_on`]).
    fn shown(&self, mut task: Task) -> Task {
        if let Some(mark) = self
            .leases
            .get(&task.target.key())
            .and_then(|l| l.inflight.as_ref())
        {
            mark.show_on(&mut task);
        }
        task
    }

    /// The tasks of `op_id` whose keys start with `prefix`, by key: the written ones, and a
    /// PENDING one for each target a plan listed that has no task written.
    fn tasks_of(&self, op_id: &str, prefix: &str) -> Vec<Task> {
        let mut found: BTreeMap<String, Task> = self
            .tasks
            .iter()
            .filter(|((op, key), _)| op == op_id && key.starts_with(prefix))
            .map(|((_, key), task)| (key.clone(), task.clone()))
            .collect();
        for ((op, _), (keys, at)) in &self.listings {
            if op != op_id {
                continue;
            }
            for key in keys.iter().filter(|k| k.starts_with(prefix)) {
                if !found.contains_key(key) {
                    if let Some(task) = Task::listed(op_id, key, *at) {
                        found.insert(key.clone(), task);
                    }
                }
            }
        }
        found.into_values().collect()
    }
}

/// Where the listing of a shard's part is kept.
fn part_listing(shard: &Shard, part: u32) -> String {
    format!("{}#PART#{part}", shard.key())
}

/// The task of `target` in `op_id`, written now from its target if only listed (every writer
/// of a task does this: see [`OperationStore::plan_shard`]).
fn task_to_write<'a>(
    tasks: &'a mut BTreeMap<(String, String), Task>,
    op_id: &str,
    target: &Target,
    now: DateTime<Utc>,
) -> &'a mut Task {
    tasks
        .entry((op_id.to_string(), target.key()))
        .or_insert_with(|| Task::pending(op_id, target.clone(), now))
}

/// [`OperationStore::finish_task`] on the locked state.
fn finish_locked(
    state: &mut State,
    op_id: &str,
    target: &Target,
    outcome: &TaskOutcome,
    now: DateTime<Utc>,
) -> PortResult<bool> {
    if !outcome.status.is_final() || outcome.status == TaskStatus::DeadLettered {
        // The adapter counts only these three here; giving up is `dead_letter_task`'s.
        return Err(PortError::new(
            ErrorKind::Invalid,
            format!("{} is not an outcome a delivery records", outcome.status),
        ));
    }
    let task = task_to_write(&mut state.tasks, op_id, target, now);
    if task.status.is_final() {
        return Ok(false);
    }
    task.status = outcome.status;
    task.updated_at = now;
    if let Some(reason) = &outcome.reason {
        task.reason = Some(reason.clone());
    }
    if let Some(before) = outcome.before {
        task.before = Some(before);
    }
    if let Some(after) = outcome.after {
        task.after = Some(after);
    }
    if !outcome.steps.is_empty() {
        task.steps = outcome.steps.clone();
    }
    if let Some(op) = state.operations.get_mut(op_id) {
        match outcome.status {
            TaskStatus::Succeeded => op.counts.succeeded += 1,
            TaskStatus::Failed => op.counts.failed += 1,
            _ => op.counts.skipped += 1,
        }
    }
    Ok(true)
}

fn lease_lost(target_key: &str) -> PortError {
    PortError::new(
        ErrorKind::LeaseLost,
        format!("the lease on {target_key} is no longer this delivery's"),
    )
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn put_account(&self, account: &Account) -> PortResult<()> {
        lock(&self.state)
            .accounts
            .insert(account.id.clone(), account.clone());
        Ok(())
    }

    async fn get_account(&self, id: &str) -> PortResult<Option<Account>> {
        Ok(lock(&self.state).accounts.get(id).cloned())
    }

    async fn list_accounts(&self) -> PortResult<Vec<Account>> {
        Ok(lock(&self.state).accounts.values().cloned().collect())
    }

    async fn delete_account(&self, id: &str) -> PortResult<bool> {
        Ok(lock(&self.state).accounts.remove(id).is_some())
    }
}

/// A page cursor: the last operation's position in the newest-first order.
fn cursor(op: &Operation) -> String {
    format!("{}#{}", op.created_at.to_rfc3339(), op.id)
}

fn parse_cursor(cursor: &str) -> PortResult<(DateTime<Utc>, String)> {
    cursor
        .split_once('#')
        .and_then(|(at, id)| {
            Some((
                DateTime::parse_from_rfc3339(at).ok()?.to_utc(),
                id.to_string(),
            ))
        })
        .ok_or_else(|| {
            PortError::new(
                ErrorKind::Invalid,
                format!("operations page cursor {cursor:?} is not one a page returned"),
            )
        })
}

/// The due index compares fire times at millisecond precision (its sort key's format).
fn due_key(schedule: &Schedule) -> Option<i64> {
    match (schedule.enabled, schedule.next_fire) {
        (true, Some(next)) => Some(next.timestamp_millis()),
        _ => None,
    }
}

/// The broken schedule named `name`, if there is one.
fn broken(state: &State, name: &str) -> Option<BrokenSchedule> {
    state
        .broken_schedules
        .get(name)
        .map(|(problem, _)| BrokenSchedule {
            name: name.to_string(),
            problem: problem.clone(),
        })
}

#[async_trait]
impl ScheduleStore for MemoryStore {
    async fn create_schedule(&self, schedule: &Schedule) -> PortResult<()> {
        let mut state = lock(&self.state);
        if state.schedules.contains_key(&schedule.name)
            || state.broken_schedules.contains_key(&schedule.name)
        {
            return Err(PortError::new(
                ErrorKind::ConditionFailed,
                format!(
                    "invalid name: a schedule named {:?} already exists",
                    schedule.name
                ),
            ));
        }
        state
            .schedules
            .insert(schedule.name.clone(), schedule.clone());
        Ok(())
    }

    async fn get_schedule(&self, name: &str) -> PortResult<Option<Schedule>> {
        let state = lock(&self.state);
        if let Some(broken) = broken(&state, name) {
            return Err(broken.into());
        }
        Ok(state.schedules.get(name).cloned())
    }

    async fn list_schedules(&self) -> PortResult<ScheduleList> {
        let state = lock(&self.state);
        Ok(ScheduleList {
            schedules: state.schedules.values().cloned().collect(),
            broken: state
                .broken_schedules
                .keys()
                .filter_map(|name| broken(&state, name))
                .collect(),
        })
    }

    async fn delete_schedule(&self, name: &str) -> PortResult<bool> {
        let mut state = lock(&self.state);
        let broken = state.broken_schedules.remove(name).is_some();
        Ok(state.schedules.remove(name).is_some() || broken)
    }

    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        next_fire: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        // The adapter reads the schedule before it rewrites it: a broken one cannot be read.
        if let Some(broken) = broken(&state, name) {
            return Err(broken.into());
        }
        let Some(schedule) = state.schedules.get_mut(name) else {
            return Ok(false);
        };
        schedule.enabled = enabled;
        schedule.next_fire = if enabled { next_fire } else { None };
        Ok(true)
    }

    async fn due_schedules(&self, now: DateTime<Utc>) -> PortResult<ScheduleList> {
        let state = lock(&self.state);
        Ok(ScheduleList {
            schedules: state
                .schedules
                .values()
                .filter(|s| s.enabled && s.next_fire.is_some_and(|t| t <= now))
                .cloned()
                .collect(),
            broken: state
                .broken_schedules
                .iter()
                .filter(|(_, (_, next))| next.is_some_and(|t| t <= now))
                .filter_map(|(name, _)| broken(&state, name))
                .collect(),
        })
    }

    async fn advance_schedule(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        let Some(schedule) = state.schedules.get_mut(name) else {
            return Ok(false);
        };
        if due_key(schedule) != Some(expected.timestamp_millis()) {
            return Ok(false);
        }
        schedule.next_fire = next;
        Ok(true)
    }

    async fn enforced_schedules(&self) -> PortResult<ScheduleList> {
        let state = lock(&self.state);
        Ok(ScheduleList {
            schedules: state
                .schedules
                .values()
                .filter(|s| s.enabled && s.enforce)
                .cloned()
                .collect(),
            broken: Vec::new(),
        })
    }

    async fn create_calendar(&self, calendar: &Calendar, replace: bool) -> PortResult<()> {
        let mut state = lock(&self.state);
        if !replace && state.calendars.contains_key(&calendar.name) {
            return Err(PortError::new(
                ErrorKind::ConditionFailed,
                format!("a calendar named {:?} already exists", calendar.name),
            ));
        }
        state
            .calendars
            .insert(calendar.name.clone(), calendar.clone());
        Ok(())
    }

    async fn get_calendar(&self, name: &str) -> PortResult<Option<Calendar>> {
        Ok(lock(&self.state).calendars.get(name).cloned())
    }

    async fn list_calendars(&self) -> PortResult<Vec<Calendar>> {
        Ok(lock(&self.state).calendars.values().cloned().collect())
    }

    async fn delete_calendar(&self, name: &str) -> PortResult<bool> {
        Ok(lock(&self.state).calendars.remove(name).is_some())
    }
}

#[async_trait]
impl OperationStore for MemoryStore {
    async fn create_operation(&self, op: &Operation) -> PortResult<bool> {
        let mut state = lock(&self.state);
        if state.operations.contains_key(&op.id) {
            return Ok(false);
        }
        state.operations.insert(op.id.clone(), op.clone());
        Ok(true)
    }

    async fn get_operation(&self, id: &str) -> PortResult<Option<Operation>> {
        Ok(lock(&self.state).operations.get(id).cloned())
    }

    async fn list_operations_page(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> PortResult<OperationPage> {
        let after = after.map(parse_cursor).transpose()?;
        let mut ops: Vec<Operation> = lock(&self.state)
            .operations
            .values()
            .filter(|op| {
                after
                    .as_ref()
                    .is_none_or(|(at, id)| (op.created_at, &op.id) < (*at, id))
            })
            .cloned()
            .collect();
        // The adapter's index sorts by `created_at#id`, newest first.
        ops.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let limit = limit.clamp(1, 1000);
        let next = (ops.len() > limit).then(|| cursor(&ops[limit - 1]));
        ops.truncate(limit);
        Ok(OperationPage {
            operations: ops,
            next,
        })
    }

    async fn fix_shards(&self, op_id: &str, shards: &[Shard]) -> PortResult<Vec<Shard>> {
        let mut state = lock(&self.state);
        if !state.operations.contains_key(op_id) {
            return Err(PortError::new(
                ErrorKind::NotFound,
                format!("operation {op_id} does not exist"),
            ));
        }
        let fixed = state
            .shard_sets
            .entry(op_id.to_string())
            .or_insert_with(|| shards.to_vec())
            .clone();
        if let Some(op) = state.operations.get_mut(op_id) {
            if op.shards_total.is_none() {
                op.shards_total = Some(fixed.len() as u64);
                op.status = OpStatus::Running;
            }
        }
        Ok(fixed)
    }

    async fn shard_planned(&self, op_id: &str, shard: &Shard) -> PortResult<bool> {
        Ok(lock(&self.state)
            .shards
            .contains(&(op_id.to_string(), shard.key())))
    }

    async fn plan_shard(
        &self,
        op_id: &str,
        shard: &Shard,
        parts: u32,
        tasks: &[Task],
        note: Option<String>,
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        let id = (op_id.to_string(), shard.key());
        // The marker and the listing in one write: a duplicated shard message changes nothing.
        if state.shards.contains(&id) || state.parts.get(&id).copied().unwrap_or(0) != parts {
            return Ok(false);
        }
        state.shards.insert(id);
        if let Some(at) = tasks.first().map(|t| t.updated_at) {
            state.listings.insert(
                (op_id.to_string(), shard.key()),
                (tasks.iter().map(|t| t.target.key()).collect(), at),
            );
        }
        if let Some(op) = state.operations.get_mut(op_id) {
            op.counts.total += tasks.len() as u64;
            op.shards_done += 1;
            op.notes.extend(note);
        }
        Ok(true)
    }

    async fn plan_part(
        &self,
        op_id: &str,
        shard: &Shard,
        part: u32,
        tasks: &[Task],
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        let id = (op_id.to_string(), shard.key());
        if state.shards.contains(&id) || state.parts.get(&id).copied().unwrap_or(0) != part {
            return Ok(false);
        }
        state.parts.insert(id, part + 1);
        if let Some(at) = tasks.first().map(|t| t.updated_at) {
            state.listings.insert(
                (op_id.to_string(), part_listing(shard, part)),
                (tasks.iter().map(|t| t.target.key()).collect(), at),
            );
        }
        if let Some(op) = state.operations.get_mut(op_id) {
            op.counts.total += tasks.len() as u64;
        }
        Ok(true)
    }

    async fn shard_parts(&self, op_id: &str, shard: &Shard) -> PortResult<ShardParts> {
        let state = lock(&self.state);
        let parts = state
            .parts
            .get(&(op_id.to_string(), shard.key()))
            .copied()
            .unwrap_or(0);
        let mut tasks = Vec::new();
        for part in 0..parts {
            let Some((keys, at)) = state
                .listings
                .get(&(op_id.to_string(), part_listing(shard, part)))
            else {
                continue;
            };
            for key in keys {
                let written = state.tasks.get(&(op_id.to_string(), key.clone()));
                tasks.extend(written.cloned().or_else(|| Task::listed(op_id, key, *at)));
            }
        }
        Ok(ShardParts { parts, tasks })
    }

    async fn unfinished_tasks(&self, op_id: &str, shard: &Shard) -> PortResult<Vec<Task>> {
        let prefix = format!("{}#", shard.key());
        Ok(lock(&self.state)
            .tasks_of(op_id, &prefix)
            .into_iter()
            .filter(|task| !task.status.is_final())
            .collect())
    }

    async fn list_tasks(&self, op_id: &str) -> PortResult<Vec<Task>> {
        let state = lock(&self.state);
        Ok(state
            .tasks_of(op_id, "")
            .into_iter()
            .map(|task| state.shown(task))
            .collect())
    }

    async fn get_task(&self, op_id: &str, target_key: &str) -> PortResult<Option<Task>> {
        Ok(lock(&self.state)
            .tasks
            .get(&(op_id.to_string(), target_key.to_string()))
            .cloned())
    }

    async fn mark_interrupted(
        &self,
        op_id: &str,
        target: &Target,
        before: Sizes,
        planned: Sizes,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        let task = task_to_write(&mut state.tasks, op_id, target, now);
        if task.status.is_final() {
            return Ok(false);
        }
        task.status = TaskStatus::Applying;
        task.before = Some(before);
        task.after = Some(planned);
        task.updated_at = now;
        Ok(true)
    }

    async fn finish_task(
        &self,
        op_id: &str,
        target: &Target,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        finish_locked(&mut lock(&self.state), op_id, target, outcome, now)
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
        // One transaction in the adapter: the task's condition decides first, then the head's.
        let mut state = lock(&self.state);
        let open = state
            .tasks
            .get(&(op_id.to_string(), target.key()))
            .is_none_or(|task| !task.status.is_final());
        if !open {
            return Ok(RecordedFinish::AlreadyFinal);
        }
        let mut chains = lock(&self.trail);
        if chains.head_seq(&link.head.chain) != expected {
            return Ok(RecordedFinish::HeadMoved);
        }
        if !finish_locked(&mut state, op_id, target, outcome, now)? {
            return Ok(RecordedFinish::AlreadyFinal);
        }
        chains.push(link, now);
        Ok(RecordedFinish::Finished)
    }

    async fn finish_tasks(
        &self,
        writes: &[EndsWrite],
        now: DateTime<Utc>,
    ) -> PortResult<Vec<RecordedFinish>> {
        // The adapter's transactions leave out an end whose condition fails and write the
        // rest: under one lock, each write decides as its transaction would. A final task
        // among a record's ends leaves the record out, and a record that does not follow its
        // chain's head (the adapter's head Put, conditioned on where the head was, refuses it)
        // breaks the chain for every record linked after it: their recorded ends are each sent
        // back to be linked again, and their other ends are finished all the same.
        let mut state = lock(&self.state);
        let mut chains = lock(&self.trail);
        let mut results = Vec::new();
        let mut broken: BTreeSet<&str> = BTreeSet::new();
        for write in writes {
            // A task twice in one write is final for its second end (the adapter's
            // transaction could not name its item twice).
            let mut seen = BTreeSet::new();
            let open: Vec<bool> = write
                .ends
                .iter()
                .map(|end| {
                    let key = (end.op_id.clone(), end.target.key());
                    let open = state
                        .tasks
                        .get(&key)
                        .is_none_or(|task| !task.status.is_final());
                    open && seen.insert(key)
                })
                .collect();
            let chain = write
                .record
                .as_ref()
                .map(|(link, _)| link.head.chain.as_str());
            if let (Some(chain), Some((_, expected))) = (chain, &write.record) {
                let final_recorded = write.ends.iter().zip(&open).any(|(e, o)| e.recorded && !o);
                if final_recorded || chains.head_seq(chain) != *expected {
                    broken.insert(chain);
                }
            }
            let record_left_out = chain.is_some_and(|chain| broken.contains(chain));
            for (end, open) in write.ends.iter().zip(open) {
                if !open {
                    results.push(RecordedFinish::AlreadyFinal);
                } else if end.recorded && record_left_out {
                    results.push(RecordedFinish::HeadMoved);
                } else if finish_locked(&mut state, &end.op_id, &end.target, &end.outcome, now)? {
                    results.push(RecordedFinish::Finished);
                } else {
                    results.push(RecordedFinish::AlreadyFinal);
                }
            }
            if let Some((link, _)) = write.record.as_ref().filter(|_| !record_left_out) {
                chains.push(link, now);
            }
        }
        Ok(results)
    }

    async fn dead_letter_task(
        &self,
        op_id: &str,
        target: &Target,
        reason: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        // The adapter's lease check: no unexpired holder from this operation.
        let worked_on = state.leases.get(&target.key()).is_some_and(|lease| {
            lease.holder.is_some()
                && lease.holder_op.as_deref() == Some(op_id)
                && lease.expires_ms.is_none_or(|e| e >= now.timestamp_millis())
        });
        if worked_on {
            return Ok(false);
        }
        let task = task_to_write(&mut state.tasks, op_id, target, now);
        if task.status.is_final() {
            return Ok(false);
        }
        task.reopens_as = Some(task.status);
        task.status = TaskStatus::DeadLettered;
        task.reason = Some(reason.to_string());
        task.updated_at = now;
        if let Some(op) = state.operations.get_mut(op_id) {
            op.counts.dead_lettered += 1;
        }
        Ok(true)
    }

    async fn reopen_task(
        &self,
        op_id: &str,
        target_key: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        let Some(task) = state
            .tasks
            .get_mut(&(op_id.to_string(), target_key.to_string()))
            .filter(|task| task.status == TaskStatus::DeadLettered)
        else {
            return Ok(false);
        };
        task.status = task.reopens_as.take().unwrap_or(TaskStatus::Pending);
        task.reason = None;
        task.updated_at = now;
        if let Some(op) = state.operations.get_mut(op_id) {
            op.counts.dead_lettered = op.counts.dead_lettered.saturating_sub(1);
            op.status = OpStatus::Running;
        }
        Ok(true)
    }

    async fn finalize_operation(
        &self,
        op_id: &str,
        _now: DateTime<Utc>,
    ) -> PortResult<Option<Finalized>> {
        if take_one(&self.finalize_faults) {
            return Err(PortError::new(
                ErrorKind::Throttled,
                "finalizing an operation: throttled (injected)",
            ));
        }
        let mut state = lock(&self.state);
        let Some(op) = state.operations.get_mut(op_id) else {
            return Ok(None);
        };
        if op.status.is_final() {
            return Ok(Some(Finalized {
                status: op.status,
                by_this_call: false,
                action: op.action,
                created_at: op.created_at,
            }));
        }
        let Some(status) = op.final_status() else {
            return Ok(None);
        };
        // `Operation` has no `finished_at` field; the adapter's extra attribute is not kept.
        op.status = status;
        Ok(Some(Finalized {
            status,
            by_this_call: true,
            action: op.action,
            created_at: op.created_at,
        }))
    }
}

#[async_trait]
impl TargetStore for MemoryStore {
    async fn get_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>> {
        Ok(lock(&self.state).baselines.get(target_key).cloned())
    }

    async fn save_baseline(
        &self,
        baseline: &Baseline,
        lease: &LeaseToken,
        replacing_own: bool,
        change: &ChangeInFlight,
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        state.fenced(&baseline.target_key, lease, Mark::Keep)?;
        let replaceable = match state.baselines.get(&baseline.target_key) {
            None => true,
            Some(saved) => replacing_own && saved.op_id == baseline.op_id,
        };
        if !replaceable {
            return Ok(false);
        }
        state.fenced(&baseline.target_key, lease, Mark::Change(change))?;
        state
            .baselines
            .insert(baseline.target_key.clone(), baseline.clone());
        Ok(true)
    }

    async fn retire_baseline(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        let mut state = lock(&self.state);
        state.fenced(target_key, lease, Mark::Keep)?;
        if state
            .baselines
            .get(target_key)
            .is_none_or(|b| b.op_id != saved_by)
        {
            return Ok(false);
        }
        state.baselines.remove(target_key);
        Ok(true)
    }

    async fn asleep_baselines(&self, account: &str, region: &str) -> PortResult<Vec<Baseline>> {
        let prefix = format!("{account}#{region}#");
        Ok(lock(&self.state)
            .baselines
            .values()
            .filter(|b| b.target_key.starts_with(&prefix))
            .cloned()
            .collect())
    }

    async fn get_cluster_hold(&self, cluster_key: &str) -> PortResult<Option<ClusterHold>> {
        Ok(lock(&self.state).cluster_holds.get(cluster_key).cloned())
    }

    async fn put_cluster_hold(
        &self,
        hold: &ClusterHold,
        read: u64,
        target_key: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        if take_one(&self.cluster_hold_faults) {
            return Err(PortError::new(
                ErrorKind::Throttled,
                "writing a cluster's hold: throttled (injected)",
            ));
        }
        let mut state = lock(&self.state);
        state.fenced(target_key, lease, Mark::Keep)?;
        let stored = state
            .cluster_holds
            .get(&hold.cluster_key)
            .map_or(0, |h| h.generation);
        if stored != read {
            return Ok(false);
        }
        state
            .cluster_holds
            .insert(hold.cluster_key.clone(), hold.clone());
        Ok(true)
    }

    async fn acquire_lease(
        &self,
        target_key: &str,
        token: &LeaseToken,
        op_created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> PortResult<Lease> {
        let mut state = lock(&self.state);
        // Read before the take, as the adapter's take returns the lease item as it was.
        let baseline = state.baselines.get(target_key).cloned();
        let lease = state.leases.entry(target_key.to_string()).or_default();
        // The adapter stores epoch milliseconds and compares those.
        let at = op_created_at.timestamp_millis();
        let free =
            lease.holder.is_none() || lease.expires_ms.is_some_and(|e| e < now.timestamp_millis());
        let not_superseded = lease.last_op_at_ms.is_none_or(|last| last <= at);
        if free && not_superseded {
            let interrupted = lease.inflight.clone();
            *lease = LeaseRecord {
                holder: Some(token.token.clone()),
                holder_op: Some(token.op_id.clone()),
                inflight: interrupted.clone(),
                expires_ms: Some((now + ttl).timestamp_millis()),
                last_op: Some(token.op_id.clone()),
                last_op_at_ms: Some(at),
            };
            return Ok(Lease::Acquired {
                interrupted,
                baseline,
            });
        }
        let last_op = lease.last_op.clone().unwrap_or_default();
        let newer = lease.last_op_at_ms.is_some_and(|last| last > at);
        if newer && last_op != token.op_id {
            Ok(Lease::Superseded {
                by: last_op,
                mark: lease.inflight.clone(),
            })
        } else {
            Ok(Lease::Held {
                by: lease.holder_op.clone().unwrap_or(last_op),
            })
        }
    }

    async fn mark_in_flight(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        change: &ChangeInFlight,
    ) -> PortResult<()> {
        lock(&self.state).fenced(target_key, lease, Mark::Change(change))
    }

    async fn record_update(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        update_id: &str,
    ) -> PortResult<()> {
        lock(&self.state).fenced(target_key, lease, Mark::Update(update_id))
    }

    async fn change_in_flight(&self, target_key: &str) -> PortResult<Option<Interrupted>> {
        Ok(lock(&self.state)
            .leases
            .get(target_key)
            .and_then(|l| l.inflight.clone()))
    }

    async fn release_lease(
        &self,
        target_key: &str,
        token: &LeaseToken,
        finished: bool,
    ) -> PortResult<()> {
        let mut state = lock(&self.state);
        if let Some(lease) = state.leases.get_mut(target_key) {
            if lease.holder.as_deref() == Some(token.token.as_str()) {
                lease.holder = None;
                lease.holder_op = None;
                lease.expires_ms = None;
                if finished {
                    lease.inflight = None;
                }
            }
        }
        Ok(())
    }

    async fn put_override(&self, o: &Override) -> PortResult<()> {
        lock(&self.state).overrides.insert(o.id.clone(), o.clone());
        Ok(())
    }

    async fn active_overrides(&self, now: DateTime<Utc>) -> PortResult<Vec<Override>> {
        Ok(lock(&self.state)
            .overrides
            .values()
            .filter(|o| o.awake_until > now)
            .cloned()
            .collect())
    }

    async fn remove_override(&self, id: &str) -> PortResult<bool> {
        Ok(lock(&self.state).overrides.remove(id).is_some())
    }

    async fn put_inventory(
        &self,
        account: &str,
        region: &str,
        targets: &[Target],
        now: DateTime<Utc>,
    ) -> PortResult<()> {
        let mut targets = targets.to_vec();
        // The adapter's items sort by `T#kind#display name`.
        targets.sort_by_key(|t| (t.kind, t.display_name()));
        lock(&self.state).inventory.insert(
            (account.to_string(), region.to_string()),
            Inventory {
                refreshed_at: Some(now),
                targets,
            },
        );
        Ok(())
    }

    async fn invalidate_inventory(&self, account: &str, region: &str) -> PortResult<()> {
        if let Some(inventory) = lock(&self.state)
            .inventory
            .get_mut(&(account.to_string(), region.to_string()))
        {
            inventory.refreshed_at = None;
        }
        Ok(())
    }

    async fn get_inventory(
        &self,
        account: &str,
        region: &str,
    ) -> PortResult<Option<(DateTime<Utc>, Vec<Target>)>> {
        Ok(lock(&self.state)
            .inventory
            .get(&(account.to_string(), region.to_string()))
            .and_then(|inv| inv.refreshed_at.map(|at| (at, inv.targets.clone()))))
    }
}

#[async_trait]
impl HealthStore for MemoryStore {
    async fn record_poller_tick(&self, tick: &PollerTick) -> PortResult<()> {
        lock(&self.state).poller_tick = Some(tick.clone());
        Ok(())
    }

    async fn poller_tick(&self) -> PortResult<Option<PollerTick>> {
        Ok(lock(&self.state).poller_tick.clone())
    }

    async fn record_account_contact(&self, contact: &AccountContact) -> PortResult<()> {
        lock(&self.state)
            .contacts
            .insert(contact.account.clone(), contact.clone());
        Ok(())
    }

    async fn account_contacts(&self) -> PortResult<Vec<AccountContact>> {
        Ok(lock(&self.state).contacts.values().cloned().collect())
    }
}

/// Takes one injected fault from `faults`, if any are left.
fn take_one(faults: &AtomicUsize) -> bool {
    faults
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Action;
    use crate::operation::{Discovery, OpCounts, OpSource};
    use crate::selector::Selector;
    use crate::target::TargetKind;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
    }

    fn web() -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind: TargetKind::Asg,
            cluster: None,
            name: "web".into(),
            tags: BTreeMap::new(),
            cluster_tags: BTreeMap::new(),
            instance_types: Vec::new(),
        }
    }

    fn op(id: &str) -> Operation {
        Operation {
            id: id.into(),
            action: Action::Stop,
            selector: Selector::parse("kind=asg").unwrap(),
            source: OpSource::Manual,
            created_at: t0(),
            dry_run: false,
            default_start: None,
            discovery: Discovery::Cached,
            status: OpStatus::Pending,
            counts: OpCounts::default(),
            shards_total: None,
            shards_done: 0,
            notes: Vec::new(),
            hold: None,
            check: false,
        }
    }

    fn shard() -> Shard {
        Shard {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
        }
    }

    async fn leased(store: &MemoryStore, op_id: &str) -> LeaseToken {
        let token = LeaseToken::new(op_id, Action::Stop);
        let granted = store
            .acquire_lease(&web().key(), &token, t0(), t0(), Duration::minutes(15))
            .await
            .unwrap();
        assert!(matches!(granted, Lease::Acquired { .. }), "{granted:?}");
        token
    }

    fn change(before: Sizes, planned: Sizes) -> ChangeInFlight {
        ChangeInFlight {
            before,
            planned,
            at: t0(),
        }
    }

    /// A stop's change of `web()`.
    fn stopping() -> ChangeInFlight {
        change(Sizes::new(1, 4, 2), Sizes::new(0, 0, 0))
    }

    fn baseline(op_id: &str, sizes: Sizes) -> Baseline {
        Baseline {
            target_key: web().key(),
            sizes,
            op_id: op_id.into(),
            saved_at: t0(),
            held: Default::default(),
            ca_tags: Vec::new(),
            cluster_hold: false,
        }
    }

    #[tokio::test]
    async fn a_baseline_is_saved_only_if_none_exists() {
        let store = MemoryStore::new();
        let lease = leased(&store, "op").await;
        let first = baseline("op", Sizes::new(1, 4, 2));
        assert!(store
            .save_baseline(&first, &lease, false, &stopping())
            .await
            .unwrap());
        let other = baseline("other", Sizes::new(9, 9, 9));
        assert!(!store
            .save_baseline(&other, &lease, true, &stopping())
            .await
            .unwrap());
        let again = baseline("op", Sizes::new(9, 9, 9));
        assert!(!store
            .save_baseline(&again, &lease, false, &stopping())
            .await
            .unwrap());
        let kept = store.get_baseline(&web().key()).await.unwrap().unwrap();
        assert_eq!(kept.sizes, Sizes::new(1, 4, 2));
        assert!(
            store
                .save_baseline(&again, &lease, true, &stopping())
                .await
                .unwrap(),
            "an operation may refresh the baseline it saved itself"
        );
    }

    #[tokio::test]
    async fn baseline_writes_under_a_lease_another_delivery_took_are_refused() {
        let store = MemoryStore::new();
        let stale = leased(&store, "op").await;
        // The first delivery's lease expires and a second delivery of the same task takes it.
        let fresh = LeaseToken::new("op", Action::Stop);
        let later = t0() + Duration::minutes(16);
        let granted = store
            .acquire_lease(&web().key(), &fresh, t0(), later, Duration::minutes(15))
            .await
            .unwrap();
        assert!(matches!(granted, Lease::Acquired { .. }), "{granted:?}");
        let saved = store
            .save_baseline(
                &baseline("op", Sizes::new(0, 0, 0)),
                &stale,
                false,
                &stopping(),
            )
            .await;
        assert_eq!(saved.unwrap_err().kind, ErrorKind::LeaseLost);
        assert!(store
            .save_baseline(
                &baseline("op", Sizes::new(1, 4, 2)),
                &fresh,
                false,
                &stopping()
            )
            .await
            .unwrap());
        let retired = store.retire_baseline(&web().key(), "op", &stale).await;
        assert_eq!(retired.unwrap_err().kind, ErrorKind::LeaseLost);
        assert!(
            !store
                .retire_baseline(&web().key(), "another-op", &fresh)
                .await
                .unwrap(),
            "only the baseline the named operation saved is retired"
        );
        assert!(store
            .retire_baseline(&web().key(), "op", &fresh)
            .await
            .unwrap());
        assert!(store.baselines().is_empty());
    }

    #[tokio::test]
    async fn two_deliveries_of_one_task_never_hold_the_lease_at_once() {
        let store = MemoryStore::new();
        let _first = leased(&store, "op").await;
        let second = LeaseToken::new("op", Action::Stop);
        let granted = store
            .acquire_lease(&web().key(), &second, t0(), t0(), Duration::minutes(15))
            .await
            .unwrap();
        assert_eq!(granted, Lease::Held { by: "op".into() });
    }

    #[tokio::test]
    async fn the_first_shard_set_fixed_for_an_operation_stays_fixed() {
        let store = MemoryStore::new();
        store.create_operation(&op("a")).await.unwrap();
        let one = vec![shard()];
        let two = vec![
            shard(),
            Shard {
                account: "222222222222".into(),
                region: "eu-west-1".into(),
            },
        ];
        assert_eq!(store.fix_shards("a", &one).await.unwrap(), one);
        assert_eq!(store.fix_shards("a", &two).await.unwrap(), one);
        let a = store.get_operation("a").await.unwrap().unwrap();
        assert_eq!((a.shards_total, a.status), (Some(1), OpStatus::Running));
    }

    #[tokio::test]
    async fn a_shard_planned_twice_and_a_task_finished_twice_are_counted_once() {
        let store = MemoryStore::new();
        assert!(store.create_operation(&op("a")).await.unwrap());
        assert!(!store.create_operation(&op("a")).await.unwrap());
        store.fix_shards("a", &[shard()]).await.unwrap();
        let tasks = vec![Task::pending("a", web(), t0())];
        store
            .plan_shard("a", &shard(), 0, &tasks, None)
            .await
            .unwrap();
        let outcome = TaskOutcome {
            status: TaskStatus::Succeeded,
            reason: None,
            before: Some(Sizes::new(1, 4, 2)),
            after: Some(Sizes::new(0, 0, 0)),
            steps: Default::default(),
        };
        assert!(store
            .finish_task("a", &web(), &outcome, t0())
            .await
            .unwrap());
        store
            .plan_shard("a", &shard(), 0, &tasks, None)
            .await
            .unwrap();
        assert!(!store
            .finish_task("a", &web(), &outcome, t0())
            .await
            .unwrap());

        let task = store.get_task("a", &web().key()).await.unwrap().unwrap();
        assert_eq!(
            task.status,
            TaskStatus::Succeeded,
            "replanning kept the finished task"
        );
        let a = store.get_operation("a").await.unwrap().unwrap();
        assert_eq!(
            (a.counts.total, a.counts.succeeded, a.shards_done),
            (1, 1, 1)
        );
        assert_eq!(
            store
                .finalize_operation("a", t0())
                .await
                .unwrap()
                .map(|f| (f.status, f.by_this_call)),
            Some((OpStatus::Succeeded, true))
        );
    }

    /// A shard planned in parts: each part once and in order, none after the last tasks, and
    /// the last tasks only with every part known; the parts' tasks read as the shard's.
    #[tokio::test]
    async fn a_shards_parts_are_written_once_in_order_and_end_with_its_last_tasks() {
        let store = MemoryStore::new();
        store.create_operation(&op("a")).await.unwrap();
        store.fix_shards("a", &[shard()]).await.unwrap();
        let named = |name: &str| Target {
            name: name.to_string(),
            ..web()
        };
        let part = |names: &[&str]| -> Vec<Task> {
            names
                .iter()
                .map(|n| Task::pending("a", named(n), t0()))
                .collect()
        };

        assert!(!store
            .plan_part("a", &shard(), 1, &part(&["x"]))
            .await
            .unwrap());
        assert!(store
            .plan_part("a", &shard(), 0, &part(&["p", "q"]))
            .await
            .unwrap());
        assert!(
            !store
                .plan_part("a", &shard(), 0, &part(&["p", "q"]))
                .await
                .unwrap(),
            "a part is written once"
        );
        assert!(
            !store
                .plan_shard("a", &shard(), 0, &part(&["r"]), None)
                .await
                .unwrap(),
            "the last tasks need every part known"
        );
        let a = store.get_operation("a").await.unwrap().unwrap();
        assert_eq!(a.counts.total, 2);
        assert!(!store.shard_planned("a", &shard()).await.unwrap());
        let parts = store.shard_parts("a", &shard()).await.unwrap();
        assert_eq!(parts.parts, 1);
        assert_eq!(
            parts
                .tasks
                .iter()
                .map(|t| t.target.name.as_str())
                .collect::<Vec<_>>(),
            ["p", "q"]
        );
        assert_eq!(
            store.unfinished_tasks("a", &shard()).await.unwrap().len(),
            2
        );

        assert!(store
            .plan_shard("a", &shard(), 1, &part(&["r"]), None)
            .await
            .unwrap());
        assert!(
            !store
                .plan_part("a", &shard(), 1, &part(&["s"]))
                .await
                .unwrap(),
            "no part after the last tasks"
        );
        let a = store.get_operation("a").await.unwrap().unwrap();
        assert_eq!((a.counts.total, a.shards_done), (3, 1));
        assert_eq!(store.list_tasks("a").await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_task_is_dead_lettered_once_and_a_reopen_uncounts_it_and_reruns_its_operation() {
        let store = MemoryStore::new();
        store.create_operation(&op("a")).await.unwrap();
        store.fix_shards("a", &[shard()]).await.unwrap();
        let tasks = vec![Task::pending("a", web(), t0())];
        store
            .plan_shard("a", &shard(), 0, &tasks, None)
            .await
            .unwrap();
        let key = web().key();
        assert!(store
            .dead_letter_task("a", &web(), "busy", t0())
            .await
            .unwrap());
        assert!(!store
            .dead_letter_task("a", &web(), "busy again", t0())
            .await
            .unwrap());
        assert_eq!(
            store
                .finalize_operation("a", t0())
                .await
                .unwrap()
                .map(|f| (f.status, f.by_this_call)),
            Some((OpStatus::Failed, true))
        );
        let a = store.get_operation("a").await.unwrap().unwrap();
        assert_eq!(a.counts.dead_lettered, 1);

        assert!(store.reopen_task("a", &key, t0()).await.unwrap());
        assert!(!store.reopen_task("a", &key, t0()).await.unwrap());
        let a = store.get_operation("a").await.unwrap().unwrap();
        assert_eq!((a.status, a.counts.dead_lettered), (OpStatus::Running, 0));
        let task = store.get_task("a", &key).await.unwrap().unwrap();
        assert_eq!(
            (task.status, task.reason, task.reopens_as),
            (TaskStatus::Pending, None, None)
        );
    }

    #[tokio::test]
    async fn a_task_given_up_with_its_change_in_flight_shows_applying_again_once_reopened() {
        let store = MemoryStore::new();
        store.create_operation(&op("a")).await.unwrap();
        store.fix_shards("a", &[shard()]).await.unwrap();
        let tasks = vec![Task::pending("a", web(), t0())];
        store
            .plan_shard("a", &shard(), 0, &tasks, None)
            .await
            .unwrap();
        let lease = leased(&store, "a").await;
        let key = web().key();
        store
            .mark_in_flight(
                &key,
                &lease,
                &change(Sizes::new(1, 4, 2), Sizes::new(0, 0, 0)),
            )
            .await
            .unwrap();
        let shown = store.list_tasks("a").await.unwrap();
        assert_eq!(shown[0].status, TaskStatus::Applying);
        assert_eq!(
            store.get_task("a", &key).await.unwrap(),
            None,
            "the change in flight is on the lease, not on the task (written when it ends)"
        );
        assert!(
            !store
                .dead_letter_task("a", &web(), "busy", t0())
                .await
                .unwrap(),
            "not while a delivery of the operation holds the lease"
        );
        store.release_lease(&key, &lease, false).await.unwrap();
        assert!(store
            .dead_letter_task("a", &web(), "busy", t0())
            .await
            .unwrap());
        assert_eq!(
            store.list_tasks("a").await.unwrap()[0].status,
            TaskStatus::DeadLettered
        );

        assert!(store.reopen_task("a", &key, t0()).await.unwrap());
        let task = store.list_tasks("a").await.unwrap().remove(0);
        assert_eq!(task.status, TaskStatus::Applying);
        assert_eq!(
            (task.before, task.after),
            (Some(Sizes::new(1, 4, 2)), Some(Sizes::new(0, 0, 0))),
            "the change's sizes kept on the lease"
        );
    }

    #[tokio::test]
    async fn a_change_is_marked_only_under_a_lease_not_yet_expired() {
        let store = MemoryStore::new();
        let lease = leased(&store, "op").await;
        let mut late = change(Sizes::new(1, 4, 2), Sizes::new(0, 0, 0));
        late.at = t0() + Duration::minutes(16);
        let marked = store.mark_in_flight(&web().key(), &lease, &late).await;
        assert_eq!(marked.unwrap_err().kind, ErrorKind::LeaseLost);
        let saved = store
            .save_baseline(&baseline("op", Sizes::new(1, 4, 2)), &lease, false, &late)
            .await;
        assert_eq!(saved.unwrap_err().kind, ErrorKind::LeaseLost);
        assert!(store.baselines().is_empty(), "nothing saved");
    }

    #[tokio::test]
    async fn a_lease_is_held_until_released_or_expired_and_refused_to_older_operations() {
        let store = MemoryStore::new();
        let key = web().key();
        let ttl = Duration::minutes(15);
        let newer = t0() + Duration::minutes(1);
        let old = LeaseToken::new("old", Action::Stop);
        let new = LeaseToken::new("new", Action::Stop);
        let lease = |token: &LeaseToken, created: DateTime<Utc>, now: DateTime<Utc>| {
            let store = &store;
            let key = key.clone();
            let token = token.clone();
            async move {
                store
                    .acquire_lease(&key, &token, created, now, ttl)
                    .await
                    .unwrap()
            }
        };
        assert!(matches!(
            lease(&old, t0(), t0()).await,
            Lease::Acquired { .. }
        ));
        assert_eq!(
            lease(&new, newer, t0()).await,
            Lease::Held { by: "old".into() }
        );
        assert!(
            matches!(
                lease(&new, newer, t0() + Duration::minutes(16)).await,
                Lease::Acquired { .. }
            ),
            "an expired lease is free"
        );
        store.release_lease(&key, &new, true).await.unwrap();
        assert_eq!(
            lease(
                &LeaseToken::new("old", Action::Stop),
                t0(),
                t0() + Duration::minutes(17)
            )
            .await,
            Lease::Superseded {
                by: "new".into(),
                mark: None
            }
        );
    }

    #[tokio::test]
    async fn an_invalidated_inventory_reads_as_never_discovered() {
        let store = MemoryStore::new();
        store
            .put_inventory("111111111111", "eu-west-1", &[web()], t0())
            .await
            .unwrap();
        assert_eq!(
            store
                .get_inventory("111111111111", "eu-west-1")
                .await
                .unwrap(),
            Some((t0(), vec![web()]))
        );
        store
            .invalidate_inventory("111111111111", "eu-west-1")
            .await
            .unwrap();
        assert_eq!(
            store
                .get_inventory("111111111111", "eu-west-1")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn following_pages_reads_every_operation_once_newest_first() {
        let store = MemoryStore::new();
        // Pairs share a creation time, so pages must break ties by id as the index does.
        for i in 0..25 {
            let mut o = op(&format!("op-{i:02}"));
            o.created_at = t0() + Duration::minutes(i / 2);
            store.create_operation(&o).await.unwrap();
        }
        let mut read = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = store
                .list_operations_page(10, after.as_deref())
                .await
                .unwrap();
            pages += 1;
            assert!(page.operations.len() <= 10);
            read.extend(page.operations.into_iter().map(|o| o.id));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (0..25).rev().map(|i| format!("op-{i:02}")).collect();
        assert_eq!(read, expected);
        let newest: Vec<String> = store
            .list_operations(12)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(newest, expected[..12]);
    }

    #[tokio::test]
    async fn a_page_cursor_no_page_returned_is_refused() {
        let store = MemoryStore::new();
        let err = store
            .list_operations_page(10, Some("yesterday"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(err.message.contains("cursor"), "{err}");
    }
}
