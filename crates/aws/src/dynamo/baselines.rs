//! Baselines, kept on the target's lease item.
//!
//! A baseline is an attribute (`baseline`, a map) of the item that holds the target's lease,
//! so saving or retiring it is one conditional UpdateItem whose condition is the lease itself:
//! 1 write unit where a transaction of the lease and a separate baseline item costs 4. The
//! item carries `gsi3pk` / `gsi3sk` (`ASLEEP#<account>#<region>` / the target key) while a
//! baseline is saved; gsi3 projects only `baseline`, so the lease's own writes (taking,
//! releasing, marking a change in flight) never rewrite the index entry.
//!
//! Tables written before this layout hold baselines as items of their own (`sk = BASELINE`,
//! indexed in gsi1): those are still read (in the same request as the lease item), retired and
//! listed, so a fleet stopped before an upgrade wakes from the sizes it saved. Nothing writes
//! them any more, so an account-region found without one never has one again
//! ([`EarlierBaselines`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Select, TransactWriteItem};
use chrono::{DateTime, Utc};
use curfew_core::ports::{Baseline, ChangeInFlight, ErrorKind, LeaseToken, PortError, PortResult};
use tokio::sync::OnceCell;

use super::targets::{change_values, millis, token_value, HELD_AT_CHANGE, MARK_UPDATE, SET_CHANGE};
use super::{conditional, decode, key, s, target_pk, DynamoStore, Item};
use crate::error::{classify, retrying};

/// The lease item's attribute that holds the baseline.
const BASELINE: &str = "baseline";

/// The sort key of a baseline item of the earlier layout.
const LEGACY_SK: &str = "BASELINE";

/// The lease item's mark that its target has no baseline item of the earlier layout: set by a
/// baseline saved on the lease item in place of none (a stop that found one of the earlier
/// layout kept it and saved none), and nothing writes those items any more. A take that finds it and no baseline reads nothing more: every stop read the
/// earlier layout's item, a read unit a target and wave.
const NO_LEGACY: &str = "no_legacy";

/// The asleep-index partition of a target (`ASLEEP#account#region`), from its key
/// `account#region#...`.
pub(crate) fn asleep_partition(target_key: &str) -> Option<String> {
    let mut parts = target_key.splitn(3, '#');
    let (account, region) = (parts.next()?, parts.next()?);
    Some(format!("ASLEEP#{account}#{region}"))
}

fn decoding(e: serde_dynamo::Error) -> PortError {
    PortError::with_source(ErrorKind::Other, "decoding a baseline", e)
}

/// The baseline a lease item carries, if any.
fn carried(item: &Item) -> PortResult<Option<Baseline>> {
    item.get(BASELINE)
        .map(|v| serde_dynamo::from_attribute_value(v.clone()).map_err(decoding))
        .transpose()
}

fn holder(item: &Item) -> Option<&str> {
    item.get("holder")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// The error of a write refused because the lease moved on.
pub(super) fn lease_lost(what: &str) -> PortError {
    PortError::new(
        ErrorKind::LeaseLost,
        format!("{what}: the target's lease is no longer this delivery's"),
    )
}

/// What this process learned of the earlier layout's baseline items, by asleep partition
/// (`ASLEEP#<account>#<region>`, their gsi1 key).
///
/// A stop's first take of a target whose lease item never carried a baseline read that
/// target's item of the earlier layout: a read unit a target, once, in a fleet's first cycle.
/// Nothing has written those items since the baseline moved onto the lease item, so an
/// account-region found without one (a gsi1 Query of at most one key, half a read unit) has
/// none for the life of the process: one Query per execution environment and account-region
/// replaces a GetItem per target. gsi1 is eventually consistent, which cannot hide an item
/// written long ago by an earlier version; a partition that holds one is read target by target,
/// as before.
#[derive(Debug, Default)]
pub(crate) struct EarlierBaselines {
    partitions: Mutex<HashMap<String, Arc<OnceCell<bool>>>>,
}

impl EarlierBaselines {
    /// The one answer for `partition`, shared by the takes that ask at once.
    fn cell(&self, partition: &str) -> Arc<OnceCell<bool>> {
        let mut partitions = self.partitions.lock().expect("not poisoned");
        partitions.entry(partition.to_string()).or_default().clone()
    }
}

impl DynamoStore {
    /// True when `target_key`'s account and region hold no baseline item of the earlier layout
    /// ([`EarlierBaselines`]). False for a key that names no account and region.
    async fn none_of_the_earlier_layout(&self, target_key: &str) -> PortResult<bool> {
        let Some(partition) = asleep_partition(target_key) else {
            return Ok(false);
        };
        let cell = self.earlier_baselines.cell(&partition);
        let none = cell
            .get_or_try_init(|| async {
                let out = retrying(|| async {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .index_name("gsi1")
                        .key_condition_expression("gsi1pk = :asleep")
                        .expression_attribute_values(":asleep", s(&partition))
                        .select(Select::Count)
                        .limit(1)
                        .send()
                        .await
                        .map_err(|e| classify("querying for earlier baseline items", e))
                })
                .await?;
                Ok::<_, PortError>(out.count == 0)
            })
            .await?;
        Ok(*none)
    }

    /// The target's baseline: one consistent BatchGetItem of its lease item and of the baseline
    /// item an earlier version may have left (2 read units in one request). Not a Query of the
    /// target's partition, which would be 1 unit on DynamoDB: the emulator (moto) answers a
    /// Query by scanning every item of the table, which made the 1,000-target emulator bench
    /// twice as slow.
    pub(crate) async fn read_baseline(&self, target_key: &str) -> PortResult<Option<Baseline>> {
        let pk = target_pk(target_key);
        let items = self
            .batch_get(vec![key(&pk, "LEASE"), key(&pk, LEGACY_SK)])
            .await?;
        let mut legacy = None;
        for item in items {
            match item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
            {
                Some("LEASE") => {
                    if let Some(baseline) = carried(&item)? {
                        return Ok(Some(baseline));
                    }
                }
                Some(LEGACY_SK) => legacy = Some(decode(item)?),
                _ => {}
            }
        }
        Ok(legacy)
    }

    /// The baseline a lease take found (`taken`: the lease item as it was before the take):
    /// the one the item carries, else an item of the earlier layout (one GetItem) unless the
    /// item says none is left ([`NO_LEGACY`]). A start's baseline is on its lease item, so its
    /// take reads nothing more; so does a stop once a baseline was ever saved on the item.
    pub(crate) async fn baseline_taken(
        &self,
        target_key: &str,
        taken: &Item,
    ) -> PortResult<Option<Baseline>> {
        if let Some(baseline) = carried(taken)? {
            return Ok(Some(baseline));
        }
        if taken.contains_key(NO_LEGACY) || self.none_of_the_earlier_layout(target_key).await? {
            return Ok(None);
        }
        self.get(&target_pk(target_key), LEGACY_SK)
            .await?
            .map(decode)
            .transpose()
    }

    /// Puts `baseline` on the lease item while `lease` holds it, marking the change in flight
    /// (`change`) in the same write, as `mark_in_flight` does: one write unit for both. False
    /// when a baseline is kept (another operation's, or ours unless `replacing_own`).
    pub(crate) async fn write_baseline(
        &self,
        baseline: &Baseline,
        lease: &LeaseToken,
        replacing_own: bool,
        change: &ChangeInFlight,
    ) -> PortResult<bool> {
        let mut values = change_values(lease, change)?;
        let value: AttributeValue = serde_dynamo::to_attribute_value(baseline)
            .map_err(|e| PortError::with_source(ErrorKind::Invalid, "encoding a baseline", e))?;
        let partition = asleep_partition(&baseline.target_key).ok_or_else(|| {
            PortError::new(
                ErrorKind::Invalid,
                format!(
                    "target key {} names no account and region",
                    baseline.target_key
                ),
            )
        })?;
        // attribute_not_exists: a second stop, or a redelivered one, never overwrites the
        // sizes saved by the first. The one exception is an operation refreshing its own
        // baseline before it ever scaled the target.
        let kept = if replacing_own {
            "(attribute_not_exists(baseline) OR baseline.op_id = :op)"
        } else {
            "attribute_not_exists(baseline)"
        };
        values.insert(":baseline".into(), value);
        values.insert(":asleep".into(), s(partition));
        values.insert(":key".into(), s(baseline.target_key.clone()));
        let what = "saving a baseline";
        // A save replacing its own may leave an earlier layout's item of its operation to
        // delete after it (below): only a first save marks that none is left.
        let no_legacy = if replacing_own {
            String::new()
        } else {
            values.insert(":no_legacy".into(), AttributeValue::Bool(true));
            format!("{NO_LEGACY} = :no_legacy, ")
        };
        let update = format!(
            "SET baseline = :baseline, gsi3pk = :asleep, gsi3sk = :key, {no_legacy}{SET_CHANGE} \
             REMOVE {MARK_UPDATE}"
        );
        let condition = format!("{HELD_AT_CHANGE} AND {kept}");
        if !self
            .update_lease(&baseline.target_key, what, &update, &condition, values)
            .await?
        {
            return self
                .refused(what, &baseline.target_key, lease, Some(change.at))
                .await;
        }
        if replacing_own {
            // A baseline this operation saved under the earlier layout (before an upgrade,
            // then interrupted) would outlive the one just written: it goes.
            self.delete_legacy(&baseline.target_key, &baseline.op_id, None)
                .await?;
        }
        Ok(true)
    }

    /// Removes the baseline operation `saved_by` saved, while `lease` holds the target. False
    /// when there is none of that operation's (already retired, or a later stop's).
    pub(crate) async fn remove_baseline(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: &LeaseToken,
    ) -> PortResult<bool> {
        let what = "retiring a baseline";
        let values = Item::from([(":op".to_string(), s(saved_by)), token_value(lease)]);
        // Only the baseline the named operation saved: never one a later stop saved.
        let condition = "holder = :token AND baseline.op_id = :op";
        let removed = "REMOVE baseline, gsi3pk, gsi3sk";
        if self
            .update_lease(target_key, what, removed, condition, values)
            .await?
        {
            return Ok(true);
        }
        if !self.refused(what, target_key, lease, None).await? {
            // Still ours: the baseline may be an item of the earlier layout.
            return self.delete_legacy(target_key, saved_by, Some(lease)).await;
        }
        Ok(false)
    }

    /// Why a conditional write of the lease item was refused: the lease moved on, or expired
    /// before `unexpired_at` when the write required it ([`ErrorKind::LeaseLost`]), or (false)
    /// the lease holds and the baseline's own condition did not.
    async fn refused(
        &self,
        what: &str,
        target_key: &str,
        lease: &LeaseToken,
        unexpired_at: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        let item = self
            .get(&target_pk(target_key), "LEASE")
            .await?
            .unwrap_or_default();
        let expires = millis(&item, "lease_expires");
        let expired =
            unexpired_at.is_some_and(|at| expires.is_none_or(|e| e < at.timestamp_millis()));
        if holder(&item) == Some(lease.token.as_str()) && !expired {
            Ok(false)
        } else {
            Err(lease_lost(what))
        }
    }

    /// Deletes a baseline item of the earlier layout if operation `saved_by` saved it; fenced
    /// by `lease` when given (a retire), plain when the caller has just written under the
    /// lease (a save replacing its own). False if there was none.
    async fn delete_legacy(
        &self,
        target_key: &str,
        saved_by: &str,
        lease: Option<&LeaseToken>,
    ) -> PortResult<bool> {
        let pk = target_pk(target_key);
        let Some(lease) = lease else {
            let result = retrying(|| async {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(pk.clone()))
                    .key("sk", s(LEGACY_SK))
                    .condition_expression("op_id = :op")
                    .expression_attribute_values(":op", s(saved_by))
                    .send()
                    .await
                    .map_err(|e| classify("removing an earlier baseline item", e))
            })
            .await;
            return conditional(result);
        };
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(LEGACY_SK))
            .condition_expression("op_id = :op")
            .expression_attribute_values(":op", s(saved_by))
            .build()
            .map_err(|e| {
                PortError::with_source(ErrorKind::Invalid, "building a baseline delete", e)
            })?;
        self.fenced(
            "retiring a baseline",
            target_key,
            lease,
            TransactWriteItem::builder().delete(delete).build(),
        )
        .await
    }

    /// The baselines saved in one account and region: gsi3's entries, and gsi1's baseline
    /// items of the earlier layout.
    pub(crate) async fn baselines_asleep(
        &self,
        account: &str,
        region: &str,
    ) -> PortResult<Vec<Baseline>> {
        let partition = format!("ASLEEP#{account}#{region}");
        let (carried_items, legacy_items) = futures::try_join!(
            self.asleep_entries("gsi3", &partition),
            self.asleep_entries("gsi1", &partition)
        )?;
        let mut baselines = Vec::with_capacity(carried_items.len() + legacy_items.len());
        for item in &carried_items {
            baselines.extend(carried(item)?);
        }
        // A target with both keeps the one on its lease item, as `read_baseline` does.
        let carrying: HashSet<String> = baselines.iter().map(|b| b.target_key.clone()).collect();
        for item in legacy_items {
            let baseline: Baseline = decode(item)?;
            if !carrying.contains(&baseline.target_key) {
                baselines.push(baseline);
            }
        }
        Ok(baselines)
    }

    async fn asleep_entries(&self, index: &str, partition: &str) -> PortResult<Vec<Item>> {
        retrying(|| async {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(format!("{index}pk = :asleep"))
                .expression_attribute_values(":asleep", s(partition))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("querying the baselines held asleep", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::n;
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;
    use curfew_core::decision::Action;
    use curfew_core::target::Sizes;

    const KEY: &str = "111111111111#eu-west-1#asg#web";

    fn baseline() -> Baseline {
        Baseline {
            target_key: KEY.into(),
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

    /// A stop's change, at the baseline's time.
    fn stopping() -> ChangeInFlight {
        ChangeInFlight {
            before: Sizes::new(1, 4, 2),
            planned: Sizes::new(0, 0, 0),
            at: baseline().saved_at,
        }
    }

    fn refused() -> UpdateItemError {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .meta(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("ConditionalCheckFailedException")
                        .build(),
                )
                .build(),
        )
    }

    /// The lease item as a GetItem returns it, held by `token`.
    fn lease_item(token: &'static str) -> GetItemOutput {
        GetItemOutput::builder()
            .item("pk", s(format!("TARGET#{KEY}")))
            .item("sk", s("LEASE"))
            .item("holder", s(token))
            .item(
                "lease_expires",
                n((baseline().saved_at + chrono::Duration::minutes(15)).timestamp_millis()),
            )
            .build()
    }

    #[tokio::test]
    async fn a_baseline_is_saved_on_the_lease_item_with_the_change_in_flight_only_if_none_is_kept_and_only_under_the_lease(
    ) {
        let saved = mock!(Client::update_item)
            .match_requests(|r| {
                let values = r.expression_attribute_values().unwrap();
                r.key().and_then(|k| k.get("sk")) == Some(&s("LEASE"))
                    && r.key().and_then(|k| k.get("pk")) == Some(&s(format!("TARGET#{KEY}")))
                    && r.condition_expression()
                        == Some(
                            "holder = :token AND lease_expires >= :at \
                             AND attribute_not_exists(baseline)",
                        )
                    && values.get(":at") == Some(&n(baseline().saved_at.timestamp_millis()))
                    && values.get(":token") == Some(&s("op-1/t1"))
                    && values.get(":asleep") == Some(&s("ASLEEP#111111111111#eu-west-1"))
                    && values.get(":baseline").is_some_and(|b| b.as_m().is_ok())
                    && r.update_expression()
                        .unwrap_or_default()
                        .contains("inflight_op = :op")
                    && r.update_expression()
                        .unwrap_or_default()
                        .contains("inflight_to = :to")
                    && values
                        .get(":to")
                        .is_some_and(|to| to.as_m().is_ok_and(|m| m.get("max") == Some(&n(0))))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let kept = mock!(Client::update_item).then_error(refused);
        let ours = mock!(Client::get_item).then_output(|| lease_item("op-1/t1"));
        let lost = mock!(Client::update_item).then_error(refused);
        let theirs = mock!(Client::get_item).then_output(|| lease_item("op-2/t9"));
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&saved, &kept, &ours, &lost, &theirs]
        );
        let store = DynamoStore::new(client, "curfew-state");
        assert!(store
            .write_baseline(&baseline(), &lease(), false, &stopping())
            .await
            .unwrap());
        assert!(
            !store
                .write_baseline(&baseline(), &lease(), false, &stopping())
                .await
                .unwrap(),
            "a second save keeps the first"
        );
        let e = store
            .write_baseline(&baseline(), &lease(), false, &stopping())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::LeaseLost, "{e}");
        assert_eq!(
            (saved.num_calls(), kept.num_calls(), lost.num_calls()),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn a_retire_removes_only_the_named_operations_baseline_and_its_index_entry() {
        let retired = mock!(Client::update_item)
            .match_requests(|r| {
                r.condition_expression() == Some("holder = :token AND baseline.op_id = :op")
                    && r.update_expression() == Some("REMOVE baseline, gsi3pk, gsi3sk")
                    && r.expression_attribute_values().and_then(|v| v.get(":op"))
                        == Some(&s("op-1"))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let lost = mock!(Client::update_item).then_error(refused);
        let theirs = mock!(Client::get_item).then_output(|| lease_item("op-2/t9"));
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&retired, &lost, &theirs]
        );
        let store = DynamoStore::new(client, "curfew-state");
        assert!(store.remove_baseline(KEY, "op-1", &lease()).await.unwrap());
        let e = store
            .remove_baseline(KEY, "op-1", &lease())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::LeaseLost, "{e}");
        assert_eq!(theirs.num_calls(), 1);
    }

    #[test]
    fn the_asleep_partition_is_the_targets_account_and_region() {
        assert_eq!(
            asleep_partition(KEY).as_deref(),
            Some("ASLEEP#111111111111#eu-west-1")
        );
        assert_eq!(asleep_partition("no-account"), None);
    }
}
