//! Asleep means asleep (issue 8): an ASG stop also suspends the Auto Scaling processes that
//! could wake it (`ScheduledActions`, `AlarmNotification`), remembering which were running; a
//! start resumes exactly those, after the sizes are back.

mod common;

use chrono::Duration;
use common::*;
use curfew_core::operation::TaskStatus;
use curfew_core::target::{Processes, Sizes};

const ALARMS_ONLY: Processes = Processes {
    scheduled_actions: false,
    alarm_notification: true,
};

#[tokio::test]
async fn a_stop_suspends_the_held_processes_and_a_start_resumes_exactly_those() {
    let w = world(&[]).await;
    // The owners had suspended alarm-driven scaling themselves.
    w.spokes.set_suspended(&asg(DEV).key(), ALARMS_ONLY);
    w.run(true).await;
    assert_eq!(w.sizes(&asg(DEV)), Sizes::new(0, 0, 0));
    assert_eq!(w.spokes.suspended(&asg(DEV).key()), Some(Processes::HELD));
    let saved = w.store.baselines()[&asg(DEV).key()].clone();
    assert_eq!(saved.held.names(), vec!["ScheduledActions"]);

    w.clock.advance(Duration::hours(12));
    w.run(false).await;
    assert_eq!(w.sizes(&asg(DEV)), ASG_SIZES);
    assert_eq!(
        w.spokes.suspended(&asg(DEV).key()),
        Some(ALARMS_ONLY),
        "what the owners suspended stays suspended"
    );
    assert!(w.store.baselines().is_empty());
}

#[tokio::test]
async fn a_stop_finding_its_processes_resumed_while_asleep_suspends_them_again() {
    let w = world(&[]).await;
    w.run(true).await;
    w.spokes.set_suspended(&asg(DEV).key(), Processes::NONE);
    w.clock.advance(Duration::minutes(30));
    let again = w.run(true).await;
    let task = w.task(&again.id, &asg(DEV)).await;
    assert_eq!(task.status, TaskStatus::Skipped);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("suspended ScheduledActions, AlarmNotification again"),
        "{reason}"
    );
    assert_eq!(w.spokes.suspended(&asg(DEV).key()), Some(Processes::HELD));
}

#[tokio::test]
async fn node_groups_are_stopped_as_before_with_no_process_calls() {
    let w = world(&[]).await;
    w.run(true).await;
    assert_eq!(
        w.spokes.suspended(&nodegroup(DEV).key()),
        Some(Processes::NONE)
    );
    let saved = w.store.baselines()[&nodegroup(DEV).key()].clone();
    assert!(saved.held.is_empty());
}
