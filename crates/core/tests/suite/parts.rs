//! A long listing planned in parts while it is listed (`router::ShardPlanning`): each part's
//! chunks go out at once, every target is planned once whatever deliveries of the plan do, and
//! the operation ends only after the shard's last tasks.

use curfew_core::chunk::AccountPlan;
use curfew_core::operation::{OpStatus, Shard, Task};
use curfew_core::ports::{ErrorKind, OperationStore, Queue};
use curfew_core::service::worker_batch;
use curfew_core::target::Target;

use crate::common::*;

/// A world whose one account lists 150 targets seven to a page, planned in parts of 20 (two
/// chunks of 10).
async fn long_listing() -> World {
    let mut w = world(&[]).await;
    w.hub.settings.chunk_targets = 10;
    w.hub.settings.part_chunks = 2;
    w.spokes.set_page(7);
    for i in 0..148 {
        w.spokes.add(
            Target {
                name: format!("dev-asg-{i:03}"),
                ..asg(DEV)
            },
            ASG_SIZES,
        );
    }
    w
}

fn shard() -> Shard {
    Shard {
        account: DEV.to_string(),
        region: REGION.to_string(),
    }
}

fn plan(id: &str) -> String {
    AccountPlan {
        op_id: id.to_string(),
        shards: vec![shard()],
    }
    .to_body()
}

/// Runs what is queued to the end and checks every target was planned and changed once.
async fn ends_with_each_target_changed_once(w: &World, id: &str) {
    assert!(w.drain().await.settled);
    let op = w.op(id).await;
    assert_eq!(
        (op.status, op.counts.total, op.counts.succeeded),
        (OpStatus::Succeeded, 150, 150)
    );
    assert_eq!(w.spokes.changes().len(), 150, "each target changed once");
}

#[tokio::test]
async fn a_long_listing_is_planned_and_sent_a_part_at_a_time_and_its_rest_worked_at_once() {
    let w = long_listing().await;
    let id = w.begin_on("kind=asg", true, false).await;
    let plans = w.route_plans().await;
    let outcome = worker_batch(&w.hub, &deliveries(plans)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");

    // 149 ASGs: seven parts of 20 sent as they filled, the last nine worked by the planner.
    let sent = w.task_q.take_all();
    assert_eq!(sent.len(), 14, "two chunks a part");
    let op = w.op(&id).await;
    assert_eq!(
        (op.status, op.counts.total, op.counts.succeeded),
        (OpStatus::Running, 149, 9)
    );
    let parts = w.store.shard_parts(&id, &shard()).await.unwrap();
    assert_eq!((parts.parts, parts.tasks.len()), (7, 140));

    let outcome = worker_batch(&w.hub, &deliveries(sent)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let op = w.op(&id).await;
    assert_eq!(
        (op.status, op.counts.total, op.counts.succeeded),
        (OpStatus::Succeeded, 149, 149)
    );
}

/// The delivery that planned a part stopped before sending it: the plan's redelivery finds
/// the part when its own first part is refused, plans only what the part does not hold, and
/// sends the part's open tasks, described whole.
#[tokio::test]
async fn a_plan_delivered_again_sends_the_parts_it_finds_and_plans_only_the_rest() {
    let w = long_listing().await;
    let id = w.begin(true, false).await;
    let _ = w.route_plans().await;
    // The last 20 targets in listing order (not the 20 the redelivery's first part holds).
    let targets: Vec<Target> = (128..148)
        .map(|i| Target {
            name: format!("dev-asg-{i:03}"),
            ..asg(DEV)
        })
        .collect();
    let part: Vec<Task> = targets
        .into_iter()
        .map(|t| Task::pending(&id, t, monday_evening()))
        .collect();
    assert!(w.store.plan_part(&id, &shard(), 0, &part).await.unwrap());

    let outcome = worker_batch(&w.hub, &deliveries(vec![plan(&id)])).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let sent = w.task_q.take_all();
    let resent: Vec<Target> = sent
        .iter()
        .flat_map(|body| curfew_core::chunk::read_task_body(body).unwrap())
        .map(|m| m.target)
        .filter(|t| (128..148).any(|i| t.name == format!("dev-asg-{i:03}")))
        .collect();
    assert_eq!(resent.len(), 20, "the found part's tasks went out");
    assert!(
        resent.iter().all(|t| t.tag("env") == Some("dev")),
        "described as discovery has them"
    );
    w.task_q.send(&sent).await.unwrap();
    ends_with_each_target_changed_once(&w, &id).await;
}

#[tokio::test]
async fn two_deliveries_of_one_plan_at_once_plan_every_target_once() {
    let w = long_listing().await;
    let id = w.begin(true, false).await;
    let _ = w.route_plans().await;
    let (first, second) = (deliveries(vec![plan(&id)]), deliveries(vec![plan(&id)]));
    let (a, b) = tokio::join!(worker_batch(&w.hub, &first), worker_batch(&w.hub, &second));
    assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:?} {b:?}");
    ends_with_each_target_changed_once(&w, &id).await;
}

/// The operation is not done while its shard is still being listed, however many of the
/// parts' tasks are finished.
#[tokio::test]
async fn an_operation_is_not_done_before_its_shards_last_tasks_are_planned() {
    let w = long_listing().await;
    let id = w.begin(true, false).await;
    let _ = w.route_plans().await;
    let part: Vec<Task> = (0..20)
        .map(|i| Target {
            name: format!("dev-asg-{i:03}"),
            ..asg(DEV)
        })
        .map(|t| Task::pending(&id, t, monday_evening()))
        .collect();
    assert!(w.store.plan_part(&id, &shard(), 0, &part).await.unwrap());
    let chunk = curfew_core::chunk::chunk_targets(
        &w.op(&id).await,
        &w.hub.store.get_account(DEV).await.unwrap().unwrap().role,
        part.into_iter().map(|t| t.target).collect(),
        100,
    );
    let bodies: Vec<String> = chunk
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect();
    let outcome = worker_batch(&w.hub, &deliveries(bodies)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let op = w.op(&id).await;
    assert_eq!(
        (op.status, op.counts.total, op.counts.succeeded),
        (OpStatus::Running, 20, 20),
        "all its planned tasks are done, but not its shard"
    );

    let outcome = worker_batch(&w.hub, &deliveries(vec![plan(&id)])).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    ends_with_each_target_changed_once(&w, &id).await;
}

/// A listing throttled part-way fails the plan with the parts it planned standing; the retry
/// lists again, plans only what they do not hold, and sends what they hold again (the first
/// delivery sent it, but a crash could have come first).
#[tokio::test]
async fn a_listing_throttled_part_way_keeps_its_parts_and_its_retry_plans_the_rest_once() {
    listing_cut_part_way(ErrorKind::Throttled).await;
}

/// A paced listing whose next request's turn comes after the invocation's calls must start is
/// retried like a throttled one, not planned as far as it got.
#[tokio::test]
async fn a_listing_out_of_time_part_way_keeps_its_parts_and_its_retry_plans_the_rest_once() {
    listing_cut_part_way(ErrorKind::OutOfTime).await;
}

async fn listing_cut_part_way(kind: ErrorKind) {
    let w = long_listing().await;
    let id = w.begin(true, false).await;
    let _ = w.route_plans().await;
    // Seven to a page: the first six pages (42 targets) make two parts of 20 before the cut.
    w.spokes.cut_listing_after(6, kind);
    let outcome = worker_batch(&w.hub, &deliveries(vec![plan(&id)])).await;
    assert_eq!(outcome.failed.len(), 1, "left for a retry: {outcome:?}");
    let parts = w.store.shard_parts(&id, &shard()).await.unwrap();
    assert_eq!((parts.parts, parts.tasks.len()), (2, 40));
    assert!(!w.store.shard_planned(&id, &shard()).await.unwrap());
    let op = w.op(&id).await;
    assert_eq!((op.status, op.counts.total), (OpStatus::Running, 40));

    w.task_q.send(&[plan(&id)]).await.unwrap();
    ends_with_each_target_changed_once(&w, &id).await;
}
