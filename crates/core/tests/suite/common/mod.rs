//! The world the service tests run in: one spoke account with an ASG and a node group tagged
//! env=dev (plus more accounts on demand) over the in-memory fakes, and helpers to drive it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use curfew_core::account::Account;
use curfew_core::chunk::read_task_body;
use curfew_core::clock::ManualClock;
use curfew_core::fakes::{self, FakeSpokes, MemoryQueue, MemoryStore};
use curfew_core::operation::{Discovery, Operation, Task};
use curfew_core::ports::{OperationStore, Queue, TargetStore};
use curfew_core::selector::Selector;
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::{router_batch, worker_batch, Delivery, Hub};
use curfew_core::target::{Sizes, Target, TargetKind};

pub const DEV: &str = "111111111111";
pub const OTHER: &str = "222222222222";
pub const REGION: &str = "eu-west-1";

/// Monday 2027-01-04 18:00 UTC.
pub fn monday_evening() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
}

pub fn target(account: &str, kind: TargetKind, cluster: Option<&str>, name: &str) -> Target {
    Target {
        account: account.into(),
        region: REGION.into(),
        kind,
        cluster: cluster.map(Into::into),
        name: name.into(),
        tags: BTreeMap::from([("env".to_string(), "dev".to_string())]),
        cluster_tags: BTreeMap::new(),
        instance_types: Vec::new(),
    }
}

pub fn asg(account: &str) -> Target {
    target(account, TargetKind::Asg, None, "web")
}

pub fn nodegroup(account: &str) -> Target {
    target(account, TargetKind::Nodegroup, Some("dev"), "workers")
}

pub const ASG_SIZES: Sizes = Sizes::new(1, 4, 2);
pub const NG_SIZES: Sizes = Sizes::new(2, 5, 3);

pub struct World {
    pub clock: Arc<ManualClock>,
    pub hub: Hub,
    pub store: Arc<MemoryStore>,
    pub router_q: Arc<MemoryQueue>,
    pub task_q: Arc<MemoryQueue>,
    /// Where the task queue moves a message after its last receive, as the hub's SQS
    /// redrive policy does.
    pub task_dlq: Arc<MemoryQueue>,
    pub spokes: Arc<FakeSpokes>,
}

/// One account with an ASG and a node group tagged env=dev, plus any `more_accounts` with one
/// ASG each.
pub async fn world(more_accounts: &[&str]) -> World {
    let clock = Arc::new(ManualClock::new(monday_evening()));
    let (hub, store, router_q, task_q, spokes) = fakes::hub(clock.clone());
    let task_dlq = Arc::new(MemoryQueue::new());
    task_q.set_dead_letters(task_dlq.clone(), hub.settings.task_max_receives);
    for account in std::iter::once(&DEV).chain(more_accounts) {
        let role = format!("arn:aws:iam::{account}:role/curfew-spoke");
        let registered = Account::new(account, &role, None, &[REGION.to_string()]).unwrap();
        hub.store.put_account(&registered).await.unwrap();
        spokes.add(asg(account), ASG_SIZES);
    }
    spokes.add(nodegroup(DEV), NG_SIZES);
    World {
        clock,
        hub,
        store,
        router_q,
        task_q,
        task_dlq,
        spokes,
    }
}

impl World {
    /// Creates a manual stop or start over env=dev and fans it out, without working any queue.
    pub async fn begin(&self, stop: bool, dry_run: bool) -> String {
        self.begin_on("tag:env=dev", stop, dry_run).await
    }

    /// [`World::begin`] over the targets `selector` names.
    pub async fn begin_on(&self, selector: &str, stop: bool, dry_run: bool) -> String {
        let select = Selector::parse(selector).unwrap();
        let invocation = if stop {
            Invocation::Stop {
                select,
                dry_run,
                discovery: Discovery::Cached,
                hold: None,
            }
        } else {
            Invocation::Start {
                select,
                dry_run,
                discovery: Discovery::Cached,
                hold: None,
            }
        };
        invoke(&self.hub, invocation).await.unwrap().operation_id
    }

    pub async fn drain(&self) -> fakes::Drained {
        let drained = fakes::drain(&self.hub, &self.router_q, &self.task_q).await;
        assert!(drained.rejected.is_empty(), "{:?}", drained.rejected);
        drained
    }

    /// [`World::drain`] for at most `rounds` rounds: each task message is received at most
    /// that many times.
    pub async fn drain_rounds(&self, rounds: usize) -> fakes::Drained {
        let drained = fakes::drain_rounds(&self.hub, &self.router_q, &self.task_q, rounds).await;
        assert!(drained.rejected.is_empty(), "{:?}", drained.rejected);
        drained
    }

    /// Runs an operation to the end.
    pub async fn run(&self, stop: bool) -> Operation {
        let id = self.begin(stop, false).await;
        assert!(self.drain().await.settled);
        self.op(&id).await
    }

    /// Routes every queued operation and takes its task messages off the queue as one message
    /// per target (the worker still reads those), so a test can deliver each target's alone.
    pub async fn route(&self) -> Vec<String> {
        self.route_chunks()
            .await
            .iter()
            .flat_map(|body| read_task_body(body).expect("the router sends task chunks"))
            .map(|task| serde_json::to_string(&task).unwrap())
            .collect()
    }

    /// Routes every queued operation, plans each account (as a worker does with the plan it is
    /// sent, but sending every chunk, the first too) and takes the task messages off the queue:
    /// one chunk of up to a hundred targets per account.
    pub async fn route_chunks(&self) -> Vec<String> {
        while !self.router_q.is_empty() {
            let messages = ids(self.router_q.take_all());
            let outcome = router_batch(&self.hub, &messages).await;
            assert!(outcome.failed.is_empty(), "{outcome:?}");
        }
        fakes::plan_all(&self.hub, &self.task_q).await
    }

    /// Routes every queued operation and takes what the router sends the workers off the task
    /// queue: one account plan per account, not yet planned.
    pub async fn route_plans(&self) -> Vec<String> {
        while !self.router_q.is_empty() {
            let messages = ids(self.router_q.take_all());
            let outcome = router_batch(&self.hub, &messages).await;
            assert!(outcome.failed.is_empty(), "{outcome:?}");
        }
        self.task_q.take_all()
    }

    /// Works `bodies` as one worker batch and puts what must be retried back on the task queue;
    /// returns how many went back.
    pub async fn work_once(&self, bodies: Vec<String>) -> usize {
        let messages = deliveries(bodies);
        let outcome = worker_batch(&self.hub, &messages).await;
        assert!(outcome.rejected.is_empty(), "{outcome:?}");
        let retry: Vec<String> = messages
            .into_iter()
            .filter(|d| outcome.failed.contains(&d.message_id))
            .map(|d| d.body)
            .collect();
        self.task_q.send(&retry).await.unwrap();
        retry.len()
    }

    pub async fn op(&self, id: &str) -> Operation {
        self.store.get_operation(id).await.unwrap().unwrap()
    }

    /// The task as a listing shows it (a change in flight, kept on the target's lease, shows
    /// APPLYING).
    pub async fn task(&self, op_id: &str, target: &Target) -> Task {
        let key = target.key();
        self.store
            .list_tasks(op_id)
            .await
            .unwrap()
            .into_iter()
            .find(|task| task.target.key() == key)
            .unwrap()
    }

    pub fn sizes(&self, target: &Target) -> Sizes {
        self.spokes.sizes(&target.key()).unwrap()
    }

    pub async fn baseline(&self, target: &Target) -> Option<Sizes> {
        self.store
            .get_baseline(&target.key())
            .await
            .unwrap()
            .map(|b| b.sizes)
    }
}

/// Task messages on their first receive, with ids of their own.
pub fn deliveries(bodies: Vec<String>) -> Vec<Delivery> {
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Delivery::first(format!("m{i}"), body))
        .collect()
}

/// Router messages with ids of their own.
pub fn ids(bodies: Vec<String>) -> Vec<(String, String)> {
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| (format!("m{i}"), body))
        .collect()
}
