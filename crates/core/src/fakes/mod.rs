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
mod notifier;
mod queue;
mod spokes;
mod store;
mod trail;

pub use clusters::{ClusterCall, ClusterObjects, FakeClusters, PoolNodes};
pub use notifier::{MemoryNotifier, MemorySentNotices};
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

/// Notices to a fresh [`MemoryNotifier`], kept to one send each by a fresh record: put them
/// in a fake hub's `notices` to see what the services publish.
pub fn notices() -> (crate::notice::Notices, Arc<MemoryNotifier>) {
    let notifier = Arc::new(MemoryNotifier::new());
    let notices = crate::notice::Notices::new(notifier.clone(), Arc::new(MemorySentNotices::new()));
    (notices, notifier)
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
        // No cluster exists until a test adds one (a test needing them swaps in its own).
        clusters: Arc::new(FakeClusters::new()),
        clock,
        settings: Settings::default(),
        notices: crate::notice::Notices::none(),
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
    /// Task messages whose task was dead-lettered (counting each delivery once); they are
    /// re-queued like every failed message, so a task queue with a dead-letter queue
    /// ([`MemoryQueue::set_dead_letters`]) moves them there on their next receive.
    pub dead_lettered: usize,
    /// True when both queues ended empty; false when the round limit was hit (e.g. a target
    /// stayed busy and its message kept coming back).
    pub settled: bool,
}

/// Rounds [`drain`] runs at most before giving up.
pub const DRAIN_ROUNDS: usize = 50;

/// Works both queues like their Lambdas would until both are empty (or [`DRAIN_ROUNDS`] pass):
/// router messages first, then task messages (each delivered with its receive count); failed
/// messages go back on their queue, rejected ones are reported and dropped.
pub async fn drain(hub: &Hub, router_q: &MemoryQueue, task_q: &MemoryQueue) -> Drained {
    drain_rounds(hub, router_q, task_q, DRAIN_ROUNDS).await
}

/// [`drain`], for at most `rounds` rounds.
pub async fn drain_rounds(
    hub: &Hub,
    router_q: &MemoryQueue,
    task_q: &MemoryQueue,
    rounds: usize,
) -> Drained {
    let mut drained = Drained::default();
    while drained.rounds < rounds {
        if router_q.is_empty() && task_q.is_empty() {
            drained.settled = true;
            return drained;
        }
        drained.rounds += 1;
        let routed = work(router_q, |m| async move {
            let pairs: Vec<(String, String)> =
                m.into_iter().map(|d| (d.message_id, d.body)).collect();
            service::router_batch(hub, &pairs).await
        })
        .await;
        let worked = work(
            task_q,
            |m| async move { service::worker_batch(hub, &m).await },
        )
        .await;
        drained.rejected.extend(routed.rejected);
        drained.rejected.extend(worked.rejected);
        drained.dead_lettered += worked.dead_lettered.len();
    }
    drained.settled = router_q.is_empty() && task_q.is_empty();
    drained
}

/// Takes every message off `task_q` and returns the task bodies among them, each account plan
/// planned first the way the router planned before plans went to the workers
/// ([`service::router::plan_account`]: every chunk sent, the first too, nothing worked): what
/// a test that delivers chunks by hand starts from.
pub async fn plan_all(hub: &Hub, task_q: &MemoryQueue) -> Vec<String> {
    let mut bodies = Vec::new();
    for body in task_q.take_all() {
        match crate::chunk::read_body(&body) {
            Ok(crate::chunk::TaskBody::Plan(plan)) => {
                service::router::plan_account(hub, &plan.op_id, &plan.shards)
                    .await
                    .expect("an account plan plans");
                bodies.extend(task_q.take_all());
            }
            _ => bodies.push(body),
        }
    }
    bodies
}

/// Receives every message on `queue`, works them as one batch, puts the failed ones back and
/// drops the rejected ones; returns the batch's outcome with bodies in place of message ids
/// in `rejected`.
async fn work<F, Fut>(queue: &MemoryQueue, batch: F) -> service::BatchOutcome
where
    F: FnOnce(Vec<service::Delivery>) -> Fut,
    Fut: std::future::Future<Output = service::BatchOutcome>,
{
    let deliveries = queue.receive_all();
    if deliveries.is_empty() {
        return service::BatchOutcome::default();
    }
    let mut outcome = batch(deliveries.clone()).await;
    for delivery in &deliveries {
        let id = &delivery.message_id;
        if outcome.rejected.iter().any(|(r, _)| r == id) || !outcome.failed.contains(id) {
            queue.delete(id);
        } else {
            queue.retry(id);
        }
    }
    let body_of = |id: &String| {
        deliveries
            .iter()
            .find(|d| &d.message_id == id)
            .map(|d| d.body.clone())
            .unwrap_or_default()
    };
    for (id, _) in outcome.rejected.iter_mut() {
        *id = body_of(id);
    }
    outcome
}
