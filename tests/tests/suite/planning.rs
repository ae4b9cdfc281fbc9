//! A shard's tasks planned by listing its targets on the shard's marker, through the real
//! DynamoDB adapter on the emulator: no task item is written at planning, every reader shows a
//! listed task PENDING, and the first write of a task (its end, giving it up, marking it
//! interrupted) creates its item from the target the worker was sent. A shard too large to list
//! writes a task item per target, as before listings, and works the same. A shard still being
//! listed is planned in parts, each written once and in its turn, and read with the rest.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use curfew_aws::dynamo::{DynamoStore, LISTING_BYTES};
use curfew_aws::local::demo_fleet;
use curfew_core::clock::Clock;
use curfew_core::operation::{OpStatus, Shard, Task, TaskOutcome, TaskStatus};
use curfew_core::ports::OperationStore;
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::worker::{self, TaskStep};
use curfew_core::target::{Sizes, Target};
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

/// A hub with a stop created (not routed: its shards are planned by hand here), its
/// operation id, a store over its table listing at most `listing_bytes`, and a shard.
async fn unplanned(listing_bytes: usize) -> (TestHub, DynamoStore, String, Shard) {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&t.sdk), &t.config.table)
        .with_listing_bytes(listing_bytes);
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let shard = Shard {
        account: t.accounts[0].clone(),
        region: "eu-west-1".into(),
    };
    (t, store, op.operation_id, shard)
}

/// PENDING tasks of tagged ASGs of `shard` named `names`.
fn tasks(t: &TestHub, op_id: &str, shard: &Shard, names: &[&str]) -> Vec<Task> {
    names
        .iter()
        .map(|name| {
            let mut target = Target::from_key(&format!("{}#asg#{name}", shard.key())).unwrap();
            target.tags.insert("team".into(), "web".into());
            Task::pending(op_id, target, t.clock.now())
        })
        .collect()
}

/// Tasks as their targets' names and statuses.
fn shown(tasks: &[Task]) -> Vec<(&str, TaskStatus)> {
    tasks
        .iter()
        .map(|t| (t.target.name.as_str(), t.status))
        .collect()
}

/// Tasks of these names, all PENDING but those named in `succeeded`.
fn expect<'a>(names: &[&'a str], succeeded: &[&str]) -> Vec<(&'a str, TaskStatus)> {
    names
        .iter()
        .map(|name| {
            let status = if succeeded.contains(name) {
                TaskStatus::Succeeded
            } else {
                TaskStatus::Pending
            };
            (*name, status)
        })
        .collect()
}

fn succeeded() -> TaskOutcome {
    TaskOutcome {
        status: TaskStatus::Succeeded,
        reason: None,
        before: Some(Sizes::new(1, 4, 2)),
        after: Some(Sizes::new(0, 0, 0)),
        steps: Vec::new(),
    }
}

/// The operation's task total and planned shards.
async fn totals(store: &DynamoStore, op_id: &str) -> (u64, u64) {
    let op = store.get_operation(op_id).await.unwrap().unwrap();
    (op.counts.total, op.shards_done)
}

#[tokio::test]
async fn a_shard_planned_in_parts_shows_each_part_before_and_after_its_last_tasks() {
    let (t, store, op_id, shard) = unplanned(LISTING_BYTES).await;
    let (first, second) = (
        tasks(&t, &op_id, &shard, &["a", "b"]),
        tasks(&t, &op_id, &shard, &["c", "d"]),
    );
    assert!(store.plan_part(&op_id, &shard, 0, &first).await.unwrap());
    assert!(store.plan_part(&op_id, &shard, 1, &second).await.unwrap());
    assert_eq!(task_items(&t).await, 0, "the parts list their targets");
    assert_eq!(totals(&store, &op_id).await, (4, 0), "counted, not planned");
    assert!(!store.shard_planned(&op_id, &shard).await.unwrap());
    let parts = store.shard_parts(&op_id, &shard).await.unwrap();
    assert_eq!(parts.parts, 2);
    assert_eq!(shown(&parts.tasks), expect(&["a", "b", "c", "d"], &[]));
    let open = store.unfinished_tasks(&op_id, &shard).await.unwrap();
    assert_eq!(shown(&open), expect(&["a", "b", "c", "d"], &[]));
    let listed = store.list_tasks(&op_id).await.unwrap();
    assert_eq!(shown(&listed), expect(&["a", "b", "c", "d"], &[]));

    // A part's task ends before the listing does: every reader shows its written state.
    let now = t.clock.now();
    assert!(store
        .finish_task(&op_id, &first[0].target, &succeeded(), now)
        .await
        .unwrap());
    let parts = store.shard_parts(&op_id, &shard).await.unwrap();
    assert_eq!(shown(&parts.tasks), expect(&["a", "b", "c", "d"], &["a"]));
    assert_eq!(
        parts.tasks[0].target, first[0].target,
        "the item, tags and all"
    );
    let open = store.unfinished_tasks(&op_id, &shard).await.unwrap();
    assert_eq!(shown(&open), expect(&["b", "c", "d"], &[]));

    let last = tasks(&t, &op_id, &shard, &["e"]);
    assert!(store
        .plan_shard(&op_id, &shard, 2, &last, None)
        .await
        .unwrap());
    assert_eq!(totals(&store, &op_id).await, (5, 1));
    assert!(store.shard_planned(&op_id, &shard).await.unwrap());
    let parts = store.shard_parts(&op_id, &shard).await.unwrap();
    assert_eq!(parts.parts, 2);
    assert_eq!(
        shown(&parts.tasks),
        expect(&["a", "b", "c", "d"], &["a"]),
        "the parts' tasks, not the last ones"
    );
    let open = store.unfinished_tasks(&op_id, &shard).await.unwrap();
    assert_eq!(shown(&open), expect(&["b", "c", "d", "e"], &[]));
    let listed = store.list_tasks(&op_id).await.unwrap();
    assert_eq!(shown(&listed), expect(&["a", "b", "c", "d", "e"], &["a"]));
}

#[tokio::test]
async fn a_part_out_of_turn_or_after_the_last_tasks_writes_nothing() {
    let (t, store, op_id, shard) = unplanned(LISTING_BYTES).await;
    let (first, other) = (
        tasks(&t, &op_id, &shard, &["a", "b"]),
        tasks(&t, &op_id, &shard, &["c"]),
    );
    assert!(!store.plan_part(&op_id, &shard, 1, &other).await.unwrap());
    assert_eq!(totals(&store, &op_id).await, (0, 0));
    assert_eq!(store.shard_parts(&op_id, &shard).await.unwrap().parts, 0);

    assert!(store.plan_part(&op_id, &shard, 0, &first).await.unwrap());
    assert!(
        !store.plan_part(&op_id, &shard, 0, &other).await.unwrap(),
        "another delivery wrote part 0"
    );
    assert!(!store.plan_part(&op_id, &shard, 2, &other).await.unwrap());
    assert_eq!(totals(&store, &op_id).await, (2, 0));

    // The last tasks must follow exactly the parts their caller read.
    let last = tasks(&t, &op_id, &shard, &["e"]);
    for parts in [0, 2] {
        assert!(!store
            .plan_shard(&op_id, &shard, parts, &last, None)
            .await
            .unwrap());
    }
    assert!(!store.shard_planned(&op_id, &shard).await.unwrap());
    assert_eq!(totals(&store, &op_id).await, (2, 0));
    assert!(store
        .plan_shard(&op_id, &shard, 1, &last, None)
        .await
        .unwrap());
    assert!(!store
        .plan_shard(&op_id, &shard, 1, &last, None)
        .await
        .unwrap());

    assert!(!store.plan_part(&op_id, &shard, 1, &other).await.unwrap());
    assert_eq!(totals(&store, &op_id).await, (3, 1));
    let parts = store.shard_parts(&op_id, &shard).await.unwrap();
    assert_eq!(
        (parts.parts, shown(&parts.tasks)),
        (1, expect(&["a", "b"], &[]))
    );
    let listed = store.list_tasks(&op_id).await.unwrap();
    assert_eq!(shown(&listed), expect(&["a", "b", "e"], &[]));
}

#[tokio::test]
async fn a_part_too_large_to_list_writes_its_tasks_told_apart_from_the_last_ones() {
    let (t, store, op_id, shard) = unplanned(0).await;
    let (first, second) = (
        tasks(&t, &op_id, &shard, &["a", "b"]),
        tasks(&t, &op_id, &shard, &["c", "d"]),
    );
    assert!(!store.plan_part(&op_id, &shard, 1, &second).await.unwrap());
    assert_eq!(
        task_items(&t).await,
        0,
        "a refused part writes no task item"
    );

    assert!(store.plan_part(&op_id, &shard, 0, &first).await.unwrap());
    assert!(store.plan_part(&op_id, &shard, 1, &second).await.unwrap());
    assert_eq!(task_items(&t).await, 4, "a task item per task, PENDING");
    let parts = store.shard_parts(&op_id, &shard).await.unwrap();
    assert_eq!(parts.parts, 2);
    let planned: Vec<&Task> = first.iter().chain(&second).collect();
    assert_eq!(
        parts.tasks.iter().collect::<Vec<_>>(),
        planned,
        "written whole"
    );

    let last = tasks(&t, &op_id, &shard, &["e"]);
    assert!(store
        .plan_shard(&op_id, &shard, 2, &last, None)
        .await
        .unwrap());
    assert!(!store
        .plan_part(&op_id, &shard, 2, &tasks(&t, &op_id, &shard, &["f"]))
        .await
        .unwrap());
    assert_eq!(task_items(&t).await, 5, "the refused part wrote none");
    assert_eq!(totals(&store, &op_id).await, (5, 1));

    let now = t.clock.now();
    assert!(store
        .finish_task(&op_id, &second[0].target, &succeeded(), now)
        .await
        .unwrap());
    let parts = store.shard_parts(&op_id, &shard).await.unwrap();
    assert_eq!(
        shown(&parts.tasks),
        expect(&["a", "b", "c", "d"], &["c"]),
        "the parts' tasks, not the last ones"
    );
    let open = store.unfinished_tasks(&op_id, &shard).await.unwrap();
    assert_eq!(shown(&open), expect(&["a", "b", "d", "e"], &[]));
    let listed = store.list_tasks(&op_id).await.unwrap();
    assert_eq!(shown(&listed), expect(&["a", "b", "c", "d", "e"], &["c"]));
}

#[tokio::test]
async fn a_shard_whose_key_starts_another_shards_keeps_its_own_parts() {
    let (t, store, op_id, short) = unplanned(LISTING_BYTES).await;
    // `eu-west-10` is no region yet; any shard key extending another's would do.
    let long = Shard {
        account: short.account.clone(),
        region: "eu-west-10".into(),
    };
    let ours = tasks(&t, &op_id, &short, &["a"]);
    assert!(store.plan_part(&op_id, &short, 0, &ours).await.unwrap());
    let theirs = tasks(&t, &op_id, &long, &["b"]);
    assert!(store.plan_part(&op_id, &long, 0, &theirs).await.unwrap());
    let last = tasks(&t, &op_id, &long, &["c"]);
    assert!(store
        .plan_shard(&op_id, &long, 1, &last, None)
        .await
        .unwrap());

    assert!(!store.shard_planned(&op_id, &short).await.unwrap());
    let parts = store.shard_parts(&op_id, &short).await.unwrap();
    assert_eq!((parts.parts, shown(&parts.tasks)), (1, expect(&["a"], &[])));
    let open = store.unfinished_tasks(&op_id, &short).await.unwrap();
    assert_eq!(shown(&open), expect(&["a"], &[]));
    assert!(
        store
            .plan_part(&op_id, &short, 1, &tasks(&t, &op_id, &short, &["d"]))
            .await
            .unwrap(),
        "the other shard's marker does not end this one's parts"
    );
    let open = store.unfinished_tasks(&op_id, &long).await.unwrap();
    assert_eq!(shown(&open), expect(&["b", "c"], &[]));
    let listed = store.list_tasks(&op_id).await.unwrap();
    assert_eq!(shown(&listed), expect(&["a", "d", "b", "c"], &[]));
}

/// A shard listing more targets than a part holds, planned in parts through the real adapters
/// on the emulator (discovery's pages, the part items and their conditions, the chunks sent as
/// each part is written): every target stops once and starts back to its sizes, and the
/// operations count each task once and end only after the shard's last tasks.
#[tokio::test]
async fn a_shard_longer_than_a_part_is_planned_in_parts_and_each_target_changes_once() {
    let mut t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    // Parts of two targets (two chunks of one).
    t.hub.settings.chunk_targets = 1;
    t.hub.settings.part_chunks = 2;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 5, 0);
    t.seed(&fleet).await;
    let before = t.fleet_sizes(&fleet).await;
    let shard = Shard {
        account: t.accounts[0].clone(),
        region: "eu-west-1".to_string(),
    };

    let stop = t.run(json!({"action": "stop", "select": "kind=asg"})).await;
    assert_eq!(
        (stop.status, stop.counts.total, stop.counts.succeeded),
        (OpStatus::Succeeded, 5, 5),
        "{stop:?}"
    );
    let parts = t.hub.store.shard_parts(&stop.id, &shard).await.unwrap();
    assert_eq!(
        (parts.parts, parts.tasks.len()),
        (2, 4),
        "two parts of two, the last target on the shard's marker"
    );
    for sizes in t.fleet_sizes(&fleet).await.values() {
        assert_eq!((sizes.min, sizes.desired), (0, 0), "{sizes:?}");
    }

    let start = t
        .run(json!({"action": "start", "select": "kind=asg"}))
        .await;
    assert_eq!(
        (start.status, start.counts.total, start.counts.succeeded),
        (OpStatus::Succeeded, 5, 5),
        "{start:?}"
    );
    assert_eq!(
        t.fleet_sizes(&fleet).await,
        before,
        "every target back as it was"
    );
}
