//! A node group in a cluster held by every mode at once (`ca-tags`, `ca-deployment`,
//! `karpenter`, `workloads`) is put to sleep and woken while the worker dies right after any
//! one of its port calls — state table, spoke or Kubernetes — and the message is delivered
//! again: the cluster ends paused after the stop and exactly as it was after the start, every
//! time.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use curfew_core::account::{Account, SpokeRole};
use curfew_core::clock::{Clock, ManualClock};
use curfew_core::cluster::{ClusterRef, CronJob, NodePool, Workload, WorkloadKind};
use curfew_core::cluster_hold::closed_limits;
use curfew_core::fakes::{self, ClusterObjects, FakeClusters, FakeSpokes, MemoryQueue};
use curfew_core::hold::{ca_tag_keys, CaTag, HOLD_TAG};
use curfew_core::operation::{OpStatus, TaskMessage, TaskStatus};
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::worker::{self, TaskStep};
use curfew_core::service::{router_batch, Hub};
use curfew_core::target::{Sizes, Target, TargetKind};
use curfew_tests::chaos::faults::{invoke_once, ChaosClusters, ChaosSpokes, ChaosStore, Faults};
use serde_json::json;

const ACCOUNT: &str = "111111111111";
const REGION: &str = "eu-west-1";
const SIZES: Sizes = Sizes::new(2, 5, 3);

fn dev() -> ClusterRef {
    ClusterRef {
        role: SpokeRole {
            account: ACCOUNT.into(),
            role_arn: format!("arn:aws:iam::{ACCOUNT}:role/curfew-spoke"),
            external_id: None,
        },
        region: REGION.into(),
        cluster: "dev".into(),
    }
}

fn node_group() -> Target {
    Target {
        account: ACCOUNT.into(),
        region: REGION.into(),
        kind: TargetKind::Nodegroup,
        cluster: Some("dev".into()),
        name: "workers".into(),
        tags: BTreeMap::new(),
        cluster_tags: BTreeMap::from([(
            HOLD_TAG.to_string(),
            "ca-tags+ca-deployment+karpenter+workloads".to_string(),
        )]),
        instance_types: Vec::new(),
    }
}

/// Cluster Autoscaler's tags on the node group's ASG, sorted as the fake lists them.
fn ca_tags() -> Vec<CaTag> {
    let mut tags: Vec<CaTag> = ca_tag_keys("dev")
        .into_iter()
        .map(|key| CaTag {
            asg: "eks-workers-1a2b".into(),
            key,
            value: "true".into(),
            propagate_at_launch: true,
        })
        .collect();
    tags.sort();
    tags
}

struct Fleet {
    clock: Arc<ManualClock>,
    hub: Hub,
    router_q: Arc<MemoryQueue>,
    task_q: Arc<MemoryQueue>,
    spokes: Arc<FakeSpokes>,
    clusters: Arc<FakeClusters>,
}

async fn fleet() -> Fleet {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(),
    ));
    let (hub, _store, router_q, task_q, spokes) = fakes::hub(clock.clone());
    let clusters = Arc::new(FakeClusters::new());
    let hub = Hub {
        clusters: clusters.clone(),
        ..hub
    };
    let role = format!("arn:aws:iam::{ACCOUNT}:role/curfew-spoke");
    hub.store
        .put_account(&Account::new(ACCOUNT, &role, None, &[REGION.to_string()]).unwrap())
        .await
        .unwrap();
    spokes.add(node_group(), SIZES);
    spokes.set_ca_tags(&node_group().key(), ca_tags());
    let at = dev();
    let deployment = |namespace: &str, name: &str, replicas| Workload {
        kind: WorkloadKind::Deployment,
        namespace: namespace.into(),
        name: name.into(),
        replicas,
        excluded: false,
    };
    clusters.add_workload(&at, deployment("kube-system", "cluster-autoscaler", 2));
    clusters.add_workload(&at, deployment("shop", "web", 3));
    clusters.add_cron_job(
        &at,
        CronJob {
            namespace: "shop".into(),
            name: "report".into(),
            suspended: false,
            excluded: false,
        },
    );
    clusters.add_node_pool(
        &at,
        NodePool {
            name: "default".into(),
            limits: Some(BTreeMap::from([("cpu".into(), "64".into())])),
        },
        2,
    );
    // Karpenter needs a second look before the drained nodes are gone.
    clusters.set_drain_calls(2);
    Fleet {
        clock,
        hub,
        router_q,
        task_q,
        spokes,
        clusters,
    }
}

impl Fleet {
    async fn begin(&self, action: &str) -> (String, TaskMessage) {
        let op = invoke(
            &self.hub,
            Invocation::parse(&json!({"action": action, "select": "name=workers"})).unwrap(),
        )
        .await
        .unwrap();
        while !self.router_q.is_empty() {
            let messages: Vec<(String, String)> = self
                .router_q
                .take_all()
                .into_iter()
                .enumerate()
                .map(|(i, body)| (format!("r{i}"), body))
                .collect();
            assert!(router_batch(&self.hub, &messages).await.failed.is_empty());
        }
        let bodies = curfew_core::fakes::plan_all(&self.hub, &self.task_q).await;
        assert_eq!(bodies.len(), 1);
        let mut tasks = curfew_core::chunk::read_task_body(&bodies[0]).unwrap();
        assert_eq!(tasks.len(), 1);
        (op.operation_id, tasks.remove(0))
    }

    /// Runs one operation: the first delivery dies right after its `crash_after`-th port call;
    /// after the lease expires the message is delivered until its task is final (a drain takes
    /// two). True if the first delivery crashed.
    async fn run_crashing(&self, action: &str, crash_after: u64) -> bool {
        let (op_id, msg) = self.begin(action).await;
        let faults = Arc::new(Faults::crash_after(crash_after, self.clock.clone()));
        let crashing = Hub {
            store: Arc::new(ChaosStore {
                inner: self.hub.store.clone(),
                faults: faults.clone(),
            }),
            spokes: Arc::new(ChaosSpokes {
                inner: self.hub.spokes.clone(),
                faults: faults.clone(),
            }),
            clusters: Arc::new(ChaosClusters {
                inner: self.hub.clusters.clone(),
                faults: faults.clone(),
            }),
            ..self.hub.clone()
        };
        let deadline = self.clock.now() + Duration::hours(1);
        let crashed = invoke_once(deadline, worker::handle(&crashing, &msg))
            .await
            .is_none();
        self.clock
            .advance(self.hub.settings.lease_ttl + Duration::seconds(1));
        let mut last = None;
        for _ in 0..4 {
            let step = worker::handle(&self.hub, &msg).await.unwrap();
            if let TaskStep::Finished(status) = step {
                last = Some(status);
                // A duplicate delivery of a finished task changes nothing.
                let again = worker::handle(&self.hub, &msg).await.unwrap();
                assert_eq!(again, TaskStep::Finished(status));
                break;
            }
        }
        assert_eq!(
            last,
            Some(TaskStatus::Succeeded),
            "{action} crashed after call {crash_after}"
        );
        let op = self.hub.store.get_operation(&op_id).await.unwrap().unwrap();
        assert_eq!(op.status, OpStatus::Succeeded);
        if action == "start" {
            // The node group is its cluster's only member: its wake's steps never say that
            // others keep the cluster paused, even when the delivery that restored it died.
            let task = self
                .hub
                .store
                .get_task(&op_id, &node_group().key())
                .await
                .unwrap()
                .unwrap();
            assert!(
                !task.steps.iter().any(|s| s.contains("keep it paused")),
                "start crashed after call {crash_after}: {:?}",
                task.steps
            );
        }
        crashed
    }

    fn cluster(&self) -> ClusterObjects {
        self.clusters.objects(&dev()).unwrap()
    }
}

fn replicas(objects: &ClusterObjects, namespace: &str, name: &str) -> i32 {
    objects.workloads[&(WorkloadKind::Deployment, namespace.into(), name.into())].replicas
}

#[tokio::test]
async fn a_held_cluster_sleeps_and_wakes_exactly_whichever_call_the_worker_dies_after() {
    let mut crashes = 0;
    let mut crash_after = 1;
    loop {
        let f = fleet().await;
        let before = f.cluster();
        let stop_crashed = f.run_crashing("stop", crash_after).await;
        let asleep = f.cluster();
        let at = format!("call {crash_after}");
        assert_eq!(
            f.spokes.sizes(&node_group().key()),
            Some(Sizes::new(0, 5, 0)),
            "{at}"
        );
        assert!(f.spokes.ca_tags_of(&node_group().key()).is_empty(), "{at}");
        assert_eq!(
            replicas(&asleep, "kube-system", "cluster-autoscaler"),
            0,
            "{at}"
        );
        assert_eq!(replicas(&asleep, "shop", "web"), 0, "{at}");
        assert!(
            asleep.cron_jobs[&("shop".into(), "report".into())].suspended,
            "{at}"
        );
        let pool = &asleep.node_pools["default"];
        assert_eq!(
            (pool.limits.clone(), pool.nodes),
            (Some(closed_limits()), 0),
            "{at}"
        );

        f.clock.advance(Duration::hours(12));
        let start_crashed = f.run_crashing("start", crash_after).await;
        assert_eq!(f.spokes.sizes(&node_group().key()), Some(SIZES), "{at}");
        assert_eq!(f.spokes.ca_tags_of(&node_group().key()), ca_tags(), "{at}");
        let awake = f.cluster();
        assert_eq!(awake.workloads, before.workloads, "{at}");
        assert_eq!(awake.cron_jobs, before.cron_jobs, "{at}");
        assert_eq!(
            awake.node_pools["default"].limits, before.node_pools["default"].limits,
            "{at}"
        );
        crashes += u64::from(stop_crashed) + u64::from(start_crashed);
        if !stop_crashed && !start_crashed {
            break;
        }
        crash_after += 1;
    }
    println!("{crashes} crash points, the last at call {crash_after}");
    // Every call of the longer of the two was a crash point, and there were many.
    assert!(crashes >= 40, "only {crashes} crash points");
}
