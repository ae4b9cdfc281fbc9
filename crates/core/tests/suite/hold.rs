//! Asleep means asleep (issue 8): an ASG stop also suspends the Auto Scaling processes that
//! could wake it (`ScheduledActions`, `AlarmNotification`), remembering which were running; a
//! start resumes exactly those, after the sizes are back.

use crate::common::*;
use chrono::Duration;
use curfew_core::hold::{ca_tag_keys, CaTag, HoldModes, Source, HOLD_TAG};
use curfew_core::operation::TaskStatus;
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::target::{Processes, Sizes, Target};

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

fn ca_tags_of(asg: &str) -> Vec<CaTag> {
    let mut tags: Vec<CaTag> = ca_tag_keys("dev")
        .into_iter()
        .map(|key| CaTag {
            asg: asg.into(),
            key,
            value: "true".into(),
            propagate_at_launch: false,
        })
        .collect();
    tags.sort();
    tags
}

/// A world whose node group's cluster carries `curfew/hold` = `tag` and whose node group's ASG
/// carries Cluster Autoscaler's tags.
async fn ca_world(tag: &str) -> (World, Target) {
    let w = world(&[]).await;
    let mut ng = nodegroup(DEV);
    ng.cluster_tags
        .insert(HOLD_TAG.to_string(), tag.to_string());
    w.spokes.add(ng.clone(), NG_SIZES);
    w.spokes.set_ca_tags(&ng.key(), ca_tags_of("eks-workers-1"));
    (w, ng)
}

#[tokio::test]
async fn in_ca_tags_mode_a_stop_removes_the_autoscaler_tags_and_the_wake_puts_them_back_once_active(
) {
    let (w, ng) = ca_world("ca-tags").await;
    w.run(true).await;
    assert_eq!(w.sizes(&ng), Sizes::new(0, 5, 0));
    assert!(w.spokes.ca_tags_of(&ng.key()).is_empty());
    let saved = w.store.baselines()[&ng.key()].clone();
    assert_eq!(saved.ca_tags, ca_tags_of("eks-workers-1"));

    // The wake's node group update takes a while: the tags wait for it.
    w.clock.advance(Duration::hours(12));
    w.spokes.script_next_update(&ng.key(), 2, None);
    let start = w.begin(false, false).await;
    let tasks = w.route().await;
    w.work_once(tasks).await;
    assert!(
        w.spokes.ca_tags_of(&ng.key()).is_empty(),
        "not before the node group is ACTIVE at its sizes"
    );
    assert!(w.drain().await.settled);
    assert_eq!(w.op(&start).await.counts.succeeded, 2);
    assert_eq!(w.sizes(&ng), NG_SIZES);
    assert_eq!(w.spokes.ca_tags_of(&ng.key()), ca_tags_of("eks-workers-1"));
    assert!(w.store.baselines().is_empty());
}

#[tokio::test]
async fn without_a_mode_the_autoscaler_tags_are_left_alone() {
    let (w, ng) = ca_world("none").await;
    w.run(true).await;
    assert_eq!(w.sizes(&ng), Sizes::new(0, 5, 0));
    assert_eq!(w.spokes.ca_tags_of(&ng.key()), ca_tags_of("eks-workers-1"));
    assert!(w.store.baselines()[&ng.key()].ca_tags.is_empty());
}

#[tokio::test]
async fn a_hold_flag_on_the_operation_wins_over_the_cluster_tag() {
    let (w, ng) = ca_world("none").await;
    let select = curfew_core::selector::Selector::parse("tag:env=dev").unwrap();
    let hold = HoldModes::parse("ca-tags", Source::Flag).unwrap();
    invoke(
        &w.hub,
        Invocation::Stop {
            select,
            dry_run: false,
            discovery: Default::default(),
            hold: Some(hold),
        },
    )
    .await
    .unwrap();
    assert!(w.drain().await.settled);
    assert!(w.spokes.ca_tags_of(&ng.key()).is_empty());
}

#[tokio::test]
async fn a_bad_hold_tag_fails_the_node_groups_task_naming_the_tag_and_changes_nothing() {
    let (w, ng) = ca_world("ca-tags+autoscaler").await;
    let stop = w.run(true).await;
    let task = w.task(&stop.id, &ng).await;
    assert_eq!(task.status, TaskStatus::Failed);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("cluster tag curfew/hold") && reason.contains("autoscaler"),
        "{reason}"
    );
    assert_eq!(w.sizes(&ng), NG_SIZES);
    assert!(!w.store.baselines().contains_key(&ng.key()));
    assert_eq!(
        w.sizes(&asg(DEV)),
        Sizes::new(0, 0, 0),
        "the ASG still stopped"
    );
}

#[tokio::test]
async fn autoscaler_tags_put_back_while_asleep_are_removed_again_by_the_next_stop() {
    let (w, ng) = ca_world("ca-tags").await;
    w.run(true).await;
    w.spokes.set_ca_tags(&ng.key(), ca_tags_of("eks-workers-1"));
    w.clock.advance(Duration::minutes(30));
    let again = w.run(true).await;
    let reason = w.task(&again.id, &ng).await.reason.unwrap_or_default();
    assert!(
        reason.contains("removed 2 Cluster Autoscaler tag(s) again"),
        "{reason}"
    );
    assert!(w.spokes.ca_tags_of(&ng.key()).is_empty());
}

#[tokio::test]
async fn plan_and_the_task_records_list_the_hold_steps_per_target() {
    let (w, ng) = ca_world("ca-tags").await;
    w.spokes.set_suspended(&asg(DEV).key(), ALARMS_ONLY);
    let select = curfew_core::selector::Selector::parse("tag:env=dev").unwrap();
    let plan = curfew_core::service::router::plan(
        &w.hub,
        curfew_core::decision::Action::Stop,
        &select,
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let steps_of = |key: &str| {
        plan.changes
            .iter()
            .find(|c| c.target.key() == key)
            .map(|c| c.steps.clone())
            .unwrap()
    };
    assert_eq!(
        steps_of(&asg(DEV).key()),
        vec!["processes: suspend ScheduledActions"]
    );
    assert_eq!(
        steps_of(&ng.key()),
        vec!["ca-tags: remove 2 tags from eks-workers-1"]
    );

    let stop = w.run(true).await;
    assert_eq!(
        w.task(&stop.id, &ng).await.steps,
        vec!["ca-tags: remove 2 tags from eks-workers-1"]
    );
    w.clock.advance(Duration::hours(1));
    let start = w.run(false).await;
    assert_eq!(
        w.task(&start.id, &asg(DEV)).await.steps,
        vec!["processes: resume ScheduledActions"]
    );
    assert_eq!(
        w.task(&start.id, &ng).await.steps,
        vec!["ca-tags: restore 2 tags on eks-workers-1"]
    );
}
