//! Regression tests for the races a review found (issue 7): duplicated and overlapping
//! deliveries, dry runs next to real operations, redelivered fan-outs, asynchronous EKS updates
//! and failed stops. Each names the defect it pins down.

use std::sync::Arc;

use crate::common::*;
use async_trait::async_trait;
use chrono::Duration;
use curfew_core::account::{Account, SpokeRole};
use curfew_core::clock::Clock;
use curfew_core::decision::Action;
use curfew_core::fakes::FakeSpokes;
use curfew_core::hold::CaTag;
use curfew_core::operation::{OpStatus, RouterMessage, TaskStatus};
use curfew_core::ports::{
    AccountStore, ChangeInFlight, Lease, LeaseToken, PortResult, Spokes, TargetStore, UpdateState,
};
use curfew_core::service::worker::{self, TaskStep};
use curfew_core::service::{router_batch, worker_batch, Hub};
use curfew_core::target::{LiveState, Processes, Sizes, Target};
use tokio::sync::Semaphore;

fn message_for(bodies: &[String], target: &Target) -> String {
    bodies
        .iter()
        .find(|b| b.contains(&format!("\"name\":\"{}\"", target.name)))
        .cloned()
        .expect("a task message for the target")
}

/// Defect 1: a dry run took the target's lease (recording itself as the newest operation to act
/// on it) before noticing it was a dry run, so a still-draining real stop was superseded.
#[tokio::test]
async fn a_dry_run_neither_supersedes_nor_delays_a_draining_stop() {
    let w = world(&[]).await;
    let stop = w.begin(true, false).await;
    let stop_tasks = w.route().await;

    w.clock.advance(Duration::minutes(2));
    let dry = w.begin(false, true).await;
    let dry_tasks = w.route().await;
    // The dry run's tasks are worked first, in the same batch as the stop's.
    let outcome = worker_batch(&w.hub, &deliveries([dry_tasks, stop_tasks].concat())).await;
    assert!(outcome.failed.is_empty(), "nothing waits: {outcome:?}");

    let stop = w.op(&stop).await;
    assert_eq!(
        (stop.status, stop.counts.succeeded),
        (OpStatus::Succeeded, 2)
    );
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));
    assert_eq!(w.baseline(&asg(DEV)).await, Some(ASG_SIZES));
    assert_eq!(w.op(&dry).await.status, OpStatus::Succeeded);
}

/// What happens to the first `set_sizes` call through [`FirstUpdate`].
enum OnFirstUpdate {
    /// Held until the test adds a permit: a delivery paused between its reads and its write,
    /// as a slow AWS call would pause it.
    Pause(Semaphore),
    /// Throttled: the change does not happen.
    Throttle,
}

/// Spokes that do something to the first `set_sizes` call, then pass every call through.
struct FirstUpdate {
    inner: Arc<FakeSpokes>,
    on_first: OnFirstUpdate,
    armed: std::sync::atomic::AtomicBool,
}

impl FirstUpdate {
    fn new(inner: Arc<FakeSpokes>, on_first: OnFirstUpdate) -> Self {
        FirstUpdate {
            inner,
            on_first,
            armed: true.into(),
        }
    }

    fn open_gate(&self) {
        if let OnFirstUpdate::Pause(gate) = &self.on_first {
            gate.add_permits(1);
        }
    }
}

#[async_trait]
impl Spokes for FirstUpdate {
    async fn ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>> {
        self.inner.ca_tags(role, target).await
    }
    async fn remove_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        self.inner.remove_ca_tags(role, target, tags).await
    }
    async fn restore_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        self.inner.restore_ca_tags(role, target, tags).await
    }
    async fn suspend_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        self.inner.suspend_processes(role, target, processes).await
    }
    async fn resume_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        self.inner.resume_processes(role, target, processes).await
    }
    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>> {
        self.inner.discover(role, region).await
    }
    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        self.inner.live_state(role, target).await
    }
    async fn set_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            match &self.on_first {
                OnFirstUpdate::Pause(gate) => {
                    let _permit = gate.acquire().await.expect("gate open");
                }
                OnFirstUpdate::Throttle => {
                    return Err(curfew_core::ports::PortError::new(
                        curfew_core::ports::ErrorKind::Throttled,
                        "Throttling: Rate exceeded",
                    ))
                }
            }
        }
        self.inner.set_sizes(role, target, sizes).await
    }
    async fn update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        expected: Sizes,
    ) -> PortResult<UpdateState> {
        self.inner
            .update_state(role, target, update_id, expected)
            .await
    }
}

/// Defect 2: two copies of one stop message both took the lease (it was keyed by operation), so
/// copy 2 scaled to zero from stale reads after copy 1 had finished and a newer start had
/// restored the target and retired its baseline: asleep with no baseline, never to wake again.
#[tokio::test(flavor = "current_thread")]
async fn a_second_copy_of_a_stop_cannot_act_on_stale_reads_after_a_newer_start() {
    let w = world(&[]).await;
    let paused = Arc::new(FirstUpdate::new(
        w.spokes.clone(),
        OnFirstUpdate::Pause(Semaphore::new(0)),
    ));
    let hub = Hub {
        spokes: paused.clone(),
        ..w.hub.clone()
    };
    let stop = w.begin(true, false).await;
    let copy = message_for(&w.route().await, &asg(DEV));
    let msg: curfew_core::operation::TaskMessage = serde_json::from_str(&copy).unwrap();

    let copy_two = worker::work(&hub, &msg, None);
    let rest = async {
        // Copy 1 of the same message, while copy 2 is paused before its write.
        let first = worker::work(&hub, &msg, None).await.unwrap();
        assert!(matches!(first, TaskStep::RetryLater(_)), "{first:?}");
        // A newer start over the same targets.
        w.clock.advance(Duration::minutes(1));
        let start = w.begin(false, false).await;
        let start_tasks = deliveries(w.route().await);
        let outcome = worker_batch(&hub, &start_tasks).await;
        assert!(
            !outcome.failed.is_empty(),
            "the start waits for the stop's delivery that holds the asg"
        );
        paused.open_gate();
        (start, start_tasks)
    };
    let (two, (start, start_tasks)) = tokio::join!(copy_two, rest);
    assert_eq!(two.unwrap(), TaskStep::Finished(TaskStatus::Succeeded));
    // Copy 1 comes back and finds its task done; the start's tasks come back and restore.
    assert_eq!(
        worker::work(&hub, &msg, None).await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    let outcome = worker_batch(&hub, &start_tasks).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");

    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES, "the newer start wins");
    assert_eq!(w.baseline(&asg(DEV)).await, None);
    let stop = w.op(&stop).await;
    assert_eq!(stop.counts.succeeded, 1, "the asg's task counted once");
    assert_eq!(w.op(&start).await.status, OpStatus::Succeeded);
}

/// Defect 3: a redelivered operation message listed the accounts again and sent shards for an
/// account added since, while the shard count was recorded once.
#[tokio::test]
async fn a_redelivered_fan_out_sends_exactly_the_shards_it_fixed_first() {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;
    let role = format!("arn:aws:iam::{OTHER}:role/curfew-spoke");
    let added = Account::new(OTHER, &role, None, &[REGION.to_string()]).unwrap();
    w.store.put_account(&added).await.unwrap();
    w.spokes.add(asg(OTHER), ASG_SIZES);

    let again = serde_json::to_string(&RouterMessage::Operation { op_id: id.clone() }).unwrap();
    let outcome = router_batch(&w.hub, &ids(vec![again])).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert!(w.drain().await.settled);

    let op = w.op(&id).await;
    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!(
        (op.shards_total, op.shards_done, op.counts.total),
        (Some(1), 1, 2)
    );
    assert_eq!(
        w.sizes(&asg(OTHER)),
        ASG_SIZES,
        "an account added after the fan-out is not part of the operation"
    );
}

/// Defect 6: an EKS start retired the baseline as soon as UpdateNodegroupConfig was accepted;
/// the update is asynchronous and may still fail.
#[tokio::test]
async fn an_eks_start_keeps_the_baseline_until_the_update_has_taken() {
    let w = world(&[]).await;
    w.run(true).await;
    w.clock.advance(Duration::minutes(1));
    let ng = nodegroup(DEV).key();
    w.spokes.script_next_update(&ng, 3, None);
    let start = w.begin(false, false).await;
    let tasks = w.route().await;
    assert_eq!(
        w.work_once(tasks).await,
        1,
        "the node group's update is in flight"
    );
    assert_eq!(w.baseline(&nodegroup(DEV)).await, Some(NG_SIZES));
    let task = w.task(&start, &nodegroup(DEV)).await;
    assert_eq!(task.status, TaskStatus::Applying);
    assert!(task.update_id.is_some());
    assert_eq!(w.op(&start).await.status, OpStatus::Running);

    assert!(w.drain().await.settled);
    assert_eq!(w.sizes(&nodegroup(DEV)), NG_SIZES);
    assert_eq!(w.baseline(&nodegroup(DEV)).await, None);
    assert_eq!(w.op(&start).await.status, OpStatus::Succeeded);
}

#[tokio::test]
async fn a_failed_eks_start_keeps_the_baseline_and_records_why() {
    let w = world(&[]).await;
    w.run(true).await;
    w.clock.advance(Duration::minutes(1));
    let ng = nodegroup(DEV).key();
    w.spokes
        .script_next_update(&ng, 1, Some("Ec2SubnetInvalidConfiguration".into()));
    let start = w.run(false).await;

    assert_eq!(start.status, OpStatus::Partial);
    let task = w.task(&start.id, &nodegroup(DEV)).await;
    assert_eq!(task.status, TaskStatus::Failed);
    let reason = task.reason.unwrap_or_default();
    assert!(reason.contains("Ec2SubnetInvalidConfiguration"), "{reason}");
    assert_eq!(w.sizes(&nodegroup(DEV)), Sizes::new(0, 5, 0));
    assert_eq!(
        w.baseline(&nodegroup(DEV)).await,
        Some(NG_SIZES),
        "the next start can still restore it"
    );
}

/// Defect 7: a stop whose update failed for good kept the baseline it had just saved, so a later
/// start would overwrite whatever sizes the owners gave the still-running group.
#[tokio::test]
async fn a_stop_whose_update_failed_removes_the_baseline_it_saved() {
    let w = world(&[]).await;
    let ng = nodegroup(DEV).key();
    w.spokes
        .script_next_update(&ng, 0, Some("AsgInstanceLaunchFailures".into()));
    let stop = w.run(true).await;

    let task = w.task(&stop.id, &nodegroup(DEV)).await;
    assert_eq!(task.status, TaskStatus::Failed);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("AsgInstanceLaunchFailures") && reason.contains("baseline"),
        "{reason}"
    );
    assert_eq!(w.sizes(&nodegroup(DEV)), NG_SIZES);
    assert_eq!(w.baseline(&nodegroup(DEV)).await, None);
    assert_eq!(
        w.baseline(&asg(DEV)).await,
        Some(ASG_SIZES),
        "the asg stopped"
    );

    // The owners resize the group; the next start leaves their sizes alone.
    w.spokes.resize(&ng, Sizes::new(3, 8, 6));
    w.clock.advance(Duration::minutes(1));
    w.run(false).await;
    assert_eq!(w.sizes(&nodegroup(DEV)), Sizes::new(3, 8, 6));
}

/// Defect 11: a task whose earlier delivery had begun scaling, and that a newer operation then
/// superseded, was recorded as if nothing had happened.
#[tokio::test]
async fn a_superseded_task_that_had_begun_scaling_says_so() {
    let w = world(&[]).await;
    let ng = nodegroup(DEV).key();
    // The stop's node group update stays in flight, and the stop's message is lost until a
    // newer start has acted.
    w.spokes.script_next_update(&ng, 1, None);
    let stop = w.begin(true, false).await;
    let stop_tasks = w.route().await;
    let ng_message = message_for(&stop_tasks, &nodegroup(DEV));
    let outcome = worker_batch(&w.hub, &deliveries(vec![ng_message.clone()])).await;
    assert_eq!(outcome.failed.len(), 1);
    w.clock.advance(Duration::minutes(1));
    w.run(false).await;

    let outcome = worker_batch(&w.hub, &deliveries(vec![ng_message])).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let task = w.task(&stop, &nodegroup(DEV)).await;
    assert_eq!(task.status, TaskStatus::Skipped);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("superseded") && reason.contains("began scaling"),
        "{reason}"
    );
    assert_eq!(w.sizes(&nodegroup(DEV)), NG_SIZES);
    assert_eq!(w.baseline(&nodegroup(DEV)).await, None);
}

/// A dry run takes no lease: a real operation's delivery right after it is never held back.
#[tokio::test]
async fn a_dry_run_leaves_no_lease_behind() {
    let w = world(&[]).await;
    let dry = w.begin(true, true).await;
    assert!(w.drain().await.settled);
    assert_eq!(w.op(&dry).await.counts.skipped, 2);
    let lease = curfew_core::ports::LeaseToken::new("probe", Action::Stop);
    let granted = w
        .store
        .acquire_lease(
            &asg(DEV).key(),
            &lease,
            monday_evening() - Duration::days(1),
            w.clock.now(),
            Duration::minutes(15),
        )
        .await
        .unwrap();
    assert_eq!(
        granted,
        curfew_core::ports::Lease::Acquired {
            interrupted: None,
            baseline: None
        },
        "not even an operation older than the dry run is superseded"
    );
}

/// Defect 11: `plan` wrote the inventory cache of the accounts it listed live, though the
/// contract says it writes nothing.
#[tokio::test]
async fn a_plan_writes_nothing_not_even_the_inventory_cache() {
    let w = world(&[]).await;
    let select = curfew_core::selector::Selector::parse("tag:env=dev").unwrap();
    let plan = curfew_core::service::router::plan(
        &w.hub,
        Action::Stop,
        &select,
        curfew_core::operation::Discovery::Cached,
        None,
    )
    .await
    .unwrap();
    assert_eq!(plan.changes.len(), 2);
    assert_eq!(w.store.get_inventory(DEV, REGION).await.unwrap(), None);
    assert!(w.store.baselines().is_empty());
}

/// Takes the lease for `op`'s task on `target` as a delivery that is about to crash would.
async fn crashed_delivery(w: &World, op: &str, action: Action, target: &Target) -> LeaseToken {
    let lease = LeaseToken::new(op, action);
    let created = w.op(op).await.created_at;
    let granted = w
        .store
        .acquire_lease(
            &target.key(),
            &lease,
            created,
            w.clock.now(),
            Duration::minutes(15),
        )
        .await
        .unwrap();
    assert!(matches!(granted, Lease::Acquired { .. }), "{granted:?}");
    lease
}

/// Found by the chaos suite (seeds 452, 1076): a start restored the target and died before
/// retiring the baseline; the next operation on the target, a stop kept awake by an override,
/// skipped it and left a spent baseline on a running group, which the stop after the override
/// would have "restored" over whatever sizes the owners set meanwhile.
#[tokio::test]
async fn a_baseline_spent_by_an_interrupted_start_is_retired_by_the_next_operation() {
    let w = world(&[]).await;
    w.run(true).await;
    w.clock.advance(Duration::minutes(1));
    let start = w.begin(false, false).await;
    w.route().await;
    let lease = crashed_delivery(&w, &start, Action::Start, &asg(DEV)).await;
    let change = ChangeInFlight {
        before: Sizes::new(0, 0, 0),
        planned: ASG_SIZES,
        at: w.clock.now(),
    };
    w.store
        .mark_in_flight(&asg(DEV).key(), &lease, &change)
        .await
        .unwrap();
    let role = SpokeRole {
        account: DEV.into(),
        role_arn: format!("arn:aws:iam::{DEV}:role/curfew-spoke"),
        external_id: None,
    };
    w.spokes
        .set_sizes(&role, &asg(DEV), ASG_SIZES)
        .await
        .unwrap();

    // The lease expires; a stop kept awake by an override is the next to take it.
    w.clock.advance(Duration::minutes(16));
    w.store
        .put_override(&curfew_core::ports::Override {
            id: "o1".into(),
            selector: curfew_core::selector::Selector::parse("kind=asg").unwrap(),
            awake_until: w.clock.now() + Duration::hours(3),
            created_at: w.clock.now(),
        })
        .await
        .unwrap();
    let stop = w.run(true).await;
    let task = w.task(&stop.id, &asg(DEV)).await;
    assert!(task.reason.unwrap_or_default().starts_with("kept awake"));
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES);
    assert_eq!(
        w.baseline(&asg(DEV)).await,
        None,
        "the spent baseline is gone"
    );
}

/// Found by the chaos suite (seed 714): a stop saved the baseline and died before scaling; the
/// next stop's node group update failed, and the baseline the first one saved stayed on the
/// running group.
#[tokio::test]
async fn a_baseline_left_by_an_interrupted_stop_does_not_outlive_a_failed_stop() {
    let w = world(&[]).await;
    let first = w.begin(true, false).await;
    w.route().await;
    let ng = nodegroup(DEV);
    let lease = crashed_delivery(&w, &first, Action::Stop, &ng).await;
    let baseline = curfew_core::ports::Baseline {
        target_key: ng.key(),
        sizes: NG_SIZES,
        op_id: first.clone(),
        saved_at: w.clock.now(),
        held: Processes::NONE,
        ca_tags: Vec::new(),
        cluster_hold: false,
    };
    assert!(w
        .store
        .save_baseline(
            &baseline,
            &lease,
            false,
            &ChangeInFlight {
                before: NG_SIZES,
                planned: Sizes::new(0, NG_SIZES.max, 0),
                at: w.clock.now(),
            },
        )
        .await
        .unwrap());

    w.clock.advance(Duration::minutes(16));
    w.spokes
        .script_next_update(&ng.key(), 0, Some("NodeCreationFailure".into()));
    let second = w.run(true).await;
    assert_eq!(w.task(&second.id, &ng).await.status, TaskStatus::Failed);
    assert_eq!(w.sizes(&ng), NG_SIZES);
    assert_eq!(w.baseline(&ng).await, None);
}

/// Found by the chaos suite (seed 2971): a stop saved the baseline, was throttled before it
/// could scale, and on its next delivery an override put meanwhile kept the target awake; the
/// baseline it had saved stayed on the running group.
#[tokio::test]
async fn a_stop_kept_awake_after_a_throttled_attempt_leaves_no_baseline() {
    let w = world(&[]).await;
    let hub = Hub {
        spokes: Arc::new(FirstUpdate::new(w.spokes.clone(), OnFirstUpdate::Throttle)),
        ..w.hub.clone()
    };
    let stop = w.begin(true, false).await;
    let message = message_for(&w.route().await, &asg(DEV));
    let msg: curfew_core::operation::TaskMessage = serde_json::from_str(&message).unwrap();
    let first = worker::work(&hub, &msg, None).await.unwrap();
    assert!(matches!(first, TaskStep::RetryLater(_)), "{first:?}");
    assert_eq!(w.baseline(&asg(DEV)).await, Some(ASG_SIZES));

    w.store
        .put_override(&curfew_core::ports::Override {
            id: "o1".into(),
            selector: curfew_core::selector::Selector::parse("kind=asg").unwrap(),
            awake_until: w.clock.now() + Duration::hours(3),
            created_at: w.clock.now(),
        })
        .await
        .unwrap();
    assert_eq!(
        worker::work(&hub, &msg, None).await.unwrap(),
        TaskStep::Finished(TaskStatus::Skipped)
    );
    assert_eq!(w.task(&stop, &asg(DEV)).await.status, TaskStatus::Skipped);
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES);
    assert_eq!(w.baseline(&asg(DEV)).await, None);
}
