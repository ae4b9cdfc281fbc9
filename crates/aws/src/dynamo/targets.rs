//! Per-target state in the state table: leases (and the baselines they carry, see
//! `baselines.rs`), cluster holds, overrides, the inventory cache.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, PutRequest, ReturnValue, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, Duration, Utc};
use curfew_core::cluster_hold::ClusterHold;
use curfew_core::decision::Action;
use curfew_core::inventory::{self, StoredBucket};
use curfew_core::ports::{
    Baseline, ChangeInFlight, ErrorKind, Interrupted, Lease, LeaseToken, Override, PortError,
    PortResult, TargetStore,
};
use curfew_core::target::Target;

use super::baselines::lease_lost;
use super::{conditional, decode, encode, n, s, sizes_value, target_pk, DynamoStore, Item};
use crate::error::{classify, retrying};

/// The partition of a cluster's hold record.
fn cluster_pk(cluster_key: &str) -> String {
    format!("CLUSTER#{cluster_key}")
}

fn inventory_pk(account: &str, region: &str) -> String {
    format!("INV#{account}#{region}")
}

/// The sort key of a target's own inventory item, as earlier versions wrote the cache (now
/// buckets of many targets: `curfew_core::inventory`). Still read, and deleted by a refresh.
#[cfg(test)]
fn inventory_sk(target: &Target) -> String {
    format!("T#{}#{}", target.kind, target.display_name())
}

pub(super) fn millis(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn string(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

impl DynamoStore {
    /// BatchWriteItem in chunks of 25, re-sending unprocessed items with backoff.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> PortResult<()> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for attempt in 0..8u32 {
                let out = retrying(|| async {
                    self.client
                        .batch_write_item()
                        .request_items(&self.table, pending.clone())
                        .send()
                        .await
                        .map_err(|e| classify("batch-writing the state table", e))
                })
                .await?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            if !pending.is_empty() {
                return Err(curfew_core::ports::PortError::new(
                    curfew_core::ports::ErrorKind::Throttled,
                    format!(
                        "{} inventory writes still unprocessed after retries",
                        pending.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The change in flight a lease item is marked with, if any.
pub(super) fn interrupted(item: &Item) -> Option<Interrupted> {
    let sizes = |name: &str| {
        item.get(name)
            .and_then(|v| serde_dynamo::from_attribute_value(v.clone()).ok())
    };
    Some(Interrupted {
        op_id: string(item, "inflight_op")?,
        action: Action::parse(&string(item, "inflight_action")?)?,
        planned: sizes("inflight_to"),
        before: sizes("inflight_from"),
        marked_at: millis(item, "inflight_at").and_then(DateTime::from_timestamp_millis),
        update_id: string(item, "inflight_update"),
    })
}

/// The attributes of the lease's mark of a change in flight, and the condition that the lease
/// is `lease`'s and unexpired at the change's time: the values shared by every write that
/// marks a change (`mark_in_flight`, `save_baseline`).
pub(super) fn change_values(lease: &LeaseToken, change: &ChangeInFlight) -> PortResult<Item> {
    Ok(Item::from([
        (":op".to_string(), s(lease.op_id.clone())),
        (":action".to_string(), s(lease.action.as_str())),
        (":to".to_string(), sizes_value(change.planned)?),
        (":from".to_string(), sizes_value(change.before)?),
        (":at".to_string(), n(change.at.timestamp_millis())),
        token_value(lease),
    ]))
}

/// Sets the mark of a change in flight from [`change_values`]; a new mark has no update id yet.
pub(super) const SET_CHANGE: &str = "inflight_op = :op, inflight_action = :action, \
     inflight_to = :to, inflight_from = :from, inflight_at = :at";

/// The mark's attribute a new mark starts without: the update id of the change it replaces.
pub(super) const MARK_UPDATE: &str = "inflight_update";

/// Every attribute of the mark, removed when a finished task's lease is released.
const MARK: &str =
    "inflight_op, inflight_action, inflight_to, inflight_from, inflight_at, inflight_update";

/// The lease is this delivery's and has not expired at the change's time: a delivery whose
/// lease ran out may have had its task given up meanwhile (`dead_letter_task` waits for that),
/// and must not touch the target then.
pub(super) const HELD_AT_CHANGE: &str = "holder = :token AND lease_expires >= :at";

impl DynamoStore {
    /// One conditional `UpdateItem` of the target's lease item (throttling retried); false when
    /// `condition` did not hold. Every write of the lease after it is taken is one of these,
    /// fenced by the delivery's token in `values` (`:token`).
    pub(super) async fn update_lease(
        &self,
        target_key: &str,
        what: &str,
        update: &str,
        condition: &str,
        values: Item,
    ) -> PortResult<bool> {
        let pk = target_pk(target_key);
        let result = retrying(|| async {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(pk.clone()))
                .key("sk", s("LEASE"))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_values(Some(values.clone()))
                .send()
                .await
                .map_err(|e| classify(what, e))
        })
        .await;
        conditional(result)
    }
}

/// The fencing token's expression value, for [`DynamoStore::update_lease`].
pub(super) fn token_value(lease: &LeaseToken) -> (String, AttributeValue) {
    (":token".to_string(), s(lease.token.clone()))
}

fn key_of(pk: &str, sk: &str) -> Item {
    Item::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

#[async_trait]
impl TargetStore for DynamoStore {
    async fn get_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>> {
        self.read_baseline(target_key).await
    }

    async fn save_baseline(
        &self,
        baseline: &Baseline,
        lease: &LeaseToken,
        replacing_own: bool,
        change: &ChangeInFlight,
    ) -> PortResult<bool> {
        self.write_baseline(baseline, lease, replacing_own, change)
            .await
    }

    async fn retire_baseline(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        self.remove_baseline(target_key, saved_by, lease).await
    }

    async fn asleep_baselines(&self, account: &str, region: &str) -> PortResult<Vec<Baseline>> {
        self.baselines_asleep(account, region).await
    }

    async fn get_cluster_hold(&self, cluster_key: &str) -> PortResult<Option<ClusterHold>> {
        self.get(&cluster_pk(cluster_key), "HOLD")
            .await?
            .map(decode)
            .transpose()
    }

    async fn put_cluster_hold(
        &self,
        hold: &ClusterHold,
        read: u64,
        target_key: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        let mut item = encode(hold)?;
        item.insert("pk".into(), s(cluster_pk(&hold.cluster_key)));
        item.insert("sk".into(), s("HOLD"));
        // Compare-and-set on the generation read: two node groups of one cluster joining or
        // leaving at once never lose each other's membership, and what a joiner read from the
        // cluster is saved only if no pause or restore happened since it saw the record.
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        let put = if read == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("generation = :g")
                .expression_attribute_values(":g", n(read))
        };
        let put = put.build().map_err(|e| {
            curfew_core::ports::PortError::with_source(
                ErrorKind::Invalid,
                "building a cluster hold write",
                e,
            )
        })?;
        self.fenced(
            "writing a cluster's hold",
            target_key,
            lease,
            TransactWriteItem::builder().put(put).build(),
        )
        .await
    }

    async fn acquire_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        op_created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> PortResult<Lease> {
        let pk = target_pk(target_key);
        // Free (or expired) AND no newer operation has acted on the target. The holder is this
        // delivery's own token, never the operation: two copies of one task message must not
        // both hold it. Expiry is compared here, not left to TTL: TTL deletion is late or (in
        // emulators) never.
        let result = retrying(|| async {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(pk.clone()))
                .key("sk", s("LEASE"))
                .update_expression(
                    "SET holder = :token, holder_op = :op, lease_expires = :exp, \
                     last_op = :op, last_op_at = :at",
                )
                .condition_expression(
                    "(attribute_not_exists(holder) OR lease_expires < :now) \
                     AND (attribute_not_exists(last_op_at) OR last_op_at <= :at)",
                )
                .expression_attribute_values(":token", s(lease.token.clone()))
                .expression_attribute_values(":op", s(lease.op_id.clone()))
                .expression_attribute_values(":exp", n((now + ttl).timestamp_millis()))
                .expression_attribute_values(":now", n(now.timestamp_millis()))
                .expression_attribute_values(":at", n(op_created_at.timestamp_millis()))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| classify("taking a target lease", e))
        })
        .await;
        match result {
            Ok(out) => {
                let taken = out.attributes.unwrap_or_default();
                let baseline = match self.baseline_taken(target_key, &taken).await {
                    Ok(baseline) => baseline,
                    Err(e) => {
                        // Not left held for its TTL by a read that failed after the take. If
                        // the release fails too, the lease expires as after a crash: the
                        // read's error is the one to report.
                        let _expires_instead = self.release_lease(target_key, lease, false).await;
                        return Err(e);
                    }
                };
                Ok(Lease::Acquired {
                    interrupted: interrupted(&taken),
                    baseline,
                })
            }
            Err(e) if e.kind == ErrorKind::ConditionFailed => {
                let item = self.get(&pk, "LEASE").await?.unwrap_or_default();
                let newer = millis(&item, "last_op_at")
                    .is_some_and(|at| at > op_created_at.timestamp_millis());
                let last_op = string(&item, "last_op").unwrap_or_default();
                if newer && last_op != lease.op_id {
                    Ok(Lease::Superseded {
                        by: last_op,
                        mark: interrupted(&item),
                    })
                } else {
                    Ok(Lease::Held {
                        by: string(&item, "holder_op").unwrap_or(last_op),
                    })
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn mark_in_flight(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        change: &ChangeInFlight,
    ) -> PortResult<()> {
        let what = "marking a change in flight";
        let update = format!("SET {SET_CHANGE} REMOVE {MARK_UPDATE}");
        let values = change_values(lease, change)?;
        if self
            .update_lease(target_key, what, &update, HELD_AT_CHANGE, values)
            .await?
        {
            Ok(())
        } else {
            Err(lease_lost(what))
        }
    }

    async fn record_update(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        update_id: &str,
    ) -> PortResult<()> {
        let what = "recording a change's update";
        let update = format!("SET {MARK_UPDATE} = :update");
        let values = Item::from([(":update".to_string(), s(update_id)), token_value(lease)]);
        if self
            .update_lease(target_key, what, &update, "holder = :token", values)
            .await?
        {
            Ok(())
        } else {
            Err(lease_lost(what))
        }
    }

    async fn change_in_flight(&self, target_key: &str) -> PortResult<Option<Interrupted>> {
        let item = self.get(&target_pk(target_key), "LEASE").await?;
        Ok(item.as_ref().and_then(interrupted))
    }

    async fn release_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        finished: bool,
    ) -> PortResult<()> {
        // A finished task's change is seen through: its mark goes with the lease.
        let removed = if finished {
            format!("REMOVE holder, holder_op, lease_expires, {MARK}")
        } else {
            "REMOVE holder, holder_op, lease_expires".to_string()
        };
        let values = Item::from([token_value(lease)]);
        // Refused: the lease moved on, and is its new holder's to release.
        self.update_lease(
            target_key,
            "releasing a target lease",
            &removed,
            "holder = :token",
            values,
        )
        .await
        .map(|_| ())
    }

    async fn put_override(&self, o: &Override) -> PortResult<()> {
        let mut item = encode(o)?;
        item.insert("expires_at".into(), n(o.awake_until.timestamp() + 86_400));
        self.put(item, "OVERRIDES", &o.id).await
    }

    async fn active_overrides(&self, now: DateTime<Utc>) -> PortResult<Vec<Override>> {
        let all: Vec<Override> = self
            .query("OVERRIDES", "")
            .await?
            .into_iter()
            .map(decode)
            .collect::<PortResult<_>>()?;
        Ok(all.into_iter().filter(|o| o.awake_until > now).collect())
    }

    async fn remove_override(&self, id: &str) -> PortResult<bool> {
        self.delete("OVERRIDES", id).await
    }

    async fn put_inventory(
        &self,
        account: &str,
        region: &str,
        targets: &[Target],
        now: DateTime<Utc>,
    ) -> PortResult<()> {
        let pk = inventory_pk(account, region);
        // What the cache holds now: a refresh rewrites only the buckets whose targets changed.
        // Each wave of a real schedule comes hours after the last, past the cache's freshness,
        // so rewriting an unchanged cache would cost every wave (docs/PERFORMANCE.md).
        let held = InventoryItems::of(self.query(&pk, "").await?);
        let refresh = inventory::refresh(&held.buckets, targets);
        let relaying = refresh.forget_first || !held.earlier_layout.is_empty();
        if relaying && held.refreshed_at.is_some() {
            // A reader of the cache as it stood would meet a half-written layout: the cache is
            // forgotten until the new one is whole, and operations list live meanwhile.
            self.delete(&pk, "META").await?;
        }
        let mut requests = Vec::new();
        for (index, body) in &refresh.put {
            let item = inventory_bucket(account, region, *index, refresh.buckets, body);
            requests.push(put_request(item)?);
        }
        let gone = refresh.delete.iter().map(|index| bucket_sk(*index));
        let earlier = held
            .earlier_layout
            .iter()
            .filter_map(|item| string(item, "sk"));
        for sk in gone.chain(earlier) {
            requests.push(delete_request(key_of(&pk, &sk))?);
        }
        self.batch_write(requests).await?;
        self.put(
            inventory_meta(now, targets.len(), refresh.buckets),
            &pk,
            "META",
        )
        .await
    }

    async fn invalidate_inventory(&self, account: &str, region: &str) -> PortResult<()> {
        // Only the marker goes: without it the shard counts as never discovered, and the next
        // listing rewrites only the buckets that changed.
        self.delete(&inventory_pk(account, region), "META")
            .await
            .map(|_| ())
    }

    async fn get_inventory(
        &self,
        account: &str,
        region: &str,
    ) -> PortResult<Option<(DateTime<Utc>, Vec<Target>)>> {
        let held = InventoryItems::of(self.query(&inventory_pk(account, region), "").await?);
        let Some(refreshed_at) = held.refreshed_at else {
            return Ok(None);
        };
        let targets = match held.meta_buckets {
            // The layout the marker was written with: buckets of its count only (others are
            // what a refresh that stopped part-way left).
            Some(count) => {
                let mut targets = Vec::new();
                for bucket in held.buckets.iter().filter(|b| b.of == count) {
                    targets.extend(inventory::decode(account, region, &bucket.body).map_err(
                        |e| {
                            PortError::with_source(
                                ErrorKind::Other,
                                "decoding a bucket of the inventory cache",
                                e,
                            )
                        },
                    )?);
                }
                targets
            }
            // Written by an earlier version: an item a target.
            None => held
                .earlier_layout
                .into_iter()
                .map(decode)
                .collect::<PortResult<_>>()?,
        };
        Ok(Some((refreshed_at, targets)))
    }
}

/// A bucket's attribute with the bucket count it was laid out for.
const BUCKET_COUNT: &str = "of";
/// A bucket's attribute with its targets (`curfew_core::inventory::encode`).
const BUCKET_BODY: &str = "body";
/// The marker's attribute with the bucket count of the cache it marks; absent on a marker an
/// earlier version wrote, whose cache is an item a target.
const META_BUCKETS: &str = "buckets";

fn bucket_sk(index: u32) -> String {
    format!("B#{index:05}")
}

/// The item `put_inventory` writes for bucket `index` (of `of`) of `account` and `region`'s
/// cache. Public so the test harness's counting store bills the item the adapter writes.
pub fn inventory_bucket(
    account: &str,
    region: &str,
    index: u32,
    of: u32,
    body: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    let mut item = key_of(&inventory_pk(account, region), &bucket_sk(index));
    item.insert(BUCKET_COUNT.into(), n(of));
    item.insert(BUCKET_BODY.into(), s(body));
    item
}

fn inventory_meta(now: DateTime<Utc>, targets: usize, buckets: u32) -> Item {
    Item::from([
        ("refreshed_at".to_string(), s(now.to_rfc3339())),
        ("targets".to_string(), n(targets)),
        (META_BUCKETS.to_string(), n(buckets)),
    ])
}

fn put_request(item: Item) -> PortResult<WriteRequest> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(|e| {
            PortError::with_source(ErrorKind::Invalid, "building an inventory write", e)
        })?;
    Ok(WriteRequest::builder().put_request(put).build())
}

fn delete_request(key: Item) -> PortResult<WriteRequest> {
    let delete = DeleteRequest::builder()
        .set_key(Some(key))
        .build()
        .map_err(|e| {
            PortError::with_source(ErrorKind::Invalid, "building an inventory delete", e)
        })?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

/// The items of one account and region's inventory partition, sorted out.
#[derive(Default)]
struct InventoryItems {
    /// The marker's `refreshed_at`, if the marker is there.
    refreshed_at: Option<DateTime<Utc>>,
    /// The marker's bucket count (none on an earlier version's marker).
    meta_buckets: Option<u32>,
    buckets: Vec<StoredBucket>,
    /// The items an earlier version wrote, one a target.
    earlier_layout: Vec<Item>,
}

impl InventoryItems {
    fn of(items: Vec<Item>) -> Self {
        let mut held = InventoryItems::default();
        for item in items {
            match string(&item, "sk").as_deref() {
                Some("META") => {
                    held.refreshed_at = string(&item, "refreshed_at")
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc));
                    held.meta_buckets =
                        millis(&item, META_BUCKETS).and_then(|c| u32::try_from(c).ok());
                }
                Some(sk) if sk.starts_with("B#") => {
                    let index = sk[2..].parse::<u32>().ok();
                    let of = millis(&item, BUCKET_COUNT).and_then(|c| u32::try_from(c).ok());
                    if let (Some(index), Some(of), Some(body)) =
                        (index, of, string(&item, BUCKET_BODY))
                    {
                        held.buckets.push(StoredBucket { index, of, body });
                    }
                }
                Some(sk) if sk.starts_with("T#") => held.earlier_layout.push(item),
                _ => {}
            }
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client};
    use chrono::TimeZone;
    use curfew_core::target::Sizes;

    fn lease() -> LeaseToken {
        LeaseToken {
            op_id: "op-1".into(),
            action: Action::Stop,
            token: "op-1/t1".into(),
        }
    }

    /// Takes `key`'s lease at `now` and checks the take found neither a change in flight nor a
    /// baseline.
    async fn take_finds_nothing(store: &DynamoStore, key: &str, now: DateTime<Utc>) {
        let got = store
            .acquire_lease(key, &lease(), now, now, Duration::minutes(15))
            .await
            .unwrap();
        assert_eq!(
            got,
            Lease::Acquired {
                interrupted: None,
                baseline: None
            }
        );
    }

    #[tokio::test]
    async fn a_lease_requires_a_free_slot_and_no_newer_operation_and_holds_the_deliverys_token() {
        let lease_rule = mock!(Client::update_item)
            .match_requests(|r| {
                let cond = r.condition_expression().unwrap_or_default();
                cond.contains("lease_expires < :now")
                    && cond.contains("last_op_at <= :at")
                    && !cond.contains("holder = :")
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":token"))
                        == Some(&s("op-1/t1"))
                    && r.key().and_then(|k| k.get("sk")) == Some(&s("LEASE"))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        // No baseline on the lease item: the earlier layout's baseline item is read, once.
        let legacy_rule = mock!(Client::get_item)
            .match_requests(|r| r.key().and_then(|k| k.get("sk")) == Some(&s("BASELINE")))
            .then_output(|| GetItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, [&lease_rule, &legacy_rule]);
        let store = DynamoStore::new(client, "curfew-state");
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        take_finds_nothing(&store, "k", now).await;
        assert_eq!(legacy_rule.num_calls(), 1);
    }

    /// A first take in an account-region asks gsi1 once whether any baseline item of the
    /// earlier layout is left there (`left`: the count it answers); with none, no take of that
    /// account-region reads one. Returns the GetItems of those items and the Queries made.
    async fn takes_in_one_account_region(left: i32) -> (usize, usize) {
        use aws_sdk_dynamodb::operation::query::QueryOutput;
        let lease_rule =
            mock!(Client::update_item).then_output(|| UpdateItemOutput::builder().build());
        let query_rule = mock!(Client::query)
            .match_requests(|r| {
                r.index_name() == Some("gsi1")
                    && r.limit() == Some(1)
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":asleep"))
                        == Some(&s("ASLEEP#111111111111#eu-west-1"))
            })
            .then_output(move || QueryOutput::builder().count(left).build());
        let legacy_rule = mock!(Client::get_item)
            .match_requests(|r| r.key().and_then(|k| k.get("sk")) == Some(&s("BASELINE")))
            .then_output(|| GetItemOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            aws_smithy_mocks::RuleMode::MatchAny,
            [&lease_rule, &query_rule, &legacy_rule]
        );
        let store = DynamoStore::new(client, "curfew-state");
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        for name in ["web", "api", "db"] {
            let key = format!("111111111111#eu-west-1#asg#{name}");
            take_finds_nothing(&store.clone(), &key, now).await;
        }
        (legacy_rule.num_calls(), query_rule.num_calls())
    }

    #[tokio::test]
    async fn takes_where_no_earlier_baseline_item_is_left_read_none_after_one_query() {
        assert_eq!(takes_in_one_account_region(0).await, (0, 1));
    }

    #[tokio::test]
    async fn takes_where_an_earlier_baseline_item_is_left_read_each_targets() {
        assert_eq!(takes_in_one_account_region(1).await, (3, 1));
    }

    /// A start's take: the lease item as it was carries the baseline, which the take returns
    /// without reading anything more (the mock answers nothing but the UpdateItem).
    #[tokio::test]
    async fn a_take_returns_the_baseline_its_lease_item_carries_without_another_read() {
        let saved = Baseline {
            target_key: "111111111111#eu-west-1#asg#web".into(),
            sizes: Sizes::new(1, 4, 2),
            op_id: "op-0".into(),
            saved_at: Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(),
            held: Default::default(),
            ca_tags: Vec::new(),
            cluster_hold: false,
        };
        let value: AttributeValue = serde_dynamo::to_attribute_value(&saved).unwrap();
        let lease_rule = mock!(Client::update_item).then_output(move || {
            UpdateItemOutput::builder()
                .attributes("baseline", value.clone())
                .attributes("last_op", s("op-0"))
                .build()
        });
        let client = mock_client!(aws_sdk_dynamodb, [&lease_rule]);
        let store = DynamoStore::new(client, "curfew-state");
        let now = Utc.with_ymd_and_hms(2027, 1, 5, 7, 0, 0).unwrap();
        let got = store
            .acquire_lease(&saved.target_key, &lease(), now, now, Duration::minutes(15))
            .await
            .unwrap();
        assert_eq!(
            got,
            Lease::Acquired {
                interrupted: None,
                baseline: Some(saved)
            }
        );
    }

    /// A stop's take of a target a baseline was saved for on its lease item before (and
    /// retired since): the item says no baseline of the earlier layout is left, so the take
    /// reads nothing more (the mock answers nothing but the UpdateItem); a save marks it.
    #[tokio::test]
    async fn a_take_reads_no_earlier_layout_baseline_once_one_was_saved_on_the_lease_item() {
        let lease_rule = mock!(Client::update_item)
            .match_requests(|r| {
                r.condition_expression()
                    .is_some_and(|c| c.contains("last_op_at"))
            })
            .then_output(|| {
                UpdateItemOutput::builder()
                    .attributes("no_legacy", AttributeValue::Bool(true))
                    .attributes("last_op", s("op-0"))
                    .build()
            });
        let save_rule = mock!(Client::update_item)
            .match_requests(|r| {
                r.update_expression()
                    .is_some_and(|u| u.contains("no_legacy = :no_legacy"))
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":no_legacy"))
                        == Some(&AttributeValue::Bool(true))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, [&lease_rule, &save_rule]);
        let store = DynamoStore::new(client, "curfew-state");
        let key = "111111111111#eu-west-1#asg#web";
        let now = Utc.with_ymd_and_hms(2027, 1, 5, 18, 0, 0).unwrap();
        take_finds_nothing(&store, key, now).await;
        let saved = Baseline {
            target_key: key.into(),
            sizes: Sizes::new(1, 4, 2),
            op_id: "op-1".into(),
            saved_at: now,
            held: Default::default(),
            ca_tags: Vec::new(),
            cluster_hold: false,
        };
        let change = ChangeInFlight {
            before: saved.sizes,
            planned: Sizes::new(0, 0, 0),
            at: now,
        };
        assert!(store
            .save_baseline(&saved, &lease(), false, &change)
            .await
            .unwrap());
        assert_eq!(save_rule.num_calls(), 1);
    }

    /// The restore claim travels with the hold record, conditioned on the generation read and
    /// fenced by the lease; a record an earlier version wrote (no `restoring`) reads unclaimed.
    #[tokio::test]
    async fn a_cluster_holds_restore_claim_is_written_and_read_back_with_the_record() {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
        use std::sync::{Arc, Mutex};

        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        let mut hold = ClusterHold::idle("111111111111#eu-west-1#dev")
            .with_member("a")
            .with_member("b");
        hold.saved = Some(Default::default());
        let hold = hold
            .without_member("a", now)
            .without_member("b", now + Duration::minutes(15));
        let written = Arc::new(Mutex::new(None));
        let seen = written.clone();
        let put_rule = mock!(Client::transact_write_items)
            .match_requests(move |r| {
                let put = r.transact_items()[1].put().unwrap();
                *seen.lock().unwrap() = Some(put.item().clone());
                put.condition_expression() == Some("generation = :g")
                    && r.transact_items()[0].condition_check().is_some()
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, [&put_rule]);
        let store = DynamoStore::new(client, "curfew-state");
        assert!(store
            .put_cluster_hold(&hold, 3, "b-key", &lease())
            .await
            .unwrap());
        let item = written.lock().unwrap().take().unwrap();
        let claim = item["restoring"].as_m().unwrap();
        assert_eq!(claim["by"], s("b"));

        let mut earlier = item.clone();
        earlier.remove("restoring");
        let reads = [item, earlier].map(|item| {
            mock!(Client::get_item).then_output(move || {
                GetItemOutput::builder()
                    .set_item(Some(item.clone()))
                    .build()
            })
        });
        let client = mock_client!(
            aws_sdk_dynamodb,
            aws_smithy_mocks::RuleMode::Sequential,
            [&reads[0], &reads[1]]
        );
        let store = DynamoStore::new(client, "curfew-state");
        let read = store.get_cluster_hold(&hold.cluster_key).await.unwrap();
        assert_eq!(read.as_ref(), Some(&hold));
        assert_eq!(hold.restorer(now), Some("b"));
        let earlier = store.get_cluster_hold(&hold.cluster_key).await.unwrap();
        assert_eq!(earlier.unwrap().restoring, None);
    }

    fn asg(i: usize, env: &str) -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind: curfew_core::target::TargetKind::Asg,
            cluster: None,
            name: format!("group-{i}"),
            tags: [("env".to_string(), env.to_string())].into(),
            cluster_tags: Default::default(),
            instance_types: vec![],
        }
    }

    /// The items of a cache of `targets` as this version writes it, with its marker.
    fn bucketed(targets: &[Target]) -> Vec<Item> {
        let pk = inventory_pk("111111111111", "eu-west-1");
        let laid = inventory::refresh(&[], targets);
        let mut items: Vec<Item> = laid
            .put
            .iter()
            .map(|(index, body)| {
                inventory_bucket("111111111111", "eu-west-1", *index, laid.buckets, body)
            })
            .collect();
        let mut meta = inventory_meta(Utc::now(), targets.len(), laid.buckets);
        meta.extend(key_of(&pk, "META"));
        items.push(meta);
        items
    }

    /// The sort keys a refresh put and deleted (`put B#00001`, `delete T#asg#old`), sorted.
    type Written = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

    fn write_rule(written: &Written) -> aws_smithy_mocks::Rule {
        use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
        let seen = written.clone();
        mock!(Client::batch_write_item)
            .match_requests(move |r| {
                for w in &r.request_items().unwrap()["curfew-state"] {
                    let (item, what) = match (w.put_request(), w.delete_request()) {
                        (Some(put), _) => (put.item(), "put"),
                        (_, Some(delete)) => (delete.key(), "delete"),
                        _ => unreachable!("a write request puts or deletes"),
                    };
                    let line = format!("{what} {}", item["sk"].as_s().unwrap());
                    seen.lock().unwrap().push(line);
                }
                true
            })
            .then_output(|| BatchWriteItemOutput::builder().build())
    }

    fn meta_rule() -> aws_smithy_mocks::Rule {
        use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
        mock!(Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                item.get("sk") == Some(&s("META")) && item.contains_key(META_BUCKETS)
            })
            .then_output(|| PutItemOutput::builder().build())
    }

    fn forget_rule() -> aws_smithy_mocks::Rule {
        use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
        mock!(Client::delete_item)
            .match_requests(|r| r.key().and_then(|k| k.get("sk")) == Some(&s("META")))
            .then_output(|| DeleteItemOutput::builder().build())
    }

    fn query_rule(items: Vec<Item>) -> aws_smithy_mocks::Rule {
        use aws_sdk_dynamodb::operation::query::QueryOutput;
        mock!(Client::query).then_output(move || {
            QueryOutput::builder()
                .set_items(Some(items.clone()))
                .build()
        })
    }

    /// A refresh of the inventory cache rewrites only the bucket of the target that changed;
    /// the cache stays readable throughout (each wave of a real schedule refreshes it).
    #[tokio::test]
    async fn an_inventory_refresh_rewrites_only_the_bucket_whose_target_changed() {
        let mut listed: Vec<Target> = (0..400).map(|i| asg(i, "dev")).collect();
        let query = query_rule(bucketed(&listed));
        let written = Written::default();
        let (write, meta, forget) = (write_rule(&written), meta_rule(), forget_rule());
        let client = mock_client!(aws_sdk_dynamodb, [&query, &write, &meta, &forget]);
        let store = DynamoStore::new(client, "curfew-state");
        listed[7] = asg(7, "prod");
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        store
            .put_inventory("111111111111", "eu-west-1", &listed, now)
            .await
            .unwrap();

        let buckets = inventory::refresh(&[], &listed).buckets;
        assert!(buckets > 1, "{buckets} buckets");
        let own = bucket_sk(inventory::bucket_of(&listed[7].key(), buckets));
        assert_eq!(*written.lock().unwrap(), [format!("put {own}")]);
        assert_eq!(meta.num_calls(), 1);
        assert_eq!(
            forget.num_calls(),
            0,
            "an unchanged layout is never forgotten"
        );
    }

    /// A cache an earlier version wrote (an item a target) is forgotten, replaced by buckets
    /// and its items deleted; until then it still reads as it was.
    #[tokio::test]
    async fn a_cache_of_the_earlier_layout_is_forgotten_then_laid_out_in_buckets() {
        let pk = inventory_pk("111111111111", "eu-west-1");
        let old: Vec<Target> = (0..3).map(|i| asg(i, "dev")).collect();
        let mut held: Vec<Item> = old
            .iter()
            .map(|t| {
                let mut item = encode(t).unwrap();
                item.extend(key_of(&pk, &inventory_sk(t)));
                item
            })
            .collect();
        let mut meta = key_of(&pk, "META");
        meta.insert("refreshed_at".into(), s(Utc::now().to_rfc3339()));
        held.push(meta);

        let query = query_rule(held.clone());
        let client = mock_client!(aws_sdk_dynamodb, [&query]);
        let (_, read) = DynamoStore::new(client, "curfew-state")
            .get_inventory("111111111111", "eu-west-1")
            .await
            .unwrap()
            .expect("the earlier marker is read");
        assert_eq!(read, old);

        let query = query_rule(held);
        let written = Written::default();
        let (write, meta, forget) = (write_rule(&written), meta_rule(), forget_rule());
        // In this order: the marker goes before any item of the old layout does.
        let client = mock_client!(aws_sdk_dynamodb, [&query, &forget, &write, &meta]);
        let store = DynamoStore::new(client, "curfew-state");
        store
            .put_inventory("111111111111", "eu-west-1", &old, Utc::now())
            .await
            .unwrap();
        let mut seen = written.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                "delete T#asg#group-0",
                "delete T#asg#group-1",
                "delete T#asg#group-2",
                "put B#00000"
            ]
        );
        assert_eq!(forget.num_calls(), 1);
        assert_eq!(meta.num_calls(), 1);
    }

    /// A reader takes the buckets of the count its marker names: one of another count is what
    /// a refresh that stopped part-way left.
    #[tokio::test]
    async fn the_cache_reads_the_buckets_its_marker_names_only() {
        let listed: Vec<Target> = (0..400).map(|i| asg(i, "dev")).collect();
        let mut items = bucketed(&listed);
        let body = inventory::encode(&[&asg(999, "x")]);
        items.push(inventory_bucket(
            "111111111111",
            "eu-west-1",
            99,
            100,
            &body,
        ));
        let query = query_rule(items);
        let client = mock_client!(aws_sdk_dynamodb, [&query]);
        let (_, mut read) = DynamoStore::new(client, "curfew-state")
            .get_inventory("111111111111", "eu-west-1")
            .await
            .unwrap()
            .unwrap();
        read.sort_by_key(Target::key);
        let mut expected = listed;
        expected.sort_by_key(Target::key);
        assert_eq!(read, expected);
    }
}
