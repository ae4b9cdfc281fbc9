//! A delivery's tasks finished together ([`OperationStore::finish_tasks`]): each task's final
//! state and the record of the change it made, in transactions of up to [`TRANSACTION_ITEMS`]
//! items that count their tasks on one counter stripe per operation, move the records' chain
//! head once (the delivery's changes are linked in a chain of its own) and index their records
//! by day in one entry (`trail::index_item`).
//!
//! A task finished alone pays a counter stripe's write and its chain head's for itself: 2 of
//! its transaction's write units each, as many as its final state. A delivery's transaction of
//! 48 changed targets pays them once for all of them.
//!
//! [`OperationStore::finish_tasks`]: curfew_core::ports::OperationStore::finish_tasks

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use curfew_core::ports::{ErrorKind, PortError, PortResult, RecordedFinish, TaskEnd};
use curfew_core::trail::{AuditRecord, ChainHead};

use super::operations::{count_item, final_state_item, stripe_of, OutcomeCounts};
use super::trail::index_item;
use super::DynamoStore;

/// DynamoDB's limit on the items of one TransactWriteItems.
pub const TRANSACTION_ITEMS: usize = 100;

/// The items `end` writes: its task's final state and, for a change, its record.
pub fn end_items(end: &TaskEnd) -> usize {
    1 + usize::from(end.record.is_some())
}

/// The items of a transaction of `members` (indexes into `ends`): theirs, one counter stripe
/// for each operation among them and, with records, their chain's head and their index entry.
pub fn transaction_items(ends: &[TaskEnd], members: &[usize]) -> usize {
    let operations: BTreeSet<&str> = members.iter().map(|&i| ends[i].op_id.as_str()).collect();
    let recorded = members.iter().any(|&i| ends[i].record.is_some());
    members.iter().map(|&i| end_items(&ends[i])).sum::<usize>()
        + operations.len()
        + 2 * usize::from(recorded)
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

/// The transactions `ends` are written in, each as the indexes of its ends, in order: the
/// records' chain runs through them in that order. A transaction takes ends while they fit in
/// [`TRANSACTION_ITEMS`] with their counter stripes, and, once one has a record, the chain's
/// head and the records' index entry.
pub fn transactions(ends: &[TaskEnd]) -> Vec<Vec<usize>> {
    let mut all = Vec::new();
    let mut members: Vec<usize> = Vec::new();
    let mut items = 0;
    let mut operations: BTreeSet<&str> = BTreeSet::new();
    let mut recorded = false;
    for (i, end) in ends.iter().enumerate() {
        let count = usize::from(!operations.contains(end.op_id.as_str()));
        // The chain's head and the records' index entry, with the first record.
        let shared = 2 * usize::from(!recorded && end.record.is_some());
        let fits = items + end_items(end) + count + shared <= TRANSACTION_ITEMS;
        if !members.is_empty() && !fits {
            all.push(std::mem::take(&mut members));
            (items, operations, recorded) = (0, BTreeSet::new(), false);
        }
        let shared = 2 * usize::from(!recorded && end.record.is_some());
        recorded |= end.record.is_some();
        items += end_items(end) + shared + usize::from(operations.insert(end.op_id.as_str()));
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
    /// A record (its place taken) or the chain's head (it moved): another write appended to
    /// the chain first.
    Append,
    /// The records' index entry (no condition).
    Index,
    /// A counter stripe (no condition).
    Count,
}

impl DynamoStore {
    /// [`OperationStore::finish_tasks`]: each transaction of [`transactions`] is sent. One
    /// cancelled by its conditions is sent again without the ends whose tasks were final
    /// already and without any record: the records after a left-out one no longer follow
    /// their chain's head, so every end with a record in it or in a later transaction is
    /// [`RecordedFinish::HeadMoved`], for the caller to link again after the head as written.
    ///
    /// [`OperationStore::finish_tasks`]: curfew_core::ports::OperationStore::finish_tasks
    pub(super) async fn finish_ends(
        &self,
        ends: &[TaskEnd],
        now: DateTime<Utc>,
    ) -> PortResult<Vec<RecordedFinish>> {
        let mut results = vec![RecordedFinish::Finished; ends.len()];
        let mut chain_broken = false;
        for mut left in transactions(ends) {
            while !left.is_empty() {
                if chain_broken {
                    for &end in left.iter().filter(|&&end| ends[end].record.is_some()) {
                        results[end] = RecordedFinish::HeadMoved;
                    }
                    left.retain(|&end| ends[end].record.is_none());
                    if left.is_empty() {
                        break;
                    }
                }
                let (items, parts) = self.finishing_items(ends, &left, now)?;
                let Some(failed) = self
                    .transact_conditioned("finishing a delivery's tasks", items)
                    .await?
                else {
                    break;
                };
                // The task's own condition decides first, as in `finish_and_append`. Leaving
                // out an end without a record leaves the chain as linked.
                for (part, _) in parts.iter().zip(&failed).filter(|(_, f)| **f) {
                    match *part {
                        Part::FinalState(end) => {
                            results[end] = RecordedFinish::AlreadyFinal;
                            chain_broken |= ends[end].record.is_some();
                        }
                        Part::Append => chain_broken = true,
                        Part::Index | Part::Count => {}
                    }
                }
                left.retain(|&end| results[end] != RecordedFinish::AlreadyFinal);
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
        // The chain's head after the last record here, conditioned on where it was before the
        // first.
        let mut head: Option<(&ChainHead, u64)> = None;
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
                items.push(self.record_put(&link.record, now, false)?);
                parts.push(Part::Append);
                let before = head.map_or(*expected, |(_, before)| before);
                head = Some((&link.head, before));
            }
            counts
                .entry(end.op_id.as_str())
                .or_insert_with(|| (stripe_of(&end.target.key()), OutcomeCounts::default()))
                .1
                .add(end.outcome.status)?;
        }
        if let Some((head, before)) = head {
            items.push(self.head_put(head, before)?);
            parts.push(Part::Append);
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
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use chrono::TimeZone;
    use curfew_core::operation::{TaskOutcome, TaskStatus};
    use curfew_core::target::Sizes;
    use curfew_core::trail::{self, AuditEntry, ChangeKind, Link, Linker};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
    }

    /// A task of `op` on target `n`; a stop that changed its target when `changed` (its record
    /// not linked yet: see [`linked`]).
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
            (Link::after(None, "unlinked", op, &entry, None), 0)
        });
        TaskEnd {
            op_id: op.into(),
            target: curfew_core::target::Target::from_key(&target_key).unwrap(),
            outcome,
            record,
        }
    }

    /// `ends` with their changes linked in one delivery chain, in order, as the worker links
    /// them.
    fn linked(mut ends: Vec<TaskEnd>) -> Vec<TaskEnd> {
        let chain = trail::delivery_chain("111111111111#eu-west-1#asg#web-0", now());
        let mut linker = Linker::after(None, &chain, None);
        for end in &mut ends {
            if let Some(record) = &mut end.record {
                let entry = record.0.record.entry().unwrap();
                *record = linker.link(&end.op_id, &entry);
            }
        }
        ends
    }

    /// Ends 0 (a change), 1 (none) and 2 (a change) of one delivery, linked, finished through
    /// `refused` and then `accepted`: what became of each, once both were asked.
    async fn finish_three(refused: &Rule, accepted: &Rule) -> Vec<RecordedFinish> {
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [refused, accepted]);
        let store = DynamoStore::new(client, "curfew-state");
        let ends = linked(vec![
            end("op-1", 0, true),
            end("op-1", 1, false),
            end("op-1", 2, true),
        ]);
        let results = store.finish_ends(&ends, now()).await.unwrap();
        assert_eq!(refused.num_calls() + accepted.num_calls(), 2);
        results
    }

    #[test]
    fn a_delivery_of_changes_fills_transactions_of_a_hundred_items_with_one_count_and_one_head() {
        let ends = linked((0..60).map(|n| end("op-1", n, true)).collect());
        let packed = transactions(&ends);
        let sizes: Vec<usize> = packed.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [48, 12],
            "48 changes of 2 items, their count, their chain's head and their records' index \
             entry make 99: a 49th would need 101"
        );
        assert_eq!(transaction_items(&ends, &packed[0]), 99);
        assert_eq!(transaction_items(&ends, &packed[1]), 27);
        let skips: Vec<TaskEnd> = (0..150).map(|n| end("op-1", n, false)).collect();
        let sizes: Vec<usize> = transactions(&skips).iter().map(Vec::len).collect();
        assert_eq!(sizes, [99, 51]);
    }

    #[test]
    fn each_operation_is_counted_once_a_transaction_and_a_targets_two_ends_may_share_one() {
        let ends = linked(vec![
            end("op-1", 1, true),
            end("op-2", 2, false),
            end("op-1", 3, false),
        ]);
        assert_eq!(transactions(&ends), [vec![0, 1, 2]]);
        assert_eq!(transaction_items(&ends, &[0, 1, 2]), 3 + 1 + 2 + 2);
        // Two operations' ends on one target: two task items and two records, no item named
        // twice (the head is the delivery's chain's, not the target's).
        let ends = linked(vec![end("op-1", 1, true), end("op-2", 1, true)]);
        assert_eq!(transactions(&ends), [vec![0, 1]]);
    }

    /// A task final already, without a record, is left out and the rest written as linked.
    #[tokio::test]
    async fn a_transaction_cancelled_by_a_final_task_is_written_again_without_it() {
        // Items: end 0 (task, record), end 1 (task), end 2 (task, record), the head, the count,
        // the records' index entry (listing both records).
        // The records an index entry names: places `first` to `last` of one chain.
        let listed = |item: &TransactWriteItem| -> usize {
            let place = |name: &str| {
                item.put()
                    .and_then(|p| p.item().get(name))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<usize>().ok())
            };
            match (place("first"), place("last")) {
                (Some(first), Some(last)) => last + 1 - first,
                _ => 0,
            }
        };
        let refused = mock!(Client::transact_write_items)
            .match_requests(move |r| {
                r.transact_items().len() == 8 && listed(&r.transact_items()[7]) == 2
            })
            .then_error(|| {
                cancelled(&[
                    "None",
                    "None",
                    "ConditionalCheckFailed",
                    "None",
                    "None",
                    "None",
                    "None",
                    "None",
                ])
            });
        // Without end 1: ends 0 and 2 with their records, the head (after record 2, where the
        // chain was empty), the count of 2 and the index entry.
        let accepted = mock!(Client::transact_write_items)
            .match_requests(move |r| {
                let items = r.transact_items();
                items.len() == 7
                    && items[4].put().is_some_and(|p| {
                        p.item().get("sk") == Some(&AttributeValue::S("HEAD".into()))
                            && p.item().get("seq") == Some(&AttributeValue::N("2".into()))
                            && p.condition_expression() == Some("attribute_not_exists(pk)")
                    })
                    && items[5].update().is_some_and(|u| {
                        u.update_expression() == "ADD n_succeeded :succeeded"
                            && u.expression_attribute_values()
                                .and_then(|v| v.get(":succeeded"))
                                .and_then(|v| v.as_n().ok())
                                .is_some_and(|n| n == "2")
                    })
                    && listed(&items[6]) == 2
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        assert_eq!(
            finish_three(&refused, &accepted).await,
            [
                RecordedFinish::Finished,
                RecordedFinish::AlreadyFinal,
                RecordedFinish::Finished
            ]
        );
    }

    /// A task final already whose change was linked leaves the records after it unlinked: the
    /// rest is written without records, and every end with one is left for linking again.
    #[tokio::test]
    async fn a_final_task_with_a_record_sends_the_records_back_for_linking_again() {
        let refused = mock!(Client::transact_write_items)
            .match_requests(|r| r.transact_items().len() == 8)
            .then_error(|| {
                cancelled(&[
                    "ConditionalCheckFailed",
                    "None",
                    "None",
                    "None",
                    "None",
                    "None",
                    "None",
                    "None",
                ])
            });
        // End 1 alone (it has no record) and its count: no record, head or index entry.
        let accepted = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let items = r.transact_items();
                items.len() == 2
                    && items[0].update().is_some_and(|u| {
                        u.key().get("sk")
                            == Some(&AttributeValue::S(
                                "TASK#111111111111#eu-west-1#asg#web-1".into(),
                            ))
                    })
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        assert_eq!(
            finish_three(&refused, &accepted).await,
            [
                RecordedFinish::AlreadyFinal,
                RecordedFinish::Finished,
                RecordedFinish::HeadMoved
            ]
        );
    }
}
