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
// The traffic and cost block (at the end of the file).
use curfew_tests::cost::{cost_per_1k_targets, CycleUse, LambdaMemory, Prices};
use curfew_tests::scale::ScaleReport;
use curfew_tests::traffic::WaveTraffic;

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
    record_traffic_and_cost(&report, &path);
    let problems: Vec<String> = report.problems().map(ToString::to_string).collect();
    for p in problems.iter().take(20) {
        eprintln!("problem: {p}");
    }
    if !report.is_clean() {
        std::process::exit(1);
    }
}

// --- Per-target DynamoDB and SQS traffic, and the cost of a cycle (issue 9) -----------------
// One block, kept apart from the makespan figures above: it prints each wave's traffic per
// target and prices the stop + start cycle (`curfew_tests::cost`), recording the `traffic` and
// `cost` sections and the top-level `cost_usd_per_1k_targets_cycle`.

fn record_traffic_and_cost(report: &ScaleReport, path: &std::path::Path) {
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
    let recorded = record(path, "traffic", traffic)
        .and_then(|()| record(path, "cost", section))
        .and_then(|()| {
            record(
                path,
                "cost_usd_per_1k_targets_cycle",
                serde_json::json!(cost.total()),
            )
        });
    if let Err(e) = recorded {
        eprintln!("curfew-sim: could not record {}: {e}", path.display());
    }
}
