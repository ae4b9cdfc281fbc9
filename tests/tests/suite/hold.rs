//! Asleep means asleep, on the emulator through the real adapters: an ASG stop suspends
//! `ScheduledActions` and `AlarmNotification` (leaving the ones its owners suspended alone) and
//! a start resumes exactly those; a node group stop in a cluster that opts into `ca-tags`
//! removes Cluster Autoscaler's tags from the node group's own ASG and the wake puts them back.
//! Both hold even when the worker dies right after any one of its calls and the message is
//! delivered again, twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use curfew_aws::local::FleetTarget;
use curfew_core::clock::Clock;
use curfew_core::operation::{OpStatus, TaskStatus};
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::{worker_batch, Delivery, Hub};
use curfew_core::target::{Processes, Sizes, TargetKind};
use curfew_core::trail::ChangeKind;
use curfew_tests::chaos::faults::{invoke_once, ChaosSpokes, ChaosStore, Faults};
use curfew_tests::item_size::WRITE_UNIT_BYTES;
use curfew_tests::{key, spawn_hub, trail_of, TestHub};
use serde_json::json;

const SIZES: Sizes = Sizes::new(1, 4, 2);
/// Port calls a stop or start of one ASG makes, settling its operation included, and one more.
const CRASH_POINTS: usize = 16;

async fn suspended(t: &TestHub, target: &FleetTarget) -> Processes {
    let out = t
        .autoscaling(&target.account, &target.region)
        .await
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&target.name)
        .send()
        .await
        .unwrap();
    Processes::from_names(
        out.auto_scaling_groups()[0]
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name()),
    )
}

/// Runs one operation on `target`: the first delivery dies right after its `crash_after`-th
/// port call; after the lease expires the message is delivered again, twice. The largest item
/// of each kind in the table, after the crash and once done, is kept in `sizes`.
async fn run_crashing(
    t: &TestHub,
    target: &FleetTarget,
    action: &str,
    crash_after: u64,
    sizes: &mut BTreeMap<String, usize>,
) -> bool {
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": action, "select": format!("name={}", target.name)}))
            .unwrap(),
    )
    .await
    .unwrap();
    let messages = t.route_and_take_tasks().await;
    assert_eq!(messages.len(), 1);
    let msg = &messages[0];
    let faults = Arc::new(Faults::crash_after(crash_after, t.clock.clone()));
    let crashing = Hub {
        store: Arc::new(ChaosStore {
            inner: t.hub.store.clone(),
            faults: faults.clone(),
        }),
        spokes: Arc::new(ChaosSpokes {
            inner: t.hub.spokes.clone(),
            faults: faults.clone(),
        }),
        ..t.hub.clone()
    };
    // Delivered as the worker Lambda takes it: a batch, whose task ends are held and written
    // together once its targets are worked.
    let delivery = |receive_count| Delivery {
        message_id: "m-1".into(),
        body: serde_json::to_string(msg).unwrap(),
        receive_count,
        trace_header: None,
    };
    let deadline = t.clock.now() + Duration::hours(1);
    let first = invoke_once(deadline, worker_batch(&crashing, &[delivery(1)])).await;
    let crashed = first.is_none();
    if !crashed {
        assert!(
            faults.calls() < crash_after,
            "an invocation past its crash point must not return"
        );
    }
    TestHub::keep_largest(sizes, t.item_sizes().await);
    t.clock
        .advance(t.hub.settings.lease_ttl + Duration::seconds(1));
    for receive in 2..4 {
        let outcome = worker_batch(&t.hub, &[delivery(receive)]).await;
        assert!(outcome.failed.is_empty(), "{outcome:?}");
        let task = t
            .hub
            .store
            .get_task(&msg.op_id, &msg.target.key())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
    }
    let op = t
        .hub
        .store
        .get_operation(&op.operation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (op.status, op.counts.succeeded, op.counts.total),
        (OpStatus::Succeeded, 1, 1),
        "{action} crashed after call {crash_after}"
    );
    TestHub::keep_largest(sizes, t.item_sizes().await);
    crashed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asg_stop_and_start_that_crash_after_any_call_end_as_if_nothing_had_crashed() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet: Vec<FleetTarget> = (0..CRASH_POINTS)
        .map(|i| FleetTarget {
            account: t.accounts[0].clone(),
            region: "eu-west-1".into(),
            kind: TargetKind::Asg,
            cluster: None,
            name: format!("hold-{i:02}"),
            sizes: SIZES,
            tags: Default::default(),
            cluster_tags: Default::default(),
        })
        .collect();
    t.seed(&fleet).await;
    let owners = Processes {
        scheduled_actions: false,
        alarm_notification: true,
    };
    for target in &fleet {
        t.autoscaling(&target.account, &target.region)
            .await
            .suspend_processes()
            .auto_scaling_group_name(&target.name)
            .scaling_processes("AlarmNotification")
            .send()
            .await
            .unwrap();
    }

    let mut crashes = 0;
    let mut sizes = BTreeMap::new();
    for (i, target) in fleet.iter().enumerate() {
        let crash_after = i as u64 + 1;
        let stop_crashed = run_crashing(&t, target, "stop", crash_after, &mut sizes).await;
        assert_eq!(
            t.sizes(target).await,
            Sizes::new(0, 0, 0),
            "{}",
            target.name
        );
        assert_eq!(
            suspended(&t, target).await,
            Processes::HELD,
            "{}",
            target.name
        );
        let baseline = t
            .hub
            .store
            .get_baseline(&key(target))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (baseline.sizes, baseline.held),
            (SIZES, Processes::HELD.minus(owners)),
            "{}",
            target.name
        );

        t.clock.advance(Duration::hours(1));
        let start_crashed = run_crashing(&t, target, "start", crash_after, &mut sizes).await;
        crashes += u64::from(stop_crashed) + u64::from(start_crashed);
        assert_eq!(t.sizes(target).await, SIZES, "{}", target.name);
        assert_eq!(
            suspended(&t, target).await,
            owners,
            "{}: the owners' suspension stays, curfew's is gone",
            target.name
        );
        // The trail holds each change once, whichever call the crash followed.
        let kinds: Vec<_> = trail_of(&t, target).await.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [ChangeKind::TargetStopped, ChangeKind::TargetStarted],
            "{} crashed after call {crash_after}",
            target.name
        );
        assert!(t
            .hub
            .store
            .get_baseline(&key(target))
            .await
            .unwrap()
            .is_none());
    }
    // A stop makes 10 port calls (its baseline saved with the lease's mark of the change in
    // flight in one write) and a start 10 (the lease's mark on its own), each reading its task
    // once, under the lease, and the baseline with the lease's take, and appending its change
    // to its delivery's new chain without reading a head: every one of them was a crash point.
    assert_eq!(crashes, 10 + 10);
    assert_each_target_write_fits_a_unit(&sizes);
}

/// The items a wave writes for each target (its lease item with the baseline and the change in
/// flight, its task, its counter stripe, its audit record and chain head) fit in one write unit
/// in every state the crash points left, as the cost model (`counting::dynamo`) assumes.
fn assert_each_target_write_fits_a_unit(sizes: &BTreeMap<String, usize>) {
    for kind in [
        "TARGET/LEASE",
        "OP/TASK",
        "OP/COUNT",
        "AUDIT/REC",
        "AUDIT/HEAD",
    ] {
        let size = sizes.get(kind).copied();
        assert!(
            size.is_some_and(|s| s <= WRITE_UNIT_BYTES),
            "{kind}: {size:?} bytes at most (all: {sizes:?})"
        );
    }
}

/// The Cluster Autoscaler tags on `asg`, sorted.
async fn tags_on(t: &TestHub, target: &FleetTarget, asg: &str) -> Vec<(String, String)> {
    let out = t
        .autoscaling(&target.account, &target.region)
        .await
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = out.auto_scaling_groups()[0]
        .tags()
        .iter()
        .filter(|t| {
            t.key()
                .is_some_and(|k| k.starts_with("k8s.io/cluster-autoscaler/"))
        })
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    tags.sort();
    tags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_group_stop_and_start_in_ca_tags_mode_that_crash_after_any_call_restore_the_tags() {
    const NG_CRASH_POINTS: usize = 19;
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let cluster_tags = [("curfew/hold".to_string(), "ca-tags".to_string())].into();
    let fleet: Vec<FleetTarget> = (0..NG_CRASH_POINTS)
        .map(|i| FleetTarget {
            account: t.accounts[0].clone(),
            region: "eu-west-1".into(),
            kind: TargetKind::Nodegroup,
            cluster: Some("ca".into()),
            name: format!("ng-{i:02}"),
            sizes: Sizes::new(2, 5, 3),
            tags: Default::default(),
            cluster_tags: std::collections::BTreeMap::clone(&cluster_tags),
        })
        .collect();
    t.seed(&fleet).await;
    // moto does not create a node group's own ASG: create it under the name EKS reports, with
    // Cluster Autoscaler's auto-discovery tags (and the tag that keeps discovery from listing it
    // as an ASG of its own).
    let autoscaling = t.autoscaling(&t.accounts[0], "eu-west-1").await;
    autoscaling
        .create_launch_configuration()
        .launch_configuration_name("ng-lc")
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    let owned = vec![
        (
            "k8s.io/cluster-autoscaler/ca".to_string(),
            "owned".to_string(),
        ),
        (
            "k8s.io/cluster-autoscaler/enabled".to_string(),
            "true".to_string(),
        ),
    ];
    let mut asg_of = std::collections::HashMap::new();
    for target in &fleet {
        let ng = t
            .eks(&target.account, &target.region)
            .await
            .describe_nodegroup()
            .cluster_name("ca")
            .nodegroup_name(&target.name)
            .send()
            .await
            .unwrap()
            .nodegroup
            .unwrap();
        let asg = ng.resources.unwrap().auto_scaling_groups()[0]
            .name()
            .unwrap()
            .to_string();
        let tag = |k: &str, v: &str| {
            aws_sdk_autoscaling::types::Tag::builder()
                .key(k)
                .value(v)
                .resource_id(&asg)
                .resource_type("auto-scaling-group")
                .propagate_at_launch(true)
                .build()
        };
        autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&asg)
            .launch_configuration_name("ng-lc")
            .availability_zones("eu-west-1a")
            .min_size(2)
            .max_size(5)
            .desired_capacity(3)
            .tags(tag("eks:nodegroup-name", &target.name))
            .tags(tag(&owned[0].0, &owned[0].1))
            .tags(tag(&owned[1].0, &owned[1].1))
            .send()
            .await
            .unwrap();
        asg_of.insert(target.name.clone(), asg);
    }

    let mut crashes = 0;
    let mut sizes = BTreeMap::new();
    for (i, target) in fleet.iter().enumerate() {
        let asg = &asg_of[&target.name];
        let crash_after = i as u64 + 1;
        let stop_crashed = run_crashing(&t, target, "stop", crash_after, &mut sizes).await;
        assert_eq!(
            t.sizes(target).await,
            Sizes::new(0, 5, 0),
            "{}",
            target.name
        );
        assert!(tags_on(&t, target, asg).await.is_empty(), "{}", target.name);
        let baseline = t
            .hub
            .store
            .get_baseline(&key(target))
            .await
            .unwrap()
            .unwrap();
        let mut saved: Vec<(String, String)> = baseline
            .ca_tags
            .iter()
            .map(|c| (c.key.clone(), c.value.clone()))
            .collect();
        saved.sort();
        assert_eq!(saved, owned, "{}", target.name);

        t.clock.advance(Duration::hours(1));
        let start_crashed = run_crashing(&t, target, "start", crash_after, &mut sizes).await;
        crashes += u64::from(stop_crashed) + u64::from(start_crashed);
        assert_eq!(
            t.sizes(target).await,
            Sizes::new(2, 5, 3),
            "{}",
            target.name
        );
        assert_eq!(tags_on(&t, target, asg).await, owned, "{}", target.name);
        assert!(t
            .hub
            .store
            .get_baseline(&key(target))
            .await
            .unwrap()
            .is_none());
    }
    // A node group stop makes 13 port calls (its CA tags read and removed, the baseline saved
    // with the lease's mark, the EKS update recorded on the mark and read back, the append to
    // its delivery's chain; its task read once, under the lease, and the baseline with the
    // lease's take) and a start 12 (the lease's mark on its own): every one of them was a
    // crash point.
    assert_eq!(crashes, 13 + 12);
    // With this test's short names (cluster "ca", group "ng-09") the node group's lease item,
    // which carries its Cluster Autoscaler tags, is the largest: 908 bytes (docs/PERFORMANCE.md).
    assert_each_target_write_fits_a_unit(&sizes);
}
