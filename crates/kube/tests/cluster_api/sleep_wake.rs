//! A sleep then a wake, as the worker would make them, in order.

use super::*;

/// What a sleep then a wake of a cluster held by `ca-deployment+karpenter` make of the port,
/// in the order the issue fixes: sleep pauses Cluster Autoscaler, closes every NodePool
/// (`cpu: "0"`) and drains it; wake restores the limits, then Cluster Autoscaler.
#[tokio::test]
async fn a_sleep_then_a_wake_reach_the_api_server_in_that_order() {
    let h = Harness::start().await;
    let scale = format!("{CA_DEPLOYMENT}/scale");
    let default = format!("{NODEPOOLS}/default");
    let spot = format!("{NODEPOOLS}/spot");
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
