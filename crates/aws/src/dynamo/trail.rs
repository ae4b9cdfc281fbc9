//! The audit trail's chains in the state table. A chain's records and its head share one
//! partition (`AUDIT#<chain>`): records under `REC#<seq>` (zero-padded, so key order is chain
//! order), the head under `HEAD`, and a mark per change under `KEY#<change>`. An append writes
//! the record, the new head and the mark in one transaction, conditioned on the head still
//! naming the record it follows (two appends to one chain cannot both take the same place) and
//! on the mark being new (a change is never recorded twice). A target's change is instead
//! appended in its task's finishing transaction (the task, its counter stripe, the record and
//! the head), where the task's condition (not final yet) keeps it once, and leaves no mark. Heads are in gsi3
//! (`AUDITHEADS#<bucket>`, keys only; heads not appended to since an earlier version are still
//! in gsi1) and records in gsi2 by day (`AUDIT#<date>#<bucket>`), spread over [`BUCKETS`]
//! partitions so a wave's appends never crowd one index key: each record on its own, but for
//! the records of a delivery's finishing transaction, which one entry lists ([`index_item`],
//! `IDX#<seq>` in its first record's partition) and a listing reads by key.

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use curfew_core::ports::{ErrorKind, PortError, PortResult, RecordedFinish};
use curfew_core::trail::{
    bucket, records_about, subject_mark, Append, AuditLog, AuditRecord, ChainHead, Link,
};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::{index_time, key, n, s, DynamoStore, Item};
use crate::error::{classify, classify_transaction, retrying};

/// Index partitions the heads and each day's records are spread over.
pub const BUCKETS: u8 = 8;

/// Index queries in flight at once when reading every bucket.
const CONCURRENCY: usize = 8;

fn chain_pk(chain: &str) -> String {
    format!("AUDIT#{chain}")
}

fn record_sk(seq: u64) -> String {
    format!("REC#{seq:012}")
}

fn day_pk(day: NaiveDate, bucket: u8) -> String {
    format!("AUDIT#{}#{bucket}", day.format("%Y-%m-%d"))
}

/// A record's item; `indexed` puts it in the by-day index itself (gsi2). A record written in a
/// delivery's finishing transaction is not: the transaction's [`index_item`] lists it.
pub(super) fn record_item(record: &AuditRecord, at: DateTime<Utc>, indexed: bool) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), s(chain_pk(&record.chain)));
    item.insert("sk".into(), s(record_sk(record.seq)));
    item.insert("chain".into(), s(&record.chain));
    item.insert("seq".into(), n(record.seq));
    item.insert("prev".into(), s(&record.prev));
    item.insert("hash".into(), s(&record.hash));
    item.insert("body".into(), s(&record.body));
    item.insert("at".into(), s(index_time(at)));
    if !indexed {
        return item;
    }
    let b = bucket(&record.chain, BUCKETS);
    item.insert("gsi2pk".into(), s(day_pk(at.date_naive(), b)));
    // Time first (listings read a day's records in order), then the record's place in its
    // chain and its hash to tell chains apart within a millisecond. Earlier versions put the
    // chain's name here (`<at>#<chain>#REC#<seq>`); both sort by time first. The chain is
    // already the item's key: repeating it cost a write unit per record with long target
    // names (docs/PERFORMANCE.md).
    item.insert(
        "gsi2sk".into(),
        s(format!("{}#{}", index_time(at), day_order(record))),
    );
    item
}

/// A record's place among a day's at one instant: `REC#<seq>#<first 8 hex of its hash>`, after
/// its time in the by-day index's sort key (and in a listing of records an index entry lists).
fn day_order(record: &AuditRecord) -> String {
    format!(
        "{}#{}",
        record_sk(record.seq),
        record.hash.get(..8).unwrap_or(&record.hash)
    )
}

/// The by-day index entry of the records a finishing transaction appends (`records`: their
/// chains, places and hashes, all stamped `at`): one item in the first record's chain
/// partition (`IDX#<seq>`, as new as that record), in gsi2 as a record would be. Each record
/// of its own in the index cost a write unit for its entry (gsi2 projects everything); one
/// entry for a transaction's records costs one or two. Records that run on in one chain (a
/// delivery's, every finishing transaction's since delivery chains) are named by their
/// places, `first` to `last` (a listing of each one's key, 48 of them, took some 4 KB: 5 units
/// in the transaction and 5 in the index); others by a `records` list of their keys. Public
/// so the traffic counters (`curfew-tests`) bill the item this writes.
pub fn index_item(records: &[&AuditRecord], at: DateTime<Utc>) -> Option<Item> {
    let first = records.first()?;
    let mut item = Item::new();
    item.insert("pk".into(), s(chain_pk(&first.chain)));
    item.insert("sk".into(), s(format!("IDX#{:012}", first.seq)));
    let runs_on = records
        .iter()
        .zip(first.seq..)
        .all(|(r, seq)| r.chain == first.chain && r.seq == seq);
    if runs_on {
        item.insert("chain".into(), s(&first.chain));
        item.insert("first".into(), n(first.seq));
        item.insert("last".into(), n(first.seq + records.len() as u64 - 1));
    } else {
        item.insert(
            "records".into(),
            AttributeValue::L(
                records
                    .iter()
                    .map(|r| s(format!("{}#{}", record_sk(r.seq), r.chain)))
                    .collect(),
            ),
        );
    }
    // What each record is about, marked short (some 10 bytes a record): a listing about one
    // target reads only the records of the entries that may hold it.
    let subjects: BTreeSet<String> = records
        .iter()
        .filter_map(|r| r.entries())
        .flatten()
        .map(|e| subject_mark(&e.subject))
        .collect();
    if !subjects.is_empty() {
        item.insert(
            "subjects".into(),
            AttributeValue::Ss(subjects.into_iter().collect()),
        );
    }
    item.insert("at".into(), s(index_time(at)));
    let b = bucket(&first.chain, BUCKETS);
    item.insert("gsi2pk".into(), s(day_pk(at.date_naive(), b)));
    item.insert(
        "gsi2sk".into(),
        s(format!("{}#IDX#{}", index_time(at), day_order(first))),
    );
    Some(item)
}

/// False when index entry `item` marks its records' subjects and none is `mark`'s (entries
/// written before the marks may be about anything).
fn may_be_about(item: &Item, mark: &str) -> bool {
    match item.get("subjects") {
        Some(AttributeValue::Ss(marks)) => marks.iter().any(|m| m == mark),
        _ => true,
    }
}

/// The keys of the records an [`index_item`] names (`None`: the item is a record).
fn indexed_keys(item: &Item) -> Option<Vec<Item>> {
    if let Some(AttributeValue::L(listed)) = item.get("records") {
        return listed
            .iter()
            .map(|entry| {
                // `REC#<seq>#<chain>`: the chain may hold `#`, the place never does.
                let (seq, chain) = entry.as_s().ok()?.strip_prefix("REC#")?.split_once('#')?;
                Some(key(&chain_pk(chain), &format!("REC#{seq}")))
            })
            .collect();
    }
    let (first, last) = (number(item, "first").ok()?, number(item, "last").ok()?);
    let chain = text(item, "chain").ok()?;
    Some(
        (first..=last)
            .map(|seq| key(&chain_pk(&chain), &record_sk(seq)))
            .collect(),
    )
}

fn head_item(head: &ChainHead) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), s(chain_pk(&head.chain)));
    item.insert("sk".into(), s("HEAD"));
    item.insert("chain".into(), s(&head.chain));
    item.insert("seq".into(), n(head.seq));
    item.insert("hash".into(), s(&head.hash));
    item.insert("last_key".into(), s(&head.last_key));
    if let Some(signature) = &head.signature {
        item.insert("signature".into(), s(signature));
    }
    // gsi3 projects none of a head's attributes, so an append, which rewrites the head but
    // never its index keys, writes nothing to the index (gsi1, where heads were before,
    // projects everything: each append rewrote the entry).
    item.insert("gsi3pk".into(), s(heads_partition(&head.chain)));
    item.insert("gsi3sk".into(), s(&head.chain));
    item
}

fn heads_partition(chain: &str) -> String {
    format!("AUDITHEADS#{}", bucket(chain, BUCKETS))
}

fn text(item: &Item, name: &str) -> PortResult<String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| missing(name))
}

fn number(item: &Item, name: &str) -> PortResult<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| missing(name))
}

fn missing(name: &str) -> PortError {
    PortError::new(
        ErrorKind::Other,
        format!("an audit item has no readable `{name}`"),
    )
}

fn decode_record(item: &Item) -> PortResult<AuditRecord> {
    Ok(AuditRecord {
        chain: text(item, "chain")?,
        seq: number(item, "seq")?,
        prev: text(item, "prev")?,
        hash: text(item, "hash")?,
        body: text(item, "body")?,
    })
}

fn decode_head(item: &Item) -> PortResult<ChainHead> {
    Ok(ChainHead {
        chain: text(item, "chain")?,
        seq: number(item, "seq")?,
        hash: text(item, "hash")?,
        last_key: text(item, "last_key")?,
        signature: text(item, "signature").ok(),
    })
}

/// Which of a transaction's items failed their condition, when it was cancelled for a failed
/// condition (`None`: it failed for another reason).
fn failed_conditions<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<bool>> {
    let SdkError::ServiceError(service) = err else {
        return None;
    };
    let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err() else {
        return None;
    };
    let conditions: Vec<bool> = cancelled
        .cancellation_reasons()
        .iter()
        .map(|r| r.code() == Some("ConditionalCheckFailed"))
        .collect();
    conditions.contains(&true).then_some(conditions)
}

fn building(e: aws_sdk_dynamodb::error::BuildError) -> PortError {
    PortError::with_source(ErrorKind::Invalid, "building an audit append", e)
}

fn mark_sk(key_of_change: &str) -> String {
    format!("KEY#{key_of_change}")
}

impl DynamoStore {
    /// The record's Put (only if its place is free) and the head's (only if the head still
    /// names the record this one follows: a concurrent append that got there first makes the
    /// transaction fail, and the caller reads the head again).
    pub(super) fn append_puts(
        &self,
        link: &Link,
        expected: u64,
        at: DateTime<Utc>,
        indexed: bool,
    ) -> PortResult<[TransactWriteItem; 2]> {
        Ok([
            self.record_put(&link.record, at, indexed)?,
            self.head_put(&link.head, expected)?,
        ])
    }

    /// A record's Put, only if its place in its chain is free.
    pub(super) fn record_put(
        &self,
        record: &AuditRecord,
        at: DateTime<Utc>,
        indexed: bool,
    ) -> PortResult<TransactWriteItem> {
        let record = Put::builder()
            .table_name(&self.table)
            .set_item(Some(record_item(record, at, indexed)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(building)?;
        Ok(TransactWriteItem::builder().put(record).build())
    }

    /// A chain head's Put, only if the head is still at record `expected` (0: there is none).
    pub(super) fn head_put(
        &self,
        head: &ChainHead,
        expected: u64,
    ) -> PortResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(head_item(head)));
        let put = if expected == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("seq = :expected")
                .expression_attribute_values(":expected", n(expected))
        }
        .build()
        .map_err(building)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A task's finishing items (`finish`: its final state, then its count) and the append of
    /// `link` in one transaction: the change is in the chain exactly when the task is final.
    pub(super) async fn finish_and_append(
        &self,
        finish: Vec<TransactWriteItem>,
        link: &Link,
        expected: u64,
        at: DateTime<Utc>,
    ) -> PortResult<RecordedFinish> {
        let mut items = finish;
        items.extend(self.append_puts(link, expected, at, true)?);
        let failed = self
            .transact_conditioned("finishing a task and recording it", items)
            .await?;
        Ok(match failed.as_deref() {
            None => RecordedFinish::Finished,
            // The task's own condition: it is final already, with its change recorded.
            Some([true, ..]) => RecordedFinish::AlreadyFinal,
            Some(_) => RecordedFinish::HeadMoved,
        })
    }

    /// Sends one transaction: `None` once written, or which of its items failed their
    /// condition when it was cancelled for that (any other failure is an error).
    pub(super) async fn transact_conditioned(
        &self,
        what: &str,
        items: Vec<TransactWriteItem>,
    ) -> PortResult<Option<Vec<bool>>> {
        retrying(|| async {
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
            {
                Ok(_) => Ok(None),
                Err(e) => match failed_conditions(&e) {
                    Some(failed) => Ok(Some(failed)),
                    None => Err(classify_transaction(what, e)),
                },
            }
        })
        .await
    }

    /// Every item of one index partition, following pages (`range`: a sort key interval).
    async fn index_items(
        &self,
        index: &str,
        pk: String,
        range: Option<(String, String)>,
    ) -> PortResult<Vec<Item>> {
        retrying(|| async {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .expression_attribute_values(":pk", s(pk.clone()));
            let request = match &range {
                Some((from, to)) => request
                    .key_condition_expression(format!(
                        "{index}pk = :pk AND {index}sk BETWEEN :from AND :to"
                    ))
                    .expression_attribute_values(":from", s(from))
                    .expression_attribute_values(":to", s(to)),
                None => request.key_condition_expression(format!("{index}pk = :pk")),
            };
            request
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("querying the audit trail", e))
        })
        .await
    }
}

#[async_trait]
impl AuditLog for DynamoStore {
    async fn audit_head(&self, chain: &str) -> PortResult<Option<ChainHead>> {
        self.get(&chain_pk(chain), "HEAD")
            .await?
            .map(|item| decode_head(&item))
            .transpose()
    }

    async fn append_audit(
        &self,
        link: &Link,
        expected: u64,
        at: DateTime<Utc>,
    ) -> PortResult<Append> {
        let [record, head] = self.append_puts(link, expected, at, true)?;
        // The mark of the change: a change already in the chain is never appended twice,
        // whoever appended in between.
        let mut mark = Item::new();
        mark.insert("pk".into(), s(chain_pk(&link.head.chain)));
        mark.insert("sk".into(), s(mark_sk(&link.head.last_key)));
        mark.insert("seq".into(), n(link.record.seq));
        let mark = Put::builder()
            .table_name(&self.table)
            .set_item(Some(mark))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(building)?;
        let items = vec![record, head, TransactWriteItem::builder().put(mark).build()];
        let failed = self
            .transact_conditioned("appending to the audit trail", items)
            .await?;
        Ok(match failed.as_deref() {
            None => Append::Appended,
            // The mark's condition: the change is in the chain already.
            Some([_, _, true]) => Append::AlreadyRecorded,
            Some(_) => Append::HeadMoved,
        })
    }

    async fn change_recorded(&self, chain: &str, key_of_change: &str) -> PortResult<bool> {
        Ok(self
            .get(&chain_pk(chain), &mark_sk(key_of_change))
            .await?
            .is_some())
    }

    async fn audit_heads(&self) -> PortResult<Vec<ChainHead>> {
        let partitions = |index: &'static str| {
            stream::iter(0..BUCKETS)
                .map(move |b| self.index_items(index, format!("AUDITHEADS#{b}"), None))
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<Vec<Item>>>()
        };
        // gsi3 holds the heads' keys only: the heads themselves are read by key. gsi1 holds,
        // whole, the heads of chains not appended to since heads moved out of it.
        let (moved, earlier) = futures::try_join!(partitions("gsi3"), partitions("gsi1"))?;
        let keys: Vec<Item> = moved
            .iter()
            .flatten()
            .filter_map(|entry| {
                Some(key(
                    entry.get("pk")?.as_s().ok()?,
                    entry.get("sk")?.as_s().ok()?,
                ))
            })
            .collect();
        let read: Vec<Vec<Item>> = stream::iter(keys.chunks(100).map(<[Item]>::to_vec))
            .map(|chunk| self.batch_get(chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut heads: Vec<ChainHead> = read
            .iter()
            .flatten()
            .map(decode_head)
            .collect::<PortResult<_>>()?;
        // An entry gsi1 still shows for a head that has since moved (the index lags).
        let moved: HashSet<String> = heads.iter().map(|h| h.chain.clone()).collect();
        for item in earlier.iter().flatten() {
            let head = decode_head(item)?;
            if !moved.contains(&head.chain) {
                heads.push(head);
            }
        }
        heads.sort_by(|a, b| a.chain.cmp(&b.chain));
        Ok(heads)
    }

    async fn audit_chain(&self, chain: &str) -> PortResult<Vec<AuditRecord>> {
        self.query(&chain_pk(chain), "REC#")
            .await?
            .iter()
            .map(decode_record)
            .collect()
    }

    async fn audit_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<AuditRecord>> {
        self.records_between(since, until, None).await
    }

    async fn audit_about(
        &self,
        subject: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<AuditRecord>> {
        let records = self.records_between(since, until, Some(subject)).await?;
        Ok(records_about(records, subject))
    }
}

impl DynamoStore {
    /// The records dated from `since` to `until`, oldest first: each day's index entries, and
    /// the records the entries of many name, read by key, but for those of an entry whose
    /// subjects are marked and none is `about`'s.
    async fn records_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        about: Option<&str>,
    ) -> PortResult<Vec<AuditRecord>> {
        if until < since {
            return Ok(Vec::new());
        }
        let mut partitions = Vec::new();
        let mut day = since.date_naive();
        while day <= until.date_naive() {
            partitions.extend((0..BUCKETS).map(|b| day_pk(day, b)));
            day += Duration::days(1);
        }
        // '$' sorts after '#', so every record stamped `until` is inside the interval.
        let range = (index_time(since), format!("{}$", index_time(until)));
        let pages: Vec<Vec<Item>> = stream::iter(partitions)
            .map(|pk| self.index_items("gsi2", pk, Some(range.clone())))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut found: Vec<(String, AuditRecord)> = Vec::new();
        let mut listed: Vec<Item> = Vec::new();
        let mark = about.map(subject_mark);
        for item in pages.iter().flatten() {
            match indexed_keys(item) {
                // A finishing transaction's entry: its records are read by key below.
                Some(keys) => {
                    if mark.as_deref().is_none_or(|m| may_be_about(item, m)) {
                        listed.extend(keys);
                    }
                }
                None => found.push((text(item, "gsi2sk")?, decode_record(item)?)),
            }
        }
        let read: Vec<Vec<Item>> = stream::iter(listed.chunks(100).map(<[Item]>::to_vec))
            .map(|chunk| self.batch_get(chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        // A listed record that is gone was deleted: `audit verify` names it in its chain.
        for item in read.iter().flatten() {
            let record = decode_record(item)?;
            let order = format!("{}#{}", text(item, "at")?, day_order(&record));
            found.push((order, record));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found.into_iter().map(|(_, r)| r).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use curfew_core::trail::{AuditEntry, ChangeKind, Linker};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
    }

    /// `n` records linked in `chain`, from its start.
    fn linked(chain: &str, n: usize) -> Vec<AuditRecord> {
        let mut linker = Linker::after(None, chain, None);
        (0..n)
            .map(|i| {
                let subject = format!("111111111111#eu-west-1#asg#web-{i}");
                let entry = AuditEntry::new(ChangeKind::TargetStopped, subject, "worker", at());
                linker.link("op-1", &entry).0.record
            })
            .collect()
    }

    #[test]
    fn records_that_run_on_in_one_chain_are_indexed_by_their_first_and_last_places() {
        let records = linked("ends/a@t", 48);
        let refs: Vec<&AuditRecord> = records.iter().collect();
        let item = index_item(&refs, at()).unwrap();
        assert_eq!(item.get("first"), Some(&n(1)));
        assert_eq!(item.get("last"), Some(&n(48)));
        assert!(!item.contains_key("records"));
        let keys = indexed_keys(&item).unwrap();
        assert_eq!(keys.len(), 48);
        assert_eq!(keys[47], key("AUDIT#ends/a@t", "REC#000000000048"));
        // Under a write unit with the marks of its 48 subjects, where a list of 48 keys took
        // some 4 KB.
        let size: usize = item
            .iter()
            .map(|(name, value)| {
                name.len()
                    + match value {
                        AttributeValue::S(v) | AttributeValue::N(v) => v.len(),
                        AttributeValue::Ss(vs) => vs.iter().map(String::len).sum(),
                        _ => 0,
                    }
            })
            .sum();
        assert!(size < 1024, "{size} bytes: {item:?}");
        let mark = subject_mark("111111111111#eu-west-1#asg#web-7");
        assert!(may_be_about(&item, &mark));
        assert!(!may_be_about(&item, &subject_mark("someone-else")));
    }

    #[test]
    fn records_of_several_chains_are_indexed_by_a_list_of_their_keys() {
        let (a, b) = (linked("target/a", 1), linked("target/b", 2));
        let item = index_item(&[&a[0], &b[1]], at()).unwrap();
        assert!(!item.contains_key("first"));
        assert_eq!(
            indexed_keys(&item).unwrap(),
            [
                key("AUDIT#target/a", "REC#000000000001"),
                key("AUDIT#target/b", "REC#000000000002")
            ]
        );
        // A record itself names no records.
        assert_eq!(indexed_keys(&record_item(&a[0], at(), true)), None);
    }
}
