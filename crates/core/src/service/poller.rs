//! The poller: every minute, fire the schedules that are due, each fire exactly once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{error, info, warn};

use super::{to_body, Hub};
use crate::operation::{Discovery, OpCounts, OpSource, OpStatus, Operation, RouterMessage};
use crate::ports::{PortError, PortResult};
use crate::schedule::{BrokenSchedule, Schedule};

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Operations this tick created.
    pub created: Vec<String>,
    /// Fires whose operation already existed (a duplicated or retried tick).
    pub already_fired: Vec<String>,
    /// Missed fires older than the catch-up window, not fired.
    pub missed: Vec<String>,
    /// Due schedules whose stored item no longer reads as a schedule: not fired, reported on
    /// every tick until deleted.
    pub broken: Vec<BrokenSchedule>,
}

/// Fires every due schedule once per fire time, catching up on missed fires inside the
/// catch-up window, and stores each schedule's next fire time.
///
/// One schedule never keeps the others from firing: a broken one is reported (in the report
/// and as a `BrokenSchedule` metric in the log), and a schedule whose fire fails is left due
/// (the next tick tries it again) while the others go on; the tick then fails naming it.
pub async fn tick(hub: &Hub) -> PortResult<TickReport> {
    let now = hub.clock.now();
    let due = hub.store.due_schedules(now).await?;
    let mut report = TickReport {
        broken: due.broken,
        ..TickReport::default()
    };
    for broken in &report.broken {
        error!(
            metric = "BrokenSchedule",
            schedule = %broken.name,
            problem = %broken.problem,
            "a stored schedule is broken and does not fire: delete it and add it again"
        );
    }
    let mut failed = Vec::new();
    for schedule in &due.schedules {
        if let Err(e) = tick_schedule(hub, schedule, now, &mut report).await {
            error!(
                metric = "ScheduleFireFailed",
                schedule = %schedule.name,
                error = %e,
                "a due schedule could not fire; the next tick tries again"
            );
            failed.push((schedule.name.as_str(), e));
        }
    }
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(tick_failed(failed, due.schedules.len()))
    }
}

/// One error for every schedule that could not fire: the first one's kind and source, and
/// every schedule named.
fn tick_failed(failed: Vec<(&str, PortError)>, due: usize) -> PortError {
    let message = format!(
        "{} of {due} due schedules could not fire (the next tick tries again): {}",
        failed.len(),
        failed
            .iter()
            .map(|(name, e)| format!("{name}: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let (_, first) = failed.into_iter().next().expect("at least one failure");
    PortError::with_source(first.kind, message, first)
}

/// Fires one due schedule's fire times and advances it. On an error it stops and leaves the
/// schedule where it was, so the next tick fires (or, for a created operation, sends) again.
async fn tick_schedule(
    hub: &Hub,
    schedule: &Schedule,
    now: DateTime<Utc>,
    report: &mut TickReport,
) -> PortResult<()> {
    let Some(expected) = schedule.next_fire else {
        return Ok(());
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
        fire(hub, schedule, fire_time, report).await?;
    }
    let next = schedule.next_fire_after(now).map(|f| f.utc);
    // Conditional on the value we read: a concurrent poller that got here first wins and
    // this one changes nothing (its fires were no-ops too, by operation id).
    hub.store
        .advance_schedule(&schedule.name, expected, next)
        .await?;
    Ok(())
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
