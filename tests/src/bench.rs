//! What the two benchmark binaries share: a queue that counts what goes through it, and their
//! `--name N` arguments.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use curfew_core::ports::{PortResult, Queue};

/// Messages per SendMessageBatch call, as the SQS adapter sends them.
pub use curfew_aws::sqs::MAX_BATCH as BATCH;

/// Counts messages and SendMessageBatch calls (10 bodies each) around a real or fake queue.
pub struct CountingQueue {
    inner: Arc<dyn Queue>,
    messages: AtomicU64,
    batch_calls: AtomicU64,
}

impl CountingQueue {
    /// Counts what is sent through `inner`.
    pub fn new(inner: Arc<dyn Queue>) -> CountingQueue {
        CountingQueue {
            inner,
            messages: AtomicU64::new(0),
            batch_calls: AtomicU64::new(0),
        }
    }

    /// Messages sent so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// SendMessageBatch calls so far.
    pub fn batch_calls(&self) -> u64 {
        self.batch_calls.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Queue for CountingQueue {
    async fn send(&self, bodies: &[String]) -> PortResult<()> {
        self.messages
            .fetch_add(bodies.len() as u64, Ordering::Relaxed);
        self.batch_calls
            .fetch_add(bodies.len().div_ceil(BATCH) as u64, Ordering::Relaxed);
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
