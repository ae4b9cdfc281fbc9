//! A stop wave and a start wave over a whole fleet, through the real invocation, two-level router
//! fan-out and worker code over the in-memory ports (`curfew_core::fakes`), checked target by
//! target against DESIGN.md's semantics. `curfew-scale` runs it at 100,000 targets; the
//! `scale_shapes` property test runs it over many small shapes.
//!
//! Every check answers with a [`Problem`] rather than a panic, so a caller sees every target
//! that went wrong and the counts the run observed, and a test can assert on them.
//!
//! ```no_run
//! # async fn run() {
//! use curfew_tests::scale::{run, FleetShape};
//!
//! let report = run(&FleetShape { targets: 1_000, accounts: 30, ..FleetShape::default() }).await;
//! assert!(report.is_clean(), "{:?}", report.problems().next());
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use chrono::{TimeZone, Utc};
use curfew_core::account::Account;
use curfew_core::chunk::{read_body, TaskBody};
use curfew_core::clock::ManualClock;
use curfew_core::decision::{Action, SkipReason};
use curfew_core::fakes::{self, FakeSpokes, MemoryQueue, MemoryStore};
use curfew_core::operation::{Discovery, OpCounts, OpStatus, Task, TaskStatus};
use curfew_core::ports::{AccountStore, ErrorKind, OperationStore, Queue, ScheduleStore};
use curfew_core::schedule::Schedule;
use curfew_core::selector::Selector;

use crate::around::AroundSpokes;
use crate::sim::{
    event_source, Latency, Simulation, SlowSpokes, Source, Sourced, SpokeTraffic, ROUTER_TIMEOUT,
    WORKER_TIMEOUT,
};
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::{
    poller, router_batch, worker_batch_until, BatchOutcome, Delivery, Hub, TASK_BATCH_SIZE,
};
use curfew_core::target::{Processes, Sizes, Target, TargetKind};
use futures::stream::{self, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bench::{arg, CountingQueue, SendCounts, BATCH};
use crate::counting::cpu::{process_cpu, CpuSplit, FakeTime};
use crate::counting::{CountingStore, StoreCounts, TimedSpokes};

/// Ends a handler's timing begun at `clock`, when the run times handlers.
fn stop_clock(timing: Option<&FakeTime>, clock: Option<Duration>) {
    if let (Some(timer), Some(clock)) = (timing, clock) {
        timer.stop(clock);
    }
}

/// Rounds of a queue (everything queued at a round's start is worked in it) before the run
/// gives up on it: failed messages come back each round, and none should fail here.
const MAX_ROUNDS: usize = 20;

/// The fleet a run seeds and how it works the queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetShape {
    /// Targets in all, spread evenly over the account-regions (the first take the remainder).
    pub targets: usize,
    /// Spoke accounts.
    pub accounts: usize,
    /// Regions per account.
    pub regions: usize,
    /// Batches of 10 messages worked at once, as the event source mapping's maximum concurrency.
    pub concurrency: usize,
    /// Every `asleep_every`-th target is seeded already at its stopped sizes with no baseline
    /// (0 = none): the stop must skip it and the start must leave it alone.
    pub asleep_every: usize,
    /// Targets added to the first account's first region on top of `targets` (0 = none): one
    /// large account among small ones, for the fairness of a rate-limited wave.
    pub big_account: usize,
}

impl Default for FleetShape {
    /// `make bench`'s fleet: 100,000 targets in 200 accounts x 2 regions, concurrency 50, all
    /// awake.
    fn default() -> Self {
        FleetShape {
            targets: 100_000,
            accounts: 200,
            regions: 2,
            concurrency: 50,
            asleep_every: 0,
            big_account: 0,
        }
    }
}

impl FleetShape {
    /// The fleet the command line asks for (`--targets`, `--accounts`, `--regions`,
    /// `--concurrency`, `--asleep-every`, `--big-account`), the default's for what it leaves out.
    pub fn from_args() -> FleetShape {
        let d = FleetShape::default();
        FleetShape {
            targets: arg("--targets", d.targets),
            accounts: arg("--accounts", d.accounts),
            regions: arg("--regions", d.regions),
            concurrency: arg("--concurrency", d.concurrency),
            asleep_every: arg("--asleep-every", d.asleep_every),
            big_account: arg("--big-account", d.big_account),
        }
    }

    /// Account-regions (the router's shards).
    pub fn shards(&self) -> usize {
        self.accounts * self.regions
    }

    /// Why the shape cannot be run, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.accounts == 0 || self.regions == 0 || self.concurrency == 0 {
            return Err(format!(
                "accounts, regions and concurrency must be at least 1 (got {self:?})"
            ));
        }
        if self.accounts > 900_000_000_000 {
            return Err("at most 900,000,000,000 accounts have 12-digit ids".into());
        }
        Ok(())
    }

    fn is_asleep(&self, n: usize) -> bool {
        self.asleep_every > 0 && (n + 1).is_multiple_of(self.asleep_every)
    }
}

/// One target as seeded, and what it must look like after each wave.
#[derive(Clone, Debug, PartialEq)]
pub struct SeededTarget {
    /// The target.
    pub target: Target,
    /// Its sizes before the stop.
    pub sizes: Sizes,
    /// Seeded already at its stopped sizes, with no baseline.
    pub asleep: bool,
}

/// Assorted awake sizes for the `n`-th target of the fleet (min <= desired <= max, max >= 1),
/// never the `kind`'s stopped sizes. An ASG at 0/max/0 (max >= 1) is awake: its stop saves
/// 0/max/0 and sets 0/0/0. A node group at min 0 and desired 0 is not: EKS keeps its max, so
/// 0/max/0 *is* its stopped size, and a stop skips it ("already at its stopped sizes") — seeding
/// those as awake is what made shapes other than the default fail their checks. They get one
/// node instead.
pub fn awake_sizes(kind: TargetKind, n: usize) -> Sizes {
    let min = (n % 3) as i32;
    let max = min + 1 + (n % 5) as i32;
    let mut desired = min + (n % (max - min + 1) as usize) as i32;
    if kind == TargetKind::Nodegroup && min == 0 && desired == 0 {
        desired = 1;
    }
    Sizes::new(min, max, desired)
}

/// Target `i` of one account-region: seven ASGs for every three node groups, node groups in
/// clusters of ten, every target tagged `fleet=scale`.
pub fn seeded_target(account: &str, region: &str, i: usize) -> Target {
    let nodegroup = i % 10 >= 7;
    Target {
        account: account.to_string(),
        region: region.to_string(),
        kind: if nodegroup {
            TargetKind::Nodegroup
        } else {
            TargetKind::Asg
        },
        cluster: nodegroup.then(|| format!("cluster-{}", i / 10)),
        name: format!("group-{i}"),
        tags: BTreeMap::from([("fleet".to_string(), "scale".to_string())]),
        cluster_tags: BTreeMap::new(),
        instance_types: Vec::new(),
    }
}

/// The account ids and every target of `shape`, in seeding order.
pub fn seed_plan(shape: &FleetShape) -> (Vec<String>, Vec<SeededTarget>) {
    let shards = shape.shards();
    let mut accounts = Vec::with_capacity(shape.accounts);
    let mut seeded = Vec::with_capacity(shape.targets);
    for a in 0..shape.accounts {
        let account = format!("{:012}", 100_000_000_000u64 + a as u64);
        for r in 0..shape.regions {
            let shard = a * shape.regions + r;
            let in_shard = shape.targets / shards
                + usize::from(shard < shape.targets % shards)
                + if shard == 0 { shape.big_account } else { 0 };
            for i in 0..in_shard {
                let n = seeded.len();
                let target = seeded_target(&account, &region_name(r), i);
                let awake = awake_sizes(target.kind, n);
                let asleep = shape.is_asleep(n);
                let sizes = if asleep {
                    target.kind.stopped_sizes(awake)
                } else {
                    awake
                };
                seeded.push(SeededTarget {
                    target,
                    sizes,
                    asleep,
                });
            }
        }
        accounts.push(account);
    }
    (accounts, seeded)
}

fn region_name(r: usize) -> String {
    format!("eu-test-{}", r + 1)
}

/// Something a wave did not do as DESIGN.md says, or a run that could not be carried out.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// The fleet could not be registered.
    Seeding(String),
    /// The invocation was refused.
    Invocation(String),
    /// The store did not answer a check's read.
    Store(String),
    /// A handler rejected a message as unfixable.
    Rejected {
        /// The handler's cause.
        cause: String,
    },
    /// A queue still had messages after [`MAX_ROUNDS`] rounds.
    Unsettled {
        /// `router` or `task`.
        queue: &'static str,
        /// Messages left.
        left: usize,
    },
    /// The operation did not end SUCCEEDED.
    OperationStatus {
        /// Its status, if it exists.
        found: Option<OpStatus>,
    },
    /// The operation's counts are not one task per target, the awake ones succeeded and the
    /// asleep ones skipped.
    OperationCounts {
        /// What it counted.
        found: OpCounts,
        /// What the fleet calls for.
        expected: OpCounts,
    },
    /// The operation has tasks for targets that were never seeded.
    StrayTasks {
        /// How many.
        count: usize,
    },
    /// A target's task did not end as it should.
    Task {
        /// The target.
        key: String,
        /// Its task's status and reason, if it has a task.
        found: Option<(TaskStatus, Option<String>)>,
        /// The status it should have, and for a skip the reason.
        expected: (TaskStatus, Option<String>),
    },
    /// A target's sizes are not what the wave should have left.
    Sizes {
        /// The target.
        key: String,
        /// Its sizes in the spoke, if it exists.
        found: Option<Sizes>,
        /// What they should be.
        expected: Sizes,
    },
    /// A target's baseline is not what the wave should have left.
    Baseline {
        /// The target.
        key: String,
        /// The saved baseline's sizes, if one is saved.
        found: Option<Sizes>,
        /// What should be saved (`None`: nothing).
        expected: Option<Sizes>,
    },
    /// A target's suspended Auto Scaling processes are not what the wave should have left.
    Processes {
        /// The target.
        key: String,
        /// Suspended now, if the target exists.
        found: Option<Processes>,
        /// What should be.
        expected: Processes,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Seeding(e) => write!(f, "seeding failed: {e}"),
            Problem::Invocation(e) => write!(f, "the invocation was refused: {e}"),
            Problem::Store(e) => write!(f, "the store did not answer: {e}"),
            Problem::Rejected { cause } => write!(f, "a message was rejected: {cause}"),
            Problem::Unsettled { queue, left } => write!(
                f,
                "{left} messages still on the {queue} queue after {MAX_ROUNDS} rounds"
            ),
            Problem::OperationStatus { found } => {
                write!(f, "the operation ended {found:?}, not SUCCEEDED")
            }
            Problem::OperationCounts { found, expected } => {
                write!(f, "the operation counted {found:?}, expected {expected:?}")
            }
            Problem::StrayTasks { count } => {
                write!(f, "{count} tasks for targets that were never seeded")
            }
            Problem::Task {
                key,
                found,
                expected,
            } => write!(f, "{key}: task {found:?}, expected {expected:?}"),
            Problem::Sizes {
                key,
                found,
                expected,
            } => write!(f, "{key}: sizes {found:?}, expected {expected}"),
            Problem::Baseline {
                key,
                found,
                expected,
            } => write!(f, "{key}: baseline {found:?}, expected {expected:?}"),
            Problem::Processes {
                key,
                found,
                expected,
            } => write!(
                f,
                "{key}: suspended processes {found:?}, expected {expected:?}"
            ),
        }
    }
}

/// What one wave did and what its checks found.
#[derive(Clone, Debug)]
pub struct WaveReport {
    /// Stop or start.
    pub action: Action,
    /// The operation, if the invocation was accepted.
    pub op_id: Option<String>,
    /// From the invocation until the router queue was empty (fan-out and every shard).
    pub route: Duration,
    /// From then until the task queue was empty.
    pub work: Duration,
    /// Rounds the router queue took.
    pub router_rounds: usize,
    /// Rounds the task queue took.
    pub task_rounds: usize,
    /// The operation's final status.
    pub status: Option<OpStatus>,
    /// The operation's counts.
    pub counts: OpCounts,
    /// Tasks the operation holds.
    pub tasks: usize,
    /// Targets whose task, sizes, baseline and processes all checked out.
    pub checked: usize,
    /// Of them, targets seeded asleep, skipped with the expected reason.
    pub checked_asleep: usize,
    /// State store calls made during the wave.
    pub store: StoreCounts,
    /// What the services sent to the router queue during the wave.
    pub router_sends: SendCounts,
    /// What the router sent to the task queue during the wave.
    pub task_sends: SendCounts,
    /// Spoke calls during the wave (discovery, describe, update, processes, update status).
    pub spoke_calls: usize,
    /// Simulated runs with a spoke rate limit only: the bound it puts on the wave (see
    /// [`SlowSpokes::rate_bound`]).
    pub rate_bound: Duration,
    /// Simulated runs only: when, from the invocation, the last task of the first account
    /// finished, and the last task of every other account (the fairness of a wave with one
    /// large account, [`FleetShape::big_account`]).
    pub done: Option<(Duration, Duration)>,
    /// Simulated runs only: when, from the invocation, a worker received the first task (no
    /// target can be worked before: the makespan's bounds start there).
    pub first_task: Duration,
    /// Simulated runs only: STS calls and throttling the spokes saw.
    pub spoke_traffic: SpokeTraffic,
    /// Everything that did not check out.
    pub problems: Vec<Problem>,
    /// The direct invocation of the router that started the wave (its own duration).
    pub invoke: Duration,
    /// Simulated runs only: the router queue's and the task queue's event sources (their
    /// invocations, busy time and deletes, for the wave's SQS requests and Lambda time).
    pub sourced: Option<(Sourced, Sourced)>,
    /// Plain (not simulated) runs only: where the wave's CPU time went.
    pub cpu: Option<CpuSplit>,
    /// An enforce pass ([`Fleet::enforce_pass`]) over the fleet the stop operation named here
    /// left asleep: it must plan no task, and every target must still be as that stop left it.
    pub pass_after: Option<String>,
}

impl WaveReport {
    /// Simulated runs only (zero otherwise): the task queue's handler invocations, summed (the
    /// work the pollers shared; see [`crate::sim::concurrency_bound`]).
    pub fn worker_busy(&self) -> Duration {
        self.sourced
            .as_ref()
            .map_or(Duration::ZERO, |(_, worked)| worked.busy)
    }

    fn new(action: Action) -> WaveReport {
        WaveReport {
            action,
            op_id: None,
            route: Duration::ZERO,
            work: Duration::ZERO,
            router_rounds: 0,
            task_rounds: 0,
            status: None,
            counts: OpCounts::default(),
            tasks: 0,
            checked: 0,
            checked_asleep: 0,
            store: StoreCounts::default(),
            router_sends: SendCounts::default(),
            task_sends: SendCounts::default(),
            spoke_calls: 0,
            rate_bound: Duration::ZERO,
            done: None,
            first_task: Duration::ZERO,
            spoke_traffic: SpokeTraffic::default(),
            problems: Vec::new(),
            invoke: Duration::ZERO,
            sourced: None,
            cpu: None,
            pass_after: None,
        }
    }
}

/// A whole run: the fleet, then its stop wave and its start wave.
#[derive(Clone, Debug)]
pub struct ScaleReport {
    /// The shape run.
    pub shape: FleetShape,
    /// Targets seeded.
    pub seeded: usize,
    /// Of them, seeded already asleep.
    pub seeded_asleep: usize,
    /// Seeding problems (the waves did not run if there are any).
    pub seeding: Vec<Problem>,
    /// The stop wave.
    pub stop: WaveReport,
    /// The start wave.
    pub start: WaveReport,
}

impl ScaleReport {
    /// Every problem of the run, seeding first, then the stop wave's, then the start wave's.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.seeding
            .iter()
            .chain(&self.stop.problems)
            .chain(&self.start.problems)
    }

    /// True when nothing went wrong and every target checked out after both waves.
    pub fn is_clean(&self) -> bool {
        self.problems().next().is_none()
            && self.stop.checked == self.seeded
            && self.start.checked == self.seeded
    }
}

/// A seeded fleet behind a hub over counting in-memory ports.
pub struct Fleet {
    /// The shape it was seeded from.
    pub shape: FleetShape,
    /// Every target as seeded.
    pub seeded: Vec<SeededTarget>,
    hub: Hub,
    store: Arc<MemoryStore>,
    spokes: Arc<FakeSpokes>,
    router_q: Arc<MemoryQueue>,
    task_q: Arc<MemoryQueue>,
    counted_store: Arc<CountingStore>,
    router_sends: Arc<CountingQueue>,
    task_sends: Arc<CountingQueue>,
    /// Simulated: every call takes its latency and the queues are worked as event sources.
    sim: Option<Simulation>,
    /// The paced spokes of a simulated run.
    slow_spokes: Option<Arc<AroundSpokes<SlowSpokes>>>,
    /// Thread CPU time inside the fakes' calls (plain runs only).
    fake_time: Arc<FakeTime>,
    /// Thread CPU time inside the handlers (plain runs only).
    handler_time: Arc<FakeTime>,
    /// The hub's clock: it stands still within a wave, and [`Fleet::pass_time`] moves it on.
    clock: Arc<ManualClock>,
}

impl Fleet {
    /// Registers the accounts of `shape` and adds its targets to the fake spokes.
    pub async fn seed(shape: &FleetShape) -> Result<Fleet, Problem> {
        Fleet::seed_with(shape, None).await
    }

    /// [`Fleet::seed`], simulated with `sim`'s latencies when given (run it on a paused tokio
    /// clock for virtual time; see [`crate::sim`]).
    pub async fn seed_with(shape: &FleetShape, sim: Option<Simulation>) -> Result<Fleet, Problem> {
        shape.validate().map_err(Problem::Seeding)?;
        if sim.is_some() {
            // The SDK's standard retry draws its jitter from this thread's `fastrand`; a
            // simulation runs on one thread (a `current_thread` runtime), so seeding it makes
            // a run repeat exactly.
            fastrand::seed(crate::sim::RETRY_JITTER_SEED);
        }
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(),
        ));
        let (mut hub, store, router_q, task_q, spokes) = fakes::hub(clock.clone());
        let latency = sim.map_or(
            Latency {
                spoke: Duration::ZERO,
                state: Duration::ZERO,
                queue: Duration::ZERO,
                sts: Duration::ZERO,
            },
            |s| s.latency,
        );
        let counted_store = Arc::new(CountingStore::new(store.clone()).with_latency(latency.state));
        let router_sends =
            Arc::new(CountingQueue::new(router_q.clone()).with_latency(latency.queue));
        let task_sends = Arc::new(CountingQueue::new(task_q.clone()).with_latency(latency.queue));
        // Plain runs time the fakes' calls, so their CPU time can be taken out of the wave's.
        let fake_time = Arc::new(FakeTime::new());
        if sim.is_none() {
            counted_store.time_into(fake_time.clone());
            router_sends.time_into(fake_time.clone());
            task_sends.time_into(fake_time.clone());
            hub.spokes = Arc::new(TimedSpokes::new(spokes.clone(), fake_time.clone()));
        }
        if let Some(chunk) = sim.and_then(|s| s.chunk_targets) {
            hub.settings.chunk_targets = chunk;
        }
        let slow_spokes = sim.map(|s| Arc::new(SlowSpokes::new(spokes.clone(), &s, clock.clone())));
        if let Some(slow) = &slow_spokes {
            hub.spokes = slow.clone();
        }
        hub.store = counted_store.clone();
        hub.router_queue = router_sends.clone();
        hub.task_queue = task_sends.clone();

        let (accounts, seeded) = seed_plan(shape);
        let regions: Vec<String> = (0..shape.regions).map(region_name).collect();
        for account in &accounts {
            let role = format!("arn:aws:iam::{account}:role/curfew-spoke");
            let registered = Account::new(account, &role, None, &regions)
                .map_err(|e| Problem::Seeding(e.to_string()))?;
            // Straight to the store: registering the fleet is not part of a wave's count.
            store
                .put_account(&registered)
                .await
                .map_err(|e| Problem::Seeding(e.to_string()))?;
        }
        for s in &seeded {
            spokes.add(s.target.clone(), s.sizes);
        }
        Ok(Fleet {
            shape: *shape,
            seeded,
            hub,
            store,
            spokes,
            router_q,
            task_q,
            counted_store,
            router_sends,
            task_sends,
            sim,
            slow_spokes,
            fake_time,
            handler_time: Arc::new(FakeTime::new()),
            clock,
        })
    }

    /// Moves the hub's clock on by `by`: the hours between a schedule's waves, past the
    /// inventory cache's freshness, so the next wave lists its targets live again as it would
    /// in the hub.
    pub fn pass_time(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    /// The fake spokes (to change a target behind curfew's back).
    pub fn spokes(&self) -> &FakeSpokes {
        &self.spokes
    }

    /// Runs one wave over every `fleet=scale` target and checks every target after it.
    pub async fn wave(&self, action: Action) -> WaveReport {
        self.run_wave(action, None).await
    }

    /// Runs one pass of an enforced window schedule over every `fleet=scale` target, started by
    /// a real poller tick in the schedule's asleep time, after the stop operation `stop_op` put
    /// them to sleep: what a fleet held asleep costs each pass (`--enforce`, docs/SCHEDULES.md).
    /// Checked like that stop (every target as it left it) and for planning no task.
    pub async fn enforce_pass(&self, stop_op: &str) -> WaveReport {
        self.run_wave(Action::Stop, Some(stop_op)).await
    }

    /// An enforced window schedule over the fleet, asleep at the fleet's clock (Monday 18:00
    /// UTC), written straight to the store, then one poller tick: the pass it starts.
    async fn start_enforce_pass(&self) -> Result<String, String> {
        // From JSON, as the table stores it: every field not named takes its default.
        let schedule: Schedule = serde_json::from_value(serde_json::json!({
            "name": "scale-enforced", "asleep": "daily 17:00-23:00", "tz": "UTC",
            "selector": "tag:fleet=scale", "enabled": true, "enforce": true,
        }))
        .map_err(|e| e.to_string())?;
        match self.store.create_schedule(&schedule).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::ConditionFailed => {}
            Err(e) => return Err(e.to_string()),
        }
        let tick = poller::tick(&self.hub).await.map_err(|e| e.to_string())?;
        tick.enforce_passes
            .into_iter()
            .next()
            .ok_or_else(|| "the poller's tick started no enforce pass".to_string())
    }

    async fn run_wave(&self, action: Action, pass_after: Option<&str>) -> WaveReport {
        let mut report = WaveReport::new(action);
        report.pass_after = pass_after.map(str::to_string);
        let store_before = self.counted_store.counts();
        let router_before = self.router_sends.counts();
        let tasks_before = self.task_sends.counts();
        let spokes_before = self.spokes.calls();
        let cpu_before = (
            process_cpu(),
            self.handler_time.totals(),
            self.fake_time.totals(),
        );
        // Thread CPU time around a handler is its own only when it never waits (plain runs).
        let timing = self.sim.is_none().then_some(&*self.handler_time);

        let select = Selector::parse("tag:fleet=scale").expect("a valid selector");
        let discovery = Discovery::Cached;
        let invocation = match action {
            Action::Stop => Invocation::Stop {
                select,
                dry_run: false,
                discovery,
                hold: None,
            },
            Action::Start => Invocation::Start {
                select,
                dry_run: false,
                discovery,
                hold: None,
            },
        };
        let started = Instant::now();
        let clock = timing.map(|t| t.start());
        let began = match pass_after {
            None => invoke(&self.hub, invocation)
                .await
                .map(|response| response.operation_id)
                .map_err(|e| e.to_string()),
            Some(_) => self.start_enforce_pass().await,
        };
        stop_clock(timing, clock);
        report.invoke = started.elapsed();
        let op_id = match began {
            Ok(op_id) => op_id,
            Err(e) => {
                report.problems.push(Problem::Invocation(e));
                return report;
            }
        };
        let hub = &self.hub;
        let route = |m: Vec<(String, String)>| async move {
            let clock = timing.map(|t| t.start());
            let outcome = router_batch(hub, &m).await;
            stop_clock(timing, clock);
            (m, outcome)
        };
        // Retried messages go back on the memory queue as new messages, so every delivery here
        // is a first receive: no task is given up for the dead-letter queue. A simulated
        // invocation has the worker function's timeout, on virtual time, as in Lambda.
        let simulated = self.sim.is_some();
        let work = |m: Vec<(String, String)>| async move {
            let deliveries: Vec<Delivery> = m
                .iter()
                .map(|(id, body)| Delivery::first(id.clone(), body.clone()))
                .collect();
            let deadline = simulated.then(|| tokio::time::Instant::now() + WORKER_TIMEOUT);
            let clock = timing.map(|t| t.start());
            let outcome = worker_batch_until(hub, &deliveries, deadline).await;
            stop_clock(timing, clock);
            (m, outcome)
        };
        let concurrency = self.shape.concurrency;
        if let Some(slow) = &self.slow_spokes {
            slow.around().reset_counts();
        }
        let (routed, worked) = if let Some(sim) = self.sim {
            let first_account = self.seeded.first().map(|s| s.target.account.clone());
            let done = std::sync::Mutex::new((Duration::ZERO, Duration::ZERO));
            let timed = |m: Vec<(String, String)>| {
                let (first_account, done) = (&first_account, &done);
                async move {
                    let (m, outcome) = work(m).await;
                    let at = started.elapsed();
                    let mut done = done.lock().expect("not poisoned");
                    for (id, body) in &m {
                        if outcome.failed.contains(id) {
                            continue;
                        }
                        let account = match read_body(body) {
                            Ok(TaskBody::Targets(tasks)) => {
                                tasks.first().map(|t| t.target.account.clone())
                            }
                            Ok(TaskBody::Plan(plan)) => Some(plan.account().to_string()),
                            Err(_) => None,
                        };
                        let first = account.is_some() && account == *first_account;
                        let slot = if first { &mut done.0 } else { &mut done.1 };
                        *slot = (*slot).max(at);
                    }
                    drop(done);
                    (m, outcome)
                }
            };
            // The worker's event source polls while the router still fans out, as in AWS:
            // the first shards' tasks are worked before the last shard is planned.
            let routing_done = AtomicBool::new(false);
            let sources_began = started.elapsed();
            let routing = async {
                let routed = event_source(
                    &self.router_q,
                    Source {
                        lambda: "router",
                        concurrency,
                        batch: BATCH,
                        fair: !sim.unfair,
                        timeout: ROUTER_TIMEOUT,
                        upstream_done: None,
                    },
                    route,
                )
                .await;
                routing_done.store(true, Ordering::SeqCst);
                (routed, started.elapsed())
            };
            let working = async {
                let worked = event_source(
                    &self.task_q,
                    Source {
                        lambda: "worker",
                        concurrency,
                        batch: TASK_BATCH_SIZE,
                        fair: !sim.unfair,
                        timeout: WORKER_TIMEOUT,
                        upstream_done: Some(&routing_done),
                    },
                    timed,
                )
                .await;
                (worked, started.elapsed())
            };
            let ((routed, route_end), (worked, end)) = futures::join!(routing, working);
            report.route = route_end;
            report.work = end.saturating_sub(route_end);
            report.first_task = worked
                .first_receive
                .map_or(route_end, |first| sources_began + first);
            report.done = Some(done.into_inner().expect("not poisoned"));
            if let Some(slow) = &self.slow_spokes {
                report.rate_bound = slow.around().rate_bound();
                report.spoke_traffic = slow.around().traffic();
            }
            report.sourced = Some((routed.clone(), worked.clone()));
            (Worked::from(routed), Worked::from(worked))
        } else {
            let routed = work_queue(&self.router_q, BATCH, concurrency, route).await;
            report.route = started.elapsed();
            let started = Instant::now();
            let worked = work_queue(&self.task_q, TASK_BATCH_SIZE, concurrency, work).await;
            report.work = started.elapsed();
            report.cpu = Some(CpuSplit {
                process: process_cpu() - cpu_before.0,
                handlers: self.handler_time.totals().since(&cpu_before.1),
                fakes: self.fake_time.totals().since(&cpu_before.2),
            });
            (routed, worked)
        };

        report.store = self.counted_store.counts().since(&store_before);
        report.router_sends = self.router_sends.counts().since(&router_before);
        report.task_sends = self.task_sends.counts().since(&tasks_before);
        report.spoke_calls = self.spokes.calls() - spokes_before;
        report.router_rounds = routed.rounds;
        report.task_rounds = worked.rounds;
        for (queue, worked) in [("router", routed), ("task", worked)] {
            report.problems.extend(
                worked
                    .rejected
                    .into_iter()
                    .map(|cause| Problem::Rejected { cause }),
            );
            if worked.left > 0 {
                report.problems.push(Problem::Unsettled {
                    queue,
                    left: worked.left,
                });
            }
        }
        report.op_id = Some(op_id.clone());
        self.check(&op_id, &mut report).await;
        report
    }

    /// Checks the operation `op_id` (a wave of `report.action`) and every seeded target
    /// against DESIGN.md, adding what does not hold to `report`. Reads the fakes directly, so
    /// the checks are not counted as the wave's requests.
    pub async fn check(&self, op_id: &str, report: &mut WaveReport) {
        let op = match self.store.get_operation(op_id).await {
            Ok(op) => op,
            Err(e) => {
                report.problems.push(Problem::Store(e.to_string()));
                return;
            }
        };
        report.status = op.as_ref().map(|op| op.status);
        report.counts = op.as_ref().map(|op| op.counts).unwrap_or_default();
        if report.status != Some(OpStatus::Succeeded) {
            report.problems.push(Problem::OperationStatus {
                found: report.status,
            });
        }
        let asleep = self.seeded.iter().filter(|s| s.asleep).count() as u64;
        let expected = match &report.pass_after {
            // The stop left every target held asleep: the pass has nothing to look at.
            Some(_) => OpCounts::default(),
            None => OpCounts {
                total: self.seeded.len() as u64,
                succeeded: self.seeded.len() as u64 - asleep,
                failed: 0,
                skipped: asleep,
                dead_lettered: 0,
            },
        };
        if report.counts != expected {
            report.problems.push(Problem::OperationCounts {
                found: report.counts,
                expected,
            });
        }

        let tasks = match self.store.list_tasks(op_id).await {
            Ok(tasks) => tasks,
            Err(e) => {
                report.problems.push(Problem::Store(e.to_string()));
                return;
            }
        };
        report.tasks = tasks.len();
        let tasks = match &report.pass_after {
            None => tasks,
            Some(stop_op) => {
                if !tasks.is_empty() {
                    report
                        .problems
                        .push(Problem::StrayTasks { count: tasks.len() });
                }
                // Every target as the stop left it, its task included.
                match self.store.list_tasks(stop_op).await {
                    Ok(tasks) => tasks,
                    Err(e) => {
                        report.problems.push(Problem::Store(e.to_string()));
                        return;
                    }
                }
            }
        };
        let mut tasks: HashMap<String, Task> =
            tasks.into_iter().map(|t| (t.target.key(), t)).collect();
        let baselines = self.store.baselines();
        report.checked = 0;
        report.checked_asleep = 0;
        for s in &self.seeded {
            let key = s.target.key();
            let task = tasks.remove(&key);
            let problems = self.check_target(report.action, s, &key, task, &baselines);
            if problems.is_empty() {
                report.checked += 1;
                report.checked_asleep += usize::from(s.asleep);
            }
            report.problems.extend(problems);
        }
        if !tasks.is_empty() {
            report
                .problems
                .push(Problem::StrayTasks { count: tasks.len() });
        }
    }

    /// What DESIGN.md says one target looks like after a wave of `action`:
    /// - stop, awake: SUCCEEDED, at its stopped sizes, a baseline equal to its seeded sizes, and
    ///   (ASGs) `ScheduledActions` and `AlarmNotification` suspended;
    /// - stop, seeded asleep: SKIPPED as already at its stopped sizes with no baseline, untouched;
    /// - start, awake: SUCCEEDED, exactly its seeded sizes, no baseline, nothing suspended;
    /// - start, seeded asleep: SKIPPED for want of a baseline, untouched.
    fn check_target(
        &self,
        action: Action,
        s: &SeededTarget,
        key: &str,
        task: Option<Task>,
        baselines: &BTreeMap<String, curfew_core::ports::Baseline>,
    ) -> Vec<Problem> {
        let asg = s.target.kind == TargetKind::Asg;
        let (task_expected, sizes, baseline, processes) = match (action, s.asleep) {
            (Action::Stop, false) => (
                (TaskStatus::Succeeded, None),
                s.target.kind.stopped_sizes(s.sizes),
                Some(s.sizes),
                if asg {
                    Processes::HELD
                } else {
                    Processes::NONE
                },
            ),
            (Action::Stop, true) => (
                (
                    TaskStatus::Skipped,
                    Some(SkipReason::StoppedWithoutBaseline.to_string()),
                ),
                s.sizes,
                None,
                Processes::NONE,
            ),
            (Action::Start, false) => (
                (TaskStatus::Succeeded, None),
                s.sizes,
                None,
                Processes::NONE,
            ),
            (Action::Start, true) => (
                (
                    TaskStatus::Skipped,
                    Some(SkipReason::NoBaseline.to_string()),
                ),
                s.sizes,
                None,
                Processes::NONE,
            ),
        };
        let mut problems = Vec::new();
        let found = task.map(|t| (t.status, t.reason));
        // A succeeded task's reason is informative only; a skip must give the expected reason.
        let task_ok = match (&found, &task_expected) {
            (Some((status, _)), (TaskStatus::Succeeded, _)) => *status == TaskStatus::Succeeded,
            (Some(found), expected) => found == expected,
            (None, _) => false,
        };
        if !task_ok {
            problems.push(Problem::Task {
                key: key.to_string(),
                found,
                expected: task_expected,
            });
        }
        let live = self.spokes.sizes(key);
        if live != Some(sizes) {
            problems.push(Problem::Sizes {
                key: key.to_string(),
                found: live,
                expected: sizes,
            });
        }
        let saved = baselines.get(key).map(|b| b.sizes);
        if saved != baseline {
            problems.push(Problem::Baseline {
                key: key.to_string(),
                found: saved,
                expected: baseline,
            });
        }
        let suspended = self.spokes.suspended(key);
        if suspended != Some(processes) {
            problems.push(Problem::Processes {
                key: key.to_string(),
                found: suspended,
                expected: processes,
            });
        }
        problems
    }
}

/// Seeds `shape`, runs a stop wave and then a start wave, and reports what they did and every
/// check that failed.
pub async fn run(shape: &FleetShape) -> ScaleReport {
    run_with(shape, None).await
}

/// [`run`], simulated with `sim`'s latencies when given (see [`crate::sim`]).
pub async fn run_with(shape: &FleetShape, sim: Option<Simulation>) -> ScaleReport {
    let fleet = match Fleet::seed_with(shape, sim).await {
        Ok(fleet) => fleet,
        Err(problem) => {
            return ScaleReport {
                shape: *shape,
                seeded: 0,
                seeded_asleep: 0,
                seeding: vec![problem],
                stop: WaveReport::new(Action::Stop),
                start: WaveReport::new(Action::Start),
            }
        }
    };
    let stop = fleet.wave(Action::Stop).await;
    let start = fleet.wave(Action::Start).await;
    ScaleReport {
        shape: *shape,
        seeded: fleet.seeded.len(),
        seeded_asleep: fleet.seeded.iter().filter(|s| s.asleep).count(),
        seeding: Vec::new(),
        stop,
        start,
    }
}

/// What working a queue until it was empty took.
struct Worked {
    rounds: usize,
    rejected: Vec<String>,
    /// Messages left when the round limit was hit (0: the queue emptied).
    left: usize,
}

impl From<Sourced> for Worked {
    /// An event source works until the queue is empty: its invocations stand for rounds.
    fn from(sourced: Sourced) -> Worked {
        Worked {
            rounds: sourced.invocations,
            rejected: sourced.rejected,
            left: 0,
        }
    }
}

/// Works `queue` in batches of `batch` messages, `concurrency` batches at once, until it is empty or
/// [`MAX_ROUNDS`] rounds have passed; failed messages go back on the queue, rejected ones are
/// reported and dropped (they would go to the DLQ).
async fn work_queue<F, Fut>(
    queue: &MemoryQueue,
    batch: usize,
    concurrency: usize,
    handler: F,
) -> Worked
where
    F: Fn(Vec<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = (Vec<(String, String)>, BatchOutcome)>,
{
    let mut worked = Worked {
        rounds: 0,
        rejected: Vec::new(),
        left: 0,
    };
    while !queue.is_empty() {
        if worked.rounds == MAX_ROUNDS {
            worked.left = queue.len();
            break;
        }
        worked.rounds += 1;
        let rounds = worked.rounds;
        let bodies = queue.take_all();
        let batches: Vec<Vec<(String, String)>> = bodies
            .chunks(batch)
            .enumerate()
            .map(|(b, chunk)| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, body)| (format!("{rounds}-{b}-{i}"), body.clone()))
                    .collect()
            })
            .collect();
        let outcomes: Vec<_> = stream::iter(batches)
            .map(&handler)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut retry = Vec::new();
        for (messages, outcome) in outcomes {
            worked
                .rejected
                .extend(outcome.rejected.iter().map(|(_, cause)| cause.clone()));
            retry.extend(
                messages
                    .into_iter()
                    .filter(|(id, _)| {
                        outcome.failed.contains(id)
                            && !outcome.rejected.iter().any(|(r, _)| r == id)
                    })
                    .map(|(_, body)| body),
            );
        }
        if !retry.is_empty() {
            queue.send(&retry).await.expect("the memory queue takes it");
        }
    }
    worked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awake_sizes_are_valid_and_never_the_stopped_sizes() {
        for kind in [TargetKind::Asg, TargetKind::Nodegroup] {
            for n in 0..10_000 {
                let s = awake_sizes(kind, n);
                assert!(
                    s.min <= s.desired && s.desired <= s.max && s.max >= 1,
                    "{kind} {n}: {s}"
                );
                assert_ne!(s, kind.stopped_sizes(s), "{kind} {n}: {s} is asleep");
            }
        }
    }

    #[test]
    fn every_asleep_every_th_target_is_seeded_at_its_stopped_sizes() {
        let shape = FleetShape {
            targets: 60,
            accounts: 4,
            regions: 3,
            concurrency: 1,
            asleep_every: 4,
            big_account: 0,
        };
        let (accounts, seeded) = seed_plan(&shape);
        assert_eq!((accounts.len(), seeded.len()), (4, 60));
        for (n, s) in seeded.iter().enumerate() {
            assert_eq!(s.asleep, n % 4 == 3, "{n}");
            assert_eq!(
                s.sizes == s.target.kind.stopped_sizes(s.sizes),
                s.asleep,
                "{n}: {}",
                s.sizes
            );
        }
    }

    #[test]
    fn targets_are_spread_over_every_account_region_with_unique_keys() {
        let shape = FleetShape {
            targets: 23,
            accounts: 3,
            regions: 2,
            concurrency: 1,
            asleep_every: 0,
            big_account: 0,
        };
        let (_, seeded) = seed_plan(&shape);
        let mut per_shard: BTreeMap<(String, String), usize> = BTreeMap::new();
        for s in &seeded {
            *per_shard
                .entry((s.target.account.clone(), s.target.region.clone()))
                .or_default() += 1;
        }
        let counts: Vec<usize> = per_shard.values().copied().collect();
        assert_eq!(counts, vec![4, 4, 4, 4, 4, 3]);
        let keys: std::collections::BTreeSet<String> =
            seeded.iter().map(|s| s.target.key()).collect();
        assert_eq!(keys.len(), 23);
    }
}
