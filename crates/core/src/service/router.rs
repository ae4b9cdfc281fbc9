//! The router: an operation fans out to one [`AccountPlan`] per account on the task queue; the
//! worker that takes it resolves the targets of the account's shards (one per region), writes
//! their tasks and cuts them into chunks of up to a hundred targets of that account
//! ([`plan_chunks`]), sends all but the first on and works the first itself. Two levels, so no
//! single invocation does a whole 100,000-target fleet's work, and the environment that lists
//! an account is the one that scales it (one AssumeRole for both).

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use tracing::{info, warn};

use super::{to_body, Hub};
use crate::account::Account;
use crate::chunk::{chunk_targets, AccountPlan, TaskChunk, MAX_CHUNK_TARGETS};
use crate::cluster_hold::{cluster_wide, planned_cluster_steps};
use crate::decision::{decide, held_asleep, Action, Decision, DecisionInput};
use crate::hold::{hold_steps, HoldModes};
use crate::operation::{Discovery, OpSource, Operation, RouterMessage, Shard, Task};
use crate::ports::{Baseline, ErrorKind, Override, PlannedChange, PortError, PortResult};
use crate::selector::Selector;
use crate::target::{LiveState, Processes, Target, TargetKind};

/// Handles one router-queue message.
pub async fn handle(hub: &Hub, message: &RouterMessage) -> PortResult<()> {
    match message {
        RouterMessage::Operation { op_id } => fan_out(hub, op_id).await,
        RouterMessage::Shard { op_id, shard } => {
            plan_account(hub, op_id, std::slice::from_ref(shard)).await
        }
        RouterMessage::Account { op_id, shards } => plan_account(hub, op_id, shards).await,
    }
}

async fn load(hub: &Hub, op_id: &str) -> PortResult<Operation> {
    hub.store.get_operation(op_id).await?.ok_or_else(|| {
        PortError::new(
            ErrorKind::NotFound,
            format!("operation {op_id} does not exist"),
        )
    })
}

/// The shards of an operation: every registered account and region its selector can reach.
pub fn shards_for(selector: &Selector, accounts: &[Account]) -> Vec<Shard> {
    let mut shards = Vec::new();
    for account in accounts
        .iter()
        .filter(|a| selector.may_match_account(&a.id))
    {
        for region in account
            .regions
            .iter()
            .filter(|r| selector.may_match_region(r))
        {
            shards.push(Shard {
                account: account.id.clone(),
                region: region.clone(),
            });
        }
    }
    shards
}

/// First level: one [`AccountPlan`] per account on the task queue, naming its shards (one per
/// region); the worker that takes it plans them ([`plan_chunks`]). The shard set is fixed by the
/// first delivery; a redelivery re-sends exactly that set (shards already planned are skipped),
/// so the operation's shard count always matches the shards it waits for.
// Every log line of the fan-out carries the operation it is for.
#[tracing::instrument(name = "operation", skip(hub))]
pub async fn fan_out(hub: &Hub, op_id: &str) -> PortResult<()> {
    let op = load(hub, op_id).await?;
    if op.status.is_final() {
        return Ok(());
    }
    let accounts = hub.store.list_accounts().await?;
    let shards = hub
        .store
        .fix_shards(op_id, &shards_for(&op.selector, &accounts))
        .await?;
    let shard_count = shards.len();
    let bodies: Vec<String> = by_account(shards)
        .into_iter()
        .map(|shards| {
            AccountPlan {
                op_id: op_id.to_string(),
                shards,
            }
            .to_body()
        })
        .collect();
    info!(
        op_id,
        shards = shard_count,
        accounts = bodies.len(),
        "operation fanned out"
    );
    // To the task queue: the worker that lists an account works what it found (see
    // [`AccountPlan`]), so its environment assumes the account's role once for both.
    hub.task_queue.send(&bodies).await?;
    super::notify::settle(hub, op_id).await?;
    Ok(())
}

/// Shards grouped by account, in the order each account first appears.
fn by_account(shards: Vec<Shard>) -> Vec<Vec<Shard>> {
    let mut groups: Vec<Vec<Shard>> = Vec::new();
    let mut place: HashMap<String, usize> = HashMap::new();
    for shard in shards {
        match place.get(&shard.account) {
            Some(&at) => groups[at].push(shard),
            None => {
                place.insert(shard.account.clone(), groups.len());
                groups.push(vec![shard]);
            }
        }
    }
    groups
}

/// Whether listing targets live may refresh the inventory cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// Store what was listed live (operations).
    Refresh,
    /// Store nothing (`plan`, which writes nothing).
    ReadOnly,
}

/// The inventory cache of one account and region while it is fresh
/// (`Settings::inventory_ttl`).
async fn fresh_inventory(
    hub: &Hub,
    account: &Account,
    region: &str,
) -> PortResult<Option<Vec<Target>>> {
    Ok(hub
        .store
        .get_inventory(&account.id, region)
        .await?
        .filter(|(refreshed_at, _)| hub.clock.now() - *refreshed_at < hub.settings.inventory_ttl)
        .map(|(_, cached)| cached))
}

/// The targets of one account and region: from the inventory cache while it is fresh
/// (`Settings::inventory_ttl`), otherwise discovered live (and cached, unless read-only);
/// always live when asked.
pub async fn targets_in(
    hub: &Hub,
    account: &Account,
    region: &str,
    discovery: Discovery,
    caching: Caching,
) -> PortResult<Vec<Target>> {
    if discovery == Discovery::Cached {
        if let Some(cached) = fresh_inventory(hub, account, region).await? {
            return Ok(cached);
        }
    }
    let found = hub.spokes.discover(&account.role, region).await?;
    if caching == Caching::Refresh {
        hub.store
            .put_inventory(&account.id, region, &found, hub.clock.now())
            .await?;
    }
    Ok(found)
}

/// The targets of an enforce pass that may need putting back to sleep: each is read now, and
/// one held asleep ([`held_asleep`]) gets no task. A pass over a sleeping fleet then writes
/// nothing per target, where a task and its lease cost some 8 write units (docs/PERFORMANCE.md,
/// "Enforce passes"). The worker decides every target it gets on its own read under the lease,
/// so this read only chooses which to look at; one woken after it is caught by the next pass,
/// and one that cannot be read gets a task (its worker reports why).
async fn needing_enforcement(
    hub: &Hub,
    op: &Operation,
    account: &Account,
    targets: Vec<Target>,
) -> Vec<Target> {
    // The futures are made up front, not by a closure inside the stream, so the router's
    // future stays `Send` for the console's spawned dispatcher.
    let reads: Vec<_> = targets
        .into_iter()
        .map(|target| async move {
            // A mode it opts into (or a tag that cannot be read) may hold more than sizes show.
            let sizes_tell_all =
                HoldModes::of_target(&target, op.hold).is_ok_and(|modes| modes == HoldModes::NONE);
            match hub.spokes.live_state(&account.role, &target).await {
                Ok(live) if held_asleep(target.kind, live, !sizes_tell_all) => None,
                _ => Some(target),
            }
        })
        .collect();
    let read: Vec<Option<Target>> = stream::iter(reads)
        .buffered(super::TARGETS_AT_ONCE)
        .collect()
        .await;
    read.into_iter().flatten().collect()
}

/// A spoke reported an Auto Scaling or EKS change in `account` and `region` (forwarded by its
/// EventBridge rule to the hub bus): the next operation there lists the targets live.
pub async fn spoke_changed(hub: &Hub, account: &str, region: &str) -> PortResult<()> {
    hub.store.invalidate_inventory(account, region).await
}

/// Second level, as the router did it before [`AccountPlan`]s (still read, so messages in
/// flight across an upgrade are planned): [`plan_chunks`], then every chunk sent.
// Every log line of an account's planning carries the operation and account.
#[tracing::instrument(name = "account", skip(hub, shards),
                      fields(account = %shards.first().map_or("", |s| s.account.as_str())))]
pub async fn plan_account(hub: &Hub, op_id: &str, shards: &[Shard]) -> PortResult<()> {
    let chunks = plan_chunks(hub, op_id, shards).await?;
    if let Some(first) = chunks.first() {
        let bodies: Vec<String> = chunks.iter().map(to_body).collect();
        hub.task_queue.send_as(&first.role.account, &bodies).await?;
    }
    super::notify::settle(hub, op_id).await?;
    Ok(())
}

/// Second level: resolve the targets of one account's shards (its regions, listed at once),
/// write their tasks, and cut them into chunks that span the account's regions
/// ([`crate::chunk`]), so a worker invocation assumes the account's role once for up to a
/// hundred targets. Nothing is returned until every shard is planned: a shard that must be
/// retried (throttled discovery) fails the call before any chunk exists, and the retry returns
/// each task once. The caller sends the chunks (and settles the operation when there are none:
/// an account with nothing to do may be what it waited for).
///
/// Safe to run twice: a planned shard only yields its unfinished tasks. Empty when the
/// operation is final or the account is no longer registered (its shards are noted).
pub async fn plan_chunks(hub: &Hub, op_id: &str, shards: &[Shard]) -> PortResult<Vec<TaskChunk>> {
    let op = load(hub, op_id).await?;
    if op.status.is_final() {
        return Ok(Vec::new());
    }
    let Some(first) = shards.first() else {
        return Ok(Vec::new());
    };
    if let Some(other) = shards.iter().find(|s| s.account != first.account) {
        return Err(PortError::new(
            ErrorKind::Invalid,
            format!(
                "shards: one message names accounts {} and {}",
                first.account, other.account
            ),
        ));
    }
    let account = hub.store.get_account(&first.account).await?;
    // The futures are made up front, not by a closure inside the stream, so the router's
    // future stays `Send` for the console's spawned dispatcher.
    let planning: Vec<_> = shards
        .iter()
        .map(|shard| shard_tasks(hub, &op, account.as_ref(), shard))
        .collect();
    let planned: Vec<Vec<Task>> = stream::iter(planning)
        .buffered(hub.settings.discovery_concurrency)
        .try_collect()
        .await?;
    let Some(account) = account else {
        return Ok(Vec::new());
    };
    let targets: Vec<Target> = planned.into_iter().flatten().map(|t| t.target).collect();
    Ok(chunk_targets(
        &op,
        &account.role,
        targets,
        hub.settings.chunk_targets,
    ))
}

/// One shard's open tasks: planned now (its targets resolved and their tasks written), or, if
/// an earlier delivery planned it, its unfinished tasks. A long listing is planned in parts as
/// it comes ([`ShardPlanning`]): each part's chunks are sent at once, so an account of 50,000
/// targets is worked while it is still being listed; what is returned is the last part's tasks
/// (and any an earlier delivery planned in parts and may not have sent).
async fn shard_tasks(
    hub: &Hub,
    op: &Operation,
    account: Option<&Account>,
    shard: &Shard,
) -> PortResult<Vec<Task>> {
    let op_id = op.id.as_str();
    if hub.store.shard_planned(op_id, shard).await? {
        let open = hub.store.unfinished_tasks(op_id, shard).await?;
        return described(hub, account, shard, open).await;
    }
    let mut planning = ShardPlanning::new(hub, op, shard);
    let Some(account) = account else {
        let note = format!("account {} is no longer registered", shard.account);
        return planning.finish(None, Some(note)).await;
    };
    let note = match list_in_parts(&mut planning, account).await {
        Ok(()) => None,
        // Throttling, or a paced listing out of the invocation's time: let the queue retry
        // this shard (the parts planned stand; the retry finds them). Anything else is
        // reported on the operation and never blocks the other accounts; what was listed
        // before it is planned.
        Err(e) if listing_goes_on(e.kind) => return Err(e),
        Err(e) => {
            warn!(op_id, account = %shard.account, region = %shard.region, error = %e, "discovery failed");
            if e.kind == ErrorKind::AccessDenied {
                let role = super::notify::RoleAt {
                    account: &account.id,
                    role_arn: &account.role.role_arn,
                    region: &shard.region,
                };
                super::notify::spoke_role_denied(hub, op_id, role, &e).await;
            }
            Some(format!(
                "account {} region {}: could not list targets: {e}",
                shard.account, shard.region
            ))
        }
    };
    planning.finish(Some(account), note).await
}

/// Whether a listing that failed with `kind` is retried whole by the queue rather than planned
/// as far as it got: a throttle, or its paced requests' turns coming after the invocation's
/// calls must start ([`ErrorKind::OutOfTime`]). Planned as far as it got, the rest of the
/// account-region would be left out of the operation (it ended PARTIAL, 989 of 15,000 targets
/// unplanned, in the simulation's refused fleet once listings were paced).
fn listing_goes_on(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Throttled | ErrorKind::OutOfTime)
}

/// Lists `planning`'s shard a page at a time (the inventory cache's in one page while it is
/// fresh), keeping the targets `op` acts on and planning every full part as it fills; the
/// inventory cache is refreshed once a live listing is complete.
async fn list_in_parts(planning: &mut ShardPlanning<'_>, account: &Account) -> PortResult<()> {
    let (hub, op, region) = (planning.hub, planning.op, planning.shard.region.as_str());
    // A drift check looks only at what curfew holds asleep (their baselines, read from the
    // index); a shard with none is not even listed.
    let asleep: Option<BTreeSet<String>> = if op.check {
        let keys: BTreeSet<String> = hub
            .store
            .asleep_baselines(&account.id, region)
            .await?
            .into_iter()
            .map(|b| b.target_key)
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        Some(keys)
    } else {
        None
    };
    let cached = match op.discovery {
        Discovery::Cached => fresh_inventory(hub, account, region).await?,
        Discovery::Live => None,
    };
    let live = cached.is_none();
    let mut pages = match cached {
        Some(cached) => Box::pin(stream::once(async { Ok(cached) })),
        None => hub.spokes.discover_pages(&account.role, region),
    };
    let mut listed: Vec<Target> = Vec::new();
    while let Some(page) = pages.try_next().await? {
        if live {
            listed.extend(page.iter().cloned());
        }
        let mut targets: Vec<Target> = page
            .into_iter()
            .filter(|t| op.selector.matches(t))
            .filter(|t| asleep.as_ref().is_none_or(|keys| keys.contains(&t.key())))
            .collect();
        if matches!(op.source, OpSource::Enforce { .. }) {
            targets = needing_enforcement(hub, op, account, targets).await;
        }
        planning.add(targets);
        planning.plan_full_parts(account).await?;
    }
    if live {
        hub.store
            .put_inventory(&account.id, region, &listed, hub.clock.now())
            .await?;
    }
    Ok(())
}

/// One delivery's planning of a shard: the parts planned so far and the targets listed that
/// no part holds yet. A part is [`Settings::part_chunks`] chunks of targets; each is written
/// knowing every part before it (`OperationStore::plan_part`), so two deliveries of one plan
/// never plan a target twice: the one that finds its part taken reads the parts, drops what
/// they hold and goes on after them.
///
/// [`Settings::part_chunks`]: super::Settings::part_chunks
struct ShardPlanning<'a> {
    hub: &'a Hub,
    op: &'a Operation,
    shard: &'a Shard,
    /// Parts planned so far, by this delivery or another.
    parts: u32,
    /// The targets the parts hold, by key.
    in_parts: HashSet<String>,
    /// The targets of the parts this delivery wrote (and sent).
    sent: HashSet<String>,
    /// Whether another delivery planned parts: it may have ended before sending them.
    found_others: bool,
    /// Every target listed, by key (a listing that showed one twice plans it once).
    listed: HashSet<String>,
    /// Listed targets no part holds yet, in listing order.
    pending: Vec<Target>,
}

/// What became of a write of the plan.
enum Planned {
    Written,
    /// Another delivery planned the whole shard.
    Elsewhere,
}

impl<'a> ShardPlanning<'a> {
    fn new(hub: &'a Hub, op: &'a Operation, shard: &'a Shard) -> Self {
        ShardPlanning {
            hub,
            op,
            shard,
            parts: 0,
            in_parts: HashSet::new(),
            sent: HashSet::new(),
            found_others: false,
            listed: HashSet::new(),
            pending: Vec::new(),
        }
    }

    fn part_targets(&self) -> usize {
        let settings = &self.hub.settings;
        settings.part_chunks.max(1) * settings.chunk_targets.clamp(1, MAX_CHUNK_TARGETS)
    }

    fn add(&mut self, targets: Vec<Target>) {
        for target in targets {
            let key = target.key();
            if !self.in_parts.contains(&key) && self.listed.insert(key) {
                self.pending.push(target);
            }
        }
    }

    fn tasks(&self, targets: &[Target]) -> Vec<Task> {
        let now = self.hub.clock.now();
        targets
            .iter()
            .map(|t| Task::pending(&self.op.id, t.clone(), now))
            .collect()
    }

    /// Plans and sends every full part of what is pending.
    async fn plan_full_parts(&mut self, account: &Account) -> PortResult<()> {
        let size = self.part_targets();
        while self.pending.len() >= size {
            let tasks = self.tasks(&self.pending[..size]);
            let (op_id, shard) = (self.op.id.as_str(), self.shard);
            if self
                .hub
                .store
                .plan_part(op_id, shard, self.parts, &tasks)
                .await?
            {
                let part: Vec<Target> = self.pending.drain(..size).collect();
                self.parts += 1;
                for target in &part {
                    self.in_parts.insert(target.key());
                    self.sent.insert(target.key());
                }
                let chunks = chunk_targets(
                    self.op,
                    &account.role,
                    part,
                    self.hub.settings.chunk_targets,
                );
                let bodies: Vec<String> = chunks.iter().map(to_body).collect();
                self.hub.task_queue.send_as(&account.id, &bodies).await?;
                info!(op_id, account = %shard.account, region = %shard.region,
                      part = self.parts - 1, targets = size, "part of a shard planned and sent");
            } else if let Planned::Elsewhere = self.learn().await? {
                // The rest is the other delivery's to plan; `finish` returns what is open.
                self.pending.clear();
                return Ok(());
            }
        }
        Ok(())
    }

    /// After a write of the plan was refused: whether another delivery planned the whole
    /// shard, else the parts as they are now (what they hold leaves `pending`).
    async fn learn(&mut self) -> PortResult<Planned> {
        let (op_id, shard) = (self.op.id.as_str(), self.shard);
        if self.hub.store.shard_planned(op_id, shard).await? {
            return Ok(Planned::Elsewhere);
        }
        let found = self.hub.store.shard_parts(op_id, shard).await?;
        if found.parts == self.parts {
            // Refused, yet nothing was written in its place: retrying would loop.
            return Err(PortError::new(
                ErrorKind::Other,
                format!(
                    "planning shard {} of operation {op_id}: part {} was refused, but the shard \
                     is neither planned nor has another part",
                    shard.key(),
                    self.parts
                ),
            ));
        }
        self.parts = found.parts;
        for task in found.tasks {
            if self.in_parts.insert(task.target.key()) {
                self.found_others = true;
            }
        }
        let in_parts = &self.in_parts;
        self.pending.retain(|t| !in_parts.contains(&t.key()));
        Ok(Planned::Written)
    }

    /// Writes the last of the plan (what is pending, and `note`) and marks the shard planned;
    /// returns the tasks to send: those, and the open tasks of parts another delivery planned.
    /// If another delivery planned the whole shard, its open tasks.
    async fn finish(
        mut self,
        account: Option<&Account>,
        note: Option<String>,
    ) -> PortResult<Vec<Task>> {
        let (op_id, shard) = (self.op.id.as_str(), self.shard);
        loop {
            let tasks = self.tasks(&self.pending);
            if self
                .hub
                .store
                .plan_shard(op_id, shard, self.parts, &tasks, note.clone())
                .await?
            {
                if !self.found_others {
                    return Ok(tasks);
                }
                let open = self.hub.store.unfinished_tasks(op_id, shard).await?;
                let last: HashSet<String> = tasks.iter().map(|t| t.target.key()).collect();
                let sent = &self.sent;
                let theirs: Vec<Task> = open
                    .into_iter()
                    .filter(|t| !sent.contains(&t.target.key()) && !last.contains(&t.target.key()))
                    .collect();
                let mut all = tasks;
                all.extend(described(self.hub, account, shard, theirs).await?);
                return Ok(all);
            }
            if let Planned::Elsewhere = self.learn().await? {
                let open = self.hub.store.unfinished_tasks(op_id, shard).await?;
                return described(self.hub, account, shard, open).await;
            }
        }
    }
}

/// A planned shard's open tasks with their targets as discovery describes them: a task only
/// listed on its shard (see `OperationStore::plan_shard`) names its target by key alone, and
/// the worker needs its tags (a cluster's hold and Cluster Autoscaler tags). Read from the
/// inventory cache the plan filled while it is fresh. A target no longer found keeps its key's
/// description (its worker finds it gone); a failed discovery other than throttling leaves
/// them all so (their workers report what the spoke says).
async fn described(
    hub: &Hub,
    account: Option<&Account>,
    shard: &Shard,
    mut open: Vec<Task>,
) -> PortResult<Vec<Task>> {
    let Some(account) = account.filter(|_| !open.is_empty()) else {
        return Ok(open);
    };
    let found = match targets_in(
        hub,
        account,
        &shard.region,
        Discovery::Cached,
        Caching::Refresh,
    )
    .await
    {
        Ok(found) => found,
        Err(e) if listing_goes_on(e.kind) => return Err(e),
        Err(e) => {
            warn!(account = %shard.account, region = %shard.region, error = %e,
                  "could not describe a planned shard's targets again; sending them by key");
            return Ok(open);
        }
    };
    let found: HashMap<String, Target> = found.into_iter().map(|t| (t.key(), t)).collect();
    for task in &mut open {
        if let Some(target) = found.get(&task.target.key()) {
            task.target = target.clone();
        }
    }
    Ok(open)
}

/// The hold steps a planned change would take (see [`hold_steps`]): a stop that saves its
/// baseline holds what it finds now, a stop of a target woken by hand holds again what the
/// baseline names, a start undoes what the baseline names. A problem reading them is a step too,
/// so the plan still prints.
async fn planned_holds(
    hub: &Hub,
    account: &Account,
    target: &Target,
    live: LiveState,
    decision: &Decision,
    baseline: Option<&Baseline>,
    hold: Option<HoldModes>,
) -> Vec<String> {
    let from_baseline =
        |action| baseline.map_or_else(Vec::new, |b| hold_steps(action, b.held, &b.ca_tags));
    match (decision, action_of(decision, baseline)) {
        (
            Decision::Scale {
                save_baseline: Some(_),
                ..
            },
            Some(Action::Stop),
        ) => {
            let processes = if target.kind == TargetKind::Asg {
                Processes::HELD.minus(live.suspended)
            } else {
                Processes::NONE
            };
            let modes = match HoldModes::of_target(target, hold) {
                Ok(modes) => modes,
                Err(e) => return vec![format!("hold: {e}")],
            };
            let ca_tags = if modes.ca_tags {
                match hub.spokes.ca_tags(&account.role, target).await {
                    Ok(tags) => tags,
                    Err(e) => return vec![format!("ca-tags: could not read the tags: {e}")],
                }
            } else {
                Vec::new()
            };
            let mut steps = hold_steps(Action::Stop, processes, &ca_tags);
            steps.extend(planned_cluster_steps(
                target,
                cluster_wide(modes),
                Action::Stop,
            ));
            steps
        }
        (_, Some(action)) => {
            let mut steps = from_baseline(action);
            if baseline.is_some_and(|b| b.cluster_hold) {
                let modes = HoldModes::of_target(target, hold).unwrap_or_default();
                steps.extend(planned_cluster_steps(target, cluster_wide(modes), action));
            }
            steps
        }
        (_, None) => Vec::new(),
    }
}

/// Which way a decision changes the target's holds, if it does: a scale with a baseline to save
/// or none to retire is a stop, a scale or retire that restores a baseline is a start.
fn action_of(decision: &Decision, baseline: Option<&Baseline>) -> Option<Action> {
    match decision {
        Decision::Scale {
            retire_baseline: true,
            ..
        }
        | Decision::RetireBaseline => Some(Action::Start),
        Decision::Scale {
            save_baseline: Some(_),
            ..
        } => Some(Action::Stop),
        Decision::Scale { .. } if baseline.is_some() => Some(Action::Stop),
        _ => None,
    }
}

/// What a stop or start over a selector would do, changing nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// One entry per matching target, sorted by target key.
    pub changes: Vec<PlannedChange>,
    /// Accounts or regions that could not be listed; they never block the others.
    pub problems: Vec<String>,
}

/// What a stop or start over `selector` would do, target by target, changing nothing (not even
/// the inventory cache). Reads the inventory (cached while fresh, else live) and every
/// target's live state. An
/// account or region that cannot be listed is reported in `problems`; a target whose state
/// cannot be read is listed with the reason.
pub async fn plan(
    hub: &Hub,
    action: crate::decision::Action,
    selector: &Selector,
    discovery: Discovery,
    hold: Option<HoldModes>,
) -> PortResult<Plan> {
    let accounts = hub.store.list_accounts().await?;
    let by_id: HashMap<&str, &Account> = accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    let shards = shards_for(selector, &accounts);
    let now: DateTime<Utc> = hub.clock.now();
    let overrides = hub.store.active_overrides(now).await?;
    let per_shard: Vec<Result<Vec<PlannedChange>, String>> = stream::iter(shards)
        .map(|shard| {
            let account = by_id[shard.account.as_str()];
            let overrides = &overrides;
            async move {
                let targets =
                    match targets_in(hub, account, &shard.region, discovery, Caching::ReadOnly)
                        .await
                    {
                        Ok(targets) => targets,
                        Err(e) => {
                            return Ok(Err(format!(
                                "account {} region {}: could not list targets: {e}",
                                shard.account, shard.region
                            )))
                        }
                    };
                let mut changes = Vec::new();
                for target in targets.into_iter().filter(|t| selector.matches(t)) {
                    let live = match hub.spokes.live_state(&account.role, &target).await {
                        Ok(live) => live,
                        Err(e) => {
                            changes.push(PlannedChange {
                                target,
                                action,
                                live: crate::target::Sizes::new(0, 0, 0),
                                to: None,
                                reason: Some(format!("could not read the target: {e}")),
                                steps: Default::default(),
                            });
                            continue;
                        }
                    };
                    let baseline = hub.store.get_baseline(&target.key()).await?;
                    let awake_until = Override::awake_until(overrides, &target, now);
                    let decision = decide(&DecisionInput {
                        action,
                        kind: target.kind,
                        live,
                        baseline: baseline.as_ref().map(|b| b.sizes),
                        default_start: None,
                        awake_until,
                        now,
                    });
                    let steps = planned_holds(
                        hub,
                        account,
                        &target,
                        live,
                        &decision,
                        baseline.as_ref(),
                        hold,
                    )
                    .await;
                    let (to, reason) = match decision {
                        Decision::Scale { to, .. } => (Some(to), None),
                        Decision::RetireBaseline => {
                            (None, Some("already at its baseline sizes".to_string()))
                        }
                        Decision::Skip(r) => (None, Some(r.to_string())),
                        Decision::RetryLater(r) => (None, Some(r)),
                    };
                    changes.push(PlannedChange {
                        steps,
                        target,
                        action,
                        live: live.sizes,
                        to,
                        reason,
                    });
                }
                Ok::<_, PortError>(Ok(changes))
            }
        })
        .buffer_unordered(hub.settings.discovery_concurrency)
        .try_collect()
        .await?;
    let mut plan = Plan::default();
    for shard in per_shard {
        match shard {
            Ok(changes) => plan.changes.extend(changes),
            Err(problem) => plan.problems.push(problem),
        }
    }
    plan.changes.sort_by_key(|c| c.target.key());
    plan.problems.sort();
    Ok(plan)
}
