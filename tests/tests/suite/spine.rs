//! The spine end to end on the moto emulator: schedules fire once, the fleet stops and starts
//! exactly, deliveries repeat harmlessly, a broken account fails alone, bad input writes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use curfew_aws::local::demo_fleet;
use curfew_core::account::SpokeRole;
use curfew_core::clock::Clock;
use curfew_core::decision::Action;
use curfew_core::hold::CaTag;
use curfew_core::operation::{OpStatus, TaskStatus};
use curfew_core::ports::{ErrorKind, PortError, PortResult, Spokes, UpdateState};
use curfew_core::schedule::{Schedule, ScheduleRecord};
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::{poller, worker_batch, Delivery};
use curfew_core::target::{LiveState, Processes, Sizes, Target, TargetKind};
use curfew_tests::{is_dev, key, spawn_hub, TestHub};
use serde_json::json;

const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

fn schedule(name: &str, cron: &str, action: &str, now: chrono::DateTime<Utc>) -> Schedule {
    let mut s = Schedule::try_from(ScheduleRecord {
        name: name.into(),
        cron: Some(cron.into()),
        tz: "Europe/Berlin".into(),
        action: Some(action.into()),
        asleep: None,
        selector: "tag:env=dev".into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: vec![],
        skip_calendars: vec![],
        awake_calendars: vec![],
        enforce: false,
        default_start: None,
        next_fire: None,
        hold: None,
    })
    .unwrap();
    s.next_fire = s
        .next_fire_after(now, &curfew_core::calendar::Calendars::none())
        .map(|f| f.time.utc);
    s
}

/// 3 accounts x 2 regions x (4 ASGs + 2 clusters x 1 node group) = 24 ASGs, 12 node groups.
async fn fleet_hub() -> (TestHub, Vec<curfew_aws::local::FleetTarget>) {
    // Monday 4 January 2027, 12:00 UTC.
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 12, 0, 0).unwrap(), 3).await;
    t.register_accounts(&REGIONS).await;
    let regions: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
    let fleet = demo_fleet(&t.accounts, &regions, 4, 1);
    t.seed(&fleet).await;
    (t, fleet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_stop_and_start_the_selected_fleet_exactly_once() {
    let (t, fleet) = fleet_hub().await;
    assert!(fleet.iter().filter(|f| f.kind == TargetKind::Asg).count() >= 20);
    assert!(
        fleet
            .iter()
            .filter(|f| f.kind == TargetKind::Nodegroup)
            .count()
            >= 6
    );
    let before = t.fleet_sizes(&fleet).await;
    let now = t.clock.now();
    t.hub
        .store
        .create_schedule(&schedule("dev-stop", "0 19 * * 1-5", "stop", now))
        .await
        .unwrap();
    t.hub
        .store
        .create_schedule(&schedule("dev-start", "0 7 * * 1-5", "start", now))
        .await
        .unwrap();

    // 18:59, 19:00 and 19:00 again (a duplicated invocation) in Berlin: one operation.
    t.clock
        .set(Utc.with_ymd_and_hms(2027, 1, 4, 17, 59, 0).unwrap());
    assert!(poller::tick(&t.hub).await.unwrap().created.is_empty());
    t.clock
        .set(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap());
    let first = poller::tick(&t.hub).await.unwrap();
    let again = poller::tick(&t.hub).await.unwrap();
    assert_eq!(first.created, vec!["20270104T1800Z-dev-stop".to_string()]);
    assert!(again.created.is_empty());
    t.drain().await;
    let ops = t.hub.store.list_operations(10).await.unwrap();
    assert_eq!(ops.len(), 1, "exactly one operation");
    let stop = &ops[0];
    let selected = fleet.iter().filter(|f| is_dev(f)).count() as u64;
    assert_eq!(stop.status, OpStatus::Succeeded);
    assert_eq!(
        (stop.counts.total, stop.counts.succeeded),
        (selected, selected)
    );

    let after_stop = t.fleet_sizes(&fleet).await;
    for f in &fleet {
        let (was, now) = (before[&key(f)], after_stop[&key(f)]);
        if !is_dev(f) {
            assert_eq!(now, was, "unselected {} untouched", f.name);
            continue;
        }
        let expected = match f.kind {
            TargetKind::Asg => Sizes::new(0, 0, 0),
            TargetKind::Nodegroup => Sizes::new(0, was.max, 0),
        };
        assert_eq!(now, expected, "{} stopped", key(f));
        let baseline = t
            .hub
            .store
            .get_baseline(&key(f))
            .await
            .unwrap()
            .expect("baseline saved");
        assert_eq!(baseline.sizes, was, "{} baseline", key(f));
    }

    // A second stop leaves every baseline as it was.
    let second = t
        .run(json!({"action": "stop", "select": "tag:env=dev"}))
        .await;
    assert_eq!(
        (second.counts.skipped, second.status),
        (selected, OpStatus::Succeeded)
    );
    for f in fleet.iter().filter(|f| is_dev(f)) {
        assert_eq!(
            t.hub
                .store
                .get_baseline(&key(f))
                .await
                .unwrap()
                .unwrap()
                .sizes,
            before[&key(f)]
        );
    }

    // Someone wakes one ASG by hand while it sleeps; the 07:00 start must not shrink it.
    let woken = fleet
        .iter()
        .find(|f| is_dev(f) && f.kind == TargetKind::Asg)
        .unwrap();
    let by_hand = Sizes::new(0, 12, 9);
    t.set_by_hand(woken, by_hand).await;
    t.clock
        .set(Utc.with_ymd_and_hms(2027, 1, 5, 6, 0, 0).unwrap());
    let fired = poller::tick(&t.hub).await.unwrap();
    assert_eq!(fired.created, vec!["20270105T0600Z-dev-start".to_string()]);
    t.drain().await;
    let after_start = t.fleet_sizes(&fleet).await;
    for f in &fleet {
        let was = before[&key(f)];
        if f == woken {
            assert_eq!(
                after_start[&key(f)],
                Sizes::new(was.min, 9.max(was.max), 9.max(was.desired))
            );
        } else {
            assert_eq!(after_start[&key(f)], was, "{} restored exactly", key(f));
        }
        assert!(
            t.hub.store.get_baseline(&key(f)).await.unwrap().is_none(),
            "baseline retired"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_message_delivered_twice_gives_the_same_end_state_and_counts() {
    let (t, fleet) = fleet_hub().await;
    let before = t.fleet_sizes(&fleet).await;
    let stop = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let mut dispatcher = t.dispatcher();
    dispatcher.duplicate_deliveries = true;
    dispatcher.drain().await.unwrap();
    let op = t
        .hub
        .store
        .get_operation(&stop.operation_id)
        .await
        .unwrap()
        .unwrap();
    let asgs = fleet.iter().filter(|f| f.kind == TargetKind::Asg).count() as u64;
    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!(
        (
            op.counts.total,
            op.counts.succeeded,
            op.counts.skipped,
            op.counts.failed
        ),
        (asgs, asgs, 0, 0)
    );
    for f in &fleet {
        let now = t.sizes(f).await;
        match f.kind {
            TargetKind::Asg => {
                assert_eq!(now, Sizes::new(0, 0, 0));
                assert_eq!(
                    t.hub
                        .store
                        .get_baseline(&key(f))
                        .await
                        .unwrap()
                        .unwrap()
                        .sizes,
                    before[&key(f)]
                );
            }
            TargetKind::Nodegroup => assert_eq!(now, before[&key(f)]),
        }
    }
    let start = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "start", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    dispatcher.drain().await.unwrap();
    let op = t
        .hub
        .store
        .get_operation(&start.operation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((op.counts.total, op.counts.succeeded), (asgs, asgs));
    assert_eq!(t.fleet_sizes(&fleet).await, before);
}

/// Fault injection: moto does not enforce trust policies and accepts any well-formed role ARN,
/// so the AssumeRole failure for one account comes from this adapter, which answers exactly
/// what STS would (AccessDenied) and delegates everything else to the real AWS adapter.
struct DenyAccount {
    inner: Arc<dyn Spokes>,
    denied: String,
}

impl DenyAccount {
    fn check(&self, role: &SpokeRole) -> PortResult<()> {
        if role.account == self.denied {
            return Err(PortError::new(
                ErrorKind::AccessDenied,
                format!(
                    "assuming {}: AccessDenied: not authorized to perform sts:AssumeRole",
                    role.role_arn
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Spokes for DenyAccount {
    async fn ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>> {
        self.check(role)?;
        self.inner.ca_tags(role, target).await
    }
    async fn remove_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        self.check(role)?;
        self.inner.remove_ca_tags(role, target, tags).await
    }
    async fn restore_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        self.check(role)?;
        self.inner.restore_ca_tags(role, target, tags).await
    }
    async fn suspend_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        self.check(role)?;
        self.inner.suspend_processes(role, target, processes).await
    }
    async fn resume_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        self.check(role)?;
        self.inner.resume_processes(role, target, processes).await
    }
    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>> {
        self.check(role)?;
        self.inner.discover(role, region).await
    }
    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        self.check(role)?;
        self.inner.live_state(role, target).await
    }
    async fn set_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>> {
        self.check(role)?;
        self.inner.set_sizes(role, target, sizes).await
    }
    async fn update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        expected: Sizes,
    ) -> PortResult<UpdateState> {
        self.check(role)?;
        self.inner
            .update_state(role, target, update_id, expected)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_role_cannot_be_assumed_fails_alone_and_the_operation_ends_partial() {
    let (mut t, fleet) = fleet_hub().await;
    // The inventory was cached while the role still worked (a plan discovers live once).
    curfew_core::service::router::plan(
        &t.hub,
        Action::Stop,
        &"tag:env=dev".parse().unwrap(),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let denied = t.accounts[2].clone();
    t.hub.spokes = Arc::new(DenyAccount {
        inner: t.hub.spokes.clone(),
        denied: denied.clone(),
    });
    // A plan names the account it cannot reach and still plans every other one.
    let live = curfew_core::operation::Discovery::Live;
    let plan = curfew_core::service::router::plan(
        &t.hub,
        Action::Stop,
        &"tag:env=dev".parse().unwrap(),
        live,
        None,
    )
    .await
    .unwrap();
    assert_eq!(plan.problems.len(), REGIONS.len(), "{:?}", plan.problems);
    assert!(plan
        .problems
        .iter()
        .all(|p| p.contains(&denied) && p.contains("AccessDenied")));
    assert!(!plan.changes.is_empty() && plan.changes.iter().all(|c| c.target.account != denied));
    let before = t.fleet_sizes(&fleet).await;
    let op = t
        .run(json!({"action": "stop", "select": "tag:env=dev"}))
        .await;
    assert_eq!(op.status, OpStatus::Partial, "{op:?}");
    let tasks = t.hub.store.list_tasks(&op.id).await.unwrap();
    assert_eq!(tasks.len() as u64, op.counts.total);
    for task in &tasks {
        if task.target.account == denied {
            assert_eq!(task.status, TaskStatus::Failed);
            assert!(
                task.reason.as_deref().unwrap().contains("AccessDenied"),
                "{:?}",
                task.reason
            );
        } else {
            assert_eq!(task.status, TaskStatus::Succeeded, "{}", task.target.key());
        }
    }
    for f in fleet.iter().filter(|f| f.account == denied) {
        assert_eq!(
            t.sizes(f).await,
            before[&key(f)],
            "denied account untouched"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_writes_nothing() {
    let (t, fleet) = fleet_hub().await;
    let before = t.fleet_sizes(&fleet).await;
    let items = t.table_items().await;
    let base = ScheduleRecord {
        name: "bad".into(),
        cron: Some("0 19 * * 1-5".into()),
        tz: "Europe/Berlin".into(),
        action: Some("stop".into()),
        asleep: None,
        selector: "tag:env=dev".into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: vec![],
        skip_calendars: vec![],
        awake_calendars: vec![],
        enforce: false,
        default_start: None,
        next_fire: None,
        hold: None,
    };
    for (record, field) in [
        (
            ScheduleRecord {
                cron: Some("0 25 * * *".into()),
                ..base.clone()
            },
            "cron",
        ),
        (
            ScheduleRecord {
                tz: "Europe/Atlantis".into(),
                ..base.clone()
            },
            "tz",
        ),
        (
            ScheduleRecord {
                selector: "tag:env".into(),
                ..base.clone()
            },
            "select",
        ),
    ] {
        let err = Schedule::try_from(record).unwrap_err();
        assert_eq!(err.field(), field, "{err}");
    }
    // Malformed task messages: rejected with the field named, nothing touched.
    let outcome = worker_batch(
        &t.hub,
        &[
            Delivery::first("m1", "{not json"),
            Delivery::first("m2", json!({"op_id": "x", "action": "stop"}).to_string()),
            Delivery::first(
                "m3",
                json!({"op_id": "x", "op_created_at": "2027-01-04T18:00:00Z", "action": "pause",
                "target": {}, "role": {}})
                .to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(outcome.failed.len(), 3);
    assert!(
        outcome.rejected[1].1.contains("op_created_at"),
        "{:?}",
        outcome.rejected
    );
    assert!(
        outcome.rejected[2].1.contains("pause"),
        "{:?}",
        outcome.rejected
    );
    // Malformed direct invocations.
    for payload in [
        json!({"action": "stop"}),
        json!({"action": "stop", "select": "colour=red"}),
        json!({"action": "trigger", "schedule": "missing"}),
    ] {
        let result = match Invocation::parse(&payload) {
            Ok(inv) => invoke(&t.hub, inv).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("select") || err.contains("selector") || err.contains("schedule"),
            "{err}"
        );
    }
    assert_eq!(t.table_items().await, items, "nothing written to the table");
    assert_eq!(t.fleet_sizes(&fleet).await, before, "no spoke changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_trigger_runs_the_schedules_wave_now() {
    let (t, fleet) = fleet_hub().await;
    let now = t.clock.now();
    let mut s = schedule("dev-stop", "0 19 * * 1-5", "stop", now);
    s.selector = "kind=nodegroup,tag:env=dev".parse().unwrap();
    t.hub.store.create_schedule(&s).await.unwrap();
    let op = t
        .run(json!({"action": "trigger", "schedule": "dev-stop"}))
        .await;
    let selected: Vec<_> = fleet
        .iter()
        .filter(|f| is_dev(f) && f.kind == TargetKind::Nodegroup)
        .collect();
    assert_eq!(
        (op.status, op.counts.succeeded),
        (OpStatus::Succeeded, selected.len() as u64)
    );
    for f in selected {
        assert_eq!(t.sizes(f).await.desired, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_that_was_down_catches_up_each_missed_fire_once() {
    let (t, _fleet) = fleet_hub().await;
    let now = t.clock.now();
    let mut every = schedule("quarter", "*/15 * * * *", "stop", now);
    every.selector = "kind=asg,name=nothing-matches".parse().unwrap();
    t.hub.store.create_schedule(&every).await.unwrap();
    // Down from 12:00 to 12:50: fires 12:15, 12:30, 12:45 are all inside the 60-minute window.
    t.clock
        .set(Utc.with_ymd_and_hms(2027, 1, 4, 12, 50, 0).unwrap());
    let report = poller::tick(&t.hub).await.unwrap();
    assert_eq!(report.created.len(), 3, "{report:?}");
    assert!(poller::tick(&t.hub).await.unwrap().created.is_empty());
    let s = t.hub.store.get_schedule("quarter").await.unwrap().unwrap();
    assert_eq!(
        s.next_fire,
        Some(Utc.with_ymd_and_hms(2027, 1, 4, 13, 0, 0).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_created_after_discovery_is_found_once_the_inventory_is_stale() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 12, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let regions = vec!["eu-west-1".to_string()];
    let fleet = demo_fleet(&t.accounts, &regions, 2, 0);
    t.seed(&fleet).await;
    let stop = json!({"action": "stop", "select": "kind=asg"});
    invoke(&t.hub, Invocation::parse(&stop).unwrap())
        .await
        .unwrap();
    t.drain().await;

    // A new group appears in the spoke after the inventory was cached.
    let mut late = fleet[0].clone();
    late.name = "late-web".into();
    late.sizes = Sizes::new(1, 3, 2);
    t.seed(std::slice::from_ref(&late)).await;
    let fresh = invoke(&t.hub, Invocation::parse(&stop).unwrap())
        .await
        .unwrap();
    t.drain().await;
    let op = t
        .hub
        .store
        .get_operation(&fresh.operation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        op.counts.total, 2,
        "inside the freshness window the cache is used"
    );

    t.clock
        .advance(t.hub.settings.inventory_ttl + chrono::Duration::minutes(1));
    let stale = invoke(&t.hub, Invocation::parse(&stop).unwrap())
        .await
        .unwrap();
    t.drain().await;
    let op = t
        .hub
        .store
        .get_operation(&stale.operation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((op.counts.total, op.counts.succeeded), (3, 1));
    assert_eq!(t.sizes(&late).await, Sizes::new(0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_change_event_makes_the_next_operation_list_the_account_live() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 12, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 1, 0);
    t.seed(&fleet).await;
    let stop = json!({"action": "stop", "select": "kind=asg"});
    assert_eq!(t.run(stop.clone()).await.counts.total, 1);
    let mut late = fleet[0].clone();
    late.name = "late-web".into();
    t.seed(std::slice::from_ref(&late)).await;
    curfew_core::service::router::spoke_changed(&t.hub, &late.account, "eu-west-1")
        .await
        .unwrap();
    let op = t.run(stop).await;
    assert_eq!((op.counts.total, op.counts.succeeded), (2, 1), "{op:?}");
}

/// Live discovery through the real adapter and SDK, over HTTP: more than twice as many node
/// groups per cluster as discovery starts with in flight, so its describes run many at a time
/// and its limit grows; every node group is found once, each cluster's together, with its own
/// tags and its cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_discovery_finds_every_node_group_of_a_region_once_each_clusters_together() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 12, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let per_cluster = 2 * curfew_aws::spokes::EKS_DESCRIBE_CONCURRENCY + 8;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 3, per_cluster);
    t.seed(&fleet).await;
    let account = t
        .hub
        .store
        .get_account(&t.accounts[0])
        .await
        .unwrap()
        .unwrap();

    let found = t
        .hub
        .spokes
        .discover(&account.role, "eu-west-1")
        .await
        .unwrap();

    let nodegroups: Vec<(String, String)> = found
        .iter()
        .filter(|f| f.kind == TargetKind::Nodegroup)
        .map(|f| (f.cluster.clone().unwrap(), f.name.clone()))
        .collect();
    let mut seeded: Vec<(String, String)> = fleet
        .iter()
        .filter(|f| f.kind == TargetKind::Nodegroup)
        .map(|f| (f.cluster.clone().unwrap(), f.name.clone()))
        .collect();
    assert_eq!(nodegroups.len(), 2 * per_cluster);
    // Each cluster's node groups come together, in the cluster order EKS lists.
    let clusters: Vec<&String> = nodegroups
        .iter()
        .map(|(c, _)| c)
        .collect::<Vec<_>>()
        .chunk_by(|a, b| a == b)
        .map(|run| run[0])
        .collect();
    assert_eq!(clusters.len(), 2, "{clusters:?}");
    let mut sorted = nodegroups.clone();
    sorted.sort();
    seeded.sort();
    assert_eq!(sorted, seeded, "every node group found once");
    for f in &fleet {
        let target = found
            .iter()
            .find(|d| d.kind == f.kind && d.cluster == f.cluster && d.name == f.name)
            .unwrap_or_else(|| panic!("{} not found", f.name));
        assert_eq!(target.tags, f.tags, "{}", f.name);
        assert_eq!(target.cluster_tags, f.cluster_tags, "{}", f.name);
    }
    assert_eq!(found.len(), fleet.len());
}
