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
    /// into calls of at most [`BATCH`] messages and 240 KiB (`curfew_aws::sqs::batches`, the
    /// adapter's own packing, applied to the observed bodies). Derived from what was observed,
    /// not observed itself: below the port there is no SQS in the in-memory runs.
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
    /// plain runs). A send of n bodies makes ceil(n / 10) calls, up to
    /// `curfew_aws::sqs::SEND_CONCURRENCY` at once, as the SQS adapter makes them.
    latency: std::time::Duration,
    sends: AtomicU64,
    messages: AtomicU64,
    largest_send: AtomicU64,
    batch_calls: AtomicU64,
    /// Where the thread CPU time of each inner send goes, once [`CountingQueue::time_into`]
    /// is called.
    timer: std::sync::OnceLock<Arc<crate::counting::cpu::FakeTime>>,
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
            timer: std::sync::OnceLock::new(),
        }
    }

    /// From now on adds the thread CPU time of every inner send to `timer`. False, and
    /// nothing changes, if the queue already has a timer.
    pub fn time_into(&self, timer: Arc<crate::counting::cpu::FakeTime>) -> bool {
        self.timer.set(timer).is_ok()
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
        self.count(bodies).await;
        self.timed(self.inner.send(bodies)).await
    }

    async fn send_as(&self, tenant: &str, bodies: &[String]) -> PortResult<()> {
        self.count(bodies).await;
        self.timed(self.inner.send_as(tenant, bodies)).await
    }
}

impl CountingQueue {
    /// Runs the inner `send`, its thread CPU time going to the timer if there is one.
    async fn timed(
        &self,
        send: impl std::future::Future<Output = PortResult<()>>,
    ) -> PortResult<()> {
        let timer = self.timer.get();
        let started = timer.map(|t| t.start());
        let sent = send.await;
        if let (Some(timer), Some(started)) = (timer, started) {
            timer.stop(started);
        }
        sent
    }

    /// Counts one send of `bodies` and takes its latency.
    async fn count(&self, bodies: &[String]) {
        let n = bodies.len() as u64;
        self.sends.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(n, Ordering::Relaxed);
        self.largest_send.fetch_max(n, Ordering::Relaxed);
        // As the SQS adapter packs them: ten messages and 240 KiB a call at most.
        let calls = curfew_aws::sqs::batches(bodies).len() as u64;
        self.batch_calls.fetch_add(calls, Ordering::Relaxed);
        if !self.latency.is_zero() {
            // The SQS adapter makes up to SEND_CONCURRENCY calls at once.
            let rounds = calls.div_ceil(curfew_aws::sqs::SEND_CONCURRENCY as u64);
            tokio::time::sleep(self.latency * rounds as u32).await;
        }
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

/// Where `make bench` keeps its figures for scripts: `$CARGO_TARGET_DIR/curfew-bench.json`, or
/// `target/curfew-bench.json` from the workspace root.
pub fn results_path() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            tests.parent().unwrap_or(tests).join("target")
        });
    target.join("curfew-bench.json")
}

/// Records `value` as the `section` of the JSON object in `path`, keeping the other sections
/// (each benchmark binary writes its own), and writes it back.
///
/// # Errors
/// When the file exists but is not a JSON object, or cannot be read or written.
pub fn record(
    path: &std::path::Path,
    section: &str,
    value: serde_json::Value,
) -> std::io::Result<()> {
    let mut all = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
            .map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a JSON object: {e}", path.display()),
                )
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Map::new(),
        Err(e) => return Err(e),
    };
    all.insert(section.to_string(), value);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(&all).expect("JSON values serialize");
    std::fs::write(path, text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_benchmark_records_its_own_section_and_keeps_the_others() {
        let dir = std::env::temp_dir().join(format!("curfew-bench-{}", uuid::Uuid::new_v4()));
        let path = dir.join("curfew-bench.json");
        record(&path, "scale", serde_json::json!({"targets": 100})).unwrap();
        record(&path, "sim", serde_json::json!({"makespan_s": 52.9})).unwrap();
        record(&path, "scale", serde_json::json!({"targets": 200})).unwrap();
        let all: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            all,
            serde_json::json!({"scale": {"targets": 200}, "sim": {"makespan_s": 52.9}})
        );
        std::fs::write(&path, "[1, 2]").unwrap();
        let refused = record(&path, "sim", serde_json::json!({})).unwrap_err();
        assert!(
            refused.to_string().contains("not a JSON object"),
            "{refused}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
