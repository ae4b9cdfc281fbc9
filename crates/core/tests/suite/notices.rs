//! The notices the services publish, over the in-memory fakes: which events send one, that
//! each is sent once however often the event is seen again, and that a notice that cannot be
//! sent changes nothing about the work.

use crate::common::*;
use chrono::Duration;
use curfew_core::notice::Notice;
use curfew_core::operation::{OpStatus, TaskMessage, TaskStatus};
use curfew_core::ports::{AccountStore, Queue};
use curfew_core::service::worker::{self, TaskStep};

fn kinds(notices: &[Notice]) -> Vec<&'static str> {
    notices.iter().map(Notice::kind).collect()
}

#[tokio::test]
async fn a_node_group_busy_past_the_bound_is_told_once_then_its_give_up_and_the_end() {
    let mut w = world(&[]).await;
    let (notices, notifier) = curfew_core::fakes::notices();
    w.hub.notices = notices;
    w.spokes.set_busy(&nodegroup(DEV).key(), true);
    let id = w.begin(true, false).await;
    // Planned now; worked once the bound has passed.
    let bodies = w.route().await;
    w.clock.advance(Duration::minutes(31));
    w.task_q.send(&bodies).await.unwrap();
    let drained = w.drain().await;
    assert_eq!(drained.dead_lettered, 1);

    let published = notifier.published();
    assert_eq!(
        kinds(&published),
        ["stuck_updating", "dead_lettered", "operation_ended"],
        "one stuck notice over five receives"
    );
    let Notice::StuckUpdating(stuck) = &published[0] else {
        unreachable!()
    };
    assert_eq!(
        (stuck.target.as_str(), stuck.minutes),
        (nodegroup(DEV).key().as_str(), 31)
    );
    assert_eq!(stuck.since, monday_evening());
    let Notice::DeadLettered(given_up) = &published[1] else {
        unreachable!()
    };
    assert_eq!(given_up.target, nodegroup(DEV).key());
    assert!(given_up
        .reason
        .starts_with("dead-lettered after 5 receives"));
    let Notice::OperationEnded(ended) = &published[2] else {
        unreachable!()
    };
    assert_eq!(
        (ended.operation_id.as_str(), ended.status),
        (id.as_str(), OpStatus::Partial)
    );
    assert_eq!((ended.counts.succeeded, ended.counts.dead_lettered), (1, 1));
    assert_eq!(ended.failures.len(), 1);
    assert_eq!(ended.failures[0].status, TaskStatus::DeadLettered);
}

#[tokio::test]
async fn a_node_group_busy_for_less_than_the_bound_sends_no_stuck_notice() {
    let mut w = world(&[]).await;
    let (notices, notifier) = curfew_core::fakes::notices();
    w.hub.notices = notices;
    w.spokes.set_busy(&nodegroup(DEV).key(), true);
    w.begin(true, false).await;
    let bodies = w.route().await;
    w.clock.advance(Duration::minutes(29));
    w.task_q.send(&bodies).await.unwrap();
    w.drain().await;
    assert_eq!(
        kinds(&notifier.published()),
        ["dead_lettered", "operation_ended"]
    );
}

#[tokio::test]
async fn a_refused_account_is_told_once_and_the_end_once_however_often_it_is_settled() {
    let mut w = world(&[OTHER]).await;
    let (notices, notifier) = curfew_core::fakes::notices();
    w.hub.notices = notices;
    w.spokes.deny(OTHER);
    let op = w.run(true).await;
    assert_eq!(op.status, OpStatus::Partial);
    let published = notifier.published();
    assert_eq!(kinds(&published), ["spoke_role_denied", "operation_ended"]);
    let Notice::SpokeRoleDenied(denied) = &published[0] else {
        unreachable!()
    };
    assert_eq!(
        (denied.account.as_str(), denied.region.as_str()),
        (OTHER, REGION)
    );
    let Notice::OperationEnded(ended) = &published[1] else {
        unreachable!()
    };
    assert_eq!(ended.notes, op.notes, "the unreachable account is a note");

    // A late duplicate of a finished task's message settles the operation again.
    let duplicate = TaskMessage {
        op_id: op.id.clone(),
        op_created_at: op.created_at,
        action: curfew_core::decision::Action::Stop,
        target: asg(DEV),
        role: w.store.get_account(DEV).await.unwrap().unwrap().role,
        dry_run: false,
        default_start: None,
        hold: None,
        check: false,
        enforce: false,
    };
    let step = worker::handle(&w.hub, &duplicate).await.unwrap();
    assert_eq!(step, TaskStep::Finished(TaskStatus::Succeeded));
    assert_eq!(notifier.published().len(), 2, "nothing sent twice");
}

#[tokio::test]
async fn a_publish_that_fails_neither_fails_nor_retries_the_work() {
    let mut w = world(&[]).await;
    let (notices, notifier) = curfew_core::fakes::notices();
    w.hub.notices = notices;
    notifier.fail_every_publish();
    let op = w.run(true).await;
    assert_eq!(op.status, OpStatus::Succeeded);
    assert_eq!(op.counts.succeeded, 2);
    assert!(notifier.published().is_empty());
    assert_eq!(w.baseline(&asg(DEV)).await, Some(ASG_SIZES));
}
