//! The adapter against a fake API server on loopback: each test calls `KubeClusters` and asserts
//! on the requests that reached the server.

mod apiserver;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apiserver::{json, FakeApiServer};
use async_trait::async_trait;
use aws_credential_types::Credentials;
use chrono::{DateTime, TimeZone, Utc};
use curfew_core::account::SpokeRole;
use curfew_core::clock::ManualClock;
use curfew_core::cluster::{
    ClusterApi, ClusterRef, CronJob, Hpa, NodePool, Workload, WorkloadKind,
};
use curfew_core::ports::{ErrorKind, PortResult};
use curfew_kube::token::eks_token;
use curfew_kube::{ClusterAccess, ClusterEndpoint, KubeClusters, Timeouts};
use serde_json::json;

const MERGE_PATCH: &str = "application/merge-patch+json";
const CA_DEPLOYMENT: &str = "/apis/apps/v1/namespaces/kube-system/deployments/cluster-autoscaler";
const NODEPOOLS: &str = "/apis/karpenter.sh/v1/nodepools";
const NODECLAIMS: &str = "/apis/karpenter.sh/v1/nodeclaims";
const NODES: &str = "/api/v1/nodes";

/// Hands out the fake server's URL and fixed credentials, counting connects.
struct Loopback {
    url: String,
    certificate_authority: Option<String>,
    credentials: Credentials,
    connects: AtomicUsize,
}

#[async_trait]
impl ClusterAccess for Loopback {
    async fn connect(&self, _at: &ClusterRef) -> PortResult<ClusterEndpoint> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        Ok(ClusterEndpoint {
            url: self.url.clone(),
            certificate_authority: self.certificate_authority.clone(),
            credentials: self.credentials.clone(),
        })
    }
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 4, 19, 0, 0).unwrap()
}

fn credentials(expiry: Option<DateTime<Utc>>) -> Credentials {
    Credentials::new(
        "ASIASPOKE",
        "spoke-secret",
        Some("spoke-session-token".to_string()),
        expiry.map(Into::into),
        "test",
    )
}

fn dev() -> ClusterRef {
    ClusterRef {
        role: SpokeRole {
            account: "111111111111".into(),
            role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
            external_id: Some("ext-1".into()),
        },
        region: "eu-west-1".into(),
        cluster: "dev".into(),
    }
}

struct Harness {
    server: FakeApiServer,
    access: Arc<Loopback>,
    clock: Arc<ManualClock>,
    clusters: KubeClusters<Arc<Loopback>>,
}

impl Harness {
    async fn start() -> Self {
        Self::with_credentials(credentials(None)).await
    }

    async fn with_credentials(credentials: Credentials) -> Self {
        let server = FakeApiServer::start().await;
        let access = Arc::new(Loopback {
            url: server.url.clone(),
            certificate_authority: None,
            credentials,
            connects: AtomicUsize::new(0),
        });
        let clock = Arc::new(ManualClock::new(start_time()));
        let clusters = KubeClusters::new(access.clone(), clock.clone()).with_retries(0);
        Harness {
            server,
            access,
            clock,
            clusters,
        }
    }

    fn connects(&self) -> usize {
        self.access.connects.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn scaling_a_deployment_patches_its_scale_subresource_with_a_merge_patch() {
    let h = Harness::start().await;
    let path = format!("{CA_DEPLOYMENT}/scale");
    h.server.answer(
        "PATCH",
        &path,
        200,
        json::scale("kube-system", "cluster-autoscaler", 0),
    );

    h.clusters
        .scale(
            &dev(),
            WorkloadKind::Deployment,
            "kube-system",
            "cluster-autoscaler",
            0,
        )
        .await
        .unwrap();

    let received = h.server.received();
    assert_eq!(received.len(), 1, "{:?}", h.server.lines());
    let patch = &received[0];
    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.path, path);
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(patch.body, Some(json!({ "spec": { "replicas": 0 } })));
    assert_eq!(
        patch.query.get("fieldManager").map(String::as_str),
        Some("curfew")
    );
}

#[tokio::test]
async fn scaling_a_stateful_set_patches_the_stateful_sets_scale_subresource() {
    let h = Harness::start().await;
    let path = "/apis/apps/v1/namespaces/shop/statefulsets/postgres/scale";
    h.server
        .answer("PATCH", path, 200, json::scale("shop", "postgres", 3));

    h.clusters
        .scale(&dev(), WorkloadKind::StatefulSet, "shop", "postgres", 3)
        .await
        .unwrap();

    let received = h.server.received();
    assert_eq!(
        h.server.lines(),
        [format!("PATCH {path}?fieldManager=curfew")]
    );
    assert_eq!(received[0].content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(received[0].body, Some(json!({ "spec": { "replicas": 3 } })));
}

#[tokio::test]
async fn every_request_carries_the_eks_bearer_token_signed_for_the_cluster_at_the_clocks_time() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        CA_DEPLOYMENT,
        200,
        json::deployment("kube-system", "cluster-autoscaler", Some(1), &[]),
    );

    h.clusters
        .deployment_replicas(&dev(), "kube-system", "cluster-autoscaler")
        .await
        .unwrap();

    let expected = eks_token(&credentials(None), "eu-west-1", "dev", start_time()).unwrap();
    assert_eq!(
        h.server.received()[0].authorization,
        Some(format!("Bearer {expected}"))
    );
}

#[tokio::test]
async fn a_deployments_replicas_are_read_from_its_spec() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        CA_DEPLOYMENT,
        200,
        json::deployment("kube-system", "cluster-autoscaler", Some(2), &[]),
    );

    let replicas = h
        .clusters
        .deployment_replicas(&dev(), "kube-system", "cluster-autoscaler")
        .await
        .unwrap();

    assert_eq!(replicas, Some(2));
    assert_eq!(h.server.lines(), [format!("GET {CA_DEPLOYMENT}")]);
}

#[tokio::test]
async fn a_deployment_without_spec_replicas_has_kubernetes_default_of_one() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        CA_DEPLOYMENT,
        200,
        json::deployment("kube-system", "cluster-autoscaler", None, &[]),
    );

    let replicas = h
        .clusters
        .deployment_replicas(&dev(), "kube-system", "cluster-autoscaler")
        .await
        .unwrap();

    assert_eq!(replicas, Some(1));
}

#[tokio::test]
async fn a_missing_deployment_has_no_replicas_rather_than_an_error() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        CA_DEPLOYMENT,
        404,
        json::status(
            404,
            "NotFound",
            "deployments.apps \"cluster-autoscaler\" not found",
        ),
    );

    let replicas = h
        .clusters
        .deployment_replicas(&dev(), "kube-system", "cluster-autoscaler")
        .await
        .unwrap();

    assert_eq!(replicas, None);
}

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

#[tokio::test]
async fn workloads_are_the_namespaces_deployments_and_stateful_sets_with_their_exclusions() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        "/apis/apps/v1/namespaces/shop/deployments",
        200,
        json::deployment_list(vec![
            json::deployment("shop", "web", Some(4), &[]),
            json::deployment("shop", "payments", Some(2), &[("curfew/exclude", "true")]),
            json::deployment("shop", "worker", None, &[("curfew/exclude", "false")]),
        ]),
    );
    h.server.answer(
        "GET",
        "/apis/apps/v1/namespaces/shop/statefulsets",
        200,
        json::stateful_set_list(vec![json::stateful_set("shop", "postgres", 3, &[])]),
    );

    let workloads = h.clusters.workloads(&dev(), "shop").await.unwrap();

    let workload = |kind, name: &str, replicas, excluded| Workload {
        kind,
        namespace: "shop".into(),
        name: name.into(),
        replicas,
        excluded,
    };
    assert_eq!(
        workloads,
        [
            workload(WorkloadKind::Deployment, "web", 4, false),
            workload(WorkloadKind::Deployment, "payments", 2, true),
            workload(WorkloadKind::Deployment, "worker", 1, false),
            workload(WorkloadKind::StatefulSet, "postgres", 3, false),
        ]
    );
}

#[tokio::test]
async fn cron_jobs_are_read_with_suspend_defaulting_to_false() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        "/apis/batch/v1/namespaces/shop/cronjobs",
        200,
        json::cron_job_list(vec![
            json::cron_job("shop", "report", None, &[]),
            json::cron_job("shop", "cleanup", Some(true), &[("curfew/exclude", "true")]),
        ]),
    );

    let jobs = h.clusters.cron_jobs(&dev(), "shop").await.unwrap();

    assert_eq!(
        jobs,
        [
            CronJob {
                namespace: "shop".into(),
                name: "report".into(),
                suspended: false,
                excluded: false,
            },
            CronJob {
                namespace: "shop".into(),
                name: "cleanup".into(),
                suspended: true,
                excluded: true,
            },
        ]
    );
}

#[tokio::test]
async fn suspending_a_cron_job_merge_patches_spec_suspend() {
    let h = Harness::start().await;
    let path = "/apis/batch/v1/namespaces/shop/cronjobs/report";
    h.server.answer(
        "PATCH",
        path,
        200,
        json::cron_job("shop", "report", Some(true), &[]),
    );

    h.clusters
        .set_cron_job_suspended(&dev(), "shop", "report", true)
        .await
        .unwrap();

    let patch = &h.server.received()[0];
    assert_eq!(
        h.server.lines(),
        [format!("PATCH {path}?fieldManager=curfew")]
    );
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(patch.body, Some(json!({ "spec": { "suspend": true } })));
}

#[tokio::test]
async fn hpas_are_read_with_their_target_and_min_replicas_defaulting_to_one() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers",
        200,
        json::hpa_list(vec![
            json::hpa("shop", "web", ("Deployment", "web"), Some(3)),
            json::hpa("shop", "postgres", ("StatefulSet", "postgres"), None),
        ]),
    );

    let hpas = h.clusters.hpas(&dev(), "shop").await.unwrap();

    assert_eq!(
        hpas,
        [
            Hpa {
                namespace: "shop".into(),
                name: "web".into(),
                target: ("Deployment".into(), "web".into()),
                min_replicas: 3,
            },
            Hpa {
                namespace: "shop".into(),
                name: "postgres".into(),
                target: ("StatefulSet".into(), "postgres".into()),
                min_replicas: 1,
            },
        ]
    );
}

#[tokio::test]
async fn setting_an_hpas_minimum_merge_patches_spec_min_replicas() {
    let h = Harness::start().await;
    let path = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/web";
    h.server.answer(
        "PATCH",
        path,
        200,
        json::hpa("shop", "web", ("Deployment", "web"), Some(1)),
    );

    h.clusters
        .set_hpa_min(&dev(), "shop", "web", 1)
        .await
        .unwrap();

    let patch = &h.server.received()[0];
    assert_eq!(
        h.server.lines(),
        [format!("PATCH {path}?fieldManager=curfew")]
    );
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(patch.body, Some(json!({ "spec": { "minReplicas": 1 } })));
}

#[tokio::test]
async fn each_error_status_maps_to_its_error_kind() {
    let cases = [
        (404, "NotFound", ErrorKind::NotFound),
        (401, "Unauthorized", ErrorKind::AccessDenied),
        (403, "Forbidden", ErrorKind::AccessDenied),
        (409, "Conflict", ErrorKind::InUse),
        (400, "BadRequest", ErrorKind::Invalid),
        (422, "Invalid", ErrorKind::Invalid),
        (429, "TooManyRequests", ErrorKind::Throttled),
        (500, "InternalError", ErrorKind::Throttled),
        (503, "ServiceUnavailable", ErrorKind::Throttled),
        (504, "Timeout", ErrorKind::Throttled),
    ];
    for (code, reason, kind) in cases {
        let h = Harness::start().await;
        let path = format!("{CA_DEPLOYMENT}/scale");
        h.server.answer(
            "PATCH",
            &path,
            code,
            json::status(code, reason, "refused by the test"),
        );

        let err = h
            .clusters
            .scale(
                &dev(),
                WorkloadKind::Deployment,
                "kube-system",
                "cluster-autoscaler",
                0,
            )
            .await
            .unwrap_err();

        assert_eq!(err.kind, kind, "{code} {reason}: {err}");
        assert!(
            err.message.contains("cluster-autoscaler") && err.message.contains(reason),
            "the message names the call and the answer: {}",
            err.message
        );
        let source = err.source.as_deref().expect("the kube error is kept");
        assert!(source.downcast_ref::<kube::Error>().is_some(), "{source:?}");
    }
}

#[tokio::test]
async fn a_plain_text_error_from_a_proxy_is_classified_by_its_http_status() {
    let h = Harness::start().await;
    // kube reads a body that is not a Status as a failure with the HTTP code: a string body here.
    h.server
        .answer("GET", NODEPOOLS, 503, json!("upstream connect error"));

    let err = h.clusters.node_pools(&dev()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
}

#[tokio::test]
async fn a_throttled_call_is_retried_with_backoff_until_it_succeeds() {
    let h = Harness::start().await;
    let clusters = KubeClusters::new(h.access.clone(), h.clock.clone()).with_retries(3);
    let path = format!("{CA_DEPLOYMENT}/scale");
    let throttled = json::status(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
    );
    h.server.answer("PATCH", &path, 429, throttled.clone());
    h.server.answer("PATCH", &path, 429, throttled);
    h.server.answer(
        "PATCH",
        &path,
        200,
        json::scale("kube-system", "cluster-autoscaler", 0),
    );

    clusters
        .scale(
            &dev(),
            WorkloadKind::Deployment,
            "kube-system",
            "cluster-autoscaler",
            0,
        )
        .await
        .unwrap();

    assert_eq!(h.server.received().len(), 3);
}

#[tokio::test]
async fn an_error_that_retrying_cannot_fix_is_not_retried() {
    let h = Harness::start().await;
    let clusters = KubeClusters::new(h.access.clone(), h.clock.clone()).with_retries(3);
    let path = format!("{CA_DEPLOYMENT}/scale");
    h.server.answer(
        "PATCH",
        &path,
        403,
        json::status(
            403,
            "Forbidden",
            "deployments.apps \"cluster-autoscaler\" is forbidden",
        ),
    );

    let err = clusters
        .scale(
            &dev(),
            WorkloadKind::Deployment,
            "kube-system",
            "cluster-autoscaler",
            0,
        )
        .await
        .unwrap_err();

    assert_eq!(err.kind, ErrorKind::AccessDenied);
    assert_eq!(h.server.received().len(), 1);
}

#[tokio::test]
async fn an_api_server_that_never_answers_times_out_as_throttled() {
    let h = Harness::start().await;
    let clusters = KubeClusters::new(h.access.clone(), h.clock.clone())
        .with_retries(0)
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_millis(200),
        });
    h.server.never_answer("GET", NODEPOOLS);

    let err = clusters.node_pools(&dev()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
    assert!(err.message.contains("timed out"), "{}", err.message);
}

#[tokio::test]
async fn an_api_server_that_refuses_connections_is_reported_as_unreachable() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let access = Arc::new(Loopback {
        url: format!("http://127.0.0.1:{port}"),
        certificate_authority: None,
        credentials: credentials(None),
        connects: AtomicUsize::new(0),
    });
    let clusters =
        KubeClusters::new(access, Arc::new(ManualClock::new(start_time()))).with_retries(0);

    let err = clusters.node_pools(&dev()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::Other, "{err}");
    assert!(err.message.contains("could not reach"), "{}", err.message);
}

#[tokio::test]
async fn one_client_serves_a_cluster_until_its_token_is_a_minute_from_expiring() {
    let h = Harness::start().await;
    h.server
        .answer("GET", NODEPOOLS, 200, json::node_pool_list(vec![]));

    h.clusters.node_pools(&dev()).await.unwrap();
    h.clock.advance(chrono::Duration::minutes(13));
    h.clusters.node_pools(&dev()).await.unwrap();
    assert_eq!(h.connects(), 1, "a 13-minute-old token is still used");

    h.clock.advance(chrono::Duration::seconds(61));
    h.clusters.node_pools(&dev()).await.unwrap();
    assert_eq!(
        h.connects(),
        2,
        "a token within a minute of its 15 is replaced"
    );

    let tokens: Vec<String> = h
        .server
        .received()
        .iter()
        .map(|r| r.authorization.clone().unwrap())
        .collect();
    assert_eq!(tokens[0], tokens[1]);
    let resigned = eks_token(
        &credentials(None),
        "eu-west-1",
        "dev",
        start_time() + chrono::Duration::seconds(13 * 60 + 61),
    )
    .unwrap();
    assert_eq!(tokens[2], format!("Bearer {resigned}"));
}

#[tokio::test]
async fn credentials_that_expire_before_the_token_cut_the_clients_life_short() {
    let expiry = start_time() + chrono::Duration::minutes(6);
    let h = Harness::with_credentials(credentials(Some(expiry))).await;
    h.server
        .answer("GET", NODEPOOLS, 200, json::node_pool_list(vec![]));

    h.clusters.node_pools(&dev()).await.unwrap();
    h.clock.advance(chrono::Duration::minutes(4));
    h.clusters.node_pools(&dev()).await.unwrap();
    assert_eq!(h.connects(), 1);

    h.clock.advance(chrono::Duration::seconds(61));
    h.clusters.node_pools(&dev()).await.unwrap();
    assert_eq!(h.connects(), 2, "a minute before the credentials expire");
}

#[tokio::test]
async fn a_refused_token_drops_the_client_so_the_next_call_signs_a_new_one() {
    let h = Harness::start().await;
    h.server.answer(
        "GET",
        NODEPOOLS,
        401,
        json::status(401, "Unauthorized", "Unauthorized"),
    );
    h.server
        .answer("GET", NODEPOOLS, 200, json::node_pool_list(vec![]));

    let err = h.clusters.node_pools(&dev()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::AccessDenied);
    h.clusters.node_pools(&dev()).await.unwrap();

    assert_eq!(h.connects(), 2);
}

#[tokio::test]
async fn clusters_are_reached_each_with_its_own_client_and_token() {
    let h = Harness::start().await;
    h.server
        .answer("GET", NODEPOOLS, 200, json::node_pool_list(vec![]));
    let prod = ClusterRef {
        cluster: "prod".into(),
        ..dev()
    };

    h.clusters.node_pools(&dev()).await.unwrap();
    h.clusters.node_pools(&prod).await.unwrap();
    h.clusters.node_pools(&dev()).await.unwrap();

    assert_eq!(h.connects(), 2);
    let tokens: Vec<String> = h
        .server
        .received()
        .iter()
        .map(|r| r.authorization.clone().unwrap())
        .collect();
    assert_ne!(tokens[0], tokens[1], "a token names its cluster");
    assert_eq!(tokens[0], tokens[2]);
}

#[tokio::test]
async fn a_cluster_ca_that_is_not_pem_is_refused_before_any_request() {
    let server = FakeApiServer::start().await;
    let access = Arc::new(Loopback {
        url: server.url.clone(),
        certificate_authority: Some("bm90IGEgY2VydGlmaWNhdGU=".into()),
        credentials: credentials(None),
        connects: AtomicUsize::new(0),
    });
    let clusters = KubeClusters::new(access, Arc::new(ManualClock::new(start_time())));

    let err = clusters.node_pools(&dev()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::Invalid, "{err}");
    assert!(err.message.contains("CA of cluster dev"), "{}", err.message);
    assert!(server.received().is_empty());
}

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

const CLUSTER_CA: &str = include_str!("fixtures/cluster-ca.pem");
const OTHER_CA: &str = include_str!("fixtures/other-ca.pem");
const APISERVER_CERT: &str = include_str!("fixtures/apiserver.pem");
const APISERVER_KEY: &str = include_str!("fixtures/apiserver-key.pem");

/// The adapter and a TLS API server whose certificate `cluster-ca.pem` signed, reached with the
/// CA `ca` as DescribeCluster would give it (base64 of PEM).
async fn over_tls(ca: &str) -> (FakeApiServer, KubeClusters<Arc<Loopback>>) {
    use base64::Engine;
    let server = FakeApiServer::start_tls(APISERVER_CERT, APISERVER_KEY).await;
    let access = Arc::new(Loopback {
        url: server.url.clone(),
        certificate_authority: Some(base64::engine::general_purpose::STANDARD.encode(ca)),
        credentials: credentials(None),
        connects: AtomicUsize::new(0),
    });
    let clusters =
        KubeClusters::new(access, Arc::new(ManualClock::new(start_time()))).with_retries(0);
    (server, clusters)
}

#[tokio::test]
async fn the_api_server_is_reached_over_tls_trusting_the_clusters_own_ca() {
    let (server, clusters) = over_tls(CLUSTER_CA).await;
    server.answer("GET", NODEPOOLS, 200, json::node_pool_list(vec![]));

    clusters.node_pools(&dev()).await.unwrap();

    assert_eq!(server.lines(), [format!("GET {NODEPOOLS}")]);
    assert!(server.received()[0]
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Bearer k8s-aws-v1.")));
}

#[tokio::test]
async fn an_api_server_whose_certificate_another_ca_signed_is_refused() {
    let (server, clusters) = over_tls(OTHER_CA).await;
    server.answer("GET", NODEPOOLS, 200, json::node_pool_list(vec![]));

    let err = clusters.node_pools(&dev()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::Other, "{err}");
    assert!(
        server.received().is_empty(),
        "no request (and no token) crossed the refused connection"
    );
}
