//! Task chunks and account plans: what travels on the task queue. An [`AccountPlan`] asks a
//! worker to plan one account's targets (it works the first chunk and sends the rest on); a
//! chunk carries up to [`MAX_CHUNK_TARGETS`] targets of one operation in one spoke account (any
//! of its regions), so the worker invocation that receives it assumes the account's role once
//! for all of them.
//!
//! One message per target made every execution environment that met an account assume its
//! role: with 50 environments sampling one queue, 45 AssumeRole calls per account in a
//! 100,000-target wave (PERFORMANCE.md). A chunk keeps an account's targets together, so a
//! wave assumes each account's role about once.
//!
//! The worker still works, leases and records every target on its own
//! ([`TaskChunk::into_tasks`] makes one [`TaskMessage`] per target), so everything that holds for
//! one target's message holds for each target of a chunk; a chunk is retried whole, and a
//! redelivery finds its finished targets' tasks final and leaves them as they are.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::account::SpokeRole;
use crate::decision::Action;
use crate::hold::HoldModes;
use crate::operation::{OpSource, Operation, Shard, TaskMessage};
use crate::target::{Sizes, Target};

/// Targets in one chunk at most. An account with up to this many targets in an operation is
/// one message; at ten targets worked at once ([`crate::service::TARGETS_AT_ONCE`]) a full
/// chunk is ten rounds of a target's work, well inside the worker's timeout.
pub const MAX_CHUNK_TARGETS: usize = 100;

/// Chunks in one part of a long listing, unless configured otherwise
/// (`Settings::part_chunks`): ten, so a part is one SendMessageBatch of its chunks, and at
/// 1,000 targets its listing is a tenth of what DynamoDB lets one item hold.
pub const PART_CHUNKS: usize = 10;

/// A chunk's body stays under this many bytes: SQS takes at most 256 KiB per message and per
/// SendMessageBatch call, and the queue adapter packs calls by size, so a chunk of
/// tag-heavy targets is cut short rather than refused.
pub const MAX_CHUNK_BYTES: usize = 200 * 1024;

/// Up to [`MAX_CHUNK_TARGETS`] targets of one operation in one account, with everything the
/// worker needs (it reads no operation or account record on its hot path).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskChunk {
    /// The operation.
    pub op_id: String,
    /// When the operation was created (a newer operation on the same target supersedes).
    pub op_created_at: DateTime<Utc>,
    /// Stop or start.
    pub action: Action,
    /// How to reach the account every target is in.
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
    /// An enforce pass ([`OpSource::Enforce`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enforce: bool,
    /// The targets, all in the role's account.
    pub targets: Vec<Target>,
}

impl TaskChunk {
    /// An empty chunk of `op` for the account `role` reaches.
    pub fn empty(op: &Operation, role: &SpokeRole) -> Self {
        TaskChunk {
            op_id: op.id.clone(),
            op_created_at: op.created_at,
            action: op.action,
            role: role.clone(),
            dry_run: op.dry_run,
            default_start: op.default_start,
            hold: op.hold,
            check: op.check,
            enforce: matches!(op.source, OpSource::Enforce { .. }),
            targets: Vec::new(),
        }
    }

    /// One task message per target, in the chunk's order, taking the targets.
    pub fn into_tasks(mut self) -> Vec<TaskMessage> {
        let targets = std::mem::take(&mut self.targets);
        targets
            .into_iter()
            .map(|target| TaskMessage {
                op_id: self.op_id.clone(),
                op_created_at: self.op_created_at,
                action: self.action,
                target,
                role: self.role.clone(),
                dry_run: self.dry_run,
                default_start: self.default_start,
                hold: self.hold,
                check: self.check,
                enforce: self.enforce,
            })
            .collect()
    }

    /// The chunk of `tasks`, all read from one message (so of one operation and account):
    /// [`Self::into_tasks`] undone, for sending on what is left of a chunk. `None` for no tasks.
    pub fn of_tasks(tasks: Vec<TaskMessage>) -> Option<TaskChunk> {
        let first = tasks.first()?;
        let mut chunk = TaskChunk {
            op_id: first.op_id.clone(),
            op_created_at: first.op_created_at,
            action: first.action,
            role: first.role.clone(),
            dry_run: first.dry_run,
            default_start: first.default_start,
            hold: first.hold,
            check: first.check,
            enforce: first.enforce,
            targets: Vec::with_capacity(tasks.len()),
        };
        chunk.targets = tasks.into_iter().map(|task| task.target).collect();
        Some(chunk)
    }
}

/// `op`'s targets in one account cut into chunks: each holds at most `max_targets` (at most
/// [`MAX_CHUNK_TARGETS`]) targets and serializes to at most [`MAX_CHUNK_BYTES`] (a single
/// target larger than that still gets a chunk of its own; SQS is the judge of it). Order is
/// kept.
pub fn chunk_targets(
    op: &Operation,
    role: &SpokeRole,
    targets: Vec<Target>,
    max_targets: usize,
) -> Vec<TaskChunk> {
    let max_targets = max_targets.clamp(1, MAX_CHUNK_TARGETS);
    chunk_within(op, role, targets, max_targets, MAX_CHUNK_BYTES)
}

fn chunk_within(
    op: &Operation,
    role: &SpokeRole,
    targets: Vec<Target>,
    max_targets: usize,
    max_bytes: usize,
) -> Vec<TaskChunk> {
    let empty = TaskChunk::empty(op, role);
    let base = json_len(&empty);
    let mut chunks = Vec::new();
    let mut current = empty.clone();
    let mut bytes = base;
    for target in targets {
        // The target plus the comma that separates it from the one before.
        let size = json_len(&target) + 1;
        let full = current.targets.len() >= max_targets.max(1)
            || (!current.targets.is_empty() && bytes + size > max_bytes);
        if full {
            chunks.push(std::mem::replace(&mut current, empty.clone()));
            bytes = base;
        }
        bytes += size;
        current.targets.push(target);
    }
    if !current.targets.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The length of `value` as JSON, counted as it is written rather than kept.
fn json_len(value: &impl Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("task chunks serialize");
    counter.0
}

/// A request to plan one account's targets in an operation (its shards, one per region), sent
/// by the router's fan-out to the task queue: the worker that takes it lists the account,
/// writes the tasks, sends all but the first chunk on and works the first itself. The
/// environment that assumed the account's role to list it is the one that scales what it
/// found, so a wave that lists accounts live still assumes each role about once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPlan {
    /// The operation.
    pub op_id: String,
    /// The account's shards, one per region (all in one account).
    pub shards: Vec<Shard>,
}

impl AccountPlan {
    /// The account the shards are in.
    pub fn account(&self) -> &str {
        self.shards.first().map_or("", |s| s.account.as_str())
    }

    /// The body that carries it on the task queue: `{"plan": {...}}`.
    pub fn to_body(&self) -> String {
        serde_json::to_string(&PlanBody { plan: self.clone() })
            .expect("account plans serialize to JSON")
    }
}

/// How an [`AccountPlan`] travels: a key no chunk or task message has.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    plan: AccountPlan,
}

/// What a task-queue body asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskBody {
    /// Work these targets (a chunk, or one target's message).
    Targets(Vec<TaskMessage>),
    /// Plan one account's targets, then work them.
    Plan(AccountPlan),
}

/// Reads a task-queue body: a [`TaskChunk`], one target's [`TaskMessage`], or an
/// [`AccountPlan`]. The error names the field serde could not read.
pub fn read_body(body: &str) -> Result<TaskBody, String> {
    // Chunks are the hot path: only a body that may be a plan is read as JSON first.
    if !body.contains("\"plan\"") {
        return read_task_body(body).map(TaskBody::Targets);
    }
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("malformed task message: {e}"))?;
    if value.get("plan").is_none() {
        return read_task_body(body).map(TaskBody::Targets);
    }
    let PlanBody { plan } =
        serde_json::from_value(value).map_err(|e| format!("malformed account plan: {e}"))?;
    if plan.shards.is_empty() {
        return Err("malformed account plan: `plan.shards` is empty".to_string());
    }
    if let Some(other) = plan.shards.iter().find(|s| s.account != plan.account()) {
        return Err(format!(
            "malformed account plan: `plan.shards` names accounts {} and {}",
            plan.account(),
            other.account
        ));
    }
    Ok(TaskBody::Plan(plan))
}

/// Reads a task-queue body that names targets: a [`TaskChunk`], or one target's [`TaskMessage`]
/// (what the router sent before chunks; a redrive or a person may still send one). The error
/// names the field serde could not read.
pub fn read_task_body(body: &str) -> Result<Vec<TaskMessage>, String> {
    // Every body the router sends is a well-formed chunk: read it straight into its type,
    // without a JSON value in between (the worker's hot path). Anything else (a one-target
    // message, or a malformed body whose error must name the field) takes the path below.
    if let Ok(chunk) = serde_json::from_str::<TaskChunk>(body) {
        if !chunk.targets.is_empty() {
            return Ok(chunk.into_tasks());
        }
    }
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("malformed task message: {e}"))?;
    if value.get("targets").is_some() {
        let chunk: TaskChunk =
            serde_json::from_value(value).map_err(|e| format!("malformed task chunk: {e}"))?;
        if chunk.targets.is_empty() {
            return Err("malformed task chunk: `targets` is empty".to_string());
        }
        Ok(chunk.into_tasks())
    } else {
        serde_json::from_value::<TaskMessage>(value)
            .map(|m| vec![m])
            .map_err(|e| format!("malformed task message: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Selector;
    use crate::target::TargetKind;
    use std::collections::BTreeMap;

    fn op() -> Operation {
        Operation::pending(
            "op-1".to_string(),
            Action::Stop,
            Selector::parse("kind=asg").unwrap(),
            OpSource::Manual,
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, 3, 1, 19, 0, 0).unwrap(),
        )
    }

    fn role() -> SpokeRole {
        SpokeRole {
            account: "111111111111".into(),
            role_arn: "arn:aws:iam::111111111111:role/curfew".into(),
            external_id: Some("x".into()),
        }
    }

    fn target(i: usize, tags: usize) -> Target {
        Target {
            account: "111111111111".into(),
            region: if i.is_multiple_of(2) {
                "eu-west-1"
            } else {
                "us-east-1"
            }
            .into(),
            kind: TargetKind::Asg,
            cluster: None,
            name: format!("asg-{i}"),
            tags: (0..tags)
                .map(|t| (format!("key-{t}"), "v".repeat(200)))
                .collect(),
            cluster_tags: BTreeMap::new(),
            instance_types: Vec::new(),
        }
    }

    #[test]
    fn an_account_of_up_to_a_hundred_targets_is_one_chunk_across_its_regions() {
        let targets: Vec<Target> = (0..100).map(|i| target(i, 0)).collect();
        let chunks = chunk_targets(&op(), &role(), targets.clone(), MAX_CHUNK_TARGETS);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].targets, targets);
        let chunks = chunk_targets(
            &op(),
            &role(),
            (0..250).map(|i| target(i, 0)).collect(),
            MAX_CHUNK_TARGETS,
        );
        let sizes: Vec<usize> = chunks.iter().map(|c| c.targets.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let targets: Vec<Target> = (0..25).map(|i| target(i, 0)).collect();
        let sizes: Vec<usize> = chunk_targets(&op(), &role(), targets.clone(), 10)
            .iter()
            .map(|c| c.targets.len())
            .collect();
        assert_eq!(sizes, [10, 10, 5], "a smaller configured chunk");
        assert_eq!(
            chunk_targets(&op(), &role(), targets, 1000)[0]
                .targets
                .len(),
            25
        );
    }

    #[test]
    fn tag_heavy_targets_cut_a_chunk_at_its_byte_limit() {
        let targets: Vec<Target> = (0..100).map(|i| target(i, 20)).collect();
        let chunks = chunk_targets(&op(), &role(), targets.clone(), MAX_CHUNK_TARGETS);
        assert!(
            chunks.len() > 1,
            "100 targets of ~4.5 KB each exceed 200 KiB"
        );
        for chunk in &chunks {
            let body = serde_json::to_string(chunk).unwrap();
            assert!(body.len() <= MAX_CHUNK_BYTES, "{} bytes", body.len());
        }
        let again: Vec<Target> = chunks.into_iter().flat_map(|c| c.targets).collect();
        assert_eq!(again, targets, "every target once, in order");
    }

    #[test]
    fn a_target_larger_than_the_limit_still_travels_alone() {
        let chunks = chunk_within(&op(), &role(), vec![target(0, 0), target(1, 0)], 100, 10);
        assert_eq!(chunks.len(), 2);
    }

    #[test]
    fn a_chunk_body_reads_back_as_one_task_message_per_target() {
        let mut chunk = TaskChunk::empty(&op(), &role());
        chunk.targets = vec![target(0, 0), target(1, 0)];
        let tasks = read_task_body(&serde_json::to_string(&chunk).unwrap()).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[1].target, chunk.targets[1]);
        assert_eq!(tasks[1].op_id, "op-1");
        assert_eq!(tasks[1].role, role());
        let one = serde_json::to_string(&tasks[0]).unwrap();
        assert_eq!(read_task_body(&one).unwrap(), vec![tasks[0].clone()]);
    }

    #[test]
    fn the_tasks_of_a_chunk_make_that_chunk_again() {
        let mut chunk = TaskChunk::empty(&op(), &role());
        chunk.default_start = Some(Sizes {
            min: 1,
            max: 3,
            desired: 2,
        });
        chunk.check = true;
        chunk.targets = vec![target(0, 2), target(1, 0), target(2, 1)];
        assert_eq!(TaskChunk::of_tasks(chunk.clone().into_tasks()), Some(chunk));
        assert_eq!(TaskChunk::of_tasks(Vec::new()), None);
    }

    #[test]
    fn a_bad_body_names_what_is_wrong() {
        let mut chunk = serde_json::to_value(TaskChunk::empty(&op(), &role())).unwrap();
        let e = read_task_body(&chunk.to_string()).unwrap_err();
        assert!(e.contains("`targets` is empty"), "{e}");
        chunk["targets"] = serde_json::json!([{"account": "1"}]);
        let e = read_task_body(&chunk.to_string()).unwrap_err();
        assert!(
            e.contains("malformed task chunk") && e.contains("region"),
            "{e}"
        );
        let e = read_task_body("{\"op_id\": 1}").unwrap_err();
        assert!(e.starts_with("malformed task message"), "{e}");
        assert!(read_task_body("nope").is_err());
    }

    fn shard(account: &str, region: &str) -> Shard {
        Shard {
            account: account.to_string(),
            region: region.to_string(),
        }
    }

    #[test]
    fn an_account_plan_reads_back_as_a_plan_and_a_chunk_still_as_its_targets() {
        let plan = AccountPlan {
            op_id: "op-1".to_string(),
            shards: vec![
                shard("111111111111", "eu-west-1"),
                shard("111111111111", "us-east-1"),
            ],
        };
        let body = plan.to_body();
        assert!(body.starts_with("{\"plan\":"), "{body}");
        assert_eq!(read_body(&body).unwrap(), TaskBody::Plan(plan.clone()));
        assert_eq!(plan.account(), "111111111111");
        // A chunk whose target carries a tag named `plan` is still a chunk.
        let mut chunk = TaskChunk::empty(&op(), &role());
        let mut tagged = target(0, 0);
        tagged.tags.insert("plan".to_string(), "b".to_string());
        chunk.targets = vec![tagged.clone()];
        match read_body(&serde_json::to_string(&chunk).unwrap()).unwrap() {
            TaskBody::Targets(tasks) => assert_eq!(tasks[0].target, tagged),
            other => panic!("read as {other:?}"),
        }
    }

    #[test]
    fn a_bad_account_plan_names_what_is_wrong() {
        let e = read_body("{\"plan\": {\"op_id\": \"op-1\", \"shards\": []}}").unwrap_err();
        assert!(e.contains("`plan.shards` is empty"), "{e}");
        let two = AccountPlan {
            op_id: "op-1".to_string(),
            shards: vec![
                shard("111111111111", "eu-west-1"),
                shard("222222222222", "eu-west-1"),
            ],
        };
        let e = read_body(&two.to_body()).unwrap_err();
        assert!(
            e.contains("names accounts 111111111111 and 222222222222"),
            "{e}"
        );
        let e = read_body("{\"plan\": {\"op_id\": \"op-1\"}}").unwrap_err();
        assert!(
            e.starts_with("malformed account plan") && e.contains("shards"),
            "{e}"
        );
        let e = read_body("{\"plan\": {\"op_id\": \"op-1\", \"shards\": [{\"account\": \"1\"}]}}")
            .unwrap_err();
        assert!(e.contains("region"), "{e}");
    }
}
