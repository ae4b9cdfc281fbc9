//! The poller: every minute, fire the schedules that are due, each fire exactly once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use super::{to_body, Hub};
use crate::operation::{Discovery, OpCounts, OpSource, OpStatus, Operation, RouterMessage};
use crate::ports::PortResult;
use crate::schedule::Schedule;

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Operations this tick created.
    pub created: Vec<String>,
    /// Fires whose operation already existed (a duplicated or retried tick).
    pub already_fired: Vec<String>,
    /// Missed fires older than the catch-up window, not fired.
    pub missed: Vec<String>,
}

/// Fires every due schedule once per fire time, catching up on missed fires inside the
/// catch-up window, and stores each schedule's next fire time.
pub async fn tick(hub: &Hub) -> PortResult<TickReport> {
    let now = hub.clock.now();
    let mut report = TickReport::default();
    for schedule in hub.store.due_schedules(now).await? {
        let Some(expected) = schedule.next_fire else {
            continue;
        };
        let earliest = now - hub.settings.catchup;
        let mut fires = vec![expected];
        fires.extend(schedule.fires_between(expected, now, 10_000));
        for fire_time in fires {
            if fire_time < earliest {
                warn!(schedule = %schedule.name, %fire_time, "missed fire outside the catch-up window; not fired");
                report
                    .missed
                    .push(format!("{}@{}", schedule.name, fire_time.to_rfc3339()));
                continue;
            }
            fire(hub, &schedule, fire_time, &mut report).await?;
        }
        let next = schedule.next_fire_after(now).map(|f| f.utc);
        // Conditional on the value we read: a concurrent poller that got here first wins and
        // this one changes nothing (its fires were no-ops too, by operation id).
        hub.store
            .advance_schedule(&schedule.name, expected, next)
            .await?;
    }
    Ok(report)
}

/// Creates the fire's operation (its id is the fire key) and hands it to the router.
async fn fire(
    hub: &Hub,
    schedule: &Schedule,
    fire_time: DateTime<Utc>,
    report: &mut TickReport,
) -> PortResult<()> {
    let op = Operation {
        id: Operation::schedule_id(&schedule.name, fire_time),
        action: schedule.action,
        selector: schedule.selector.clone(),
        source: OpSource::Schedule {
            name: schedule.name.clone(),
            fire_time,
        },
        // The fire time, not the wall clock: a caught-up stop and start keep their order.
        created_at: fire_time,
        dry_run: schedule.dry_run,
        default_start: schedule.default_start,
        discovery: Discovery::Cached,
        status: OpStatus::Pending,
        counts: OpCounts::default(),
        shards_total: None,
        shards_done: 0,
        notes: Vec::new(),
    };
    let created = hub.store.create_operation(&op).await?;
    if created {
        info!(op_id = %op.id, schedule = %schedule.name, %fire_time, "schedule fired");
        report.created.push(op.id.clone());
    } else {
        report.already_fired.push(op.id.clone());
        // A poller that crashed after creating the operation but before sending it left it
        // PENDING: send it again. The router ignores operations it has already fanned out.
        let existing = hub.store.get_operation(&op.id).await?;
        if existing.is_none_or(|o| o.status != OpStatus::Pending) {
            return Ok(());
        }
    }
    hub.router_queue
        .send(&[to_body(&RouterMessage::Operation { op_id: op.id })])
        .await
}
