//! The router: an operation fans out to one [`AccountPlan`] per account on the task queue; the
//! worker that takes it resolves the targets of the account's shards (one per region), writes
//! their tasks and cuts them into chunks of up to a hundred targets of that account
//! ([`plan_chunks`]), sends all but the first on and works the first itself. Two levels, so no
//! single invocation does a whole 100,000-target fleet's work, and the environment that lists
//! an account is the one that scales it (one AssumeRole for both).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use tracing::{info, warn};

use super::{to_body, Hub};
use crate::account::Account;
use crate::chunk::{chunk_targets, AccountPlan, TaskChunk};
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
        if let Some((refreshed_at, cached)) = hub.store.get_inventory(&account.id, region).await? {
            if hub.clock.now() - refreshed_at < hub.settings.inventory_ttl {
                return Ok(cached);
            }
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

/// The targets of `op` in one account and region: those its selector matches, and for a drift
/// check only those curfew holds asleep (their baselines, read from the index; a shard with
/// none is not even listed).
async fn shard_targets(
    hub: &Hub,
    op: &Operation,
    account: &Account,
    region: &str,
) -> PortResult<Vec<Target>> {
    let asleep: Option<BTreeSet<String>> = if op.check {
        let keys: BTreeSet<String> = hub
            .store
            .asleep_baselines(&account.id, region)
            .await?
            .into_iter()
            .map(|b| b.target_key)
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        Some(keys)
    } else {
        None
    };
    let targets = targets_in(hub, account, region, op.discovery, Caching::Refresh).await?;
    Ok(targets
        .into_iter()
        .filter(|t| op.selector.matches(t))
        .filter(|t| asleep.as_ref().is_none_or(|keys| keys.contains(&t.key())))
        .collect())
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
/// an earlier delivery planned it, its unfinished tasks.
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
    let now = hub.clock.now();
    let (tasks, note) = match account {
        None => (
            Vec::new(),
            Some(format!("account {} is no longer registered", shard.account)),
        ),
        Some(account) => {
            let listed = match shard_targets(hub, op, account, &shard.region).await {
                Ok(targets) if matches!(op.source, OpSource::Enforce { .. }) => {
                    Ok(needing_enforcement(hub, op, account, targets).await)
                }
                listed => listed,
            };
            match listed {
                Ok(targets) => (
                    targets
                        .into_iter()
                        .map(|t| Task::pending(op_id, t, now))
                        .collect(),
                    None,
                ),
                // Throttling: let the queue retry this shard. Anything else is reported on
                // the operation and never blocks the other accounts.
                Err(e) if e.kind == ErrorKind::Throttled => return Err(e),
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
                    (
                        Vec::new(),
                        Some(format!(
                            "account {} region {}: could not list targets: {e}",
                            shard.account, shard.region
                        )),
                    )
                }
            }
        }
    };
    hub.store.plan_shard(op_id, shard, &tasks, note).await?;
    Ok(tasks)
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
        Err(e) if e.kind == ErrorKind::Throttled => return Err(e),
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
