//! The poller: every minute, fire the schedules that are due, each fire exactly once.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tracing::{error, info, warn};

use super::{to_body, Hub};
use crate::calendar::{Calendar, Calendars};
use crate::cron::FireTime;
use crate::decision::Action;
use crate::health::PollerTick;
use crate::metrics::{self, Metric};
use crate::operation::{OpSource, OpStatus, Operation, RouterMessage};
use crate::ports::{PortError, PortResult};
use crate::schedule::{BrokenSchedule, Fire, Schedule, When};
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

/// A fire a tick did not fire: its date is skipped, in a calendar the schedule skips, or (a
/// stop) in one it stays awake on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedFire {
    /// The schedule.
    pub schedule: String,
    /// When it would have fired.
    pub fire_time: DateTime<Utc>,
    /// What it would have done.
    pub action: Action,
    /// Why not (`calendar de-holidays`, `skip date`, `awake on calendar release-days`).
    pub reason: String,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Operations this tick created.
    pub created: Vec<String>,
    /// Fires whose operation already existed (a duplicated or retried tick).
    pub already_fired: Vec<String>,
    /// Fires not fired because their date is skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedFire>,
    /// Per schedule, the fires older than the catch-up window: counted, not fired.
    pub missed: Vec<MissedFires>,
    /// Due schedules whose stored item no longer reads as a schedule: not fired, reported on
    /// every tick until deleted.
    pub broken: Vec<BrokenSchedule>,
    /// The drift check this tick started, if the drift interval turned over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_check: Option<String>,
    /// The enforce passes this tick started.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enforce_passes: Vec<String>,
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
    let mut calendars = CalendarReads::default();
    for schedule in &due.schedules {
        if let Err(e) = tick_schedule(hub, schedule, now, &mut calendars, &mut report).await {
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
    let enforce = start_enforce_passes(hub, now, &mut calendars, &mut report).await;
    if let Err(e) = &enforce {
        error!(metric = "EnforcePassFailed", error = %e,
               "an enforce pass could not start; the next tick tries again");
    }
    record_heartbeat(hub, now, &due.schedules).await;
    if !failed.is_empty() {
        return Err(tick_failed(failed, due.schedules.len()));
    }
    drift.and(enforce).map(|()| report)
}

/// The start of the `step` long interval `now` is in.
fn slot_of(now: DateTime<Utc>, step: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(now.timestamp().div_euclid(step) * step, 0)
        .expect("an interval start before now is a valid time")
}

/// Whether the stop that began the schedule's current asleep time is still under way: a pass
/// now would race it to its targets and record as drift what the stop has not reached yet.
async fn stop_wave_running(
    hub: &Hub,
    schedule: &Schedule,
    now: DateTime<Utc>,
    calendars: &Calendars,
) -> PortResult<bool> {
    let Some(stop) = schedule.last_fire_before(now, Action::Stop, calendars) else {
        return Ok(false);
    };
    let op = hub
        .store
        .get_operation(&Operation::schedule_id(&schedule.name, stop))
        .await?;
    Ok(op.is_some_and(|op| !op.status.is_final()))
}

/// Starts, once per `Settings::enforce_interval`, a pass of every enforced window schedule that
/// is in its asleep time now: a stop of its selector that puts back to sleep whatever it finds
/// awake without an override, recording it as drift. Targets still asleep are skipped by the
/// stop's own decision. Not on a date the schedule skips: it does not act that day.
async fn start_enforce_passes(
    hub: &Hub,
    now: DateTime<Utc>,
    reads: &mut CalendarReads,
    report: &mut TickReport,
) -> PortResult<()> {
    let step = hub.settings.enforce_interval.num_seconds();
    if step <= 0 {
        return Ok(());
    }
    let slot = slot_of(now, step);
    let enforced = hub.store.enforced_schedules().await?;
    for schedule in &enforced.schedules {
        let calendars = calendars_of(hub, schedule, reads).await?;
        if schedule.asleep_at(now, &calendars) != Some(true)
            || schedule.skips_date(now, &calendars)
            || stop_wave_running(hub, schedule, now, &calendars).await?
        {
            continue;
        }
        let op = Operation {
            dry_run: schedule.dry_run,
            hold: schedule.hold,
            ..Operation::pending(
                Operation::enforce_id(&schedule.name, slot),
                Action::Stop,
                schedule.selector.clone(),
                OpSource::Enforce {
                    name: schedule.name.clone(),
                },
                slot,
            )
        };
        if create_and_send(hub, &op).await? {
            info!(op_id = %op.id, schedule = %schedule.name, "enforce pass started");
            report.enforce_passes.push(op.id);
        }
    }
    Ok(())
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
    let slot = slot_of(now, step);
    let op = Operation {
        check: true,
        ..Operation::pending(
            Operation::check_id(slot),
            Action::Stop,
            Selector::parse("name=*").expect("a valid selector"),
            OpSource::Check,
            slot,
        )
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
    reads: &mut CalendarReads,
    report: &mut TickReport,
) -> PortResult<()> {
    let Some(expected) = schedule.next_fire else {
        return Ok(());
    };
    // Read at fire time, not when the next fire was stored: a date added to a calendar since
    // is skipped all the same.
    let calendars = calendars_of(hub, schedule, reads).await?;
    // Fires from the window's edge on are fired; older ones are only counted. Enumeration
    // starts at the edge, not at the stored next fire, so however long the poller was down it
    // never walks through the outage to reach the window (and the window bounds the walk).
    let edge = now - hub.settings.catchup;
    let from = if expected >= edge {
        expected
    } else {
        let missed = count_missed(schedule, expected, edge, &calendars);
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
        edge
    };
    // A fire exactly at `from` is due.
    let mut fires: Vec<Fire> = schedule
        .occurrences_after(from - Duration::milliseconds(1), &calendars)
        .take_while(|f| f.time.utc <= now)
        .collect();
    // The stored next fire is a fire even if the cron would no longer give it (a schedule
    // stored by an older version): a cron schedule fires it with its action.
    if let (true, When::Cron { action, .. }) = (from == expected, &schedule.when) {
        if fires.first().is_none_or(|f| f.time.utc != expected) {
            fires.insert(
                0,
                Fire {
                    time: FireTime {
                        utc: expected,
                        local: expected.with_timezone(&schedule.zone()).fixed_offset(),
                    },
                    action: *action,
                    skipped: None,
                },
            );
        }
    }
    for f in fires {
        match f.skipped {
            None => fire(hub, schedule, f.time.utc, f.action, report).await?,
            Some(skip) => {
                info!(schedule = %schedule.name, fire_time = %f.time.utc, action = %f.action,
                      reason = %skip, "fire skipped");
                report.skipped.push(SkippedFire {
                    schedule: schedule.name.clone(),
                    fire_time: f.time.utc,
                    action: f.action,
                    reason: skip.to_string(),
                });
            }
        }
    }
    let next = schedule
        .next_fire_after(now, &calendars)
        .map(|f| f.time.utc);
    // Conditional on the value we read: a concurrent poller that got here first wins and
    // this one changes nothing (its fires were no-ops too, by operation id).
    hub.store
        .advance_schedule(&schedule.name, expected, next)
        .await?;
    Ok(())
}

/// The calendars `schedule` names, as they are stored now (one that no longer exists skips
/// nothing): for callers outside a tick, such as the console.
pub async fn schedule_calendars(hub: &Hub, schedule: &Schedule) -> PortResult<Calendars> {
    calendars_of(hub, schedule, &mut CalendarReads::default()).await
}

/// The calendars one tick has read, by name (`None`: not found): a holiday calendar many
/// schedules name is read once per tick, not once per schedule.
#[derive(Default)]
pub(crate) struct CalendarReads {
    read: BTreeMap<String, Option<Calendar>>,
}

/// The calendars `schedule` refers to. One that no longer exists (deleted in a race with the
/// check that refuses to delete a calendar in use) skips nothing and is logged.
pub(crate) async fn calendars_of(
    hub: &Hub,
    schedule: &Schedule,
    reads: &mut CalendarReads,
) -> PortResult<Calendars> {
    let mut calendars = Calendars::none();
    for name in schedule.calendar_names() {
        if !reads.read.contains_key(name) {
            let calendar = hub.store.get_calendar(name).await?;
            reads.read.insert(name.to_string(), calendar);
        }
        match &reads.read[name] {
            Some(c) => calendars.insert(c.clone()),
            None => warn!(schedule = %schedule.name, calendar = %name,
                          "a schedule refers to a calendar that does not exist; it skips nothing"),
        }
    }
    Ok(calendars)
}

/// Counts the fires in [`first`, `edge`): `first` (the stored next fire, a fire even if the
/// cron would not give it) and those after it, up to [`MISSED_COUNT_LIMIT`].
fn count_missed(
    schedule: &Schedule,
    first: DateTime<Utc>,
    edge: DateTime<Utc>,
    calendars: &Calendars,
) -> MissedFires {
    let mut missed = MissedFires {
        schedule: schedule.name.clone(),
        count: 1,
        at_least: false,
        first,
        last: Some(first),
    };
    for f in schedule
        .fires_after(first, calendars)
        .take_while(|f| f.time.utc < edge)
    {
        if missed.count == MISSED_COUNT_LIMIT {
            missed.at_least = true;
            missed.last = None;
            break;
        }
        missed.count += 1;
        missed.last = Some(f.time.utc);
    }
    missed
}

/// Creates the fire's operation (its id is the fire key) and hands it to the router.
async fn fire(
    hub: &Hub,
    schedule: &Schedule,
    fire_time: DateTime<Utc>,
    action: Action,
    report: &mut TickReport,
) -> PortResult<()> {
    let op = Operation {
        dry_run: schedule.dry_run,
        default_start: schedule.default_start,
        hold: schedule.hold,
        ..Operation::pending(
            Operation::schedule_id(&schedule.name, fire_time),
            action,
            schedule.selector.clone(),
            OpSource::Schedule {
                name: schedule.name.clone(),
                fire_time,
            },
            // The fire time, not the wall clock: a caught-up stop and start keep their order.
            fire_time,
        )
    };
    if create_and_send(hub, &op).await? {
        info!(op_id = %op.id, schedule = %schedule.name, %fire_time, "schedule fired");
        let lag = (hub.clock.now() - fire_time).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::emit(Metric::PollerLag, lag, Some(action), None);
        report.created.push(op.id);
    } else {
        report.already_fired.push(op.id);
    }
    Ok(())
}
