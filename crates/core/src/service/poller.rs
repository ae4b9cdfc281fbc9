//! The poller: every minute, fire the schedules that are due, each fire exactly once.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tracing::{error, info, warn};

use super::{to_body, Hub};
use crate::decision::Action;
use crate::health::PollerTick;
use crate::metrics::{self, Metric};
use crate::operation::{Discovery, OpCounts, OpSource, OpStatus, Operation, RouterMessage};
use crate::ports::{PortError, PortResult};
use crate::schedule::{BrokenSchedule, Schedule};
use crate::selector::Selector;

/// Missed fires counted per schedule at most: past it a report says "at least" this many.
/// Counting walks fire by fire (about a microsecond each), and an outage may have lasted
/// months, so the walk is bounded: 100,000 is ten weeks of an every-minute schedule.
pub const MISSED_COUNT_LIMIT: u64 = 100_000;

/// One schedule's fires older than the catch-up window: not fired, counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MissedFires {
    /// The schedule.
    pub schedule: String,
    /// How many fires were missed; a lower bound when `at_least` is set.
    pub count: u64,
    /// Counting stopped at [`MISSED_COUNT_LIMIT`]: at least `count` fires were missed.
    pub at_least: bool,
    /// The oldest missed fire (the schedule's stored next fire).
    pub first: DateTime<Utc>,
    /// The newest missed fire; `None` when counting stopped before reaching it.
    pub last: Option<DateTime<Utc>>,
}

impl std::fmt::Display for MissedFires {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at_least = if self.at_least { "at least " } else { "" };
        let plural = if self.count == 1 { "" } else { "s" };
        write!(
            f,
            "{}: {at_least}{} fire{plural} from {}",
            self.schedule,
            self.count,
            self.first.to_rfc3339()
        )?;
        match self.last {
            Some(last) => write!(f, " to {}", last.to_rfc3339()),
            None => write!(f, " on"),
        }
    }
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Operations this tick created.
    pub created: Vec<String>,
    /// Fires whose operation already existed (a duplicated or retried tick).
    pub already_fired: Vec<String>,
    /// Per schedule, the fires older than the catch-up window: counted, not fired.
    pub missed: Vec<MissedFires>,
    /// Due schedules whose stored item no longer reads as a schedule: not fired, reported on
    /// every tick until deleted.
    pub broken: Vec<BrokenSchedule>,
    /// The drift check this tick started, if the drift interval turned over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_check: Option<String>,
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
    let drift = start_drift_check(hub, now, &mut report).await;
    if let Err(e) = &drift {
        error!(metric = "DriftCheckFailed", error = %e,
               "the drift check could not start; the next tick tries again");
    }
    record_heartbeat(hub, now, &due.schedules).await;
    if !failed.is_empty() {
        return Err(tick_failed(failed, due.schedules.len()));
    }
    drift.map(|()| report)
}

/// Records that this tick ran (`curfew health` reads it), with its lag behind the oldest due
/// fire, even when some fire failed: the poller is alive, and the failure is the tick's error.
/// A failed write is logged, not returned: failing the tick for it would only re-run fires
/// that already happened, and a missing heartbeat shows in `curfew health` on its own.
async fn record_heartbeat(hub: &Hub, now: DateTime<Utc>, due: &[Schedule]) {
    let oldest_due = due.iter().filter_map(|s| s.next_fire).min();
    let heartbeat = PollerTick::new(now, due.len(), oldest_due);
    if let Err(e) = hub.store.record_poller_tick(&heartbeat).await {
        warn!(error = %e, "recording the poller's heartbeat failed");
    }
}

/// Starts the drift check of the interval `now` is in (`Settings::drift_interval`), once per
/// interval: its id is derived from the interval's start, so every tick inside the interval
/// finds it created and only re-sends it if a crashed tick left it unsent (PENDING).
async fn start_drift_check(
    hub: &Hub,
    now: DateTime<Utc>,
    report: &mut TickReport,
) -> PortResult<()> {
    let step = hub.settings.drift_interval.num_seconds();
    if step <= 0 {
        return Ok(());
    }
    let slot = DateTime::from_timestamp(now.timestamp().div_euclid(step) * step, 0)
        .expect("an interval start before now is a valid time");
    let op = Operation {
        id: Operation::check_id(slot),
        action: Action::Stop,
        selector: Selector::parse("name=*").expect("a valid selector"),
        source: OpSource::Check,
        created_at: slot,
        dry_run: false,
        default_start: None,
        discovery: Discovery::Cached,
        hold: None,
        status: OpStatus::Pending,
        counts: OpCounts::default(),
        shards_total: None,
        shards_done: 0,
        notes: Vec::new(),
        check: true,
    };
    if create_and_send(hub, &op).await? {
        info!(op_id = %op.id, "drift check started");
        report.drift_check = Some(op.id);
    }
    Ok(())
}

/// Creates `op` (its id makes the write idempotent) and hands it to the router; true if this
/// call created it. A poller that crashed after creating an operation but before sending it
/// left it PENDING: it is sent again. The router ignores operations it has already fanned out.
async fn create_and_send(hub: &Hub, op: &Operation) -> PortResult<bool> {
    let created = hub.store.create_operation(op).await?;
    if !created {
        let existing = hub.store.get_operation(&op.id).await?;
        if existing.is_none_or(|o| o.status != OpStatus::Pending) {
            return Ok(false);
        }
    }
    hub.router_queue
        .send(&[to_body(&RouterMessage::Operation {
            op_id: op.id.clone(),
        })])
        .await?;
    Ok(created)
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
    // Fires from the window's edge on are fired; older ones are only counted. Enumeration
    // starts at the edge, not at the stored next fire, so however long the poller was down it
    // never walks through the outage to reach the window (and the window bounds the walk).
    let edge = now - hub.settings.catchup;
    let fires: Vec<DateTime<Utc>> = if expected >= edge {
        std::iter::once(expected)
            .chain(schedule.fires_after(expected).take_while(|t| *t <= now))
            .collect()
    } else {
        let missed = count_missed(schedule, expected, edge);
        warn!(
            metric = "MissedFires",
            schedule = %schedule.name,
            count = missed.count,
            at_least = missed.at_least,
            first = %missed.first,
            last = ?missed.last,
            "fires older than the catch-up window were missed; not fired"
        );
        report.missed.push(missed);
        // A fire exactly at the edge is inside the window.
        schedule
            .fires_after(edge - Duration::milliseconds(1))
            .skip_while(|t| *t < edge)
            .take_while(|t| *t <= now)
            .collect()
    };
    for fire_time in fires {
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

/// Counts the fires in [`first`, `edge`): `first` (the stored next fire, a fire even if the
/// cron would not give it) and those after it, up to [`MISSED_COUNT_LIMIT`].
fn count_missed(schedule: &Schedule, first: DateTime<Utc>, edge: DateTime<Utc>) -> MissedFires {
    let mut missed = MissedFires {
        schedule: schedule.name.clone(),
        count: 1,
        at_least: false,
        first,
        last: Some(first),
    };
    for fire_time in schedule.fires_after(first).take_while(|t| *t < edge) {
        if missed.count == MISSED_COUNT_LIMIT {
            missed.at_least = true;
            missed.last = None;
            break;
        }
        missed.count += 1;
        missed.last = Some(fire_time);
    }
    missed
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
        hold: schedule.hold,
        discovery: Discovery::Cached,
        status: OpStatus::Pending,
        counts: OpCounts::default(),
        shards_total: None,
        shards_done: 0,
        notes: Vec::new(),
        check: false,
    };
    if create_and_send(hub, &op).await? {
        info!(op_id = %op.id, schedule = %schedule.name, %fire_time, "schedule fired");
        let lag = (hub.clock.now() - fire_time).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::emit(Metric::PollerLag, lag, Some(schedule.action), None);
        report.created.push(op.id);
    } else {
        report.already_fired.push(op.id);
    }
    Ok(())
}
