//! The task dead-letter queue, for operators (`curfew dlq list | redrive`): what waits there,
//! with the state of each message's task, and moving it all back to the task queue, each
//! dead-lettered task reopened so the worker resumes it and its operation ends again.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use super::Hub;
use crate::chunk::{read_body, TaskBody};
use crate::decision::Action;
use crate::operation::{Task, TaskMessage, TaskStatus};
use crate::ports::{DeadLetter, DeadLetterQueue, PortResult, StateStore};

/// Task records read at once while listing.
const LOOKUPS: usize = 8;

/// One target of a message in the task dead-letter queue, with its task as the state table has
/// it. A chunk lists the targets whose tasks did not end (dead-lettered or still open); one
/// whose every task ended lists them all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetterEntry {
    /// The SQS message id.
    pub message_id: String,
    /// Receives so far, as the queue reports them (see [`DeadLetter::receive_count`]).
    pub receive_count: u32,
    /// The operation, when the body is a task message.
    pub op_id: Option<String>,
    /// The target's key, when the body is a task message.
    pub target: Option<String>,
    /// Stop or start, when the body is a task message.
    pub action: Option<Action>,
    /// The task's status now (DEAD_LETTERED until a redrive), if the task exists.
    pub task_status: Option<TaskStatus>,
    /// The task's reason (for a dead-lettered task: what its last receive was waiting for).
    pub reason: Option<String>,
    /// Why the message is not a task message, or names no task, if so.
    pub problem: Option<String>,
}

/// The targets of up to `limit` messages of the dead-letter queue with their tasks, one entry
/// per target (a message with no readable target is one entry naming its problem); nothing is
/// deleted or changed (the queue's [`DeadLetterQueue::peek`] says how it reads without taking).
pub async fn list(
    store: &dyn StateStore,
    dlq: &dyn DeadLetterQueue,
    limit: usize,
) -> PortResult<Vec<DeadLetterEntry>> {
    let letters = dlq.peek(limit).await?;
    let per_letter: Vec<Vec<DeadLetterEntry>> =
        stream::iter(letters.into_iter().map(|letter| entries(store, letter)))
            .buffered(LOOKUPS)
            .try_collect()
            .await?;
    Ok(per_letter.into_iter().flatten().collect())
}

/// One entry per target of the letter's chunk (one with the problem if it names none).
async fn entries(store: &dyn StateStore, letter: DeadLetter) -> PortResult<Vec<DeadLetterEntry>> {
    let entry = DeadLetterEntry {
        message_id: letter.message_id,
        receive_count: letter.receive_count,
        op_id: None,
        target: None,
        action: None,
        task_status: None,
        reason: None,
        problem: None,
    };
    let messages = match read_body(&letter.body) {
        Ok(TaskBody::Targets(messages)) => messages,
        Ok(TaskBody::Plan(plan)) => {
            let regions: Vec<&str> = plan.shards.iter().map(|s| s.region.as_str()).collect();
            return Ok(vec![DeadLetterEntry {
                op_id: Some(plan.op_id.clone()),
                problem: Some(format!(
                    "the plan of account {} (regions {}): its targets were never listed, and \
                     the operation waits for them; a redrive plans them again",
                    plan.account(),
                    regions.join(", ")
                )),
                ..entry
            }]);
        }
        Err(e) => {
            return Ok(vec![DeadLetterEntry {
                problem: Some(format!("not a task message: {e}")),
                ..entry
            }]);
        }
    };
    let lookups: Vec<_> = messages
        .into_iter()
        .map(|message| task_entry(store, entry.clone(), message))
        .collect();
    let found: Vec<DeadLetterEntry> = stream::iter(lookups)
        .buffered(LOOKUPS)
        .try_collect()
        .await?;
    // A chunk's targets whose tasks ended (succeeded, skipped, failed) are not what waits
    // here, and a redrive leaves them as they are: list the rest, or all if none is left.
    let waiting: Vec<DeadLetterEntry> = found
        .iter()
        .filter(|e| {
            e.task_status
                .is_none_or(|s| !s.is_final() || s == TaskStatus::DeadLettered)
        })
        .cloned()
        .collect();
    Ok(if waiting.is_empty() { found } else { waiting })
}

async fn task_entry(
    store: &dyn StateStore,
    mut entry: DeadLetterEntry,
    message: TaskMessage,
) -> PortResult<DeadLetterEntry> {
    let key = message.target.key();
    // A planned task is only listed on its shard until it is first written (see
    // `OperationStore::plan_shard`): PENDING, if its operation exists.
    let task = match store.get_task(&message.op_id, &key).await? {
        Some(task) => Some(task),
        None => store.get_operation(&message.op_id).await?.map(|_| {
            Task::pending(
                &message.op_id,
                message.target.clone(),
                message.op_created_at,
            )
        }),
    };
    match task {
        Some(mut task) => {
            if !task.status.is_final() {
                // A change a delivery began is marked on the target's lease, not on the task.
                if let Some(mark) = store.change_in_flight(&key).await? {
                    mark.show_on(&mut task);
                }
            }
            entry.task_status = Some(task.status);
            entry.reason = task.reason;
        }
        None => {
            entry.problem = Some(format!(
                "operation {} is not recorded: nothing to redrive into",
                message.op_id
            ))
        }
    }
    entry.op_id = Some(message.op_id);
    entry.target = Some(key);
    entry.action = Some(message.action);
    Ok(entry)
}

/// A task a redrive reopened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReopenedTask {
    /// The operation (RUNNING again until the task is done).
    pub op_id: String,
    /// The target's key.
    pub target: String,
}

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// Messages moved to the task queue.
    pub moved: u64,
    /// Dead-lettered tasks reopened, in the order their messages were moved.
    pub reopened: Vec<ReopenedTask>,
    /// Moved messages that are account plans ([`crate::chunk::AccountPlan`]): the worker
    /// plans them again.
    pub plans: u64,
    /// Moved messages that are not task messages (they are moved as they are).
    pub not_tasks: u64,
}

/// Moves every message of the dead-letter queue back to the task queue, a batch at a time:
/// first each dead-lettered task is reopened ([`crate::ports::OperationStore::reopen_task`]:
/// back to where it was given up, uncounted, its operation RUNNING again), then the batch is
/// sent to the task queue, then deleted from the dead-letter queue. The worker then resumes
/// each task and settles its operation as usual.
///
/// Safe to cut short and run again: a task already reopened is not reopened twice, a message
/// sent but not yet deleted is sent again (a second delivery of a task is harmless), and one
/// not yet sent is still in the dead-letter queue.
pub async fn redrive(hub: &Hub, dlq: &dyn DeadLetterQueue) -> PortResult<RedriveReport> {
    let mut report = RedriveReport::default();
    loop {
        let batch = dlq.receive().await?;
        if batch.is_empty() {
            return Ok(report);
        }
        for letter in &batch {
            let messages = match read_body(&letter.body) {
                Ok(TaskBody::Targets(messages)) => messages,
                Ok(TaskBody::Plan(_)) => {
                    report.plans += 1;
                    continue;
                }
                Err(_) => {
                    report.not_tasks += 1;
                    continue;
                }
            };
            for message in messages {
                let key = message.target.key();
                if hub
                    .store
                    .reopen_task(&message.op_id, &key, hub.clock.now())
                    .await?
                {
                    tracing::info!(op_id = %message.op_id, target = %key, "dead-lettered task reopened");
                    report.reopened.push(ReopenedTask {
                        op_id: message.op_id,
                        target: key,
                    });
                }
            }
        }
        let bodies: Vec<String> = batch.iter().map(|letter| letter.body.clone()).collect();
        hub.task_queue.send(&bodies).await?;
        dlq.delete(&batch).await?;
        report.moved += batch.len() as u64;
    }
}
