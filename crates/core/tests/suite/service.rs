//! The poller, router and worker end to end over the in-memory fakes: what stops and starts do
//! to targets, baselines and operations, including redeliveries, busy and denied targets.

use crate::common::*;
use chrono::Duration;
use curfew_core::chunk::AccountPlan;
use curfew_core::chunk::{read_body, read_task_body, TaskBody};
use curfew_core::clock::Clock;
use curfew_core::operation::{OpStatus, Operation, Shard, TaskStatus};
use curfew_core::ports::{AccountStore, OperationStore, ScheduleStore, TargetStore};
use curfew_core::schedule::{Schedule, ScheduleRecord};
use curfew_core::service::{poller, router_batch, worker_batch, worker_batch_until};
use curfew_core::target::{Sizes, Target};

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
        cron: Some("0 18 * * 1-5".into()),
        tz: "UTC".into(),
        action: Some("stop".into()),
        asleep: None,
        selector: "tag:env=dev".into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: vec![],
        skip_calendars: vec![],
        awake_calendars: vec![],
        enforce: false,
        default_start: None,
        next_fire: Some(fire),
        hold: None,
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

    // Fewer receives than the queue allows: the message keeps coming back.
    let busy = w.drain_rounds(3).await;
    assert!(!busy.settled, "the busy node group's message stays queued");
    assert_eq!(busy.dead_lettered, 0);
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
    let twice = deliveries([tasks.clone(), tasks].concat());
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

    let outcome = worker_batch(&w.hub, &deliveries(late_stop_tasks)).await;
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
    let messages = deliveries(w.route().await);
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

#[tokio::test]
async fn an_accounts_targets_in_every_region_travel_as_one_chunk_and_finish_together() {
    let w = world(&[]).await;
    let mut account = w.store.get_account(DEV).await.unwrap().unwrap();
    account.regions.push("us-east-1".into());
    w.store.put_account(&account).await.unwrap();
    let far = Target {
        region: "us-east-1".into(),
        ..asg(DEV)
    };
    w.spokes.add(far.clone(), ASG_SIZES);
    let id = w.begin(true, false).await;

    let chunks = w.route_chunks().await;
    assert_eq!(chunks.len(), 1, "one message for the account's two regions");
    let targets: Vec<String> = read_task_body(&chunks[0])
        .unwrap()
        .iter()
        .map(|t| t.target.key())
        .collect();
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(targets.contains(&far.key()), "{targets:?}");

    let outcome = worker_batch(&w.hub, &deliveries(chunks)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let op = w.op(&id).await;
    assert_eq!(
        (op.status, op.counts.succeeded, op.shards_total),
        (OpStatus::Succeeded, 3, Some(2))
    );
    assert_eq!(w.sizes(&far), Sizes::new(0, 0, 0));
}

#[tokio::test]
async fn a_chunk_with_a_busy_target_comes_back_whole_and_its_redelivery_finishes_only_that_one() {
    let w = world(&[]).await;
    w.spokes.set_busy(&nodegroup(DEV).key(), true);
    let id = w.begin(true, false).await;
    let chunk = deliveries(w.route_chunks().await);
    assert_eq!(chunk.len(), 1);

    let outcome = worker_batch(&w.hub, &chunk).await;
    assert_eq!(outcome.failed, [chunk[0].message_id.clone()], "{outcome:?}");
    assert!(outcome.rejected.is_empty() && outcome.dead_lettered.is_empty());
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0), "the ASG is done");
    assert_eq!(w.op(&id).await.status, OpStatus::Running);

    w.spokes.set_busy(&nodegroup(DEV).key(), false);
    let changes_before = w.spokes.changes().len();
    let outcome = worker_batch(&w.hub, &chunk).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let op = w.op(&id).await;
    assert_eq!(
        (op.status, op.counts.succeeded, op.counts.total),
        (OpStatus::Succeeded, 2, 2),
        "the ASG is counted once"
    );
    assert_eq!(
        w.spokes.changes().len(),
        changes_before + 1,
        "the redelivery changed only the node group"
    );
    assert_eq!(w.baseline(&asg(DEV)).await, Some(ASG_SIZES));
}

#[tokio::test]
async fn a_hundred_and_fifty_targets_of_one_account_go_out_as_two_chunks() {
    let w = world(&[]).await;
    for i in 0..148 {
        w.spokes.add(
            Target {
                name: format!("dev-asg-{i}"),
                ..asg(DEV)
            },
            ASG_SIZES,
        );
    }
    let id = w.begin(true, false).await;
    let chunks = w.route_chunks().await;
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| read_task_body(c).unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 50]);
    let outcome = worker_batch(&w.hub, &deliveries(chunks)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let op = w.op(&id).await;
    assert_eq!((op.status, op.counts.succeeded), (OpStatus::Succeeded, 150));
}

#[tokio::test]
async fn a_malformed_chunk_is_rejected_naming_the_field_and_changes_nothing() {
    let w = world(&[]).await;
    w.begin(true, false).await;
    let mut chunk: serde_json::Value = serde_json::from_str(&w.route_chunks().await[0]).unwrap();
    chunk["targets"][0]["kind"] = serde_json::json!("lambda");
    let outcome = worker_batch(&w.hub, &deliveries(vec![chunk.to_string()])).await;
    assert_eq!(outcome.rejected.len(), 1, "{outcome:?}");
    assert!(
        outcome.rejected[0].1.contains("malformed task chunk"),
        "{outcome:?}"
    );
    assert!(outcome.rejected[0].1.contains("lambda"), "{outcome:?}");
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES);
}

#[tokio::test]
async fn a_worker_about_to_time_out_starts_no_target_and_sends_its_chunk_on_at_once() {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;
    let chunk = deliveries(w.route_chunks().await);

    // Ten seconds left: less than the margin a target's work needs.
    let soon = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let outcome = worker_batch_until(&w.hub, &chunk, Some(soon)).await;
    assert!(
        outcome.failed.is_empty(),
        "the message does not wait out its visibility timeout: {outcome:?}"
    );
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES, "nothing was started");
    assert_eq!(w.baseline(&asg(DEV)).await, None);
    assert_eq!(w.op(&id).await.status, OpStatus::Running);
    let sent_on = w.task_q.take_all();
    assert_eq!(sent_on.len(), 1, "one message of the targets left");
    assert_eq!(
        read_task_body(&sent_on[0]).unwrap(),
        read_task_body(&chunk[0].body).unwrap(),
        "every target of the chunk, as it was"
    );

    let later = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let outcome = worker_batch_until(&w.hub, &deliveries(sent_on), Some(later)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert!(w.task_q.is_empty(), "nothing more was sent on");
    assert_eq!(w.op(&id).await.status, OpStatus::Succeeded);
}

#[tokio::test]
async fn on_its_last_receive_a_chunk_out_of_time_is_not_sent_on_but_given_up() {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;
    let mut chunk = deliveries(w.route_chunks().await);
    chunk[0].receive_count = w.hub.settings.task_max_receives;

    let soon = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let outcome = worker_batch_until(&w.hub, &chunk, Some(soon)).await;
    assert_eq!(
        outcome.dead_lettered,
        [chunk[0].message_id.clone()],
        "{outcome:?}"
    );
    assert!(w.task_q.is_empty(), "nothing was sent on");
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES, "nothing was started");
    let op = w.op(&id).await;
    assert_eq!(op.status, OpStatus::Failed, "{op:?}");
}

/// The router's fan-out sends one account plan per account; the worker that takes it lists the
/// account, writes its tasks, sends every chunk but the first on and works the first itself.
async fn hundred_and_fifty_asgs_planned_by_one_worker(w: &World) -> String {
    for i in 0..148 {
        w.spokes.add(
            Target {
                name: format!("dev-asg-{i}"),
                ..asg(DEV)
            },
            ASG_SIZES,
        );
    }
    let id = w.begin(true, false).await;
    let plans = w.route_plans().await;
    assert_eq!(plans.len(), 1, "one plan for the one account");
    match read_body(&plans[0]).unwrap() {
        TaskBody::Plan(plan) => {
            assert_eq!((plan.op_id.as_str(), plan.account()), (id.as_str(), DEV))
        }
        other => panic!("the router sent {other:?}"),
    }
    let outcome = worker_batch(&w.hub, &deliveries(plans)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    id
}

#[tokio::test]
async fn the_worker_that_plans_an_account_works_its_first_chunk_and_sends_the_rest_on() {
    let w = world(&[]).await;
    let id = hundred_and_fifty_asgs_planned_by_one_worker(&w).await;

    let sent = w.task_q.take_all();
    let sizes: Vec<usize> = sent
        .iter()
        .map(|c| read_task_body(c).unwrap().len())
        .collect();
    assert_eq!(sizes, [50], "only the second chunk went on");
    let op = w.op(&id).await;
    assert_eq!(
        (op.status, op.counts.succeeded, op.counts.total),
        (OpStatus::Running, 100, 150)
    );

    let outcome = worker_batch(&w.hub, &deliveries(sent)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let op = w.op(&id).await;
    assert_eq!((op.status, op.counts.succeeded), (OpStatus::Succeeded, 150));
}

#[tokio::test]
async fn an_account_plan_delivered_twice_plans_once_and_changes_each_target_once() {
    let w = world(&[]).await;
    let id = hundred_and_fifty_asgs_planned_by_one_worker(&w).await;
    let changes = w.spokes.changes().len();
    let plan = AccountPlan {
        op_id: id.clone(),
        shards: vec![Shard {
            account: DEV.to_string(),
            region: REGION.to_string(),
        }],
    };

    // The same plan again (SQS delivered it twice): the planned shard yields its open tasks.
    let outcome = worker_batch(&w.hub, &deliveries(vec![plan.to_body()])).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert!(w.drain().await.settled);
    let op = w.op(&id).await;
    assert_eq!(
        (op.status, op.counts.total, op.counts.succeeded),
        (OpStatus::Succeeded, 150, 150)
    );
    assert_eq!(
        w.spokes.changes().len(),
        changes + 50,
        "each target changed once"
    );
}

#[tokio::test]
async fn what_is_left_of_a_planned_first_chunk_goes_on_as_a_message_and_the_plan_is_done() {
    let w = world(&[]).await;
    w.spokes.set_busy(&nodegroup(DEV).key(), true);
    let id = w.begin(true, false).await;
    let plans = deliveries(w.route_plans().await);

    let outcome = worker_batch(&w.hub, &plans).await;
    assert!(
        outcome.failed.is_empty(),
        "the plan is not retried: {outcome:?}"
    );
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0), "the ASG is done");
    let sent = w.task_q.take_all();
    assert_eq!(sent.len(), 1);
    let left: Vec<String> = read_task_body(&sent[0])
        .unwrap()
        .iter()
        .map(|t| t.target.key())
        .collect();
    assert_eq!(
        left,
        [nodegroup(DEV).key()],
        "only the busy node group went on"
    );
    assert_eq!(w.op(&id).await.status, OpStatus::Running);

    w.spokes.set_busy(&nodegroup(DEV).key(), false);
    let outcome = worker_batch(&w.hub, &deliveries(sent)).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let op = w.op(&id).await;
    assert_eq!((op.status, op.counts.succeeded), (OpStatus::Succeeded, 2));
}

#[tokio::test]
async fn an_account_plan_for_an_operation_that_does_not_exist_is_rejected_and_writes_nothing() {
    let w = world(&[]).await;
    let plan = AccountPlan {
        op_id: "no-such-op".to_string(),
        shards: vec![Shard {
            account: DEV.to_string(),
            region: REGION.to_string(),
        }],
    };
    let outcome = worker_batch(&w.hub, &deliveries(vec![plan.to_body()])).await;
    assert_eq!(outcome.rejected.len(), 1, "{outcome:?}");
    assert!(
        outcome.rejected[0].1.contains("planning account")
            && outcome.rejected[0].1.contains("no-such-op"),
        "{outcome:?}"
    );
    assert!(w.task_q.is_empty());
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES);
}

/// A plan delivered again after its shard was planned (the worker that planned it stopped
/// before sending its chunks) sends the open tasks with their targets described whole: the
/// shard's marker lists their keys only, and a key carries no tags (the cluster's hold reads
/// its tags).
#[tokio::test]
async fn a_plan_delivered_again_sends_its_open_targets_described_whole() {
    let w = world(&[]).await;
    let id = w.begin(true, false).await;
    let first: Vec<Target> = w
        .route()
        .await
        .iter()
        .map(|body| serde_json::from_str::<curfew_core::operation::TaskMessage>(body).unwrap())
        .map(|m| m.target)
        .collect();
    assert_eq!(first.len(), 2);
    let listed = w.store.list_tasks(&id).await.unwrap();
    assert!(
        listed.iter().all(|t| t.target.tags.is_empty()),
        "planned by key"
    );

    let shard = Shard {
        account: DEV.into(),
        region: REGION.into(),
    };
    let again = curfew_core::service::router::plan_chunks(&w.hub, &id, &[shard])
        .await
        .unwrap();
    let mut resent: Vec<Target> = again.into_iter().flat_map(|c| c.targets).collect();
    resent.sort_by_key(Target::key);
    let mut first = first;
    first.sort_by_key(Target::key);
    assert_eq!(
        resent, first,
        "described as discovery has them, tags and all"
    );
    assert!(resent.iter().all(|t| t.tag("env") == Some("dev")));
}
