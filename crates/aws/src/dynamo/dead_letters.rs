//! Giving a task up after its message's last receive, and reopening it on a redrive. Each is
//! one transaction over the task item and its counter stripe (the count moves with the status,
//! exactly once, whatever is retried or delivered twice), with the target's lease (giving up)
//! or the operation item (reopening).

use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use curfew_core::operation::{OpStatus, TaskStatus};
use curfew_core::ports::PortResult;
use curfew_core::target::Target;

use super::operations::{
    build, op_pk, stripe_of, stripe_pk, task_bindings, task_pk, task_sk, STRIPE_SK, TASK_NAMED,
    TASK_OPEN,
};
use super::{n, s, DynamoStore};

/// How many times a redrive reopened an operation, on its item: `finalize_operation` settles
/// the operation only if it is unchanged since its counts were read.
pub(super) const REOPENS: &str = "reopens";

impl DynamoStore {
    fn stripe_update(
        &self,
        op_id: &str,
        target_key: &str,
        by: i64,
    ) -> PortResult<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(stripe_pk(op_id, stripe_of(target_key))))
            .key("sk", s(STRIPE_SK))
            .update_expression("ADD n_dead_lettered :by")
            .expression_attribute_values(":by", n(by));
        Ok(TransactWriteItem::builder()
            .update(build(update.build())?)
            .build())
    }

    /// See [`curfew_core::ports::OperationStore::dead_letter_task`].
    pub(super) async fn dead_letter(
        &self,
        op_id: &str,
        target: &Target,
        reason: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let target_key = target.key();
        let target_key = target_key.as_str();
        // A delivery of this operation holding the lease is working on this very task: giving
        // it up under it could mark a task DEAD_LETTERED whose target that delivery is about
        // to change. A target never leased has no lease item, which passes.
        let lease = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(format!("TARGET#{target_key}")))
            .key("sk", s("LEASE"))
            .condition_expression(
                "attribute_not_exists(holder) OR holder_op <> :op OR lease_expires < :now",
            )
            .expression_attribute_values(":op", s(op_id))
            .expression_attribute_values(":now", n(now.timestamp_millis()));
        // Operands read the item as it was before the update: `reopens_as` keeps the status
        // the task is given up in (PENDING for a task only listed until now), so a redrive can
        // resume an APPLYING task where it was.
        let (names, values) = task_bindings(op_id, target)?;
        let task = Update::builder()
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .table_name(&self.table)
            .key("pk", s(task_pk(op_id, target_key)))
            .key("sk", s(task_sk(target_key)))
            .update_expression(format!(
                "SET {TASK_NAMED}, reopens_as = if_not_exists(#status, :pending), \
                 #status = :dead, reason = :reason, updated_at = :now"
            ))
            .condition_expression(TASK_OPEN)
            .expression_attribute_values(":dead", s(TaskStatus::DeadLettered.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", s(now.to_rfc3339()));
        let items = vec![
            TransactWriteItem::builder()
                .condition_check(build(lease.build())?)
                .build(),
            TransactWriteItem::builder()
                .update(build(task.build())?)
                .build(),
            self.stripe_update(op_id, target_key, 1)?,
        ];
        // False: the lease or the task's status refused it (a cancelled transaction's
        // ConditionalCheckFailed); nothing was written.
        self.transact("dead-lettering a task", items).await
    }

    /// See [`curfew_core::ports::OperationStore::reopen_task`].
    pub(super) async fn reopen(
        &self,
        op_id: &str,
        target_key: &str,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let task = Update::builder()
            .table_name(&self.table)
            .key("pk", s(task_pk(op_id, target_key)))
            .key("sk", s(task_sk(target_key)))
            .update_expression(
                "SET #status = if_not_exists(reopens_as, :pending), updated_at = :now \
                 REMOVE reopens_as, reason",
            )
            .condition_expression("#status = :dead")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":dead", s(TaskStatus::DeadLettered.as_str()))
            .expression_attribute_values(":pending", s(TaskStatus::Pending.as_str()))
            .expression_attribute_values(":now", s(now.to_rfc3339()));
        // Back to RUNNING, its counts read from the stripes again (a final operation carries
        // copies of them on its item, removed here so they are not added twice), and the
        // reopen recorded for `finalize_operation`'s guard. A running operation is left
        // running the same way.
        let op = Update::builder()
            .table_name(&self.table)
            .key("pk", s(op_pk(op_id)))
            .key("sk", s("OP"))
            .update_expression(format!(
                "SET #status = :running ADD {REOPENS} :one \
                 REMOVE finished_at, n_succeeded, n_failed, n_skipped, n_dead_lettered"
            ))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":running", s(OpStatus::Running.as_str()))
            .expression_attribute_values(":one", n(1));
        let items = vec![
            TransactWriteItem::builder()
                .update(build(task.build())?)
                .build(),
            self.stripe_update(op_id, target_key, -1)?,
            TransactWriteItem::builder()
                .update(build(op.build())?)
                .build(),
        ];
        self.transact("reopening a dead-lettered task", items).await
    }
}

/// The transactions, as they reach DynamoDB (aws-smithy-mocks).
#[cfg(test)]
mod tests {
    use super::super::test_support::cancelled;
    use super::*;
    use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;
    use curfew_core::ports::OperationStore;

    const KEY: &str = "111111111111#eu-west-1#nodegroup#dev/workers";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
    }

    fn key_of(item: &TransactWriteItem) -> (String, String) {
        let key = item
            .update()
            .map(|u| u.key())
            .or_else(|| item.condition_check().map(|c| c.key()))
            .expect("an update or a condition check");
        let part = |name| match key.get(name) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => String::new(),
        };
        (part("pk"), part("sk"))
    }

    fn value<'a>(item: &'a TransactWriteItem, name: &str) -> Option<&'a AttributeValue> {
        item.update()
            .and_then(|u| u.expression_attribute_values())
            .and_then(|v| v.get(name))
    }

    #[tokio::test]
    async fn giving_a_task_up_checks_the_lease_and_counts_it_on_its_stripe_in_one_transaction() {
        let stripe = stripe_pk("op-1", stripe_of(KEY));
        let give_up = mock!(Client::transact_write_items)
            .match_requests(move |r| {
                let items = r.transact_items();
                items.len() == 3
                    && key_of(&items[0]) == (format!("TARGET#{KEY}"), "LEASE".into())
                    && items[0].condition_check().is_some_and(|c| {
                        c.condition_expression()
                            == "attribute_not_exists(holder) OR holder_op <> :op OR lease_expires < :now"
                    })
                    && key_of(&items[1]) == (task_pk("op-1", KEY), task_sk(KEY))
                    && items[1].update().is_some_and(|u| {
                        u.condition_expression() == Some(TASK_OPEN)
                            && u.update_expression().contains(
                                "reopens_as = if_not_exists(#status, :pending), #status = :dead",
                            )
                    })
                    && value(&items[1], ":reason") == Some(&s("busy"))
                    && key_of(&items[2]) == (stripe.clone(), STRIPE_SK.into())
                    && items[2]
                        .update()
                        .is_some_and(|u| u.update_expression() == "ADD n_dead_lettered :by")
                    && value(&items[2], ":by") == Some(&n(1))
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&give_up]);
        let store = DynamoStore::new(client, "curfew-state");

        assert!(store
            .dead_letter_task("op-1", &Target::from_key(KEY).unwrap(), "busy", now())
            .await
            .unwrap());
        assert_eq!(give_up.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_task_already_final_or_worked_on_is_not_given_up_and_not_retried() {
        for reasons in [
            &["None", "ConditionalCheckFailed", "None"][..],
            &["ConditionalCheckFailed", "None", "None"],
        ] {
            let refused =
                mock!(Client::transact_write_items).then_error(move || cancelled(reasons));
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&refused]);
            let store = DynamoStore::new(client, "curfew-state");
            assert!(!store
                .dead_letter_task("op-1", &Target::from_key(KEY).unwrap(), "busy", now())
                .await
                .unwrap());
            assert_eq!(refused.num_calls(), 1, "{reasons:?}");
        }
    }

    #[tokio::test]
    async fn reopening_takes_the_count_back_and_runs_the_operation_again_in_one_transaction() {
        let stripe = stripe_pk("op-1", stripe_of(KEY));
        let reopen = mock!(Client::transact_write_items)
            .match_requests(move |r| {
                let items = r.transact_items();
                items.len() == 3
                    && key_of(&items[0]) == (task_pk("op-1", KEY), task_sk(KEY))
                    && items[0]
                        .update()
                        .is_some_and(|u| u.condition_expression() == Some("#status = :dead"))
                    && key_of(&items[1]) == (stripe.clone(), STRIPE_SK.into())
                    && value(&items[1], ":by") == Some(&n(-1))
                    && key_of(&items[2]) == (op_pk("op-1"), "OP".into())
                    && items[2].update().is_some_and(|u| {
                        let e = u.update_expression();
                        e.contains("SET #status = :running")
                            && e.contains("ADD reopens :one")
                            && e.contains("REMOVE finished_at, n_succeeded, n_failed, n_skipped, n_dead_lettered")
                    })
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&reopen]);
        let store = DynamoStore::new(client, "curfew-state");

        assert!(store.reopen_task("op-1", KEY, now()).await.unwrap());
        assert_eq!(reopen.num_calls(), 1);
    }

    #[tokio::test]
    async fn finalizing_is_conditioned_on_no_reopen_since_the_counts_were_read() {
        let op = curfew_core::operation::Operation {
            id: "op-1".into(),
            action: curfew_core::decision::Action::Stop,
            selector: curfew_core::selector::Selector::parse("kind=asg").unwrap(),
            source: curfew_core::operation::OpSource::Manual,
            created_at: now(),
            dry_run: false,
            default_start: None,
            discovery: curfew_core::operation::Discovery::Cached,
            status: OpStatus::Running,
            counts: curfew_core::operation::OpCounts {
                total: 1,
                ..Default::default()
            },
            shards_total: Some(1),
            shards_done: 1,
            notes: vec![],
            hold: None,
            check: false,
        };
        let mut item = super::super::encode(&op).unwrap();
        item.remove("counts");
        item.insert("n_total".into(), n(1));
        item.insert(REOPENS.into(), n(2));
        let read = mock!(Client::get_item).then_output(move || {
            GetItemOutput::builder()
                .set_item(Some(item.clone()))
                .build()
        });
        let stripe = stripe_pk("op-1", stripe_of(KEY));
        let stripes = mock!(Client::batch_get_item).then_output(move || {
            let counted = std::collections::HashMap::from([
                ("pk".to_string(), s(stripe.clone())),
                ("sk".to_string(), s(STRIPE_SK)),
                ("n_succeeded".to_string(), n(1)),
            ]);
            BatchGetItemOutput::builder()
                .responses("curfew-state", vec![counted])
                .build()
        });
        let settle = mock!(Client::update_item)
            .match_requests(|r| {
                r.condition_expression()
                    == Some("#status IN (:pending, :running) AND reopens = :reopens")
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":reopens"))
                        == Some(&n(2))
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":final"))
                        == Some(&s("SUCCEEDED"))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&read, &stripes, &settle]
        );
        let store = DynamoStore::new(client, "curfew-state");

        assert_eq!(
            store
                .finalize_operation("op-1", now())
                .await
                .unwrap()
                .map(|f| (f.status, f.by_this_call)),
            Some((OpStatus::Succeeded, true))
        );
        assert_eq!(settle.num_calls(), 1);
    }
}
