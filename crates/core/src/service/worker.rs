//! The worker: one task message -> lease -> live state -> baseline -> scale -> record.
//!
//! Every step is safe to repeat or to be cut short by a crash:
//! - each delivery takes the target's lease with a token of its own, so two copies of one
//!   message never act at once, and a delivery of an older operation never acts after a newer
//!   operation has (it is superseded);
//! - everything is read *after* the lease is taken, so no decision rests on reads older than
//!   the last change curfew made to the target;
//! - every write that guards the target (baseline save and retire, the lease's mark of the
//!   change in flight just before the spoke is changed, a cluster's hold) is conditioned on the
//!   lease still holding that token (fencing; the mark also on the lease not having expired), so
//!   a delivery that lost its lease changes nothing; the task's own record follows a fenced
//!   write and is conditioned on the task not being final;
//! - the lease's mark says how far an earlier delivery got (the change in flight: its sizes
//!   and, for EKS, the update id; listings show the task APPLYING), so a redelivery finishes that
//!   work instead of redoing it blindly.
//!
//! Dry runs read and decide, and never take a lease: they can neither delay nor supersede a
//! real operation.

use tracing::{info, warn};

use super::endings::LeaseAfterEnd;
use super::hold::{hold_cluster, rehold_cluster, release_cluster, Paused, StepError};
use super::Hub;
use crate::cluster_hold::{cluster_key, cluster_of, cluster_wide};
use crate::decision::{decide, Action, Decision, DecisionInput, SkipReason};
use crate::hold::{hold_steps, CaTag, HoldModes};
use crate::metrics::{self, Metric};
use crate::operation::{Task, TaskMessage, TaskOutcome, TaskStatus};
use crate::ports::{
    Baseline, ChangeInFlight, ErrorKind, Interrupted, Lease, LeaseToken, Override, PortError,
    PortResult, RecordedFinish, UpdateState,
};
use crate::target::{LiveState, Processes, Sizes, TargetKind};
use crate::trail::{self, AuditEntry, ChangeKind};

/// What became of one task message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskStep {
    /// The task reached this final state (now or on an earlier delivery): delete the message.
    Finished(TaskStatus),
    /// Not now (lease held, node group UPDATING, throttled): leave the message on the queue.
    RetryLater(String),
}

/// Works one task message and, once its task is final, settles its operation's status.
pub async fn handle(hub: &Hub, msg: &TaskMessage) -> PortResult<TaskStep> {
    let step = work(hub, msg, None).await?;
    if let TaskStep::Finished(_) = step {
        super::notify::settle(hub, &msg.op_id).await?;
    }
    Ok(step)
}

/// Works one task message, with the active overrides already read for its batch (one Query
/// per batch instead of one per stopped target; `None` reads them here), and does not settle
/// the operation: the caller must call `finalize_operation` after a `Finished` step — once per
/// operation per batch is enough, since whoever finishes an operation's last task then sees
/// it complete. A crash before that leaves the message undeleted, and its redelivery (the task
/// already final) settles the operation. Reads the task before anything else, as for a
/// message received again ([`work_received`]).
pub async fn work(
    hub: &Hub,
    msg: &TaskMessage,
    overrides: Option<&[Override]>,
) -> PortResult<TaskStep> {
    work_received(hub, msg, overrides, false).await
}

/// [`work`] for a message on its `first` receive, whose task is open but for a duplicate
/// message (rare): it is read once, under the lease (or once the take finds the target moved
/// on), where reading it before the take as well cost a read unit a target and wave. A message
/// received again may find its task final (its chunk came back for another target's sake, or
/// a crash followed the task's end): its task is read first, sparing the take, the spoke's
/// read and the release.
pub async fn work_received(
    hub: &Hub,
    msg: &TaskMessage,
    overrides: Option<&[Override]>,
    first: bool,
) -> PortResult<TaskStep> {
    let mut read_first = None;
    if !first || msg.check || msg.dry_run {
        let task = load_task(hub, msg).await?;
        if task.status.is_final() {
            return Ok(TaskStep::Finished(task.status));
        }
        if msg.check {
            return check(hub, msg).await;
        }
        if msg.dry_run {
            return dry_run(hub, msg, overrides).await;
        }
        read_first = Some(task);
    }
    let key = msg.target.key();
    let lease = LeaseToken::new(&msg.op_id, msg.action);
    let now = hub.clock.now();
    let granted = hub
        .store
        .acquire_lease(&key, &lease, msg.op_created_at, now, hub.settings.lease_ttl)
        .await?;
    match granted {
        Lease::Held { by } => Ok(TaskStep::RetryLater(format!(
            "operation {by} is working on this target"
        ))),
        Lease::Superseded { by, mark } => {
            // What a delivery of this task had begun, if anything: the lease's mark while it is
            // still this operation's; once the newer operation has taken it up, this task's
            // record, which it wrote before anything else (`mark_interrupted`), read again
            // now. A task final already (a redelivery's) is left as it is.
            let own = mark.filter(|m| m.op_id == msg.op_id);
            let task = match (&own, read_first) {
                (Some(_), Some(task)) => task,
                _ => load_task(hub, msg).await?,
            };
            if task.status.is_final() {
                return Ok(TaskStep::Finished(task.status));
            }
            let begun = change_begun(&task, own.as_ref());
            finish(hub, msg, &superseded(&by, begun.as_ref())).await
        }
        Lease::Acquired {
            interrupted,
            baseline,
        } => {
            let taken = Taken {
                interrupted: interrupted.as_ref(),
                baseline,
            };
            let result = leased(hub, msg, &lease, taken, overrides).await;
            // Released on error too; a crash instead leaves the lease to expire. The release is
            // conditional on our token, so a lease that moved on is left to its new holder.
            // Only a final task clears the mark of a change in flight.
            let mut finished = matches!(result, Ok(TaskStep::Finished(_)));
            // A task end held for its batch's write keeps the lease until it is written.
            if finished {
                match super::endings::keep_lease(msg, &lease) {
                    LeaseAfterEnd::Kept => return result,
                    LeaseAfterEnd::Release { finished: written } => finished = written,
                }
            }
            hub.store.release_lease(&key, &lease, finished).await?;
            result
        }
    }
}

/// Gives the task up because its message had its last receive and the task is still open
/// (`why`: what the last receive was waiting for). The task becomes DEAD_LETTERED with that
/// reason and is counted once, so its operation can end (PARTIAL); the message itself goes on
/// to the dead-letter queue, from which `curfew dlq redrive` reopens the task.
///
/// Safe to repeat and to race: the store refuses a task that is already final (another
/// delivery finished it: that status is returned) and one a delivery of this operation is
/// working on under the target's lease (`RetryLater`: that delivery finishes it or leaves it
/// open).
pub async fn give_up(
    hub: &Hub,
    msg: &TaskMessage,
    receives: u32,
    why: &str,
) -> PortResult<TaskStep> {
    let key = msg.target.key();
    let reason = format!("dead-lettered after {receives} receives; the last was waiting: {why}");
    if hub
        .store
        .dead_letter_task(&msg.op_id, &msg.target, &reason, hub.clock.now())
        .await?
    {
        warn!(op_id = %msg.op_id, target = %key, %reason, "task dead-lettered");
        count_finished(msg, TaskStatus::DeadLettered);
        super::notify::dead_lettered(hub, msg, &reason).await;
        return Ok(TaskStep::Finished(TaskStatus::DeadLettered));
    }
    let task = load_task(hub, msg).await?;
    if task.status.is_final() {
        return Ok(TaskStep::Finished(task.status));
    }
    Ok(TaskStep::RetryLater(format!(
        "another delivery of operation {} holds the lease on {key}",
        msg.op_id
    )))
}

/// The message's task as stored, or PENDING if none was written yet: its shard's plan may list
/// its target instead of writing its task (see `OperationStore::plan_shard`), and only a
/// plan sends a task message.
async fn load_task(hub: &Hub, msg: &TaskMessage) -> PortResult<Task> {
    let key = msg.target.key();
    Ok(hub
        .store
        .get_task(&msg.op_id, &key)
        .await?
        .unwrap_or_else(|| Task::pending(&msg.op_id, msg.target.clone(), msg.op_created_at)))
}

/// A newer operation has acted on the target. If an earlier delivery of this task had begun
/// changing it, the record says so rather than pretending nothing happened.
fn superseded(by: &str, begun: Option<&Begun>) -> TaskOutcome {
    match begun.and_then(|b| Some((b.before?, b.planned))) {
        Some((before, after)) => TaskOutcome {
            status: TaskStatus::Skipped,
            reason: Some(format!(
                "superseded by newer operation {by}; an earlier delivery of this task began \
                 scaling {before} -> {after} and stopped before recording the result"
            )),
            before: Some(before),
            after: Some(after),
            steps: Default::default(),
        },
        None => skipped(format!("superseded by newer operation {by}")),
    }
}

/// A dry run: reads and decides like a real delivery, records what it would do, and takes no
/// lease and writes nothing but its own task record.
async fn dry_run(
    hub: &Hub,
    msg: &TaskMessage,
    overrides: Option<&[Override]>,
) -> PortResult<TaskStep> {
    let live = match hub.spokes.live_state(&msg.role, &msg.target).await {
        Ok(live) => live,
        Err(e) => return spoke_failure(hub, msg, None, "reading the target", e).await,
    };
    let baseline = hub.store.get_baseline(&msg.target.key()).await?;
    let decision = decide(&DecisionInput {
        action: msg.action,
        kind: msg.target.kind,
        live,
        baseline: baseline.map(|b| b.sizes),
        default_start: msg.default_start,
        awake_until: awake_until(hub, msg, overrides).await?,
        now: hub.clock.now(),
    });
    let note = dry_run_note(&decision, live);
    finish(hub, msg, &skipped_at(note, live.sizes)).await
}

/// A drift check of a target curfew holds asleep: records what something else changed on it
/// since its stop (SKIPPED, `drift: ...`) or that every hold is in place (SUCCEEDED). Takes no
/// lease and changes nothing.
async fn check(hub: &Hub, msg: &TaskMessage) -> PortResult<TaskStep> {
    let live = match hub.spokes.live_state(&msg.role, &msg.target).await {
        Ok(live) => live,
        Err(e) => return spoke_failure(hub, msg, None, "reading the target", e).await,
    };
    let Some(baseline) = hub.store.get_baseline(&msg.target.key()).await? else {
        let reason = "not held asleep any more: a start woke it after the check was planned";
        return finish(hub, msg, &skipped_at(reason.into(), live.sizes)).await;
    };
    let found = match super::drift::findings(hub, msg, live, &baseline).await {
        Ok(found) => found,
        Err((what, e)) => return spoke_failure(hub, msg, None, what, e).await,
    };
    if found.is_empty() {
        let mut outcome = succeeded(live.sizes, live.sizes);
        outcome.reason = Some("asleep; every hold in place".into());
        return finish(hub, msg, &outcome).await;
    }
    let drift = found.join("; ");
    warn!(metric = "Drift", op_id = %msg.op_id, target = %msg.target.key(), %drift,
          "a target curfew holds asleep was changed by something else");
    let mut detail = found;
    detail.push("recorded, not acted on: the next stop puts it back to sleep".into());
    record_drift(hub, msg, live.sizes, detail).await?;
    finish(hub, msg, &skipped_at(format!("drift: {drift}"), live.sizes)).await
}

/// Until when an override keeps the target of a stop awake.
async fn awake_until(
    hub: &Hub,
    msg: &TaskMessage,
    overrides: Option<&[Override]>,
) -> PortResult<Option<chrono::DateTime<chrono::Utc>>> {
    if msg.action != Action::Stop {
        return Ok(None);
    }
    let now = hub.clock.now();
    let read;
    let overrides = match overrides {
        Some(batch) => batch,
        None => {
            read = hub.store.active_overrides(now).await?;
            &read
        }
    };
    Ok(Override::awake_until(overrides, &msg.target, now))
}

/// What a delivery found when it took the target's lease ([`Lease::Acquired`]).
struct Taken<'a> {
    /// A change an earlier holder began and never finished.
    interrupted: Option<&'a Interrupted>,
    /// The target's saved baseline: returned by the take, so not read again.
    baseline: Option<Baseline>,
}

/// Everything a delivery does while it holds the target's lease.
async fn leased(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    taken: Taken<'_>,
    overrides: Option<&[Override]>,
) -> PortResult<TaskStep> {
    let Taken {
        interrupted,
        mut baseline,
    } = taken;
    // Read under the lease: another copy of this message may have finished the task before
    // the take, and none can while it is held.
    let task = load_task(hub, msg).await?;
    // A final task has nothing to do but settle what another operation's interrupted delivery
    // left (below), which needs the target read.
    let others = interrupted.filter(|i| i.op_id != msg.op_id);
    if task.status.is_final() && others.is_none() {
        return Ok(TaskStep::Finished(task.status));
    }
    let mut live = match hub.spokes.live_state(&msg.role, &msg.target).await {
        Ok(live) => live,
        Err(e) if task.status.is_final() => return Err(e),
        Err(e) => return spoke_failure(hub, msg, None, "reading the target", e).await,
    };
    // What an interrupted delivery of another operation left is settled before anything else,
    // even when this task turns out to be final: releasing a final task's lease clears the mark.
    if let Some(interrupted) = others {
        if let Some(step) =
            settle_interrupted(hub, msg, lease, interrupted, &mut live, &mut baseline).await?
        {
            return Ok(step);
        }
    }
    if task.status.is_final() {
        return Ok(TaskStep::Finished(task.status));
    }
    let begun = change_begun(&task, interrupted.filter(|i| i.op_id == msg.op_id));
    if let Some(begun) = &begun {
        if let Some(step) = resume(hub, msg, lease, begun, live, baseline.as_ref()).await? {
            return Ok(step);
        }
    }
    // A baseline this stop saved on an earlier delivery that never put the target to sleep (it
    // began no change, or the target is still at the sizes it saved) stands for nothing yet:
    // decide as if there were none, save it again from what is read now, and remove it if the
    // stop ends up leaving the target awake (kept awake by an override).
    let own_unused = msg.action == Action::Stop
        && baseline
            .as_ref()
            .is_some_and(|b| b.op_id == msg.op_id && (begun.is_none() || b.sizes == live.sizes));
    let decision = decide(&DecisionInput {
        action: msg.action,
        kind: msg.target.kind,
        live,
        baseline: baseline.as_ref().filter(|_| !own_unused).map(|b| b.sizes),
        default_start: msg.default_start,
        awake_until: awake_until(hub, msg, overrides).await?,
        now: hub.clock.now(),
    });
    match decision {
        Decision::Skip(reason) if own_unused => {
            if let Some(b) = &baseline {
                drop_baseline(hub, msg, lease, b).await?;
            }
            finish(hub, msg, &skipped_at(reason.to_string(), live.sizes)).await
        }
        Decision::Skip(SkipReason::AlreadyStopped) => {
            // Asleep means asleep: what the stop held and someone undid since is held again.
            let mut reason = SkipReason::AlreadyStopped.to_string();
            match rehold(hub, msg, lease, live, baseline.as_ref()).await {
                Ok(Some(again)) => reason.push_str(&format!("; {again} again")),
                Ok(None) => {}
                Err((what, e)) => return spoke_failure(hub, msg, None, what, e).await,
            }
            finish(hub, msg, &skipped_at(reason, live.sizes)).await
        }
        Decision::Skip(reason) => {
            finish(hub, msg, &skipped_at(reason.to_string(), live.sizes)).await
        }
        Decision::RetryLater(why) => {
            if live.busy {
                super::notify::if_stuck_updating(hub, msg, task.updated_at).await;
            }
            Ok(TaskStep::RetryLater(why))
        }
        Decision::RetireBaseline => {
            let mut outcome = succeeded(live.sizes, live.sizes);
            outcome.reason = Some("already at its baseline sizes".into());
            if let Some(b) = &baseline {
                let dropped = drop_baseline(hub, msg, lease, b).await?;
                outcome.steps = hold_steps(Action::Start, b.held, &b.ca_tags);
                outcome.steps.extend(dropped.cluster_steps);
            }
            finish(hub, msg, &outcome).await
        }
        Decision::Scale {
            save_baseline,
            to,
            retire_baseline,
        } => {
            if msg.enforce {
                let found = format!(
                    "found awake at {} in an enforced schedule's asleep time, with no override; \
                     put back to sleep{}",
                    live.sizes,
                    baseline
                        .as_ref()
                        .map(|b| format!(" (its saved baseline {} kept)", b.sizes))
                        .unwrap_or_default()
                );
                warn!(metric = "Drift", op_id = %msg.op_id, target = %msg.target.key(),
                      drift = %found, "an enforce pass found a target awake");
                record_drift(hub, msg, live.sizes, vec![found]).await?;
            }
            if !to.is_valid() {
                let outcome = TaskOutcome {
                    status: TaskStatus::Failed,
                    reason: Some(format!(
                        "refusing invalid sizes {to} (need min <= desired <= max)"
                    )),
                    before: Some(live.sizes),
                    after: None,
                    steps: Default::default(),
                };
                return finish(hub, msg, &outcome).await;
            }
            let hold = if msg.action == Action::Stop {
                match holds_for_stop(hub, msg, live, baseline.as_ref(), save_baseline, own_unused)
                    .await
                {
                    Ok(hold) => hold,
                    Err(e) => {
                        return spoke_failure(hub, msg, None, "reading what to hold", e).await
                    }
                }
            } else {
                Hold::default()
            };
            let saving = save_baseline.map(|sizes| Baseline {
                target_key: msg.target.key(),
                sizes,
                op_id: msg.op_id.clone(),
                saved_at: hub.clock.now(),
                held: hold.processes,
                ca_tags: hold.ca_tags.clone(),
                cluster_hold: hold.cluster_hold,
            });
            // The last fenced write before the spoke is touched: past it, this delivery owns the
            // change. The lease's mark of the change in flight is all that records it: whoever
            // takes the target next after a crash settles what it may have left (this
            // operation's redelivery finishes it), and a listing shows the task APPLYING. A stop
            // that saves a baseline marks the lease in the same write.
            let change = ChangeInFlight {
                before: live.sizes,
                planned: to,
                at: hub.clock.now(),
            };
            match &saving {
                Some(new) => {
                    let saved = hub
                        .store
                        .save_baseline(new, lease, own_unused, &change)
                        .await?;
                    if !saved {
                        // Only a writer holding the lease may save one, and we hold it: another
                        // baseline appearing means the state moved under us. Read it all again.
                        return Err(PortError::new(
                            ErrorKind::Other,
                            format!(
                                "a baseline of {} appeared while its lease was held; will retry",
                                msg.target.key()
                            ),
                        ));
                    }
                }
                None => {
                    hub.store
                        .mark_in_flight(&msg.target.key(), lease, &change)
                        .await?
                }
            }
            // The baseline whose holds this change applies (a stop) or undoes (a start).
            let holds = match msg.action {
                Action::Stop => saving.or(baseline),
                Action::Start => baseline.filter(|_| retire_baseline),
            };
            scale(hub, msg, lease, live.sizes, to, &hold, holds.as_ref()).await
        }
    }
}

/// Another operation's delivery died while it was changing the target (its mark is still on the
/// lease). Before deciding, settle the baseline it left as the target shows it:
/// - a start whose sizes took restored the target: the baseline it restored from is spent, and
///   kept it would overwrite whatever sizes the owners set before the next stop;
/// - a stop that saved a baseline and never put the target to sleep (it never recorded sizes to
///   set, or the target is still at the sizes it saved) leaves a baseline nothing stands behind.
///
/// A change still being applied (busy) is waited for.
async fn settle_interrupted(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    interrupted: &Interrupted,
    live: &mut LiveState,
    baseline: &mut Option<Baseline>,
) -> PortResult<Option<TaskStep>> {
    // Its own task says what it had begun, for when its delivery comes back superseded. (A
    // mark an earlier version left has no sizes before: its task says so already.)
    if let (Some(before), Some(planned)) = (interrupted.before, interrupted.planned) {
        hub.store
            .mark_interrupted(
                &interrupted.op_id,
                &msg.target,
                before,
                planned,
                hub.clock.now(),
            )
            .await?;
    }
    if live.busy {
        return Ok(Some(TaskStep::RetryLater(format!(
            "an update begun by operation {} is still in progress",
            interrupted.op_id
        ))));
    }
    let spent = match interrupted.action {
        Action::Start => interrupted.planned == Some(live.sizes),
        Action::Stop => baseline.as_ref().is_some_and(|b| {
            b.op_id == interrupted.op_id && (interrupted.planned.is_none() || b.sizes == live.sizes)
        }),
    };
    if let Some(b) = baseline.as_ref().filter(|_| spent) {
        drop_baseline(hub, msg, lease, b).await?;
        live.suspended = live.suspended.minus(b.held);
        info!(target = %b.target_key, interrupted_op = %interrupted.op_id,
              "retired a baseline an interrupted operation left behind");
        *baseline = None;
    }
    Ok(None)
}

/// A change an earlier delivery of this task began (the task's APPLYING state).
#[derive(Clone, Debug, PartialEq)]
struct Begun {
    /// The sizes read before it, if known.
    before: Option<Sizes>,
    /// The sizes it was setting.
    planned: Sizes,
    /// The spoke's id for its asynchronous update (EKS), once recorded.
    update_id: Option<String>,
    /// When it began.
    since: chrono::DateTime<chrono::Utc>,
}

/// The change an earlier delivery of this task began and did not see through: the lease's mark
/// of this operation's change in flight (`own`). A mark an earlier version made names only the
/// sizes planned and was followed by an APPLYING record on the task, which holds the rest: for
/// such a mark the task's record is what counts (none: it never reached the spoke).
fn change_begun(task: &Task, own: Option<&Interrupted>) -> Option<Begun> {
    match own {
        Some(mark) if mark.marked_at.is_some() => Some(Begun {
            before: mark.before,
            planned: mark.planned?,
            update_id: mark.update_id.clone(),
            since: mark.marked_at?,
        }),
        _ => {
            let planned = task.after.filter(|_| task.status == TaskStatus::Applying)?;
            Some(Begun {
                before: task.before,
                planned,
                update_id: task.update_id.clone(),
                since: task.updated_at,
            })
        }
    }
}

/// An earlier delivery of this task began a change (and may have changed the target, and for
/// EKS recorded its update): finish that work if it is done or under way. `None`: it never
/// took effect, so decide afresh.
async fn resume(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    begun: &Begun,
    live: LiveState,
    baseline: Option<&Baseline>,
) -> PortResult<Option<TaskStep>> {
    let planned = begun.planned;
    let before = begun.before.unwrap_or(live.sizes);
    if let Some(update_id) = &begun.update_id {
        let since = begun.since;
        return settle_update(hub, msg, lease, update_id, since, before, planned, baseline)
            .await
            .map(Some);
    }
    if live.busy {
        super::notify::if_stuck_updating(hub, msg, begun.since).await;
        return Ok(Some(TaskStep::RetryLater(
            "an update is in progress on the node group".into(),
        )));
    }
    if live.sizes == planned {
        return complete(hub, msg, lease, before, planned, baseline)
            .await
            .map(Some);
    }
    Ok(None)
}

/// Tells the spoke (the lease is already marked with the change), and completes the task once
/// the change has taken.
async fn scale(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    before: Sizes,
    to: Sizes,
    hold: &Hold,
    holds: Option<&Baseline>,
) -> PortResult<TaskStep> {
    let key = msg.target.key();
    // Sleep pauses what could wake the group before it shrinks it: the cluster's own
    // autoscalers and workloads first (waiting for Karpenter's nodes to go), then the group's.
    if hold.cluster_hold {
        match pause_cluster(hub, msg, lease, hold.cluster).await {
            Ok(Paused::Held) => {}
            Ok(Paused::Draining(nodes)) => {
                return Ok(TaskStep::RetryLater(format!(
                    "karpenter: waiting for {nodes} node(s) to drain before the node group shrinks"
                )))
            }
            Err((what, e)) => return spoke_failure(hub, msg, Some(lease), what, e).await,
        }
    }
    if let Err((what, e)) = apply_hold(hub, msg, hold).await {
        return spoke_failure(hub, msg, Some(lease), what, e).await;
    }
    let update_id = match hub.spokes.set_sizes(&msg.role, &msg.target, to).await {
        Ok(update_id) => update_id,
        Err(e) => return spoke_failure(hub, msg, Some(lease), "updating the target", e).await,
    };
    match update_id {
        None => complete(hub, msg, lease, before, to, holds).await,
        Some(update_id) => {
            hub.store.record_update(&key, lease, &update_id).await?;
            let since = hub.clock.now();
            settle_update(hub, msg, lease, &update_id, since, before, to, holds).await
        }
    }
}

/// Where an asynchronous (EKS) update stands decides the task: done completes it, in progress
/// comes back later (telling a person once it has waited since `since` past the bound), failed
/// fails it and keeps the target's old state consistent.
#[allow(clippy::too_many_arguments)]
async fn settle_update(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    update_id: &str,
    since: chrono::DateTime<chrono::Utc>,
    before: Sizes,
    planned: Sizes,
    holds: Option<&Baseline>,
) -> PortResult<TaskStep> {
    let state = match hub
        .spokes
        .update_state(&msg.role, &msg.target, update_id, planned)
        .await
    {
        Ok(state) => state,
        Err(e) => return spoke_failure(hub, msg, None, "reading the update's status", e).await,
    };
    match state {
        UpdateState::Done => complete(hub, msg, lease, before, planned, holds).await,
        UpdateState::InProgress => {
            super::notify::if_stuck_updating(hub, msg, since).await;
            Ok(TaskStep::RetryLater(format!(
                "update {update_id} is still in progress"
            )))
        }
        UpdateState::Failed(reason) => {
            let e = PortError::new(
                ErrorKind::Invalid,
                format!("update {update_id} failed: {reason}"),
            );
            spoke_failure(hub, msg, Some(lease), "updating the target", e).await
        }
    }
}

/// The target is at the planned sizes: a start retires the baseline it restored (only now,
/// once the change is known to have taken), and the task succeeds, recording the holds it
/// applied (a stop) or undid (a start) from `holds`, the target's baseline.
async fn complete(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    before: Sizes,
    after: Sizes,
    holds: Option<&Baseline>,
) -> PortResult<TaskStep> {
    let mut outcome = succeeded(before, after);
    if let Some(b) = holds {
        outcome.steps = hold_steps(msg.action, b.held, &b.ca_tags);
        if msg.action == Action::Stop && b.cluster_hold {
            outcome.steps.extend(cluster_steps(hub, msg).await?);
        }
    }
    if let Some(baseline) = holds.filter(|_| msg.action == Action::Start) {
        // Wake resumes the processes the stop suspended only once the sizes are back (the
        // reverse of sleep), then retires the baseline that named them.
        match drop_baseline(hub, msg, lease, baseline).await {
            Ok(dropped) => outcome.steps.extend(dropped.cluster_steps),
            // The change took, but a newer operation holds the target now: it decides what
            // becomes of the baseline (a stop keeps it, a start retires it).
            Err(e) if e.kind == ErrorKind::LeaseLost => {
                outcome.reason = Some(
                    "restored; a newer operation took the target over before the baseline was retired"
                        .into(),
                );
            }
            Err(e) => return Err(e),
        }
    }
    finish(hub, msg, &outcome).await
}

/// What [`drop_baseline`] did.
struct Dropped {
    /// The baseline was deleted (false: it was already gone, or another operation's).
    retired: bool,
    /// What leaving the cluster's hold did, for the task's steps.
    cluster_steps: Vec<String>,
}

/// Undoes what `baseline`'s stop held — Cluster Autoscaler's tags, the Auto Scaling processes,
/// the node group's place in its cluster's hold (the last one out restores the cluster) — then
/// deletes the baseline (fenced, and only if it is still the one read).
async fn drop_baseline(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    baseline: &Baseline,
) -> PortResult<Dropped> {
    // The reverse of sleep: Cluster Autoscaler's tags come back once the group is back.
    if !baseline.ca_tags.is_empty() {
        hub.spokes
            .restore_ca_tags(&msg.role, &msg.target, &baseline.ca_tags)
            .await?;
    }
    if !baseline.held.is_empty() && msg.target.kind == TargetKind::Asg {
        hub.spokes
            .resume_processes(&msg.role, &msg.target, baseline.held)
            .await?;
    }
    let mut cluster_steps = Vec::new();
    if baseline.cluster_hold {
        if let Some((at, key)) = cluster_of(&msg.role, &msg.target) {
            let restored = release_cluster(hub, &baseline.target_key, lease, &at, &key)
                .await
                .map_err(|(what, e)| PortError {
                    message: format!("{what}: {}", e.message),
                    ..e
                })?;
            cluster_steps = restored.steps(&at.cluster);
        }
    }
    let retired = hub
        .store
        .retire_baseline(&baseline.target_key, &baseline.op_id, lease)
        .await?;
    Ok(Dropped {
        retired,
        cluster_steps,
    })
}

/// Joins the node group's cluster to its hold for `modes` and pauses the cluster.
async fn pause_cluster(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    modes: HoldModes,
) -> Result<Paused, StepError> {
    let Some((at, key)) = cluster_of(&msg.role, &msg.target) else {
        return Ok(Paused::Held);
    };
    hold_cluster(hub, msg, lease, &at, &key, modes).await
}

/// The steps a stop's cluster hold took, as its record says.
async fn cluster_steps(hub: &Hub, msg: &TaskMessage) -> PortResult<Vec<String>> {
    let Some(key) = cluster_key(&msg.target) else {
        return Ok(Vec::new());
    };
    let hold = hub.store.get_cluster_hold(&key).await?;
    Ok(hold
        .and_then(|h| h.saved)
        .map(|s| s.steps(true))
        .unwrap_or_default())
}

/// What a stop holds while the target sleeps, besides its sizes.
#[derive(Clone, Debug, Default, PartialEq)]
struct Hold {
    /// ASG processes to suspend.
    processes: Processes,
    /// Cluster Autoscaler tags to remove from a node group's ASGs.
    ca_tags: Vec<CaTag>,
    /// The cluster-wide modes to pause the node group's cluster with.
    cluster: HoldModes,
    /// The node group joins its cluster's hold (some cluster-wide mode applies, or the
    /// baseline carried says it joined).
    cluster_hold: bool,
}

/// What a stop holds: for an ASG, the held processes running now; for a node group whose
/// cluster opts into `ca-tags`, Cluster Autoscaler's tags on its ASGs. A stop that saves its
/// baseline reads them now (a refreshed baseline keeps what its earlier delivery held); a stop
/// of a target woken by hand holds again what the saved baseline names.
async fn holds_for_stop(
    hub: &Hub,
    msg: &TaskMessage,
    live: LiveState,
    baseline: Option<&Baseline>,
    saving: Option<Sizes>,
    own_unused: bool,
) -> PortResult<Hold> {
    let carried = baseline.filter(|_| own_unused || saving.is_none());
    let modes = HoldModes::of_target(&msg.target, msg.hold)
        .map_err(|e| PortError::new(ErrorKind::Invalid, e.to_string()))?;
    let cluster = cluster_wide(modes);
    let cluster_hold = !cluster.is_empty() || carried.is_some_and(|b| b.cluster_hold);
    if saving.is_none() {
        return Ok(carried.map_or_else(Hold::default, |b| Hold {
            processes: b.held,
            ca_tags: b.ca_tags.clone(),
            cluster,
            cluster_hold,
        }));
    }
    let mut hold = Hold {
        cluster,
        cluster_hold,
        ..Hold::default()
    };
    if msg.target.kind == TargetKind::Asg {
        hold.processes = Processes::HELD.minus(live.suspended);
    }
    if modes.ca_tags {
        hold.ca_tags = hub.spokes.ca_tags(&msg.role, &msg.target).await?;
    }
    if let Some(b) = carried {
        hold.processes = hold.processes.union(b.held);
        for tag in &b.ca_tags {
            if !hold.ca_tags.contains(tag) {
                hold.ca_tags.push(tag.clone());
            }
        }
    }
    Ok(hold)
}

/// Suspends the processes and removes the tags a stop holds; on failure, says which step.
async fn apply_hold(
    hub: &Hub,
    msg: &TaskMessage,
    hold: &Hold,
) -> Result<(), (&'static str, PortError)> {
    if !hold.ca_tags.is_empty() {
        hub.spokes
            .remove_ca_tags(&msg.role, &msg.target, &hold.ca_tags)
            .await
            .map_err(|e| ("removing Cluster Autoscaler tags", e))?;
    }
    if !hold.processes.is_empty() {
        hub.spokes
            .suspend_processes(&msg.role, &msg.target, hold.processes)
            .await
            .map_err(|e| ("suspending processes", e))?;
    }
    Ok(())
}

/// An asleep target whose holds someone undid (processes resumed, CA tags put back) is held
/// again; returns what was done, for the task's reason.
async fn rehold(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    live: LiveState,
    baseline: Option<&Baseline>,
) -> Result<Option<String>, (&'static str, PortError)> {
    let Some(b) = baseline else {
        return Ok(None);
    };
    let mut done = Vec::new();
    if b.cluster_hold {
        if let Some((at, key)) = cluster_of(&msg.role, &msg.target) {
            let modes = HoldModes::of_target(&msg.target, msg.hold).map_err(|e| {
                (
                    "reading what to hold",
                    PortError::new(ErrorKind::Invalid, e.to_string()),
                )
            })?;
            if let Some(again) =
                rehold_cluster(hub, msg, lease, &at, &key, cluster_wide(modes)).await?
            {
                done.push(again);
            }
        }
    }
    let resumed = b.held.minus(live.suspended);
    if !resumed.is_empty() {
        hub.spokes
            .suspend_processes(&msg.role, &msg.target, resumed)
            .await
            .map_err(|e| ("suspending processes", e))?;
        done.push(format!("suspended {resumed}"));
    }
    if !b.ca_tags.is_empty() {
        let now = hub
            .spokes
            .ca_tags(&msg.role, &msg.target)
            .await
            .map_err(|e| ("reading Cluster Autoscaler tags", e))?;
        let back: Vec<CaTag> = now
            .into_iter()
            .filter(|t| b.ca_tags.iter().any(|h| h.asg == t.asg && h.key == t.key))
            .collect();
        if !back.is_empty() {
            hub.spokes
                .remove_ca_tags(&msg.role, &msg.target, &back)
                .await
                .map_err(|e| ("removing Cluster Autoscaler tags", e))?;
            done.push(format!("removed {} Cluster Autoscaler tag(s)", back.len()));
        }
    }
    Ok((!done.is_empty()).then(|| done.join(", ")))
}

fn skipped(reason: String) -> TaskOutcome {
    TaskOutcome {
        status: TaskStatus::Skipped,
        reason: Some(reason),
        before: None,
        after: None,
        steps: Default::default(),
    }
}

/// Skipped after reading the target: the record keeps the sizes it was left at.
fn skipped_at(reason: String, live: Sizes) -> TaskOutcome {
    TaskOutcome {
        before: Some(live),
        ..skipped(reason)
    }
}

/// Appends a `drift_found` record to the target's chain: the sizes found, what was found, and
/// what the spoke can tell of the last change (when, and by what). Keyed by operation apart
/// from the task's own change, so a redelivery records it once. Reading the spoke's account of
/// the change is best effort: without it the record still says what was found.
async fn record_drift(
    hub: &Hub,
    msg: &TaskMessage,
    found: Sizes,
    mut detail: Vec<String>,
) -> PortResult<()> {
    match hub.spokes.last_change(&msg.role, &msg.target).await {
        Ok(Some(change)) => detail.push(format!("last change in the spoke: {change}")),
        Ok(None) => {}
        Err(e) => warn!(target = %msg.target.key(), error = %e,
                        "could not read the spoke's last change for a drift record"),
    }
    let key = msg.target.key();
    let mut entry = AuditEntry::new(
        ChangeKind::DriftFound,
        key.clone(),
        &hub.settings.audit.actor,
        hub.clock.now(),
    );
    entry.operation = Some(msg.op_id.clone());
    entry.task = Some(trail::task_name(&msg.op_id, &key));
    entry.before = Some(sizes_json(found));
    entry.detail = detail;
    let chain = trail::target_chain(&key);
    let change = format!("{}#drift", msg.op_id);
    trail::record(
        hub.store.as_ref(),
        &hub.settings.audit,
        &chain,
        &change,
        &entry,
    )
    .await
}

/// Finishes the task with `outcome`: at once, or, inside a worker batch, held for the batch's
/// one write of its task ends ([`super::endings`]), which then says whether it finished.
async fn finish(hub: &Hub, msg: &TaskMessage, outcome: &TaskOutcome) -> PortResult<TaskStep> {
    let now = hub.clock.now();
    let key = msg.target.key();
    let entry = audit_entry(msg, outcome, &hub.settings.audit.actor, now);
    if super::endings::hold(msg, outcome, entry.clone()) {
        return Ok(TaskStep::Finished(outcome.status));
    }
    let finished = match entry {
        Some(entry) => finish_recorded(hub, msg, outcome, &entry, now).await?,
        None => {
            hub.store
                .finish_task(&msg.op_id, &msg.target, outcome, now)
                .await?
        }
    };
    if finished {
        info!(op_id = %msg.op_id, target = %key, status = %outcome.status,
              reason = outcome.reason.as_deref().unwrap_or(""), "task finished");
        count_finished(msg, outcome.status);
    }
    Ok(TaskStep::Finished(outcome.status))
}

/// Finishes the task and records its change in the target's chain in one write, so the change
/// is in the chain exactly when the task is final: a redelivery finds the task final and
/// records nothing. Another append moving the head first (a drift check's) is retried on the
/// new head. True for the call that finished the task.
async fn finish_recorded(
    hub: &Hub,
    msg: &TaskMessage,
    outcome: &TaskOutcome,
    entry: &AuditEntry,
    now: chrono::DateTime<chrono::Utc>,
) -> PortResult<bool> {
    let key = msg.target.key();
    for _ in 0..trail::APPEND_ATTEMPTS {
        let Some((link, expected)) = super::endings::link_for(hub, msg, Some(entry)).await? else {
            return hub
                .store
                .finish_task(&msg.op_id, &msg.target, outcome, now)
                .await;
        };
        match hub
            .store
            .finish_task_recorded(&msg.op_id, &msg.target, outcome, now, &link, expected)
            .await?
        {
            RecordedFinish::Finished => return Ok(true),
            RecordedFinish::AlreadyFinal => return Ok(false),
            RecordedFinish::HeadMoved => continue,
        }
    }
    Err(super::endings::appends_lost(&trail::target_chain(&key)))
}

/// Counts a task that just became final (once: `finish_task` said this call finished it).
/// Drift checks change nothing and count only their own `Drift` lines.
pub(super) fn count_finished(msg: &TaskMessage, status: TaskStatus) {
    let metric = match (status, msg.action) {
        _ if msg.check => return,
        (TaskStatus::Succeeded, Action::Stop) => Metric::TargetsStopped,
        (TaskStatus::Succeeded, Action::Start) => Metric::TargetsStarted,
        (TaskStatus::Skipped, _) => Metric::TargetsSkipped,
        (TaskStatus::Failed, _) => Metric::TargetsFailed,
        (TaskStatus::DeadLettered, _) => Metric::TargetsDeadLettered,
        _ => return,
    };
    metrics::emit(metric, 1.0, Some(msg.action), Some(msg.target.kind));
}

/// A spoke error either sends the task back to the queue or fails it for good. A stop whose
/// change the spoke refused for good (`unscaled`: the lease, when the target is known to have
/// kept its sizes) removes the baseline it saved, since the target never went to sleep: kept,
/// it would overwrite whatever sizes the owners give the group before the next start. After a
/// failed *read* the baseline stays: an earlier delivery may have scaled the target.
async fn spoke_failure(
    hub: &Hub,
    msg: &TaskMessage,
    unscaled: Option<&LeaseToken>,
    what: &str,
    e: PortError,
) -> PortResult<TaskStep> {
    if e.kind.is_retryable() {
        warn!(op_id = %msg.op_id, target = %msg.target.key(), error = %e, "{what} failed; will retry");
        return Ok(TaskStep::RetryLater(format!("{what}: {e}")));
    }
    if e.kind == ErrorKind::AccessDenied {
        let role = super::notify::RoleAt {
            account: &msg.role.account,
            role_arn: &msg.role.role_arn,
            region: &msg.target.region,
        };
        super::notify::spoke_role_denied(hub, &msg.op_id, role, &e).await;
    }
    let mut reason = format!("{what}: {e}");
    if let (Action::Stop, Some(lease)) = (msg.action, unscaled) {
        let own = hub
            .store
            .get_baseline(&msg.target.key())
            .await?
            .filter(|b| b.op_id == msg.op_id);
        if let Some(b) = own {
            if drop_baseline(hub, msg, lease, &b).await?.retired {
                reason.push_str("; the baseline this stop saved was removed");
            }
        }
    }
    let outcome = TaskOutcome {
        status: TaskStatus::Failed,
        reason: Some(reason),
        before: None,
        after: None,
        steps: Default::default(),
    };
    finish(hub, msg, &outcome).await
}

/// The audit trail's record of what a finished task changed on its target, if it changed
/// anything: a real (not dry-run, not drift-check) delivery that succeeded with new sizes or
/// holds, or one superseded after an earlier delivery began scaling the target (its reason,
/// in the detail, says the change began and its end was not seen).
fn audit_entry(
    msg: &TaskMessage,
    outcome: &TaskOutcome,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<AuditEntry> {
    let changed = match outcome.status {
        TaskStatus::Succeeded => true,
        TaskStatus::Skipped => outcome.after.is_some(),
        _ => false,
    };
    if msg.dry_run || msg.check || !changed {
        return None;
    }
    let (before, after) = (outcome.before?, outcome.after?);
    if before == after && outcome.steps.is_empty() {
        return None;
    }
    let (kind, baseline) = match msg.action {
        Action::Stop => (ChangeKind::TargetStopped, "baseline saved"),
        Action::Start => (ChangeKind::TargetStarted, "baseline retired"),
    };
    let key = msg.target.key();
    let mut entry = AuditEntry::new(kind, key.clone(), actor, now);
    entry.operation = Some(msg.op_id.clone());
    entry.task = Some(trail::task_name(&msg.op_id, &key));
    entry.before = Some(sizes_json(before));
    entry.after = Some(sizes_json(after));
    entry.detail = std::iter::once(baseline.to_string())
        .chain(outcome.steps.iter().cloned())
        .chain(outcome.reason.iter().cloned())
        .collect();
    Some(entry)
}

fn sizes_json(sizes: Sizes) -> serde_json::Value {
    serde_json::json!({ "min": sizes.min, "max": sizes.max, "desired": sizes.desired })
}

fn succeeded(before: Sizes, after: Sizes) -> TaskOutcome {
    TaskOutcome {
        status: TaskStatus::Succeeded,
        reason: None,
        before: Some(before),
        after: Some(after),
        steps: Default::default(),
    }
}

fn dry_run_note(decision: &Decision, live: LiveState) -> String {
    match decision {
        Decision::Scale { to, .. } => format!("dry run: would scale {} -> {to}", live.sizes),
        Decision::RetireBaseline => "dry run: already at its baseline sizes".into(),
        Decision::Skip(r) => format!("dry run: would skip: {r}"),
        Decision::RetryLater(r) => format!("dry run: would wait: {r}"),
    }
}
