//! Sending notices from the handlers: best effort and once each. A notice is recorded as sent
//! ([`SentNotices::first_send`](crate::notice::SentNotices::first_send)) before it is
//! published, so redeliveries and retries never send it again; a publish that fails is logged
//! at warn and dropped (at most once), and never fails or retries the task that met it.

use chrono::Duration;
use tracing::{info, warn};

use super::Hub;
use crate::metrics::{self, Metric};
use crate::notice::{DeadLettered, Notice, OperationEnded, SpokeRoleDenied, StuckUpdating};
use crate::operation::{OpStatus, TaskMessage};
use crate::ports::{PortError, PortResult};

/// Settles the operation (`finalize_operation`) and, when it is final, sends its
/// `operation_ended` notice unless it was sent already.
pub(crate) async fn settle(hub: &Hub, op_id: &str) -> PortResult<Option<OpStatus>> {
    let settled = hub.store.finalize_operation(op_id, hub.clock.now()).await?;
    let Some(settled) = settled else {
        return Ok(None);
    };
    // The duration metric once per operation: only the call that made it final emits it.
    if settled.by_this_call {
        let seconds = (hub.clock.now() - settled.created_at)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0;
        metrics::emit(
            Metric::OperationDuration,
            seconds,
            Some(settled.action),
            None,
        );
    }
    operation_ended(hub, op_id, settled.status).await;
    Ok(Some(settled.status))
}

async fn operation_ended(hub: &Hub, op_id: &str, status: OpStatus) {
    if !hub.notices.is_enabled() {
        return;
    }
    let now = hub.clock.now();
    let op = match hub.store.get_operation(op_id).await {
        Ok(Some(op)) => op,
        Ok(None) => return,
        Err(e) => {
            warn!(op_id, error = %e, "reading the operation for its notice failed; not sent");
            return;
        }
    };
    let status = if op.status.is_final() {
        op.status
    } else {
        status
    };
    // The key depends on the counts alone: claim it before listing the tasks, so a
    // redelivery after the end costs one read and one refused write, not a listing.
    let mut notice = OperationEnded::new(&op, status, &[], now);
    if !notice.is_worth_telling() {
        return;
    }
    if !first_send(hub, &Notice::OperationEnded(notice.clone())).await {
        return;
    }
    match hub.store.list_tasks(op_id).await {
        Ok(tasks) => notice = OperationEnded::new(&op, status, &tasks, now),
        Err(e) => {
            // Still worth sending: the counts say what happened, the reasons are in `ops show`.
            warn!(op_id, error = %e, "listing the tasks for the notice failed; sent without them");
            notice.failures_omitted = op.counts.unsuccessful();
        }
    }
    publish(hub, &Notice::OperationEnded(notice)).await;
}

/// The spoke refused the role (AssumeRole denied, or a call the role may not make): tell a
/// person, once per operation, account and region.
pub(crate) async fn spoke_role_denied(hub: &Hub, op_id: &str, role: RoleAt<'_>, e: &PortError) {
    let notice = Notice::SpokeRoleDenied(SpokeRoleDenied {
        operation_id: op_id.to_string(),
        account: role.account.to_string(),
        role_arn: role.role_arn.to_string(),
        region: role.region.to_string(),
        error: e.to_string(),
        at: hub.clock.now(),
    });
    send_once(hub, notice).await;
}

/// Where a role was refused.
pub(crate) struct RoleAt<'a> {
    pub(crate) account: &'a str,
    pub(crate) role_arn: &'a str,
    pub(crate) region: &'a str,
}

/// A task was given up (the store moves a task to DEAD_LETTERED once, so this runs once).
pub(crate) async fn dead_lettered(hub: &Hub, msg: &TaskMessage, reason: &str) {
    let notice = Notice::DeadLettered(DeadLettered {
        operation_id: msg.op_id.clone(),
        target: msg.target.key(),
        reason: reason.to_string(),
        at: hub.clock.now(),
    });
    send_once(hub, notice).await;
}

/// The node group is still UPDATING while the task has waited since `since`: past
/// `Settings::stuck_updating`, tell a person (once per operation and target).
pub(crate) async fn if_stuck_updating(
    hub: &Hub,
    msg: &TaskMessage,
    since: chrono::DateTime<chrono::Utc>,
) {
    let now = hub.clock.now();
    let waited = now - since;
    if waited < hub.settings.stuck_updating || hub.settings.stuck_updating <= Duration::zero() {
        return;
    }
    let notice = Notice::StuckUpdating(StuckUpdating {
        operation_id: msg.op_id.clone(),
        target: msg.target.key(),
        since,
        at: now,
        minutes: waited.num_minutes(),
    });
    send_once(hub, notice).await;
}

async fn send_once(hub: &Hub, notice: Notice) {
    if hub.notices.is_enabled() && first_send(hub, &notice).await {
        publish(hub, &notice).await;
    }
}

/// True if this caller is the first to send `notice`. A failed record sends nothing: better
/// one notice lost (logged) than one per redelivery.
async fn first_send(hub: &Hub, notice: &Notice) -> bool {
    let key = notice.once_key();
    match hub.notices.sent.first_send(&key, hub.clock.now()).await {
        Ok(first) => first,
        Err(e) => {
            warn!(notice = notice.kind(), key, error = %e, "recording a notice failed; not sent");
            false
        }
    }
}

async fn publish(hub: &Hub, notice: &Notice) {
    match hub.notices.notifier.publish(notice).await {
        Ok(()) => info!(
            notice = notice.kind(),
            key = notice.once_key(),
            "notice published"
        ),
        Err(e) => {
            warn!(notice = notice.kind(), key = notice.once_key(), error = %e,
                  "publishing a notice failed; it is not retried")
        }
    }
}
