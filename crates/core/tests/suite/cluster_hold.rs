//! Holding whole clusters asleep (issue 8): the `ca-deployment`, `karpenter` and `workloads`
//! modes pause a node group's cluster before the node group shrinks and restore it, exactly,
//! once the last node group curfew holds in it is back.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::*;
use chrono::Duration;
use curfew_core::clock::Clock;
use curfew_core::cluster::{
    ClusterApi, ClusterRef, CronJob, Hpa, Namespace, NodePool, Workload, WorkloadKind,
};
use curfew_core::cluster_hold::{closed_limits, ClusterHold, ClusterSaved, SavedDeployment};
use curfew_core::fakes::FakeClusters;
use curfew_core::hold::{HoldModes, Source, HOLD_TAG};
use curfew_core::operation::{TaskMessage, TaskStatus};
use curfew_core::ports::{ErrorKind, LeaseToken, PortResult, TargetStore};
use curfew_core::service::worker::{self, TaskStep};
use curfew_core::service::Hub;
use curfew_core::target::{Sizes, Target, TargetKind};

fn dev_cluster() -> ClusterRef {
    ClusterRef {
        role: curfew_core::account::SpokeRole {
            account: DEV.into(),
            role_arn: format!("arn:aws:iam::{DEV}:role/curfew-spoke"),
            external_id: None,
        },
        region: REGION.into(),
        cluster: "dev".into(),
    }
}

fn limits(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(r, q)| (r.to_string(), q.to_string()))
        .collect()
}

fn workload(kind: WorkloadKind, namespace: &str, name: &str, replicas: i32) -> Workload {
    Workload {
        kind,
        namespace: namespace.into(),
        name: name.into(),
        replicas,
        excluded: false,
    }
}

fn cron_job(namespace: &str, name: &str, suspended: bool) -> CronJob {
    CronJob {
        namespace: namespace.into(),
        name: name.into(),
        suspended,
        excluded: false,
    }
}

/// A node group of cluster `dev` opted into `modes` (cluster tag), with `sizes`.
fn member(name: &str, modes: &str) -> Target {
    let mut ng = target(DEV, TargetKind::Nodegroup, Some("dev"), name);
    ng.cluster_tags
        .insert(HOLD_TAG.to_string(), modes.to_string());
    ng
}

/// The test world with cluster `dev` holding: Cluster Autoscaler (2 replicas), two NodePools
/// (one limited, one not) with 3 and 1 nodes, and some workloads; the world's node group
/// replaced by one opted into `modes`.
struct ClusterWorld {
    w: World,
    clusters: Arc<FakeClusters>,
    ng: Target,
}

const CA: (&str, &str) = ("kube-system", "cluster-autoscaler");

async fn cluster_world(modes: &str) -> ClusterWorld {
    let mut w = world(&[]).await;
    let clusters = Arc::new(FakeClusters::new());
    w.hub = Hub {
        clusters: clusters.clone(),
        ..w.hub.clone()
    };
    let ng = member("workers", modes);
    w.spokes.add(ng.clone(), NG_SIZES);
    let dev = dev_cluster();
    clusters.add_workload(&dev, workload(WorkloadKind::Deployment, CA.0, CA.1, 2));
    clusters.add_workload(
        &dev,
        workload(WorkloadKind::Deployment, "kube-system", "coredns", 2),
    );
    clusters.add_node_pool(
        &dev,
        NodePool {
            name: "default".into(),
            limits: Some(limits(&[("cpu", "1000"), ("memory", "1000Gi")])),
        },
        3,
    );
    clusters.add_node_pool(
        &dev,
        NodePool {
            name: "spot".into(),
            limits: None,
        },
        1,
    );
    clusters.add_workload(&dev, workload(WorkloadKind::Deployment, "shop", "web", 3));
    clusters.add_workload(&dev, workload(WorkloadKind::StatefulSet, "shop", "db", 1));
    let mut pinned = workload(WorkloadKind::Deployment, "shop", "pinned", 2);
    pinned.excluded = true;
    clusters.add_workload(&dev, pinned);
    clusters.add_workload(&dev, workload(WorkloadKind::Deployment, "shop", "idle", 0));
    clusters.add_cron_job(&dev, cron_job("shop", "report", false));
    clusters.add_cron_job(&dev, cron_job("shop", "archive", true));
    clusters.add_namespace(&dev, "platform", true);
    clusters.add_workload(
        &dev,
        workload(WorkloadKind::Deployment, "platform", "ingress", 2),
    );
    ClusterWorld { w, clusters, ng }
}

impl ClusterWorld {
    fn replicas(&self, kind: WorkloadKind, namespace: &str, name: &str) -> i32 {
        self.clusters
            .replicas(&dev_cluster(), kind, namespace, name)
            .unwrap()
    }

    fn ca_replicas(&self) -> i32 {
        self.replicas(WorkloadKind::Deployment, CA.0, CA.1)
    }

    fn pool_limits(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.clusters
            .node_pool(&dev_cluster(), name)
            .unwrap()
            .limits
    }

    fn pool_nodes(&self, name: &str) -> usize {
        self.clusters.node_pool(&dev_cluster(), name).unwrap().nodes
    }

    fn cron_suspended(&self, name: &str) -> bool {
        self.clusters.objects(&dev_cluster()).unwrap().cron_jobs[&("shop".into(), name.into())]
            .suspended
    }
}

#[tokio::test]
async fn sleep_pauses_the_cluster_and_waits_for_karpenters_nodes_before_the_node_group_shrinks() {
    let c = cluster_world("ca-deployment+karpenter").await;
    // Karpenter takes three looks before the drained nodes are gone.
    c.clusters.set_drain_calls(3);
    let stop = c.w.begin(true, false).await;
    let tasks = c.w.route().await;
    assert_eq!(c.w.work_once(tasks).await, 1, "the node group waits");
    assert_eq!(c.ca_replicas(), 0);
    assert_eq!(c.pool_limits("default"), Some(closed_limits()));
    assert_eq!(c.pool_limits("spot"), Some(closed_limits()));
    assert_eq!(
        c.w.sizes(&c.ng),
        NG_SIZES,
        "not before Karpenter's nodes are gone"
    );
    assert!(c.w.drain().await.settled);
    assert_eq!(c.pool_nodes("default"), 0);
    assert_eq!(c.w.sizes(&c.ng), Sizes::new(0, 5, 0));
    let task = c.w.task(&stop, &c.ng).await;
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(
        task.steps,
        [
            "ca-deployment: scale kube-system/cluster-autoscaler from 2 to 0",
            "karpenter: limit 2 NodePools to cpu 0 and drain their NodeClaims"
        ]
    );
    let lines = c.clusters.call_lines();
    let first_close = lines
        .iter()
        .position(|l| l.starts_with("set_node_pool_limits"))
        .unwrap();
    let ca_down = lines
        .iter()
        .position(|l| l.contains("cluster-autoscaler 0"))
        .unwrap();
    let first_drain = lines
        .iter()
        .position(|l| l.starts_with("drain_node_pool"))
        .unwrap();
    assert!(
        ca_down < first_close && first_close < first_drain,
        "{lines:#?}"
    );
}

#[tokio::test]
async fn wake_restores_the_node_group_first_then_the_limits_and_the_autoscaler_exactly() {
    let c = cluster_world("ca-deployment+karpenter").await;
    c.w.run(true).await;
    c.w.clock.advance(Duration::hours(12));
    // The node group's update takes a while: the cluster waits for it.
    c.w.spokes.script_next_update(&c.ng.key(), 2, None);
    let start = c.w.begin(false, false).await;
    let tasks = c.w.route().await;
    c.w.work_once(tasks).await;
    assert_eq!(c.ca_replicas(), 0, "not before the node group is back");
    assert_eq!(c.pool_limits("default"), Some(closed_limits()));
    assert!(c.w.drain().await.settled);
    assert_eq!(c.w.sizes(&c.ng), NG_SIZES);
    assert_eq!(c.ca_replicas(), 2);
    assert_eq!(
        c.pool_limits("default"),
        Some(limits(&[("cpu", "1000"), ("memory", "1000Gi")]))
    );
    assert_eq!(c.pool_limits("spot"), None, "unset limits are unset again");
    let task = c.w.task(&start, &c.ng).await;
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(
        task.steps,
        [
            "ca-deployment: scale kube-system/cluster-autoscaler back to 2",
            "karpenter: restore the limits of 2 NodePools"
        ]
    );
    let hold = &c.w.store.cluster_holds()[&format!("{DEV}#{REGION}#dev")];
    assert!(hold.members.is_empty() && hold.saved.is_none());
    assert!(c.w.store.baselines().is_empty());
}

#[tokio::test]
async fn the_first_node_group_to_sleep_saves_the_cluster_and_the_last_to_wake_restores_it() {
    let c = cluster_world("ca-deployment").await;
    let second = member("batch", "ca-deployment");
    c.w.spokes.add(second.clone(), Sizes::new(1, 3, 1));
    c.w.run(true).await;
    assert_eq!(c.ca_replicas(), 0);
    let key = format!("{DEV}#{REGION}#dev");
    let hold = c.w.store.cluster_holds()[&key].clone();
    assert_eq!(hold.members.len(), 2);
    assert_eq!(hold.saved.unwrap().ca_deployment.unwrap().replicas, 2);

    // Someone wakes one node group alone: the other still sleeps, so the cluster stays paused.
    c.w.clock.advance(Duration::hours(1));
    let select = curfew_core::selector::Selector::parse("name=workers").unwrap();
    let one = curfew_core::service::invocation::invoke(
        &c.w.hub,
        curfew_core::service::invocation::Invocation::Start {
            select,
            dry_run: false,
            discovery: Default::default(),
            hold: None,
        },
    )
    .await
    .unwrap();
    assert!(c.w.drain().await.settled);
    assert_eq!(c.w.sizes(&c.ng), NG_SIZES);
    assert_eq!(c.ca_replicas(), 0, "batch is still asleep");
    let task = c.w.task(&one.operation_id, &c.ng).await;
    assert!(
        task.steps.iter().any(|s| s.contains("keep it paused")),
        "{:?}",
        task.steps
    );

    c.w.clock.advance(Duration::hours(11));
    c.w.run(false).await;
    assert_eq!(c.w.sizes(&second), Sizes::new(1, 3, 1));
    assert_eq!(c.ca_replicas(), 2);
}

#[tokio::test]
async fn workloads_mode_scales_the_selected_namespaces_to_zero_and_restores_exact_replicas() {
    let c = cluster_world("workloads").await;
    c.w.run(true).await;
    assert_eq!(c.replicas(WorkloadKind::Deployment, "shop", "web"), 0);
    assert_eq!(c.replicas(WorkloadKind::StatefulSet, "shop", "db"), 0);
    assert!(c.cron_suspended("report"));
    assert_eq!(
        c.replicas(WorkloadKind::Deployment, "shop", "pinned"),
        2,
        "excluded by annotation"
    );
    assert_eq!(
        c.replicas(WorkloadKind::Deployment, "platform", "ingress"),
        2,
        "its namespace is excluded"
    );
    assert_eq!(
        c.replicas(WorkloadKind::Deployment, "kube-system", "coredns"),
        2
    );
    assert_eq!(c.ca_replicas(), 2, "not a mode of this cluster");
    assert_eq!(c.w.sizes(&c.ng), Sizes::new(0, 5, 0));

    c.w.clock.advance(Duration::hours(12));
    c.w.run(false).await;
    assert_eq!(c.replicas(WorkloadKind::Deployment, "shop", "web"), 3);
    assert_eq!(c.replicas(WorkloadKind::StatefulSet, "shop", "db"), 1);
    assert_eq!(c.replicas(WorkloadKind::Deployment, "shop", "idle"), 0);
    assert!(!c.cron_suspended("report"));
    assert!(
        c.cron_suspended("archive"),
        "what its owners suspended stays suspended"
    );
}

#[tokio::test]
async fn a_namespaces_tag_limits_the_workloads_mode_to_the_namespaces_it_lists() {
    let c = cluster_world("workloads").await;
    let mut ng = c.ng.clone();
    ng.cluster_tags
        .insert("curfew/namespaces".into(), "platform".into());
    c.w.spokes.add(ng, NG_SIZES);
    c.w.run(true).await;
    assert_eq!(
        c.replicas(WorkloadKind::Deployment, "platform", "ingress"),
        0
    );
    assert_eq!(c.replicas(WorkloadKind::Deployment, "shop", "web"), 3);
}

#[tokio::test]
async fn a_node_group_without_a_cluster_wide_mode_makes_no_kubernetes_call() {
    for modes in ["none", "ca-tags"] {
        let c = cluster_world(modes).await;
        c.w.run(true).await;
        c.w.clock.advance(Duration::hours(12));
        c.w.run(false).await;
        assert_eq!(c.w.sizes(&c.ng), NG_SIZES);
        assert!(
            c.clusters.calls().is_empty(),
            "{modes}: {:?}",
            c.clusters.call_lines()
        );
        assert!(c.w.store.cluster_holds().is_empty());
    }
}

#[tokio::test]
async fn a_hold_flag_names_cluster_wide_modes_for_one_operation() {
    let c = cluster_world("none").await;
    let select = curfew_core::selector::Selector::parse("tag:env=dev").unwrap();
    curfew_core::service::invocation::invoke(
        &c.w.hub,
        curfew_core::service::invocation::Invocation::Stop {
            select,
            dry_run: false,
            discovery: Default::default(),
            hold: Some(HoldModes::parse("ca-deployment", Source::Flag).unwrap()),
        },
    )
    .await
    .unwrap();
    assert!(c.w.drain().await.settled);
    assert_eq!(c.ca_replicas(), 0);
    // The wake needs no flag: the baseline says the node group joined its cluster's hold.
    c.w.clock.advance(Duration::hours(12));
    c.w.run(false).await;
    assert_eq!(c.ca_replicas(), 2);
}

#[tokio::test]
async fn a_stop_over_an_asleep_node_group_pauses_again_what_was_put_back() {
    let c = cluster_world("ca-deployment+karpenter").await;
    c.w.run(true).await;
    let dev = dev_cluster();
    c.clusters
        .add_workload(&dev, workload(WorkloadKind::Deployment, CA.0, CA.1, 1));
    c.clusters.add_node_pool(
        &dev,
        NodePool {
            name: "default".into(),
            limits: Some(limits(&[("cpu", "1000")])),
        },
        0,
    );
    c.w.clock.advance(Duration::minutes(30));
    let again = c.w.run(true).await;
    let task = c.w.task(&again.id, &c.ng).await;
    assert_eq!(task.status, TaskStatus::Skipped);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("paused Deployment kube-system/cluster-autoscaler, 1 NodePool(s) again"),
        "{reason}"
    );
    assert_eq!(c.ca_replicas(), 0);
    assert_eq!(c.pool_limits("default"), Some(closed_limits()));
    // The wake still restores what was saved before the first sleep.
    c.w.clock.advance(Duration::hours(12));
    c.w.run(false).await;
    assert_eq!(c.ca_replicas(), 2);
    assert_eq!(
        c.pool_limits("default"),
        Some(limits(&[("cpu", "1000"), ("memory", "1000Gi")]))
    );
}

/// A wake that left the hold and crashed before restoring leaves the record pending; the next
/// node group to sleep keeps what was saved (not the paused state it would read now), and the
/// wake after it restores the original.
#[tokio::test]
async fn a_restore_cut_short_keeps_the_saved_state_for_the_next_sleep_and_wake() {
    let c = cluster_world("ca-deployment").await;
    let dev = dev_cluster();
    c.clusters
        .add_workload(&dev, workload(WorkloadKind::Deployment, CA.0, CA.1, 0));
    let key = format!("{DEV}#{REGION}#dev");
    let pending = ClusterHold {
        generation: 7,
        saved: Some(ClusterSaved {
            modes: HoldModes::parse("ca-deployment", Source::Flag).unwrap(),
            ca_deployment: Some(SavedDeployment {
                namespace: CA.0.into(),
                name: CA.1.into(),
                replicas: 3,
            }),
            ..Default::default()
        }),
        ..ClusterHold::idle(&key)
    };
    // Written as a delivery holding some target's lease would.
    let lease = LeaseToken::new("op-crashed", curfew_core::decision::Action::Start);
    let now = c.w.clock.now();
    let holder = "crashed-target";
    c.w.store
        .acquire_lease(holder, &lease, now, now, Duration::minutes(5))
        .await
        .unwrap();
    assert!(c
        .w
        .store
        .put_cluster_hold(&pending, 0, holder, &lease)
        .await
        .unwrap());

    c.w.run(true).await;
    assert_eq!(c.ca_replicas(), 0);
    let hold = c.w.store.cluster_holds()[&key].clone();
    assert_eq!(
        hold.saved.unwrap().ca_deployment.unwrap().replicas,
        3,
        "kept, not read again from the paused cluster"
    );
    c.w.clock.advance(Duration::hours(12));
    c.w.run(false).await;
    assert_eq!(c.ca_replicas(), 3);
}

#[tokio::test]
async fn a_cluster_that_refuses_the_role_fails_the_stop_naming_the_step_and_keeps_the_group_awake()
{
    let c = cluster_world("karpenter").await;
    c.clusters.deny(DEV);
    let stop = c.w.run(true).await;
    let task = c.w.task(&stop.id, &c.ng).await;
    assert_eq!(task.status, TaskStatus::Failed);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("karpenter: listing the NodePools"),
        "{reason}"
    );
    assert_eq!(c.w.sizes(&c.ng), NG_SIZES);
    assert!(!c.w.store.baselines().contains_key(&c.ng.key()));
    assert_eq!(
        c.w.sizes(&asg(DEV)),
        Sizes::new(0, 0, 0),
        "the ASG still stopped"
    );
}

#[tokio::test]
async fn a_ca_deployment_that_is_not_there_fails_the_stop_pointing_at_the_tag() {
    let c = cluster_world("ca-deployment").await;
    let mut ng = c.ng.clone();
    ng.cluster_tags
        .insert("curfew/ca-deployment".into(), "autoscaling/ca".into());
    c.w.spokes.add(ng.clone(), NG_SIZES);
    let stop = c.w.run(true).await;
    let task = c.w.task(&stop.id, &ng).await;
    assert_eq!(task.status, TaskStatus::Failed);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("autoscaling/ca not found") && reason.contains("curfew/ca-deployment"),
        "{reason}"
    );
    assert_eq!(c.w.sizes(&ng), NG_SIZES);
}

#[tokio::test]
async fn plan_lists_the_cluster_wide_steps_and_touches_no_cluster() {
    let c = cluster_world("ca-deployment+karpenter+workloads").await;
    let select = curfew_core::selector::Selector::parse("name=workers").unwrap();
    let plan_of = |action| {
        let hub = c.w.hub.clone();
        let select = select.clone();
        async move {
            curfew_core::service::router::plan(&hub, action, &select, Default::default(), None)
                .await
                .unwrap()
                .changes
                .remove(0)
                .steps
        }
    };
    assert_eq!(
        plan_of(curfew_core::decision::Action::Stop).await,
        [
            "ca-deployment: scale kube-system/cluster-autoscaler in dev to 0",
            "karpenter: limit dev's NodePools to cpu 0 and drain their NodeClaims",
            "workloads: scale the Deployments and StatefulSets of dev (every namespace not \
             excluded) to 0 and suspend their CronJobs"
        ]
    );
    assert!(
        c.clusters.calls().is_empty(),
        "{:?}",
        c.clusters.call_lines()
    );
    c.w.run(true).await;
    assert_eq!(
        plan_of(curfew_core::decision::Action::Start).await,
        ["cluster hold: leave dev's hold; the last node group to wake restores the cluster"]
    );
}

/// Holds one call until the test opens the gate: the first read of a Deployment's replicas
/// (`restore: false`) or the first scale to more than zero (`restore: true`).
struct GatedClusters {
    inner: Arc<FakeClusters>,
    gate: tokio::sync::Semaphore,
    used: std::sync::atomic::AtomicBool,
    restore: bool,
}

impl GatedClusters {
    fn new(inner: Arc<FakeClusters>, restore: bool) -> Self {
        GatedClusters {
            inner,
            gate: tokio::sync::Semaphore::new(0),
            used: Default::default(),
            restore,
        }
    }

    async fn pass(&self, gated: bool) {
        if gated && !self.used.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.gate.acquire().await.unwrap().forget();
        }
    }
}

#[async_trait::async_trait]
impl ClusterApi for GatedClusters {
    async fn deployment_replicas(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
    ) -> PortResult<Option<i32>> {
        self.pass(!self.restore).await;
        self.inner.deployment_replicas(at, namespace, name).await
    }
    async fn scale(
        &self,
        at: &ClusterRef,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> PortResult<()> {
        self.pass(self.restore && replicas > 0).await;
        self.inner.scale(at, kind, namespace, name, replicas).await
    }
    async fn node_pools(&self, at: &ClusterRef) -> PortResult<Vec<NodePool>> {
        self.inner.node_pools(at).await
    }
    async fn set_node_pool_limits(
        &self,
        at: &ClusterRef,
        name: &str,
        limits: Option<&BTreeMap<String, String>>,
    ) -> PortResult<()> {
        self.inner.set_node_pool_limits(at, name, limits).await
    }
    async fn drain_node_pool(&self, at: &ClusterRef, name: &str) -> PortResult<usize> {
        self.inner.drain_node_pool(at, name).await
    }
    async fn namespaces(&self, at: &ClusterRef) -> PortResult<Vec<Namespace>> {
        self.inner.namespaces(at).await
    }
    async fn workloads(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Workload>> {
        self.inner.workloads(at, namespace).await
    }
    async fn cron_jobs(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<CronJob>> {
        self.inner.cron_jobs(at, namespace).await
    }
    async fn set_cron_job_suspended(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        suspended: bool,
    ) -> PortResult<()> {
        self.inner
            .set_cron_job_suspended(at, namespace, name, suspended)
            .await
    }
    async fn hpas(&self, at: &ClusterRef, namespace: &str) -> PortResult<Vec<Hpa>> {
        self.inner.hpas(at, namespace).await
    }
    async fn set_hpa_min(
        &self,
        at: &ClusterRef,
        namespace: &str,
        name: &str,
        min_replicas: i32,
    ) -> PortResult<()> {
        self.inner
            .set_hpa_min(at, namespace, name, min_replicas)
            .await
    }
}

/// Two node groups of one cluster stop at once: the first reads Cluster Autoscaler's replicas
/// to save them, and before its read answers the second saves them, pauses the cluster and
/// sleeps. The first's read now sees the paused Deployment (0); its write of the record fails
/// on the generation, and it joins keeping what the second saved, so the wake restores 2.
#[tokio::test(flavor = "current_thread")]
async fn two_node_groups_stopping_at_once_never_save_the_paused_cluster() {
    let c = cluster_world("ca-deployment").await;
    let batch = member("batch", "ca-deployment");
    c.w.spokes.add(batch.clone(), Sizes::new(1, 3, 1));
    let gated = Arc::new(GatedClusters::new(c.clusters.clone(), false));
    let slow = Hub {
        clusters: gated.clone(),
        ..c.w.hub.clone()
    };
    c.w.begin(true, false).await;
    let bodies = c.w.route().await;
    let message = |t: &Target| -> TaskMessage {
        let body = bodies
            .iter()
            .find(|b| b.contains(&format!("\"name\":\"{}\"", t.name)))
            .unwrap();
        serde_json::from_str(body).unwrap()
    };
    let (first, second) = (message(&c.ng), message(&batch));
    let slow_stop = worker::work(&slow, &first, None);
    let rest = async {
        let step = worker::work(&c.w.hub, &second, None).await.unwrap();
        assert_eq!(step, TaskStep::Finished(TaskStatus::Succeeded));
        assert_eq!(c.ca_replicas(), 0, "the second paused the cluster");
        gated.gate.add_permits(1);
    };
    let (step, ()) = tokio::join!(slow_stop, rest);
    assert_eq!(step.unwrap(), TaskStep::Finished(TaskStatus::Succeeded));
    let hold = c.w.store.cluster_holds()[&format!("{DEV}#{REGION}#dev")].clone();
    assert_eq!(hold.members.len(), 2);
    assert_eq!(hold.saved.unwrap().ca_deployment.unwrap().replicas, 2);

    c.w.clock.advance(Duration::hours(12));
    c.w.run(false).await;
    assert_eq!(c.ca_replicas(), 2);
    assert_eq!(c.w.sizes(&c.ng), NG_SIZES);
    assert_eq!(c.w.sizes(&batch), Sizes::new(1, 3, 1));
}

/// The last node group of a cluster wakes and is stopped in its restore of Cluster
/// Autoscaler (its first Kubernetes call waits on a gate) while another node group's stop is
/// delivered: the wake's messages, and a hub whose cluster calls pass the gate.
struct Overlap {
    c: ClusterWorld,
    batch: Target,
    wake: TaskMessage,
    sleep: TaskMessage,
}

async fn overlap() -> Overlap {
    let c = cluster_world("ca-deployment").await;
    let batch = member("batch", "ca-deployment");
    c.w.spokes.add(batch.clone(), Sizes::new(1, 3, 1));
    c.w.begin_on("name=workers", true, false).await;
    assert!(c.w.drain().await.settled);
    assert_eq!(c.ca_replicas(), 0);
    c.w.clock.advance(Duration::hours(1));
    c.w.begin_on("name=workers", false, false).await;
    let wake: TaskMessage = serde_json::from_str(&c.w.route().await[0]).unwrap();
    c.w.clock.advance(Duration::seconds(1));
    c.w.begin_on("name=batch", true, false).await;
    let sleep: TaskMessage = serde_json::from_str(&c.w.route().await[0]).unwrap();
    Overlap {
        c,
        batch,
        wake,
        sleep,
    }
}

impl Overlap {
    /// Runs the wake until its restore waits at the gate, then `meanwhile`, then lets the
    /// restore go on; returns what the wake's delivery and `meanwhile` came to.
    async fn during_restore<T>(
        &self,
        meanwhile: impl std::future::Future<Output = T>,
    ) -> (PortResult<TaskStep>, T) {
        let gated = Arc::new(GatedClusters::new(self.c.clusters.clone(), true));
        let slow = Hub {
            clusters: gated.clone(),
            ..self.c.w.hub.clone()
        };
        let waking = worker::work(&slow, &self.wake, None);
        let rest = async {
            let out = meanwhile.await;
            gated.gate.add_permits(1);
            out
        };
        tokio::join!(waking, rest)
    }

    /// The wake's restore, with its reset of the record failing, while `batch`'s stop is
    /// delivered: what the wake's delivery and the stop came to.
    async fn restore_whose_reset_fails(&self) -> (PortResult<TaskStep>, TaskStep) {
        self.during_restore(async {
            let step = self.stop_batch().await;
            self.c.w.store.fail_next_cluster_hold_writes(1);
            step
        })
        .await
    }

    async fn stop_batch(&self) -> TaskStep {
        worker::work(&self.c.w.hub, &self.sleep, None)
            .await
            .unwrap()
    }

    /// `batch` asleep alone in the hold, which saved Cluster Autoscaler's 2 replicas and keeps
    /// it at 0; its wake puts the 2 back.
    async fn assert_batch_holds_the_cluster(&self) {
        let c = &self.c;
        assert_eq!(c.w.sizes(&c.ng), NG_SIZES);
        assert_eq!(c.w.sizes(&self.batch), Sizes::new(0, 3, 0));
        assert_eq!(c.ca_replicas(), 0, "batch sleeps: the cluster stays paused");
        let hold = c.w.store.cluster_holds()[&format!("{DEV}#{REGION}#dev")].clone();
        assert_eq!(
            hold.members.into_iter().collect::<Vec<_>>(),
            [self.batch.key()]
        );
        assert_eq!(hold.saved.unwrap().ca_deployment.unwrap().replicas, 2);
        c.w.clock.advance(Duration::hours(1));
        c.w.begin_on("name=batch", false, false).await;
        assert!(c.w.drain().await.settled);
        assert_eq!(c.ca_replicas(), 2);
    }
}

fn waits_for_the_restore(step: &TaskStep) -> bool {
    matches!(step, TaskStep::RetryLater(why) if why.contains("is restoring cluster"))
}

/// A stop delivered while the last wake restores the cluster does not pause it under the
/// restore: it comes back later, then saves what it finds (the restored 2 replicas) and pauses.
#[tokio::test(flavor = "current_thread")]
async fn a_stop_arriving_while_the_last_wake_restores_waits_and_then_pauses_the_cluster() {
    let o = overlap().await;
    let (woke, stopped) = o.during_restore(o.stop_batch()).await;
    assert!(waits_for_the_restore(&stopped), "{stopped:?}");
    assert_eq!(woke.unwrap(), TaskStep::Finished(TaskStatus::Succeeded));
    assert_eq!(o.c.ca_replicas(), 2, "the wake restored the cluster");
    assert_eq!(
        o.stop_batch().await,
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    o.assert_batch_holds_the_cluster().await;
}

/// Chaos seed 39040: the last wake's reset of the record fails after its restore. Its claim
/// stays, so a stop still waits; the wake's next delivery restores again and resets the
/// record, and only then does the stop pause the cluster. (Before the claim, the stop paused
/// during the restore, the restore landed after it, and the wake's retry found nothing to do:
/// batch asleep with Cluster Autoscaler at 2.)
#[tokio::test(flavor = "current_thread")]
async fn a_wake_whose_reset_of_the_hold_fails_restores_again_before_any_stop_pauses() {
    let o = overlap().await;
    let (woke, stopped) = o.restore_whose_reset_fails().await;
    assert!(woke.is_err(), "the reset failed: {woke:?}");
    assert!(waits_for_the_restore(&stopped), "{stopped:?}");
    let again = o.stop_batch().await;
    assert!(waits_for_the_restore(&again), "still claimed: {again:?}");
    assert_eq!(
        worker::work(&o.c.w.hub, &o.wake, None).await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    assert_eq!(
        o.stop_batch().await,
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    o.assert_batch_holds_the_cluster().await;
}

/// A wake that dies after leaving the hold last leaves its claim; once the claim lapses with
/// its lease, a stop joins, keeps what was saved and pauses the cluster, and the wake's next
/// delivery leaves the cluster to it.
#[tokio::test(flavor = "current_thread")]
async fn a_restore_claim_lapses_with_the_lease_of_a_wake_that_died() {
    let o = overlap().await;
    let (woke, stopped) = o.restore_whose_reset_fails().await;
    assert!(woke.is_err() && waits_for_the_restore(&stopped));
    o.c.w
        .clock
        .advance(o.c.w.hub.settings.lease_ttl + Duration::seconds(1));
    assert_eq!(
        o.stop_batch().await,
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    assert_eq!(
        worker::work(&o.c.w.hub, &o.wake, None).await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    o.assert_batch_holds_the_cluster().await;
}

/// A wake whose restore keeps failing claims the restore again on every delivery, until that
/// delivery's lease ends: a stop waits for as long as the wake is still trying, not only for
/// its first delivery's lease.
#[tokio::test(flavor = "current_thread")]
async fn a_wake_retrying_its_restore_claims_it_again_on_every_delivery() {
    let o = overlap().await;
    let ttl = o.c.w.hub.settings.lease_ttl;
    for _ in 0..2 {
        o.c.clusters.fail_next(ErrorKind::Throttled);
        let woke = worker::work(&o.c.w.hub, &o.wake, None).await;
        assert!(woke.is_err(), "the restore failed: {woke:?}");
        o.c.w.clock.advance(ttl * 2 / 3);
    }
    let stopped = o.stop_batch().await;
    assert!(
        waits_for_the_restore(&stopped),
        "past the first delivery's lease, within the second's: {stopped:?}"
    );
    assert_eq!(
        worker::work(&o.c.w.hub, &o.wake, None).await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    assert_eq!(
        o.stop_batch().await,
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    o.assert_batch_holds_the_cluster().await;
}
