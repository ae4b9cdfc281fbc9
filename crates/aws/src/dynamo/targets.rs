//! Per-target state in the state table: baselines, leases, overrides, the inventory cache.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, PutRequest, ReturnValue, TransactWriteItem,
    WriteRequest,
};
use chrono::{DateTime, Duration, Utc};
use curfew_core::cluster_hold::ClusterHold;
use curfew_core::decision::Action;
use curfew_core::ports::{
    Baseline, ErrorKind, Interrupted, Lease, LeaseToken, Override, PortResult, TargetStore,
};
use curfew_core::target::Target;

use super::{conditional, decode, encode, n, s, target_pk, DynamoStore, Item, Mark};
use crate::error::{classify, retrying};

/// The index entry of a baseline (`ASLEEP#account#region`, the target key), from its target key
/// `account#region#...`.
fn asleep_index(target_key: &str) -> Option<(String, String)> {
    let mut parts = target_key.splitn(3, '#');
    let (account, region) = (parts.next()?, parts.next()?);
    Some((format!("ASLEEP#{account}#{region}"), target_key.to_string()))
}

/// The partition of a cluster's hold record.
fn cluster_pk(cluster_key: &str) -> String {
    format!("CLUSTER#{cluster_key}")
}

fn inventory_pk(account: &str, region: &str) -> String {
    format!("INV#{account}#{region}")
}

fn inventory_sk(target: &Target) -> String {
    format!("T#{}#{}", target.kind, target.display_name())
}

fn millis(item: &Item, name: &str) -> Option<i64> {
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
fn interrupted(item: &Item) -> Option<Interrupted> {
    Some(Interrupted {
        op_id: string(item, "inflight_op")?,
        action: Action::parse(&string(item, "inflight_action")?)?,
        planned: item
            .get("inflight_to")
            .and_then(|v| serde_dynamo::from_attribute_value(v.clone()).ok()),
    })
}

fn key_of(pk: &str, sk: &str) -> Item {
    Item::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

#[async_trait]
impl TargetStore for DynamoStore {
    async fn get_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>> {
        self.get(&target_pk(target_key), "BASELINE")
            .await?
            .map(decode)
            .transpose()
    }

    async fn save_baseline(
        &self,
        baseline: &Baseline,
        lease: &LeaseToken,
        replacing_own: bool,
    ) -> PortResult<bool> {
        let mut item = encode(baseline)?;
        item.insert("pk".into(), s(target_pk(&baseline.target_key)));
        item.insert("sk".into(), s("BASELINE"));
        // Indexed per account and region so the drift check finds the targets held asleep
        // with a Query per shard (no Scan, and no one hot index key at 100,000 targets).
        if let Some((pk, sk)) = asleep_index(&baseline.target_key) {
            item.insert("gsi1pk".into(), s(pk));
            item.insert("gsi1sk".into(), s(sk));
        }
        // attribute_not_exists: a second stop, or a redelivered one, never overwrites the
        // sizes saved by the first. The one exception is an operation refreshing its own
        // baseline before it ever scaled the target.
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        let put = if replacing_own {
            put.condition_expression("attribute_not_exists(pk) OR op_id = :op")
                .expression_attribute_values(":op", s(baseline.op_id.clone()))
        } else {
            put.condition_expression("attribute_not_exists(pk)")
        };
        let put = put.build().map_err(|e| {
            curfew_core::ports::PortError::with_source(
                ErrorKind::Invalid,
                "building a baseline write",
                e,
            )
        })?;
        self.fenced(
            "saving a baseline",
            &baseline.target_key,
            lease,
            Mark::Saving,
            TransactWriteItem::builder().put(put).build(),
        )
        .await
    }

    async fn retire_baseline(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        // Only the baseline the named operation saved: never one a later stop saved afresh.
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(target_pk(target_key)))
            .key("sk", s("BASELINE"))
            .condition_expression("op_id = :op")
            .expression_attribute_values(":op", s(saved_by))
            .build()
            .map_err(|e| {
                curfew_core::ports::PortError::with_source(
                    ErrorKind::Invalid,
                    "building a baseline delete",
                    e,
                )
            })?;
        self.fenced(
            "retiring a baseline",
            target_key,
            lease,
            Mark::Keep,
            TransactWriteItem::builder().delete(delete).build(),
        )
        .await
    }

    async fn asleep_baselines(&self, account: &str, region: &str) -> PortResult<Vec<Baseline>> {
        let items: Vec<Item> = retrying(|| async {
            self.client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :asleep")
                .expression_attribute_values(":asleep", s(format!("ASLEEP#{account}#{region}")))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("querying the baselines held asleep", e))
        })
        .await?;
        items.into_iter().map(decode).collect()
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
            Mark::Keep,
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
            Ok(out) => Ok(Lease::Acquired {
                interrupted: out.attributes.as_ref().and_then(interrupted),
            }),
            Err(e) if e.kind == ErrorKind::ConditionFailed => {
                let item = self.get(&pk, "LEASE").await?.unwrap_or_default();
                let newer = millis(&item, "last_op_at")
                    .is_some_and(|at| at > op_created_at.timestamp_millis());
                let last_op = string(&item, "last_op").unwrap_or_default();
                if newer && last_op != lease.op_id {
                    Ok(Lease::Superseded { by: last_op })
                } else {
                    Ok(Lease::Held {
                        by: string(&item, "holder_op").unwrap_or(last_op),
                    })
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn release_lease(
        &self,
        target_key: &str,
        lease: &LeaseToken,
        finished: bool,
    ) -> PortResult<()> {
        // A finished task's change is seen through: its mark goes with the lease.
        let removed = if finished {
            "REMOVE holder, holder_op, lease_expires, inflight_op, inflight_action, inflight_to"
        } else {
            "REMOVE holder, holder_op, lease_expires"
        };
        let result = retrying(|| async {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(target_pk(target_key)))
                .key("sk", s("LEASE"))
                .update_expression(removed)
                .condition_expression("holder = :token")
                .expression_attribute_values(":token", s(lease.token.clone()))
                .send()
                .await
                .map_err(|e| classify("releasing a target lease", e))
        })
        .await;
        conditional(result).map(|_| ())
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
        let existing: HashSet<String> = self
            .query(&pk, "T#")
            .await?
            .into_iter()
            .filter_map(|item| string(&item, "sk"))
            .collect();
        let mut requests = Vec::new();
        let mut fresh = HashSet::new();
        for target in targets {
            let sk = inventory_sk(target);
            let mut item = encode(target)?;
            item.extend(key_of(&pk, &sk));
            fresh.insert(sk);
            requests.push(
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().map_err(
                        |e| {
                            curfew_core::ports::PortError::with_source(
                                curfew_core::ports::ErrorKind::Invalid,
                                "building an inventory write",
                                e,
                            )
                        },
                    )?)
                    .build(),
            );
        }
        for gone in existing.difference(&fresh) {
            requests.push(
                WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(key_of(&pk, gone)))
                            .build()
                            .map_err(|e| {
                                curfew_core::ports::PortError::with_source(
                                    curfew_core::ports::ErrorKind::Invalid,
                                    "building an inventory delete",
                                    e,
                                )
                            })?,
                    )
                    .build(),
            );
        }
        self.batch_write(requests).await?;
        let mut meta = Item::new();
        meta.insert("refreshed_at".into(), s(now.to_rfc3339()));
        meta.insert("targets".into(), n(targets.len()));
        self.put(meta, &pk, "META").await
    }

    async fn invalidate_inventory(&self, account: &str, region: &str) -> PortResult<()> {
        // Only the marker goes: without it the shard counts as never discovered, and the next
        // listing replaces the target items.
        self.delete(&inventory_pk(account, region), "META")
            .await
            .map(|_| ())
    }

    async fn get_inventory(
        &self,
        account: &str,
        region: &str,
    ) -> PortResult<Option<(DateTime<Utc>, Vec<Target>)>> {
        let items = self.query(&inventory_pk(account, region), "").await?;
        let mut refreshed_at = None;
        let mut targets = Vec::new();
        for item in items {
            match string(&item, "sk").as_deref() {
                Some("META") => {
                    refreshed_at = string(&item, "refreshed_at")
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc));
                }
                Some(sk) if sk.starts_with("T#") => targets.push(decode(item)?),
                _ => {}
            }
        }
        Ok(refreshed_at.map(|at| (at, targets)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::transact_write_items::{
        TransactWriteItemsError, TransactWriteItemsOutput,
    };
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;
    use curfew_core::target::Sizes;

    fn baseline() -> Baseline {
        Baseline {
            target_key: "111111111111#eu-west-1#asg#web".into(),
            sizes: Sizes::new(1, 4, 2),
            op_id: "op-1".into(),
            saved_at: Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(),
            held: Default::default(),
            ca_tags: Vec::new(),
            cluster_hold: false,
        }
    }

    fn lease() -> LeaseToken {
        LeaseToken {
            op_id: "op-1".into(),
            action: Action::Stop,
            token: "op-1/t1".into(),
        }
    }

    fn cancelled(reasons: &'static [&'static str]) -> TransactWriteItemsError {
        TransactWriteItemsError::TransactionCanceledException(
            TransactionCanceledException::builder()
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

    #[tokio::test]
    async fn a_baseline_is_saved_only_if_none_exists_and_only_under_the_lease() {
        let saved = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let items = r.transact_items();
                let mark = items[0].update().unwrap();
                let put = items[1].put().unwrap();
                mark.key().get("sk") == Some(&s("LEASE"))
                    && mark.condition_expression() == Some("holder = :token")
                    && mark.update_expression().contains("inflight_op = :op")
                    && mark
                        .expression_attribute_values()
                        .and_then(|v| v.get(":token"))
                        == Some(&s("op-1/t1"))
                    && put.condition_expression() == Some("attribute_not_exists(pk)")
                    && put.item().get("pk") == Some(&s("TARGET#111111111111#eu-west-1#asg#web"))
                    && put.item().get("sk") == Some(&s("BASELINE"))
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let taken = mock!(Client::transact_write_items)
            .then_error(|| cancelled(&["None", "ConditionalCheckFailed"]));
        let lost = mock!(Client::transact_write_items)
            .then_error(|| cancelled(&["ConditionalCheckFailed", "None"]));
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&saved, &taken, &lost]
        );
        let store = DynamoStore::new(client, "curfew-state");
        assert!(store
            .save_baseline(&baseline(), &lease(), false)
            .await
            .unwrap());
        assert!(
            !store
                .save_baseline(&baseline(), &lease(), false)
                .await
                .unwrap(),
            "a second save keeps the first"
        );
        let e = store
            .save_baseline(&baseline(), &lease(), false)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::LeaseLost, "{e}");
        assert_eq!(
            (saved.num_calls(), taken.num_calls(), lost.num_calls()),
            (1, 1, 1)
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
        let client = mock_client!(aws_sdk_dynamodb, [&lease_rule]);
        let store = DynamoStore::new(client, "curfew-state");
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        let got = store
            .acquire_lease("k", &lease(), now, now, Duration::minutes(15))
            .await
            .unwrap();
        assert_eq!(got, Lease::Acquired { interrupted: None });
    }
}
