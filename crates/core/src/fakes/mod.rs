//! In-memory fakes of the ports, for fast tests of the services' logic (and the CLI's local
//! mode). Each keeps the semantics of its `curfew-aws` adapter: [`MemoryStore`] applies the
//! same conditions as the DynamoDB store (put-if-absent, count-once, lease ordering), so a test
//! that passes here exercises the same guarantees the table gives in production.
//!
//! ```
//! use std::sync::Arc;
//! use curfew_core::clock::ManualClock;
//!
//! let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
//! let (_hub, store, router_q, _task_q, spokes) = curfew_core::fakes::hub(clock);
//! assert!(store.baselines().is_empty() && router_q.is_empty());
//! assert_eq!(spokes.calls(), 0);
//! ```

mod clusters;
mod queue;
mod spokes;
mod store;

pub use clusters::{ClusterCall, ClusterObjects, FakeClusters, PoolNodes};
pub use queue::MemoryQueue;
pub use spokes::FakeSpokes;
pub use store::MemoryStore;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::ManualClock;
use crate::service::{self, Hub, Settings};

/// A fake's state behind its lock (a poisoned lock means a test already panicked).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("fake lock poisoned")
}

/// A hub over fresh fakes and `clock`, with default settings. Returns the hub and the fakes
/// behind it: store, router queue, task queue and spokes.
pub fn hub(
    clock: Arc<ManualClock>,
) -> (
    Hub,
    Arc<MemoryStore>,
    Arc<MemoryQueue>,
    Arc<MemoryQueue>,
    Arc<FakeSpokes>,
) {
    let store = Arc::new(MemoryStore::new());
    let router_q = Arc::new(MemoryQueue::new());
    let task_q = Arc::new(MemoryQueue::new());
    let spokes = Arc::new(FakeSpokes::new());
    let hub = Hub {
        store: store.clone(),
        router_queue: router_q.clone(),
        task_queue: task_q.clone(),
        spokes: spokes.clone(),
        clock,
        settings: Settings::default(),
    };
    (hub, store, router_q, task_q, spokes)
}

/// What [`drain`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Rounds run (each round works everything queued at its start).
    pub rounds: usize,
    /// Bodies rejected as unfixable, with the cause; not re-queued (they would go to the DLQ).
    pub rejected: Vec<(String, String)>,
    /// True when both queues ended empty; false when the round limit was hit (e.g. a target
    /// stayed busy and its message kept coming back).
    pub settled: bool,
}

/// Rounds [`drain`] runs at most before giving up.
pub const DRAIN_ROUNDS: usize = 50;

/// Works both queues like their Lambdas would until both are empty (or [`DRAIN_ROUNDS`] pass):
/// router messages first, then task messages; failed messages go back on their queue, rejected
/// ones are reported and dropped.
pub async fn drain(hub: &Hub, router_q: &MemoryQueue, task_q: &MemoryQueue) -> Drained {
    let mut drained = Drained::default();
    while drained.rounds < DRAIN_ROUNDS {
        if router_q.is_empty() && task_q.is_empty() {
            drained.settled = true;
            return drained;
        }
        drained.rounds += 1;
        let round = drained.rounds;
        let routed = work(router_q, round, "r", |m| async move {
            service::router_batch(hub, &m).await
        })
        .await;
        let worked = work(task_q, round, "t", |m| async move {
            service::worker_batch(hub, &m).await
        })
        .await;
        drained.rejected.extend(routed);
        drained.rejected.extend(worked);
    }
    drained.settled = router_q.is_empty() && task_q.is_empty();
    drained
}

/// Takes every body from `queue`, works them as one batch, re-queues the failed ones and
/// returns the rejected ones.
async fn work<F, Fut>(
    queue: &MemoryQueue,
    round: usize,
    prefix: &str,
    batch: F,
) -> Vec<(String, String)>
where
    F: FnOnce(Vec<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = service::BatchOutcome>,
{
    let bodies = queue.take_all();
    if bodies.is_empty() {
        return Vec::new();
    }
    let messages: Vec<(String, String)> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| (format!("{prefix}{round}-{i}"), body))
        .collect();
    let outcome = batch(messages.clone()).await;
    let body_of = |id: &String| {
        messages
            .iter()
            .find(|(m, _)| m == id)
            .map(|(_, body)| body.clone())
            .unwrap_or_default()
    };
    let rejected: Vec<(String, String)> = outcome
        .rejected
        .iter()
        .map(|(id, cause)| (body_of(id), cause.clone()))
        .collect();
    let retry: Vec<String> = outcome
        .failed
        .iter()
        .filter(|id| !outcome.rejected.iter().any(|(r, _)| r == *id))
        .map(body_of)
        .collect();
    if !retry.is_empty() {
        lock(&queue.bodies).extend(retry);
    }
    rejected
}
