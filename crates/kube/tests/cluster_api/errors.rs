//! What the server answers when it refuses, throttles, stalls or is not there, and what the
//! adapter makes of it.

use super::*;

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
