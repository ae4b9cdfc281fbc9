//! `make bench`, simulation part (issue 9): stop and start waves through the real router and
//! worker over the in-memory ports, every call taking its AWS latency, the queues worked as SQS
//! event sources with maximum concurrency, on a paused (virtual) tokio clock. Each wave's
//! virtual makespan is set against its lower bound, every target is checked as `curfew-scale`
//! checks it; exit 1 if any check failed.
//!
//! Without fleet flags it runs issue 9's suite (1,000 targets / 100 accounts, 10,000 / 300,
//! 100,000 / 1,000, the last again with 5% of spoke calls throttled, a skewed fleet where one
//! account holds half the targets, a smaller skewed fleet whose spokes refuse calls over their
//! rate (held to the same fleet whose calls wait for their tokens), and a skewed fleet under a
//! spoke rate limit with and without fair-queue receives) and records the figures in `target/curfew-bench.json`. With
//! `--targets N` it runs that one fleet:
//! `curfew-sim [--targets N] [--accounts N] [--regions N] [--concurrency N] [--asleep-every N] [--big-account N]
//! [--spoke-ms N] [--state-ms N] [--queue-ms N] [--sts-ms N] [--spoke-rate N [--spoke-burst N]]
//! [--refuse-over N [--refuse-burst N]] [--throttled-pct N] [--unfair] [--chunk N] [--enforce | --later]`
//! (`--refuse-over`: the spoke answers calls over N a second per account and region with a
//! throttling error, as AWS APIs do, where `--spoke-rate` makes them wait; `--chunk`: targets per task
//! message, default the router's 100; `--enforce`: after the stop, one pass of an enforced window
//! schedule over the sleeping fleet, priced per million target-passes, instead of the start;
//! `--later`: two stop + start cycles, the second priced, as every night after a fleet's first
//! is). The suite prices such a pass and a later cycle over 10,000 targets in 100 accounts (the
//! `enforce_pass` section, `cost_usd_per_1k_targets_later_cycle`). A run with `--targets`
//! records under `custom_` names (`custom_traffic`, `custom_cost`, ...), never over the suite's.
//! `RUST_LOG=warn` prints the handlers' own log lines to stderr (a planning retried, a task
//! given up), for finding out why a run does not end.

use std::time::{Duration, Instant};

use curfew_core::decision::Action;
use curfew_tests::bench::{arg, record, results_path};
use curfew_tests::scale::{run_with, Fleet, FleetShape, ScaleReport, WaveReport};
use curfew_tests::sim::{concurrency_bound, Latency, RateLimit, Simulation};
use serde_json::{json, Value};
// The traffic and cost block (at the end of the file).
use curfew_tests::cost::{cost_per_1k_targets, CycleUse, LambdaMemory, Prices};
use curfew_tests::traffic::WaveTraffic;

/// The lower bound of a simulated wave's makespan: no target is worked before the first task
/// reaches a worker, and after that the work cannot take less than the workers' busy time over
/// the concurrency cap, nor less than the busiest account-region's calls allow at its rate.
fn bound(wave: &WaveReport, concurrency: usize) -> Duration {
    wave.first_task + concurrency_bound(wave.worker_busy(), concurrency).max(wave.rate_bound)
}

fn makespan(wave: &WaveReport) -> Duration {
    wave.route + wave.work
}

/// The wave's longest worker invocation (an account plan's planning and first chunk, or a
/// chunk), in virtual time.
fn longest_invocation(wave: &WaveReport) -> Duration {
    wave.sourced
        .as_ref()
        .map_or(Duration::ZERO, |(_, worked)| worked.longest)
}

/// The wave's worker invocations longer than the worker's timeout (none should be).
fn over_timeout(wave: &WaveReport) -> usize {
    wave.sourced
        .as_ref()
        .map_or(0, |(_, worked)| worked.over_timeout)
}

/// One wave's figures; `bound` is the one to hold it to (its own, or a fault-free run's).
fn wave_json(wave: &WaveReport, concurrency: usize, bound: Duration, accounts: usize) -> Value {
    let makespan = makespan(wave);
    let traffic = &wave.spoke_traffic;
    json!({
        "makespan_s": makespan.as_secs_f64(),
        "bound_s": bound.as_secs_f64(),
        "makespan_over_bound": makespan.as_secs_f64() / bound.as_secs_f64().max(f64::EPSILON),
        "routing_s": wave.route.as_secs_f64(),
        "first_task_s": wave.first_task.as_secs_f64(),
        "worker_busy_s": wave.worker_busy().as_secs_f64(),
        "concurrency_bound_s": concurrency_bound(wave.worker_busy(), concurrency).as_secs_f64(),
        "rate_bound_s": wave.rate_bound.as_secs_f64(),
        "invocations": wave.task_rounds,
        "longest_worker_invocation_s": longest_invocation(wave).as_secs_f64(),
        "worker_invocations_over_timeout": over_timeout(wave),
        "sts_calls": traffic.sts_calls,
        "sts_calls_per_account": traffic.sts_calls as f64 / accounts.max(1) as f64,
        "worker_sts_calls_per_account": traffic.worker_sts_calls as f64 / accounts.max(1) as f64,
        "throttled_attempts": traffic.throttled,
        "paced_environment_account_regions": traffic.paced,
        "targets_checked": wave.checked,
        "problems": wave.problems.len(),
        "first_account_done_s": wave.done.map(|d| d.0.as_secs_f64()),
        "other_accounts_done_s": wave.done.map(|d| d.1.as_secs_f64()),
    })
}

fn print_wave(name: &str, wave: &WaveReport, concurrency: usize, bound: Duration) {
    let makespan = makespan(wave);
    println!(
        "  {name}: makespan {:.1} s (virtual; routing done at {:.1} s, first task at {:.2} s); \
         bound {:.1} s (concurrency {:.1} s = worker busy {:.1} s / {concurrency}, rate {:.1} s); \
         makespan / bound {:.3}; {} invocations (longest {:.1} s, {} over the worker's timeout); {} AssumeRole calls ({} by the worker) for {} \
         accounts; {} throttled \
         attempts ({} environment-account-regions paced); {} targets checked, {} problems",
        makespan.as_secs_f64(),
        wave.route.as_secs_f64(),
        wave.first_task.as_secs_f64(),
        bound.as_secs_f64(),
        concurrency_bound(wave.worker_busy(), concurrency).as_secs_f64(),
        wave.worker_busy().as_secs_f64(),
        wave.rate_bound.as_secs_f64(),
        makespan.as_secs_f64() / bound.as_secs_f64().max(f64::EPSILON),
        wave.task_rounds,
        longest_invocation(wave).as_secs_f64(),
        over_timeout(wave),
        wave.spoke_traffic.sts_calls,
        wave.spoke_traffic.worker_sts_calls,
        wave.spoke_traffic.sts_accounts,
        wave.spoke_traffic.throttled,
        wave.spoke_traffic.paced,
        wave.checked,
        wave.problems.len(),
    );
    if let Some((first, others)) = wave.done {
        println!(
            "  {name}: the first account's last task done at {:.1} s, every other account's at {:.1} s",
            first.as_secs_f64(),
            others.as_secs_f64()
        );
    }
}

/// A run of one fleet, its figures, and the worse of its two waves' ratios.
struct Run {
    report: ScaleReport,
    figures: Value,
    ratio: f64,
}

/// Runs `shape` under `sim`, holding each wave to `bounds` when given (a fault-free run's) or
/// to its own bound.
async fn run(
    name: &str,
    shape: FleetShape,
    sim: Simulation,
    bounds: Option<(Duration, Duration)>,
) -> Run {
    println!("{name}: {shape:?}, {sim:?}");
    let real = Instant::now();
    let report = run_with(&shape, Some(sim)).await;
    let real = real.elapsed();
    let c = shape.concurrency;
    let (stop_bound, start_bound) =
        bounds.unwrap_or((bound(&report.stop, c), bound(&report.start, c)));
    print_wave("stop", &report.stop, c, stop_bound);
    print_wave("start", &report.start, c, start_bound);
    println!("  real time {:.1} s", real.as_secs_f64());
    let ratio = |w: &WaveReport, b: Duration| makespan(w).as_secs_f64() / b.as_secs_f64();
    let ratio = ratio(&report.stop, stop_bound).max(ratio(&report.start, start_bound));
    let figures = json!({
        "targets": report.seeded,
        "accounts": shape.accounts,
        "regions": shape.regions,
        "concurrency": c,
        "big_account": shape.big_account,
        "latency_ms": {
            "spoke": sim.latency.spoke.as_millis() as u64,
            "state": sim.latency.state.as_millis() as u64,
            "queue": sim.latency.queue.as_millis() as u64,
            "sts": sim.latency.sts.as_millis() as u64,
        },
        "spoke_rate_per_s": sim.spoke_limit.map(|l| l.rate),
        "throttled_fraction": sim.throttled,
        "fair_queue": !sim.unfair,
        "held_to_fault_free_bound": bounds.is_some(),
        "stop": wave_json(&report.stop, c, stop_bound, shape.accounts),
        "start": wave_json(&report.start, c, start_bound, shape.accounts),
        "makespan_over_bound": ratio,
        "real_time_s": real.as_secs_f64(),
    });
    Run {
        report,
        figures,
        ratio,
    }
}

fn fleet(targets: usize, accounts: usize) -> FleetShape {
    FleetShape {
        targets,
        accounts,
        ..FleetShape::default()
    }
}

/// Issue 9's suite; returns the runs' reports and whether the enforce pass checked out (for
/// the exit status).
async fn suite(sim: Simulation) -> (Vec<ScaleReport>, bool) {
    let path = results_path();
    let mut sections = serde_json::Map::new();
    let mut summary: Vec<(&str, Value)> = Vec::new();
    let mut reports = Vec::new();

    for (key, targets, accounts) in [
        ("makespan_ratio_1k", 1_000, 100),
        ("makespan_ratio_10k", 10_000, 300),
    ] {
        let r = run(key, fleet(targets, accounts), sim, None).await;
        summary.push((key, json!(r.ratio)));
        sections.insert(key.trim_start_matches("makespan_ratio_").into(), r.figures);
        reports.push(r.report);
    }

    let big = fleet(100_000, 1_000);
    let clean = run("makespan_ratio_100k", big, sim, None).await;
    let c = big.concurrency;
    let clean_bounds = (bound(&clean.report.stop, c), bound(&clean.report.start, c));
    // The worse wave: the stop, whose router lists every account and region live (an empty
    // inventory cache) and so assumes each role once more than the worker does.
    let per_account = |calls: u64| calls as f64 / big.accounts as f64;
    let (stop, start) = (
        &clean.report.stop.spoke_traffic,
        &clean.report.start.spoke_traffic,
    );
    summary.push(("makespan_ratio_100k", json!(clean.ratio)));
    summary.push((
        "sts_calls_per_account_100k",
        json!(per_account(stop.sts_calls.max(start.sts_calls))),
    ));
    // The start wave routes on the inventory the stop listed: what every wave makes where the
    // spokes' change events keep the cache (`CURFEW_INVENTORY_MINUTES` above the time between
    // waves; resizes, curfew's own among them, no longer clear it).
    summary.push((
        "sts_calls_per_account_100k_cached",
        json!(per_account(start.sts_calls)),
    ));
    summary.push((
        "sts_worker_calls_per_account_100k",
        json!(per_account(
            stop.worker_sts_calls.max(start.worker_sts_calls)
        )),
    ));
    sections.insert("100k".into(), clean.figures);
    // Traffic and cost are the fault-free 100,000-target cycle's.
    record_traffic_and_cost(&clean.report, &path, "");
    reports.push(clean.report);

    // 5% of spoke call attempts throttled, held to the fault-free run's bound (a valid lower
    // bound: the throttled run does all of that work and more): the ratio is what the
    // throttling, its retried calls and the waits between them cost the wave.
    let throttled = Simulation {
        throttled: 0.05,
        ..sim
    };
    let t = run(
        "makespan_ratio_100k_throttled",
        big,
        throttled,
        Some(clean_bounds),
    )
    .await;
    summary.push(("makespan_ratio_100k_throttled", json!(t.ratio)));
    sections.insert("100k_throttled".into(), t.figures);
    reports.push(t.report);

    // One account holds half the targets (50,000 in its first region, on top of 50,000
    // spread over all 1,000 accounts).
    let skewed = FleetShape {
        targets: 50_000,
        big_account: 50_000,
        ..big
    };
    let s = run("makespan_ratio_skewed", skewed, sim, None).await;
    summary.push(("makespan_ratio_skewed", json!(s.ratio)));
    sections.insert("skewed".into(), s.figures);
    reports.push(s.report);

    // A smaller skewed fleet (5,000 more targets in one account's first region, on top of
    // 10,000 over 100 accounts) whose spokes refuse what comes over 50 calls a second per
    // account and region, as AWS APIs do (a throttling error; the rate is an assumption). It is
    // held to the calls the same fleet makes where calls wait for their tokens instead (each
    // call let through once): the ratio counts the calls refusals made curfew repeat.
    let refused_fleet = FleetShape {
        targets: 10_000,
        accounts: 100,
        big_account: 5_000,
        ..big
    };
    let spoke_rate = RateLimit {
        rate: 50.0,
        burst: 50.0,
    };
    let waited = run(
        "skewed_rate_waited",
        refused_fleet,
        Simulation {
            spoke_limit: Some(spoke_rate),
            ..sim
        },
        None,
    )
    .await;
    let rate_only = |w: &WaveReport| w.first_task + w.rate_bound;
    let refused = run(
        "makespan_ratio_skewed_refused",
        refused_fleet,
        Simulation {
            spoke_refusals: Some(spoke_rate),
            ..sim
        },
        Some((
            rate_only(&waited.report.stop),
            rate_only(&waited.report.start),
        )),
    )
    .await;
    summary.push(("makespan_ratio_skewed_refused", json!(refused.ratio)));
    sections.insert("skewed_rate_waited".into(), waited.figures);
    sections.insert("skewed_refused".into(), refused.figures);
    reports.push(waited.report);
    reports.push(refused.report);

    // The same fleet under a spoke rate limit (10 calls a second per account and region, an
    // assumption: AWS does not publish Auto Scaling's or EKS's), received fairly (the task
    // messages' account is their MessageGroupId) and, for comparison, as a standard queue
    // without tenants: when do the small accounts finish?
    let limited = Simulation {
        spoke_limit: Some(RateLimit {
            rate: 10.0,
            burst: 20.0,
        }),
        ..sim
    };
    let smaller = FleetShape {
        targets: 20_000,
        accounts: 200,
        big_account: 20_000,
        ..big
    };
    for (key, unfair) in [
        ("fairness_fair_queue", false),
        ("fairness_unfair_queue", true),
    ] {
        let f = run(key, smaller, Simulation { unfair, ..limited }, None).await;
        let others = |w: &WaveReport| w.done.map(|d| d.1.as_secs_f64());
        summary.push((
            if unfair {
                "small_accounts_done_s_unfair"
            } else {
                "small_accounts_done_s_fair"
            },
            json!(others(&f.report.stop)),
        ));
        sections.insert(key.into(), f.figures);
        reports.push(f.report);
    }

    // A fleet's first cycle creates each target's audit chain head; the nights after it do
    // not: what a later cycle costs.
    let later = later_cycle(enforce_fleet(), sim).await;
    if let Some(cost) = later {
        summary.push(("cost_usd_per_1k_targets_later_cycle", json!(cost)));
    }

    // What a sleeping fleet costs each enforce pass (issue 11's `--enforce`, one a minute by
    // default): priced per million target-passes.
    let (pass, pass_clean) = enforce_pass(enforce_fleet(), sim).await;
    if let Err(e) = record(&path, "enforce_pass", pass) {
        eprintln!("curfew-sim: could not record the enforce pass: {e}");
    }

    sections.insert(
        "assumptions".into(),
        json!(
            "virtual time; one execution environment (with its own STS session cache) per \
               poller slot; SQS fair-queue receives by concurrency share only; rate limits \
               per account and region are assumptions, not published AWS figures"
        ),
    );
    let recorded = record(&path, "simulation", Value::Object(sections)).and_then(|()| {
        summary
            .into_iter()
            .try_for_each(|(k, v)| record(&path, k, v))
    });
    match recorded {
        Ok(()) => println!("recorded in {}", path.display()),
        Err(e) => eprintln!("curfew-sim: could not record {}: {e}", path.display()),
    }
    (reports, pass_clean && later.is_some())
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let d = Latency::default();
    let ms = |name, default: Duration| {
        Duration::from_millis(arg(name, default.as_millis() as usize) as u64)
    };
    let latency = Latency {
        spoke: ms("--spoke-ms", d.spoke),
        state: ms("--state-ms", d.state),
        queue: ms("--queue-ms", d.queue),
        sts: ms("--sts-ms", d.sts),
    };
    // Spoke calls a second per account and region, 0: unlimited. AWS does not publish the
    // Auto Scaling and EKS API rates; the value is the run's assumption, printed with it.
    let rate = arg("--spoke-rate", 0);
    let sim = Simulation {
        latency,
        spoke_limit: (rate > 0).then(|| RateLimit {
            rate: rate as f64,
            burst: arg("--spoke-burst", 2 * rate) as f64,
        }),
        throttled: arg("--throttled-pct", 0) as f64 / 100.0,
        spoke_refusals: Some(arg("--refuse-over", 0))
            .filter(|&n| n > 0)
            .map(|n| RateLimit {
                rate: n as f64,
                burst: arg("--refuse-burst", n) as f64,
            }),
        unfair: std::env::args().any(|a| a == "--unfair"),
        // Targets per task message, 0: the router's default (100).
        chunk_targets: Some(arg("--chunk", 0)).filter(|&n| n > 0),
    };
    let real = Instant::now();
    // A fleet of the caller's (`--targets`) is recorded under `custom_` names: the suite's
    // sections and top-level keys are issue 9's figures, and a custom run must not replace them.
    let custom = std::env::args().any(|a| a == "--targets");
    let named = |name: &str| {
        if custom {
            format!("custom_{name}")
        } else {
            name.to_string()
        }
    };
    let reports = if std::env::args().any(|a| a == "--later") {
        let shape = if custom {
            FleetShape::from_args()
        } else {
            enforce_fleet()
        };
        let later = later_cycle(shape, sim).await;
        if let Some(cost) = later {
            if let Err(e) = record(
                &results_path(),
                &named("cost_usd_per_1k_targets_later_cycle"),
                json!(cost),
            ) {
                eprintln!("curfew-sim: {e}");
            }
        }
        (Vec::new(), later.is_some())
    } else if std::env::args().any(|a| a == "--enforce") {
        let shape = if custom {
            FleetShape::from_args()
        } else {
            enforce_fleet()
        };
        let (section, clean) = enforce_pass(shape, sim).await;
        if let Err(e) = record(&results_path(), &named("enforce_pass"), section) {
            eprintln!("curfew-sim: {e}");
        }
        (Vec::new(), clean)
    } else if custom {
        let report = run("custom", FleetShape::from_args(), sim, None)
            .await
            .report;
        record_traffic_and_cost(&report, &results_path(), "custom_");
        (vec![report], true)
    } else {
        suite(sim).await
    };
    let (reports, mut clean) = reports;
    println!("real time in all: {:.1} s", real.elapsed().as_secs_f64());
    for report in &reports {
        for p in report.problems().take(20) {
            eprintln!("problem: {p}");
        }
        clean &= report.is_clean();
    }
    if !clean {
        std::process::exit(1);
    }
}

// --- A later cycle -------------------------------------------------------------------------

/// Seeds `shape`, runs two stop + start cycles, checks every wave, and prices each cycle per
/// 1,000 targets; returns the second's price (`None` if anything failed). The first cycle
/// writes what a fleet writes once (each target's audit chain head and its index entry); the
/// second is what every night after costs.
async fn later_cycle(shape: FleetShape, sim: Simulation) -> Option<f64> {
    println!("later_cycle: {shape:?}, {sim:?}");
    let fleet = match Fleet::seed_with(&shape, Some(sim)).await {
        Ok(fleet) => fleet,
        Err(problem) => {
            eprintln!("problem: {problem}");
            return None;
        }
    };
    let targets = fleet.seeded.len();
    let (prices, memory) = (Prices::US_EAST_1, LambdaMemory::from_hub_stack());
    let mut last = None;
    for cycle in ["first", "second"] {
        // A night and a day apart, as a schedule runs them: each wave finds the inventory
        // cache stale and lists its targets again.
        let stop = fleet.wave(Action::Stop).await;
        fleet.pass_time(chrono::Duration::hours(12));
        let start = fleet.wave(Action::Start).await;
        fleet.pass_time(chrono::Duration::hours(12));
        for p in stop.problems.iter().chain(&start.problems).take(20) {
            eprintln!("problem: {p}");
        }
        if !(stop.problems.is_empty() && start.problems.is_empty())
            || stop.checked != targets
            || start.checked != targets
        {
            return None;
        }
        let used = CycleUse::from_waves(targets, &stop, &start)?;
        let cost = cost_per_1k_targets(&used, &prices, &memory);
        println!(
            "  {cycle} cycle: ${:.5} per 1,000 targets ({:.0} WRU, {:.0} RRU)",
            cost.total(),
            used.write_units as f64 * 1000.0 / targets.max(1) as f64,
            used.read_units * 1000.0 / targets.max(1) as f64,
        );
        for (name, wave) in [("stop", &stop), ("start", &start)] {
            let traffic = WaveTraffic::of(wave, targets);
            println!("    {}", traffic.line(name));
            println!("    {}", traffic.writes_line(name));
        }
        last = Some(cost.total());
    }
    last
}

// --- An enforce pass over a sleeping fleet ------------------------------------------------

/// The suite's enforce-pass fleet: 10,000 targets in 100 accounts.
fn enforce_fleet() -> FleetShape {
    fleet(10_000, 100)
}

/// Seeds `shape`, stops it, then runs one enforce pass over it (started by a poller tick, as in
/// the hub), checks both, prints the pass's traffic per target and its price per million
/// target-passes, and returns the `enforce_pass` section and whether everything checked out.
async fn enforce_pass(shape: FleetShape, sim: Simulation) -> (Value, bool) {
    println!("enforce_pass: {shape:?}, {sim:?}");
    let fleet = match Fleet::seed_with(&shape, Some(sim)).await {
        Ok(fleet) => fleet,
        Err(problem) => {
            eprintln!("problem: {problem}");
            return (json!({"error": problem.to_string()}), false);
        }
    };
    let stop = fleet.wave(Action::Stop).await;
    let c = shape.concurrency;
    print_wave("stop", &stop, c, bound(&stop, c));
    let Some(stop_op) = stop.op_id.clone() else {
        for p in &stop.problems {
            eprintln!("problem: {p}");
        }
        return (json!({"error": "the stop did not start"}), false);
    };
    let pass = fleet.enforce_pass(&stop_op).await;
    let targets = fleet.seeded.len();
    println!(
        "  enforce pass: makespan {:.1} s (virtual); {} tasks planned; {} spoke calls ({:.2} per \
         target); {} AssumeRole calls for {} accounts; {} targets checked, {} problems",
        makespan(&pass).as_secs_f64(),
        pass.tasks,
        pass.spoke_calls,
        pass.spoke_calls as f64 / targets.max(1) as f64,
        pass.spoke_traffic.sts_calls,
        pass.spoke_traffic.sts_accounts,
        pass.checked,
        pass.problems.len(),
    );
    let clean = stop.problems.is_empty()
        && pass.problems.is_empty()
        && stop.checked == targets
        && pass.checked == targets;
    for p in stop.problems.iter().chain(&pass.problems).take(20) {
        eprintln!("problem: {p}");
    }
    let traffic = WaveTraffic::of(&pass, targets);
    println!("{}", traffic.line("enforce pass"));
    let Some(used) = CycleUse::of(targets, &[&pass]) else {
        return (json!({"error": "the pass did not run simulated"}), false);
    };
    let (prices, memory) = (Prices::US_EAST_1, LambdaMemory::from_hub_stack());
    let cost = cost_per_1k_targets(&used, &prices, &memory);
    // Per 1,000 targets and one pass, so per million target-passes is 1,000 times that.
    let per_million = cost.total() * 1000.0;
    println!(
        "  enforce pass per million target-passes: ${per_million:.4} (DynamoDB {:.4} writes + \
         {:.4} reads, Lambda {:.4}, SQS {:.4}); spoke Describe calls not priced",
        cost.dynamo_writes * 1000.0,
        cost.dynamo_reads * 1000.0,
        (cost.lambda_duration + cost.lambda_requests) * 1000.0,
        cost.sqs * 1000.0,
    );
    let section = json!({
        "targets": targets,
        "accounts": shape.accounts,
        "regions": shape.regions,
        "tasks_planned": pass.tasks,
        "makespan_s": makespan(&pass).as_secs_f64(),
        "spoke_calls_per_target": pass.spoke_calls as f64 / targets.max(1) as f64,
        "sts_calls": pass.spoke_traffic.sts_calls,
        "traffic_per_target": traffic.to_json(),
        "usd_per_million_target_passes": per_million,
        "lambda_invocations": used.worker_invocations + used.router_invocations,
        "checked": pass.checked,
        "problems": pass.problems.len(),
    });
    (section, clean)
}

// --- Per-target DynamoDB and SQS traffic, and the cost of a cycle (issue 9) -----------------
// One block, kept apart from the makespan figures above: it prints each wave's traffic per
// target and prices the stop + start cycle (`curfew_tests::cost`), recording the `traffic` and
// `cost` sections and the top-level `cost_usd_per_1k_targets_cycle`.

/// Records the `traffic` and `cost` sections and the top-level `cost_usd_per_1k_targets_cycle`,
/// each name after `prefix` (a custom fleet's: `custom_`).
fn record_traffic_and_cost(report: &ScaleReport, path: &std::path::Path, prefix: &str) {
    let targets = report.seeded;
    let stop = WaveTraffic::of(&report.stop, targets);
    let start = WaveTraffic::of(&report.start, targets);
    println!("{}", stop.line("stop"));
    println!("{}", start.line("start"));
    let traffic = serde_json::json!({"stop": stop.to_json(), "start": start.to_json()});
    let Some(cycle) = CycleUse::from_waves(targets, &report.stop, &report.start) else {
        eprintln!("curfew-sim: a wave did not run simulated; no cost to price");
        return;
    };
    let (prices, memory) = (Prices::US_EAST_1, LambdaMemory::from_hub_stack());
    let cost = cost_per_1k_targets(&cycle, &prices, &memory);
    println!(
        "cost of a stop + start cycle per 1,000 targets: ${:.5} (Lambda {:.5} duration + {:.5} \
         requests, DynamoDB {:.5} writes + {:.5} reads, SQS {:.5}); us-east-1 on-demand prices",
        cost.total(),
        cost.lambda_duration,
        cost.lambda_requests,
        cost.dynamo_writes,
        cost.dynamo_reads,
        cost.sqs,
    );
    let per_1k = 1000.0 / targets.max(1) as f64;
    let section = serde_json::json!({
        "usd_per_1k_targets": {
            "total": cost.total(),
            "lambda_duration": cost.lambda_duration,
            "lambda_requests": cost.lambda_requests,
            "dynamodb_writes": cost.dynamo_writes,
            "dynamodb_reads": cost.dynamo_reads,
            "sqs": cost.sqs,
        },
        "per_1k_targets": {
            "lambda_gb_seconds": cycle.gb_seconds(&memory) * per_1k,
            "lambda_invocations": (cycle.worker_invocations + cycle.router_invocations) as f64 * per_1k,
            "dynamodb_write_units": cycle.write_units as f64 * per_1k,
            "dynamodb_read_units": cycle.read_units * per_1k,
            "sqs_requests": cycle.sqs_requests() as f64 * per_1k,
        },
        "memory_mb": {"router": memory.router_mb, "worker": memory.worker_mb},
        "prices_usd": {
            "lambda_arm64_gb_second": prices.lambda_gb_second,
            "lambda_request": prices.lambda_request,
            "dynamodb_write_unit": prices.dynamo_write_unit,
            "dynamodb_read_unit": prices.dynamo_read_unit,
            "sqs_request": prices.sqs_request,
        },
        "excluded": "poller, idle queues' empty receives, CloudWatch Logs, free tiers, per-invocation 1 ms rounding",
    });
    let recorded = record(path, &format!("{prefix}traffic"), traffic)
        .and_then(|()| record(path, &format!("{prefix}cost"), section))
        .and_then(|()| {
            record(
                path,
                &format!("{prefix}cost_usd_per_1k_targets_cycle"),
                serde_json::json!(cost.total()),
            )
        });
    if let Err(e) = recorded {
        eprintln!("curfew-sim: could not record {}: {e}", path.display());
    }
}
