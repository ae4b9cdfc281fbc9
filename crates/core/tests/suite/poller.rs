//! The poller's tick over the in-memory fakes: catch-up after an outage, and one schedule's
//! trouble (a broken item, a failed send) never stopping the others from firing.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use curfew_core::clock::ManualClock;
use curfew_core::fakes::{self, MemoryQueue, MemoryStore};
use curfew_core::operation::Operation;
use curfew_core::ports::{ErrorKind, OperationStore, PortError, PortResult, Queue, ScheduleStore};
use curfew_core::schedule::{Schedule, ScheduleRecord};
use curfew_core::service::poller::{self, MissedFires, MISSED_COUNT_LIMIT};
use curfew_core::service::Hub;

/// Monday 2027-01-04 18:00 UTC.
fn monday_evening() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
}

/// A schedule matching no target, due at `next_fire`.
fn schedule(name: &str, cron: &str, next_fire: DateTime<Utc>) -> Schedule {
    Schedule::try_from(ScheduleRecord {
        name: name.into(),
        cron: Some(cron.into()),
        tz: "UTC".into(),
        action: Some("stop".into()),
        asleep: None,
        selector: "name=nothing-matches".into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: vec![],
        skip_calendars: vec![],
        awake_calendars: vec![],
        enforce: false,
        default_start: None,
        next_fire: Some(next_fire),
        hold: None,
    })
    .unwrap()
}

fn hub_at(now: DateTime<Utc>) -> (Hub, Arc<MemoryStore>, Arc<MemoryQueue>) {
    let (hub, store, router_q, _task_q, _spokes) = fakes::hub(Arc::new(ManualClock::new(now)));
    (hub, store, router_q)
}

#[tokio::test]
async fn after_eight_days_down_every_fire_inside_the_catch_up_window_fires_exactly_once() {
    let now = monday_evening();
    let (hub, store, router_q) = hub_at(now);
    assert_eq!(hub.settings.catchup, Duration::minutes(60));
    let down_since = now - Duration::days(8);
    store
        .create_schedule(&schedule("every-minute", "* * * * *", down_since))
        .await
        .unwrap();

    let report = poller::tick(&hub).await.unwrap();

    let window: Vec<String> = (0..=60)
        .map(|m| Operation::schedule_id("every-minute", now - Duration::minutes(60 - m)))
        .collect();
    assert_eq!(report.created, window);
    assert_eq!(router_q.len(), 61);
    assert_eq!(
        report.missed,
        vec![MissedFires {
            schedule: "every-minute".into(),
            count: 8 * 24 * 60 - 60,
            at_least: false,
            first: down_since,
            last: Some(now - Duration::minutes(61)),
        }]
    );
    let again = poller::tick(&hub).await.unwrap();
    assert!(again.created.is_empty() && again.already_fired.is_empty());
    assert_eq!(
        store
            .get_schedule("every-minute")
            .await
            .unwrap()
            .unwrap()
            .next_fire,
        Some(now + Duration::minutes(1))
    );
}

#[tokio::test]
async fn missed_fires_past_the_counting_limit_are_reported_as_at_least_the_limit() {
    let now = monday_evening();
    let (hub, store, _router_q) = hub_at(now);
    // 100 days of every minute: 144,000 fires, more than the limit.
    let down_since = now - Duration::days(100);
    store
        .create_schedule(&schedule("every-minute", "* * * * *", down_since))
        .await
        .unwrap();

    let report = poller::tick(&hub).await.unwrap();

    assert_eq!(report.created.len(), 61);
    assert_eq!(
        report.missed,
        vec![MissedFires {
            schedule: "every-minute".into(),
            count: MISSED_COUNT_LIMIT,
            at_least: true,
            first: down_since,
            last: None,
        }]
    );
    assert_eq!(
        report.missed[0].to_string(),
        "every-minute: at least 100000 fires from 2026-09-26T18:00:00+00:00 on"
    );
}

#[tokio::test]
async fn a_fire_a_minute_before_the_window_is_missed_and_one_at_its_edge_fires() {
    let now = monday_evening();
    let (hub, store, _router_q) = hub_at(now);
    // Fires at 16:00, 16:59, 17:00 and 17:59; due since 16:59, 61 minutes before 18:00.
    let cron = "0,59 16,17 * * *";
    store
        .create_schedule(&schedule("edge", cron, now - Duration::minutes(61)))
        .await
        .unwrap();

    let report = poller::tick(&hub).await.unwrap();

    assert_eq!(
        report.created,
        vec![
            Operation::schedule_id("edge", now - Duration::minutes(60)),
            Operation::schedule_id("edge", now - Duration::minutes(1)),
        ]
    );
    assert_eq!(
        report.missed[0].to_string(),
        "edge: 1 fire from 2027-01-04T16:59:00+00:00 to 2027-01-04T16:59:00+00:00"
    );
}

/// The router queue, refusing any message about `refused` (an operation id) as throttled.
struct RefusingQueue {
    inner: Arc<MemoryQueue>,
    refused: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl Queue for RefusingQueue {
    async fn send(&self, bodies: &[String]) -> PortResult<()> {
        let refused = self.refused.lock().unwrap().clone();
        if let Some(op) = refused {
            if bodies.iter().any(|b| b.contains(&op)) {
                return Err(PortError::new(
                    ErrorKind::Throttled,
                    "the queue is throttled",
                ));
            }
        }
        self.inner.send(bodies).await
    }
}

#[tokio::test]
async fn a_schedule_whose_send_fails_does_not_stop_the_others_and_is_sent_again_next_tick() {
    let now = monday_evening();
    let (mut hub, store, router_q) = hub_at(now);
    let first = Operation::schedule_id("a-first", now);
    let second = Operation::schedule_id("b-second", now);
    let queue = Arc::new(RefusingQueue {
        inner: router_q.clone(),
        refused: std::sync::Mutex::new(Some(first.clone())),
    });
    hub.router_queue = queue.clone();
    for name in ["a-first", "b-second"] {
        store
            .create_schedule(&schedule(name, "0 18 * * *", now))
            .await
            .unwrap();
    }

    let failed = poller::tick(&hub).await.unwrap_err();

    assert!(failed.message.contains("a-first"), "{failed}");
    assert_eq!(failed.kind, ErrorKind::Throttled);
    let sent = router_q.take_all();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains(&second), "{sent:?}");
    let next_fire = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .get_schedule(name)
                .await
                .unwrap()
                .unwrap()
                .next_fire
                .unwrap()
        }
    };
    assert_eq!(next_fire("b-second").await, now + Duration::days(1));
    assert_eq!(next_fire("a-first").await, now, "not advanced: retried");

    *queue.refused.lock().unwrap() = None;
    let retried = poller::tick(&hub).await.unwrap();
    assert_eq!(retried.already_fired, vec![first.clone()]);
    let sent = router_q.take_all();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains(&first), "{sent:?}");
    assert!(store.get_operation(&first).await.unwrap().is_some());
    assert_eq!(next_fire("a-first").await, now + Duration::days(1));
}

#[tokio::test]
async fn a_broken_schedule_is_reported_on_every_tick_and_the_others_still_fire() {
    let now = monday_evening();
    let (hub, store, router_q) = hub_at(now);
    store.put_broken_schedule("a-broken", "unknown time zone \"Mars/Olympus\"", Some(now));
    store.put_broken_schedule(
        "c-broken-later",
        "missing field `action`",
        Some(now + Duration::hours(1)),
    );
    store
        .create_schedule(&schedule("b-good", "0 18 * * *", now))
        .await
        .unwrap();

    let report = poller::tick(&hub).await.unwrap();

    assert_eq!(report.created, vec![Operation::schedule_id("b-good", now)]);
    assert_eq!(router_q.len(), 1);
    let broken: Vec<String> = report.broken.iter().map(|b| b.to_string()).collect();
    assert_eq!(
        broken,
        ["schedule \"a-broken\" is broken: unknown time zone \"Mars/Olympus\""]
    );
    assert_eq!(poller::tick(&hub).await.unwrap().broken, report.broken);
}

#[tokio::test]
async fn a_broken_schedule_is_listed_apart_refused_when_read_and_can_be_deleted() {
    let (_hub, store, _router_q) = hub_at(monday_evening());
    store.put_broken_schedule("broken", "missing field `action`", None);
    store
        .create_schedule(&schedule("good", "0 18 * * *", monday_evening()))
        .await
        .unwrap();

    let listed = store.list_schedules().await.unwrap();
    assert_eq!(listed.schedules.len(), 1);
    assert_eq!(listed.broken.len(), 1);
    assert_eq!(listed.broken[0].name, "broken");
    let read = store.get_schedule("broken").await.unwrap_err();
    assert_eq!(read.kind, ErrorKind::Invalid);
    assert!(
        read.message
            .contains("\"broken\" is broken: missing field `action`"),
        "{read}"
    );
    assert_eq!(
        store
            .create_schedule(&schedule("broken", "0 18 * * *", monday_evening()))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::ConditionFailed,
        "the name is taken"
    );

    assert!(store.delete_schedule("broken").await.unwrap());
    assert!(store.list_schedules().await.unwrap().broken.is_empty());
    assert!(!store.delete_schedule("broken").await.unwrap());
}

#[tokio::test]
async fn every_tick_leaves_a_heartbeat_with_its_lag_behind_the_oldest_due_fire() {
    use curfew_core::health::{HealthStore, PollerTick};
    let now = monday_evening();
    let (hub, store, _router_q) = hub_at(now);
    assert_eq!(store.poller_tick().await.unwrap(), None);
    store
        .create_schedule(&schedule("late", "* * * * *", now - Duration::minutes(3)))
        .await
        .unwrap();
    store
        .create_schedule(&schedule("on-time", "0 18 * * *", now))
        .await
        .unwrap();

    poller::tick(&hub).await.unwrap();
    assert_eq!(
        store.poller_tick().await.unwrap(),
        Some(PollerTick {
            at: now,
            lag_seconds: 180,
            due: 2
        })
    );

    // A quiet tick is a heartbeat too: nothing due, no lag.
    poller::tick(&hub).await.unwrap();
    assert_eq!(
        store.poller_tick().await.unwrap(),
        Some(PollerTick {
            at: now,
            lag_seconds: 0,
            due: 0
        })
    );
}
