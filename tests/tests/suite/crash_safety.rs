//! Crashes between steps and out-of-order deliveries: the end state and counts stay right.

use chrono::{Duration, TimeZone, Utc};
use curfew_aws::local::demo_fleet;
use curfew_core::clock::Clock;
use curfew_core::decision::Action;
use curfew_core::operation::{OpStatus, TaskStatus};
use curfew_core::ports::{ChangeInFlight, Interrupted, Lease, LeaseToken};
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::worker::{self, TaskStep};
use curfew_core::target::Sizes;
use curfew_tests::{key, spawn_hub};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_crashed_after_scaling_finishes_the_task_on_redelivery() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 1, 0);
    t.seed(&fleet).await;
    let target = &fleet[0];
    let before = t.sizes(target).await;
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let messages = t.route_and_take_tasks().await;
    assert_eq!(messages.len(), 1);
    let msg = &messages[0];

    // The first delivery got as far as taking the lease, saving the baseline, recording
    // APPLYING and scaling, then crashed before recording the result.
    let k = key(target);
    let ttl = t.hub.settings.lease_ttl;
    t.crash_after_scaling(msg, before).await;

    // Until the crashed delivery's lease expires, a redelivery waits; then it takes over.
    assert!(matches!(
        worker::handle(&t.hub, msg).await.unwrap(),
        TaskStep::RetryLater(_)
    ));
    t.clock.advance(ttl + Duration::seconds(1));

    // The redelivery finishes it as SUCCEEDED (not "already stopped"), counted once.
    assert_eq!(
        worker::handle(&t.hub, msg).await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    assert_eq!(
        worker::handle(&t.hub, msg).await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    let op = t
        .hub
        .store
        .get_operation(&op.operation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (op.status, op.counts.succeeded, op.counts.skipped),
        (OpStatus::Succeeded, 1, 0)
    );
    let task = t.hub.store.get_task(&op.id, &k).await.unwrap().unwrap();
    assert_eq!(
        (task.before, task.after),
        (Some(before), Some(Sizes::new(0, 0, 0)))
    );
    let saved = t.hub.store.get_baseline(&k).await.unwrap().unwrap();
    assert_eq!(saved.sizes, before);
    assert_eq!(t.sizes(target).await, Sizes::new(0, 0, 0));

    // The next operation's take returns that baseline off the lease item as it was (the
    // delivery reads it no more), just as a read of the baseline finds it.
    let next = LeaseToken::new("a-later-start", Action::Start);
    let now = t.clock.now();
    let granted = t
        .hub
        .store
        .acquire_lease(&k, &next, now, now, ttl)
        .await
        .unwrap();
    assert_eq!(
        granted,
        Lease::Acquired {
            interrupted: None,
            baseline: Some(saved)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_an_older_operation_arriving_after_a_newer_one_is_skipped_as_superseded() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 1, 0);
    t.seed(&fleet).await;
    let before = t.sizes(&fleet[0]).await;

    let older = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let older_tasks = t.route_and_take_tasks().await;
    t.clock.advance(Duration::minutes(1));
    let newer = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "start", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let newer_tasks = t.route_and_take_tasks().await;

    // The newer start runs first (nothing to restore yet), then the late stop arrives.
    assert_eq!(
        worker::handle(&t.hub, &newer_tasks[0]).await.unwrap(),
        TaskStep::Finished(TaskStatus::Skipped)
    );
    assert_eq!(
        worker::handle(&t.hub, &older_tasks[0]).await.unwrap(),
        TaskStep::Finished(TaskStatus::Skipped)
    );
    let task = t
        .hub
        .store
        .get_task(&older.operation_id, &key(&fleet[0]))
        .await
        .unwrap()
        .unwrap();
    assert!(task.reason.unwrap().contains(&format!(
        "superseded by newer operation {}",
        newer.operation_id
    )));
    assert_eq!(
        t.sizes(&fleet[0]).await,
        before,
        "the late stop did not put it to sleep"
    );
    assert!(t
        .hub
        .store
        .get_baseline(&key(&fleet[0]))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_queued_message_ends_in_the_dead_letter_queue_and_the_drain_finishes() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    sqs.send_message()
        .queue_url(&t.config.task_queue_url)
        .message_body(r#"{"op_id": "x", "action": "stop"}"#)
        .send()
        .await
        .unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), t.drain())
        .await
        .expect("the drain finishes");
    assert!(
        report
            .rejected
            .iter()
            .any(|cause| cause.contains("op_created_at")),
        "{report:?}"
    );
    let dlq = t.config.task_queue_url.replace("-tasks", "-tasks-dlq");
    let out = sqs.receive_message().queue_url(&dlq).send().await.unwrap();
    assert_eq!(out.messages().len(), 1, "the message is in the DLQ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_operation_shows_the_tasks_finished_so_far_and_final_counts_once_done() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 4, 0);
    t.seed(&fleet).await;
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let messages = t.route_and_take_tasks().await;
    assert_eq!(messages.len(), 4);

    // Task results are counted on counter stripes; readers of a running operation sum them.
    for msg in &messages[..3] {
        worker::handle(&t.hub, msg).await.unwrap();
    }
    let running = t
        .hub
        .store
        .get_operation(&op.operation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            running.status,
            running.counts.total,
            running.counts.succeeded
        ),
        (OpStatus::Running, 4, 3)
    );
    let listed = t.hub.store.list_operations(10).await.unwrap();
    assert_eq!(listed[0].counts, running.counts);

    worker::handle(&t.hub, &messages[3]).await.unwrap();
    let done = t
        .hub
        .store
        .get_operation(&op.operation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.status, done.counts.total, done.counts.succeeded),
        (OpStatus::Succeeded, 4, 4)
    );
    assert_eq!(
        t.hub.store.list_operations(10).await.unwrap()[0].counts,
        done.counts
    );
}

/// Two workers (each its own hub: own table, queue and spoke clients, as two Lambda instances
/// have) take copies of the same task messages at once. The table decides: per target one copy
/// acts, the other waits (lease held) or finds the task done, and nothing is counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_working_copies_of_the_same_messages_act_once_per_target() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 6, 0);
    t.seed(&fleet).await;
    let mut before = Vec::new();
    for target in &fleet {
        before.push(t.sizes(target).await);
    }
    let other =
        curfew_aws::hub::build_hub(&t.sdk, &t.config, t.clock.clone(), t.hub.settings.clone());
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let messages = t.route_and_take_tasks().await;
    assert_eq!(messages.len(), fleet.len());

    let copies = messages.iter().map(|msg| async {
        let (a, b) = tokio::join!(
            worker::work(&t.hub, msg, None),
            worker::work(&other, msg, None)
        );
        (a.unwrap(), b.unwrap())
    });
    let steps = futures::future::join_all(copies).await;
    for (a, b) in &steps {
        let finished = [a, b]
            .iter()
            .filter(|s| matches!(s, TaskStep::Finished(_)))
            .count();
        assert!(finished >= 1, "one copy finishes the task: {a:?} {b:?}");
    }
    // The copies that were held come back and find their task done.
    for msg in &messages {
        assert_eq!(
            worker::handle(&other, msg).await.unwrap(),
            TaskStep::Finished(TaskStatus::Succeeded)
        );
    }
    let op = t
        .hub
        .store
        .get_operation(&op.operation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (op.status, op.counts.succeeded, op.counts.total),
        (OpStatus::Succeeded, fleet.len() as u64, fleet.len() as u64)
    );
    for (target, before) in fleet.iter().zip(before) {
        assert_eq!(t.sizes(target).await, Sizes::new(0, 0, 0));
        let baseline = t.hub.store.get_baseline(&key(target)).await.unwrap();
        assert_eq!(baseline.map(|b| b.sizes), Some(before), "{}", target.name);
    }
}

/// The mark of a change in flight survives in the table: the next holder of the lease, from
/// another operation, reads which operation was changing the target, how, from and to what
/// sizes, and its update; meanwhile the operation's listing shows the task APPLYING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_lease_holder_reads_the_change_an_interrupted_delivery_left_in_flight() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 1, 0);
    t.seed(&fleet).await;
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let msg = &t.route_and_take_tasks().await[0];
    let k = key(&fleet[0]);
    let (now, ttl) = (t.clock.now(), t.hub.settings.lease_ttl);
    let crashed = LeaseToken::new(&op.operation_id, Action::Stop);
    let granted = t
        .hub
        .store
        .acquire_lease(&k, &crashed, msg.op_created_at, now, ttl)
        .await
        .unwrap();
    assert_eq!(
        granted,
        Lease::Acquired {
            interrupted: None,
            baseline: None
        }
    );
    let before = t.sizes(&fleet[0]).await;
    let change = ChangeInFlight {
        before,
        planned: Sizes::new(0, 0, 0),
        at: now,
    };
    t.hub
        .store
        .mark_in_flight(&k, &crashed, &change)
        .await
        .unwrap();
    t.hub
        .store
        .record_update(&k, &crashed, "update-1")
        .await
        .unwrap();
    // The task is not written yet (its shard's marker lists it: PENDING); a listing shows it
    // as the lease's mark says it stands.
    let stored = t.hub.store.get_task(&op.operation_id, &k).await.unwrap();
    assert_eq!(stored.map(|task| task.status), None);
    let listed = t.hub.store.list_tasks(&op.operation_id).await.unwrap();
    assert_eq!(
        (
            listed[0].status,
            listed[0].before,
            listed[0].after,
            listed[0].update_id.as_deref()
        ),
        (
            TaskStatus::Applying,
            Some(before),
            Some(Sizes::new(0, 0, 0)),
            Some("update-1")
        )
    );

    t.clock.advance(ttl + Duration::seconds(1));
    let next = LeaseToken::new("a-newer-start", Action::Start);
    let granted = t
        .hub
        .store
        .acquire_lease(&k, &next, t.clock.now(), t.clock.now(), ttl)
        .await
        .unwrap();
    assert_eq!(
        granted,
        Lease::Acquired {
            interrupted: Some(Interrupted {
                op_id: op.operation_id.clone(),
                action: Action::Stop,
                planned: Some(Sizes::new(0, 0, 0)),
                before: Some(before),
                marked_at: Some(now),
                update_id: Some("update-1".into()),
            }),
            baseline: None,
        }
    );
    // A finished task's release clears the mark.
    t.hub.store.release_lease(&k, &next, true).await.unwrap();
    let again = LeaseToken::new("a-newer-start", Action::Start);
    let granted = t
        .hub
        .store
        .acquire_lease(&k, &again, t.clock.now(), t.clock.now(), ttl)
        .await
        .unwrap();
    assert_eq!(
        granted,
        Lease::Acquired {
            interrupted: None,
            baseline: None
        }
    );
}
