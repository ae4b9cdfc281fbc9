//! The three handlers' logic, over ports: the poller's tick, the router's fan-out and the
//! worker's per-target step. The Lambda mains and the CLI's local dispatcher call these, so
//! production and local mode run the same code.

pub mod invocation;
pub mod poller;
pub mod router;
pub mod worker;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;

use crate::clock::Clock;
use crate::ports::{Queue, Spokes, StateStore};

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            catchup: Duration::minutes(60),
            lease_ttl: Duration::minutes(15),
            discovery_concurrency: 16,
            inventory_ttl: Duration::minutes(15),
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
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Tunables.
    pub settings: Settings,
}

/// Serializes a message for a queue. Our message types always serialize.
pub(crate) fn to_body<T: serde::Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("queue messages serialize to JSON")
}

/// What became of a batch of queue messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Message ids to leave on the queue (retried later, and after N receives sent to the DLQ).
    pub failed: Vec<String>,
    /// Message ids with a problem retrying cannot fix (malformed body, unknown task), with the
    /// cause naming the field. They are also in `failed`, so they end in the DLQ for a human.
    pub rejected: Vec<(String, String)>,
}

/// Works a batch of task messages `(message id, body)` concurrently.
pub async fn worker_batch(hub: &Hub, messages: &[(String, String)]) -> BatchOutcome {
    let parsed: Vec<(&String, Result<crate::operation::TaskMessage, String>)> = messages
        .iter()
        .map(|(id, body)| {
            let message =
                serde_json::from_str(body).map_err(|e| format!("malformed task message: {e}"));
            (id, message)
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
    let results = futures::future::join_all(parsed.into_iter().map(|(id, message)| async move {
        let message = match message {
            Ok(m) => m,
            Err(cause) => return (id, None, Err(cause)),
        };
        let op_id = Some(message.op_id.clone());
        match worker::work(hub, &message, overrides).await {
            Ok(worker::TaskStep::Finished(_)) => (id, op_id, Ok(true)),
            Ok(worker::TaskStep::RetryLater(why)) => {
                tracing::info!(message_id = %id, op_id = %message.op_id, target = %message.target.key(), %why, "task will be retried");
                (id, op_id, Ok(false))
            }
            Err(e) if e.kind.is_retryable() => {
                tracing::warn!(message_id = %id, error = %e, "task failed; will be retried");
                (id, op_id, Ok(false))
            }
            Err(e) => (id, op_id, Err(e.to_string())),
        }
    }))
    .await;
    // Settle each operation once per batch rather than once per task (two reads each). If that
    // fails, its finished messages stay on the queue: their redelivery settles it.
    let finished: BTreeSet<&str> = results
        .iter()
        .filter(|(_, _, r)| matches!(r, Ok(true)))
        .filter_map(|(_, op, _)| op.as_deref())
        .collect();
    let mut unsettled = BTreeSet::new();
    for op_id in finished {
        if let Err(e) = hub.store.finalize_operation(op_id, hub.clock.now()).await {
            tracing::warn!(op_id, error = %e, "settling the operation failed; will be retried");
            unsettled.insert(op_id.to_string());
        }
    }
    collect(
        results
            .into_iter()
            .map(|(id, op, r)| {
                let unsettled = op.is_some_and(|op| unsettled.contains(&op));
                (id, r.map(|done| done && !unsettled))
            })
            .collect(),
    )
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
