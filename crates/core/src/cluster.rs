//! The Kubernetes side of holding a cluster asleep: the port through which curfew pauses the
//! cluster's own autoscalers (Cluster Autoscaler's Deployment, Karpenter's NodePools) and its
//! workloads, and the plain data it reads and writes. The adapter (`curfew-kube`) reaches a
//! cluster's API server with an EKS bearer token made from the spoke session; tests use the
//! in-memory fake in [`crate::fakes`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::account::SpokeRole;
use crate::ports::PortResult;

/// One EKS cluster, reached through a spoke account's role.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterRef {
    /// How to reach the account.
    pub role: SpokeRole,
    /// The cluster's region.
    pub region: String,
    /// The EKS cluster name.
    pub cluster: String,
}

/// A Karpenter NodePool and the part of it curfew changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePool {
    /// Its name (cluster-scoped).
    pub name: String,
    /// `spec.limits` (resource name -> quantity, e.g. `cpu: "1000"`), `None` when unset.
    pub limits: Option<BTreeMap<String, String>>,
}

/// A namespace and whether curfew leaves it alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// True when annotated `curfew/exclude: "true"`.
    pub excluded: bool,
}

/// The kinds of workload curfew scales to zero in the `workloads` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

/// A Deployment or StatefulSet and its replica count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Deployment or StatefulSet.
    pub kind: WorkloadKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// True when annotated `curfew/exclude: "true"`: curfew leaves it alone.
    pub excluded: bool,
}

/// A CronJob and whether it is suspended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronJob {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.suspend`.
    pub suspended: bool,
    /// True when annotated `curfew/exclude: "true"`.
    pub excluded: bool,
}

/// A HorizontalPodAutoscaler and its minimum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hpa {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The workload it scales (`spec.scaleTargetRef`): kind and name, in its namespace.
    pub target: (String, String),
    /// `spec.minReplicas` (Kubernetes defaults it to 1).
    pub min_replicas: i32,
}

/// A cluster's Kubernetes API, as far as holding it asleep needs. Every call is idempotent:
/// setting what is already set changes nothing.
#[async_trait]
pub trait ClusterApi: Send + Sync {
    /// The replicas of a Deployment (`None` if it does not exist).
    async fn deployment_replicas(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
    ) -> PortResult<Option<i32>>;
    /// Sets a Deployment's or StatefulSet's replicas through its scale subresource.
    async fn scale(
        &self,
        at: &ClusterRef,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> PortResult<()>;
    /// Every Karpenter NodePool (`karpenter.sh/v1`), with its limits.
    async fn node_pools(&self, at: &ClusterRef) -> PortResult<Vec<NodePool>>;
    /// Sets a NodePool's `spec.limits` with a merge patch (`None` removes them).
    async fn set_node_pool_limits(
        &self,
        at: &ClusterRef,
        name: &str,
        limits: Option<&BTreeMap<String, String>>,
    ) -> PortResult<()>;
    /// Deletes the NodeClaims of a NodePool (label `karpenter.sh/nodepool=<name>`) and returns
    /// how many of its nodes still exist (they go once Karpenter has drained them).
    async fn drain_node_pool(&self, at: &ClusterRef, name: &str) -> PortResult<usize>;
    /// Every namespace, with whether it is excluded by annotation.
    async fn namespaces(&self, at: &ClusterRef) -> PortResult<Vec<Namespace>>;
    /// The Deployments and StatefulSets of `namespace`.
    async fn workloads(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Workload>>;
    /// The CronJobs of `namespace`.
    async fn cron_jobs(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<CronJob>>;
    /// Suspends or resumes a CronJob (`spec.suspend`).
    async fn set_cron_job_suspended(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        suspended: bool,
    ) -> PortResult<()>;
    /// The HorizontalPodAutoscalers (`autoscaling/v2`) of `namespace`.
    async fn hpas(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Hpa>>;
    /// Sets an HPA's `spec.minReplicas`.
    async fn set_hpa_min(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        min_replicas: i32,
    ) -> PortResult<()>;
}
