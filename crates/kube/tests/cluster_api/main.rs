//! The adapter against a fake API server on loopback: each test calls `KubeClusters` and asserts
//! on the requests that reached the server. One test binary, one module per concern.

mod apiserver;
mod connections;
mod errors;
mod karpenter;
mod sleep_wake;
mod workloads;

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
