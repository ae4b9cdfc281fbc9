//! Operations, shards and tasks in the state table.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use curfew_core::operation::{OpCounts, OpStatus, Operation, Shard, Task, TaskOutcome, TaskStatus};
use curfew_core::ports::{ErrorKind, OperationStore, PortError, PortResult};
use curfew_core::target::Sizes;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::{conditional, decode, encode, index_time, n, s, DynamoStore, Item};
use crate::error::{classify, retrying};

/// Counters live in top-level number attributes so DynamoDB can ADD to them atomically.
const COUNTERS: [&str; 4] = ["n_total", "n_succeeded", "n_failed", "n_skipped"];

fn op_pk(id: &str) -> String {
    format!("OP#{id}")
}

fn task_sk(target_key: &str) -> String {
    format!("TASK#{target_key}")
}

fn shard_sk(shard: &Shard) -> String {
    format!("SHARD#{}", shard.key())
}

fn op_item(op: &Operation) -> PortResult<Item> {
    let mut item = encode(op)?;
    item.remove("counts");
    let c = op.counts;
    for (name, value) in COUNTERS
        .iter()
        .zip([c.total, c.succeeded, c.failed, c.skipped])
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

fn decode_op(mut item: Item) -> PortResult<Operation> {
    let mut counts = [0u64; 4];
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
    };
    Ok(op)
}

fn sizes_value(sizes: Sizes) -> PortResult<AttributeValue> {
    serde_dynamo::to_attribute_value(sizes)
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "encoding sizes", e))
}

fn build<T>(r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> PortResult<T> {
    r.map_err(|e| PortError::with_source(ErrorKind::Invalid, "building a transaction", e))
}

impl DynamoStore {
    async fn transact(&self, what: &str, items: Vec<TransactWriteItem>) -> PortResult<bool> {
        let result = retrying(|| async {
            self.client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
                .map_err(|e| classify(what, e))
        })
        .await;
        conditional(result)
    }
}

#[async_trait]
impl OperationStore for DynamoStore {
    async fn create_operation(&self, op: &Operation) -> PortResult<bool> {
        self.put_new(op_item(op)?, &op_pk(&op.id), "OP").await
    }

    async fn get_operation(&self, id: &str) -> PortResult<Option<Operation>> {
        self.get(&op_pk(id), "OP").await?.map(decode_op).transpose()
    }

    async fn list_operations(&self, limit: usize) -> PortResult<Vec<Operation>> {
        let limit = limit.clamp(1, 1000) as i32;
        let out = retrying(|| async {
            self.client
                .query()
                .table_name(&self.table)
                .index_name("gsi2")
                .key_condition_expression("gsi2pk = :ops")
                .expression_attribute_values(":ops", s("OPS"))
                .scan_index_forward(false)
                .limit(limit)
                .send()
                .await
                .map_err(|e| classify("listing operations", e))
        })
        .await?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(decode_op)
            .collect()
    }

    async fn set_shards(&self, op_id: &str, shards_total: u64) -> PortResult<()> {
        let result = retrying(|| async {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(op_pk(op_id)))
                .key("sk", s("OP"))
                .update_expression("SET shards_total = :n, #status = :running")
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(shards_total)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":n", n(shards_total))
                .expression_attribute_values(":running", s(OpStatus::Running.as_str()))
                .send()
                .await
                .map_err(|e| classify("recording an operation's shards", e))
        })
        .await;
        conditional(result).map(|_| ())
    }

    async fn shard_planned(&self, op_id: &str, shard: &Shard) -> PortResult<bool> {
        Ok(self.get(&op_pk(op_id), &shard_sk(shard)).await?.is_some())
    }

    async fn plan_shard(
        &self,
        op_id: &str,
        shard: &Shard,
        tasks: &[Task],
        note: Option<String>,
    ) -> PortResult<()> {
        // Conditional puts, not BatchWriteItem: a duplicated shard message must never reset a
        // task another worker already finished.
        let puts = tasks
            .iter()
            .map(|task| Ok((encode(task)?, task_sk(&task.target.key()))))
            .collect::<PortResult<Vec<_>>>()?;
        let pk = op_pk(op_id);
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
        let marker = build(
            Put::builder()
                .table_name(&self.table)
                .item("pk", s(op_pk(op_id)))
                .item("sk", s(shard_sk(shard)))
                .item("tasks", n(tasks.len()))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(op_pk(op_id)))
            .key("sk", s("OP"))
            .expression_attribute_values(":n", n(tasks.len()))
            .expression_attribute_values(":one", n(1));
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
        // False means an earlier delivery planned this shard: its counts are already in.
        self.transact("planning a shard", items).await?;
        Ok(())
    }

    async fn unfinished_tasks(&self, op_id: &str, shard: &Shard) -> PortResult<Vec<Task>> {
        let items = self
            .query(&op_pk(op_id), &format!("TASK#{}#", shard.key()))
            .await?;
        let tasks: Vec<Task> = items.into_iter().map(decode).collect::<PortResult<_>>()?;
        Ok(tasks.into_iter().filter(|t| !t.status.is_final()).collect())
    }

    async fn list_tasks(&self, op_id: &str) -> PortResult<Vec<Task>> {
        self.query(&op_pk(op_id), "TASK#")
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    async fn get_task(&self, op_id: &str, target_key: &str) -> PortResult<Option<Task>> {
        self.get(&op_pk(op_id), &task_sk(target_key))
            .await?
            .map(decode)
            .transpose()
    }

    async fn mark_applying(
        &self,
        op_id: &str,
        target_key: &str,
        before: Sizes,
        planned: Sizes,
        now: DateTime<Utc>,
    ) -> PortResult<()> {
        let (before, planned) = (sizes_value(before)?, sizes_value(planned)?);
        let result = retrying(|| async {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(op_pk(op_id)))
                .key("sk", s(task_sk(target_key)))
                .update_expression("SET #status = :applying, #before = :before, #after = :after, updated_at = :now")
                .condition_expression("#status IN (:pending, :applying)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#before", "before")
                .expression_attribute_names("#after", "after")
                .expression_attribute_values(":applying", s(TaskStatus::Applying.as_str()))
                .expression_attribute_values(":pending", s(TaskStatus::Pending.as_str()))
                .expression_attribute_values(":before", before.clone())
                .expression_attribute_values(":after", planned.clone())
                .expression_attribute_values(":now", s(now.to_rfc3339()))
                .send()
                .await
                .map_err(|e| classify("recording a task's progress", e))
        })
        .await;
        conditional(result).map(|_| ())
    }

    async fn finish_task(
        &self,
        op_id: &str,
        target_key: &str,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> PortResult<bool> {
        let mut sets = vec!["#status = :status", "updated_at = :now"];
        let mut task = Update::builder()
            .table_name(&self.table)
            .key("pk", s(op_pk(op_id)))
            .key("sk", s(task_sk(target_key)))
            .condition_expression("#status IN (:pending, :applying)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(outcome.status.as_str()))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":pending", s(TaskStatus::Pending.as_str()))
            .expression_attribute_values(":applying", s(TaskStatus::Applying.as_str()));
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
        let task = task.update_expression(format!("SET {}", sets.join(", ")));
        let counter = match outcome.status {
            TaskStatus::Succeeded => "n_succeeded",
            TaskStatus::Failed => "n_failed",
            TaskStatus::Skipped => "n_skipped",
            other => {
                return Err(PortError::new(
                    ErrorKind::Invalid,
                    format!("{other} is not a final task status"),
                ))
            }
        };
        let count = Update::builder()
            .table_name(&self.table)
            .key("pk", s(op_pk(op_id)))
            .key("sk", s("OP"))
            .update_expression(format!("ADD {counter} :one"))
            .expression_attribute_values(":one", n(1));
        // One transaction: the task's final state and its count on the operation happen
        // together, exactly once, whatever is retried or redelivered.
        let items = vec![
            TransactWriteItem::builder()
                .update(build(task.build())?)
                .build(),
            TransactWriteItem::builder()
                .update(build(count.build())?)
                .build(),
        ];
        self.transact("finishing a task", items).await
    }

    async fn finalize_operation(
        &self,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> PortResult<Option<OpStatus>> {
        let Some(op) = self.get_operation(op_id).await? else {
            return Ok(None);
        };
        if op.status.is_final() {
            return Ok(Some(op.status));
        }
        let Some(status) = op.final_status() else {
            return Ok(None);
        };
        let result = retrying(|| async {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(op_pk(op_id)))
                .key("sk", s("OP"))
                .update_expression("SET #status = :final, finished_at = :now")
                .condition_expression("#status IN (:pending, :running)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":final", s(status.as_str()))
                .expression_attribute_values(":now", s(now.to_rfc3339()))
                .expression_attribute_values(":pending", s(OpStatus::Pending.as_str()))
                .expression_attribute_values(":running", s(OpStatus::Running.as_str()))
                .send()
                .await
                .map_err(|e| classify("finalizing an operation", e))
        })
        .await;
        conditional(result)?;
        Ok(Some(status))
    }
}
