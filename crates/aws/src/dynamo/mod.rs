//! The DynamoDB single-table state store. Key schema (see docs/ARCHITECTURE.md):
//!
//! | item | pk | sk | indexes |
//! |---|---|---|---|
//! | account | `ACCOUNTS` | `ACCOUNT#<id>` | |
//! | schedule | `SCHEDULES` | `SCHEDULE#<name>` | gsi1: `DUE` / next fire (enabled only); gsi2: `ENFORCE` / name (enabled, `--enforce` only) |
//! | calendar | `CALENDARS` | `CALENDAR#<name>` | |
//! | operation | `OP#<id>` | `OP` | gsi2: `OPS` / created_at#id (newest first) |
//! | shard marker | `OP#<id>` | `SHARD#<account>#<region>` | |
//! | shard part (a shard planned while it is listed; its count: `parts#<account>#<region>` on the operation) | `OP#<id>` | `SHARD#<account>#<region>#PART#<n, 5 digits>` | |
//! | task | `OP#<id>#<account>#<region>` | `TASK#<target key>` | |
//! | counter stripe | `OP#<id>#COUNT#00` … `#31` | `COUNT` | |
//! | lease, and the baseline it carries | `TARGET#<target key>` | `LEASE` | gsi3: `ASLEEP#<account>#<region>` / target key (while a baseline is saved; projects `baseline` only) |
//! | baseline of the earlier layout (read, retired and listed; never written) | `TARGET#<target key>` | `BASELINE` | gsi1: `ASLEEP#<account>#<region>` / target key |
//! | shard set | `OP#<id>` | `SHARDS` | |
//! | override | `OVERRIDES` | `<id>` | TTL `expires_at` |
//! | inventory | `INV#<account>#<region>` | `META` / `B#<nnnnn>` (a bucket of targets; `T#<kind>#<name>`, a target, as earlier versions wrote it) | |
//! | audit record | `AUDIT#<chain>` | `REC#<seq, 12 digits>` | gsi2: `AUDIT#<day>#<bucket>` / at#chain#seq |
//! | audit chain head | `AUDIT#<chain>` | `HEAD` | gsi3: `AUDITHEADS#<bucket>` / chain (keys only; a head not appended to since an earlier version: gsi1) |
//! | audit change mark | `AUDIT#<chain>` | `KEY#<change>` | |
//! | poller heartbeat | `HEALTH` | `POLLER` | |
//! | account's last contact | `HEALTH` | `CONTACT#<account>` | |
//! | notice sent | `NOTICE#<notice key>` | `NOTICE` | TTL `expires_at` |
//!
//! Every read is a GetItem, a BatchGetItem or a Query on a key or index: no Scan anywhere.

mod baselines;
mod dead_letters;
pub mod finishing;
mod health;
mod notices;
mod operations;
mod provision;
mod targets;
mod trail;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use curfew_core::account::Account;
use curfew_core::calendar::{Calendar, CalendarRecord};
use curfew_core::ports::{
    AccountStore, ErrorKind, LeaseToken, PortError, PortResult, ScheduleStore,
};
use curfew_core::schedule::{BrokenSchedule, Schedule, ScheduleList, ScheduleRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{classify, classify_fenced, retrying};

pub use operations::{part_marker, shard_marker, LISTING_BYTES};
pub use provision::create_table;
pub use targets::inventory_bucket;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// The state table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    /// The most bytes of target keys a shard's marker lists ([`operations::LISTING_BYTES`]).
    pub(crate) listing_bytes: usize,
    /// The account-regions this process found without a baseline item of the earlier layout
    /// ([`baselines::EarlierBaselines`]), shared by the store's clones.
    pub(crate) earlier_baselines: Arc<baselines::EarlierBaselines>,
}

impl DynamoStore {
    /// A store over `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            listing_bytes: operations::LISTING_BYTES,
            earlier_baselines: Arc::default(),
        }
    }

    /// The same store, listing at most `bytes` of target keys on a shard's marker (a shard
    /// with more writes a task item per target): for tests of both ways of planning.
    pub fn with_listing_bytes(mut self, bytes: usize) -> Self {
        self.listing_bytes = bytes;
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    pub(crate) async fn get(&self, pk: &str, sk: &str) -> PortResult<Option<Item>> {
        retrying(|| async {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .consistent_read(true)
                .send()
                .await
                .map(|o| o.item)
                .map_err(|e| classify("reading the state table", e))
        })
        .await
    }

    /// The items at `keys` that exist (at most 100 keys), read consistently in one
    /// BatchGetItem; keys DynamoDB leaves unprocessed (throttling) are asked again with backoff.
    pub(crate) async fn batch_get(&self, keys: Vec<Item>) -> PortResult<Vec<Item>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut pending = keys;
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending.clone()))
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::with_source(ErrorKind::Invalid, "building a read", e))?;
            let out = retrying(|| async {
                self.client
                    .batch_get_item()
                    .request_items(&self.table, request.clone())
                    .send()
                    .await
                    .map_err(|e| classify("reading the state table", e))
            })
            .await?;
            found.extend(
                out.responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default(),
            );
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if !pending.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(found)
    }

    /// Every item under `pk` whose sort key starts with `sk_prefix`, following pages.
    pub(crate) async fn query(&self, pk: &str, sk_prefix: &str) -> PortResult<Vec<Item>> {
        retrying::<Vec<Item>, _, _>(|| async {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true);
            // DynamoDB rejects an empty begins_with operand: no prefix means the whole partition.
            let request = if sk_prefix.is_empty() {
                request.key_condition_expression("pk = :pk")
            } else {
                request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(sk_prefix))
            };
            request
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("querying the state table", e))
        })
        .await
    }

    pub(crate) async fn put(&self, mut item: Item, pk: &str, sk: &str) -> PortResult<()> {
        item.insert("pk".into(), s(pk));
        item.insert("sk".into(), s(sk));
        retrying(|| async {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("writing the state table", e))
        })
        .await
    }

    /// Puts `item` only if no item has its key. False if one did.
    pub(crate) async fn put_new(&self, mut item: Item, pk: &str, sk: &str) -> PortResult<bool> {
        item.insert("pk".into(), s(pk));
        item.insert("sk".into(), s(sk));
        let result = retrying(|| async {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
                .map_err(|e| classify("writing the state table", e))
        })
        .await;
        conditional(result)
    }

    pub(crate) async fn delete(&self, pk: &str, sk: &str) -> PortResult<bool> {
        let result = retrying(|| async {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .condition_expression("attribute_exists(pk)")
                .send()
                .await
                .map_err(|e| classify("deleting from the state table", e))
        })
        .await;
        conditional(result)
    }
}

impl DynamoStore {
    /// Runs `write` only while the lease item of `target_key` still holds `lease`'s token: one
    /// transaction of the lease item's condition and the write. This fencing keeps a delivery
    /// whose lease moved on from changing anything. True if written; false if the write's own
    /// condition failed; [`ErrorKind::LeaseLost`] if the lease moved on. (The writes of the
    /// lease item itself — the baseline it carries, the mark of a change in flight — are
    /// conditioned on the token directly, one item and no transaction.)
    pub(crate) async fn fenced(
        &self,
        what: &str,
        target_key: &str,
        lease: &LeaseToken,
        write: TransactWriteItem,
    ) -> PortResult<bool> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(target_pk(target_key)))
            .key("sk", s("LEASE"))
            .condition_expression("holder = :token")
            .expression_attribute_values(":token", s(lease.token.clone()))
            .build()
            .map_err(|e| PortError::with_source(ErrorKind::Invalid, "building a lease check", e))?;
        let items = vec![
            TransactWriteItem::builder().condition_check(check).build(),
            write,
        ];
        let result = retrying(|| async {
            self.client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
                .map_err(|e| classify_fenced(what, e))
        })
        .await;
        conditional(result)
    }
}

/// Sizes as an attribute (a map of min, max and desired).
pub(crate) fn sizes_value(sizes: curfew_core::target::Sizes) -> PortResult<AttributeValue> {
    serde_dynamo::to_attribute_value(sizes)
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "encoding sizes", e))
}

/// The partition of a target's baseline and lease items.
pub(crate) fn target_pk(target_key: &str) -> String {
    format!("TARGET#{target_key}")
}

/// A failed condition is an answer (false), not an error.
pub(crate) fn conditional<T>(result: PortResult<T>) -> PortResult<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.kind == ErrorKind::ConditionFailed => Ok(false),
        Err(e) => Err(e),
    }
}

/// The primary key of an item.
pub(crate) fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Index sort keys: fixed-width UTC with milliseconds, so string order is time order.
pub(crate) fn index_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> PortResult<Item> {
    serde_dynamo::to_item(value)
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "encoding a state item", e))
}

pub(crate) fn decode<T: DeserializeOwned>(item: Item) -> PortResult<T> {
    serde_dynamo::from_item(item)
        .map_err(|e| PortError::with_source(ErrorKind::Other, "decoding a state item", e))
}

fn schedule_item(schedule: &Schedule) -> PortResult<Item> {
    let mut item = encode(&ScheduleRecord::from(schedule.clone()))?;
    // Only enabled schedules with a next fire are in the due index, so the poller's Query
    // never sees disabled ones.
    if let (true, Some(next)) = (schedule.enabled, schedule.next_fire) {
        item.insert("gsi1pk".into(), s("DUE"));
        item.insert("gsi1sk".into(), s(index_time(next)));
    }
    // The poller reads the enforced schedules every tick: an index of just those, never all.
    if schedule.enabled && schedule.enforce {
        item.insert("gsi2pk".into(), s("ENFORCE"));
        item.insert("gsi2sk".into(), s(schedule.name.clone()));
    }
    Ok(item)
}

/// A schedule item as a schedule, or as broken with what is wrong with it: an item an older
/// version or a hand edit left (a field missing, a cron or zone now refused) must not make
/// every read of the schedules fail.
fn decode_schedule(item: Item) -> Result<Schedule, BrokenSchedule> {
    // The name from the key, which every schedule item has, even one with no `name` field.
    let name = item
        .get("sk")
        .and_then(|sk| sk.as_s().ok())
        .and_then(|sk| sk.strip_prefix("SCHEDULE#"))
        .unwrap_or_default()
        .to_string();
    let broken = |problem: String| BrokenSchedule {
        name: name.clone(),
        problem,
    };
    let record: ScheduleRecord =
        serde_dynamo::from_item(item).map_err(|e| broken(e.to_string()))?;
    Schedule::try_from(record).map_err(|e| broken(e.to_string()))
}

/// Sorts decoded schedule items into the valid and the broken.
fn schedule_list(
    decoded: impl IntoIterator<Item = Result<Schedule, BrokenSchedule>>,
) -> ScheduleList {
    let mut list = ScheduleList::default();
    for schedule in decoded {
        match schedule {
            Ok(s) => list.schedules.push(s),
            Err(b) => list.broken.push(b),
        }
    }
    list
}

/// True when a schedule item is in the due index at or before `now` (read from the index
/// attributes themselves, so it holds for a broken item too).
fn due_at(item: &Item, now: DateTime<Utc>) -> bool {
    let attr = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
    attr("gsi1pk").is_some_and(|pk| pk == "DUE")
        && attr("gsi1sk").is_some_and(|sk| sk.as_str() <= index_time(now).as_str())
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn put_account(&self, account: &Account) -> PortResult<()> {
        self.put(
            encode(account)?,
            "ACCOUNTS",
            &format!("ACCOUNT#{}", account.id),
        )
        .await
    }

    async fn get_account(&self, id: &str) -> PortResult<Option<Account>> {
        self.get("ACCOUNTS", &format!("ACCOUNT#{id}"))
            .await?
            .map(decode)
            .transpose()
    }

    async fn list_accounts(&self) -> PortResult<Vec<Account>> {
        self.query("ACCOUNTS", "ACCOUNT#")
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    async fn delete_account(&self, id: &str) -> PortResult<bool> {
        self.delete("ACCOUNTS", &format!("ACCOUNT#{id}")).await
    }
}

#[async_trait]
impl ScheduleStore for DynamoStore {
    async fn create_schedule(&self, schedule: &Schedule) -> PortResult<()> {
        let created = self
            .put_new(
                schedule_item(schedule)?,
                "SCHEDULES",
                &format!("SCHEDULE#{}", schedule.name),
            )
            .await?;
        if created {
            Ok(())
        } else {
            Err(PortError::new(
                ErrorKind::ConditionFailed,
                format!(
                    "invalid name: a schedule named {:?} already exists",
                    schedule.name
                ),
            ))
        }
    }

    async fn get_schedule(&self, name: &str) -> PortResult<Option<Schedule>> {
        Ok(self
            .get("SCHEDULES", &format!("SCHEDULE#{name}"))
            .await?
            .map(decode_schedule)
            .transpose()?)
    }

    async fn list_schedules(&self) -> PortResult<ScheduleList> {
        Ok(schedule_list(
            self.query("SCHEDULES", "SCHEDULE#")
                .await?
                .into_iter()
                .map(decode_schedule),
        ))
    }

    async fn delete_schedule(&self, name: &str) -> PortResult<bool> {
        self.delete("SCHEDULES", &format!("SCHEDULE#{name}")).await
    }

    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        next_fire: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        let Some(mut schedule) = self.get_schedule(name).await? else {
            return Ok(false);
        };
        schedule.enabled = enabled;
        schedule.next_fire = if enabled { next_fire } else { None };
        self.put(
            schedule_item(&schedule)?,
            "SCHEDULES",
            &format!("SCHEDULE#{name}"),
        )
        .await?;
        Ok(true)
    }

    async fn due_schedules(&self, now: DateTime<Utc>) -> PortResult<ScheduleList> {
        let items: Vec<Item> = retrying(|| async {
            self.client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :due AND gsi1sk <= :now")
                .expression_attribute_values(":due", s("DUE"))
                .expression_attribute_values(":now", s(index_time(now)))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("querying due schedules", e))
        })
        .await?;
        // gsi1 projects every attribute, so its items are the schedules: no second read per
        // due schedule (issue 9 measured 2.0 items read per due schedule with one). The index
        // is eventually consistent, and a stale entry is harmless: a fire time another poller
        // already fired finds its fire key taken (the operation's conditional create), and
        // `advance_schedule` only moves a schedule whose next fire is still the one read. A
        // schedule edited or disabled within the index's propagation delay (well under a
        // second) fires by its state of that instant before, as if the change had come later.
        let due: Vec<Item> = items.into_iter().filter(|item| due_at(item, now)).collect();
        Ok(schedule_list(due.into_iter().map(decode_schedule)))
    }

    async fn enforced_schedules(&self) -> PortResult<ScheduleList> {
        let items: Vec<Item> = retrying(|| async {
            self.client
                .query()
                .table_name(&self.table)
                .index_name("gsi2")
                .key_condition_expression("gsi2pk = :enforce")
                .expression_attribute_values(":enforce", s("ENFORCE"))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("querying enforced schedules", e))
        })
        .await?;
        Ok(schedule_list(items.into_iter().map(decode_schedule)))
    }

    async fn create_calendar(&self, calendar: &Calendar, replace: bool) -> PortResult<()> {
        let sk = format!("CALENDAR#{}", calendar.name);
        let item = encode(&CalendarRecord::from(calendar.clone()))?;
        if replace {
            return self.put(item, "CALENDARS", &sk).await;
        }
        if self.put_new(item, "CALENDARS", &sk).await? {
            Ok(())
        } else {
            Err(PortError::new(
                ErrorKind::ConditionFailed,
                format!("a calendar named {:?} already exists", calendar.name),
            ))
        }
    }

    async fn get_calendar(&self, name: &str) -> PortResult<Option<Calendar>> {
        self.get("CALENDARS", &format!("CALENDAR#{name}"))
            .await?
            .map(decode::<Calendar>)
            .transpose()
    }

    async fn list_calendars(&self) -> PortResult<Vec<Calendar>> {
        self.query("CALENDARS", "CALENDAR#")
            .await?
            .into_iter()
            .map(decode::<Calendar>)
            .collect()
    }

    async fn delete_calendar(&self, name: &str) -> PortResult<bool> {
        self.delete("CALENDARS", &format!("CALENDAR#{name}")).await
    }

    async fn advance_schedule(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("SCHEDULES"))
            .key("sk", s(format!("SCHEDULE#{name}")))
            .condition_expression("gsi1sk = :expected")
            .expression_attribute_values(":expected", s(index_time(expected)));
        let update = match next {
            Some(next) => update
                .update_expression("SET next_fire = :next, gsi1sk = :next_key")
                .expression_attribute_values(
                    ":next",
                    s(next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                )
                .expression_attribute_values(":next_key", s(index_time(next))),
            None => update.update_expression("REMOVE next_fire, gsi1pk, gsi1sk"),
        };
        let result = retrying(|| async {
            update
                .clone()
                .send()
                .await
                .map_err(|e| classify("advancing a schedule", e))
        })
        .await;
        conditional(result)
    }
}

/// What the adapters' unit tests share.
#[cfg(test)]
mod test_support {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;

    /// A TransactWriteItems cancelled with one reason code per item, in order (`None`,
    /// `ConditionalCheckFailed`, ...), as DynamoDB answers it.
    pub(super) fn cancelled(reasons: &[&str]) -> TransactWriteItemsError {
        TransactWriteItemsError::TransactionCanceledException(
            TransactionCanceledException::builder()
                .message(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons",
                )
                .set_cancellation_reasons(Some(
                    reasons
                        .iter()
                        .map(|code| CancellationReason::builder().code(*code).build())
                        .collect(),
                ))
                .meta(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("TransactionCanceledException")
                        .build(),
                )
                .build(),
        )
    }
}
