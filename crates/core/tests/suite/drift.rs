//! Drift (issue 8): every `drift_interval` the poller starts one drift check of the targets
//! curfew holds asleep; it records what something else changed on each, and changes nothing.

use std::sync::Arc;

use crate::common::*;
use chrono::Duration;
use curfew_core::cluster::{ClusterRef, Workload, WorkloadKind};
use curfew_core::fakes::FakeClusters;
use curfew_core::hold::HOLD_TAG;
use curfew_core::operation::{OpSource, OpStatus, TaskStatus};
use curfew_core::ports::OperationStore;
use curfew_core::service::poller::tick;
use curfew_core::service::{Hub, Settings};
use curfew_core::target::{Processes, Sizes, Target, TargetKind};

/// The world with drift checks every hour.
async fn drift_world() -> World {
    let mut w = world(&[OTHER]).await;
    w.hub = Hub {
        settings: Settings {
            drift_interval: Duration::hours(1),
            ..w.hub.settings.clone()
        },
        ..w.hub.clone()
    };
    w
}

/// Runs a poller tick and drains the queues; the id of the drift check it started.
async fn check(w: &World) -> Option<String> {
    let report = tick(&w.hub).await.unwrap();
    assert!(w.drain().await.settled);
    report.drift_check
}

#[tokio::test]
async fn one_drift_check_per_interval_looks_only_at_the_targets_held_asleep() {
    let w = drift_world().await;
    // Only DEV's targets sleep; OTHER's ASG stays awake and is not checked.
    let select = curfew_core::selector::Selector::parse(&format!("account={DEV}")).unwrap();
    curfew_core::service::invocation::invoke(
        &w.hub,
        curfew_core::service::invocation::Invocation::Stop {
            select,
            dry_run: false,
            discovery: Default::default(),
            hold: None,
        },
    )
    .await
    .unwrap();
    assert!(w.drain().await.settled);
    w.clock.advance(Duration::hours(1));
    let id = check(&w).await.expect("a drift check this interval");
    assert_eq!(id, "20270104T1900Z-drift-check");
    let op = w.op(&id).await;
    assert_eq!(op.source, OpSource::Check);
    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!((op.counts.total, op.counts.succeeded), (2, 2));
    assert_eq!(
        w.task(&id, &asg(DEV)).await.reason.as_deref(),
        Some("asleep; every hold in place")
    );
    // A later tick in the same hour starts nothing; the next hour's tick does.
    w.clock.advance(Duration::minutes(30));
    assert_eq!(check(&w).await, None);
    w.clock.advance(Duration::minutes(30));
    assert_eq!(
        check(&w).await.as_deref(),
        Some("20270104T2000Z-drift-check")
    );
}

#[tokio::test]
async fn a_woken_target_is_recorded_with_what_changed_and_left_as_it_is() {
    let w = drift_world().await;
    w.run(true).await;
    // Someone wakes the ASG by hand and resumes its processes.
    w.spokes.resize(&asg(DEV).key(), Sizes::new(1, 4, 3));
    w.spokes.set_suspended(&asg(DEV).key(), Processes::NONE);
    let before = w.store.last_ops();
    w.clock.advance(Duration::hours(1));
    let id = check(&w).await.unwrap();
    let task = w.task(&id, &asg(DEV)).await;
    assert_eq!(task.status, TaskStatus::Skipped);
    assert_eq!(
        task.reason.as_deref(),
        Some(
            "drift: woken: sizes 1/4/3 (asleep is 0/0/0; the saved baseline is 1/4/2); \
             processes resumed: ScheduledActions, AlarmNotification"
        )
    );
    assert_eq!(
        w.sizes(&asg(DEV)),
        Sizes::new(1, 4, 3),
        "a check changes nothing"
    );
    assert_eq!(w.baseline(&asg(DEV)).await, Some(ASG_SIZES));
    assert_eq!(w.store.last_ops(), before, "a check takes no lease");
    // The node group is still asleep with every hold in place.
    assert_eq!(
        w.task(&id, &nodegroup(DEV)).await.status,
        TaskStatus::Succeeded
    );
}

#[tokio::test]
async fn a_start_planned_before_a_check_still_wakes_the_fleet() {
    let w = drift_world().await;
    w.run(true).await;
    w.clock.advance(Duration::hours(1));
    let start = w.begin(false, false).await;
    let report = tick(&w.hub).await.unwrap();
    assert!(report.drift_check.is_some());
    assert!(w.drain().await.settled);
    assert_eq!(w.op(&start).await.counts.succeeded, 3);
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES);
    assert_eq!(w.sizes(&nodegroup(DEV)), NG_SIZES);
}

#[tokio::test]
async fn a_cluster_whose_autoscaler_came_back_is_recorded_on_its_node_groups() {
    let mut w = drift_world().await;
    let clusters = Arc::new(FakeClusters::new());
    w.hub = Hub {
        clusters: clusters.clone(),
        ..w.hub.clone()
    };
    let mut ng: Target = target(DEV, TargetKind::Nodegroup, Some("dev"), "workers");
    ng.cluster_tags
        .insert(HOLD_TAG.to_string(), "ca-deployment".to_string());
    w.spokes.add(ng.clone(), NG_SIZES);
    let dev = ClusterRef {
        role: curfew_core::account::SpokeRole {
            account: DEV.into(),
            role_arn: format!("arn:aws:iam::{DEV}:role/curfew-spoke"),
            external_id: None,
        },
        region: REGION.into(),
        cluster: "dev".into(),
    };
    let autoscaler = |replicas| Workload {
        kind: WorkloadKind::Deployment,
        namespace: "kube-system".into(),
        name: "cluster-autoscaler".into(),
        replicas,
        excluded: false,
    };
    clusters.add_workload(&dev, autoscaler(1));
    w.run(true).await;
    clusters.add_workload(&dev, autoscaler(1));
    w.clock.advance(Duration::hours(1));
    let id = check(&w).await.unwrap();
    assert_eq!(
        w.task(&id, &ng).await.reason.as_deref(),
        Some("drift: cluster dev: Deployment kube-system/cluster-autoscaler awake again")
    );
    assert_eq!(
        clusters.replicas(
            &dev,
            WorkloadKind::Deployment,
            "kube-system",
            "cluster-autoscaler"
        ),
        Some(1),
        "recorded, not acted on"
    );
}

#[tokio::test]
async fn without_a_drift_interval_the_poller_starts_no_check() {
    let w = world(&[]).await;
    w.run(true).await;
    w.clock.advance(Duration::hours(3));
    assert_eq!(check(&w).await, None);
    let ops = w.store.list_operations(10).await.unwrap();
    assert!(ops.iter().all(|o| !o.check), "{ops:?}");
}
