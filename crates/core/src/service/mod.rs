//! The three handlers' logic, over ports: the poller's tick, the router's fan-out and the
//! worker's per-target step. The Lambda mains and the CLI's local dispatcher call these, so
//! production and local mode run the same code.

pub mod dlq;
mod drift;
mod hold;
pub mod invocation;
mod notify;
pub mod poller;
pub mod router;
pub mod worker;

use std::collections::BTreeSet;
use std::sync::Arc;

use tracing::Instrument;

use chrono::Duration;

use crate::clock::Clock;
use crate::cluster::ClusterApi;
use crate::operation::{TaskMessage, TaskStatus};
use crate::ports::{Queue, Spokes, StateStore};
use crate::trail::AuditSigner;
use worker::TaskStep;

/// Receives of a task message before SQS moves it to the dead-letter queue, unless configured
/// otherwise (the hub stack's and local mode's `maxReceiveCount`).
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

/// Tunables, read from the environment by the Lambda mains.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How far back the poller fires missed schedule times (older ones are skipped, logged).
    pub catchup: Duration,
    /// How long a worker's lease on a target lasts if it is never released (a crash).
    pub lease_ttl: Duration,
    /// Accounts discovered at once by one router invocation.
    pub discovery_concurrency: usize,
    /// How old a cached inventory may be before a cached-discovery operation lists the
    /// account and region live again (so new groups are found without asking).
    pub inventory_ttl: Duration,
    /// The task queue's `maxReceiveCount`: on a message's receive number `task_max_receives`
    /// the worker gives up a task it would otherwise leave for a retry (DEAD_LETTERED), since
    /// SQS moves the message to the dead-letter queue instead of delivering it again.
    pub task_max_receives: u32,
    /// How often the poller checks the targets curfew holds asleep for drift (one drift-check
    /// operation per interval); zero: never.
    pub drift_interval: Duration,
    /// How often the poller starts a pass of each enforced window schedule in its asleep
    /// time; zero: never.
    pub enforce_interval: Duration,
    /// Who the audit trail names as the actor of the handlers' changes, and the key that signs
    /// its chain heads.
    pub audit: AuditSigner,
    /// How long a task may wait on a node group that stays UPDATING before a `stuck_updating`
    /// notice tells a person; zero: never.
    pub stuck_updating: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            catchup: Duration::minutes(60),
            lease_ttl: Duration::minutes(15),
            discovery_concurrency: 16,
            inventory_ttl: Duration::minutes(15),
            task_max_receives: DEFAULT_MAX_RECEIVES,
            drift_interval: Duration::zero(),
            enforce_interval: Duration::minutes(1),
            audit: AuditSigner::default(),
            stuck_updating: Duration::minutes(30),
        }
    }
}

/// Everything the handlers use, built once per process.
#[derive(Clone)]
pub struct Hub {
    /// The state table.
    pub store: Arc<dyn StateStore>,
    /// Operations and shards to fan out.
    pub router_queue: Arc<dyn Queue>,
    /// One message per target.
    pub task_queue: Arc<dyn Queue>,
    /// Spoke accounts, through their roles.
    pub spokes: Arc<dyn Spokes>,
    /// The Kubernetes APIs of clusters that opt into a cluster-wide hold mode.
    pub clusters: Arc<dyn ClusterApi>,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Tunables.
    pub settings: Settings,
    /// Where notices for people go (`Notices::none()` when no topic is configured).
    pub notices: crate::notice::Notices,
}

/// Serializes a message for a queue. Our message types always serialize.
pub(crate) fn to_body<T: serde::Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("queue messages serialize to JSON")
}

/// One received task message, as the worker needs it from an SQS record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The message id (what a partial batch failure names).
    pub message_id: String,
    /// The body, a [`TaskMessage`] in JSON.
    pub body: String,
    /// How many times the queue has handed the message out, this time included (SQS's
    /// `ApproximateReceiveCount`; 1 on the first receive).
    pub receive_count: u32,
    /// The X-Ray trace header the sender's invocation gave the message (SQS's
    /// `AWSTraceHeader`), if it was traced: the worker's log lines for the task carry it.
    pub trace_header: Option<String>,
}

impl Delivery {
    /// A message on its first receive.
    pub fn first(message_id: impl Into<String>, body: impl Into<String>) -> Self {
        Delivery {
            message_id: message_id.into(),
            body: body.into(),
            receive_count: 1,
            trace_header: None,
        }
    }
}

/// What became of a batch of queue messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Message ids to leave on the queue (retried later, and after N receives sent to the DLQ).
    pub failed: Vec<String>,
    /// Message ids with a problem retrying cannot fix (malformed body, unknown task), with the
    /// cause naming the field. They are also in `failed`, so they end in the DLQ for a human.
    pub rejected: Vec<(String, String)>,
    /// Message ids whose task is dead-lettered: given up on the message's last receive (now or
    /// earlier). They are also in `failed`, so SQS moves them to the DLQ, where
    /// [`dlq::redrive`] finds them.
    pub dead_lettered: Vec<String>,
}

/// What became of one task message in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Its task is final: delete the message once its operation is settled.
    Done,
    /// Leave it on the queue for another receive.
    Retry,
    /// Its task is given up: leave the message for the dead-letter queue, settle the operation.
    DeadLettered,
    /// Unfixable (malformed body, unknown task): leave it for the dead-letter queue.
    Rejected(String),
}

/// Works a batch of task messages concurrently.
///
/// A message on its last receive (`receive_count >= settings.task_max_receives`) that would be
/// left for a retry — its task not done yet, or an error — gives its task up
/// ([`worker::give_up`]: DEAD_LETTERED, counted once) and is still reported failed, so SQS
/// moves it to the dead-letter queue; the operation then settles instead of waiting forever.
/// A message whose task is already dead-lettered is reported failed too, so every message of
/// a given-up task gathers in the dead-letter queue for `curfew dlq redrive`.
pub async fn worker_batch(hub: &Hub, deliveries: &[Delivery]) -> BatchOutcome {
    let parsed: Vec<(&Delivery, Result<TaskMessage, String>)> = deliveries
        .iter()
        .map(|delivery| {
            let message = serde_json::from_str(&delivery.body)
                .map_err(|e| format!("malformed task message: {e}"));
            (delivery, message)
        })
        .collect();
    // Stops consult the overrides: read them once for the batch, not once per target. If the
    // read fails, each stop reads them itself (and retries through the queue if that fails).
    let any_stop = parsed.iter().any(|(_, m)| {
        m.as_ref()
            .is_ok_and(|m| m.action == crate::decision::Action::Stop)
    });
    let overrides = if any_stop {
        hub.store.active_overrides(hub.clock.now()).await.ok()
    } else {
        None
    };
    let overrides = overrides.as_deref();
    let results = futures::future::join_all(parsed.into_iter().map(|(delivery, message)| {
        // Every log line of a task's work carries its operation, account, region and target
        // (the task's id is the operation and the target together).
        let span = match &message {
            Ok(m) => tracing::info_span!("task", op_id = %m.op_id, account = %m.target.account,
                                         region = %m.target.region, target = %m.target.key(),
                                         message_id = %delivery.message_id,
                                         trace = delivery.trace_header.as_deref()),
            Err(_) => tracing::info_span!("task", message_id = %delivery.message_id),
        };
        async move {
            let id = &delivery.message_id;
            let message = match message {
                Ok(m) => m,
                Err(cause) => return (id, None, Verdict::Rejected(cause)),
            };
            let (verdict, why) = match worker::work(hub, &message, overrides).await {
                Ok(TaskStep::Finished(TaskStatus::DeadLettered)) => {
                    return (id, Some(message.op_id), Verdict::DeadLettered)
                }
                Ok(TaskStep::Finished(_)) => return (id, Some(message.op_id), Verdict::Done),
                Ok(TaskStep::RetryLater(why)) => {
                    tracing::info!(message_id = %id, op_id = %message.op_id, target = %message.target.key(), %why, "task will be retried");
                    (Verdict::Retry, why)
                }
                Err(e) if e.kind.is_retryable() => {
                    tracing::warn!(message_id = %id, error = %e, "task failed; will be retried");
                    (Verdict::Retry, e.to_string())
                }
                Err(e) => (Verdict::Rejected(e.to_string()), e.to_string()),
            };
            let verdict = if delivery.receive_count >= hub.settings.task_max_receives {
                last_receive(hub, &message, delivery, &why, verdict).await
            } else {
                verdict
            };
            (id, Some(message.op_id), verdict)
        }
        .instrument(span)
    }))
    .await;
    // Settle each operation once per batch rather than once per task (two reads each). If that
    // fails, its finished messages stay on the queue: their redelivery settles it.
    let settling: BTreeSet<&str> = results
        .iter()
        .filter(|(_, _, v)| matches!(v, Verdict::Done | Verdict::DeadLettered))
        .filter_map(|(_, op, _)| op.as_deref())
        .collect();
    let mut unsettled = BTreeSet::new();
    for op_id in settling {
        if let Err(e) = notify::settle(hub, op_id).await {
            tracing::warn!(op_id, error = %e, "settling the operation failed; will be retried");
            unsettled.insert(op_id.to_string());
        }
    }
    let mut outcome = BatchOutcome::default();
    for (id, op, verdict) in results {
        match verdict {
            Verdict::Done if !op.is_some_and(|op| unsettled.contains(&op)) => {}
            Verdict::Done | Verdict::Retry => outcome.failed.push(id.clone()),
            Verdict::DeadLettered => {
                outcome.failed.push(id.clone());
                outcome.dead_lettered.push(id.clone());
            }
            Verdict::Rejected(cause) => {
                tracing::error!(message_id = %id, %cause, "message rejected");
                outcome.failed.push(id.clone());
                outcome.rejected.push((id.clone(), cause));
            }
        }
    }
    outcome
}

/// The message's last receive would leave its task open: give the task up. If another delivery
/// finished it meanwhile, the message is done; if another delivery of the operation is working
/// on it, or giving up failed, the message keeps `verdict` (it goes to the dead-letter queue
/// all the same, and `curfew dlq redrive` brings it back).
async fn last_receive(
    hub: &Hub,
    message: &TaskMessage,
    delivery: &Delivery,
    why: &str,
    verdict: Verdict,
) -> Verdict {
    match worker::give_up(hub, message, delivery.receive_count, why).await {
        Ok(TaskStep::Finished(TaskStatus::DeadLettered)) => Verdict::DeadLettered,
        Ok(TaskStep::Finished(_)) => Verdict::Done,
        Ok(TaskStep::RetryLater(held)) => {
            tracing::warn!(message_id = %delivery.message_id, op_id = %message.op_id,
                           target = %message.target.key(), %held,
                           "last receive: the task is left open for the delivery working on it");
            verdict
        }
        Err(e) => {
            tracing::error!(message_id = %delivery.message_id, op_id = %message.op_id,
                            target = %message.target.key(), error = %e,
                            "last receive: giving the task up failed; it stays open until `curfew dlq redrive`");
            verdict
        }
    }
}

/// Works a batch of router messages `(message id, body)` concurrently.
pub async fn router_batch(hub: &Hub, messages: &[(String, String)]) -> BatchOutcome {
    let results = futures::future::join_all(messages.iter().map(|(id, body)| async move {
        let message: crate::operation::RouterMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => return (id, Err(format!("malformed router message: {e}"))),
        };
        match router::handle(hub, &message).await {
            Ok(()) => (id, Ok(true)),
            Err(e) if e.kind.is_retryable() => {
                tracing::warn!(message_id = %id, error = %e, "router message failed; will be retried");
                (id, Ok(false))
            }
            Err(e) => (id, Err(e.to_string())),
        }
    }))
    .await;
    collect(results)
}

fn collect(results: Vec<(&String, Result<bool, String>)>) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    for (id, result) in results {
        match result {
            Ok(true) => {}
            Ok(false) => outcome.failed.push(id.clone()),
            Err(cause) => {
                tracing::error!(message_id = %id, %cause, "message rejected");
                outcome.failed.push(id.clone());
                outcome.rejected.push((id.clone(), cause));
            }
        }
    }
    outcome
}
