//! `make bench`, simulation part (issue 9): a stop wave and a start wave through the real
//! router and worker over the in-memory ports, every call taking its AWS latency, the queues
//! worked as SQS event sources with maximum concurrency, on a paused (virtual) tokio clock. It
//! prints each wave's virtual makespan against its lower bound (the workers' busy time over the
//! concurrency cap) and checks every target as `curfew-scale` does; exit 1 if any check failed.
//! Usage: `curfew-sim [--targets N] [--accounts N] [--regions N] [--concurrency N]
//! [--spoke-ms N] [--state-ms N] [--queue-ms N] [--spoke-rate N [--spoke-burst N]]`
//! (`--spoke-rate`: spoke calls a second per account and region, paced by a token bucket).

use std::time::{Duration, Instant};

use curfew_tests::bench::{arg, record, results_path};
use curfew_tests::scale::{run_with, FleetShape, WaveReport};
use curfew_tests::sim::{concurrency_bound, Latency, RateLimit, Simulation};

fn print_wave(name: &str, wave: &WaveReport, concurrency: usize) {
    let by_concurrency = concurrency_bound(wave.worker_busy, concurrency);
    let bound = by_concurrency.max(wave.rate_bound);
    let makespan = wave.route + wave.work;
    let ratio = makespan.as_secs_f64() / bound.as_secs_f64().max(f64::EPSILON);
    // Under a rate limit the workers' busy time includes waiting for tokens, so the
    // concurrency bound is valid but loose: the rate bound is the one to be measured against.
    let to_rate = if wave.rate_bound.is_zero() {
        String::new()
    } else {
        format!(
            ", makespan / rate bound {:.3}",
            makespan.as_secs_f64() / wave.rate_bound.as_secs_f64()
        )
    };
    if let Some((first, others)) = wave.done {
        println!(
            "{name}: the first account's last task done at {:.1} s, every other account's at {:.1} s (virtual, into the working phase)",
            first.as_secs_f64(),
            others.as_secs_f64()
        );
    }
    println!(
        "{name}: makespan {:.1} s (virtual: routing {:.1} s, working {:.1} s); bounds: concurrency \
         {:.1} s (worker busy {:.1} s over {concurrency} pollers), rate limit {:.1} s; \
         makespan / bound {ratio:.3}{to_rate}; {} invocations, {} targets checked, {} problems",
        makespan.as_secs_f64(),
        wave.route.as_secs_f64(),
        wave.work.as_secs_f64(),
        by_concurrency.as_secs_f64(),
        wave.worker_busy.as_secs_f64(),
        wave.rate_bound.as_secs_f64(),
        wave.task_rounds,
        wave.checked,
        wave.problems.len(),
    );
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let defaults = FleetShape::default();
    let shape = FleetShape {
        targets: arg("--targets", defaults.targets),
        accounts: arg("--accounts", defaults.accounts),
        regions: arg("--regions", defaults.regions),
        concurrency: arg("--concurrency", defaults.concurrency),
        big_account: arg("--big-account", defaults.big_account),
        ..defaults
    };
    let d = Latency::default();
    let ms = |name, default: Duration| {
        Duration::from_millis(arg(name, default.as_millis() as usize) as u64)
    };
    let latency = Latency {
        spoke: ms("--spoke-ms", d.spoke),
        state: ms("--state-ms", d.state),
        queue: ms("--queue-ms", d.queue),
    };
    // Spoke calls a second per account and region, 0: unlimited. AWS does not publish the
    // Auto Scaling and EKS API rates; the value is the run's assumption, printed with it.
    let rate = arg("--spoke-rate", 0);
    let spoke_limit = (rate > 0).then(|| RateLimit {
        rate: rate as f64,
        burst: arg("--spoke-burst", 2 * rate) as f64,
    });
    let sim = Simulation {
        latency,
        spoke_limit,
    };
    println!("simulating {shape:?} with {sim:?}");
    let real = Instant::now();
    let report = run_with(&shape, Some(sim)).await;
    print_wave("stop", &report.stop, shape.concurrency);
    print_wave("start", &report.start, shape.concurrency);
    let real = real.elapsed();
    println!("real time: {:.1} s", real.as_secs_f64());
    let wave = |w: &WaveReport| {
        let by_concurrency = concurrency_bound(w.worker_busy, shape.concurrency);
        let makespan = w.route + w.work;
        serde_json::json!({
            "makespan_s": makespan.as_secs_f64(),
            "routing_s": w.route.as_secs_f64(),
            "working_s": w.work.as_secs_f64(),
            "worker_busy_s": w.worker_busy.as_secs_f64(),
            "concurrency_bound_s": by_concurrency.as_secs_f64(),
            "rate_bound_s": w.rate_bound.as_secs_f64(),
            "makespan_over_bound": makespan.as_secs_f64()
                / by_concurrency.max(w.rate_bound).as_secs_f64().max(f64::EPSILON),
            "invocations": w.task_rounds,
            "targets_checked": w.checked,
            "problems": w.problems.len(),
            "first_account_done_s": w.done.map(|d| d.0.as_secs_f64()),
            "other_accounts_done_s": w.done.map(|d| d.1.as_secs_f64()),
        })
    };
    let path = results_path();
    let figures = serde_json::json!({
        "targets": shape.targets,
        "accounts": shape.accounts,
        "regions": shape.regions,
        "concurrency": shape.concurrency,
        "big_account": shape.big_account,
        "latency_ms": {
            "spoke": latency.spoke.as_millis() as u64,
            "state": latency.state.as_millis() as u64,
            "queue": latency.queue.as_millis() as u64,
        },
        "spoke_rate_per_s": spoke_limit.map(|l| l.rate),
        "stop": wave(&report.stop),
        "start": wave(&report.start),
        "real_time_s": real.as_secs_f64(),
    });
    match record(&path, "simulation", figures) {
        Ok(()) => println!("recorded in {}", path.display()),
        Err(e) => eprintln!("curfew-sim: could not record {}: {e}", path.display()),
    }
    let problems: Vec<String> = report.problems().map(ToString::to_string).collect();
    for p in problems.iter().take(20) {
        eprintln!("problem: {p}");
    }
    if !report.is_clean() {
        std::process::exit(1);
    }
}
