//! A sleep then a wake in order: as the adapter is called, and as the worker itself makes them.

use super::*;

/// The scale subresource of Cluster Autoscaler's Deployment and the two NodePools' paths.
fn paths() -> (String, String, String) {
    (
        format!("{CA_DEPLOYMENT}/scale"),
        format!("{NODEPOOLS}/default"),
        format!("{NODEPOOLS}/spot"),
    )
}

/// Scripts the answers of a cluster with Cluster Autoscaler (2 replicas) and two NodePools
/// (`default` limited, `spot` not), as a sleep and then a wake read them.
fn script_sleep_and_wake(h: &Harness) {
    let (scale, default, spot) = paths();
    let default_limits = json!({ "cpu": "1000", "memory": "1000Gi" });
    let asleep = json!({ "cpu": "0" });
    h.server.answer(
        "GET",
        CA_DEPLOYMENT,
        200,
        json::deployment("kube-system", "cluster-autoscaler", Some(2), &[]),
    );
    h.server.answer(
        "PATCH",
        &scale,
        200,
        json::scale("kube-system", "cluster-autoscaler", 0),
    );
    h.server.answer(
        "PATCH",
        &scale,
        200,
        json::scale("kube-system", "cluster-autoscaler", 2),
    );
    h.server.answer(
        "GET",
        NODEPOOLS,
        200,
        json::node_pool_list(vec![
            json::node_pool("default", default_limits.clone()),
            json::node_pool("spot", serde_json::Value::Null),
        ]),
    );
    // Each pool read as it was before the sleep, then as the sleep left it.
    h.server.answer(
        "GET",
        &default,
        200,
        json::node_pool("default", default_limits.clone()),
    );
    h.server.answer(
        "GET",
        &default,
        200,
        json::node_pool("default", asleep.clone()),
    );
    h.server.answer(
        "GET",
        &spot,
        200,
        json::node_pool("spot", serde_json::Value::Null),
    );
    h.server.answer(
        "PATCH",
        &default,
        200,
        json::node_pool("default", asleep.clone()),
    );
    h.server
        .answer("PATCH", &spot, 200, json::node_pool("spot", asleep.clone()));
    h.server.answer(
        "GET",
        &format!("{NODECLAIMS}?labelSelector=karpenter.sh/nodepool=default"),
        200,
        json::metadata_list(vec![json::labelled_metadata(
            "default-abcde",
            "default",
            false,
        )]),
    );
    h.server.answer(
        "GET",
        &format!("{NODECLAIMS}?labelSelector=karpenter.sh/nodepool=spot"),
        200,
        json::metadata_list(vec![]),
    );
    h.server.answer(
        "DELETE",
        &format!("{NODECLAIMS}/default-abcde"),
        200,
        json::node_claim_being_deleted("default-abcde", "default"),
    );
    h.server
        .answer("GET", NODES, 200, json::metadata_list(vec![]));
}

/// What a sleep then a wake of a cluster held by `ca-deployment+karpenter` make of the port,
/// in the order the issue fixes: sleep pauses Cluster Autoscaler, closes every NodePool
/// (`cpu: "0"`) and drains it; wake restores the limits, then Cluster Autoscaler.
#[tokio::test]
async fn a_sleep_then_a_wake_reach_the_api_server_in_that_order() {
    let h = Harness::start().await;
    script_sleep_and_wake(&h);
    let (scale, default, spot) = paths();
    let at = dev();
    let c = &h.clusters;

    // Sleep.
    let ca_replicas = c
        .deployment_replicas(&at, "kube-system", "cluster-autoscaler")
        .await
        .unwrap()
        .unwrap();
    c.scale(
        &at,
        WorkloadKind::Deployment,
        "kube-system",
        "cluster-autoscaler",
        0,
    )
    .await
    .unwrap();
    let pools = c.node_pools(&at).await.unwrap();
    let cpu_zero = BTreeMap::from([("cpu".to_string(), "0".to_string())]);
    for pool in &pools {
        c.set_node_pool_limits(&at, &pool.name, Some(&cpu_zero))
            .await
            .unwrap();
    }
    for pool in &pools {
        c.drain_node_pool(&at, &pool.name).await.unwrap();
    }
    // Wake.
    for pool in &pools {
        c.set_node_pool_limits(&at, &pool.name, pool.limits.as_ref())
            .await
            .unwrap();
    }
    c.scale(
        &at,
        WorkloadKind::Deployment,
        "kube-system",
        "cluster-autoscaler",
        ca_replicas,
    )
    .await
    .unwrap();

    let selector = |pool: &str| format!("labelSelector=karpenter.sh/nodepool={pool}");
    assert_eq!(
        h.server.lines(),
        [
            format!("GET {CA_DEPLOYMENT}"),
            format!("PATCH {scale}?fieldManager=curfew"),
            format!("GET {NODEPOOLS}"),
            format!("GET {default}"),
            format!("PATCH {default}?fieldManager=curfew"),
            format!("GET {spot}"),
            format!("PATCH {spot}?fieldManager=curfew"),
            format!("GET {NODECLAIMS}?{}", selector("default")),
            format!("DELETE {NODECLAIMS}/default-abcde"),
            format!("GET {NODES}?{}", selector("default")),
            format!("GET {NODECLAIMS}?{}", selector("spot")),
            format!("GET {NODES}?{}", selector("spot")),
            format!("GET {default}"),
            format!("PATCH {default}?fieldManager=curfew"),
            format!("PATCH {spot}?fieldManager=curfew"),
            format!("PATCH {scale}?fieldManager=curfew"),
        ]
    );
    assert_sleep_and_wake_patches(&h);
}

/// The same cluster put to sleep and woken by the worker itself (`curfew_core::service`, with
/// the state table and the spoke in memory and this adapter in front of the fake API server):
/// the stop saves what it reads, pauses Cluster Autoscaler, closes and drains the NodePools
/// before the node group shrinks; the start wakes the node group, then restores the limits and
/// Cluster Autoscaler exactly. Exactly these requests, in this order, and nothing else.
#[tokio::test]
async fn the_worker_sleeps_and_wakes_a_held_cluster_through_the_api_server_in_order() {
    use curfew_core::account::Account;
    use curfew_core::hold::HOLD_TAG;
    use curfew_core::service::invocation::{invoke, Invocation};
    use curfew_core::service::Hub;
    use curfew_core::target::{Sizes, Target, TargetKind};

    let h = Harness::start().await;
    script_sleep_and_wake(&h);
    let (scale, default, spot) = paths();
    let (hub, _store, router_q, task_q, spokes) = curfew_core::fakes::hub(h.clock.clone());
    let hub = Hub {
        clusters: Arc::new(KubeClusters::new(h.access.clone(), h.clock.clone()).with_retries(0)),
        ..hub
    };
    let at = dev();
    hub.store
        .put_account(
            &Account::new(
                &at.role.account,
                &at.role.role_arn,
                at.role.external_id.as_deref(),
                std::slice::from_ref(&at.region),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let workers = Target {
        account: at.role.account.clone(),
        region: at.region.clone(),
        kind: TargetKind::Nodegroup,
        cluster: Some(at.cluster.clone()),
        name: "workers".into(),
        tags: BTreeMap::new(),
        cluster_tags: BTreeMap::from([(
            HOLD_TAG.to_string(),
            "ca-deployment+karpenter".to_string(),
        )]),
        instance_types: Vec::new(),
    };
    let sizes = Sizes::new(2, 5, 3);
    spokes.add(workers.clone(), sizes);
    let run = |action: &'static str| {
        let hub = hub.clone();
        let (router_q, task_q) = (router_q.clone(), task_q.clone());
        async move {
            let op = invoke(
                &hub,
                Invocation::parse(&json!({"action": action, "select": "name=workers"})).unwrap(),
            )
            .await
            .unwrap();
            assert!(
                curfew_core::fakes::drain(&hub, &router_q, &task_q)
                    .await
                    .settled
            );
            hub.store
                .get_operation(&op.operation_id)
                .await
                .unwrap()
                .unwrap()
        }
    };

    let stop = run("stop").await;
    assert_eq!(stop.counts.succeeded, 1, "{stop:?}");
    assert_eq!(spokes.sizes(&workers.key()), Some(Sizes::new(0, 5, 0)));
    let asleep = h.server.lines().len();
    h.clock.advance(chrono::Duration::hours(12));
    let start = run("start").await;
    assert_eq!(start.counts.succeeded, 1, "{start:?}");
    assert_eq!(spokes.sizes(&workers.key()), Some(sizes));

    let selector = |pool: &str| format!("labelSelector=karpenter.sh/nodepool={pool}");
    let lines = h.server.lines();
    assert_eq!(
        lines[..asleep],
        [
            // Sleep: save what the modes pause, then pause in order.
            format!("GET {CA_DEPLOYMENT}"),
            format!("GET {NODEPOOLS}"),
            format!("PATCH {scale}?fieldManager=curfew"),
            format!("GET {default}"),
            format!("PATCH {default}?fieldManager=curfew"),
            format!("GET {spot}"),
            format!("PATCH {spot}?fieldManager=curfew"),
            format!("GET {NODECLAIMS}?{}", selector("default")),
            format!("DELETE {NODECLAIMS}/default-abcde"),
            format!("GET {NODES}?{}", selector("default")),
            format!("GET {NODECLAIMS}?{}", selector("spot")),
            format!("GET {NODES}?{}", selector("spot")),
        ]
    );
    assert_eq!(
        lines[asleep..],
        [
            // Wake, once the node group is back: limits, then Cluster Autoscaler.
            format!("GET {default}"),
            format!("PATCH {default}?fieldManager=curfew"),
            format!("PATCH {spot}?fieldManager=curfew"),
            format!("PATCH {scale}?fieldManager=curfew"),
        ]
    );
    assert_sleep_and_wake_patches(&h);
}

/// The merge patches of a sleep then a wake of the scripted cluster, in order: Cluster
/// Autoscaler to 0, each NodePool closed (only `cpu` left), each restored (unset stays unset),
/// Cluster Autoscaler back to 2.
fn assert_sleep_and_wake_patches(h: &Harness) {
    let bodies: Vec<serde_json::Value> = h
        .server
        .received()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.body.unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            json!({ "spec": { "replicas": 0 } }),
            json!({ "spec": { "limits": { "cpu": "0", "memory": null } } }),
            json!({ "spec": { "limits": { "cpu": "0" } } }),
            json!({ "spec": { "limits": { "cpu": "1000", "memory": "1000Gi" } } }),
            json!({ "spec": { "limits": null } }),
            json!({ "spec": { "replicas": 2 } }),
        ]
    );
}
