//! What the two benchmark binaries share: a queue that counts what goes through it, and their
//! `--name N` arguments.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use curfew_core::ports::{PortResult, Queue};

/// Messages per SendMessageBatch call, as the SQS adapter sends them.
pub use curfew_aws::sqs::MAX_BATCH as BATCH;

/// What went through a [`CountingQueue`] up to some moment; subtract two with
/// [`SendCounts::since`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendCounts {
    /// `Queue::send` calls observed (the router sends one per shard, with every task of it).
    pub sends: u64,
    /// Message bodies in them.
    pub messages: u64,
    /// The most bodies seen in one `send`.
    pub largest_send: u64,
    /// SendMessageBatch calls the SQS adapter makes for the sends observed: it splits each send
    /// into calls of at most [`BATCH`] (`curfew_aws::sqs`), so this is the sum over the observed
    /// sends of their size divided by 10, rounded up. Derived from what was observed, not
    /// observed itself: below the port there is no SQS in the in-memory runs.
    pub batch_calls: u64,
}

impl SendCounts {
    /// What was sent after `earlier` was taken (the largest send is the largest overall).
    pub fn since(&self, earlier: &SendCounts) -> SendCounts {
        SendCounts {
            sends: self.sends - earlier.sends,
            messages: self.messages - earlier.messages,
            largest_send: self.largest_send,
            batch_calls: self.batch_calls - earlier.batch_calls,
        }
    }
}

/// Counts the `send` calls, the messages in them and the largest of them around a real or fake
/// queue, as the services make them.
pub struct CountingQueue {
    inner: Arc<dyn Queue>,
    /// How long each SendMessageBatch call takes (the simulation's SQS latency; zero in the
    /// plain runs). A send of n bodies makes ceil(n / 10) calls, one after the other.
    latency: std::time::Duration,
    sends: AtomicU64,
    messages: AtomicU64,
    largest_send: AtomicU64,
    batch_calls: AtomicU64,
}

impl CountingQueue {
    /// Counts what is sent through `inner`.
    pub fn new(inner: Arc<dyn Queue>) -> CountingQueue {
        CountingQueue {
            inner,
            latency: std::time::Duration::ZERO,
            sends: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            largest_send: AtomicU64::new(0),
            batch_calls: AtomicU64::new(0),
        }
    }

    /// The same, each SendMessageBatch call taking `latency` (tokio's clock).
    pub fn with_latency(self, latency: std::time::Duration) -> CountingQueue {
        CountingQueue { latency, ..self }
    }

    /// Messages sent so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// SendMessageBatch calls the SQS adapter makes for the sends so far (see
    /// [`SendCounts::batch_calls`]: derived from the observed sends).
    pub fn batch_calls(&self) -> u64 {
        self.batch_calls.load(Ordering::Relaxed)
    }

    /// Everything counted so far.
    pub fn counts(&self) -> SendCounts {
        SendCounts {
            sends: self.sends.load(Ordering::Relaxed),
            messages: self.messages(),
            largest_send: self.largest_send.load(Ordering::Relaxed),
            batch_calls: self.batch_calls(),
        }
    }
}

#[async_trait]
impl Queue for CountingQueue {
    async fn send(&self, bodies: &[String]) -> PortResult<()> {
        let n = bodies.len() as u64;
        self.sends.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(n, Ordering::Relaxed);
        self.largest_send.fetch_max(n, Ordering::Relaxed);
        let calls = n.div_ceil(BATCH as u64);
        self.batch_calls.fetch_add(calls, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency * calls as u32).await;
        }
        self.inner.send(bodies).await
    }
}

/// The number after `name` on the command line, or `default`.
///
/// # Panics
/// When the value is not a number: a benchmark's arguments are typed by the person running it.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}
