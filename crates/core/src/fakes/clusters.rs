//! [`FakeClusters`]: EKS clusters' Kubernetes APIs in memory, as far as [`ClusterApi`] reaches.
//!
//! It answers the way the API server and Karpenter would: writes to something missing are
//! [`ErrorKind::NotFound`], values the API server's validation refuses are
//! [`ErrorKind::Invalid`] (negative replicas, an HPA minimum below 1), draining a NodePool takes
//! a number of calls before its nodes are gone, and Karpenter replaces the drained nodes of a
//! pool whose limits do not hold it closed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::cluster::{
    ClusterApi, ClusterRef, CronJob, Hpa, Namespace, NodePool, Workload, WorkloadKind,
};
use crate::ports::{ErrorKind, PortError, PortResult};

use super::lock;

/// One cluster's objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterObjects {
    /// Deployments and StatefulSets by (kind, namespace, name).
    pub workloads: BTreeMap<(WorkloadKind, String, String), Workload>,
    /// NodePools by name.
    pub node_pools: BTreeMap<String, PoolNodes>,
    /// CronJobs by (namespace, name).
    pub cron_jobs: BTreeMap<(String, String), CronJob>,
    /// HorizontalPodAutoscalers by (namespace, name).
    pub hpas: BTreeMap<(String, String), Hpa>,
    /// Namespaces added explicitly, with whether they are excluded by annotation (every
    /// namespace an object above is in exists too, not excluded).
    pub namespaces: BTreeMap<String, bool>,
}

/// A NodePool with its NodeClaims and nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolNodes {
    /// `spec.limits`.
    pub limits: Option<BTreeMap<String, String>>,
    /// NodeClaims not being deleted.
    pub claims: usize,
    /// Nodes that exist (a node outlives its deleted claim until Karpenter has drained it).
    pub nodes: usize,
    /// Drain calls left before the nodes of deleted claims are gone (`None`: not draining).
    pub draining: Option<u32>,
}

/// One call the services made: which cluster, which method, with what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterCall {
    /// `account/region/cluster`.
    pub cluster: String,
    /// The [`ClusterApi`] method, e.g. `scale`.
    pub method: &'static str,
    /// Its arguments, e.g. `Deployment kube-system/cluster-autoscaler 0`.
    pub what: String,
}

impl std::fmt::Display for ClusterCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.what.is_empty() {
            write!(f, "{} {}", self.method, self.cluster)
        } else {
            write!(f, "{} {} {}", self.method, self.cluster, self.what)
        }
    }
}

type ClusterKey = (String, String, String);

struct Fleet {
    clusters: BTreeMap<ClusterKey, ClusterObjects>,
    denied: BTreeSet<String>,
    fail_next: Option<ErrorKind>,
    calls: Vec<ClusterCall>,
    /// See [`FakeClusters::set_drain_calls`].
    drain_calls: u32,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            clusters: BTreeMap::new(),
            denied: BTreeSet::new(),
            fail_next: None,
            calls: Vec::new(),
            drain_calls: 1,
        }
    }
}

/// Clusters in memory, keyed by (account, region, cluster name). A cluster exists once
/// something has been added to it (or [`FakeClusters::add_cluster`] was called); every call to
/// one that does not is [`ErrorKind::NotFound`], as `DescribeCluster` would answer.
#[derive(Default)]
pub struct FakeClusters {
    fleet: Mutex<Fleet>,
}

fn key(at: &ClusterRef) -> ClusterKey {
    (
        at.role.account.clone(),
        at.region.clone(),
        at.cluster.clone(),
    )
}

fn nn(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

fn not_found(what: String) -> PortError {
    PortError::new(ErrorKind::NotFound, format!("{what} not found"))
}

/// True when `limits` keep Karpenter from launching anything: some resource limited to zero.
fn closes(limits: Option<&BTreeMap<String, String>>) -> bool {
    limits.is_some_and(|l| {
        l.values().any(|q| {
            let number: String = q
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            !number.is_empty() && number.chars().all(|c| c == '0' || c == '.')
        })
    })
}

impl FakeClusters {
    /// No clusters; a drained pool's nodes are gone on the first drain call.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes a drained pool's nodes go only on the `calls`-th drain call (counting the one that
    /// deleted its claims), as Karpenter takes a while to drain and terminate them.
    pub fn set_drain_calls(&self, calls: u32) {
        lock(&self.fleet).drain_calls = calls.max(1);
    }

    /// Adds an empty cluster (if it is not there yet).
    pub fn add_cluster(&self, at: &ClusterRef) {
        lock(&self.fleet).clusters.entry(key(at)).or_default();
    }

    /// Adds (or replaces) a Deployment or StatefulSet.
    pub fn add_workload(&self, at: &ClusterRef, workload: Workload) {
        let id = (
            workload.kind,
            workload.namespace.clone(),
            workload.name.clone(),
        );
        self.objects_mut(at).workloads.insert(id, workload);
    }

    /// Adds (or replaces) a NodePool with `nodes` nodes, each with its NodeClaim.
    pub fn add_node_pool(&self, at: &ClusterRef, pool: NodePool, nodes: usize) {
        self.objects_mut(at).node_pools.insert(
            pool.name,
            PoolNodes {
                limits: pool.limits,
                claims: nodes,
                nodes,
                draining: None,
            },
        );
    }

    /// Adds (or replaces) a namespace, `excluded` when annotated `curfew/exclude: "true"`.
    pub fn add_namespace(&self, at: &ClusterRef, name: &str, excluded: bool) {
        self.objects_mut(at)
            .namespaces
            .insert(name.to_string(), excluded);
    }

    /// Adds (or replaces) a CronJob.
    pub fn add_cron_job(&self, at: &ClusterRef, job: CronJob) {
        let id = nn(&job.namespace, &job.name);
        self.objects_mut(at).cron_jobs.insert(id, job);
    }

    /// Adds (or replaces) an HPA.
    pub fn add_hpa(&self, at: &ClusterRef, hpa: Hpa) {
        let id = nn(&hpa.namespace, &hpa.name);
        self.objects_mut(at).hpas.insert(id, hpa);
    }

    /// The cluster's objects now, if it exists.
    pub fn objects(&self, at: &ClusterRef) -> Option<ClusterObjects> {
        lock(&self.fleet).clusters.get(&key(at)).cloned()
    }

    /// A workload's replicas now.
    pub fn replicas(
        &self,
        at: &ClusterRef,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Option<i32> {
        let objects = self.objects(at)?;
        let id = (kind, namespace.to_string(), name.to_string());
        objects.workloads.get(&id).map(|w| w.replicas)
    }

    /// A NodePool's limits and node count now.
    pub fn node_pool(&self, at: &ClusterRef, name: &str) -> Option<PoolNodes> {
        self.objects(at)?.node_pools.get(name).cloned()
    }

    /// Makes every call into `account` fail with [`ErrorKind::AccessDenied`] (no access entry
    /// for the spoke role, or RBAC refusing it).
    pub fn deny(&self, account: &str) {
        lock(&self.fleet).denied.insert(account.to_string());
    }

    /// Makes the next call (to any cluster) fail with `kind`, changing nothing.
    pub fn fail_next(&self, kind: ErrorKind) {
        lock(&self.fleet).fail_next = Some(kind);
    }

    /// Every call made so far, oldest first (failed ones included).
    pub fn calls(&self) -> Vec<ClusterCall> {
        lock(&self.fleet).calls.clone()
    }

    /// Every call made so far as `method account/region/cluster what` lines.
    pub fn call_lines(&self) -> Vec<String> {
        self.calls().iter().map(ToString::to_string).collect()
    }

    fn objects_mut(&self, at: &ClusterRef) -> MappedObjects<'_> {
        let mut fleet = lock(&self.fleet);
        fleet.clusters.entry(key(at)).or_default();
        MappedObjects {
            fleet,
            key: key(at),
        }
    }

    /// Logs the call, then applies the scripted failure, the denial and the cluster's
    /// existence, in that order.
    fn enter(
        &self,
        at: &ClusterRef,
        method: &'static str,
        what: String,
    ) -> PortResult<MappedObjects<'_>> {
        let mut fleet = lock(&self.fleet);
        fleet.calls.push(ClusterCall {
            cluster: format!("{}/{}/{}", at.role.account, at.region, at.cluster),
            method,
            what,
        });
        if let Some(kind) = fleet.fail_next.take() {
            return Err(PortError::new(
                kind,
                format!("{method} on cluster {}: failed by the test", at.cluster),
            ));
        }
        if fleet.denied.contains(&at.role.account) {
            return Err(PortError::new(
                ErrorKind::AccessDenied,
                format!(
                    "{method} on cluster {}: {} is not allowed in account {}",
                    at.cluster, at.role.role_arn, at.role.account
                ),
            ));
        }
        if !fleet.clusters.contains_key(&key(at)) {
            return Err(not_found(format!(
                "cluster {} in {}/{}",
                at.cluster, at.role.account, at.region
            )));
        }
        Ok(MappedObjects {
            fleet,
            key: key(at),
        })
    }
}

/// The fleet's lock, narrowed to one cluster that exists.
struct MappedObjects<'a> {
    fleet: MutexGuard<'a, Fleet>,
    key: ClusterKey,
}

impl std::ops::Deref for MappedObjects<'_> {
    type Target = ClusterObjects;
    fn deref(&self) -> &ClusterObjects {
        &self.fleet.clusters[&self.key]
    }
}

impl std::ops::DerefMut for MappedObjects<'_> {
    fn deref_mut(&mut self) -> &mut ClusterObjects {
        self.fleet
            .clusters
            .get_mut(&self.key)
            .expect("the cluster exists while its lock is held")
    }
}

#[async_trait]
impl ClusterApi for FakeClusters {
    async fn deployment_replicas(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
    ) -> PortResult<Option<i32>> {
        let objects = self.enter(at, "deployment_replicas", format!("{namespace}/{name}"))?;
        let id = (
            WorkloadKind::Deployment,
            namespace.to_string(),
            name.to_string(),
        );
        Ok(objects.workloads.get(&id).map(|w| w.replicas))
    }

    async fn scale(
        &self,
        at: &ClusterRef,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> PortResult<()> {
        let mut objects = self.enter(
            at,
            "scale",
            format!("{kind:?} {namespace}/{name} {replicas}"),
        )?;
        if replicas < 0 {
            // The scale subresource's validation: 422 Invalid.
            return Err(PortError::new(
                ErrorKind::Invalid,
                format!("{kind:?} {namespace}/{name}: replicas {replicas} must be >= 0"),
            ));
        }
        let id = (kind, namespace.to_string(), name.to_string());
        let workload = objects
            .workloads
            .get_mut(&id)
            .ok_or_else(|| not_found(format!("{kind:?} {namespace}/{name}")))?;
        workload.replicas = replicas;
        Ok(())
    }

    async fn node_pools(&self, at: &ClusterRef) -> PortResult<Vec<NodePool>> {
        let objects = self.enter(at, "node_pools", String::new())?;
        Ok(objects
            .node_pools
            .iter()
            .map(|(name, pool)| NodePool {
                name: name.clone(),
                limits: pool.limits.clone(),
            })
            .collect())
    }

    async fn set_node_pool_limits(
        &self,
        at: &ClusterRef,
        name: &str,
        limits: Option<&BTreeMap<String, String>>,
    ) -> PortResult<()> {
        let what = match limits {
            Some(l) => format!(
                "{name} {}",
                l.iter()
                    .map(|(r, q)| format!("{r}={q}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => format!("{name} none"),
        };
        let mut objects = self.enter(at, "set_node_pool_limits", what)?;
        let pool = objects
            .node_pools
            .get_mut(name)
            .ok_or_else(|| not_found(format!("NodePool {name}")))?;
        pool.limits = limits.cloned();
        Ok(())
    }

    async fn drain_node_pool(&self, at: &ClusterRef, name: &str) -> PortResult<usize> {
        let mut objects = self.enter(at, "drain_node_pool", name.to_string())?;
        let drain_calls = objects.fleet.drain_calls;
        // Listing by label finds nothing for a pool that does not exist: nothing to drain.
        let Some(pool) = objects.node_pools.get_mut(name) else {
            return Ok(0);
        };
        if pool.claims > 0 {
            pool.claims = 0;
            if closes(pool.limits.as_ref()) {
                pool.draining.get_or_insert(drain_calls);
            } else {
                // Karpenter launches a replacement for every drained node while its limits
                // leave room: the pool ends with as many nodes as it had.
                pool.claims = pool.nodes;
            }
        }
        if let Some(left) = pool.draining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                pool.nodes = 0;
                pool.draining = None;
            }
        }
        Ok(pool.nodes)
    }

    async fn namespaces(&self, at: &ClusterRef) -> PortResult<Vec<Namespace>> {
        let objects = self.enter(at, "namespaces", String::new())?;
        let mut all = objects.namespaces.clone();
        let used = (objects.workloads.values().map(|w| &w.namespace))
            .chain(objects.cron_jobs.values().map(|j| &j.namespace))
            .chain(objects.hpas.values().map(|h| &h.namespace));
        for namespace in used {
            all.entry(namespace.clone()).or_insert(false);
        }
        Ok(all
            .into_iter()
            .map(|(name, excluded)| Namespace { name, excluded })
            .collect())
    }

    async fn workloads(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Workload>> {
        let objects = self.enter(at, "workloads", namespace.to_string())?;
        Ok(objects
            .workloads
            .values()
            .filter(|w| w.namespace == namespace)
            .cloned()
            .collect())
    }

    async fn cron_jobs(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<CronJob>> {
        let objects = self.enter(at, "cron_jobs", namespace.to_string())?;
        Ok(objects
            .cron_jobs
            .values()
            .filter(|j| j.namespace == namespace)
            .cloned()
            .collect())
    }

    async fn set_cron_job_suspended(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        suspended: bool,
    ) -> PortResult<()> {
        let mut objects = self.enter(
            at,
            "set_cron_job_suspended",
            format!("{namespace}/{name} {suspended}"),
        )?;
        let job = objects
            .cron_jobs
            .get_mut(&nn(namespace, name))
            .ok_or_else(|| not_found(format!("CronJob {namespace}/{name}")))?;
        job.suspended = suspended;
        Ok(())
    }

    async fn hpas(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Hpa>> {
        let objects = self.enter(at, "hpas", namespace.to_string())?;
        Ok(objects
            .hpas
            .values()
            .filter(|h| h.namespace == namespace)
            .cloned()
            .collect())
    }

    async fn set_hpa_min(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        min_replicas: i32,
    ) -> PortResult<()> {
        let mut objects = self.enter(
            at,
            "set_hpa_min",
            format!("{namespace}/{name} {min_replicas}"),
        )?;
        if min_replicas < 1 {
            // minReplicas 0 needs the HPAScaleToZero feature gate, which EKS does not enable.
            return Err(PortError::new(
                ErrorKind::Invalid,
                format!(
                    "HorizontalPodAutoscaler {namespace}/{name}: minReplicas {min_replicas} must be >= 1"
                ),
            ));
        }
        let hpa = objects
            .hpas
            .get_mut(&nn(namespace, name))
            .ok_or_else(|| not_found(format!("HorizontalPodAutoscaler {namespace}/{name}")))?;
        hpa.min_replicas = min_replicas;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::SpokeRole;

    fn dev() -> ClusterRef {
        ClusterRef {
            role: SpokeRole {
                account: "111111111111".into(),
                role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
                external_id: None,
            },
            region: "eu-west-1".into(),
            cluster: "dev".into(),
        }
    }

    fn deployment(namespace: &str, name: &str, replicas: i32) -> Workload {
        Workload {
            kind: WorkloadKind::Deployment,
            namespace: namespace.into(),
            name: name.into(),
            replicas,
            excluded: false,
        }
    }

    fn limits(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(r, q)| (r.to_string(), q.to_string()))
            .collect()
    }

    fn pool(name: &str, l: Option<BTreeMap<String, String>>) -> NodePool {
        NodePool {
            name: name.into(),
            limits: l,
        }
    }

    #[tokio::test]
    async fn scaling_sets_the_replicas_and_logs_the_call() {
        let clusters = FakeClusters::new();
        clusters.add_workload(&dev(), deployment("kube-system", "cluster-autoscaler", 2));

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

        assert_eq!(
            clusters.replicas(
                &dev(),
                WorkloadKind::Deployment,
                "kube-system",
                "cluster-autoscaler"
            ),
            Some(0)
        );
        assert_eq!(
            clusters.call_lines(),
            ["scale 111111111111/eu-west-1/dev Deployment kube-system/cluster-autoscaler 0"]
        );
    }

    #[tokio::test]
    async fn a_missing_deployment_reads_as_none_and_cannot_be_scaled() {
        let clusters = FakeClusters::new();
        clusters.add_cluster(&dev());

        let replicas = clusters
            .deployment_replicas(&dev(), "kube-system", "cluster-autoscaler")
            .await
            .unwrap();
        let scaled = clusters
            .scale(
                &dev(),
                WorkloadKind::Deployment,
                "kube-system",
                "cluster-autoscaler",
                0,
            )
            .await;

        assert_eq!(replicas, None);
        assert_eq!(scaled.unwrap_err().kind, ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_cluster_that_was_never_added_is_not_found() {
        let clusters = FakeClusters::new();

        let err = clusters.node_pools(&dev()).await.unwrap_err();

        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(clusters.calls().len(), 1, "the failed call is logged");
    }

    #[tokio::test]
    async fn node_pool_limits_are_set_exactly_and_removed_with_none() {
        let clusters = FakeClusters::new();
        let original = limits(&[("cpu", "1000"), ("memory", "1000Gi")]);
        clusters.add_node_pool(&dev(), pool("default", Some(original.clone())), 2);

        let zero = limits(&[("cpu", "0")]);
        clusters
            .set_node_pool_limits(&dev(), "default", Some(&zero))
            .await
            .unwrap();
        assert_eq!(
            clusters.node_pool(&dev(), "default").unwrap().limits,
            Some(zero)
        );

        clusters
            .set_node_pool_limits(&dev(), "default", None)
            .await
            .unwrap();
        assert_eq!(clusters.node_pool(&dev(), "default").unwrap().limits, None);
        assert_eq!(
            clusters.node_pools(&dev()).await.unwrap(),
            [pool("default", None)]
        );
    }

    #[tokio::test]
    async fn a_closed_pools_nodes_are_gone_on_the_configured_drain_call() {
        let clusters = FakeClusters::new();
        clusters.set_drain_calls(3);
        clusters.add_node_pool(&dev(), pool("default", Some(limits(&[("cpu", "0")]))), 2);

        let mut left = Vec::new();
        for _ in 0..4 {
            left.push(clusters.drain_node_pool(&dev(), "default").await.unwrap());
        }

        assert_eq!(left, [2, 2, 0, 0]);
        assert_eq!(clusters.node_pool(&dev(), "default").unwrap().claims, 0);
    }

    #[tokio::test]
    async fn karpenter_replaces_the_drained_nodes_of_a_pool_its_limits_leave_open() {
        let clusters = FakeClusters::new();
        clusters.add_node_pool(&dev(), pool("default", Some(limits(&[("cpu", "1000")]))), 2);

        let left = clusters.drain_node_pool(&dev(), "default").await.unwrap();
        let again = clusters.drain_node_pool(&dev(), "default").await.unwrap();

        assert_eq!((left, again), (2, 2));
        assert_eq!(clusters.node_pool(&dev(), "default").unwrap().claims, 2);
    }

    #[test]
    fn any_zero_quantity_closes_a_pool() {
        for zero in ["0", "0m", "0Gi", "0.0"] {
            assert!(closes(Some(&limits(&[("cpu", zero)]))), "{zero}");
        }
        for open in ["1", "10m", "0.5", "100Gi"] {
            assert!(!closes(Some(&limits(&[("cpu", open)]))), "{open}");
        }
        assert!(!closes(None));
    }

    #[tokio::test]
    async fn workloads_cron_jobs_and_hpas_are_listed_per_namespace() {
        let clusters = FakeClusters::new();
        clusters.add_workload(&dev(), deployment("shop", "web", 4));
        clusters.add_workload(&dev(), deployment("ops", "grafana", 1));
        clusters.add_cron_job(
            &dev(),
            CronJob {
                namespace: "shop".into(),
                name: "report".into(),
                suspended: false,
                excluded: false,
            },
        );
        clusters.add_hpa(
            &dev(),
            Hpa {
                namespace: "shop".into(),
                name: "web".into(),
                target: ("Deployment".into(), "web".into()),
                min_replicas: 2,
            },
        );

        assert_eq!(
            clusters.workloads(&dev(), "shop").await.unwrap(),
            [deployment("shop", "web", 4)]
        );
        clusters
            .set_cron_job_suspended(&dev(), "shop", "report", true)
            .await
            .unwrap();
        assert!(clusters.cron_jobs(&dev(), "shop").await.unwrap()[0].suspended);
        assert!(clusters.cron_jobs(&dev(), "ops").await.unwrap().is_empty());
        clusters
            .set_hpa_min(&dev(), "shop", "web", 1)
            .await
            .unwrap();
        assert_eq!(
            clusters.hpas(&dev(), "shop").await.unwrap()[0].min_replicas,
            1
        );
    }

    #[tokio::test]
    async fn values_the_api_server_refuses_are_invalid_and_change_nothing() {
        let clusters = FakeClusters::new();
        clusters.add_workload(&dev(), deployment("shop", "web", 4));
        clusters.add_hpa(
            &dev(),
            Hpa {
                namespace: "shop".into(),
                name: "web".into(),
                target: ("Deployment".into(), "web".into()),
                min_replicas: 2,
            },
        );

        let scaled = clusters
            .scale(&dev(), WorkloadKind::Deployment, "shop", "web", -1)
            .await;
        let hpa = clusters.set_hpa_min(&dev(), "shop", "web", 0).await;

        assert_eq!(scaled.unwrap_err().kind, ErrorKind::Invalid);
        assert_eq!(hpa.unwrap_err().kind, ErrorKind::Invalid);
        let objects = clusters.objects(&dev()).unwrap();
        assert_eq!(
            clusters.replicas(&dev(), WorkloadKind::Deployment, "shop", "web"),
            Some(4)
        );
        assert_eq!(objects.hpas[&nn("shop", "web")].min_replicas, 2);
    }

    #[tokio::test]
    async fn a_denied_account_and_a_scripted_failure_fail_the_call_and_change_nothing() {
        let clusters = FakeClusters::new();
        clusters.add_workload(&dev(), deployment("kube-system", "cluster-autoscaler", 2));

        clusters.fail_next(ErrorKind::Throttled);
        let throttled = clusters
            .scale(
                &dev(),
                WorkloadKind::Deployment,
                "kube-system",
                "cluster-autoscaler",
                0,
            )
            .await;
        clusters.deny("111111111111");
        let denied = clusters
            .scale(
                &dev(),
                WorkloadKind::Deployment,
                "kube-system",
                "cluster-autoscaler",
                0,
            )
            .await;

        assert_eq!(throttled.unwrap_err().kind, ErrorKind::Throttled);
        assert_eq!(denied.unwrap_err().kind, ErrorKind::AccessDenied);
        assert_eq!(
            clusters.replicas(
                &dev(),
                WorkloadKind::Deployment,
                "kube-system",
                "cluster-autoscaler"
            ),
            Some(2)
        );
        assert_eq!(clusters.calls().len(), 2);
    }

    #[tokio::test]
    async fn clusters_are_told_apart_by_account_region_and_name() {
        let clusters = FakeClusters::new();
        let other_region = ClusterRef {
            region: "us-east-1".into(),
            ..dev()
        };
        clusters.add_workload(&dev(), deployment("kube-system", "cluster-autoscaler", 2));
        clusters.add_workload(
            &other_region,
            deployment("kube-system", "cluster-autoscaler", 5),
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

        assert_eq!(
            clusters
                .deployment_replicas(&other_region, "kube-system", "cluster-autoscaler")
                .await
                .unwrap(),
            Some(5)
        );
    }
}
