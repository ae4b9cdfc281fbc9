//! Kubernetes JSON as an API server answers it (shapes taken from `kubectl get -o json` and the
//! API reference; trimmed of fields no client reads, never of required ones).

use std::collections::BTreeMap;

use serde_json::{json, Value};

fn metadata(namespace: Option<&str>, name: &str, annotations: &[(&str, &str)]) -> Value {
    let mut meta = json!({
        "name": name,
        "uid": format!("{name}-0000-4000-8000-000000000000"),
        "resourceVersion": "41327",
        "generation": 3,
        "creationTimestamp": "2027-01-04T09:12:00Z",
    });
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    if !annotations.is_empty() {
        let map: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        meta["annotations"] = json!(map);
    }
    meta
}

fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "resourceVersion": "41400" },
        "items": items,
    })
}

/// A `metav1.Status` failure, as the API server sends with every error.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// A `metav1.Status` success (the answer to a DELETE of a CRD object that is gone at once is
/// the object; of one with finalizers, the object with its deletionTimestamp set).
pub fn success() -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" })
}

/// An `autoscaling/v1` Scale, the scale subresource's answer.
pub fn scale(namespace: &str, name: &str, replicas: i32) -> Value {
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata(Some(namespace), name, &[]),
        "spec": { "replicas": replicas },
        "status": { "replicas": replicas, "selector": format!("app={name}") },
    })
}

/// An `apps/v1` Deployment; `replicas: None` leaves `spec.replicas` out.
pub fn deployment(
    namespace: &str,
    name: &str,
    replicas: Option<i32>,
    annotations: &[(&str, &str)],
) -> Value {
    let mut spec = json!({
        "selector": { "matchLabels": { "app": name } },
        "template": {
            "metadata": { "labels": { "app": name } },
            "spec": { "containers": [ { "name": name, "image": format!("registry.k8s.io/{name}:v1") } ] },
        },
    });
    if let Some(r) = replicas {
        spec["replicas"] = json!(r);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(Some(namespace), name, annotations),
        "spec": spec,
        "status": { "observedGeneration": 3, "replicas": replicas.unwrap_or(1) },
    })
}

/// An `apps/v1` DeploymentList.
pub fn deployment_list(items: Vec<Value>) -> Value {
    list("apps/v1", "DeploymentList", items)
}

/// An `apps/v1` StatefulSet.
pub fn stateful_set(
    namespace: &str,
    name: &str,
    replicas: i32,
    annotations: &[(&str, &str)],
) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(Some(namespace), name, annotations),
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [ { "name": name, "image": "postgres:17" } ] },
            },
        },
        "status": { "replicas": replicas, "availableReplicas": replicas },
    })
}

/// An `apps/v1` StatefulSetList.
pub fn stateful_set_list(items: Vec<Value>) -> Value {
    list("apps/v1", "StatefulSetList", items)
}

/// A `karpenter.sh/v1` NodePool with `spec.limits` (`Value::Null`: none).
pub fn node_pool(name: &str, limits: Value) -> Value {
    let mut spec = json!({
        "template": {
            "spec": {
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" },
                "requirements": [
                    { "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"] }
                ],
                "expireAfter": "720h",
            },
        },
        "disruption": { "consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "1m" },
    });
    if !limits.is_null() {
        spec["limits"] = limits;
    }
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": metadata(None, name, &[]),
        "spec": spec,
        "status": { "resources": { "cpu": "16", "memory": "64Gi", "nodes": "2" } },
    })
}

/// A `karpenter.sh/v1` NodePoolList.
pub fn node_pool_list(items: Vec<Value>) -> Value {
    list("karpenter.sh/v1", "NodePoolList", items)
}

/// The `meta.k8s.io/v1` PartialObjectMetadata of a cluster-scoped object labelled
/// `karpenter.sh/nodepool=<pool>`, optionally already being deleted.
pub fn labelled_metadata(name: &str, pool: &str, deleting: bool) -> Value {
    let mut meta = metadata(None, name, &[]);
    meta["labels"] = json!({ "karpenter.sh/nodepool": pool });
    if deleting {
        meta["deletionTimestamp"] = json!("2027-01-04T19:00:05Z");
        meta["finalizers"] = json!(["karpenter.sh/termination"]);
    }
    json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": meta })
}

/// A `meta.k8s.io/v1` PartialObjectMetadataList (what a list with
/// `Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1` gets).
pub fn metadata_list(items: Vec<Value>) -> Value {
    list("meta.k8s.io/v1", "PartialObjectMetadataList", items)
}

/// A `karpenter.sh/v1` NodeClaim as a DELETE answers it: still there, finalizer pending.
pub fn node_claim_being_deleted(name: &str, pool: &str) -> Value {
    let mut meta = metadata(None, name, &[]);
    meta["labels"] = json!({ "karpenter.sh/nodepool": pool });
    meta["deletionTimestamp"] = json!("2027-01-04T19:00:05Z");
    meta["finalizers"] = json!(["karpenter.sh/termination"]);
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": meta,
        "spec": {
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" },
            "requirements": [],
        },
    })
}

/// A `batch/v1` CronJob; `suspend: None` leaves `spec.suspend` out.
pub fn cron_job(
    namespace: &str,
    name: &str,
    suspend: Option<bool>,
    annotations: &[(&str, &str)],
) -> Value {
    let mut spec = json!({
        "schedule": "*/15 * * * *",
        "jobTemplate": { "spec": { "template": { "spec": {
            "restartPolicy": "OnFailure",
            "containers": [ { "name": name, "image": "busybox:1.36" } ],
        } } } },
    });
    if let Some(s) = suspend {
        spec["suspend"] = json!(s);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(Some(namespace), name, annotations),
        "spec": spec,
        "status": {},
    })
}

/// A `batch/v1` CronJobList.
pub fn cron_job_list(items: Vec<Value>) -> Value {
    list("batch/v1", "CronJobList", items)
}

/// An `autoscaling/v2` HorizontalPodAutoscaler; `min: None` leaves `spec.minReplicas` out.
pub fn hpa(namespace: &str, name: &str, target: (&str, &str), min: Option<i32>) -> Value {
    let mut spec = json!({
        "scaleTargetRef": { "apiVersion": "apps/v1", "kind": target.0, "name": target.1 },
        "maxReplicas": 10,
        "metrics": [ { "type": "Resource", "resource": {
            "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 70 } } } ],
    });
    if let Some(m) = min {
        spec["minReplicas"] = json!(m);
    }
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(Some(namespace), name, &[]),
        "spec": spec,
        "status": { "currentReplicas": 2, "desiredReplicas": 2 },
    })
}

/// An `autoscaling/v2` HorizontalPodAutoscalerList.
pub fn hpa_list(items: Vec<Value>) -> Value {
    list("autoscaling/v2", "HorizontalPodAutoscalerList", items)
}
