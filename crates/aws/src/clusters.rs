//! Kubernetes access for the hold modes: `curfew-kube`'s adapter reaching each cluster with the
//! spoke session's credentials and the endpoint and CA that EKS `DescribeCluster` gives.

use std::sync::Arc;

use async_trait::async_trait;
use curfew_core::clock::SystemClock;
use curfew_core::cluster::{ClusterApi, ClusterRef};
use curfew_core::ports::PortResult;
use curfew_kube::{ClusterAccess, ClusterEndpoint, KubeClusters};

use crate::spokes::AwsSpokes;

/// Reaches clusters through the spokes' cached sessions.
pub struct SpokeClusters(pub Arc<AwsSpokes>);

#[async_trait]
impl ClusterAccess for SpokeClusters {
    async fn connect(&self, at: &ClusterRef) -> PortResult<ClusterEndpoint> {
        let c = self
            .0
            .cluster_connection(&at.role, &at.region, &at.cluster)
            .await?;
        Ok(ClusterEndpoint {
            url: c.endpoint,
            certificate_authority: Some(c.certificate_authority),
            credentials: c.credentials,
        })
    }
}

/// The clusters' Kubernetes APIs, reached through `spokes`. Tokens are timed by the real clock
/// (they expire in real time, whatever a demo hub's clock says). No cluster is contacted until
/// a node group whose cluster opts into a cluster-wide hold mode is stopped or started.
pub fn kube_clusters(spokes: Arc<AwsSpokes>) -> Arc<dyn ClusterApi> {
    Arc::new(KubeClusters::new(
        SpokeClusters(spokes),
        Arc::new(SystemClock),
    ))
}
