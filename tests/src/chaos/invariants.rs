//! What must hold once a chaos run has quiesced, checked against the model of
//! [`super::scenario`]: every target is in a consistent state (awake with no baseline, or
//! asleep with its own sizes saved, or found asleep and untouched), and in the state the
//! operations that changed it ask for, newest last; no start shrank a group; every operation is
//! final with counts equal to its task records; every failure, skip and dead-lettered task
//! carries its reason, and an operation with a dead-lettered task did not succeed; dry
//! runs never acted, never took a lease; a target kept awake was never stopped; every audit
//! chain verifies and the trail holds each change a task made, once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use curfew_core::cluster::WorkloadKind;
use curfew_core::cluster_hold::DEFAULT_CA_DEPLOYMENT;
use curfew_core::decision::Action;
use curfew_core::fakes::{FakeClusters, FakeSpokes, MemoryStore};
use curfew_core::operation::{OpStatus, Operation, Task, TaskStatus};
use curfew_core::ports::{OperationStore, TargetStore};
use curfew_core::trail::{verify_chain, AuditLog};

use super::scenario::{Model, Scenario, CA_REPLICAS};

/// Every violation found, one line each.
pub async fn check(
    scenario: &Scenario,
    kept_awake_since: Option<DateTime<Utc>>,
    store: &MemoryStore,
    spokes: &FakeSpokes,
    clusters: &FakeClusters,
    started: &[String],
) -> Vec<String> {
    let mut violations = Vec::new();
    let mut operations: Vec<(Operation, Vec<Task>)> = Vec::new();
    for id in started {
        let (op, tasks) = match (store.get_operation(id).await, store.list_tasks(id).await) {
            (Ok(Some(op)), Ok(tasks)) => (op, tasks),
            _ => {
                violations.push(format!("operation {id} cannot be read back"));
                continue;
            }
        };
        check_operation(&op, &tasks, &mut violations);
        operations.push((op, tasks));
    }
    operations.sort_by(|(a, _), (b, _)| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let last_ops = store.last_ops();
    for (op, _) in operations.iter().filter(|(op, _)| op.dry_run) {
        for (target, last) in &last_ops {
            if last == &op.id {
                violations.push(format!("dry run {} took the lease of {target}", op.id));
            }
        }
    }
    for (key, t) in &scenario.targets {
        let expected = expected_state(
            scenario,
            kept_awake_since,
            key,
            &operations,
            &mut violations,
        );
        let history = || {
            let lines: Vec<String> = operations
                .iter()
                .filter_map(|(op, tasks)| {
                    let task = tasks.iter().find(|task| &task.target.key() == key)?;
                    Some(format!(
                        "{} {}{} {}: {}",
                        op.id,
                        op.action,
                        if op.dry_run { " (dry run)" } else { "" },
                        task.status,
                        task.reason.as_deref().unwrap_or("-")
                    ))
                })
                .collect();
            format!(
                "; started {:?} at {}; its tasks: [{}]",
                t.initial,
                t.sizes_in(t.initial),
                lines.join(" | ")
            )
        };
        let sizes = spokes.sizes(key);
        let suspended = spokes.suspended(key);
        let saved = store.get_baseline(key).await.ok().flatten();
        let baseline = saved
            .as_ref()
            .map(|b| (b.sizes, b.held, b.ca_tags.clone(), b.cluster_hold));
        let ca_tags = spokes.ca_tags_of(key);
        let actual = [Model::Awake, Model::Asleep, Model::FoundAsleep]
            .into_iter()
            .find(|state| {
                let expected_baseline = (*state == Model::Asleep)
                    .then(|| (t.own, t.held(), t.ca_tags.clone(), t.cluster_hold));
                sizes == Some(t.sizes_in(*state))
                    && suspended == Some(t.suspended_in(*state))
                    && ca_tags == t.ca_tags_in(*state)
                    && baseline == expected_baseline
            });
        match actual {
            None => violations.push(format!(
                "{key} is inconsistent: at {} with {} suspended, {} CA tag(s) and baseline {} \
                 (its own sizes are {}, its owners suspended {}){}",
                sizes.map(|s| s.to_string()).unwrap_or("?".into()),
                suspended.map(|s| s.to_string()).unwrap_or("?".into()),
                ca_tags.len(),
                saved
                    .map(|b| format!("{} holding {}", b.sizes, b.held))
                    .unwrap_or("none".into()),
                t.own,
                t.owner_suspended,
                history()
            )),
            Some(actual) if expected.is_some_and(|e| e != actual) => violations.push(format!(
                "{key} is {actual:?} but the newest operation that decided it asks for {:?}{}",
                expected.unwrap_or(actual),
                history()
            )),
            Some(_) => {}
        }
    }
    check_cluster_holds(scenario, store, clusters, &mut violations).await;
    check_trail(scenario, store, &operations, &mut violations).await;
    for (key, from, to) in spokes.changes() {
        let Some(t) = scenario.targets.get(&key) else {
            continue;
        };
        let is_stop = to == t.target.kind.stopped_sizes(to);
        if !is_stop && to.desired < from.desired {
            violations.push(format!("a start shrank {key} from {from} to {to}"));
        }
    }
    violations
}

/// The state the newest operation that decided the target asks for: a stop asks for asleep and
/// a start for awake, whether its task changed the target (SUCCEEDED) or found it there already
/// (SKIPPED as already stopped, no baseline, ...). Tasks that did not decide are passed over:
/// dry runs, stops kept awake by an override, failures (which leave the target as it was), and
/// superseded tasks (a newer operation acted after them). `None` when a superseded task had
/// begun scaling and nothing newer decided: either state is then correct, if consistent.
fn expected_state(
    scenario: &Scenario,
    kept_awake_since: Option<DateTime<Utc>>,
    key: &str,
    operations: &[(Operation, Vec<Task>)],
    violations: &mut Vec<String>,
) -> Option<Model> {
    let t = &scenario.targets[key];
    let tasks = operations.iter().filter_map(|(op, tasks)| {
        let task = tasks.iter().find(|task| task.target.key() == key)?;
        Some((op, task))
    });
    for (op, task) in tasks.clone() {
        if op.dry_run {
            continue;
        }
        if task.status == TaskStatus::Succeeded && t.initial == Model::FoundAsleep {
            violations.push(format!(
                "{} changed {key}, which curfew never put to sleep",
                op.id
            ));
        }
        // A stop started after the override was put reads it when its task runs.
        let kept_awake = scenario
            .kept_awake
            .as_ref()
            .zip(kept_awake_since)
            .is_some_and(|((k, _), since)| k == key && op.created_at > since);
        if task.status == TaskStatus::Succeeded && op.action == Action::Stop && kept_awake {
            violations.push(format!(
                "{} stopped {key}, kept awake by an override",
                op.id
            ));
        }
    }
    if t.initial == Model::FoundAsleep {
        return Some(Model::FoundAsleep);
    }
    for (op, task) in tasks.rev() {
        let reason = task.reason.as_deref().unwrap_or_default();
        let decided = match task.status {
            _ if op.dry_run => false,
            TaskStatus::Succeeded => true,
            TaskStatus::Skipped if reason.starts_with("superseded") => {
                if task.after.is_some() {
                    return None;
                }
                false
            }
            TaskStatus::Skipped => !reason.starts_with("kept awake"),
            _ => false,
        };
        if decided {
            return Some(match op.action {
                Action::Stop => Model::Asleep,
                Action::Start => Model::Awake,
            });
        }
    }
    Some(t.initial)
}

/// Every audit chain verifies, and the trail records each change a task made exactly once:
/// the operations recorded for a target (in its own chain or in a delivery's, see
/// `trail::delivery_chain`) are those whose task on the target SUCCEEDED with new sizes or
/// holds, or was superseded after it began scaling (not dry runs, not drift checks), however
/// often its messages were delivered and wherever its deliveries crashed.
async fn check_trail(
    scenario: &Scenario,
    store: &MemoryStore,
    operations: &[(Operation, Vec<Task>)],
    violations: &mut Vec<String>,
) {
    let Ok(heads) = store.audit_heads().await else {
        violations.push("the audit chains' heads cannot be read back".into());
        return;
    };
    // Each change by its target (an entry's subject): the operations that recorded it.
    let mut recorded_for: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for head in &heads {
        let Ok(records) = store.audit_chain(&head.chain).await else {
            violations.push(format!(
                "the audit chain {} cannot be read back",
                head.chain
            ));
            continue;
        };
        if let Err(p) = verify_chain(&head.chain, &records, Some(head), None) {
            violations.push(format!(
                "the audit chain {} is broken: {}",
                head.chain, p.problem
            ));
        }
        for entry in records.iter().filter_map(|r| r.entries()).flatten() {
            if let Some(op) = entry.operation {
                recorded_for.entry(entry.subject).or_default().push(op);
            }
        }
    }
    for key in scenario.targets.keys() {
        let mut recorded = recorded_for.remove(key).unwrap_or_default();
        recorded.sort();
        let mut changed: Vec<String> = operations
            .iter()
            .filter(|(op, _)| !op.dry_run && !op.check)
            .filter_map(|(op, tasks)| {
                let task = tasks.iter().find(|task| &task.target.key() == key)?;
                // Superseded after beginning a change: SKIPPED with the sizes it was setting.
                let superseded = task.status == TaskStatus::Skipped
                    && task
                        .reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with("superseded"));
                let began = task.status == TaskStatus::Succeeded || superseded;
                let changed = began
                    && task.after.is_some()
                    && (task.before != task.after || !task.steps.is_empty());
                changed.then(|| op.id.clone())
            })
            .collect();
        changed.sort();
        if recorded != changed {
            let tasks: Vec<String> = operations
                .iter()
                .filter_map(|(op, tasks)| {
                    let t = tasks.iter().find(|task| &task.target.key() == key)?;
                    Some(format!(
                        "{} {}: {} {:?} -> {:?} {}",
                        op.id,
                        op.action,
                        t.status,
                        t.before,
                        t.after,
                        t.reason.as_deref().unwrap_or("-")
                    ))
                })
                .collect();
            violations.push(format!(
                "the audit trail of {key} records operations {recorded:?}, but the tasks that \
                 changed it are those of {changed:?}; its tasks: [{}]",
                tasks.join(" | ")
            ));
        }
    }
}

fn check_operation(op: &Operation, tasks: &[Task], violations: &mut Vec<String>) {
    if !op.status.is_final() {
        violations.push(format!("operation {} ended {}", op.id, op.status));
    }
    let count = |status: TaskStatus| tasks.iter().filter(|t| t.status == status).count() as u64;
    let recorded = (
        tasks.len() as u64,
        count(TaskStatus::Succeeded),
        count(TaskStatus::Failed),
        count(TaskStatus::Skipped),
        count(TaskStatus::DeadLettered),
    );
    let counted = (
        op.counts.total,
        op.counts.succeeded,
        op.counts.failed,
        op.counts.skipped,
        op.counts.dead_lettered,
    );
    if recorded != counted {
        violations.push(format!(
            "operation {} counts (total, succeeded, failed, skipped, dead-lettered) {counted:?} but its tasks say {recorded:?}",
            op.id
        ));
    }
    // A task given up for the dead-letter queue did not do its work: its operation cannot
    // have succeeded (PARTIAL, or FAILED when nothing else did its work either).
    if count(TaskStatus::DeadLettered) > 0 && op.status == OpStatus::Succeeded {
        violations.push(format!(
            "operation {} ended SUCCEEDED with dead-lettered tasks",
            op.id
        ));
    }
    for task in tasks {
        let needs_reason = matches!(
            task.status,
            TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::DeadLettered
        );
        if needs_reason && task.reason.as_deref().is_none_or(str::is_empty) {
            violations.push(format!(
                "task {} of {} is {} without a reason",
                task.target.key(),
                op.id,
                task.status
            ));
        }
        if op.dry_run && task.status != TaskStatus::Skipped {
            violations.push(format!(
                "dry run {} recorded {} for {}",
                op.id,
                task.status,
                task.target.key()
            ));
        }
    }
}

/// Every cluster held by `ca-deployment`: its hold record names exactly the node groups that
/// are asleep with a baseline, and Cluster Autoscaler is at 0 while there are any, with its
/// replicas saved; with none, Cluster Autoscaler is back at its replicas and nothing is saved.
async fn check_cluster_holds(
    scenario: &Scenario,
    store: &MemoryStore,
    clusters: &FakeClusters,
    violations: &mut Vec<String>,
) {
    let holds = store.cluster_holds();
    for (cluster, (at, members)) in scenario.held_clusters() {
        let mut asleep = std::collections::BTreeSet::new();
        for key in &members {
            if store.get_baseline(key).await.ok().flatten().is_some() {
                asleep.insert(key.clone());
            }
        }
        let hold = holds.get(&cluster);
        let held = hold.map(|h| h.members.clone()).unwrap_or_default();
        let saved = hold
            .and_then(|h| h.saved.as_ref())
            .and_then(|s| s.ca_deployment.as_ref())
            .map(|d| d.replicas);
        let replicas = clusters.replicas(
            &at,
            WorkloadKind::Deployment,
            DEFAULT_CA_DEPLOYMENT.0,
            DEFAULT_CA_DEPLOYMENT.1,
        );
        let expected = if asleep.is_empty() {
            (Some(CA_REPLICAS), None)
        } else {
            (Some(0), Some(CA_REPLICAS))
        };
        if held != asleep || (replicas, saved) != expected {
            violations.push(format!(
                "cluster {cluster}: hold members {held:?} but asleep {asleep:?}; Cluster \
                 Autoscaler at {replicas:?} with {saved:?} saved (expected {expected:?})"
            ));
        }
    }
}
