//! The chaos suite: seeded, replayable runs of the real router and worker code over the
//! in-memory ports with faults injected at every port call, checked against a model once the
//! system has quiesced.
//!
//! One seed draws a [`Scenario`] (accounts, targets in random initial states, overlapping
//! operations, an override, a broken role, slow and failing EKS updates) and a stream of
//! faults: duplicated, reordered and late deliveries, crashes between any two port calls (the
//! whole invocation dies, as a Lambda does, and its messages come back after the visibility
//! timeout), invocations killed at their function timeout, throttling, lost answers, and
//! several invocations interleaving at port calls. Then faults stop, the queues drain, and
//! [`check`] compares every target, baseline, task and operation with what must hold.
//!
//! ```no_run
//! let report = curfew_tests::chaos::run_seed(42);
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! ```

pub mod faults;
mod invariants;
mod queue;
mod scenario;

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use curfew_core::clock::{Clock, ManualClock};
use curfew_core::fakes::{FakeClusters, FakeSpokes, MemoryStore};
use curfew_core::ports::TargetStore;
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::{router_batch, worker_batch, BatchOutcome, Delivery, Hub, Settings};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub use faults::Rates;
pub use scenario::{Mix, Model, Scenario};

use faults::{invoke_once, ChaosClusters, ChaosSpokes, ChaosStore, Faults};
use queue::ChaosQueue;

/// What one seed found.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Invariants that did not hold, one line each.
    pub violations: Vec<String>,
    /// Faults injected during the run.
    pub faults: u64,
    /// Handler invocations run (router and worker batches).
    pub invocations: u64,
}

/// The fault rates every seed runs with.
pub const RATES: Rates = Rates {
    crash: 0.01,
    throttle: 0.03,
    lost_answer: 0.02,
    slow: 0.02,
    interleave: 0.3,
    duplicate: 0.05,
};

/// The worker's function timeout in the run; the lease outlasts it (see `Settings`).
const FUNCTION_TIMEOUT: i64 = 60;
/// The queues' visibility timeout.
const VISIBILITY: i64 = 90;
/// Steps with faults; operations are started during the first 40.
const STEPS: usize = 120;
/// Steps allowed to drain once faults stop.
const QUIESCE_STEPS: usize = 200;
/// The run's `task_max_receives`: more receives than one message can have in a run.
const NEVER_DEAD_LETTERED: u32 = (STEPS + QUIESCE_STEPS + 1) as u32;

/// The command that replays one seed.
pub fn replay_command(seed: u64, mix: Mix) -> String {
    match mix {
        Mix::Fleet => format!("make chaos SEED={seed}"),
        Mix::Holds => format!("make chaos SEED={seed} MIX=holds"),
    }
}

/// Runs one seed of the suite's mix on a fresh single-threaded runtime (so the run is
/// deterministic).
pub fn run_seed(seed: u64) -> SeedReport {
    run_seed_in(seed, Mix::Fleet)
}

/// Runs one seed of `mix` on a fresh single-threaded runtime.
pub fn run_seed_in(seed: u64, mix: Mix) -> SeedReport {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime")
        .block_on(run(seed, mix))
}

struct World {
    hub: Hub,
    store: Arc<MemoryStore>,
    spokes: Arc<FakeSpokes>,
    clusters: Arc<FakeClusters>,
    router_q: Arc<ChaosQueue>,
    task_q: Arc<ChaosQueue>,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
}

async fn run(seed: u64, mix: Mix) -> SeedReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Utc.with_ymd_and_hms(2027, 3, 1, 18, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::replayable(start));
    let faults = Arc::new(Faults::new(
        StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        RATES,
        clock.clone(),
    ));
    let scenario = Scenario::generate(&mut rng, mix);
    let store = Arc::new(MemoryStore::new());
    let spokes = Arc::new(FakeSpokes::new());
    spokes.set_page(1);
    let clusters = Arc::new(FakeClusters::new());
    let mut report = SeedReport {
        seed,
        ..SeedReport::default()
    };
    if let Err(e) = scenario.install(&store, &spokes, &clusters, start).await {
        report
            .violations
            .push(format!("installing the scenario failed: {e}"));
        return report;
    }
    let visibility = Duration::seconds(VISIBILITY);
    let router_q = Arc::new(ChaosQueue::new(
        "r",
        faults.clone(),
        clock.clone(),
        visibility,
    ));
    let task_q = Arc::new(ChaosQueue::new(
        "t",
        faults.clone(),
        clock.clone(),
        visibility,
    ));
    let hub = Hub {
        store: Arc::new(ChaosStore {
            inner: store.clone(),
            faults: faults.clone(),
        }),
        router_queue: router_q.clone(),
        task_queue: task_q.clone(),
        spokes: Arc::new(ChaosSpokes {
            inner: spokes.clone(),
            faults: faults.clone(),
        }),
        clusters: Arc::new(ChaosClusters {
            inner: clusters.clone(),
            faults: faults.clone(),
        }),
        clock: clock.clone(),
        settings: Settings {
            // The lease outlasts the function timeout, as the worker's configuration requires.
            lease_ttl: Duration::seconds(FUNCTION_TIMEOUT + 60),
            discovery_concurrency: 4,
            // Parts of two targets, listed a target a page: a shard of three or four is
            // planned in parts while it is listed, and a fault can strike between any two.
            chunk_targets: 2,
            part_chunks: 1,
            // No message is received this often in a run (STEPS + QUIESCE_STEPS rounds at
            // most): nothing is given up for the dead-letter queue the chaos queue lacks.
            task_max_receives: NEVER_DEAD_LETTERED,
            ..Settings::default()
        },
        notices: curfew_core::notice::Notices::none(),
    };
    let world = World {
        hub,
        store,
        spokes,
        clusters,
        router_q,
        task_q,
        faults,
        clock,
    };
    let mut started = Vec::new();
    let mut kept_awake_since = None;
    let mut planned = scenario.operations.iter().peekable();
    for step in 0..STEPS {
        if scenario
            .kept_awake
            .as_ref()
            .is_some_and(|(_, at)| *at == step)
        {
            let now = world.clock.now();
            if let Some(o) = scenario.keep_awake(now) {
                if let Err(e) = world.store.put_override(&o).await {
                    report
                        .violations
                        .push(format!("putting the override failed: {e}"));
                }
                kept_awake_since = Some(now);
                world.clock.advance(Duration::seconds(1));
            }
        }
        while let Some(op) = planned.next_if(|op| op.step <= step) {
            let invocation = if op.action == curfew_core::decision::Action::Stop {
                Invocation::Stop {
                    select: op.selector.clone(),
                    dry_run: op.dry_run,
                    discovery: Default::default(),
                    hold: None,
                }
            } else {
                Invocation::Start {
                    select: op.selector.clone(),
                    dry_run: op.dry_run,
                    discovery: Default::default(),
                    hold: None,
                }
            };
            match invoke(&world.hub, invocation).await {
                Ok(response) => started.push(response.operation_id),
                Err(e) => report
                    .violations
                    .push(format!("starting an operation failed: {e}")),
            }
            world.clock.advance(Duration::seconds(1));
        }
        let concurrent = rng.random_range(1..=3);
        report.invocations += round(&world, &mut rng, concurrent, &mut report.violations).await;
        world
            .clock
            .advance(Duration::seconds(rng.random_range(1..20)));
    }
    world.faults.disable();
    let mut quiet = false;
    for _ in 0..QUIESCE_STEPS {
        if world.router_q.is_empty() && world.task_q.is_empty() {
            quiet = true;
            break;
        }
        report.invocations += round(&world, &mut rng, 1, &mut report.violations).await;
        world.clock.advance(Duration::seconds(VISIBILITY + 1));
    }
    if !quiet {
        report.violations.push(format!(
            "the queues did not drain: {} router and {} task messages left",
            world.router_q.len(),
            world.task_q.len()
        ));
    }
    report.faults = world.faults.injected();
    report.violations.extend(
        invariants::check(
            &scenario,
            kept_awake_since,
            &world.store,
            &world.spokes,
            &world.clusters,
            &started,
        )
        .await,
    );
    report
}

enum Consumer {
    Router,
    Worker,
}

/// Runs up to `concurrent` invocations at once, each on a batch of visible messages; returns
/// how many ran. A message a handler rejects as unfixable is a violation (in production it
/// would end in the dead-letter queue).
async fn round(
    world: &World,
    rng: &mut StdRng,
    concurrent: usize,
    violations: &mut Vec<String>,
) -> u64 {
    let mut runs = Vec::new();
    for _ in 0..concurrent {
        let (queue, consumer) = match (world.router_q.visible(), world.task_q.visible()) {
            (0, 0) => break,
            (_, 0) => (&world.router_q, Consumer::Router),
            (0, _) => (&world.task_q, Consumer::Worker),
            _ if rng.random_bool(0.5) => (&world.router_q, Consumer::Router),
            _ => (&world.task_q, Consumer::Worker),
        };
        let batch = queue.receive(rng.random_range(1..=10), rng);
        if batch.is_empty() {
            continue;
        }
        runs.push((queue.clone(), consumer, batch));
    }
    let ran = runs.len() as u64;
    let deadline = world.clock.now() + Duration::seconds(FUNCTION_TIMEOUT);
    let outcomes = futures::future::join_all(runs.iter().map(|(_, consumer, batch)| {
        invoke_once(deadline, async {
            match consumer {
                Consumer::Router => {
                    let pairs: Vec<(String, String)> = batch
                        .iter()
                        .map(|d| (d.message_id.clone(), d.body.clone()))
                        .collect();
                    router_batch(&world.hub, &pairs).await
                }
                Consumer::Worker => worker_batch(&world.hub, batch).await,
            }
        })
    }))
    .await;
    for ((queue, _, batch), outcome) in runs.iter().zip(outcomes) {
        // A crashed invocation deletes nothing: its messages come back after the timeout.
        let Some(outcome) = outcome else { continue };
        for (receipt, cause) in &outcome.rejected {
            violations.push(format!("a message was rejected: {cause}"));
            queue.delete(receipt);
        }
        settle(queue, batch, &outcome, world);
    }
    ran
}

/// Deletes the messages a batch finished (ReportBatchItemFailures keeps the others), unless
/// the delete is lost and the message comes back once more.
fn settle(queue: &ChaosQueue, batch: &[Delivery], outcome: &BatchOutcome, world: &World) {
    for delivery in batch {
        if outcome.failed.contains(&delivery.message_id) {
            continue;
        }
        if !world.faults.duplicate() {
            queue.delete(&delivery.message_id);
        }
    }
}
