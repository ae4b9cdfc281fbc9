//! Tasks whose message reaches the dead-letter queue: given up on the last receive (counted
//! once, the operation settled), listed, and resumed by a redrive, over the in-memory fakes
//! with SQS's receive counts and redrive policy.

use crate::common::*;
use curfew_core::clock::Clock;
use curfew_core::decision::Action;
use curfew_core::operation::{OpStatus, TaskStatus};
use curfew_core::ports::{Lease, LeaseToken, OperationStore, Queue, TargetStore};
use curfew_core::service::worker::{self, TaskStep};
use curfew_core::service::{dlq, worker_batch, Delivery};
use curfew_core::target::Sizes;

/// A stop over env=dev whose node group stays busy until its message is dead-lettered.
async fn stop_with_a_busy_node_group(w: &World) -> String {
    w.spokes.set_busy(&nodegroup(DEV).key(), true);
    let id = w.begin(true, false).await;
    let drained = w.drain().await;
    assert!(
        drained.settled,
        "the message left for the dead-letter queue"
    );
    assert_eq!(drained.dead_lettered, 1);
    id
}

/// The node group's task message, on receive `receive_count`.
async fn node_group_message(w: &World, receive_count: u32) -> Delivery {
    let body = w
        .route()
        .await
        .into_iter()
        .find(|body| body.contains("\"workers\""))
        .expect("a message for the node group");
    Delivery {
        message_id: "ng".into(),
        body,
        receive_count,
        trace_header: None,
    }
}

#[tokio::test]
async fn a_task_still_busy_on_its_last_receive_is_dead_lettered_and_its_operation_ends_partial() {
    let w = world(&[]).await;
    let id = stop_with_a_busy_node_group(&w).await;

    let task = w.task(&id, &nodegroup(DEV)).await;
    assert_eq!(task.status, TaskStatus::DeadLettered);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.starts_with("dead-lettered after 5 receives")
            && reason.contains("an update is in progress on the node group"),
        "{reason}"
    );
    let op = w.op(&id).await;
    assert_eq!(op.status, OpStatus::Partial);
    assert_eq!(
        (
            op.counts.total,
            op.counts.succeeded,
            op.counts.dead_lettered
        ),
        (2, 1, 1)
    );
    let dead: Vec<String> = w
        .store
        .list_tasks(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.status == TaskStatus::DeadLettered)
        .map(|t| t.target.key())
        .collect();
    assert_eq!(dead, [nodegroup(DEV).key()], "the operation names it");
    assert_eq!(
        w.sizes(&nodegroup(DEV)),
        NG_SIZES,
        "the node group was left alone"
    );
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));
    assert_eq!(
        w.task_dlq.len(),
        1,
        "its message waits in the dead-letter queue"
    );
}

#[tokio::test]
async fn listing_the_dead_letter_queue_names_each_messages_task_and_why_it_was_given_up() {
    let w = world(&[]).await;
    let id = stop_with_a_busy_node_group(&w).await;

    let entries = dlq::list(w.store.as_ref(), w.task_dlq.as_ref(), 100)
        .await
        .unwrap();

    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.op_id.as_deref(), Some(id.as_str()));
    assert_eq!(entry.target, Some(nodegroup(DEV).key()));
    assert_eq!(entry.action, Some(Action::Stop));
    assert_eq!(entry.receive_count, 5);
    assert_eq!(entry.task_status, Some(TaskStatus::DeadLettered));
    assert!(entry.reason.as_deref().unwrap_or("").contains("5 receives"));
    assert_eq!(entry.problem, None);
    assert_eq!(w.task_dlq.len(), 1, "listing took nothing away");
}

#[tokio::test]
async fn a_redrive_resumes_the_dead_lettered_task_and_the_operation_finishes_succeeded() {
    let w = world(&[]).await;
    let id = stop_with_a_busy_node_group(&w).await;
    w.spokes.set_busy(&nodegroup(DEV).key(), false);

    let report = dlq::redrive(&w.hub, w.task_dlq.as_ref()).await.unwrap();

    assert_eq!(report.moved, 1);
    assert_eq!(report.reopened.len(), 1);
    assert_eq!(report.reopened[0].target, nodegroup(DEV).key());
    assert!(w.task_dlq.is_empty());
    let reopened = w.op(&id).await;
    assert_eq!(reopened.status, OpStatus::Running);
    assert_eq!(reopened.counts.dead_lettered, 0);
    let task = w.task(&id, &nodegroup(DEV)).await;
    assert_eq!((task.status, task.reason), (TaskStatus::Pending, None));

    assert!(w.drain().await.settled);
    let op = w.op(&id).await;
    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!(
        (
            op.counts.total,
            op.counts.succeeded,
            op.counts.failed,
            op.counts.dead_lettered
        ),
        (2, 2, 0, 0)
    );
    assert_eq!(w.sizes(&nodegroup(DEV)), Sizes::new(0, 5, 0));
    assert_eq!(w.baseline(&nodegroup(DEV)).await, Some(NG_SIZES));
    assert_eq!(
        w.store
            .finalize_operation(&id, w.clock.now())
            .await
            .unwrap()
            .map(|f| f.status),
        Some(OpStatus::Succeeded)
    );
}

#[tokio::test]
async fn a_second_redrive_reopens_nothing_twice() {
    let w = world(&[]).await;
    let id = stop_with_a_busy_node_group(&w).await;
    let message = w.task_dlq.take_all();
    // The first redrive reopened the task and sent the message, then died before deleting it.
    w.task_dlq.send(&message).await.unwrap();
    assert!(w
        .store
        .reopen_task(&id, &nodegroup(DEV).key(), w.clock.now())
        .await
        .unwrap());

    let report = dlq::redrive(&w.hub, w.task_dlq.as_ref()).await.unwrap();

    assert_eq!((report.moved, report.reopened.len()), (1, 0));
    assert_eq!(w.op(&id).await.counts.dead_lettered, 0);
}

#[tokio::test]
async fn the_last_receive_worked_twice_counts_the_task_once() {
    let w = world(&[]).await;
    w.spokes.set_busy(&nodegroup(DEV).key(), true);
    let id = w.begin(true, false).await;
    let last = node_group_message(&w, 5).await;

    let first = worker_batch(&w.hub, std::slice::from_ref(&last)).await;
    let again = worker_batch(&w.hub, &[last.clone(), last.clone()]).await;

    for outcome in [&first, &again] {
        assert!(outcome.failed.iter().all(|m| m == "ng"), "{outcome:?}");
        assert!(!outcome.failed.is_empty(), "left for the dead-letter queue");
        assert!(outcome.rejected.is_empty(), "{outcome:?}");
    }
    assert_eq!(first.dead_lettered, ["ng"]);
    // A copy that read the task before the first gave it up gives it up too: refused.
    let msg = serde_json::from_str(&last.body).unwrap();
    assert_eq!(
        worker::give_up(&w.hub, &msg, 5, "busy").await.unwrap(),
        TaskStep::Finished(TaskStatus::DeadLettered)
    );
    let op = w.op(&id).await;
    assert_eq!(op.counts.dead_lettered, 1, "counted once");
    assert_eq!(
        op.status,
        OpStatus::Running,
        "the asg's task is still queued"
    );
}

#[tokio::test]
async fn a_message_before_its_last_receive_never_gives_its_task_up() {
    let w = world(&[]).await;
    w.spokes.set_busy(&nodegroup(DEV).key(), true);
    let id = w.begin(true, false).await;
    let fourth = node_group_message(&w, 4).await;

    let outcome = worker_batch(&w.hub, &[fourth]).await;

    assert_eq!(outcome.failed, ["ng"]);
    assert!(outcome.dead_lettered.is_empty());
    assert_eq!(
        w.task(&id, &nodegroup(DEV)).await.status,
        TaskStatus::Pending
    );
}

#[tokio::test]
async fn the_last_receive_leaves_a_task_another_delivery_is_working_on_open() {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;
    let last = node_group_message(&w, 5).await;
    let op = w.op(&id).await;
    // Another delivery of the same task holds the node group's lease, working on it.
    let other = LeaseToken::new(&id, Action::Stop);
    let granted = w
        .store
        .acquire_lease(
            &nodegroup(DEV).key(),
            &other,
            op.created_at,
            w.clock.now(),
            w.hub.settings.lease_ttl,
        )
        .await
        .unwrap();
    assert!(matches!(granted, Lease::Acquired { .. }));

    let outcome = worker_batch(&w.hub, &[last]).await;

    assert_eq!(outcome.failed, ["ng"], "the message still goes to the DLQ");
    assert!(outcome.dead_lettered.is_empty(), "{outcome:?}");
    let task = w.task(&id, &nodegroup(DEV)).await;
    assert_eq!(
        task.status,
        TaskStatus::Pending,
        "left to the delivery holding it"
    );
    assert_eq!(w.op(&id).await.counts.dead_lettered, 0);
}

#[tokio::test]
async fn the_last_receive_of_a_task_another_delivery_finished_is_done_not_dead_lettered() {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;
    let last = node_group_message(&w, 5).await;
    let first = Delivery::first("copy", last.body.clone());
    assert!(worker_batch(&w.hub, &[first]).await.failed.is_empty());

    // Giving up races the other delivery's finish and loses: nothing is counted.
    let msg = serde_json::from_str(&last.body).unwrap();
    assert_eq!(
        worker::give_up(&w.hub, &msg, 5, "busy").await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    let outcome = worker_batch(&w.hub, &[last]).await;

    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert_eq!(
        w.task(&id, &nodegroup(DEV)).await.status,
        TaskStatus::Succeeded
    );
    assert_eq!(w.op(&id).await.counts.dead_lettered, 0);
}

/// A message in the dead-letter queue whose task had a change under way lists the task
/// APPLYING: the change is marked on the target's lease, the task itself is still PENDING.
#[tokio::test]
async fn a_dead_letter_whose_task_has_a_change_in_flight_lists_it_applying() {
    let w = world(&[]).await;
    w.spokes.script_next_update(&nodegroup(DEV).key(), 3, None);
    w.begin(true, false).await;
    let message = node_group_message(&w, 1).await;
    let outcome = worker_batch(&w.hub, std::slice::from_ref(&message)).await;
    assert_eq!(
        outcome.failed.len(),
        1,
        "the node group's update is in flight"
    );
    w.task_dlq
        .send(std::slice::from_ref(&message.body))
        .await
        .unwrap();

    let entries = dlq::list(w.store.as_ref(), w.task_dlq.as_ref(), 100)
        .await
        .unwrap();

    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].task_status, Some(TaskStatus::Applying));
}

#[tokio::test]
async fn an_account_plan_in_the_dead_letter_queue_is_listed_by_its_account_and_redriven_to_be_planned(
) {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;
    // An account plan whose every receive failed (its listing throttled, say) waits here.
    let plans = w.route_plans().await;
    w.task_dlq.send(&plans).await.unwrap();

    let entries = dlq::list(w.store.as_ref(), w.task_dlq.as_ref(), 10)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].op_id.as_deref(), Some(id.as_str()));
    assert_eq!(entries[0].target, None);
    let problem = entries[0].problem.clone().unwrap_or_default();
    assert!(
        problem.contains("the plan of account 111111111111 (regions eu-west-1)"),
        "{problem}"
    );

    let report = dlq::redrive(&w.hub, w.task_dlq.as_ref()).await.unwrap();
    assert_eq!((report.moved, report.plans, report.not_tasks), (1, 1, 0));
    assert!(report.reopened.is_empty());
    assert!(w.drain().await.settled);
    let op = w.op(&id).await;
    assert_eq!((op.status, op.counts.succeeded), (OpStatus::Succeeded, 2));
}
