//! Operations (one wave of stop or start over a selector) and their tasks (one per target).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::account::SpokeRole;
use crate::decision::Action;
use crate::hold::HoldModes;
use crate::selector::Selector;
use crate::target::{Sizes, Target};

/// Where an operation came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OpSource {
    /// A schedule fired.
    Schedule {
        /// Schedule name.
        name: String,
        /// The fire instant.
        fire_time: DateTime<Utc>,
    },
    /// An operator asked (CLI or a direct router invocation).
    Manual,
    /// The poller's periodic drift check of the targets curfew holds asleep.
    Check,
    /// An enforced window schedule's pass in its asleep time: a stop of what it finds awake
    /// (with no override), recorded as drift.
    Enforce {
        /// Schedule name.
        name: String,
    },
}

/// Where the router reads targets from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// The inventory cache in the table, discovering live only where no cache exists yet.
    #[default]
    Cached,
    /// Describe every account and region now (and refresh the cache).
    Live,
}

/// Lifecycle of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OpStatus {
    /// Created, not yet fanned out.
    Pending,
    /// Tasks in flight.
    Running,
    /// Every task succeeded or was skipped.
    Succeeded,
    /// Some tasks (or accounts) failed, others did not.
    Partial,
    /// Every task failed.
    Failed,
}

impl OpStatus {
    /// True once nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OpStatus::Succeeded | OpStatus::Partial | OpStatus::Failed
        )
    }

    /// Upper-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Pending => "PENDING",
            OpStatus::Running => "RUNNING",
            OpStatus::Succeeded => "SUCCEEDED",
            OpStatus::Partial => "PARTIAL",
            OpStatus::Failed => "FAILED",
        }
    }
}

impl fmt::Display for OpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Task counts of an operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Tasks planned so far.
    pub total: u64,
    /// Tasks that changed their target.
    pub succeeded: u64,
    /// Tasks that failed for good.
    pub failed: u64,
    /// Tasks that left their target alone, with a reason.
    pub skipped: u64,
    /// Tasks given up after their message's last receive (their messages wait in the task
    /// dead-letter queue until `curfew dlq redrive` reopens them).
    #[serde(default)]
    pub dead_lettered: u64,
}

impl OpCounts {
    /// Tasks that reached a final state (a dead-lettered task is final until it is redriven).
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.skipped + self.dead_lettered
    }

    /// Tasks that did not do their work: failed, or given up in the dead-letter queue.
    pub fn unsuccessful(&self) -> u64 {
        self.failed + self.dead_lettered
    }
}

/// One stop or start wave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique id. For schedule fires it is derived from the schedule and fire time, which is
    /// what makes a fire idempotent (see [`Operation::schedule_id`]).
    pub id: String,
    /// Stop or start.
    pub action: Action,
    /// Which targets.
    pub selector: Selector,
    /// Who asked.
    pub source: OpSource,
    /// When it was created; orders operations on the same target (newer supersedes older).
    pub created_at: DateTime<Utc>,
    /// Plan only: change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Start sizes for targets with no baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_start: Option<Sizes>,
    /// Cache or live discovery.
    #[serde(default)]
    pub discovery: Discovery,
    /// Hold modes for its node groups, winning over their clusters' `curfew/hold` tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldModes>,
    /// A drift check: only the targets curfew holds asleep, read and compared with what their
    /// stop held, never changed (see [`crate::service::worker`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check: bool,
    /// Lifecycle state.
    pub status: OpStatus,
    /// Task counts.
    #[serde(default)]
    pub counts: OpCounts,
    /// Account/region shards planned, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards_total: Option<u64>,
    /// Shards whose tasks are written.
    #[serde(default)]
    pub shards_done: u64,
    /// Problems outside any one task, e.g. an account whose targets could not be listed.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Operation {
    /// A new PENDING operation with nothing counted yet: not a dry run, no default start
    /// sizes or hold modes, read from the inventory cache, not a drift check. Callers set what
    /// differs.
    pub fn pending(
        id: String,
        action: Action,
        selector: Selector,
        source: OpSource,
        created_at: DateTime<Utc>,
    ) -> Operation {
        Operation {
            id,
            action,
            selector,
            source,
            created_at,
            dry_run: false,
            default_start: None,
            discovery: Discovery::Cached,
            hold: None,
            status: OpStatus::Pending,
            counts: OpCounts::default(),
            shards_total: None,
            shards_done: 0,
            notes: Vec::new(),
            check: false,
        }
    }

    /// The id of the operation a schedule fire creates: the same fire always gives the same id,
    /// so a retried or duplicated poller cannot fire twice.
    pub fn schedule_id(schedule: &str, fire_time: DateTime<Utc>) -> String {
        format!("{}-{schedule}", fire_time.format("%Y%m%dT%H%MZ"))
    }

    /// The id of the drift check of the interval starting at `slot`: one per interval, however
    /// many poller invocations see it.
    pub fn check_id(slot: DateTime<Utc>) -> String {
        format!("{}-drift-check", slot.format("%Y%m%dT%H%MZ"))
    }

    /// The id of an enforced schedule's pass in the interval starting at `slot`: one per
    /// interval, however many poller invocations see it.
    pub fn enforce_id(schedule: &str, slot: DateTime<Utc>) -> String {
        format!("{}-enforce-{schedule}", slot.format("%Y%m%dT%H%MZ"))
    }

    /// A fresh id for a manual operation made at `now` (time-ordered to the minute; `unique`
    /// tells apart those of one minute, see [`crate::clock::Clock::unique`]).
    pub fn manual_id(now: DateTime<Utc>, unique: &str) -> String {
        format!("{}-m{unique}", now.format("%Y%m%dT%H%MZ"))
    }

    /// The status once every shard and task is done, or `None` while work remains. A
    /// dead-lettered task weighs as a failed one: its target was not handled.
    pub fn final_status(&self) -> Option<OpStatus> {
        let shards_done = self.shards_total.is_some_and(|t| self.shards_done >= t);
        if !shards_done || self.counts.done() < self.counts.total {
            return None;
        }
        let c = self.counts;
        Some(if c.unsuccessful() == 0 && self.notes.is_empty() {
            OpStatus::Succeeded
        } else if c.succeeded + c.skipped == 0 && c.unsuccessful() > 0 {
            OpStatus::Failed
        } else {
            OpStatus::Partial
        })
    }
}

/// Lifecycle of one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Written, not yet worked.
    Pending,
    /// The worker decided and is changing the target (sizes recorded in `planned`).
    Applying,
    /// Changed.
    Succeeded,
    /// Failed for good, with a reason.
    Failed,
    /// Left alone, with a reason.
    Skipped,
    /// Given up after its message's last receive (the message went to the task dead-letter
    /// queue), with the last reason it was retried for. Final, and counted as done, until
    /// `curfew dlq redrive` reopens it.
    DeadLettered,
}

impl TaskStatus {
    /// True once no delivery will change the task again (a dead-lettered task changes only
    /// when an operator redrives it).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded
                | TaskStatus::Failed
                | TaskStatus::Skipped
                | TaskStatus::DeadLettered
        )
    }

    /// Upper-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Applying => "APPLYING",
            TaskStatus::Succeeded => "SUCCEEDED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Skipped => "SKIPPED",
            TaskStatus::DeadLettered => "DEAD_LETTERED",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record of one target within one operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The operation.
    pub op_id: String,
    /// The target.
    pub target: Target,
    /// Lifecycle state.
    pub status: TaskStatus,
    /// Why it failed or was skipped, or what a dry run would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Sizes before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Sizes>,
    /// Sizes the worker set (or is setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Sizes>,
    /// What the task held or undid besides sizes (`processes: suspend ...`, `ca-tags: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// The spoke's id for an asynchronous update (EKS) of an APPLYING task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_id: Option<String>,
    /// For a DEAD_LETTERED task, the status it was given up in (PENDING or APPLYING): a redrive
    /// reopens it there, so a change an earlier delivery recorded is resumed, not decided
    /// afresh from sizes that change may already have set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopens_as: Option<TaskStatus>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Task {
    /// A new pending task.
    pub fn pending(op_id: &str, target: Target, now: DateTime<Utc>) -> Task {
        Task {
            op_id: op_id.to_string(),
            target,
            status: TaskStatus::Pending,
            reason: None,
            before: None,
            after: None,
            update_id: None,
            reopens_as: None,
            updated_at: now,
            steps: Default::default(),
        }
    }
}

impl Task {
    /// The PENDING task of a target its shard's plan listed by key instead of writing its task
    /// (see [`crate::ports::OperationStore::plan_shard`]): the target as its key names it, no
    /// tags or instance types, `planned_at` as its last change. `None` if `target_key` is not
    /// a target's key.
    pub fn listed(op_id: &str, target_key: &str, planned_at: DateTime<Utc>) -> Option<Task> {
        Some(Task::pending(
            op_id,
            Target::from_key(target_key)?,
            planned_at,
        ))
    }
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOutcome {
    /// Succeeded, Failed or Skipped.
    pub status: TaskStatus,
    /// Why (failed, skipped) or what (dry run).
    pub reason: Option<String>,
    /// Sizes before.
    pub before: Option<Sizes>,
    /// Sizes after.
    pub after: Option<Sizes>,
    /// What it held or undid besides sizes, one line each.
    pub steps: Vec<String>,
}

/// The worker's unit of work: one target of a [`crate::chunk::TaskChunk`] (what the router
/// sends), or a one-target message as the router sent before chunks. It carries everything the
/// worker needs, so the worker reads no operation or account record on its hot path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskMessage {
    /// The operation.
    pub op_id: String,
    /// When the operation was created (a newer operation on the same target supersedes).
    pub op_created_at: DateTime<Utc>,
    /// Stop or start.
    pub action: Action,
    /// The target.
    pub target: Target,
    /// How to reach its account.
    pub role: SpokeRole,
    /// Plan only.
    #[serde(default)]
    pub dry_run: bool,
    /// Start sizes for targets with no baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_start: Option<Sizes>,
    /// The operation's hold modes, if it names any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldModes>,
    /// A drift check (see [`Operation::check`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check: bool,
    /// An enforce pass ([`OpSource::Enforce`]): a target it finds awake is drift, recorded
    /// before it is put back to sleep.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enforce: bool,
}

/// One account and region of an operation: the unit of the router's second fan-out level.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// Spoke account.
    pub account: String,
    /// Region.
    pub region: String,
}

impl Shard {
    /// `account#region`, the prefix of every task key in this shard.
    pub fn key(&self) -> String {
        format!("{}#{}", self.account, self.region)
    }
}

/// What travels on the router queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RouterMessage {
    /// Fan an operation out into shards.
    Operation {
        /// The operation id.
        op_id: String,
    },
    /// Plan one shard's tasks and send them (what the router sent before [`Self::Account`];
    /// still read, so messages in flight across an upgrade are planned).
    Shard {
        /// The operation id.
        op_id: String,
        /// The shard.
        shard: Shard,
    },
    /// Plan the tasks of every shard of one account and send them together, in chunks that
    /// span its regions ([`crate::chunk`]).
    Account {
        /// The operation id.
        op_id: String,
        /// The account's shards, one per region.
        shards: Vec<Shard>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_same_fire_always_gets_the_same_operation_id() {
        let t = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        assert_eq!(
            Operation::schedule_id("dev-stop", t),
            "20270104T1800Z-dev-stop"
        );
        assert_eq!(
            Operation::schedule_id("dev-stop", t),
            Operation::schedule_id("dev-stop", t)
        );
    }

    fn op(counts: OpCounts, notes: Vec<String>) -> Operation {
        Operation {
            id: "x".into(),
            action: Action::Stop,
            selector: Selector::parse("kind=asg").unwrap(),
            source: OpSource::Manual,
            created_at: Utc::now(),
            dry_run: false,
            default_start: None,
            discovery: Discovery::Cached,
            status: OpStatus::Running,
            counts,
            shards_total: Some(2),
            shards_done: 2,
            notes,
            hold: None,
            check: false,
        }
    }

    #[test]
    fn an_operation_with_some_failures_ends_partial() {
        let c = OpCounts {
            total: 3,
            succeeded: 2,
            failed: 1,
            skipped: 0,
            dead_lettered: 0,
        };
        assert_eq!(op(c, vec![]).final_status(), Some(OpStatus::Partial));
    }

    #[test]
    fn an_operation_is_not_final_while_tasks_remain() {
        let c = OpCounts {
            total: 3,
            succeeded: 2,
            failed: 0,
            skipped: 0,
            dead_lettered: 0,
        };
        assert_eq!(op(c, vec![]).final_status(), None);
    }

    #[test]
    fn an_account_that_could_not_be_listed_makes_the_operation_partial() {
        let c = OpCounts {
            total: 1,
            succeeded: 1,
            failed: 0,
            skipped: 0,
            dead_lettered: 0,
        };
        assert_eq!(
            op(c, vec!["acct: denied".into()]).final_status(),
            Some(OpStatus::Partial)
        );
        assert_eq!(op(c, vec![]).final_status(), Some(OpStatus::Succeeded));
    }

    #[test]
    fn a_dead_lettered_task_weighs_as_a_failure_in_the_final_status() {
        let counts = |succeeded, dead_lettered| OpCounts {
            total: succeeded + dead_lettered,
            succeeded,
            failed: 0,
            skipped: 0,
            dead_lettered,
        };
        assert_eq!(
            op(counts(2, 1), vec![]).final_status(),
            Some(OpStatus::Partial)
        );
        assert_eq!(
            op(counts(0, 1), vec![]).final_status(),
            Some(OpStatus::Failed)
        );
        let mut waiting = counts(2, 0);
        waiting.total = 3;
        assert_eq!(
            op(waiting, vec![]).final_status(),
            None,
            "a task neither finished nor dead-lettered keeps the operation running"
        );
    }

    #[test]
    fn dead_lettered_is_stored_and_printed_as_dead_lettered() {
        assert_eq!(TaskStatus::DeadLettered.as_str(), "DEAD_LETTERED");
        assert_eq!(
            serde_json::to_value(TaskStatus::DeadLettered).unwrap(),
            serde_json::json!("DEAD_LETTERED")
        );
        assert!(TaskStatus::DeadLettered.is_final());
    }

    #[test]
    fn a_malformed_task_message_names_the_field() {
        let err =
            serde_json::from_str::<TaskMessage>(r#"{"op_id":"x","action":"stop"}"#).unwrap_err();
        assert!(err.to_string().contains("op_created_at"), "{err}");
        let err =
            serde_json::from_str::<RouterMessage>(r#"{"kind":"shard","op_id":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("shard"), "{err}");
    }
}
