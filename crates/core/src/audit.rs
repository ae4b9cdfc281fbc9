//! Checking the audit trail: that each finished operation's record agrees with its task records,
//! that every recorded change is one curfew can make, and that the saved baselines agree with
//! the last change the trail records on each target. Pure: the caller reads the trail and the
//! baselines, so every rule is tested here without I/O.
//!
//! ```
//! use curfew_core::audit::LastChanges;
//!
//! // An empty trail expects nothing of any baseline.
//! let trail = LastChanges::default();
//! assert_eq!(trail.settled().count(), 0);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::decision::Action;
use crate::operation::{OpCounts, Operation, Task, TaskStatus};
use crate::ports::Baseline;

/// One inconsistency found in the trail or the saved state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The operation the problem is about.
    pub operation: String,
    /// The target's key, when the problem is about one target (`None`: the whole operation).
    pub target: Option<String>,
    /// What is wrong, for people.
    pub problem: String,
}

impl Problem {
    fn of_operation(op: &Operation, problem: String) -> Problem {
        Problem {
            operation: op.id.clone(),
            target: None,
            problem,
        }
    }

    fn of_task(task: &Task, problem: String) -> Problem {
        Problem {
            operation: task.op_id.clone(),
            target: Some(task.target.key()),
            problem,
        }
    }
}

/// The tally of task records by final status, in the shape of the operation's counters.
pub fn tally(tasks: &[Task]) -> OpCounts {
    let count = |status| tasks.iter().filter(|t| t.status == status).count() as u64;
    OpCounts {
        total: tasks.len() as u64,
        succeeded: count(TaskStatus::Succeeded),
        failed: count(TaskStatus::Failed),
        skipped: count(TaskStatus::Skipped),
        dead_lettered: count(TaskStatus::DeadLettered),
    }
}

/// Checks one finished operation against its task records: counters, final status, no task
/// left unfinished, and the sizes of every change.
pub fn check_operation(op: &Operation, tasks: &[Task]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let stored = op.counts;
    let counted = tally(tasks);
    if stored.total != counted.total {
        problems.push(Problem::of_operation(
            op,
            format!(
                "counts say {} tasks but {} task records exist",
                stored.total, counted.total
            ),
        ));
    }
    for (name, stored, counted) in [
        ("succeeded", stored.succeeded, counted.succeeded),
        ("failed", stored.failed, counted.failed),
        ("skipped", stored.skipped, counted.skipped),
        ("dead-lettered", stored.dead_lettered, counted.dead_lettered),
    ] {
        if stored != counted {
            problems.push(Problem::of_operation(
                op,
                format!("counts say {stored} {name} but {counted} task records are {name}"),
            ));
        }
    }
    // The same derivation `finalize_operation` used to set the status.
    match op.final_status() {
        None => problems.push(Problem::of_operation(
            op,
            format!(
                "status {} but its counts say work remains ({} of {} tasks done, {} of {} shards planned)",
                op.status,
                stored.done(),
                stored.total,
                op.shards_done,
                op.shards_total.map_or_else(|| "?".to_string(), |t| t.to_string()),
            ),
        )),
        Some(derived) if derived != op.status => problems.push(Problem::of_operation(
            op,
            format!(
                "status {} but its counts and notes make it {derived}",
                op.status
            ),
        )),
        Some(_) => {}
    }
    for task in tasks {
        if task.op_id != op.id {
            problems.push(Problem::of_task(
                task,
                format!("task record filed under operation {}", op.id),
            ));
        }
        if !task.status.is_final() {
            problems.push(Problem::of_task(
                task,
                format!("task still {} in a finished operation", task.status),
            ));
        }
        problems.extend(check_change(op.action, task).map(|p| Problem::of_task(task, p)));
    }
    problems
}

/// A succeeded task's recorded change must be one its action makes: a stop ends at the
/// stopped sizes of its kind, a start never shrinks desired.
fn check_change(action: Action, task: &Task) -> Option<String> {
    if task.status != TaskStatus::Succeeded {
        return None;
    }
    let (Some(before), Some(after)) = (task.before, task.after) else {
        return Some("succeeded without recording its sizes before and after".into());
    };
    match action {
        Action::Stop => {
            let stopped = task.target.kind.stopped_sizes(before);
            (after != stopped).then(|| {
                format!(
                    "stop set {after} (min/max/desired) but a stopped {} from {before} is {stopped}",
                    task.target.kind
                )
            })
        }
        Action::Start => (after.desired < before.desired).then(|| {
            format!(
                "start shrank desired from {} to {} (a start never shrinks)",
                before.desired, after.desired
            )
        }),
    }
}

/// The last change an operation made to a target, as the trail records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastChange {
    /// The operation.
    pub op_id: String,
    /// When it was created (operations on one target are ordered by this, then by id).
    pub created_at: DateTime<Utc>,
    /// Stop or start.
    pub action: Action,
}

impl LastChange {
    fn is_older_than(&self, other: &LastChange) -> bool {
        (self.created_at, &self.op_id) < (other.created_at, &other.op_id)
    }
}

/// The latest succeeded change per target across the trail, fed one operation at a time (so
/// a trail of any length is read page by page). Dry runs change nothing and are ignored.
#[derive(Clone, Debug, Default)]
pub struct LastChanges {
    by_target: BTreeMap<String, LastChange>,
    /// Targets with a task still pending or applying, or dead-lettered: their baseline may be
    /// changing now, or be left half-way until a redrive.
    in_flight: BTreeSet<String>,
    /// When each operation seen was created, to date the operation that saved a baseline.
    created: HashMap<String, DateTime<Utc>>,
}

impl LastChanges {
    /// Records an operation's tasks (finished or not: a finished task of a running operation
    /// is as real as any).
    pub fn record(&mut self, op: &Operation, tasks: &[Task]) {
        self.created.insert(op.id.clone(), op.created_at);
        if op.dry_run {
            return;
        }
        for task in tasks {
            let key = task.target.key();
            match task.status {
                // A dead-lettered task was given up wherever its deliveries got to (a baseline
                // saved, a change begun) and a redrive resumes it: as unsettled as one in flight.
                TaskStatus::Pending | TaskStatus::Applying | TaskStatus::DeadLettered => {
                    self.in_flight.insert(key);
                }
                TaskStatus::Succeeded => {
                    let change = LastChange {
                        op_id: op.id.clone(),
                        created_at: op.created_at,
                        action: op.action,
                    };
                    match self.by_target.get(&key) {
                        Some(seen) if !seen.is_older_than(&change) => {}
                        _ => {
                            self.by_target.insert(key, change);
                        }
                    }
                }
                TaskStatus::Failed | TaskStatus::Skipped => {}
            }
        }
    }

    /// Targets whose last change can be checked against their baseline now (none of their
    /// tasks is in flight), by target key.
    pub fn settled(&self) -> impl Iterator<Item = (&str, &LastChange)> {
        self.by_target
            .iter()
            .filter(|(key, _)| !self.in_flight.contains(*key))
            .map(|(key, change)| (key.as_str(), change))
    }

    /// How many targets were left unchecked because work on them is in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .iter()
            .filter(|key| self.by_target.contains_key(*key))
            .count()
    }

    /// Checks a target's saved baseline against its last change: a stopped target needs one
    /// (or a start cannot restore it); a started target must have none left from before (or
    /// the next stop keeps those sizes instead of saving the current ones).
    pub fn check_baseline(
        &self,
        target_key: &str,
        last: &LastChange,
        baseline: Option<&Baseline>,
    ) -> Option<Problem> {
        let problem = match (last.action, baseline) {
            (Action::Stop, None) => {
                "asleep with no baseline: a start cannot restore it".to_string()
            }
            (Action::Start, Some(b)) => {
                // A baseline saved by a newer operation (a stop that failed after saving it)
                // is the current sizes, which the next stop keeps: not stale.
                let saved_by = self.created.get(&b.op_id).copied().unwrap_or(b.saved_at);
                if (saved_by, b.op_id.as_str()) > (last.created_at, last.op_id.as_str()) {
                    return None;
                }
                format!(
                    "stale baseline {} (min/max/desired) saved by {}: the start did not retire it",
                    b.sizes, b.op_id
                )
            }
            (Action::Stop, Some(_)) | (Action::Start, None) => return None,
        };
        Some(Problem {
            operation: last.op_id.clone(),
            target: Some(target_key.to_string()),
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{Discovery, OpSource, OpStatus};
    use crate::selector::Selector;
    use crate::target::{Sizes, Target, TargetKind};
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
    }

    fn target(kind: TargetKind, name: &str) -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind,
            cluster: (kind == TargetKind::Nodegroup).then(|| "dev".to_string()),
            name: name.into(),
            tags: Default::default(),
            cluster_tags: Default::default(),
            instance_types: Vec::new(),
        }
    }

    fn task(
        op_id: &str,
        target: Target,
        status: TaskStatus,
        change: Option<(Sizes, Sizes)>,
    ) -> Task {
        Task {
            op_id: op_id.into(),
            target,
            status,
            reason: None,
            before: change.map(|c| c.0),
            after: change.map(|c| c.1),
            reopens_as: None,
            updated_at: t0(),
            steps: Default::default(),
            update_id: None,
        }
    }

    /// A finished operation whose counters and status agree with `tasks`.
    fn finished(id: &str, action: Action, minutes: i64, tasks: &[Task]) -> Operation {
        let mut op = Operation {
            id: id.into(),
            action,
            selector: Selector::parse("kind=asg").unwrap(),
            source: OpSource::Manual,
            created_at: t0() + Duration::minutes(minutes),
            dry_run: false,
            default_start: None,
            discovery: Discovery::Cached,
            status: OpStatus::Running,
            counts: tally(tasks),
            shards_total: Some(1),
            shards_done: 1,
            notes: vec![],
            hold: None,
            check: false,
        };
        op.status = op.final_status().expect("all done");
        op
    }

    fn web() -> Target {
        target(TargetKind::Asg, "web")
    }

    fn stopped_web(op: &str) -> Task {
        task(
            op,
            web(),
            TaskStatus::Succeeded,
            Some((Sizes::new(2, 6, 4), Sizes::new(0, 0, 0))),
        )
    }

    fn started_web(op: &str) -> Task {
        task(
            op,
            web(),
            TaskStatus::Succeeded,
            Some((Sizes::new(0, 0, 0), Sizes::new(2, 6, 4))),
        )
    }

    fn baseline(op_id: &str, saved_at: DateTime<Utc>) -> Baseline {
        Baseline {
            target_key: web().key(),
            sizes: Sizes::new(2, 6, 4),
            op_id: op_id.into(),
            saved_at,
            held: Default::default(),
            ca_tags: Vec::new(),
            cluster_hold: false,
        }
    }

    fn problems_of(op: &Operation, tasks: &[Task]) -> Vec<String> {
        check_operation(op, tasks)
            .into_iter()
            .map(|p| p.problem)
            .collect()
    }

    #[test]
    fn a_consistent_operation_has_no_problems() {
        let ng = target(TargetKind::Nodegroup, "workers");
        let tasks = vec![
            stopped_web("a"),
            task(
                "a",
                ng,
                TaskStatus::Succeeded,
                Some((Sizes::new(1, 5, 3), Sizes::new(0, 5, 0))),
            ),
            task(
                "a",
                target(TargetKind::Asg, "db"),
                TaskStatus::Skipped,
                None,
            ),
        ];
        let op = finished("a", Action::Stop, 0, &tasks);
        assert_eq!(check_operation(&op, &tasks), vec![]);
    }

    #[test]
    fn a_counter_that_disagrees_with_the_task_records_is_a_problem() {
        let tasks = vec![stopped_web("a")];
        let mut op = finished("a", Action::Stop, 0, &tasks);
        op.counts.succeeded = 2;
        op.counts.total = 2;
        let problems = problems_of(&op, &tasks);
        assert!(
            problems.contains(&"counts say 2 succeeded but 1 task records are succeeded".into()),
            "{problems:?}"
        );
        assert!(
            problems.contains(&"counts say 2 tasks but 1 task records exist".into()),
            "{problems:?}"
        );
    }

    #[test]
    fn a_missing_task_record_is_a_problem_of_the_operation() {
        let tasks = vec![stopped_web("a")];
        let op = finished("a", Action::Stop, 0, &tasks);
        let found = check_operation(&op, &[]);
        assert!(found
            .iter()
            .any(|p| p.target.is_none() && p.problem.contains("1 tasks but 0 task records")));
    }

    #[test]
    fn a_task_still_pending_in_a_finished_operation_is_a_problem() {
        let mut tasks = vec![stopped_web("a")];
        let op = finished("a", Action::Stop, 0, &tasks);
        tasks[0].status = TaskStatus::Applying;
        let found = check_operation(&op, &tasks);
        assert!(
            found.iter().any(|p| p.target == Some(web().key())
                && p.problem == "task still APPLYING in a finished operation"),
            "{found:?}"
        );
    }

    #[test]
    fn a_status_its_counts_do_not_give_is_a_problem() {
        let tasks = vec![
            stopped_web("a"),
            task("a", target(TargetKind::Asg, "db"), TaskStatus::Failed, None),
        ];
        let mut op = finished("a", Action::Stop, 0, &tasks);
        assert_eq!(op.status, OpStatus::Partial);
        op.status = OpStatus::Succeeded;
        assert_eq!(
            problems_of(&op, &tasks),
            vec!["status SUCCEEDED but its counts and notes make it PARTIAL".to_string()]
        );
    }

    #[test]
    fn a_final_status_while_shards_remain_unplanned_is_a_problem() {
        let tasks = vec![stopped_web("a")];
        let mut op = finished("a", Action::Stop, 0, &tasks);
        op.shards_total = Some(2);
        let problems = problems_of(&op, &tasks);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("work remains"), "{problems:?}");
        assert!(problems[0].contains("1 of 2 shards"), "{problems:?}");
    }

    #[test]
    fn a_stopped_asg_must_end_at_zero_zero_zero() {
        let tasks = vec![task(
            "a",
            web(),
            TaskStatus::Succeeded,
            Some((Sizes::new(2, 6, 4), Sizes::new(0, 6, 0))),
        )];
        let op = finished("a", Action::Stop, 0, &tasks);
        assert_eq!(
            problems_of(&op, &tasks),
            vec![
                "stop set 0/6/0 (min/max/desired) but a stopped asg from 2/6/4 is 0/0/0"
                    .to_string()
            ]
        );
    }

    #[test]
    fn a_stopped_nodegroup_must_keep_its_max() {
        let ng = target(TargetKind::Nodegroup, "workers");
        let tasks = vec![task(
            "a",
            ng.clone(),
            TaskStatus::Succeeded,
            Some((Sizes::new(1, 5, 3), Sizes::new(0, 1, 0))),
        )];
        let op = finished("a", Action::Stop, 0, &tasks);
        let found = check_operation(&op, &tasks);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].target, Some(ng.key()));
        assert!(found[0].problem.contains("is 0/5/0"), "{found:?}");
    }

    #[test]
    fn a_start_that_shrinks_desired_is_a_problem() {
        let tasks = vec![task(
            "b",
            web(),
            TaskStatus::Succeeded,
            Some((Sizes::new(0, 5, 5), Sizes::new(1, 5, 2))),
        )];
        let op = finished("b", Action::Start, 0, &tasks);
        assert_eq!(
            problems_of(&op, &tasks),
            vec!["start shrank desired from 5 to 2 (a start never shrinks)".to_string()]
        );
        let grew = vec![task(
            "b",
            web(),
            TaskStatus::Succeeded,
            Some((Sizes::new(0, 5, 5), Sizes::new(1, 5, 5))),
        )];
        assert_eq!(check_operation(&op, &grew), vec![]);
    }

    #[test]
    fn a_succeeded_task_without_its_sizes_is_a_problem() {
        let tasks = vec![task("a", web(), TaskStatus::Succeeded, None)];
        let op = finished("a", Action::Stop, 0, &tasks);
        assert_eq!(
            problems_of(&op, &tasks),
            vec!["succeeded without recording its sizes before and after".to_string()]
        );
    }

    fn trail(ops: &[(&Operation, &[Task])]) -> LastChanges {
        let mut changes = LastChanges::default();
        for (op, tasks) in ops {
            changes.record(op, tasks);
        }
        changes
    }

    fn baseline_problems(changes: &LastChanges, baseline: Option<&Baseline>) -> Vec<Problem> {
        changes
            .settled()
            .filter_map(|(key, last)| changes.check_baseline(key, last, baseline))
            .collect()
    }

    #[test]
    fn a_target_stopped_last_with_its_baseline_saved_is_fine() {
        let stop = [stopped_web("a")];
        let changes = trail(&[(&finished("a", Action::Stop, 0, &stop), &stop)]);
        assert_eq!(
            baseline_problems(&changes, Some(&baseline("a", t0()))),
            vec![]
        );
    }

    #[test]
    fn a_target_stopped_last_without_a_baseline_cannot_be_restored() {
        let stop = [stopped_web("a")];
        let changes = trail(&[(&finished("a", Action::Stop, 0, &stop), &stop)]);
        assert_eq!(
            baseline_problems(&changes, None),
            vec![Problem {
                operation: "a".into(),
                target: Some(web().key()),
                problem: "asleep with no baseline: a start cannot restore it".into(),
            }]
        );
    }

    #[test]
    fn a_baseline_left_after_the_last_start_is_stale() {
        let (stop, start) = ([stopped_web("a")], [started_web("b")]);
        let changes = trail(&[
            (&finished("b", Action::Start, 10, &start), &start),
            (&finished("a", Action::Stop, 0, &stop), &stop),
        ]);
        let found = baseline_problems(&changes, Some(&baseline("a", t0())));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].operation, "b");
        assert!(
            found[0].problem.starts_with("stale baseline 2/6/4"),
            "{found:?}"
        );
        assert_eq!(baseline_problems(&changes, None), vec![]);
    }

    #[test]
    fn the_latest_operation_decides_whatever_order_the_trail_is_read_in() {
        let (stop, start) = ([stopped_web("a")], [started_web("b")]);
        let (stop_op, start_op) = (
            finished("a", Action::Stop, 20, &stop),
            finished("b", Action::Start, 10, &start),
        );
        for changes in [
            trail(&[(&stop_op, &stop), (&start_op, &start)]),
            trail(&[(&start_op, &start), (&stop_op, &stop)]),
        ] {
            let found = baseline_problems(&changes, None);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].operation, "a", "the stop is newer");
        }
    }

    #[test]
    fn a_baseline_saved_by_a_newer_failed_stop_is_not_stale() {
        let start = [started_web("b")];
        let failed_stop = [task("c", web(), TaskStatus::Failed, None)];
        let changes = trail(&[
            (&finished("c", Action::Stop, 20, &failed_stop), &failed_stop),
            (&finished("b", Action::Start, 10, &start), &start),
        ]);
        let saved = baseline("c", t0() + Duration::minutes(20));
        assert_eq!(baseline_problems(&changes, Some(&saved)), vec![]);
    }

    #[test]
    fn dry_runs_and_skipped_tasks_do_not_count_as_changes() {
        let stop = [stopped_web("a")];
        let mut dry = finished("d", Action::Start, 10, &[]);
        dry.dry_run = true;
        let dry_tasks = [started_web("d")];
        let skipped = [task("e", web(), TaskStatus::Skipped, None)];
        let changes = trail(&[
            (&finished("a", Action::Stop, 0, &stop), &stop),
            (&dry, &dry_tasks),
            (&finished("e", Action::Start, 20, &skipped), &skipped),
        ]);
        let last: Vec<_> = changes.settled().collect();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].1.op_id, "a");
    }

    #[test]
    fn a_target_with_work_in_flight_is_not_checked_against_its_baseline() {
        let stop = [stopped_web("a")];
        let mut running = finished("b", Action::Start, 10, &[]);
        running.status = OpStatus::Running;
        let pending = [task("b", web(), TaskStatus::Pending, None)];
        let changes = trail(&[
            (&finished("a", Action::Stop, 0, &stop), &stop),
            (&running, &pending),
        ]);
        assert_eq!(changes.settled().count(), 0);
        assert_eq!(changes.in_flight(), 1);
    }

    #[test]
    fn a_dead_lettered_task_is_counted_and_leaves_its_target_unchecked() {
        let given_up = task("b", web(), TaskStatus::DeadLettered, None);
        let tasks = [given_up];
        let op = finished("b", Action::Start, 10, &tasks);
        assert_eq!(op.status, OpStatus::Failed);
        assert_eq!(check_operation(&op, &tasks), vec![]);
        let mut miscounted = op.clone();
        miscounted.counts.dead_lettered = 0;
        miscounted.counts.failed = 1;
        assert!(problems_of(&miscounted, &tasks)
            .contains(&"counts say 0 dead-lettered but 1 task records are dead-lettered".into()));

        let stop = [stopped_web("a")];
        let changes = trail(&[
            (&finished("a", Action::Stop, 0, &stop), &stop),
            (&op, &tasks),
        ]);
        assert_eq!(
            changes.settled().count(),
            0,
            "a start given up half-way may have restored it or not"
        );
        assert_eq!(changes.in_flight(), 1);
    }
}
