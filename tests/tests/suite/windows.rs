//! Issue 11 on the emulator: a sleep window sleeps and wakes a fleet over a week with a DST
//! change exactly as its cron pair would; a holiday calendar suppresses a day's fires; an
//! override keeps a target awake through a stop and the next stop applies after it expires;
//! an enforced window puts a hand-woken target back to sleep and records the drift, and
//! without enforce the drift is only recorded. Asserted on the spokes' real sizes and on the
//! recorded operations and audit chains.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use curfew_aws::local::{demo_fleet, FleetTarget};
use curfew_core::calendar::{Calendar, Calendars};
use curfew_core::cron::CronSpec;
use curfew_core::decision::Action;
use curfew_core::operation::{OpStatus, Operation, TaskStatus};
use curfew_core::ports::Override;
use curfew_core::schedule::{Schedule, ScheduleRecord};
use curfew_core::selector::Selector;
use curfew_core::service::{poller, Hub, Settings};
use curfew_core::target::{Sizes, TargetKind};
use curfew_core::trail::{self, ChangeKind};
use curfew_tests::{is_dev, key, spawn_hub, TestHub};

const ZONE: &str = "Europe/Berlin";
const WINDOW: &str = "Mon-Fri 19:00-07:00, Sat-Sun all-day";

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// A window schedule over the dev targets, its next fire computed from `now`.
fn window(name: &str, now: DateTime<Utc>, enforce: bool, skip_calendars: &[&str]) -> Schedule {
    let mut s = Schedule::try_from(ScheduleRecord {
        name: name.into(),
        cron: None,
        tz: ZONE.into(),
        action: None,
        asleep: Some(WINDOW.into()),
        selector: "tag:env=dev".into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: vec![],
        skip_calendars: skip_calendars.iter().map(|c| c.to_string()).collect(),
        awake_calendars: vec![],
        enforce,
        default_start: None,
        hold: None,
        next_fire: None,
    })
    .unwrap();
    s.next_fire = s
        .next_fire_after(now, &Calendars::none())
        .map(|f| f.time.utc);
    s
}

/// One account, one region: 4 ASGs (2 dev) and 1 cluster with 1 node group (dev).
async fn fleet_hub(now: DateTime<Utc>) -> (TestHub, Vec<FleetTarget>) {
    let t = spawn_hub(now, 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 4, 1);
    t.seed(&fleet).await;
    (t, fleet)
}

/// A fleet hub at `start` with the `dev-nights` window schedule over its dev targets, and the
/// fleet's sizes as seeded.
async fn window_hub(
    start: DateTime<Utc>,
    enforce: bool,
    skip_calendars: &[&str],
) -> (TestHub, Vec<FleetTarget>, BTreeMap<String, Sizes>) {
    let (t, fleet) = fleet_hub(start).await;
    let seeded = t.fleet_sizes(&fleet).await;
    t.hub
        .store
        .create_schedule(&window("dev-nights", start, enforce, skip_calendars))
        .await
        .unwrap();
    (t, fleet, seeded)
}

fn asleep(f: &FleetTarget, awake: Sizes) -> Sizes {
    match f.kind {
        TargetKind::Asg => Sizes::new(0, 0, 0),
        TargetKind::Nodegroup => Sizes::new(0, awake.max, 0),
    }
}

/// Asserts every dev target asleep (`true`) or at its seeded sizes, and the rest untouched.
async fn assert_fleet(
    t: &TestHub,
    fleet: &[FleetTarget],
    seeded: &BTreeMap<String, Sizes>,
    dev_asleep: bool,
    when: &str,
) {
    let now = t.fleet_sizes(fleet).await;
    for f in fleet {
        let was = seeded[&key(f)];
        let expected = if is_dev(f) && dev_asleep {
            asleep(f, was)
        } else {
            was
        };
        assert_eq!(now[&key(f)], expected, "{} {when}", key(f));
    }
}

/// The `dev-nights` schedule's stored next fire.
async fn next_fire(t: &TestHub) -> Option<DateTime<Utc>> {
    let stored = t.hub.store.get_schedule("dev-nights").await.unwrap();
    stored.expect("the schedule exists").next_fire
}

/// Ticks the poller at `at` and drains the queues; the operations it created.
async fn tick_at(t: &TestHub, hub: &Hub, at: DateTime<Utc>) -> poller::TickReport {
    t.clock.set(at);
    let report = poller::tick(hub).await.unwrap();
    t.drain().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_sleeps_and_wakes_the_fleet_over_a_dst_week_exactly_as_its_cron_pair() {
    // Monday 2027-03-22 12:00 UTC; Berlin springs forward on Sunday 2027-03-28.
    let start = utc(2027, 3, 22, 12, 0);
    let end = utc(2027, 3, 30, 12, 0);
    let (t, fleet, seeded) = window_hub(start, false, &[]).await;
    // The equivalent cron pair's fires, merged in time order.
    let stop = CronSpec::parse("0 19 * * 1-5", ZONE).unwrap();
    let wake = CronSpec::parse("0 7 * * 1-5", ZONE).unwrap();
    let mut expected: Vec<(DateTime<Utc>, Action)> = stop
        .fires_between(start, end)
        .iter()
        .map(|f| (f.utc, Action::Stop))
        .chain(
            wake.fires_between(start, end)
                .iter()
                .map(|f| (f.utc, Action::Start)),
        )
        .collect();
    expected.sort_by_key(|(at, _)| *at);
    assert_eq!(
        expected.len(),
        12,
        "6 stops and 6 starts from Monday noon to the next Tuesday noon"
    );
    // Monday 29 March 07:00 is 05:00 UTC: summer time.
    assert!(expected.contains(&(utc(2027, 3, 29, 5, 0), Action::Start)));
    for (at, action) in expected {
        let early = tick_at(&t, &t.hub, at - Duration::minutes(1)).await;
        assert!(
            early.created.is_empty(),
            "nothing fires a minute before {at}"
        );
        let report = tick_at(&t, &t.hub, at).await;
        let id = Operation::schedule_id("dev-nights", at);
        assert_eq!(report.created, vec![id.clone()], "one fire at {at}");
        let op = t.hub.store.get_operation(&id).await.unwrap().unwrap();
        assert_eq!(
            (op.action, op.status),
            (action, OpStatus::Succeeded),
            "{id}"
        );
        assert_fleet(
            &t,
            &fleet,
            &seeded,
            action == Action::Stop,
            &format!("after {id}"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holiday_suppresses_both_fires_of_its_day_and_the_fleet_sleeps_through_it() {
    // Tuesday 2027-01-05; Wednesday 6 January is the holiday.
    let start = utc(2027, 1, 5, 17, 0);
    let (t, fleet, seeded) = window_hub(start, false, &["holidays"]).await;
    // Tuesday 19:00 CET stops.
    let report = tick_at(&t, &t.hub, utc(2027, 1, 5, 18, 0)).await;
    assert_eq!(report.created.len(), 1);
    assert_fleet(&t, &fleet, &seeded, true, "Tuesday night").await;
    assert_eq!(next_fire(&t).await, Some(utc(2027, 1, 6, 6, 0)));
    // The calendar arrives after that next fire was stored: it is read at fire time.
    t.hub
        .store
        .create_calendar(&Calendar::new("holidays", &["2027-01-06"]).unwrap(), false)
        .await
        .unwrap();
    let report = tick_at(&t, &t.hub, utc(2027, 1, 6, 6, 0)).await;
    assert!(report.created.is_empty(), "Wednesday 07:00 does not fire");
    let skipped: Vec<_> = report
        .skipped
        .iter()
        .map(|s| (s.fire_time, s.action, s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        vec![(utc(2027, 1, 6, 6, 0), Action::Start, "calendar holidays")]
    );
    // The next fire stored skips Wednesday 19:00 too: Thursday 07:00.
    assert_eq!(next_fire(&t).await, Some(utc(2027, 1, 7, 6, 0)));
    let evening = tick_at(&t, &t.hub, utc(2027, 1, 6, 18, 0)).await;
    assert!(evening.created.is_empty(), "Wednesday 19:00 does not fire");
    assert_fleet(&t, &fleet, &seeded, true, "through the holiday").await;
    // Thursday 07:00 wakes it.
    let report = tick_at(&t, &t.hub, utc(2027, 1, 7, 6, 0)).await;
    assert_eq!(
        report.created,
        vec![Operation::schedule_id("dev-nights", utc(2027, 1, 7, 6, 0))]
    );
    assert_fleet(&t, &fleet, &seeded, false, "Thursday morning").await;
}

/// A hub whose poller does (or does not) start enforce passes and drift checks.
fn poller_hub(t: &TestHub, enforce_every: Duration, drift_every: Duration) -> Hub {
    Hub {
        settings: Settings {
            enforce_interval: enforce_every,
            drift_interval: drift_every,
            ..t.hub.settings.clone()
        },
        ..t.hub.clone()
    }
}

/// The `drift_found` records in a target's own chain (a delivery's changes go to its own):
/// (operation, sizes found).
async fn drift_records(t: &TestHub, f: &FleetTarget) -> Vec<(String, serde_json::Value)> {
    let name = trail::target_chain(&key(f));
    let chain = t.hub.store.audit_chain(&name).await.unwrap();
    let head = t.hub.store.audit_head(&name).await.unwrap();
    if head.is_some() || !chain.is_empty() {
        assert_eq!(
            trail::verify_chain(&name, &chain, head.as_ref(), None),
            Ok(())
        );
    }
    chain
        .iter()
        .filter_map(|r| r.entries())
        .flatten()
        .filter(|e| e.kind == ChangeKind::DriftFound)
        .map(|e| {
            (
                e.operation.unwrap_or_default(),
                e.before.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforced_window_puts_a_hand_woken_target_back_to_sleep_and_records_the_drift() {
    let start = utc(2027, 1, 4, 17, 0);
    let (t, fleet, seeded) = window_hub(start, true, &[]).await;
    let hub = poller_hub(&t, Duration::minutes(1), Duration::zero());
    // Awake time: no pass. 19:00 CET: the stop fires.
    let day = tick_at(&t, &hub, utc(2027, 1, 4, 17, 30)).await;
    assert!(day.enforce_passes.is_empty());
    tick_at(&t, &hub, utc(2027, 1, 4, 18, 0)).await;
    assert_fleet(&t, &fleet, &seeded, true, "after the stop").await;
    // A pass over a fleet held asleep reads each target and plans no task: nothing to undo.
    let quiet = tick_at(&t, &hub, utc(2027, 1, 4, 18, 1)).await;
    let quiet_pass = Operation::enforce_id("dev-nights", utc(2027, 1, 4, 18, 1));
    assert_eq!(quiet.enforce_passes, vec![quiet_pass.clone()]);
    let op = t
        .hub
        .store
        .get_operation(&quiet_pass)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((op.status, op.counts.total), (OpStatus::Succeeded, 0));
    // Someone wakes one dev ASG by hand; the next tick's pass puts it back, keeping its baseline.
    let woken = fleet
        .iter()
        .find(|f| is_dev(f) && f.kind == TargetKind::Asg)
        .unwrap();
    t.set_by_hand(woken, Sizes::new(1, 5, 3)).await;
    let report = tick_at(&t, &hub, utc(2027, 1, 4, 18, 2)).await;
    let pass = Operation::enforce_id("dev-nights", utc(2027, 1, 4, 18, 2));
    assert_eq!(report.enforce_passes, vec![pass.clone()]);
    let op = t.hub.store.get_operation(&pass).await.unwrap().unwrap();
    assert_eq!(
        (op.counts.total, op.counts.succeeded),
        (1, 1),
        "only the woken target gets a task"
    );
    assert_fleet(&t, &fleet, &seeded, true, "after the enforce pass").await;
    let task = t
        .hub
        .store
        .get_task(&pass, &key(woken))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.status, task.before),
        (TaskStatus::Succeeded, Some(Sizes::new(1, 5, 3)))
    );
    let baseline = t
        .hub
        .store
        .get_baseline(&key(woken))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        baseline.sizes,
        seeded[&key(woken)],
        "the first stop's baseline is kept"
    );
    assert_eq!(
        drift_records(&t, woken).await,
        vec![(
            pass.clone(),
            serde_json::json!({"min": 1, "max": 5, "desired": 3})
        )]
    );
    // Targets found asleep are no drift.
    for f in fleet.iter().filter(|f| is_dev(f) && key(f) != key(woken)) {
        assert!(drift_records(&t, f).await.is_empty(), "{}", key(f));
    }
    // The same minute again starts nothing new.
    let again = tick_at(&t, &hub, utc(2027, 1, 4, 18, 2)).await;
    assert!(again.enforce_passes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enforce_a_hand_woken_target_is_recorded_as_drift_and_left_awake() {
    let start = utc(2027, 1, 4, 17, 0);
    let (t, fleet, _) = window_hub(start, false, &[]).await;
    let hub = poller_hub(&t, Duration::minutes(1), Duration::hours(1));
    tick_at(&t, &hub, utc(2027, 1, 4, 18, 0)).await;
    let woken = fleet
        .iter()
        .find(|f| is_dev(f) && f.kind == TargetKind::Asg)
        .unwrap();
    t.set_by_hand(woken, Sizes::new(1, 5, 3)).await;
    // 20:00 CET: the hourly drift check, and no enforce pass.
    let report = tick_at(&t, &hub, utc(2027, 1, 4, 19, 0)).await;
    assert!(report.enforce_passes.is_empty());
    let check = report.drift_check.expect("a drift check");
    assert_eq!(t.sizes(woken).await, Sizes::new(1, 5, 3), "left awake");
    assert_eq!(
        drift_records(&t, woken).await,
        vec![(check, serde_json::json!({"min": 1, "max": 5, "desired": 3}))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_keeps_targets_awake_through_a_stop_and_the_next_stop_applies_after_it_expires()
{
    let start = utc(2027, 1, 4, 16, 0);
    let (t, fleet, seeded) = window_hub(start, false, &[]).await;
    // Monday 18:30 CET: wake-for-3h (an override until 21:30 CET, as `start --for 3h` stores).
    let o = Override {
        id: "wake-3h".into(),
        selector: Selector::parse("tag:env=dev").unwrap(),
        awake_until: utc(2027, 1, 4, 20, 30),
        created_at: utc(2027, 1, 4, 17, 30),
    };
    t.hub.store.put_override(&o).await.unwrap();
    // 19:00 CET: the stop skips every dev target, kept awake.
    let report = tick_at(&t, &t.hub, utc(2027, 1, 4, 18, 0)).await;
    let stop = &report.created[0];
    let op = t.hub.store.get_operation(stop).await.unwrap().unwrap();
    assert_eq!(op.counts.skipped, op.counts.total);
    assert_fleet(&t, &fleet, &seeded, false, "kept awake through the stop").await;
    // Tuesday 07:00 wakes (nothing to do), Tuesday 19:00 stops: the override has expired.
    tick_at(&t, &t.hub, utc(2027, 1, 5, 6, 0)).await;
    tick_at(&t, &t.hub, utc(2027, 1, 5, 18, 0)).await;
    assert_fleet(&t, &fleet, &seeded, true, "the next stop after expiry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_enforce_a_target_kept_awake_goes_back_to_sleep_within_a_tick_of_its_override_expiring(
) {
    let start = utc(2027, 1, 4, 16, 0);
    let (t, fleet, seeded) = window_hub(start, true, &[]).await;
    let hub = poller_hub(&t, Duration::minutes(1), Duration::zero());
    t.hub
        .store
        .put_override(&Override {
            id: "wake".into(),
            selector: Selector::parse("tag:env=dev").unwrap(),
            awake_until: utc(2027, 1, 4, 20, 30),
            created_at: utc(2027, 1, 4, 17, 30),
        })
        .await
        .unwrap();
    tick_at(&t, &hub, utc(2027, 1, 4, 18, 0)).await;
    // Passes while the override holds leave the fleet awake.
    tick_at(&t, &hub, utc(2027, 1, 4, 20, 29)).await;
    assert_fleet(&t, &fleet, &seeded, false, "while the override holds").await;
    // The first tick after it expires puts it to sleep.
    let report = tick_at(&t, &hub, utc(2027, 1, 4, 20, 31)).await;
    assert_eq!(report.enforce_passes.len(), 1);
    assert_fleet(
        &t,
        &fleet,
        &seeded,
        true,
        "a tick after the override expired",
    )
    .await;
}
