//! A delivery's task ends, written together.
//!
//! Finishing a task alone is one transaction of its final state and its count on a counter
//! stripe (and, for a change, the change's record and its chain's head): the count's write
//! costs as much as the task's. Inside a worker batch ([`holding_ends`]) the worker instead
//! holds each task's end, and the target's lease with it, until the batch's targets are worked;
//! then [`write_ends`] writes them all ([`crate::ports::OperationStore::finish_tasks`]), each
//! operation counted once a transaction, and releases the leases.
//!
//! Crash safety is the same as one task at a time: each task is final, counted and recorded in
//! one atomic write, conditioned on its not being final yet, and its lease (with the mark of its
//! change in flight) is released only after that. A crash before the write leaves every task
//! open with its mark, and the redelivery finishes what the mark says was begun.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::info;

use super::worker::count_finished;
use super::Hub;
use crate::operation::{TaskMessage, TaskOutcome};
use crate::ports::{ErrorKind, LeaseToken, PortError, PortResult, RecordedFinish, TaskEnd};
use crate::trail::{self, AuditEntry, Link};

tokio::task_local! {
    /// The ends held in the worker batch this runs in ([`holding_ends`]).
    static HELD: Held;
}

/// Task ends held for one write.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<Vec<Ending>>>);

/// A task's end, held.
struct Ending {
    msg: TaskMessage,
    outcome: TaskOutcome,
    /// The record of the change it made, if any.
    entry: Option<AuditEntry>,
    /// The target's lease, released once the end is written.
    lease: Option<LeaseToken>,
    /// The task's span (operation, account, region, target, message, trace), for the lines
    /// and metrics of its end.
    span: tracing::Span,
}

/// What became of a held end: `Ok(true)` if the write finished the task, `Ok(false)` if it
/// was final already.
pub(super) type Written = PortResult<bool>;

/// Runs `work` with the task ends it reaches held ([`hold`]) instead of written, and returns
/// its output with the ends held.
pub(super) async fn holding_ends<F: std::future::Future>(work: F) -> (F::Output, HeldEnds) {
    let held = Held::default();
    let output = HELD.scope(held.clone(), work).await;
    let ends = std::mem::take(&mut *held.0.lock().expect("not poisoned"));
    (output, HeldEnds(ends))
}

/// The ends a batch held, to write with [`write_ends`].
pub(super) struct HeldEnds(Vec<Ending>);

/// Holds the end of `msg`'s task, if the caller runs inside [`holding_ends`]: true if held.
pub(super) fn hold(msg: &TaskMessage, outcome: &TaskOutcome, entry: Option<AuditEntry>) -> bool {
    HELD.try_with(|held| {
        held.0.lock().expect("not poisoned").push(Ending {
            msg: msg.clone(),
            outcome: outcome.clone(),
            entry,
            lease: None,
            span: tracing::Span::current(),
        });
    })
    .is_ok()
}

/// Keeps `lease` for release after the write of `msg`'s held end: false (the caller releases
/// it now) if no end of that task is held.
pub(super) fn keep_lease(msg: &TaskMessage, lease: &LeaseToken) -> bool {
    HELD.try_with(|held| {
        let mut ends = held.0.lock().expect("not poisoned");
        let key = msg.target.key();
        match ends
            .iter_mut()
            .find(|e| e.msg.op_id == msg.op_id && e.msg.target.key() == key && e.lease.is_none())
        {
            Some(end) => {
                end.lease = Some(lease.clone());
                true
            }
            None => false,
        }
    })
    .unwrap_or(false)
}

/// Writes the held ends ([`crate::ports::OperationStore::finish_tasks`]), links each change to
/// its chain's head as read now (again, for a head another append moved), then releases each
/// kept lease: clearing its mark of the change in flight only if the task is final. Returns
/// what became of each task, by operation and target key.
pub(super) async fn write_ends(hub: &Hub, held: HeldEnds) -> HashMap<(String, String), Written> {
    let held = held.0;
    let now = hub.clock.now();
    let mut results: Vec<Option<Written>> = (0..held.len()).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..held.len()).collect();
    for _ in 0..trail::APPEND_ATTEMPTS {
        let links = futures::future::join_all(
            pending
                .iter()
                .map(|&i| link_for(hub, &held[i].msg, held[i].entry.as_ref())),
        )
        .await;
        let mut ends = Vec::new();
        let mut which = Vec::new();
        for (&i, link) in pending.iter().zip(links) {
            match link {
                Ok(record) => {
                    ends.push(TaskEnd {
                        op_id: held[i].msg.op_id.clone(),
                        target_key: held[i].msg.target.key(),
                        outcome: held[i].outcome.clone(),
                        record,
                    });
                    which.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        pending.clear();
        if ends.is_empty() {
            break;
        }
        match hub.store.finish_tasks(&ends, now).await {
            Ok(finished) => {
                for (i, result) in which.into_iter().zip(finished) {
                    match result {
                        RecordedFinish::Finished => results[i] = Some(Ok(true)),
                        RecordedFinish::AlreadyFinal => results[i] = Some(Ok(false)),
                        RecordedFinish::HeadMoved => pending.push(i),
                    }
                }
            }
            Err(e) => {
                for i in which {
                    results[i] = Some(Err(PortError::new(e.kind, e.message.clone())));
                }
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    let releases = held.iter().zip(&results).map(|(end, result)| async move {
        let Some(lease) = &end.lease else {
            return Ok(());
        };
        let finished = matches!(result, Some(Ok(_)));
        hub.store
            .release_lease(&end.msg.target.key(), lease, finished)
            .await
    });
    let released = futures::future::join_all(releases).await;
    let mut written = HashMap::new();
    for ((end, result), release) in held.iter().zip(results).zip(released) {
        let key = end.msg.target.key();
        let result = match (result, release) {
            (None, _) => Err(appends_lost(&key)),
            (Some(Ok(_)), Err(e)) => Err(e),
            (Some(result), _) => result,
        };
        if let Ok(true) = result {
            end.span.in_scope(|| {
                info!(op_id = %end.msg.op_id, target = %key, status = %end.outcome.status,
                      reason = end.outcome.reason.as_deref().unwrap_or(""), "task finished");
                count_finished(&end.msg, end.outcome.status);
            });
        }
        written.insert((end.msg.op_id.clone(), key), result);
    }
    written
}

/// The error of a task whose change lost [`trail::APPEND_ATTEMPTS`] appends in a row to others
/// moving its chain's head (a drift check's record, say): retried through the queue.
pub(super) fn appends_lost(target_key: &str) -> PortError {
    PortError::new(
        ErrorKind::Throttled,
        format!(
            "audit chain {}: {} appends in a row lost to others; try again",
            trail::target_chain(target_key),
            trail::APPEND_ATTEMPTS
        ),
    )
}

/// The record of the change `entry` after its chain's head as it is now, or `None` when
/// there is none to append: no change, or a delivery of an earlier version appended it before
/// finishing the task (its mark says so), and the task only needs finishing.
pub(super) async fn link_for(
    hub: &Hub,
    msg: &TaskMessage,
    entry: Option<&AuditEntry>,
) -> PortResult<Option<(Link, u64)>> {
    let Some(entry) = entry else {
        return Ok(None);
    };
    let chain = trail::target_chain(&msg.target.key());
    let head = hub.store.audit_head(&chain).await?;
    let appended = head.as_ref().is_some_and(|h| h.last_key == msg.op_id)
        || hub.store.change_recorded(&chain, &msg.op_id).await?;
    if appended {
        return Ok(None);
    }
    let link = Link::after(
        head.as_ref(),
        &chain,
        &msg.op_id,
        entry,
        hub.settings.audit.key.as_ref(),
    );
    let expected = head.map_or(0, |h| h.seq);
    Ok(Some((link, expected)))
}
