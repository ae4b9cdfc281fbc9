//! A shard's tasks planned by listing its targets on the shard's marker, through the real
//! DynamoDB adapter on the emulator: no task item is written at planning, every reader shows a
//! listed task PENDING, and the first write of a task (its end, giving it up, marking it
//! interrupted) creates its item from the target the worker was sent. A shard too large to list
//! writes a task item per target, as before listings, and works the same.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use curfew_aws::dynamo::DynamoStore;
use curfew_aws::local::demo_fleet;
use curfew_core::clock::Clock;
use curfew_core::operation::{OpStatus, Shard, TaskStatus};
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::worker::{self, TaskStep};
use curfew_core::target::Sizes;
use curfew_tests::{spawn_hub, TestHub};
use serde_json::json;

const TARGETS: usize = 4;

/// The task items in the test's table (a Scan: test assertions only).
async fn task_items(t: &TestHub) -> usize {
    let out = aws_sdk_dynamodb::Client::new(&t.sdk)
        .scan()
        .table_name(&t.config.table)
        .filter_expression("begins_with(sk, :task)")
        .expression_attribute_values(":task", AttributeValue::S("TASK#".into()))
        .send()
        .await
        .unwrap();
    out.items.unwrap_or_default().len()
}

/// A hub with `TARGETS` ASGs in one account and region, a stop of them invoked and planned,
/// and its task messages taken off the queue unworked.
async fn planned(
    listing_bytes: Option<usize>,
) -> (TestHub, String, Vec<curfew_core::operation::TaskMessage>) {
    let mut t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    if let Some(bytes) = listing_bytes {
        let client = aws_sdk_dynamodb::Client::new(&t.sdk);
        t.hub.store = Arc::new(DynamoStore::new(client, &t.config.table).with_listing_bytes(bytes));
    }
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], TARGETS, 0);
    t.seed(&fleet).await;
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let mut messages = t.route_and_take_tasks().await;
    assert_eq!(messages.len(), TARGETS);
    // In the order listings show tasks: by target key.
    messages.sort_by_key(|m| m.target.key());
    (t, op.operation_id, messages)
}

#[tokio::test]
async fn a_listed_task_reads_pending_and_is_written_whole_by_its_first_write() {
    let (t, op_id, messages) = planned(None).await;
    let store = &t.hub.store;
    assert_eq!(
        task_items(&t).await,
        0,
        "planning lists the targets, writes no task"
    );
    let listed = store.list_tasks(&op_id).await.unwrap();
    assert_eq!(listed.len(), TARGETS);
    for (task, m) in listed.iter().zip(&messages) {
        assert_eq!(task.status, TaskStatus::Pending);
        assert_eq!(task.target.key(), m.target.key(), "by target key");
        assert!(
            task.target.tags.is_empty(),
            "a listing names its target by key alone"
        );
        assert!(store
            .get_task(&op_id, &m.target.key())
            .await
            .unwrap()
            .is_none());
    }
    assert!(
        !messages[0].target.tags.is_empty(),
        "the demo fleet's ASGs are tagged"
    );

    // Its end: the worker's message carries the whole target, tags and all.
    let step = worker::handle(&t.hub, &messages[0]).await.unwrap();
    assert_eq!(step, TaskStep::Finished(TaskStatus::Succeeded));
    let ended = store
        .get_task(&op_id, &messages[0].target.key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ended.status, &ended.target),
        (TaskStatus::Succeeded, &messages[0].target)
    );
    assert_eq!(ended.after, Some(Sizes::new(0, 0, 0)));
    // A second delivery of the same message finds it final and changes nothing.
    assert_eq!(
        worker::handle(&t.hub, &messages[0]).await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );

    // Given up: from PENDING, so a redrive reopens it PENDING.
    let now = t.clock.now();
    assert!(store
        .dead_letter_task(&op_id, &messages[1].target, "busy", now)
        .await
        .unwrap());
    assert!(!store
        .dead_letter_task(&op_id, &messages[1].target, "busy", now)
        .await
        .unwrap());
    let given_up = store
        .get_task(&op_id, &messages[1].target.key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (given_up.status, given_up.reopens_as, &given_up.target),
        (
            TaskStatus::DeadLettered,
            Some(TaskStatus::Pending),
            &messages[1].target
        )
    );
    assert!(store
        .reopen_task(&op_id, &messages[1].target.key(), now)
        .await
        .unwrap());

    // Marked interrupted by another operation's delivery.
    let (before, planned) = (Sizes::new(1, 4, 2), Sizes::new(0, 0, 0));
    assert!(store
        .mark_interrupted(&op_id, &messages[2].target, before, planned, now)
        .await
        .unwrap());

    assert_eq!(task_items(&t).await, 3);
    let shown: Vec<(String, TaskStatus)> = store
        .list_tasks(&op_id)
        .await
        .unwrap()
        .into_iter()
        .map(|task| (task.target.key(), task.status))
        .collect();
    let expected: Vec<(String, TaskStatus)> = messages
        .iter()
        .map(|m| m.target.key())
        .zip([
            TaskStatus::Succeeded,
            TaskStatus::Pending,
            TaskStatus::Applying,
            TaskStatus::Pending,
        ])
        .collect();
    assert_eq!(shown, expected);
    let shard = Shard {
        account: t.accounts[0].clone(),
        region: "eu-west-1".into(),
    };
    let open = store.unfinished_tasks(&op_id, &shard).await.unwrap();
    assert_eq!(open.len(), 3, "the ended task is not open");
}

#[tokio::test]
async fn a_shard_too_large_to_list_writes_its_tasks_at_planning_and_works_the_same() {
    let (t, op_id, messages) = planned(Some(0)).await;
    assert_eq!(
        task_items(&t).await,
        TARGETS,
        "a task item per target, PENDING"
    );
    for m in &messages {
        let task = t
            .hub
            .store
            .get_task(&op_id, &m.target.key())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (task.status, &task.target),
            (TaskStatus::Pending, &m.target)
        );
        assert_eq!(
            worker::handle(&t.hub, m).await.unwrap(),
            TaskStep::Finished(TaskStatus::Succeeded)
        );
    }
    let now = t.clock.now();
    let settled = t
        .hub
        .store
        .finalize_operation(&op_id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.status, OpStatus::Succeeded);
    let op = t.hub.store.get_operation(&op_id).await.unwrap().unwrap();
    assert_eq!(
        (op.counts.total, op.counts.succeeded),
        (TARGETS as u64, TARGETS as u64)
    );
}
