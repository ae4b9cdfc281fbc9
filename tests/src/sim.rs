//! The simulation (issue 9, first part): the real router and worker over the in-memory ports,
//! with every call taking the time its AWS counterpart takes ([`Latency`]), queues worked the
//! way an SQS event source mapping works them (up to `concurrency` pollers, each receiving up to
//! 10 messages as soon as it is free), on tokio's clock. Run on a paused clock (a
//! `current_thread` runtime with `start_paused`), time is virtual: a 100,000-target wave takes
//! seconds of real time, and its makespan is what it would be with those latencies.
//!
//! The report puts the makespan against its lower bound: the workers' busy time divided by the
//! concurrency cap (no schedule of that work on that many pollers can finish sooner). Rate
//! limits (per-account token buckets), injected throttling and the makespan bound they add are
//! the next part of the issue; they are not modelled here yet.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use curfew_core::account::SpokeRole;
use curfew_core::fakes::MemoryQueue;
use curfew_core::hold::CaTag;
use curfew_core::ports::{PortResult, Queue, Spokes, UpdateState};
use curfew_core::service::BatchOutcome;
use curfew_core::target::{LiveState, Processes, Sizes, Target};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use crate::bench::BATCH;

/// How long each kind of call takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// A spoke call (Auto Scaling, EKS, through the cached session).
    pub spoke: Duration,
    /// A state-table request (DynamoDB).
    pub state: Duration,
    /// One SendMessageBatch call (SQS).
    pub queue: Duration,
}

impl Default for Latency {
    /// Issue 9's defaults: 50 ms per spoke call, 10 ms per DynamoDB or SQS request.
    fn default() -> Self {
        Latency {
            spoke: Duration::from_millis(50),
            state: Duration::from_millis(10),
            queue: Duration::from_millis(10),
        }
    }
}

/// How long a message a handler left for later stays invisible before it is received again
/// (the task queue's visibility timeout is the worker's; the simulation uses a short one so a
/// retried message does not dominate the makespan it is measuring).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What a simulated run models: the latencies, and the spoke's rate limit if any.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Simulation {
    /// Per call.
    pub latency: Latency,
    /// Spoke calls per account and region (`None`: unlimited).
    pub spoke_limit: Option<RateLimit>,
}

/// The seed of the receives' sampling.
const SAMPLING_SEED: u64 = 9;

/// How long an idle poller waits before receiving again (SQS long polling answers as soon as a
/// message arrives; this is the granularity of that wait here).
const POLL: Duration = Duration::from_millis(20);

/// A token bucket of spoke calls per account and region: `burst` calls at once, then `rate`
/// a second. The spoke's throttling, as a client that paces its retries by the bucket sees it:
/// a call waits for its token instead of failing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub rate: f64,
    /// The bucket's size.
    pub burst: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Spoke calls that each take `latency` before reaching `inner`, paced by a [`RateLimit`] per
/// account and region when one is set, and counted per account and region.
pub struct SlowSpokes {
    inner: Arc<dyn Spokes>,
    latency: Duration,
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
    calls: Mutex<HashMap<(String, String), u64>>,
}

impl SlowSpokes {
    /// `inner`'s calls taking `latency` each, paced by `limit` if given.
    pub fn new(inner: Arc<dyn Spokes>, latency: Duration, limit: Option<RateLimit>) -> Self {
        SlowSpokes {
            inner,
            latency,
            limit,
            buckets: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    async fn wait(&self, account: &str, region: &str) {
        let shard = (account.to_string(), region.to_string());
        *self
            .calls
            .lock()
            .expect("not poisoned")
            .entry(shard.clone())
            .or_default() += 1;
        if let Some(limit) = self.limit {
            // Each call takes a token, going into debt when none is left: a call's wait is the
            // time the bucket needs to pay its debt back, so calls are served in turn at the
            // bucket's rate with one sleep each.
            let wait = {
                let now = Instant::now();
                let mut buckets = self.buckets.lock().expect("not poisoned");
                let bucket = buckets.entry(shard).or_insert(Bucket {
                    tokens: limit.burst,
                    at: now,
                });
                let refill = (now - bucket.at).as_secs_f64() * limit.rate;
                bucket.tokens = (bucket.tokens + refill).min(limit.burst) - 1.0;
                bucket.at = now;
                (-bucket.tokens).max(0.0) / limit.rate
            };
            if wait > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
        }
        tokio::time::sleep(self.latency).await;
    }

    /// Forgets the calls counted so far (a new wave).
    pub fn reset_counts(&self) {
        self.calls.lock().expect("not poisoned").clear();
    }

    /// The lower bound the rate limit puts on the calls counted since the last reset: the
    /// busiest account and region cannot make its calls faster than its bucket allows
    /// (`(calls - burst) / rate`). Zero without a limit.
    pub fn rate_bound(&self) -> Duration {
        let Some(limit) = self.limit else {
            return Duration::ZERO;
        };
        let busiest = self
            .calls
            .lock()
            .expect("not poisoned")
            .values()
            .copied()
            .max()
            .unwrap_or(0) as f64;
        Duration::from_secs_f64(((busiest - limit.burst).max(0.0)) / limit.rate)
    }
}

#[async_trait]
impl Spokes for SlowSpokes {
    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>> {
        self.wait(&role.account, region).await;
        self.inner.discover(role, region).await
    }
    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        self.wait(&target.account, &target.region).await;
        self.inner.live_state(role, target).await
    }
    async fn set_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>> {
        self.wait(&target.account, &target.region).await;
        self.inner.set_sizes(role, target, sizes).await
    }
    async fn suspend_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        self.wait(&target.account, &target.region).await;
        self.inner.suspend_processes(role, target, processes).await
    }
    async fn resume_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        self.wait(&target.account, &target.region).await;
        self.inner.resume_processes(role, target, processes).await
    }
    async fn ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>> {
        self.wait(&target.account, &target.region).await;
        self.inner.ca_tags(role, target).await
    }
    async fn remove_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        self.wait(&target.account, &target.region).await;
        self.inner.remove_ca_tags(role, target, tags).await
    }
    async fn restore_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        self.wait(&target.account, &target.region).await;
        self.inner.restore_ca_tags(role, target, tags).await
    }
    async fn update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        planned: Sizes,
    ) -> PortResult<UpdateState> {
        self.wait(&target.account, &target.region).await;
        self.inner
            .update_state(role, target, update_id, planned)
            .await
    }
}

/// What working a queue as an event source mapping took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sourced {
    /// Handler invocations (receives of up to 10 messages).
    pub invocations: usize,
    /// The sum of every invocation's duration: the work the pollers shared.
    pub busy: Duration,
    /// Causes of messages rejected as unfixable (they would go to the DLQ).
    pub rejected: Vec<String>,
    /// Messages the handler finished (not reported failed): the event source mapping deletes
    /// them from the queue.
    pub deleted: usize,
    /// Invocations that finished at least one message: the event source mapping deletes a
    /// batch's finished messages with one DeleteMessageBatch call.
    pub delete_batches: usize,
}

/// Works `queue` the way an SQS event source mapping with maximum concurrency `concurrency`
/// does: that many pollers, each receiving up to 10 messages (sampled, not in order, as a
/// standard queue hands them out) whenever it is free and handing them to `handler`; failed messages come back after [`RETRY_AFTER`], rejected ones are
/// dropped (reported). Returns once the queue is empty, nothing is in flight and nothing waits
/// to come back.
pub async fn event_source<F, Fut>(queue: &MemoryQueue, concurrency: usize, handler: F) -> Sourced
where
    F: Fn(Vec<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = (Vec<(String, String)>, BatchOutcome)>,
{
    let in_flight = AtomicUsize::new(0);
    let delayed: Mutex<VecDeque<(Instant, Vec<String>)>> = Mutex::new(VecDeque::new());
    let sourced = Mutex::new(Sourced::default());
    let received = AtomicUsize::new(0);
    // A standard queue does not keep order: each receive samples the queue (seeded, so a run
    // is repeatable). Strict order would make every poller take the same shard's messages.
    let sampler = Mutex::new(StdRng::seed_from_u64(SAMPLING_SEED));
    let poller = |_| async {
        loop {
            let now = Instant::now();
            let due: Vec<String> = {
                let mut waiting = delayed.lock().expect("not poisoned");
                let mut due = Vec::new();
                while waiting.front().is_some_and(|(at, _)| *at <= now) {
                    due.extend(waiting.pop_front().expect("checked").1);
                }
                due
            };
            if !due.is_empty() {
                queue.send(&due).await.expect("the memory queue takes it");
            }
            let bodies = queue.take_with(BATCH, |len| {
                sampler.lock().expect("not poisoned").random_range(0..len)
            });
            if bodies.is_empty() {
                let waiting = !delayed.lock().expect("not poisoned").is_empty();
                if in_flight.load(Ordering::SeqCst) == 0 && !waiting && queue.is_empty() {
                    return;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            in_flight.fetch_add(1, Ordering::SeqCst);
            let n = received.fetch_add(1, Ordering::SeqCst);
            let messages: Vec<(String, String)> = bodies
                .into_iter()
                .enumerate()
                .map(|(i, body)| (format!("{n}-{i}"), body))
                .collect();
            let started = Instant::now();
            let (messages, outcome) = handler(messages).await;
            let took = started.elapsed();
            let deleted = messages
                .iter()
                .filter(|(id, _)| !outcome.failed.contains(id))
                .count();
            let retry: Vec<String> = messages
                .into_iter()
                .filter(|(id, _)| {
                    outcome.failed.contains(id) && !outcome.rejected.iter().any(|(r, _)| r == id)
                })
                .map(|(_, body)| body)
                .collect();
            if !retry.is_empty() {
                delayed
                    .lock()
                    .expect("not poisoned")
                    .push_back((Instant::now() + RETRY_AFTER, retry));
            }
            {
                let mut s = sourced.lock().expect("not poisoned");
                s.invocations += 1;
                s.busy += took;
                s.deleted += deleted;
                s.delete_batches += usize::from(deleted > 0);
                s.rejected
                    .extend(outcome.rejected.into_iter().map(|(_, cause)| cause));
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    };
    futures::future::join_all((0..concurrency.max(1)).map(poller)).await;
    sourced.into_inner().expect("not poisoned")
}

/// The makespan of work that kept `concurrency` pollers `busy` in total cannot be shorter than
/// `busy / concurrency`; the ratio of a makespan to this bound says how much of the pool sat
/// idle (1.0: none).
pub fn concurrency_bound(busy: Duration, concurrency: usize) -> Duration {
    busy / concurrency.max(1) as u32
}
