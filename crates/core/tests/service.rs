//! The poller, router and worker end to end over the in-memory fakes: what stops and starts do
//! to targets, baselines and operations, including redeliveries, busy and denied targets.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use curfew_core::account::Account;
use curfew_core::clock::{Clock, ManualClock};
use curfew_core::fakes::{self, FakeSpokes, MemoryQueue, MemoryStore};
use curfew_core::operation::{Discovery, OpStatus, Operation, Task, TaskStatus};
use curfew_core::ports::{OperationStore, ScheduleStore, TargetStore};
use curfew_core::schedule::{Schedule, ScheduleRecord};
use curfew_core::selector::Selector;
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::{poller, router_batch, worker_batch, Hub};
use curfew_core::target::{Sizes, Target, TargetKind};

const DEV: &str = "111111111111";
const OTHER: &str = "222222222222";
const REGION: &str = "eu-west-1";

/// Monday 2027-01-04 18:00 UTC.
fn monday_evening() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
}

fn target(account: &str, kind: TargetKind, cluster: Option<&str>, name: &str) -> Target {
    Target {
        account: account.into(),
        region: REGION.into(),
        kind,
        cluster: cluster.map(Into::into),
        name: name.into(),
        tags: BTreeMap::from([("env".to_string(), "dev".to_string())]),
        cluster_tags: BTreeMap::new(),
    }
}

fn asg(account: &str) -> Target {
    target(account, TargetKind::Asg, None, "web")
}

fn nodegroup(account: &str) -> Target {
    target(account, TargetKind::Nodegroup, Some("dev"), "workers")
}

const ASG_SIZES: Sizes = Sizes::new(1, 4, 2);
const NG_SIZES: Sizes = Sizes::new(2, 5, 3);

struct World {
    clock: Arc<ManualClock>,
    hub: Hub,
    store: Arc<MemoryStore>,
    router_q: Arc<MemoryQueue>,
    task_q: Arc<MemoryQueue>,
    spokes: Arc<FakeSpokes>,
}

/// One account with an ASG and a node group tagged env=dev, plus any `more_accounts` with one
/// ASG each.
async fn world(more_accounts: &[&str]) -> World {
    let clock = Arc::new(ManualClock::new(monday_evening()));
    let (hub, store, router_q, task_q, spokes) = fakes::hub(clock.clone());
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
        spokes,
    }
}

impl World {
    /// Creates a manual stop or start over env=dev and fans it out, without working any queue.
    async fn begin(&self, stop: bool, dry_run: bool) -> String {
        let select = Selector::parse("tag:env=dev").unwrap();
        let invocation = if stop {
            Invocation::Stop {
                select,
                dry_run,
                discovery: Discovery::Cached,
            }
        } else {
            Invocation::Start {
                select,
                dry_run,
                discovery: Discovery::Cached,
            }
        };
        invoke(&self.hub, invocation).await.unwrap().operation_id
    }

    async fn drain(&self) -> fakes::Drained {
        let drained = fakes::drain(&self.hub, &self.router_q, &self.task_q).await;
        assert!(drained.rejected.is_empty(), "{:?}", drained.rejected);
        drained
    }

    /// Runs an operation to the end.
    async fn run(&self, stop: bool) -> Operation {
        let id = self.begin(stop, false).await;
        assert!(self.drain().await.settled);
        self.op(&id).await
    }

    /// Works only the router queue, returning the task messages it produced.
    async fn route(&self) -> Vec<String> {
        while !self.router_q.is_empty() {
            let messages = ids(self.router_q.take_all());
            let outcome = router_batch(&self.hub, &messages).await;
            assert!(outcome.failed.is_empty(), "{outcome:?}");
        }
        self.task_q.take_all()
    }

    async fn op(&self, id: &str) -> Operation {
        self.store.get_operation(id).await.unwrap().unwrap()
    }

    async fn task(&self, op_id: &str, target: &Target) -> Task {
        self.store
            .get_task(op_id, &target.key())
            .await
            .unwrap()
            .unwrap()
    }

    fn sizes(&self, target: &Target) -> Sizes {
        self.spokes.sizes(&target.key()).unwrap()
    }

    async fn baseline(&self, target: &Target) -> Option<Sizes> {
        self.store
            .get_baseline(&target.key())
            .await
            .unwrap()
            .map(|b| b.sizes)
    }
}

fn ids(bodies: Vec<String>) -> Vec<(String, String)> {
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| (format!("m{i}"), body))
        .collect()
}

#[tokio::test]
async fn a_stop_saves_baselines_and_scales_asgs_to_zero_and_node_groups_to_zero_keeping_max() {
    let w = world(&[]).await;
    let op = w.run(true).await;

    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!((op.counts.total, op.counts.succeeded), (2, 2));
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));
    assert_eq!(w.sizes(&nodegroup(DEV)), Sizes::new(0, 5, 0));
    assert_eq!(w.baseline(&asg(DEV)).await, Some(ASG_SIZES));
    assert_eq!(w.baseline(&nodegroup(DEV)).await, Some(NG_SIZES));
}

#[tokio::test]
async fn a_duplicated_poller_tick_creates_one_operation() {
    let w = world(&[]).await;
    let fire = monday_evening();
    let schedule = Schedule::try_from(ScheduleRecord {
        name: "dev-nights".into(),
        cron: "0 18 * * 1-5".into(),
        tz: "UTC".into(),
        action: "stop".into(),
        selector: "tag:env=dev".into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: vec![],
        default_start: None,
        next_fire: Some(fire),
    })
    .unwrap();
    w.store.create_schedule(&schedule).await.unwrap();

    let first = poller::tick(&w.hub).await.unwrap();
    w.drain().await;
    let calls_after_first = w.spokes.calls();
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));
    // A second poller that read the schedule before the first advanced it.
    w.store
        .set_schedule_enabled("dev-nights", true, Some(fire))
        .await
        .unwrap();
    let second = poller::tick(&w.hub).await.unwrap();
    w.drain().await;

    let id = Operation::schedule_id("dev-nights", fire);
    assert_eq!(first.created, vec![id.clone()]);
    assert!(second.created.is_empty());
    assert_eq!(second.already_fired, vec![id]);
    assert_eq!(w.store.list_operations(10).await.unwrap().len(), 1);
    assert_eq!(
        w.spokes.calls(),
        calls_after_first,
        "nothing was worked twice"
    );
}

#[tokio::test]
async fn a_second_stop_keeps_the_first_baseline() {
    let w = world(&[]).await;
    w.run(true).await;
    w.spokes.resize(&asg(DEV).key(), Sizes::new(2, 6, 3));
    w.clock.advance(Duration::minutes(1));

    let second = w.run(true).await;

    assert_eq!(second.status, OpStatus::Succeeded);
    assert_eq!(w.baseline(&asg(DEV)).await, Some(ASG_SIZES));
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));
}

#[tokio::test]
async fn a_start_restores_the_saved_sizes_exactly_and_retires_the_baselines() {
    let w = world(&[]).await;
    w.run(true).await;
    w.clock.advance(Duration::hours(14));

    let start = w.run(false).await;

    assert_eq!(start.status, OpStatus::Succeeded);
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES);
    assert_eq!(w.sizes(&nodegroup(DEV)), NG_SIZES);
    assert!(w.store.baselines().is_empty());
}

#[tokio::test]
async fn a_start_never_shrinks_a_group_woken_by_hand() {
    let w = world(&[]).await;
    w.run(true).await;
    w.spokes.resize(&asg(DEV).key(), Sizes::new(1, 8, 5));
    w.clock.advance(Duration::hours(14));

    w.run(false).await;

    // min from the baseline, the hand-set desired kept, max raised just enough to hold it.
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(1, 5, 5));
}

#[tokio::test]
async fn a_busy_node_group_is_retried_later_and_finishes_once_it_is_no_longer_busy() {
    let w = world(&[]).await;
    let ng = nodegroup(DEV);
    w.spokes.set_busy(&ng.key(), true);
    let id = w.begin(true, false).await;

    let busy = w.drain().await;
    assert!(!busy.settled, "the busy node group's message stays queued");
    assert_eq!(w.op(&id).await.status, OpStatus::Running);
    assert_eq!(w.task(&id, &ng).await.status, TaskStatus::Pending);
    assert_eq!(w.sizes(&ng), NG_SIZES);

    w.spokes.set_busy(&ng.key(), false);
    assert!(w.drain().await.settled);

    let op = w.op(&id).await;
    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!((op.counts.total, op.counts.succeeded), (2, 2));
    assert_eq!(w.sizes(&ng), Sizes::new(0, 5, 0));
}

#[tokio::test]
async fn a_denied_accounts_tasks_fail_with_the_reason_and_the_operation_ends_partial() {
    let w = world(&[OTHER]).await;
    // Both accounts were listed earlier; the other account's role stopped trusting the hub since.
    for account in [DEV, OTHER] {
        let mut targets = vec![asg(account)];
        if account == DEV {
            targets.push(nodegroup(DEV));
        }
        w.store
            .put_inventory(account, REGION, &targets, w.clock.now())
            .await
            .unwrap();
    }
    w.spokes.deny(OTHER);

    let op = w.run(true).await;

    assert_eq!(op.status, OpStatus::Partial);
    assert_eq!(
        (op.counts.total, op.counts.succeeded, op.counts.failed),
        (3, 2, 1)
    );
    let failed = w.task(&op.id, &asg(OTHER)).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    let reason = failed.reason.unwrap_or_default();
    assert!(reason.contains("access denied"), "{reason}");
    assert_eq!(w.sizes(&asg(OTHER)), ASG_SIZES);
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));
}

#[tokio::test]
async fn an_account_that_cannot_be_listed_is_noted_and_the_others_still_stop() {
    let w = world(&[OTHER]).await;
    w.spokes.deny(OTHER);

    let op = w.run(true).await;

    assert_eq!(op.status, OpStatus::Partial);
    assert_eq!((op.counts.total, op.counts.succeeded), (2, 2));
    assert_eq!(op.notes.len(), 1);
    assert!(op.notes[0].contains(OTHER), "{:?}", op.notes);
    assert_eq!(w.sizes(&nodegroup(DEV)), Sizes::new(0, 5, 0));
}

#[tokio::test]
async fn every_message_delivered_twice_gives_the_same_counts() {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;

    let shards = w.router_q.take_all();
    let outcome = router_batch(&w.hub, &ids([shards.clone(), shards].concat())).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let tasks = w.task_q.take_all();
    let twice = ids([tasks.clone(), tasks].concat());
    let outcome = worker_batch(&w.hub, &twice).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert!(w.drain().await.settled);

    let op = w.op(&id).await;
    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!(op.shards_done, 1);
    assert_eq!(
        (op.counts.total, op.counts.succeeded, op.counts.skipped),
        (2, 2, 0)
    );
    assert_eq!(w.baseline(&asg(DEV)).await, Some(ASG_SIZES));
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));
}

#[tokio::test]
async fn an_older_operations_task_after_a_newer_one_is_skipped_as_superseded() {
    let w = world(&[]).await;
    let stop = w.begin(true, false).await;
    let late_stop_tasks = w.route().await;
    w.clock.advance(Duration::minutes(1));
    let start = w.run(false).await;

    let outcome = worker_batch(&w.hub, &ids(late_stop_tasks)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");

    let stop = w.op(&stop).await;
    assert_eq!(stop.status, OpStatus::Succeeded);
    assert_eq!((stop.counts.total, stop.counts.skipped), (2, 2));
    let task = w.task(&stop.id, &asg(DEV)).await;
    assert_eq!(task.status, TaskStatus::Skipped);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("superseded") && reason.contains(&start.id),
        "{reason}"
    );
    assert_eq!(
        w.sizes(&asg(DEV)),
        ASG_SIZES,
        "the late stop changed nothing"
    );
    assert!(w.store.baselines().is_empty());
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let w = world(&[]).await;
    let id = w.begin(true, true).await;
    assert!(w.drain().await.settled);

    let op = w.op(&id).await;
    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!((op.counts.total, op.counts.skipped), (2, 2));
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES);
    assert_eq!(w.sizes(&nodegroup(DEV)), NG_SIZES);
    assert!(w.store.baselines().is_empty());
    let task = w.task(&id, &asg(DEV)).await;
    assert_eq!((task.before, task.after), (Some(ASG_SIZES), None));
    let reason = task.reason.unwrap_or_default();
    assert!(reason.starts_with("dry run: would scale"), "{reason}");
}

#[tokio::test]
async fn a_skipped_task_records_the_sizes_it_left_the_target_at() {
    let w = world(&[]).await;
    w.run(true).await;
    w.clock.advance(Duration::minutes(1));
    let second = w.begin(true, false).await;
    assert!(w.drain().await.settled);

    let task = w.task(&second, &asg(DEV)).await;
    assert_eq!(task.status, TaskStatus::Skipped);
    assert_eq!((task.before, task.after), (Some(Sizes::new(0, 0, 0)), None));
}

#[tokio::test]
async fn a_batch_whose_operation_could_not_be_settled_leaves_its_messages_for_redelivery() {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;
    let messages = ids(w.route().await);
    assert_eq!(messages.len(), 2);

    // Both tasks finish, but settling the operation fails (throttled).
    w.store.fail_next_finalizes(1);
    let outcome = worker_batch(&w.hub, &messages).await;
    assert_eq!(outcome.failed.len(), 2, "{outcome:?}");
    assert!(outcome.rejected.is_empty());
    assert_eq!(w.op(&id).await.status, OpStatus::Running);
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));

    // The redelivery finds both tasks final, counts nothing twice and settles the operation.
    let outcome = worker_batch(&w.hub, &messages).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let op = w.op(&id).await;
    assert_eq!(
        (op.status, op.counts.succeeded, op.counts.total),
        (OpStatus::Succeeded, 2, 2)
    );
}
