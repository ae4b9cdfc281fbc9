//! Namespaces, Deployments, StatefulSets, CronJobs and HorizontalPodAutoscalers: reading what the
//! `workloads` and `ca-deployment` modes save, and the merge patches that put it back.

use std::collections::BTreeMap;

use curfew_core::cluster::{CronJob, Hpa, Namespace, Workload, WorkloadKind};
use curfew_core::ports::PortResult;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob as K8sCronJob;
use k8s_openapi::api::core::v1::Namespace as K8sNamespace;
use kube::api::{ListParams, Patch};
use kube::{Api, Client};
use serde_json::json;

use crate::error::classify;
use crate::patch_params;

/// The annotation that keeps a workload or CronJob out of curfew's hands.
pub const EXCLUDE_ANNOTATION: &str = "curfew/exclude";

/// Kubernetes' default for an unset `spec.replicas` (Deployments, StatefulSets) and an unset
/// HPA `spec.minReplicas`.
const DEFAULT_REPLICAS: i32 = 1;

fn excluded(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(EXCLUDE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// A Deployment's `spec.replicas`, `None` if there is no such Deployment.
pub(crate) async fn deployment_replicas(
    client: Client,
    namespace: &str,
    name: &str,
) -> PortResult<Option<i32>> {
    let deployment = Api::<Deployment>::namespaced(client, namespace)
        .get_opt(name)
        .await
        .map_err(|e| classify(&format!("reading Deployment {namespace}/{name}"), e))?;
    Ok(deployment.map(|d| d.spec.and_then(|s| s.replicas).unwrap_or(DEFAULT_REPLICAS)))
}

/// Sets replicas through the scale subresource: the one write the RBAC grants
/// (`deployments/scale`, `statefulsets/scale`) and one that leaves the rest of the spec alone.
pub(crate) async fn scale(
    client: Client,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> PortResult<()> {
    let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
    let params = patch_params();
    let scaled = match kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client, namespace)
                .patch_scale(name, &params, &patch)
                .await
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client, namespace)
                .patch_scale(name, &params, &patch)
                .await
        }
    };
    scaled.map_err(|e| {
        classify(
            &format!("scaling {kind:?} {namespace}/{name} to {replicas}"),
            e,
        )
    })?;
    Ok(())
}

/// The Deployments and StatefulSets of `namespace`.
pub(crate) async fn workloads(client: Client, namespace: &str) -> PortResult<Vec<Workload>> {
    let all = ListParams::default();
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&all)
        .await
        .map_err(|e| classify(&format!("listing the Deployments of {namespace}"), e))?;
    let stateful_sets = Api::<StatefulSet>::namespaced(client, namespace)
        .list(&all)
        .await
        .map_err(|e| classify(&format!("listing the StatefulSets of {namespace}"), e))?;
    let workload = |kind,
                    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                    replicas: Option<i32>| Workload {
        kind,
        namespace: namespace.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        replicas: replicas.unwrap_or(DEFAULT_REPLICAS),
        excluded: excluded(meta.annotations.as_ref()),
    };
    let mut found: Vec<Workload> = deployments
        .items
        .iter()
        .map(|d| {
            workload(
                WorkloadKind::Deployment,
                &d.metadata,
                d.spec.as_ref().and_then(|s| s.replicas),
            )
        })
        .collect();
    found.extend(stateful_sets.items.iter().map(|s| {
        workload(
            WorkloadKind::StatefulSet,
            &s.metadata,
            s.spec.as_ref().and_then(|s| s.replicas),
        )
    }));
    Ok(found)
}

/// Every namespace, with whether it is annotated `curfew/exclude: "true"`.
pub(crate) async fn namespaces(client: Client) -> PortResult<Vec<Namespace>> {
    let namespaces = Api::<K8sNamespace>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(|e| classify("listing the namespaces", e))?;
    Ok(namespaces
        .items
        .iter()
        .map(|ns| Namespace {
            name: ns.metadata.name.clone().unwrap_or_default(),
            excluded: excluded(ns.metadata.annotations.as_ref()),
        })
        .collect())
}

/// The CronJobs of `namespace`.
pub(crate) async fn cron_jobs(client: Client, namespace: &str) -> PortResult<Vec<CronJob>> {
    let jobs = Api::<K8sCronJob>::namespaced(client, namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| classify(&format!("listing the CronJobs of {namespace}"), e))?;
    Ok(jobs
        .items
        .iter()
        .map(|job| CronJob {
            namespace: namespace.to_string(),
            name: job.metadata.name.clone().unwrap_or_default(),
            suspended: job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false),
            excluded: excluded(job.metadata.annotations.as_ref()),
        })
        .collect())
}

/// Sets a CronJob's `spec.suspend`.
pub(crate) async fn set_cron_job_suspended(
    client: Client,
    namespace: &str,
    name: &str,
    suspended: bool,
) -> PortResult<()> {
    Api::<K8sCronJob>::namespaced(client, namespace)
        .patch(
            name,
            &patch_params(),
            &Patch::Merge(json!({ "spec": { "suspend": suspended } })),
        )
        .await
        .map_err(|e| {
            classify(
                &format!("setting suspend={suspended} on CronJob {namespace}/{name}"),
                e,
            )
        })?;
    Ok(())
}

/// The HorizontalPodAutoscalers of `namespace`.
pub(crate) async fn hpas(client: Client, namespace: &str) -> PortResult<Vec<Hpa>> {
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(client, namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            classify(
                &format!("listing the HorizontalPodAutoscalers of {namespace}"),
                e,
            )
        })?;
    Ok(hpas
        .items
        .iter()
        .map(|hpa| {
            let spec = hpa.spec.as_ref();
            Hpa {
                namespace: namespace.to_string(),
                name: hpa.metadata.name.clone().unwrap_or_default(),
                target: spec
                    .map(|s| {
                        (
                            s.scale_target_ref.kind.clone(),
                            s.scale_target_ref.name.clone(),
                        )
                    })
                    .unwrap_or_default(),
                min_replicas: spec
                    .and_then(|s| s.min_replicas)
                    .unwrap_or(DEFAULT_REPLICAS),
            }
        })
        .collect())
}

/// Sets an HPA's `spec.minReplicas`.
pub(crate) async fn set_hpa_min(
    client: Client,
    namespace: &str,
    name: &str,
    min_replicas: i32,
) -> PortResult<()> {
    Api::<HorizontalPodAutoscaler>::namespaced(client, namespace)
        .patch(
            name,
            &patch_params(),
            &Patch::Merge(json!({ "spec": { "minReplicas": min_replicas } })),
        )
        .await
        .map_err(|e| {
            classify(
                &format!("setting minReplicas={min_replicas} on HorizontalPodAutoscaler {namespace}/{name}"),
                e,
            )
        })?;
    Ok(())
}
