//! A delivery's tasks finished together ([`OperationStore::finish_tasks`]): each task's final
//! state, and the record and head of the change it made, in transactions of up to
//! [`TRANSACTION_ITEMS`] items that count their tasks on one counter stripe per operation and
//! index their records by day in one entry (`trail::index_item`).
//!
//! A task finished alone pays a counter stripe's write for itself: 2 of its transaction's write
//! units, as many as its final state. A delivery's transaction of 32 changed targets pays it
//! once for all of them.
//!
//! [`OperationStore::finish_tasks`]: curfew_core::ports::OperationStore::finish_tasks

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use curfew_core::ports::{ErrorKind, PortError, PortResult, RecordedFinish, TaskEnd};
use curfew_core::trail::AuditRecord;

use super::operations::{count_item, final_state_item, stripe_of, OutcomeCounts};
use super::trail::index_item;
use super::DynamoStore;

/// DynamoDB's limit on the items of one TransactWriteItems.
pub const TRANSACTION_ITEMS: usize = 100;

/// The items `end` writes: its task's final state and, for a change, its record and its
/// chain's head.
pub fn end_items(end: &TaskEnd) -> usize {
    1 + 2 * usize::from(end.record.is_some())
}

/// The items of a transaction of `members` (indexes into `ends`): theirs, one counter stripe
/// for each operation among them, and the records' index entry if any records.
pub fn transaction_items(ends: &[TaskEnd], members: &[usize]) -> usize {
    let operations: BTreeSet<&str> = members.iter().map(|&i| ends[i].op_id.as_str()).collect();
    let recorded = members.iter().any(|&i| ends[i].record.is_some());
    members.iter().map(|&i| end_items(&ends[i])).sum::<usize>()
        + operations.len()
        + usize::from(recorded)
}

/// The by-day index entry of the records `members` append in one transaction, stamped `at`
/// (none without records): what [`DynamoStore::finish_tasks`] writes, for the traffic
/// counters to size.
///
/// [`DynamoStore::finish_tasks`]: curfew_core::ports::OperationStore::finish_tasks
pub fn records_index(
    ends: &[TaskEnd],
    members: &[usize],
    at: DateTime<Utc>,
) -> Option<HashMap<String, AttributeValue>> {
    let records: Vec<&AuditRecord> = members
        .iter()
        .filter_map(|&i| ends[i].record.as_ref().map(|(link, _)| &link.record))
        .collect();
    index_item(&records, at)
}

/// The transactions `ends` are written in, each as the indexes of its ends, in order. A
/// transaction takes ends while they fit in [`TRANSACTION_ITEMS`] with their counter stripes,
/// and never two ends of one target (a transaction may name an item only once: they would
/// share the chain's head).
pub fn transactions(ends: &[TaskEnd]) -> Vec<Vec<usize>> {
    let mut all = Vec::new();
    let mut members: Vec<usize> = Vec::new();
    let mut items = 0;
    let mut operations: BTreeSet<&str> = BTreeSet::new();
    let mut targets: BTreeSet<String> = BTreeSet::new();
    let mut recorded = false;
    for (i, end) in ends.iter().enumerate() {
        let count = usize::from(!operations.contains(end.op_id.as_str()));
        // The records' one index entry, with the first record.
        let index = usize::from(!recorded && end.record.is_some());
        let fits = items + end_items(end) + count + index <= TRANSACTION_ITEMS;
        let target = end.target.key();
        if !members.is_empty() && (!fits || targets.contains(&target)) {
            all.push(std::mem::take(&mut members));
            (items, operations, targets) = (0, BTreeSet::new(), BTreeSet::new());
            recorded = false;
        }
        let index = usize::from(!recorded && end.record.is_some());
        recorded |= end.record.is_some();
        items += end_items(end) + index + usize::from(operations.insert(end.op_id.as_str()));
        targets.insert(target);
        members.push(i);
    }
    if !members.is_empty() {
        all.push(members);
    }
    all
}

/// What an item of a finishing transaction is.
#[derive(Clone, Copy)]
enum Part {
    /// End `.0`'s final state: its condition failing means the task was final already.
    FinalState(usize),
    /// End `.0`'s record or head: its condition failing means the head moved.
    Append(usize),
    /// The records' index entry (no condition).
    Index,
    /// A counter stripe (no condition).
    Count,
}

impl DynamoStore {
    /// [`OperationStore::finish_tasks`]: each transaction of [`transactions`] is sent; one
    /// cancelled by its conditions is sent again without the ends whose conditions failed.
    ///
    /// [`OperationStore::finish_tasks`]: curfew_core::ports::OperationStore::finish_tasks
    pub(super) async fn finish_ends(
        &self,
        ends: &[TaskEnd],
        now: DateTime<Utc>,
    ) -> PortResult<Vec<RecordedFinish>> {
        let mut results = vec![RecordedFinish::Finished; ends.len()];
        for mut left in transactions(ends) {
            while !left.is_empty() {
                let (items, parts) = self.finishing_items(ends, &left, now)?;
                let Some(failed) = self
                    .transact_conditioned("finishing a delivery's tasks", items)
                    .await?
                else {
                    break;
                };
                // The task's own condition decides first, as in `finish_and_append`.
                let mut refused: BTreeMap<usize, RecordedFinish> = BTreeMap::new();
                for (part, _) in parts.iter().zip(&failed).filter(|(_, f)| **f) {
                    match *part {
                        Part::FinalState(end) => {
                            refused.insert(end, RecordedFinish::AlreadyFinal);
                        }
                        Part::Append(end) => {
                            refused.entry(end).or_insert(RecordedFinish::HeadMoved);
                        }
                        Part::Index | Part::Count => {}
                    }
                }
                for (&end, &result) in &refused {
                    results[end] = result;
                }
                left.retain(|end| !refused.contains_key(end));
            }
        }
        Ok(results)
    }

    /// The items of one finishing transaction of `members`, and what each one is.
    fn finishing_items(
        &self,
        ends: &[TaskEnd],
        members: &[usize],
        now: DateTime<Utc>,
    ) -> PortResult<(Vec<TransactWriteItem>, Vec<Part>)> {
        let mut items = Vec::new();
        let mut parts = Vec::new();
        // Each operation's counts go on the stripe of its first task here: any stripe is
        // correct, and hashing spreads the load.
        let mut counts: BTreeMap<&str, (u64, OutcomeCounts)> = BTreeMap::new();
        for &i in members {
            let end = &ends[i];
            items.push(final_state_item(
                &self.table,
                &end.op_id,
                &end.target,
                &end.outcome,
                now,
            )?);
            parts.push(Part::FinalState(i));
            if let Some((link, expected)) = &end.record {
                items.extend(self.append_puts(link, *expected, now, false)?);
                parts.extend([Part::Append(i), Part::Append(i)]);
            }
            counts
                .entry(end.op_id.as_str())
                .or_insert_with(|| (stripe_of(&end.target.key()), OutcomeCounts::default()))
                .1
                .add(end.outcome.status)?;
        }
        for (op_id, (stripe, counted)) in &counts {
            items.push(count_item(&self.table, op_id, *stripe, counted)?);
            parts.push(Part::Count);
        }
        if let Some(index) = records_index(ends, members, now) {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(index))
                .build()
                .map_err(|e| {
                    PortError::with_source(ErrorKind::Invalid, "building an audit index entry", e)
                })?;
            items.push(TransactWriteItem::builder().put(put).build());
            parts.push(Part::Index);
        }
        Ok((items, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::cancelled;
    use super::*;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;
    use curfew_core::operation::{TaskOutcome, TaskStatus};
    use curfew_core::target::Sizes;
    use curfew_core::trail::{self, AuditEntry, ChangeKind, Link};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
    }

    /// A task of `op` on target `n`; a stop that changed its target when `changed`.
    fn end(op: &str, n: usize, changed: bool) -> TaskEnd {
        let target_key = format!("111111111111#eu-west-1#asg#web-{n}");
        let outcome = TaskOutcome {
            status: if changed {
                TaskStatus::Succeeded
            } else {
                TaskStatus::Skipped
            },
            reason: None,
            before: Some(Sizes::new(1, 4, 2)),
            after: Some(Sizes::new(0, 0, 0)),
            steps: Default::default(),
        };
        let record = changed.then(|| {
            let entry = AuditEntry::new(ChangeKind::TargetStopped, &target_key, "worker", now());
            let chain = trail::target_chain(&target_key);
            (Link::after(None, &chain, op, &entry, None), 0)
        });
        TaskEnd {
            op_id: op.into(),
            target: curfew_core::target::Target::from_key(&target_key).unwrap(),
            outcome,
            record,
        }
    }

    #[test]
    fn a_delivery_of_changes_fills_transactions_of_a_hundred_items_with_one_count_each() {
        let ends: Vec<TaskEnd> = (0..40).map(|n| end("op-1", n, true)).collect();
        let packed = transactions(&ends);
        let sizes: Vec<usize> = packed.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [32, 8],
            "32 changes of 3 items, their count and their records' index entry make 98: a \
             33rd would need 101"
        );
        assert_eq!(transaction_items(&ends, &packed[0]), 98);
        assert_eq!(transaction_items(&ends, &packed[1]), 26);
        let skips: Vec<TaskEnd> = (0..150).map(|n| end("op-1", n, false)).collect();
        let sizes: Vec<usize> = transactions(&skips).iter().map(Vec::len).collect();
        assert_eq!(sizes, [99, 51]);
    }

    #[test]
    fn each_operation_is_counted_once_a_transaction_and_a_target_is_never_named_twice_in_one() {
        let ends = vec![
            end("op-1", 1, true),
            end("op-2", 2, false),
            end("op-1", 3, false),
        ];
        assert_eq!(transactions(&ends), [vec![0, 1, 2]]);
        assert_eq!(transaction_items(&ends, &[0, 1, 2]), 3 + 1 + 1 + 2 + 1);
        // The same target for two operations: its chain's head would be named twice.
        let ends = vec![end("op-1", 1, true), end("op-2", 1, true)];
        assert_eq!(transactions(&ends), [vec![0], vec![1]]);
    }

    #[tokio::test]
    async fn a_transaction_cancelled_by_some_ends_is_written_again_without_them() {
        // Items: end 0 (task, record, head), end 1 (task), end 2 (task, record, head), count,
        // the records' index entry (listing both records).
        let listed = |item: &TransactWriteItem| -> usize {
            item.put()
                .and_then(|p| p.item().get("records"))
                .and_then(|r| r.as_l().ok())
                .map_or(0, Vec::len)
        };
        let refused = mock!(Client::transact_write_items)
            .match_requests(move |r| {
                r.transact_items().len() == 9 && listed(&r.transact_items()[8]) == 2
            })
            .then_error(|| {
                cancelled(&[
                    "None",
                    "None",
                    "None",
                    "ConditionalCheckFailed",
                    "None",
                    "None",
                    "ConditionalCheckFailed",
                    "None",
                    "None",
                ])
            });
        // Without end 1 (final already) and end 2 (its head moved): end 0, the count, and an
        // index entry listing end 0's record alone.
        let accepted = mock!(Client::transact_write_items)
            .match_requests(move |r| {
                let items = r.transact_items();
                items.len() == 5
                    && items[3].update().is_some_and(|u| {
                        u.update_expression() == "ADD n_succeeded :succeeded"
                            && u.expression_attribute_values()
                                .and_then(|v| v.get(":succeeded"))
                                .and_then(|v| v.as_n().ok())
                                .is_some_and(|n| n == "1")
                    })
                    && listed(&items[4]) == 1
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&refused, &accepted]
        );
        let store = DynamoStore::new(client, "curfew-state");
        let ends = vec![
            end("op-1", 0, true),
            end("op-1", 1, false),
            end("op-1", 2, true),
        ];
        let results = store.finish_ends(&ends, now()).await.unwrap();
        assert_eq!(
            results,
            [
                RecordedFinish::Finished,
                RecordedFinish::AlreadyFinal,
                RecordedFinish::HeadMoved
            ]
        );
        assert_eq!(refused.num_calls() + accepted.num_calls(), 2);
    }
}
