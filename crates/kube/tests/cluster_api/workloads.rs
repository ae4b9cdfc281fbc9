//! Deployments, StatefulSets, CronJobs and HPAs: the reads, and the merge patches that reach
//! the server (the scale subresource for replicas).

use super::*;

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
