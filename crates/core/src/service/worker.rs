//! The worker: one task message -> lease -> live state -> baseline -> scale -> record.
//!
//! Every step is safe to repeat: the task record says how far a previous attempt got, the
//! baseline write is conditional, and finishing a task counts it on the operation once.

use tracing::{info, warn};

use super::Hub;
use crate::decision::{decide, Action, Decision, DecisionInput};
use crate::operation::{Task, TaskMessage, TaskOutcome, TaskStatus};
use crate::ports::{Baseline, ErrorKind, Lease, Override, PortError, PortResult};
use crate::target::{LiveState, Sizes};

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
        hub.store
            .finalize_operation(&msg.op_id, hub.clock.now())
            .await?;
    }
    Ok(step)
}

/// Works one task message, with the active overrides already read for its batch (one Query
/// per batch instead of one per stopped target; `None` reads them here), and does not settle
/// the operation: the caller must call `finalize_operation` after a `Finished` step — once per
/// operation per batch is enough, since whoever finishes an operation's last task then sees
/// it complete. A crash before that leaves the message undeleted, and its redelivery (the task
/// already final) settles the operation.
pub async fn work(
    hub: &Hub,
    msg: &TaskMessage,
    overrides: Option<&[Override]>,
) -> PortResult<TaskStep> {
    let key = msg.target.key();
    let Some(task) = hub.store.get_task(&msg.op_id, &key).await? else {
        return Err(PortError::new(
            ErrorKind::Invalid,
            format!("no task for target {key} in operation {}", msg.op_id),
        ));
    };
    if task.status.is_final() {
        return Ok(TaskStep::Finished(task.status));
    }
    let now = hub.clock.now();
    let lease = hub
        .store
        .acquire_lease(
            &key,
            &msg.op_id,
            msg.op_created_at,
            now,
            hub.settings.lease_ttl,
        )
        .await?;
    let step = match lease {
        Lease::Held { by } => {
            return Ok(TaskStep::RetryLater(format!(
                "operation {by} is working on this target"
            )))
        }
        Lease::Superseded { by } => {
            let outcome = skipped(format!("superseded by newer operation {by}"));
            finish(hub, msg, &outcome).await?
        }
        Lease::Acquired => {
            let result = apply(hub, msg, &task, overrides).await;
            // Release even on error: a crash instead leaves the lease to expire.
            hub.store.release_lease(&key, &msg.op_id).await?;
            result?
        }
    };
    Ok(step)
}

fn skipped(reason: String) -> TaskOutcome {
    TaskOutcome {
        status: TaskStatus::Skipped,
        reason: Some(reason),
        before: None,
        after: None,
    }
}

/// Skipped after reading the target: the record keeps the sizes it was left at.
fn skipped_at(reason: String, live: Sizes) -> TaskOutcome {
    TaskOutcome {
        before: Some(live),
        ..skipped(reason)
    }
}

async fn finish(hub: &Hub, msg: &TaskMessage, outcome: &TaskOutcome) -> PortResult<TaskStep> {
    let now = hub.clock.now();
    if hub
        .store
        .finish_task(&msg.op_id, &msg.target.key(), outcome, now)
        .await?
    {
        info!(op_id = %msg.op_id, target = %msg.target.key(), status = %outcome.status,
              reason = outcome.reason.as_deref().unwrap_or(""), "task finished");
    }
    Ok(TaskStep::Finished(outcome.status))
}

/// A spoke error either fails the task for good or sends it back to the queue.
async fn spoke_failure(
    hub: &Hub,
    msg: &TaskMessage,
    what: &str,
    e: PortError,
) -> PortResult<TaskStep> {
    if e.kind.is_retryable() {
        warn!(op_id = %msg.op_id, target = %msg.target.key(), error = %e, "{what} failed; will retry");
        return Ok(TaskStep::RetryLater(format!("{what}: {e}")));
    }
    let outcome = TaskOutcome {
        status: TaskStatus::Failed,
        reason: Some(format!("{what}: {e}")),
        before: None,
        after: None,
    };
    finish(hub, msg, &outcome).await
}

async fn apply(
    hub: &Hub,
    msg: &TaskMessage,
    task: &Task,
    overrides: Option<&[Override]>,
) -> PortResult<TaskStep> {
    let key = msg.target.key();
    let live = match hub.spokes.live_state(&msg.role, &msg.target).await {
        Ok(live) => live,
        Err(e) => return spoke_failure(hub, msg, "reading the target", e).await,
    };
    // A previous delivery already set the sizes and crashed before recording it.
    if task.status == TaskStatus::Applying && task.after == Some(live.sizes) {
        if msg.action == Action::Start {
            hub.store.retire_baseline(&key).await?;
        }
        return finish(
            hub,
            msg,
            &succeeded(task.before.unwrap_or(live.sizes), live.sizes),
        )
        .await;
    }
    let now = hub.clock.now();
    let awake_until = if msg.action == Action::Stop {
        let read;
        let overrides = match overrides {
            Some(batch) => batch,
            None => {
                read = hub.store.active_overrides(now).await?;
                &read
            }
        };
        Override::awake_until(overrides, &msg.target, now)
    } else {
        None
    };
    // At most twice: if another delivery saved a baseline between our read and our write,
    // decide again with the baseline it saved.
    for _ in 0..2 {
        let baseline = hub.store.get_baseline(&key).await?.map(|b| b.sizes);
        let decision = decide(&DecisionInput {
            action: msg.action,
            kind: msg.target.kind,
            live,
            baseline,
            default_start: msg.default_start,
            awake_until,
            now,
        });
        if msg.dry_run {
            return finish(
                hub,
                msg,
                &skipped_at(dry_run_note(&decision, live), live.sizes),
            )
            .await;
        }
        match decision {
            Decision::Skip(reason) => {
                return finish(hub, msg, &skipped_at(reason.to_string(), live.sizes)).await
            }
            Decision::RetryLater(why) => return Ok(TaskStep::RetryLater(why)),
            Decision::RetireBaseline => {
                hub.store.retire_baseline(&key).await?;
                let mut outcome = succeeded(live.sizes, live.sizes);
                outcome.reason = Some("already at its baseline sizes".into());
                return finish(hub, msg, &outcome).await;
            }
            Decision::Scale {
                save_baseline,
                to,
                retire_baseline,
            } => {
                if let Some(sizes) = save_baseline {
                    let saved = hub
                        .store
                        .save_baseline(&Baseline {
                            target_key: key.clone(),
                            sizes,
                            op_id: msg.op_id.clone(),
                            saved_at: now,
                        })
                        .await?;
                    if !saved {
                        continue;
                    }
                }
                return scale(hub, msg, live, to, retire_baseline).await;
            }
        }
    }
    Err(PortError::new(
        ErrorKind::Other,
        format!("baseline of {key} kept changing; will retry"),
    ))
}

async fn scale(
    hub: &Hub,
    msg: &TaskMessage,
    live: LiveState,
    to: Sizes,
    retire_baseline: bool,
) -> PortResult<TaskStep> {
    let key = msg.target.key();
    if !to.is_valid() {
        let outcome = TaskOutcome {
            status: TaskStatus::Failed,
            reason: Some(format!(
                "refusing invalid sizes {to} (need min <= desired <= max)"
            )),
            before: Some(live.sizes),
            after: None,
        };
        return finish(hub, msg, &outcome).await;
    }
    hub.store
        .mark_applying(&msg.op_id, &key, live.sizes, to, hub.clock.now())
        .await?;
    if let Err(e) = hub.spokes.set_sizes(&msg.role, &msg.target, to).await {
        return spoke_failure(hub, msg, "updating the target", e).await;
    }
    if retire_baseline {
        hub.store.retire_baseline(&key).await?;
    }
    finish(hub, msg, &succeeded(live.sizes, to)).await
}

fn succeeded(before: Sizes, after: Sizes) -> TaskOutcome {
    TaskOutcome {
        status: TaskStatus::Succeeded,
        reason: None,
        before: Some(before),
        after: Some(after),
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
