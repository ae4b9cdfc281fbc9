//! NodePools and NodeClaims: limits read and patched exactly, claims deleted by label, nodes
//! counted.

use super::*;

#[tokio::test]
async fn node_pools_are_listed_with_their_limits_and_numeric_limits_read_as_quantities() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        NODEPOOLS,
        200,
        json::node_pool_list(vec![
            json::node_pool("default", json!({ "cpu": 1000, "memory": "1000Gi" })),
            json::node_pool("gpu", serde_json::Value::Null),
        ]),
    );

    let pools = h.clusters.node_pools(&dev()).await.unwrap();

    assert_eq!(
        pools,
        [
            NodePool {
                name: "default".into(),
                limits: Some(BTreeMap::from([
                    ("cpu".to_string(), "1000".to_string()),
                    ("memory".to_string(), "1000Gi".to_string()),
                ])),
            },
            NodePool {
                name: "gpu".into(),
                limits: None,
            },
        ]
    );
    assert_eq!(h.server.lines(), [format!("GET {NODEPOOLS}")]);
}

#[tokio::test]
async fn setting_node_pool_limits_merge_patches_them_and_nulls_the_limits_not_asked_for() {
    let h = Harness::start().await;
    let path = format!("{NODEPOOLS}/default");
    h.server.answer(
        "GET",
        &path,
        200,
        json::node_pool("default", json!({ "cpu": "1000", "memory": "1000Gi" })),
    );
    h.server.answer(
        "PATCH",
        &path,
        200,
        json::node_pool("default", json!({ "cpu": "0" })),
    );

    let asleep = BTreeMap::from([("cpu".to_string(), "0".to_string())]);
    h.clusters
        .set_node_pool_limits(&dev(), "default", Some(&asleep))
        .await
        .unwrap();

    assert_eq!(
        h.server.lines(),
        [
            format!("GET {path}"),
            format!("PATCH {path}?fieldManager=curfew")
        ]
    );
    let patch = &h.server.received()[1];
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(
        patch.body,
        Some(json!({ "spec": { "limits": { "cpu": "0", "memory": null } } }))
    );
}

#[tokio::test]
async fn removing_node_pool_limits_merge_patches_them_to_null_without_reading_first() {
    let h = Harness::start().await;
    let path = format!("{NODEPOOLS}/default");
    h.server.answer(
        "PATCH",
        &path,
        200,
        json::node_pool("default", serde_json::Value::Null),
    );

    h.clusters
        .set_node_pool_limits(&dev(), "default", None)
        .await
        .unwrap();

    assert_eq!(
        h.server.lines(),
        [format!("PATCH {path}?fieldManager=curfew")]
    );
    let patch = &h.server.received()[0];
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(patch.body, Some(json!({ "spec": { "limits": null } })));
}

#[tokio::test]
async fn node_pool_limits_already_as_asked_are_not_written_again() {
    let h = Harness::start().await;
    let path = format!("{NODEPOOLS}/default");
    h.server.answer(
        "GET",
        &path,
        200,
        json::node_pool("default", json!({ "cpu": 0 })),
    );

    let asleep = BTreeMap::from([("cpu".to_string(), "0".to_string())]);
    h.clusters
        .set_node_pool_limits(&dev(), "default", Some(&asleep))
        .await
        .unwrap();

    assert_eq!(h.server.lines(), [format!("GET {path}")]);
}

#[tokio::test]
async fn draining_a_node_pool_deletes_its_node_claims_by_label_and_counts_its_nodes() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        NODECLAIMS,
        200,
        json::metadata_list(vec![
            json::labelled_metadata("default-abcde", "default", false),
            json::labelled_metadata("default-fghij", "default", true),
            json::labelled_metadata("default-klmno", "default", false),
        ]),
    );
    for claim in ["default-abcde", "default-klmno"] {
        h.server.answer(
            "DELETE",
            &format!("{NODECLAIMS}/{claim}"),
            200,
            json::node_claim_being_deleted(claim, "default"),
        );
    }
    h.server.answer(
        "GET",
        NODES,
        200,
        json::metadata_list(vec![
            json::labelled_metadata("ip-10-0-1-17.eu-west-1.compute.internal", "default", false),
            json::labelled_metadata("ip-10-0-2-9.eu-west-1.compute.internal", "default", true),
        ]),
    );

    let left = h.clusters.drain_node_pool(&dev(), "default").await.unwrap();

    assert_eq!(
        left, 2,
        "both nodes still exist while Karpenter drains them"
    );
    assert_eq!(
        h.server.lines(),
        [
            format!("GET {NODECLAIMS}?labelSelector=karpenter.sh/nodepool=default"),
            format!("DELETE {NODECLAIMS}/default-abcde"),
            format!("DELETE {NODECLAIMS}/default-klmno"),
            format!("GET {NODES}?labelSelector=karpenter.sh/nodepool=default"),
        ],
        "the claim already being deleted is not deleted again"
    );
    let received = h.server.received();
    for list in [&received[0], &received[3]] {
        assert!(
            list.accept
                .as_deref()
                .is_some_and(|a| a.contains("as=PartialObjectMetadataList")),
            "lists ask for metadata only: {:?}",
            list.accept
        );
    }
}

#[tokio::test]
async fn a_node_claim_gone_before_its_delete_counts_as_deleted() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        NODECLAIMS,
        200,
        json::metadata_list(vec![json::labelled_metadata(
            "default-abcde",
            "default",
            false,
        )]),
    );
    h.server.answer(
        "DELETE",
        &format!("{NODECLAIMS}/default-abcde"),
        404,
        json::status(
            404,
            "NotFound",
            "nodeclaims.karpenter.sh \"default-abcde\" not found",
        ),
    );
    h.server
        .answer("GET", NODES, 200, json::metadata_list(vec![]));

    let left = h.clusters.drain_node_pool(&dev(), "default").await.unwrap();

    assert_eq!(left, 0);
    assert_eq!(h.server.received().len(), 3);
}
