//! Operations, shards and tasks in the state table.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use curfew_core::operation::{OpCounts, OpStatus, Operation, Shard, Task, TaskOutcome, TaskStatus};
use curfew_core::ports::{
    EndsWrite, ErrorKind, OperationPage, OperationStore, PortError, PortResult, RecordedFinish,
    ShardParts,
};
use curfew_core::ports::{Finalized, Interrupted};
use curfew_core::target::{Sizes, Target};
use curfew_core::trail::Link;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::dead_letters::REOPENS;
use super::targets::interrupted;
use super::{
    conditional, decode, encode, index_time, key, n, s, sizes_value, target_pk, DynamoStore, Item,
};
use crate::error::{classify, classify_transaction, retrying};

/// Counters live in top-level number attributes so DynamoDB can ADD to them atomically.
const COUNTERS: [&str; 5] = [
    "n_total",
    "n_succeeded",
    "n_failed",
    "n_skipped",
    "n_dead_lettered",
];

/// Task results are counted on counter stripes, not on the operation item. Every finishing
/// task's transaction updates one counter item; with hundreds of workers finishing tasks of one
/// operation, a single counter item makes their transactions fail with
/// TransactionConflictException, and every update of the operation item would also be rewritten
/// into gsi2's one "OPS" partition. Each stripe is its own partition key, so the counting writes
/// spread over partitions too. Readers sum the stripes of a running operation (one
/// BatchGetItem); finalizing copies the sums onto the operation item.
const STRIPES: u64 = 32;

pub(super) fn stripe_pk(op_id: &str, stripe: u64) -> String {
    format!("OP#{op_id}#COUNT#{stripe:02}")
}

/// The stripe a target's task result is counted on. Any stripe is correct (readers sum them
/// all); hashing the key just spreads the load.
pub(super) fn stripe_of(target_key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    target_key.hash(&mut hasher);
    hasher.finish() % STRIPES
}

pub(super) const STRIPE_SK: &str = "COUNT";

/// The sort key of an operation's fixed shard set, under the operation's own key.
const SHARD_SET_SK: &str = "SHARDS";

/// The shards stored as `account#region` strings.
fn stored_shards(item: &Item) -> PortResult<Vec<Shard>> {
    let Some(AttributeValue::L(listed)) = item.get("shards") else {
        return Err(PortError::new(
            ErrorKind::Other,
            "an operation's shard set has no shards attribute",
        ));
    };
    listed
        .iter()
        .map(|v| match v {
            AttributeValue::S(key) => key.split_once('#').map(|(account, region)| Shard {
                account: account.to_string(),
                region: region.to_string(),
            }),
            _ => None,
        })
        .map(|shard| {
            shard.ok_or_else(|| {
                PortError::new(ErrorKind::Other, "an operation's shard set is malformed")
            })
        })
        .collect()
}

pub(super) fn op_pk(id: &str) -> String {
    format!("OP#{id}")
}

/// Tasks live in one partition per shard (account and region), not under the operation's key:
/// a 100,000-target wave writes every task several times, and DynamoDB serves about 1,000
/// writes a second per partition key.
fn shard_pk(op_id: &str, shard_key: &str) -> String {
    format!("OP#{op_id}#{shard_key}")
}

/// The task partition of a target: its key starts with its shard's, `account#region#...`.
pub(super) fn task_pk(op_id: &str, target_key: &str) -> String {
    let mut parts = target_key.splitn(3, '#');
    let (account, region) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    shard_pk(op_id, &format!("{account}#{region}"))
}

pub(super) fn task_sk(target_key: &str) -> String {
    format!("TASK#{target_key}")
}

const SHARD_PREFIX: &str = "SHARD#";

/// The most bytes of target keys a shard's marker lists (see `plan_shard`): well under
/// DynamoDB's 400 KB item limit with the marker's other attributes. About 4,000 targets with
/// 60-character names; a shard with more writes a task item per target, as before listings.
pub const LISTING_BYTES: usize = 300 * 1024;

/// What a shard's marker lists of each planned target: its key after the shard's
/// `account#region#` (every key in the shard starts with it).
fn listed_key<'a>(shard: &Shard, target_key: &'a str) -> Option<&'a str> {
    target_key
        .strip_prefix(shard.account.as_str())?
        .strip_prefix('#')?
        .strip_prefix(shard.region.as_str())?
        .strip_prefix('#')
}

/// The marker `plan_shard` writes for a shard planned with `tasks`, and whether it lists their
/// targets: it does while their keys fit in `listing_bytes`, and then a task item is first
/// written when the task ends (or is given up, or marked interrupted), a write unit less per
/// target and wave than writing each task at planning. Public so the traffic counters
/// (`curfew-tests`) bill the item this writes.
pub fn shard_marker(
    op_id: &str,
    shard: &Shard,
    tasks: &[Task],
    listing_bytes: usize,
) -> (HashMap<String, AttributeValue>, bool) {
    listing_item(op_id, shard, shard_sk(shard), tasks, listing_bytes)
}

/// The item `plan_part` writes for part `part` of a shard, and whether it lists their targets:
/// a shard's marker under the part's sort key (see [`shard_marker`]). Public for the same
/// reason.
pub fn part_marker(
    op_id: &str,
    shard: &Shard,
    part: u32,
    tasks: &[Task],
    listing_bytes: usize,
) -> (HashMap<String, AttributeValue>, bool) {
    listing_item(op_id, shard, part_sk(shard, part), tasks, listing_bytes)
}

/// A shard's marker or one of its parts at `sk`: see [`shard_marker`].
fn listing_item(
    op_id: &str,
    shard: &Shard,
    sk: String,
    tasks: &[Task],
    listing_bytes: usize,
) -> (Item, bool) {
    let mut marker = Item::from([
        ("pk".to_string(), s(op_pk(op_id))),
        ("sk".to_string(), s(sk)),
        ("tasks".to_string(), n(tasks.len())),
    ]);
    // A shard with nothing to plan has nothing to list.
    let Some(planned_at) = tasks.first().map(|t| t.updated_at) else {
        return (marker, false);
    };
    let keys: Vec<String> = tasks.iter().map(|t| t.target.key()).collect();
    let listed: Option<Vec<&str>> = keys.iter().map(|k| listed_key(shard, k)).collect();
    let Some(listed) = listed.filter(|l| listing_size(l.iter().copied()) <= listing_bytes) else {
        return (marker, false);
    };
    marker.insert(
        "listed".into(),
        AttributeValue::L(listed.into_iter().map(s).collect()),
    );
    marker.insert("planned_at".into(), s(planned_at.to_rfc3339()));
    (marker, true)
}

/// A listing's size as DynamoDB counts it: each string's bytes and one byte per element, with
/// 3 for the list.
fn listing_size<'a>(listed: impl IntoIterator<Item = &'a str>) -> usize {
    3 + listed.into_iter().map(|k| k.len() + 1).sum::<usize>()
}

/// What a sort key under an operation's `SHARD#` names: a shard's marker (`None`) or its part
/// (`Some(number)`), with the shard's key. `None` for anything else.
fn shard_item(sk: &str) -> Option<(&str, Option<u32>)> {
    let rest = sk.strip_prefix(SHARD_PREFIX)?;
    match rest.split_once(PART_INFIX) {
        None => Some((rest, None)),
        Some((shard, part)) => Some((shard, Some(part.parse().ok()?))),
    }
}

/// Every task a shard's marker or part lists, PENDING (as if none were written yet), in its
/// order: none if it lists none (its tasks were written an item each, or it planned none).
fn listed_tasks(op_id: &str, marker: &Item) -> PortResult<Vec<Task>> {
    let (Some(AttributeValue::S(sk)), Some(AttributeValue::L(listed))) =
        (marker.get("sk"), marker.get("listed"))
    else {
        return Ok(Vec::new());
    };
    let shard = shard_item(sk).map_or(sk.as_str(), |(shard, _)| shard);
    let planned_at = match marker.get("planned_at") {
        Some(AttributeValue::S(at)) => DateTime::parse_from_rfc3339(at)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| PortError::with_source(ErrorKind::Other, "reading a shard's plan", e))?,
        _ => return Err(unreadable_listing(shard)),
    };
    listed
        .iter()
        .map(|entry| {
            let AttributeValue::S(rest) = entry else {
                return Err(unreadable_listing(shard));
            };
            Task::listed(op_id, &format!("{shard}#{rest}"), planned_at)
                .ok_or_else(|| unreadable_listing(shard))
        })
        .collect()
}

fn unreadable_listing(shard: &str) -> PortError {
    PortError::new(
        ErrorKind::Other,
        format!("the plan of shard {shard} lists a target it cannot name"),
    )
}

/// An operation's tasks as one list by target key: the written ones and the only listed ones
/// (on shard markers and parts alike).
fn merged(op_id: &str, markers: &[Item], written: Vec<Task>) -> PortResult<Vec<Task>> {
    let mut tasks: HashMap<String, Task> =
        written.into_iter().map(|t| (t.target.key(), t)).collect();
    for marker in markers {
        for task in listed_tasks(op_id, marker)? {
            tasks.entry(task.target.key()).or_insert(task);
        }
    }
    let mut tasks: Vec<Task> = tasks.into_values().collect();
    tasks.sort_by_cached_key(|t| t.target.key());
    Ok(tasks)
}

/// The condition of every write that moves a task on from open: the task is PENDING or
/// APPLYING, or has no item yet (its shard's plan only listed it).
pub(super) const TASK_OPEN: &str =
    "attribute_not_exists(#status) OR #status IN (:pending, :applying)";

/// The `SET` actions that name a task item's operation and target when the write creates it
/// (a task only listed until now), leaving an existing item's as they are.
pub(super) const TASK_NAMED: &str =
    "op_id = if_not_exists(op_id, :op_id), #target = if_not_exists(#target, :target)";

/// The expression names and values [`TASK_OPEN`] and [`TASK_NAMED`] use, to set first on a
/// task's update (the update adds its own after them).
pub(super) type Bindings = (HashMap<String, String>, HashMap<String, AttributeValue>);

/// See [`Bindings`].
pub(super) fn task_bindings(op_id: &str, target: &Target) -> PortResult<Bindings> {
    let target = serde_dynamo::to_attribute_value(target)
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "encoding a target", e))?;
    let names = HashMap::from([
        ("#status".to_string(), "status".to_string()),
        ("#target".to_string(), "target".to_string()),
    ]);
    let values = HashMap::from([
        (":op_id".to_string(), s(op_id)),
        (":target".to_string(), target),
        (":pending".to_string(), s(TaskStatus::Pending.as_str())),
        (":applying".to_string(), s(TaskStatus::Applying.as_str())),
    ]);
    Ok((names, values))
}

fn shard_sk(shard: &Shard) -> String {
    format!("{SHARD_PREFIX}{}", shard.key())
}

/// What follows a shard's marker's sort key in its parts': `#` sorts before every character
/// of a region's name, so a shard's parts sort right after its marker, apart from any other
/// shard's.
const PART_INFIX: &str = "#PART#";

/// A part's sort key: zero-padded so the parts sort in their order (readers go by the
/// number, not the order).
fn part_sk(shard: &Shard, part: u32) -> String {
    format!("{}{PART_INFIX}{part:05}", shard_sk(shard))
}

/// The operation item's attribute that counts a shard's parts (absent until its first): one
/// update of the item both adds a part's tasks to `n_total` and moves the count, so a part is
/// written once, in its turn, and `plan_shard` can require the count its caller read.
fn parts_attribute(shard: &Shard) -> String {
    format!("parts#{}", shard.key())
}

/// The attribute an item written for an unlisted part's task carries, naming the part, so
/// `shard_parts` tells them from the shard's last tasks (no item names them otherwise).
const TASK_PART: &str = "part";

/// The condition on the operation item's update that plans a shard's tasks after `parts`
/// parts (see [`parts_attribute`]).
fn parts_condition(parts: u32) -> &'static str {
    if parts == 0 {
        "attribute_not_exists(#parts)"
    } else {
        "#parts = :parts"
    }
}

fn op_item(op: &Operation) -> PortResult<Item> {
    let mut item = encode(op)?;
    item.remove("counts");
    let c = op.counts;
    for (name, value) in
        COUNTERS
            .iter()
            .zip([c.total, c.succeeded, c.failed, c.skipped, c.dead_lettered])
    {
        item.insert((*name).into(), n(value));
    }
    item.insert("shards_done".into(), n(op.shards_done));
    item.insert("gsi2pk".into(), s("OPS"));
    item.insert(
        "gsi2sk".into(),
        s(format!("{}#{}", index_time(op.created_at), op.id)),
    );
    Ok(item)
}

/// The cursor of a page of the operations index: the `gsi2sk` (`created_at#id`) where the page
/// ended, from which the whole LastEvaluatedKey (index and table keys) is rebuilt.
fn cursor(last_key: &Item) -> PortResult<String> {
    match last_key.get("gsi2sk") {
        Some(AttributeValue::S(sk)) => Ok(sk.clone()),
        _ => Err(PortError::new(
            ErrorKind::Other,
            "listing operations: the page's LastEvaluatedKey has no gsi2sk",
        )),
    }
}

fn start_key(cursor: &str) -> PortResult<Item> {
    // `index_time` has no `#`, so the id is everything after the first one.
    let Some((_, id)) = cursor
        .split_once('#')
        .filter(|(at, id)| !at.is_empty() && !id.is_empty())
    else {
        return Err(PortError::new(
            ErrorKind::Invalid,
            format!("operations page cursor {cursor:?} is not one a page returned"),
        ));
    };
    Ok(Item::from([
        ("pk".to_string(), s(op_pk(id))),
        ("sk".to_string(), s("OP")),
        ("gsi2pk".to_string(), s("OPS")),
        ("gsi2sk".to_string(), s(cursor)),
    ]))
}

fn decode_op(mut item: Item) -> PortResult<Operation> {
    let mut counts = [0u64; 5];
    for (slot, name) in counts.iter_mut().zip(COUNTERS) {
        if let Some(AttributeValue::N(v)) = item.remove(name) {
            *slot = v.parse().unwrap_or(0);
        }
    }
    let mut op: Operation = decode(item)?;
    op.counts = OpCounts {
        total: counts[0],
        succeeded: counts[1],
        failed: counts[2],
        skipped: counts[3],
        dead_lettered: counts[4],
    };
    Ok(op)
}

/// What a shard's planning wrote under its operation (see `DynamoStore::shard_plan`).
#[derive(Default)]
struct ShardPlan {
    /// The shard's marker, once it is planned.
    marker: Option<Item>,
    /// Its parts, by number.
    parts: Vec<(u32, Item)>,
}

impl ShardPlan {
    /// The marker and the parts, each listing targets or not.
    fn markers(self) -> Vec<Item> {
        self.marker
            .into_iter()
            .chain(self.parts.into_iter().map(|(_, part)| part))
            .collect()
    }
}

pub(super) fn build<T>(r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> PortResult<T> {
    r.map_err(|e| PortError::with_source(ErrorKind::Invalid, "building a transaction", e))
}

impl DynamoStore {
    /// A running operation's task counts are the sums of its counter stripes; a final one
    /// carries them on its own item (copied there when it was finalized).
    async fn with_task_counts(&self, mut op: Operation) -> PortResult<Operation> {
        if op.status.is_final() {
            return Ok(op);
        }
        let keys = (0..STRIPES)
            .map(|stripe| key(&stripe_pk(&op.id, stripe), STRIPE_SK))
            .collect();
        for stripe in self.batch_get(keys).await? {
            let count = |name: &str| match stripe.get(name) {
                Some(AttributeValue::N(v)) => v.parse::<u64>().unwrap_or(0),
                _ => 0,
            };
            op.counts.succeeded += count("n_succeeded");
            op.counts.failed += count("n_failed");
            op.counts.skipped += count("n_skipped");
            op.counts.dead_lettered += count("n_dead_lettered");
        }
        Ok(op)
    }

    /// An operation with its task counts, and how many times a redrive has reopened it (the
    /// `reopens` attribute: finalizing is conditioned on it, see `finalize_operation`).
    async fn read_operation(&self, id: &str) -> PortResult<Option<(Operation, Option<u64>)>> {
        let Some(item) = self.get(&op_pk(id), "OP").await? else {
            return Ok(None);
        };
        let reopens = match item.get(REOPENS) {
            Some(AttributeValue::N(v)) => v.parse().ok(),
            _ => None,
        };
        let op = self.with_task_counts(decode_op(item)?).await?;
        Ok(Some((op, reopens)))
    }

    /// Shows each open task as its target's lease says it stands (see
    /// [`OperationStore::list_tasks`]): one consistent BatchGetItem per 100 open tasks, so a
    /// finished operation's listing reads nothing more.
    async fn show_changes_in_flight(&self, tasks: &mut [Task]) -> PortResult<()> {
        let open: Vec<usize> = (0..tasks.len())
            .filter(|&i| !tasks[i].status.is_final())
            .collect();
        // BatchGetItem takes at most 100 keys.
        for batch in open.chunks(100) {
            let keys = batch
                .iter()
                .map(|&i| key(&target_pk(&tasks[i].target.key()), "LEASE"))
                .collect();
            let marks: HashMap<String, Interrupted> = self
                .batch_get(keys)
                .await?
                .iter()
                .filter_map(|item| Some((item.get("pk")?.as_s().ok()?.clone(), interrupted(item)?)))
                .collect();
            for &i in batch {
                if let Some(mark) = marks.get(&target_pk(&tasks[i].target.key())) {
                    mark.show_on(&mut tasks[i]);
                }
            }
        }
        Ok(())
    }

    /// What a shard's planning wrote under its operation, in one consistent Query: the marker
    /// sorts first and its parts right after it (see [`PART_INFIX`]). A shard whose key
    /// merely starts with this one's is left out.
    async fn shard_plan(&self, op_id: &str, shard: &Shard) -> PortResult<ShardPlan> {
        let marker_sk = shard_sk(shard);
        // `~` sorts after every digit of a part's number.
        let last = format!("{marker_sk}{PART_INFIX}~");
        let items = retrying::<Vec<Item>, _, _>(|| async {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :marker AND :last")
                .expression_attribute_values(":pk", s(op_pk(op_id)))
                .expression_attribute_values(":marker", s(marker_sk.clone()))
                .expression_attribute_values(":last", s(last.clone()))
                .consistent_read(true)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("reading a shard's plan", e))
        })
        .await?;
        let key = shard.key();
        let mut plan = ShardPlan::default();
        for item in items {
            let found = match item.get("sk") {
                Some(AttributeValue::S(sk)) => shard_item(sk)
                    .filter(|(shard, _)| *shard == key)
                    .map(|(_, part)| part),
                _ => None,
            };
            match found {
                Some(None) => plan.marker = Some(item),
                Some(Some(part)) => plan.parts.push((part, item)),
                None => {}
            }
        }
        plan.parts.sort_by_key(|(part, _)| *part);
        Ok(plan)
    }

    /// Whether a plan written after `parts` parts would be refused now: the shard is planned,
    /// or its part count is not `parts`. Read before writing a task item per task, which the
    /// refused transaction could not take back (two single-item reads, against thousands of
    /// conditional puts). A plan racing another delivery's can still leave items that one
    /// does not plan, as it could before parts.
    async fn plan_refused(&self, op_id: &str, shard: &Shard, parts: u32) -> PortResult<bool> {
        let pk = op_pk(op_id);
        let found = self
            .batch_get(vec![key(&pk, "OP"), key(&pk, &shard_sk(shard))])
            .await?;
        let attribute = parts_attribute(shard);
        let mut have = 0;
        for item in &found {
            if item.get("sk") != Some(&s("OP")) {
                return Ok(true);
            }
            if let Some(AttributeValue::N(v)) = item.get(&attribute) {
                have = v.parse::<u32>().map_err(|e| {
                    PortError::with_source(ErrorKind::Other, "reading a shard's part count", e)
                })?;
            }
        }
        Ok(have != parts)
    }

    /// A PENDING task item for each of `tasks`, for a plan too large to list, naming the part
    /// that plans them if one does ([`TASK_PART`]). Conditional puts, not BatchWriteItem: a
    /// duplicated shard message must never reset a task another worker already finished.
    async fn put_tasks(
        &self,
        op_id: &str,
        shard: &Shard,
        tasks: &[Task],
        part: Option<u32>,
    ) -> PortResult<()> {
        let puts = tasks
            .iter()
            .map(|task| {
                let mut item = encode(task)?;
                if let Some(part) = part {
                    item.insert(TASK_PART.into(), n(part));
                }
                Ok((item, task_sk(&task.target.key())))
            })
            .collect::<PortResult<Vec<_>>>()?;
        let pk = shard_pk(op_id, &shard.key());
        let writes: Vec<_> = puts
            .into_iter()
            .map(|(item, sk)| {
                let pk = pk.clone();
                async move { self.put_new(item, &pk, &sk).await }
            })
            .collect();
        stream::iter(writes)
            .buffer_unordered(25)
            .try_collect::<Vec<bool>>()
            .await?;
        Ok(())
    }

    pub(super) async fn transact(
        &self,
        what: &str,
        items: Vec<TransactWriteItem>,
    ) -> PortResult<bool> {
        let result = retrying(|| async {
            self.client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
                .map_err(|e| classify_transaction(what, e))
        })
        .await;
        conditional(result)
    }
}

/// The two items of a task's finishing transaction: the task's final state (only from PENDING
/// or APPLYING) and its count on the operation's counter stripe.
pub(super) fn finish_items(
    table: &str,
    op_id: &str,
    target: &Target,
    outcome: &TaskOutcome,
    now: DateTime<Utc>,
) -> PortResult<Vec<TransactWriteItem>> {
    let mut counts = OutcomeCounts::default();
    counts.add(outcome.status)?;
    Ok(vec![
        final_state_item(table, op_id, target, outcome, now)?,
        count_item(table, op_id, stripe_of(&target.key()), &counts)?,
    ])
}

/// Tasks' outcomes a finishing transaction counts on one counter stripe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct OutcomeCounts {
    succeeded: u64,
    failed: u64,
    skipped: u64,
}

impl OutcomeCounts {
    /// Counts one task ending `status`: a delivery's outcome (giving a task up is
    /// `dead_letter_task`'s, with its own condition on the lease).
    pub(super) fn add(&mut self, status: TaskStatus) -> PortResult<()> {
        match status {
            TaskStatus::Succeeded => self.succeeded += 1,
            TaskStatus::Failed => self.failed += 1,
            TaskStatus::Skipped => self.skipped += 1,
            other => {
                return Err(PortError::new(
                    ErrorKind::Invalid,
                    format!("{other} is not an outcome a delivery records"),
                ))
            }
        }
        Ok(())
    }
}

/// The update of a counter stripe that adds `counts` (at least one of them not zero).
pub(super) fn count_item(
    table: &str,
    op_id: &str,
    stripe: u64,
    counts: &OutcomeCounts,
) -> PortResult<TransactWriteItem> {
    let mut adds = Vec::new();
    let mut count = Update::builder()
        .table_name(table)
        .key("pk", s(stripe_pk(op_id, stripe)))
        .key("sk", s(STRIPE_SK));
    for (counter, value, n_of) in [
        ("n_succeeded", ":succeeded", counts.succeeded),
        ("n_failed", ":failed", counts.failed),
        ("n_skipped", ":skipped", counts.skipped),
    ] {
        if n_of > 0 {
            adds.push(format!("{counter} {value}"));
            count = count.expression_attribute_values(value, n(n_of));
        }
    }
    let count = count.update_expression(format!("ADD {}", adds.join(", ")));
    Ok(TransactWriteItem::builder()
        .update(build(count.build())?)
        .build())
}

/// A task's final state, written only from PENDING or APPLYING, or onto no item (a task its
/// shard's plan only listed): the condition that keeps a redelivery from finishing, counting
/// or recording it twice.
pub(super) fn final_state_item(
    table: &str,
    op_id: &str,
    target: &Target,
    outcome: &TaskOutcome,
    now: DateTime<Utc>,
) -> PortResult<TransactWriteItem> {
    let target_key = target.key();
    let (names, values) = task_bindings(op_id, target)?;
    let mut sets = vec![TASK_NAMED, "#status = :status", "updated_at = :now"];
    let mut task = Update::builder()
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .table_name(table)
        .key("pk", s(task_pk(op_id, &target_key)))
        .key("sk", s(task_sk(&target_key)))
        .condition_expression(TASK_OPEN)
        .expression_attribute_values(":status", s(outcome.status.as_str()))
        .expression_attribute_values(":now", s(now.to_rfc3339()));
    if let Some(reason) = &outcome.reason {
        sets.push("reason = :reason");
        task = task.expression_attribute_values(":reason", s(reason.clone()));
    }
    if let Some(before) = outcome.before {
        sets.push("#before = :before");
        task = task
            .expression_attribute_names("#before", "before")
            .expression_attribute_values(":before", sizes_value(before)?);
    }
    if let Some(after) = outcome.after {
        sets.push("#after = :after");
        task = task
            .expression_attribute_names("#after", "after")
            .expression_attribute_values(":after", sizes_value(after)?);
    }
    if !outcome.steps.is_empty() {
        sets.push("steps = :steps");
        task = task.expression_attribute_values(
            ":steps",
            AttributeValue::L(outcome.steps.iter().map(|step| s(step.clone())).collect()),
        );
    }
    let task = task.update_expression(format!("SET {}", sets.join(", ")));
    Ok(TransactWriteItem::builder()
        .update(build(task.build())?)
        .build())
}

#[async_trait]
impl OperationStore for DynamoStore {
    async fn create_operation(&self, op: &Operation) -> PortResult<bool> {
        self.put_new(op_item(op)?, &op_pk(&op.id), "OP").await
    }

    async fn get_operation(&self, id: &str) -> PortResult<Option<Operation>> {
        Ok(self.read_operation(id).await?.map(|(op, _)| op))
    }

    async fn list_operations_page(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> PortResult<OperationPage> {
        let limit = limit.clamp(1, 1000) as i32;
        let start = after.map(start_key).transpose()?;
        let out = retrying(|| async {
            self.client
                .query()
                .table_name(&self.table)
                .index_name("gsi2")
                .key_condition_expression("gsi2pk = :ops")
                .expression_attribute_values(":ops", s("OPS"))
                .scan_index_forward(false)
                .limit(limit)
                .set_exclusive_start_key(start.clone())
                .send()
                .await
                .map_err(|e| classify("listing operations", e))
        })
        .await?;
        // DynamoDB ends a page at `limit` items or 1 MB, whichever comes first; only a missing
        // LastEvaluatedKey means there is nothing after it.
        let next = out.last_evaluated_key.as_ref().map(cursor).transpose()?;
        let operations = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode_op)
            .collect::<PortResult<Vec<_>>>()?;
        let operations = stream::iter(operations.into_iter().map(|op| self.with_task_counts(op)))
            .buffered(8)
            .try_collect()
            .await?;
        Ok(OperationPage { operations, next })
    }

    async fn fix_shards(&self, op_id: &str, shards: &[Shard]) -> PortResult<Vec<Shard>> {
        // The first delivery's shard set wins (put-if-absent); a redelivery reads it back, so
        // accounts added or removed between deliveries never change what the operation waits for.
        let listed: Vec<AttributeValue> = shards.iter().map(|sh| s(sh.key())).collect();
        let set = Item::from([("shards".to_string(), AttributeValue::L(listed))]);
        let fixed = if self.put_new(set, &op_pk(op_id), SHARD_SET_SK).await? {
            shards.to_vec()
        } else {
            let item = self
                .get(&op_pk(op_id), SHARD_SET_SK)
                .await?
                .unwrap_or_default();
            stored_shards(&item)?
        };
        let result = retrying(|| async {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(op_pk(op_id)))
                .key("sk", s("OP"))
                .update_expression("SET shards_total = :n, #status = :running")
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(shards_total)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":n", n(fixed.len()))
                .expression_attribute_values(":running", s(OpStatus::Running.as_str()))
                .send()
                .await
                .map_err(|e| classify("recording an operation's shards", e))
        })
        .await;
        conditional(result)?;
        Ok(fixed)
    }

    async fn shard_planned(&self, op_id: &str, shard: &Shard) -> PortResult<bool> {
        Ok(self.get(&op_pk(op_id), &shard_sk(shard)).await?.is_some())
    }

    async fn plan_shard(
        &self,
        op_id: &str,
        shard: &Shard,
        parts: u32,
        tasks: &[Task],
        note: Option<String>,
    ) -> PortResult<bool> {
        let (marker, listed) = shard_marker(op_id, shard, tasks, self.listing_bytes);
        if !listed && !tasks.is_empty() {
            // Too many to list in one item: a task item each, written before the marker.
            if self.plan_refused(op_id, shard, parts).await? {
                return Ok(false);
            }
            self.put_tasks(op_id, shard, tasks, None).await?;
        }
        let marker = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(pk)");
        let marker = build(marker.build())?;
        // The part count is checked on the update the transaction makes anyway: no extra
        // item, no extra write unit for a shard planned whole.
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(op_pk(op_id)))
            .key("sk", s("OP"))
            .condition_expression(parts_condition(parts))
            .expression_attribute_names("#parts", parts_attribute(shard))
            .expression_attribute_values(":n", n(tasks.len()))
            .expression_attribute_values(":one", n(1));
        if parts > 0 {
            update = update.expression_attribute_values(":parts", n(parts));
        }
        update = match note {
            Some(note) => update
                .update_expression("ADD n_total :n, shards_done :one SET notes = list_append(if_not_exists(notes, :empty), :note)")
                .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                .expression_attribute_values(":note", AttributeValue::L(vec![s(note)])),
            None => update.update_expression("ADD n_total :n, shards_done :one"),
        };
        let items = vec![
            TransactWriteItem::builder().put(marker).build(),
            TransactWriteItem::builder()
                .update(build(update.build())?)
                .build(),
        ];
        // False: an earlier delivery planned this shard (its counts are in), or the shard has
        // parts the caller did not read.
        self.transact("planning a shard", items).await
    }

    async fn plan_part(
        &self,
        op_id: &str,
        shard: &Shard,
        part: u32,
        tasks: &[Task],
    ) -> PortResult<bool> {
        let (item, listed) = part_marker(op_id, shard, part, tasks, self.listing_bytes);
        if !listed && !tasks.is_empty() {
            if self.plan_refused(op_id, shard, part).await? {
                return Ok(false);
            }
            self.put_tasks(op_id, shard, tasks, Some(part)).await?;
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        // The count moves only from `part`, so each part is written once and in its turn; the
        // first requires the operation item, which an Update would otherwise create.
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(op_pk(op_id)))
            .key("sk", s("OP"))
            .update_expression("ADD n_total :n SET #parts = :next")
            .expression_attribute_names("#parts", parts_attribute(shard))
            .expression_attribute_values(":n", n(tasks.len()))
            .expression_attribute_values(":next", n(part + 1));
        update = if part == 0 {
            update.condition_expression("attribute_exists(pk) AND attribute_not_exists(#parts)")
        } else {
            update
                .condition_expression(parts_condition(part))
                .expression_attribute_values(":parts", n(part))
        };
        // No part after the shard's last tasks: the operation may be settled on its counts.
        let unplanned = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(op_pk(op_id)))
            .key("sk", s(shard_sk(shard)))
            .condition_expression("attribute_not_exists(pk)");
        let items = vec![
            TransactWriteItem::builder()
                .put(build(put.build())?)
                .build(),
            TransactWriteItem::builder()
                .update(build(update.build())?)
                .build(),
            TransactWriteItem::builder()
                .condition_check(build(unplanned.build())?)
                .build(),
        ];
        // False: another delivery wrote this part (or a later one), or the shard is planned.
        self.transact("planning a shard's part", items).await
    }

    async fn shard_parts(&self, op_id: &str, shard: &Shard) -> PortResult<ShardParts> {
        let tasks_pk = shard_pk(op_id, &shard.key());
        let (plan, items) = futures::try_join!(
            self.shard_plan(op_id, shard),
            self.query(&tasks_pk, "TASK#"),
        )?;
        // Items a part wrote because it could not list its tasks name it; any other item is
        // a listed task written since, or one of the shard's last tasks.
        let mut written: HashMap<String, Task> = HashMap::new();
        let mut unlisted: HashMap<u32, Vec<Task>> = HashMap::new();
        for item in items {
            let part = match item.get(TASK_PART) {
                Some(AttributeValue::N(v)) => v.parse::<u32>().ok(),
                _ => None,
            };
            let task: Task = decode(item)?;
            match part {
                Some(part) => unlisted.entry(part).or_default().push(task),
                None => {
                    written.insert(task.target.key(), task);
                }
            }
        }
        let parts = plan.parts.len() as u32;
        let mut tasks = Vec::new();
        for (number, part) in &plan.parts {
            for task in listed_tasks(op_id, part)? {
                tasks.push(written.get(&task.target.key()).cloned().unwrap_or(task));
            }
            tasks.extend(unlisted.remove(number).unwrap_or_default());
        }
        Ok(ShardParts { parts, tasks })
    }

    async fn unfinished_tasks(&self, op_id: &str, shard: &Shard) -> PortResult<Vec<Task>> {
        let tasks_pk = shard_pk(op_id, &shard.key());
        // The marker and the parts in one Query: as many requests as before parts, and the
        // same read units for a shard planned whole (one item either way).
        let (plan, items) = futures::try_join!(
            self.shard_plan(op_id, shard),
            self.query(&tasks_pk, "TASK#"),
        )?;
        let written: Vec<Task> = items.into_iter().map(decode).collect::<PortResult<_>>()?;
        let tasks = merged(op_id, &plan.markers(), written)?;
        Ok(tasks.into_iter().filter(|t| !t.status.is_final()).collect())
    }

    async fn list_tasks(&self, op_id: &str) -> PortResult<Vec<Task>> {
        // Shard markers and parts name the task partitions (a shard's parts and marker the
        // same one, queried once); their sort order (and each partition's) is the target key
        // order.
        let markers = self.query(&op_pk(op_id), SHARD_PREFIX).await?;
        let partitions: BTreeSet<String> = markers
            .iter()
            .filter_map(|marker| match marker.get("sk") {
                Some(AttributeValue::S(sk)) => {
                    shard_item(sk).map(|(shard, _)| shard_pk(op_id, shard))
                }
                _ => None,
            })
            .collect();
        let partitions: Vec<Vec<Item>> = stream::iter(partitions)
            .map(|pk| async move { self.query(&pk, "TASK#").await })
            .buffered(8)
            .try_collect()
            .await?;
        let written: Vec<Task> = partitions
            .into_iter()
            .flatten()
            .map(decode)
            .collect::<PortResult<_>>()?;
        let mut tasks = merged(op_id, &markers, written)?;
        self.show_changes_in_flight(&mut tasks).await?;
        Ok(tasks)
    }

    async fn get_task(&self, op_id: &str, target_key: &str) -> PortResult<Option<Task>> {
        self.get(&task_pk(op_id, target_key), &task_sk(target_key))
            .await?
            .map(decode)
            .transpose()
    }

    async fn mark_interrupted(
        &self,
        op_id: &str,
        target: &Target,
        before: Sizes,
        planned: Sizes,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let target_key = target.key();
        let (names, values) = task_bindings(op_id, target)?;
        let (before, planned) = (sizes_value(before)?, sizes_value(planned)?);
        let result = retrying(|| async {
            self.client
                .update_item()
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .table_name(&self.table)
                .key("pk", s(task_pk(op_id, &target_key)))
                .key("sk", s(task_sk(&target_key)))
                .update_expression(format!(
                    "SET {TASK_NAMED}, #status = :applying, #before = :before, \
                     #after = :after, updated_at = :now"
                ))
                .condition_expression(TASK_OPEN)
                .expression_attribute_names("#before", "before")
                .expression_attribute_names("#after", "after")
                .expression_attribute_values(":applying", s(TaskStatus::Applying.as_str()))
                .expression_attribute_values(":before", before.clone())
                .expression_attribute_values(":after", planned.clone())
                .expression_attribute_values(":now", s(now.to_rfc3339()))
                .send()
                .await
                .map_err(|e| classify("recording an interrupted change on its task", e))
        })
        .await;
        conditional(result)
    }

    async fn finish_task(
        &self,
        op_id: &str,
        target: &Target,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let items = finish_items(&self.table, op_id, target, outcome, now)?;
        self.transact("finishing a task", items).await
    }

    async fn finish_task_recorded(
        &self,
        op_id: &str,
        target: &Target,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
        link: &Link,
        expected: u64,
    ) -> PortResult<RecordedFinish> {
        let items = finish_items(&self.table, op_id, target, outcome, now)?;
        self.finish_and_append(items, link, expected, now).await
    }

    async fn finish_tasks(
        &self,
        writes: &[EndsWrite],
        now: DateTime<Utc>,
    ) -> PortResult<Vec<RecordedFinish>> {
        self.finish_ends(writes, now).await
    }

    async fn dead_letter_task(
        &self,
        op_id: &str,
        target: &Target,
        reason: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.dead_letter(op_id, target, reason, now).await
    }

    async fn reopen_task(
        &self,
        op_id: &str,
        target_key: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.reopen(op_id, target_key, now).await
    }

    async fn finalize_operation(
        &self,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<Option<Finalized>> {
        let Some((op, reopens)) = self.read_operation(op_id).await? else {
            return Ok(None);
        };
        let (action, created_at) = (op.action, op.created_at);
        let already = |status| Finalized {
            status,
            by_this_call: false,
            action,
            created_at,
        };
        if op.status.is_final() {
            return Ok(Some(already(op.status)));
        }
        let Some(status) = op.final_status() else {
            return Ok(None);
        };
        // The counts were summed from the stripes after the operation item was read. A redrive
        // that reopened a task since then bumped `reopens` (and took its count back): the
        // condition refuses to settle the operation on counts that no longer hold.
        let (guard, seen) = match reopens {
            Some(seen) => (format!("{REOPENS} = :reopens"), Some(seen)),
            None => (format!("attribute_not_exists({REOPENS})"), None),
        };
        let result = retrying(|| async {
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(op_pk(op_id)))
                .key("sk", s("OP"))
                .update_expression(
                    "SET #status = :final, finished_at = :now, n_succeeded = :succeeded, \
                     n_failed = :failed, n_skipped = :skipped, n_dead_lettered = :dead",
                )
                .condition_expression(format!("#status IN (:pending, :running) AND {guard}"))
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":final", s(status.as_str()))
                .expression_attribute_values(":now", s(now.to_rfc3339()))
                .expression_attribute_values(":succeeded", n(op.counts.succeeded))
                .expression_attribute_values(":failed", n(op.counts.failed))
                .expression_attribute_values(":skipped", n(op.counts.skipped))
                .expression_attribute_values(":dead", n(op.counts.dead_lettered))
                .expression_attribute_values(":pending", s(OpStatus::Pending.as_str()))
                .expression_attribute_values(":running", s(OpStatus::Running.as_str()));
            if let Some(seen) = seen {
                request = request.expression_attribute_values(":reopens", n(seen));
            }
            request
                .send()
                .await
                .map_err(|e| classify("finalizing an operation", e))
        })
        .await;
        if conditional(result)? {
            return Ok(Some(Finalized {
                status,
                by_this_call: true,
                action,
                created_at,
            }));
        }
        // Another worker settled it first, or a redrive reopened it: read what holds now.
        Ok(self
            .get_operation(op_id)
            .await?
            .map(|op| op.status)
            .filter(|status| status.is_final())
            .map(already))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;
    use curfew_core::decision::Action;
    use curfew_core::operation::{Discovery, OpSource};
    use curfew_core::selector::Selector;

    fn op(id: &str, minute: u32) -> Operation {
        Operation {
            id: id.into(),
            action: Action::Stop,
            selector: Selector::parse("kind=asg").unwrap(),
            source: OpSource::Manual,
            created_at: Utc.with_ymd_and_hms(2027, 1, 4, 18, minute, 0).unwrap(),
            dry_run: false,
            default_start: None,
            discovery: Discovery::Cached,
            status: OpStatus::Succeeded,
            counts: OpCounts::default(),
            shards_total: Some(0),
            shards_done: 0,
            notes: vec![],
            hold: None,
            check: false,
        }
    }

    #[tokio::test]
    async fn listing_operations_follows_last_evaluated_key_from_page_to_page() {
        let (newest, middle, oldest) = (op("op-c", 3), op("op-b", 2), op("op-a", 1));
        let boundary = format!("{}#op-b", index_time(middle.created_at));
        let (first_items, last_items) = (
            vec![op_item(&newest).unwrap(), op_item(&middle).unwrap()],
            vec![op_item(&oldest).unwrap()],
        );
        let first_boundary = boundary.clone();
        let first = mock!(Client::query)
            .match_requests(|r| {
                r.index_name() == Some("gsi2")
                    && r.scan_index_forward() == Some(false)
                    && r.exclusive_start_key().is_none()
            })
            .then_output(move || {
                QueryOutput::builder()
                    .set_items(Some(first_items.clone()))
                    .last_evaluated_key("pk", s("OP#op-b"))
                    .last_evaluated_key("sk", s("OP"))
                    .last_evaluated_key("gsi2pk", s("OPS"))
                    .last_evaluated_key("gsi2sk", s(first_boundary.clone()))
                    .build()
            });
        let second = mock!(Client::query)
            .match_requests(move |r| {
                let key = r.exclusive_start_key();
                key.and_then(|k| k.get("pk")) == Some(&s("OP#op-b"))
                    && key.and_then(|k| k.get("sk")) == Some(&s("OP"))
                    && key.and_then(|k| k.get("gsi2pk")) == Some(&s("OPS"))
                    && key.and_then(|k| k.get("gsi2sk")) == Some(&s(boundary.clone()))
            })
            .then_output(move || {
                QueryOutput::builder()
                    .set_items(Some(last_items.clone()))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&first, &second]);
        let store = DynamoStore::new(client, "curfew-state");
        let ids: Vec<String> = store
            .list_operations(10)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, ["op-c", "op-b", "op-a"]);
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn listing_tasks_follows_every_page_of_the_partition_and_shows_changes_in_flight() {
        let task = |name: &str| {
            let target = curfew_core::target::Target {
                account: "111111111111".into(),
                region: "eu-west-1".into(),
                kind: curfew_core::target::TargetKind::Asg,
                cluster: None,
                name: name.into(),
                tags: Default::default(),
                cluster_tags: Default::default(),
                instance_types: Vec::new(),
            };
            encode(&Task::pending("op-a", target, Utc::now())).unwrap()
        };
        let (first_items, last_items) = (vec![task("web")], vec![task("worker")]);
        let markers = mock!(Client::query)
            .match_requests(|r| {
                r.expression_attribute_values().and_then(|v| v.get(":pk")) == Some(&s("OP#op-a"))
            })
            .then_output(|| {
                QueryOutput::builder()
                    .items(key("OP#op-a", "SHARD#111111111111#eu-west-1"))
                    .build()
            });
        let first = mock!(Client::query)
            .match_requests(|r| {
                r.exclusive_start_key().is_none()
                    && r.expression_attribute_values().and_then(|v| v.get(":pk"))
                        == Some(&s("OP#op-a#111111111111#eu-west-1"))
            })
            .then_output(move || {
                QueryOutput::builder()
                    .set_items(Some(first_items.clone()))
                    .last_evaluated_key("pk", s("OP#op-a#111111111111#eu-west-1"))
                    .last_evaluated_key("sk", s("TASK#111111111111#eu-west-1#asg#web"))
                    .build()
            });
        let second = mock!(Client::query)
            .match_requests(|r| {
                r.exclusive_start_key().and_then(|k| k.get("sk"))
                    == Some(&s("TASK#111111111111#eu-west-1#asg#web"))
            })
            .then_output(move || {
                QueryOutput::builder()
                    .set_items(Some(last_items.clone()))
                    .build()
            });
        // Both tasks are open: their lease items are read in one request, and web's is marked
        // with this operation's change in flight.
        let web_lease = Item::from([
            ("pk".into(), s("TARGET#111111111111#eu-west-1#asg#web")),
            ("sk".into(), s("LEASE")),
            ("inflight_op".into(), s("op-a")),
            ("inflight_action".into(), s("stop")),
            (
                "inflight_to".into(),
                sizes_value(Sizes::new(0, 0, 0)).unwrap(),
            ),
            (
                "inflight_from".into(),
                sizes_value(Sizes::new(1, 4, 2)).unwrap(),
            ),
        ]);
        let leases = mock!(Client::batch_get_item)
            .match_requests(|r| {
                r.request_items()
                    .and_then(|items| items.get("curfew-state"))
                    .is_some_and(|k| k.keys().len() == 2 && k.consistent_read() == Some(true))
            })
            .then_output(move || {
                BatchGetItemOutput::builder()
                    .responses("curfew-state", vec![web_lease.clone()])
                    .build()
            });
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&markers, &first, &second, &leases]
        );
        let store = DynamoStore::new(client, "curfew-state");
        let tasks: Vec<(String, TaskStatus, Option<Sizes>)> = store
            .list_tasks("op-a")
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.target.name, t.status, t.after))
            .collect();
        assert_eq!(
            tasks,
            [
                (
                    "web".to_string(),
                    TaskStatus::Applying,
                    Some(Sizes::new(0, 0, 0))
                ),
                ("worker".to_string(), TaskStatus::Pending, None)
            ]
        );
        assert_eq!(leases.num_calls(), 1);
    }

    fn shard(region: &str) -> Shard {
        Shard {
            account: "111111111111".into(),
            region: region.into(),
        }
    }

    #[test]
    fn a_shards_parts_sort_right_after_its_marker_and_name_it() {
        let (ours, longer) = (shard("eu-west-1"), shard("eu-west-10"));
        let (marker, first, later) = (shard_sk(&ours), part_sk(&ours, 0), part_sk(&ours, 12));
        assert_eq!(shard_item(&marker), Some(("111111111111#eu-west-1", None)));
        assert_eq!(
            shard_item(&later),
            Some(("111111111111#eu-west-1", Some(12)))
        );
        assert_eq!(shard_item(SHARD_SET_SK), None);
        // What `shard_plan` reads: the marker and its parts, not a shard extending its key.
        let last = format!("{marker}{PART_INFIX}~");
        assert!(marker < first && first < later && later < last);
        assert!(shard_sk(&longer) > last);
    }

    #[test]
    fn a_part_lists_its_targets_as_a_shards_marker_does() {
        let at = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        let ours = shard("eu-west-1");
        let tasks: Vec<Task> = ["web", "worker"]
            .iter()
            .map(|name| {
                let key = format!("{}#asg#{name}", ours.key());
                Task::pending("op-a", Target::from_key(&key).unwrap(), at)
            })
            .collect();
        let (mut marker, listed) = shard_marker("op-a", &ours, &tasks, LISTING_BYTES);
        let (mut part, part_listed) = part_marker("op-a", &ours, 3, &tasks, LISTING_BYTES);
        assert!(listed && part_listed);
        assert_eq!(
            part.get("sk"),
            Some(&s("SHARD#111111111111#eu-west-1#PART#00003"))
        );
        assert_eq!(listed_tasks("op-a", &part).unwrap(), tasks);
        marker.remove("sk");
        part.remove("sk");
        assert_eq!(part, marker, "the same item under another key");
        assert!(!part_marker("op-a", &ours, 3, &tasks, 0).1);
    }

    #[test]
    fn a_page_cursor_no_page_returned_is_refused() {
        let err = start_key("no-hash-here").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(err.message.contains("cursor"), "{err}");
    }
}

/// Finishing a task: the counter stripe it counts on, and how a cancelled transaction is read
/// (aws-smithy-mocks).
#[cfg(test)]
mod counter_stripes {
    use super::super::test_support::cancelled;
    use super::*;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;

    fn web() -> Target {
        Target::from_key("111111111111#eu-west-1#asg#web").unwrap()
    }

    /// The keys a TransactWriteItems request updates, in order.
    fn updated_keys(items: &[TransactWriteItem]) -> Vec<(String, String)> {
        items
            .iter()
            .filter_map(|i| i.update())
            .map(|u| {
                let key = |name| match u.key().get(name) {
                    Some(AttributeValue::S(v)) => v.clone(),
                    _ => String::new(),
                };
                (key("pk"), key("sk"))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_finished_task_is_counted_on_a_counter_stripe_not_on_the_operation_item() {
        let finish = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let keys = updated_keys(r.transact_items());
                keys.len() == 2
                    && keys[0]
                        == (
                            "OP#op-1#111111111111#eu-west-1".into(),
                            "TASK#111111111111#eu-west-1#asg#web".into(),
                        )
                    && keys[1].0.starts_with("OP#op-1#COUNT#")
                    && keys[1].1 == STRIPE_SK
                    && r.transact_items()[1]
                        .update()
                        .is_some_and(|u| u.update_expression() == "ADD n_succeeded :succeeded")
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&finish]);
        let store = DynamoStore::new(client, "curfew-state");
        let outcome = TaskOutcome {
            status: TaskStatus::Succeeded,
            reason: None,
            before: Some(Sizes::new(1, 4, 2)),
            after: Some(Sizes::new(0, 0, 0)),
            steps: Default::default(),
        };
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        assert!(store
            .finish_task("op-1", &web(), &outcome, now)
            .await
            .unwrap());
        assert_eq!(finish.num_calls(), 1);
    }

    async fn finish_after(first: &'static [&'static str]) -> (PortResult<bool>, usize) {
        let refused = mock!(Client::transact_write_items).then_error(move || cancelled(first));
        let accepted = mock!(Client::transact_write_items)
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&refused, &accepted]
        );
        let store = DynamoStore::new(client, "curfew-state");
        let outcome = TaskOutcome {
            status: TaskStatus::Skipped,
            reason: Some("already stopped".into()),
            before: None,
            after: None,
            steps: Default::default(),
        };
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        let result = store.finish_task("op-1", &web(), &outcome, now).await;
        (result, refused.num_calls() + accepted.num_calls())
    }

    #[tokio::test]
    async fn a_transaction_cancelled_by_its_condition_means_the_task_was_already_final() {
        let (result, calls) = finish_after(&["ConditionalCheckFailed", "None"]).await;
        assert!(
            !result.unwrap(),
            "an already final task is not finished again"
        );
        assert_eq!(calls, 1, "a failed condition is not retried");
    }

    #[tokio::test]
    async fn a_transaction_cancelled_by_a_conflict_on_a_counter_is_retried() {
        let (result, calls) = finish_after(&["None", "TransactionConflict"]).await;
        assert!(result.unwrap());
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn a_transaction_cancelled_for_another_reason_is_an_error_naming_it() {
        let (result, calls) = finish_after(&["ValidationError", "None"]).await;
        let e = result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Other);
        assert!(e.message.contains("ValidationError"), "{}", e.message);
        assert_eq!(calls, 1);
    }

    #[test]
    fn task_keys_spread_over_every_counter_stripe() {
        let stripes: std::collections::BTreeSet<u64> = (0..2000)
            .map(|i| stripe_of(&format!("111111111111#eu-west-1#asg#group-{i}")))
            .collect();
        assert_eq!(stripes.len() as u64, STRIPES);
    }

    #[test]
    fn a_task_lives_in_its_shards_partition() {
        let shard = Shard {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
        };
        assert_eq!(
            task_pk("op-1", "111111111111#eu-west-1#nodegroup#dev/workers"),
            shard_pk("op-1", &shard.key())
        );
    }
}
