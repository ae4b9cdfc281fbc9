//! # curfew-kube
//!
//! The Kubernetes adapter: [`KubeClusters`] implements curfew-core's
//! [`ClusterApi`](curfew_core::cluster::ClusterApi) over the API servers of EKS clusters, for
//! the modes that hold a cluster asleep (Cluster Autoscaler's Deployment, Karpenter's NodePools
//! and NodeClaims, workloads, CronJobs and HPAs).
//!
//! Each cluster is reached with an EKS bearer token ([`token::eks_token`]) signed with the
//! spoke session's credentials; [`ClusterAccess`] supplies those credentials with the
//! cluster's endpoint and CA, and [`KubeClusters`] keeps one client per cluster until shortly
//! before its token expires. Every write is a merge patch of only the field curfew owns
//! (`spec.replicas` through the scale subresource, `spec.limits`, `spec.suspend`,
//! `spec.minReplicas`), so whatever else people or controllers changed meanwhile is left as it
//! is.
//!
//! ```no_run
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use curfew_core::account::SpokeRole;
//! use curfew_core::clock::SystemClock;
//! use curfew_core::cluster::{ClusterApi, ClusterRef};
//! use curfew_core::ports::PortResult;
//! use curfew_kube::{ClusterAccess, ClusterEndpoint, KubeClusters};
//!
//! /// Reaches every cluster with the same endpoint and keys (the hub uses the spoke sessions).
//! struct Fixed(ClusterEndpoint);
//!
//! #[async_trait]
//! impl ClusterAccess for Fixed {
//!     async fn connect(&self, _at: &ClusterRef) -> PortResult<ClusterEndpoint> {
//!         Ok(self.0.clone())
//!     }
//! }
//!
//! # async fn run() -> PortResult<()> {
//! let access = Fixed(ClusterEndpoint {
//!     url: "https://ABC.gr7.eu-west-1.eks.amazonaws.com".into(),
//!     certificate_authority: Some("LS0tLS1CRUdJTi...".into()),
//!     credentials: aws_credential_types::Credentials::new("AKID", "secret", None, None, "doc"),
//! });
//! let clusters = KubeClusters::new(access, Arc::new(SystemClock));
//! let dev = ClusterRef {
//!     role: SpokeRole {
//!         account: "111111111111".into(),
//!         role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
//!         external_id: None,
//!     },
//!     region: "eu-west-1".into(),
//!     cluster: "dev".into(),
//! };
//! let replicas = clusters.deployment_replicas(&dev, "kube-system", "cluster-autoscaler").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod access;
mod error;
mod karpenter;
pub mod token;
mod workloads;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use curfew_core::clock::Clock;
use curfew_core::cluster::{
    ClusterApi, ClusterRef, CronJob, Hpa, Namespace, NodePool, Workload, WorkloadKind,
};
use curfew_core::ports::{ErrorKind, PortError, PortResult};
use kube::api::PatchParams;

pub use access::{ClusterAccess, ClusterEndpoint, Timeouts};
pub use error::{classify, kind_of_status};
pub use karpenter::NODEPOOL_LABEL;
pub use workloads::EXCLUDE_ANNOTATION;

use access::Connections;

/// The field manager curfew's patches are recorded under (`metadata.managedFields`), so a
/// cluster's operators can see which changes were curfew's.
pub const FIELD_MANAGER: &str = "curfew";

/// How many times a throttled call is retried by default (with jittered exponential backoff
/// from 50 ms up to 5 s), as the AWS adapters do.
pub const DEFAULT_RETRIES: usize = 5;

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// [`ClusterApi`] over the Kubernetes API of EKS clusters.
pub struct KubeClusters<A> {
    connections: Connections<A>,
    retries: usize,
}

impl<A: ClusterAccess> KubeClusters<A> {
    /// Clusters reached through `access`, with tokens timed by `clock`.
    pub fn new(access: A, clock: Arc<dyn Clock>) -> Self {
        KubeClusters {
            connections: Connections::new(access, clock, Timeouts::default()),
            retries: DEFAULT_RETRIES,
        }
    }

    /// The same, with other client timeouts.
    pub fn with_timeouts(self, timeouts: Timeouts) -> Self {
        KubeClusters {
            connections: self.connections.with_timeouts(timeouts),
            ..self
        }
    }

    /// The same, retrying a throttled call at most `retries` times.
    pub fn with_retries(self, retries: usize) -> Self {
        KubeClusters { retries, ..self }
    }

    /// Runs `call` with a client for `at`, retrying throttles with jittered backoff. A 401
    /// (the token was refused: the credentials behind it expired early, or were revoked) drops
    /// the cached client, so the next call signs a fresh token.
    async fn call<T, F, Fut>(&self, at: &ClusterRef, call: F) -> PortResult<T>
    where
        F: Fn(kube::Client) -> Fut,
        Fut: Future<Output = PortResult<T>>,
    {
        let attempt = || async {
            let client = self.connections.client(at).await?;
            let answer = call(client).await;
            if let Err(e) = &answer {
                if is_unauthorized(e) {
                    self.connections.forget(at);
                }
            }
            answer
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(self.retries),
            )
            .when(|e: &PortError| e.kind == ErrorKind::Throttled)
            .await
    }
}

/// True when the API server answered 401 Unauthorized.
fn is_unauthorized(e: &PortError) -> bool {
    matches!(
        e.source.as_deref().and_then(|s| s.downcast_ref::<kube::Error>()),
        Some(kube::Error::Api(status)) if status.code == 401
    )
}

#[async_trait]
impl<A: ClusterAccess> ClusterApi for KubeClusters<A> {
    async fn deployment_replicas(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
    ) -> PortResult<Option<i32>> {
        self.call(at, |c| workloads::deployment_replicas(c, namespace, name))
            .await
    }

    async fn scale(
        &self,
        at: &ClusterRef,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> PortResult<()> {
        self.call(at, |c| workloads::scale(c, kind, namespace, name, replicas))
            .await
    }

    async fn node_pools(&self, at: &ClusterRef) -> PortResult<Vec<NodePool>> {
        self.call(at, karpenter::node_pools).await
    }

    async fn set_node_pool_limits(
        &self,
        at: &ClusterRef,
        name: &str,
        limits: Option<&BTreeMap<String, String>>,
    ) -> PortResult<()> {
        self.call(at, |c| karpenter::set_node_pool_limits(c, name, limits))
            .await
    }

    async fn drain_node_pool(&self, at: &ClusterRef, name: &str) -> PortResult<usize> {
        self.call(at, |c| karpenter::drain_node_pool(c, name)).await
    }

    async fn namespaces(&self, at: &ClusterRef) -> PortResult<Vec<Namespace>> {
        self.call(at, workloads::namespaces).await
    }

    async fn workloads(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Workload>> {
        self.call(at, |c| workloads::workloads(c, namespace)).await
    }

    async fn cron_jobs(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<CronJob>> {
        self.call(at, |c| workloads::cron_jobs(c, namespace)).await
    }

    async fn set_cron_job_suspended(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        suspended: bool,
    ) -> PortResult<()> {
        self.call(at, |c| {
            workloads::set_cron_job_suspended(c, namespace, name, suspended)
        })
        .await
    }

    async fn hpas(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Hpa>> {
        self.call(at, |c| workloads::hpas(c, namespace)).await
    }

    async fn set_hpa_min(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        min_replicas: i32,
    ) -> PortResult<()> {
        self.call(at, |c| {
            workloads::set_hpa_min(c, namespace, name, min_replicas)
        })
        .await
    }
}
