//! Dead-lettered tasks on the emulator: the provisioned task queue's redrive policy moves a
//! message after its last receive, the worker gives its task up (counted once in DynamoDB),
//! the operation ends, and a redrive from the real dead-letter queue resumes the task.

use chrono::{Duration, TimeZone, Utc};
use curfew_aws::local::demo_fleet;
use curfew_aws::SqsDeadLetters;
use curfew_core::clock::Clock;
use curfew_core::decision::Action;
use curfew_core::operation::{OpStatus, TaskStatus};
use curfew_core::ports::{Lease, LeaseToken};
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::worker::{self, TaskStep};
use curfew_core::service::{dlq, worker_batch, Delivery};
use curfew_core::target::Sizes;
use curfew_tests::{key, spawn_hub, TestHub};
use serde_json::json;

/// Takes `target_key`'s lease for an operation created before any the test starts, as a long
/// change in progress would hold it.
async fn hold_lease(t: &TestHub, target_key: &str) -> LeaseToken {
    let token = LeaseToken::new("20270104T1700Z-blocker", Action::Stop);
    let now = t.clock.now();
    let granted = t
        .hub
        .store
        .acquire_lease(
            target_key,
            &token,
            now - Duration::hours(1),
            now,
            Duration::hours(2),
        )
        .await
        .unwrap();
    assert!(matches!(granted, Lease::Acquired { .. }), "{granted:?}");
    token
}

async fn stop_asgs(t: &TestHub) -> String {
    invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap()
    .operation_id
}

fn dead_letters(t: &TestHub) -> SqsDeadLetters {
    SqsDeadLetters::new(
        aws_sdk_sqs::Client::new(&t.sdk),
        t.config
            .task_dlq_url
            .clone()
            .expect("a provisioned task DLQ"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_moved_by_the_redrive_policy_ends_its_operation_and_a_redrive_resumes_it() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 2, 0);
    t.seed(&fleet).await;
    let (free, blocked) = (&fleet[0], &fleet[1]);
    let before = t.sizes(blocked).await;
    let blocker = hold_lease(&t, &key(blocked)).await;

    let op_id = stop_asgs(&t).await;
    let drained = t.drain().await;

    assert_eq!(drained.dead_lettered, 1, "{drained:?}");
    assert_eq!(
        drained.retries,
        usize::try_from(curfew_aws::hub::MAX_RECEIVES).unwrap(),
        "one retry per receive the redrive policy allows"
    );
    let op = t.hub.store.get_operation(&op_id).await.unwrap().unwrap();
    assert_eq!(op.status, OpStatus::Partial);
    assert_eq!(
        (
            op.counts.total,
            op.counts.succeeded,
            op.counts.dead_lettered
        ),
        (2, 1, 1)
    );
    let task = t
        .hub
        .store
        .get_task(&op_id, &key(blocked))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, TaskStatus::DeadLettered);
    assert!(
        task.reason
            .as_deref()
            .is_some_and(|r| r.contains("20270104T1700Z-blocker is working on this target")),
        "{task:?}"
    );
    assert_eq!(
        t.sizes(blocked).await,
        before,
        "the leased target was left alone"
    );
    assert_eq!(t.sizes(free).await, Sizes::new(0, 0, 0));

    // SQS moved the message: it is in the dead-letter queue, listed as many times as asked.
    let dead = dead_letters(&t);
    for _ in 0..2 {
        let entries = dlq::list(t.hub.store.as_ref(), &dead, 100).await.unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].op_id.as_deref(), Some(op_id.as_str()));
        assert_eq!(entries[0].target, Some(key(blocked)));
        assert_eq!(entries[0].action, Some(Action::Stop));
        assert_eq!(entries[0].task_status, Some(TaskStatus::DeadLettered));
        assert!(entries[0].receive_count >= curfew_aws::hub::MAX_RECEIVES);
    }

    // The other operation lets go; the redrive reopens the task and the worker finishes it.
    t.hub
        .store
        .release_lease(&key(blocked), &blocker, false)
        .await
        .unwrap();
    let report = dlq::redrive(&t.hub, &dead).await.unwrap();
    assert_eq!((report.moved, report.reopened.len()), (1, 1));
    let reopened = t.hub.store.get_operation(&op_id).await.unwrap().unwrap();
    assert_eq!(
        (
            reopened.status,
            reopened.counts.dead_lettered,
            reopened.counts.succeeded
        ),
        (OpStatus::Running, 0, 1),
        "running again, its counts read from the stripes"
    );
    t.drain().await;

    let op = t.hub.store.get_operation(&op_id).await.unwrap().unwrap();
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
    assert_eq!(t.sizes(blocked).await, Sizes::new(0, 0, 0));
    assert_eq!(
        t.hub
            .store
            .get_baseline(&key(blocked))
            .await
            .unwrap()
            .unwrap()
            .sizes,
        before
    );
    assert!(dlq::list(t.hub.store.as_ref(), &dead, 100)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_receive_worked_twice_is_counted_once_in_the_table() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 1, 0);
    t.seed(&fleet).await;
    hold_lease(&t, &key(&fleet[0])).await;
    let op_id = stop_asgs(&t).await;
    let messages = t.route_and_take_tasks().await;
    let last = Delivery {
        message_id: "m-last".into(),
        body: serde_json::to_string(&messages[0]).unwrap(),
        receive_count: curfew_aws::hub::MAX_RECEIVES,
        trace_header: None,
    };

    let first = worker_batch(&t.hub, std::slice::from_ref(&last)).await;
    let again = worker_batch(&t.hub, &[last.clone(), last]).await;

    assert_eq!(first.dead_lettered, ["m-last"]);
    assert_eq!(again.failed, ["m-last", "m-last"], "left for the DLQ");
    // A copy that read the task before it was given up gives it up too: the transaction's
    // condition refuses it.
    assert_eq!(
        worker::give_up(&t.hub, &messages[0], 5, "held")
            .await
            .unwrap(),
        TaskStep::Finished(TaskStatus::DeadLettered)
    );
    let op = t.hub.store.get_operation(&op_id).await.unwrap().unwrap();
    assert_eq!(op.counts.dead_lettered, 1, "counted once");
    assert_eq!(op.status, OpStatus::Failed, "its only task was given up");
}
