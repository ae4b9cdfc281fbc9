//! A delivery's tasks finished together ([`OperationStore::finish_tasks`]): each write of task
//! ends is one transaction of their final states, one counter stripe per operation among them
//! and, when they changed their targets, the one record of their changes, their chain's head
//! (the delivery's changes are linked in a chain of its own) and the record's by-day index
//! entry (`trail::index_item`).
//!
//! A task finished alone pays a counter stripe's write and its chain head's for itself: 2 of
//! its transaction's write units each, as many as its final state. A delivery's transaction of
//! 96 ends pays them once for all of them, and a record of their changes of some 0.11 KB each
//! where a record each took an item of 1 KB, billed twice.
//!
//! [`OperationStore::finish_tasks`]: curfew_core::ports::OperationStore::finish_tasks

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use curfew_core::ports::{EndsWrite, ErrorKind, PortError, PortResult, RecordedFinish};
use curfew_core::trail::AuditRecord;

use super::operations::{count_item, final_state_item, stripe_of, OutcomeCounts};
use super::trail::{index_item, record_item};
use super::DynamoStore;

/// DynamoDB's limit on the items of one TransactWriteItems.
pub const TRANSACTION_ITEMS: usize = 100;

/// The record `write` appends, as the item its transaction puts (`at`: the write's time), for
/// the traffic counters to size.
pub fn record_of(write: &EndsWrite, at: DateTime<Utc>) -> Option<HashMap<String, AttributeValue>> {
    let (link, _) = write.record.as_ref()?;
    Some(record_item(&link.record, at, false))
}

/// The by-day index entry of the record `write` appends, stamped `at` (none without a record):
/// what [`DynamoStore::finish_tasks`] writes, for the traffic counters to size.
///
/// [`DynamoStore::finish_tasks`]: curfew_core::ports::OperationStore::finish_tasks
pub fn records_index(
    write: &EndsWrite,
    at: DateTime<Utc>,
) -> Option<HashMap<String, AttributeValue>> {
    let records: Vec<&AuditRecord> = write.record.iter().map(|(link, _)| &link.record).collect();
    index_item(&records, at)
}

/// What an item of a finishing transaction is.
#[derive(Clone, Copy)]
enum Part {
    /// End `.0`'s final state: its condition failing means the task was final already.
    FinalState(usize),
    /// The record (its place taken) or the chain's head (it moved): another write appended to
    /// the chain first.
    Append,
    /// The record's index entry (no condition).
    Index,
    /// A counter stripe (no condition).
    Count,
}

impl DynamoStore {
    /// [`OperationStore::finish_tasks`]: each write is one transaction. One cancelled by its
    /// conditions is sent again without the ends whose tasks were final already; if one of
    /// them was recorded, or the record no longer follows its chain's head, without the record
    /// either, and then the records of the writes after it no longer follow the head: the
    /// recorded ends of each are [`RecordedFinish::HeadMoved`], for the caller to link again
    /// after the head as written, and their other ends are written all the same.
    ///
    /// [`OperationStore::finish_tasks`]: curfew_core::ports::OperationStore::finish_tasks
    pub(super) async fn finish_ends(
        &self,
        writes: &[EndsWrite],
        now: DateTime<Utc>,
    ) -> PortResult<Vec<RecordedFinish>> {
        let mut results = Vec::new();
        let mut chain_broken = false;
        for write in writes {
            let items = EndsWrite::items(&write.ends, write.record.is_some());
            if items > TRANSACTION_ITEMS {
                return Err(PortError::new(
                    ErrorKind::Invalid,
                    format!(
                        "a write of {} task ends takes {items} items; a transaction holds at                          most {TRANSACTION_ITEMS}",
                        write.ends.len()
                    ),
                ));
            }
            let base = results.len();
            results.extend(write.ends.iter().map(|_| RecordedFinish::Finished));
            let mut left: Vec<usize> = (0..write.ends.len()).collect();
            let mut with_record = write.record.is_some();
            while !left.is_empty() {
                if chain_broken && with_record {
                    for &end in left.iter().filter(|&&end| write.ends[end].recorded) {
                        results[base + end] = RecordedFinish::HeadMoved;
                    }
                    left.retain(|&end| !write.ends[end].recorded);
                    with_record = false;
                    if left.is_empty() {
                        break;
                    }
                }
                let (items, parts) = self.finishing_items(write, &left, with_record, now)?;
                let Some(failed) = self
                    .transact_conditioned("finishing a delivery's tasks", items)
                    .await?
                else {
                    break;
                };
                // The task's own condition decides first, as in `finish_and_append`. Leaving
                // out an end not recorded leaves the record as linked.
                for (part, _) in parts.iter().zip(&failed).filter(|(_, f)| **f) {
                    match *part {
                        Part::FinalState(end) => {
                            results[base + end] = RecordedFinish::AlreadyFinal;
                            chain_broken |= with_record && write.ends[end].recorded;
                        }
                        Part::Append => chain_broken = true,
                        Part::Index | Part::Count => {}
                    }
                }
                left.retain(|&end| results[base + end] != RecordedFinish::AlreadyFinal);
            }
        }
        Ok(results)
    }

    /// The items of one finishing transaction of `members` (indexes into `write.ends`), with
    /// the write's record when `with_record`, and what each one is.
    fn finishing_items(
        &self,
        write: &EndsWrite,
        members: &[usize],
        with_record: bool,
        now: DateTime<Utc>,
    ) -> PortResult<(Vec<TransactWriteItem>, Vec<Part>)> {
        let mut items = Vec::new();
        let mut parts = Vec::new();
        // Each operation's counts go on the stripe of its first task here: any stripe is
        // correct, and hashing spreads the load.
        let mut counts: BTreeMap<&str, (u64, OutcomeCounts)> = BTreeMap::new();
        for &i in members {
            let end = &write.ends[i];
            items.push(final_state_item(
                &self.table,
                &end.op_id,
                &end.target,
                &end.outcome,
                now,
            )?);
            parts.push(Part::FinalState(i));
            counts
                .entry(end.op_id.as_str())
                .or_insert_with(|| (stripe_of(&end.target.key()), OutcomeCounts::default()))
                .1
                .add(end.outcome.status)?;
        }
        let record = write.record.as_ref().filter(|_| with_record);
        if let Some((link, expected)) = record {
            items.push(self.record_put(&link.record, now, false)?);
            parts.push(Part::Append);
            items.push(self.head_put(&link.head, *expected)?);
            parts.push(Part::Append);
        }
        for (op_id, (stripe, counted)) in &counts {
            items.push(count_item(&self.table, op_id, *stripe, counted)?);
            parts.push(Part::Count);
        }
        if let Some(index) = record.and_then(|_| records_index(write, now)) {
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
    use curfew_core::ports::TaskEnd;
    use curfew_core::service::endings::writes;
    use curfew_core::target::Sizes;
    use curfew_core::trail::{self, AuditEntry, ChangeKind, Linker};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
    }

    /// A task of `op` on target `n`, with its change when `changed` (a stop's).
    fn end(op: &str, n: usize, changed: bool) -> (TaskEnd, Option<(String, AuditEntry)>) {
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
        let change = changed.then(|| {
            let mut entry =
                AuditEntry::new(ChangeKind::TargetStopped, &target_key, "worker", now());
            // As the worker names it.
            entry.operation = Some(op.to_string());
            entry.task = Some(format!("{op}/{target_key}"));
            (format!("{op}/{target_key}"), entry)
        });
        let end = TaskEnd {
            op_id: op.into(),
            target: curfew_core::target::Target::from_key(&target_key).unwrap(),
            outcome,
            recorded: false,
        };
        (end, change)
    }

    /// `ends` in the writes the worker makes of them, their changes linked in one delivery
    /// chain.
    fn linked(ends: Vec<(TaskEnd, Option<(String, AuditEntry)>)>) -> Vec<EndsWrite> {
        let chain = trail::delivery_chain("111111111111#eu-west-1#asg#web-0", now());
        writes(ends, Some(Linker::after(None, &chain, None)))
    }

    /// A finishing transaction of `finish_three`'s 7 items (end 0's task, end 1's, end 2's, the
    /// record of ends 0 and 2, the head, the count, the index entry), cancelled by the
    /// condition of item `failed`.
    fn refused_at(failed: usize) -> Rule {
        mock!(Client::transact_write_items)
            .match_requests(|r| r.transact_items().len() == 7)
            .then_error(move || {
                let mut reasons = ["None"; 7];
                reasons[failed] = "ConditionalCheckFailed";
                cancelled(&reasons)
            })
    }

    /// Ends 0 (a change), 1 (none) and 2 (a change) of one delivery, linked, finished through
    /// `refused` and then `accepted`: what became of each, once both were asked.
    async fn finish_three(refused: &Rule, accepted: &Rule) -> Vec<RecordedFinish> {
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [refused, accepted]);
        let store = DynamoStore::new(client, "curfew-state");
        let writes = linked(vec![
            end("op-1", 0, true),
            end("op-1", 1, false),
            end("op-1", 2, true),
        ]);
        assert_eq!(writes.len(), 1);
        let results = store.finish_ends(&writes, now()).await.unwrap();
        assert_eq!(refused.num_calls() + accepted.num_calls(), 2);
        results
    }

    #[test]
    fn a_delivery_of_changes_fills_transactions_of_a_hundred_items_with_one_record_each() {
        let writes = linked((0..120).map(|n| end("op-1", n, true)).collect());
        let sizes: Vec<usize> = writes.iter().map(|w| w.ends.len()).collect();
        assert_eq!(
            sizes,
            [96, 24],
            "96 ends, their count, their record, its head and its index entry make 100: a 97th \
             would need 101"
        );
        assert_eq!(EndsWrite::items(&writes[0].ends, true), 100);
        assert_eq!(EndsWrite::items(&writes[1].ends, true), 28);
        let (first, second) = (&writes[0].record, &writes[1].record);
        let (first, second) = (first.as_ref().unwrap(), second.as_ref().unwrap());
        assert_eq!((first.1, second.1), (0, 1), "linked one after the other");
        assert_eq!(first.0.record.entries().unwrap().len(), 96);
        assert!(writes.iter().flat_map(|w| &w.ends).all(|e| e.recorded));
        let skips = linked((0..150).map(|n| end("op-1", n, false)).collect());
        let sizes: Vec<usize> = skips.iter().map(|w| w.ends.len()).collect();
        assert_eq!(sizes, [99, 51]);
        assert!(skips.iter().all(|w| w.record.is_none()));
    }

    #[test]
    fn a_record_of_a_writes_changes_names_the_actor_and_each_changes_task_once() {
        let writes = linked((0..96).map(|n| end("op-1", n, true)).collect());
        let record = record_of(&writes[0], now()).unwrap();
        let body = record["body"].as_s().unwrap();
        assert_eq!(body.matches("\"worker\"").count(), 1, "{body}");
        assert!(
            !body.contains("op-1/"),
            "tasks are <operation>/<subject>: {body}"
        );
        let entries = writes[0]
            .record
            .as_ref()
            .unwrap()
            .0
            .record
            .entries()
            .unwrap();
        assert_eq!(
            entries[5].task.as_deref(),
            Some("op-1/111111111111#eu-west-1#asg#web-5")
        );
        assert_eq!(entries[5].actor, "worker");
    }

    #[test]
    fn each_operation_is_counted_once_a_transaction_and_a_targets_two_ends_may_share_one() {
        let writes = linked(vec![
            end("op-1", 1, true),
            end("op-2", 2, false),
            end("op-1", 3, false),
        ]);
        assert_eq!(writes.len(), 1);
        assert_eq!(EndsWrite::items(&writes[0].ends, true), 3 + 2 + 3);
        // Two operations' ends on one target: two task items, one record of both changes, no
        // item named twice (the head is the delivery's chain's, not the target's).
        let writes = linked(vec![end("op-1", 1, true), end("op-2", 1, true)]);
        assert_eq!(writes.len(), 1);
        let entries = writes[0]
            .record
            .as_ref()
            .unwrap()
            .0
            .record
            .entries()
            .unwrap();
        assert_eq!(entries.len(), 2);
    }

    /// A task final already, not recorded, is left out and the rest written as linked.
    #[tokio::test]
    async fn a_transaction_cancelled_by_a_final_task_is_written_again_without_it() {
        let refused = refused_at(1);
        // Without end 1: ends 0 and 2, the record of both (the chain's first), the head (where
        // the chain was empty), the count of 2 and the index entry.
        let accepted = mock!(Client::transact_write_items)
            .match_requests(move |r| {
                let items = r.transact_items();
                let body = items[2]
                    .put()
                    .and_then(|p| p.item().get("body"))
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                items.len() == 6
                    && body.contains("web-0")
                    && body.contains("web-2")
                    && items[3].put().is_some_and(|p| {
                        p.item().get("sk") == Some(&AttributeValue::S("HEAD".into()))
                            && p.item().get("seq") == Some(&AttributeValue::N("1".into()))
                            && p.condition_expression() == Some("attribute_not_exists(pk)")
                    })
                    && items[4].update().is_some_and(|u| {
                        u.update_expression() == "ADD n_succeeded :succeeded"
                            && u.expression_attribute_values()
                                .and_then(|v| v.get(":succeeded"))
                                .and_then(|v| v.as_n().ok())
                                .is_some_and(|n| n == "2")
                    })
                    && items[5].put().is_some_and(|p| {
                        p.item().get("first") == Some(&AttributeValue::N("1".into()))
                            && p.item().get("last") == Some(&AttributeValue::N("1".into()))
                    })
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

    /// A task final already whose change is in the record leaves the record out: the rest is
    /// written without it, and every recorded end is left for linking again.
    #[tokio::test]
    async fn a_final_task_with_a_recorded_change_sends_the_records_changes_back_for_linking_again()
    {
        let refused = refused_at(0);
        // End 1 alone (it is not recorded) and its count: no record, head or index entry.
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
