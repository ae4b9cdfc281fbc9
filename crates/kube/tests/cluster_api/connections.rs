//! Reaching a cluster: the bearer token on every request, one client per cluster until its
//! token is about to expire, the cluster CA over TLS.

use super::*;

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

const CLUSTER_CA: &str = include_str!("../fixtures/cluster-ca.pem");
const OTHER_CA: &str = include_str!("../fixtures/other-ca.pem");
const APISERVER_CERT: &str = include_str!("../fixtures/apiserver.pem");
const APISERVER_KEY: &str = include_str!("../fixtures/apiserver-key.pem");

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
