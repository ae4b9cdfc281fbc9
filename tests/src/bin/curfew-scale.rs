//! `make bench`, second part: a whole stop wave and start wave at fleet scale (default 100,000
//! targets in 200 accounts x 2 regions) through the real poller-free path — direct invocation,
//! two-level router fan-out, worker — over the in-memory ports (`curfew_core::fakes`).
//!
//! The emulator answers one request at a time, so it cannot show what curfew itself costs at
//! 100,000 targets; this does. The wave and its checks are `curfew_tests::scale`: after the stop
//! every awake target is at its stopped sizes with a baseline equal to its seeded sizes, after
//! the start it is at exactly its seeded sizes with no baseline left; targets seeded already
//! asleep (`--asleep-every N`) are skipped with that reason and left alone. Exits 1, listing
//! what did not check out, if anything did not. Usage:
//! `curfew-scale [--targets N] [--accounts N] [--regions N] [--concurrency N] [--asleep-every N] [--big-account N]`.

use curfew_tests::bench::{record, results_path};
use curfew_tests::counting::cpu::ClockCost;
use curfew_tests::scale::{run, FleetShape, ScaleReport, WaveReport};
use curfew_tests::traffic::WaveTraffic;

/// Empty timed calls measured to learn what reading the CPU clock costs.
const CLOCK_ROUNDS: u32 = 200_000;

/// Problems printed before the rest are only counted.
const SHOWN_PROBLEMS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shape = FleetShape::from_args();
    if let Err(e) = shape.validate() {
        eprintln!("curfew-scale: {e}");
        std::process::exit(2);
    }
    eprintln!(
        "{} targets in {} accounts x {} regions; concurrency {}; seeded asleep: {}",
        shape.targets,
        shape.accounts,
        shape.regions,
        shape.concurrency,
        match shape.asleep_every {
            0 => "none".to_string(),
            n => format!("1 in {n}"),
        }
    );
    let report = run(&shape).await;
    // Measured after the run, on a warm CPU, as the run's timed calls were.
    let clock = ClockCost::measure(CLOCK_ROUNDS);
    print_report(&report);
    print_cpu(&report, &clock);
    let wave = |w: &WaveReport| {
        let n = report.seeded.max(1) as f64;
        let cpu = w.cpu.map(|c| {
            let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n;
            serde_json::json!({
                "ours_us_per_target": us(c.ours(&clock)),
                "fakes_us_per_target": us(c.fakes.cpu),
                "harness_us_per_target": us(c.harness()),
                "process_us_per_target": us(c.process),
                "fake_calls_timed": c.fakes.calls,
                "handler_calls_timed": c.handlers.calls,
            })
        });
        serde_json::json!({
            "per_target": WaveTraffic::of(w, report.seeded).to_json(),
            "cpu": cpu,
            "routing_s": w.route.as_secs_f64(),
            "working_s": w.work.as_secs_f64(),
            "state_store_calls_per_target": w.store.total() as f64 / n,
            "spoke_calls_per_target": w.spoke_calls as f64 / n,
            "task_queue_sends": w.task_sends.sends,
            "send_message_batch_calls": w.task_sends.batch_calls,
            "targets_checked": w.checked,
            "problems": w.problems.len(),
        })
    };
    let path = results_path();
    let figures = serde_json::json!({
        "clock_read_ns": {
            "pair": clock.pair.as_nanos() as u64,
            "inside": clock.inside.as_nanos() as u64,
        },
        "targets": shape.targets,
        "accounts": shape.accounts,
        "regions": shape.regions,
        "concurrency": shape.concurrency,
        "stop": wave(&report.stop),
        "start": wave(&report.start),
    });
    let per_target = |w: &WaveReport| {
        w.cpu
            .map(|c| c.ours(&clock).as_secs_f64() * 1e6 / report.seeded.max(1) as f64)
    };
    // Per target and wave: the mean of the stop's and the start's.
    let cpu_us = per_target(&report.stop)
        .zip(per_target(&report.start))
        .map(|(stop, start)| (stop + start) / 2.0);
    let recorded = record(&path, "scale", figures)
        .and_then(|()| record(&path, "cpu_us_per_target", serde_json::json!(cpu_us)));
    match recorded {
        Ok(()) => eprintln!("recorded in {}", path.display()),
        Err(e) => eprintln!("curfew-scale: could not record {}: {e}", path.display()),
    }
    let problems: Vec<_> = report.problems().collect();
    if !report.is_clean() {
        for p in problems.iter().take(SHOWN_PROBLEMS) {
            eprintln!("problem: {p}");
        }
        eprintln!(
            "curfew-scale: {} problems; {} / {} targets checked out after the stop, {} after the start",
            problems.len(),
            report.stop.checked,
            report.seeded,
            report.start.checked
        );
        std::process::exit(1);
    }
}

fn print_report(r: &ScaleReport) {
    let n = r.seeded as f64;
    let shards = r.shape.shards();
    println!("| measure (in-memory ports, one run) | value |");
    println!("|---|---|");
    println!(
        "| targets x accounts x regions | {} x {} x {} ({} per shard at most; {} seeded asleep) |",
        r.seeded,
        r.shape.accounts,
        r.shape.regions,
        r.seeded.div_ceil(shards),
        r.seeded_asleep
    );
    for w in [&r.stop, &r.start] {
        let secs = (w.route + w.work).as_secs_f64();
        println!(
            "| {} wave: routing (fan-out + {shards} shards) / working | {:.2} s / {:.2} s ({:.0} targets/s, {:.1} µs per target) |",
            w.action,
            w.route.as_secs_f64(),
            w.work.as_secs_f64(),
            n / secs,
            secs * 1e6 / n
        );
    }
    println!(
        "| targets checked after each wave | stop: {} of {} ({} of them skipped as seeded asleep); start: {} of {} ({}) |",
        r.stop.checked, r.seeded, r.stop.checked_asleep, r.start.checked, r.seeded, r.start.checked_asleep
    );
    for w in [&r.stop, &r.start] {
        print_wave(w, n);
        println!(
            "| {} |",
            WaveTraffic::of(w, r.seeded).line(&format!("{} wave", w.action))
        );
    }
}

fn print_wave(w: &WaveReport, n: f64) {
    let a = w.action;
    let t = w.task_sends;
    println!(
        "| {a} wave: task queue sends observed / messages / largest send | {} / {} / {} ({:.1} messages per send) |",
        t.sends,
        t.messages,
        t.largest_send,
        t.messages as f64 / t.sends.max(1) as f64
    );
    println!(
        "| {a} wave: SendMessageBatch calls the SQS adapter makes for those sends (10 per call) | {} ({:.2} messages per call) |",
        t.batch_calls,
        t.messages as f64 / t.batch_calls.max(1) as f64
    );
    println!(
        "| {a} wave: router queue sends / messages | {} / {} |",
        w.router_sends.sends, w.router_sends.messages
    );
    println!(
        "| {a} wave: state store calls (reads / writes) | {} ({} / {}; {:.2} per target) + {} task items planned |",
        w.store.total(),
        w.store.reads(),
        w.store.writes(),
        w.store.total() as f64 / n,
        w.store.planned_tasks
    );
    let per_method: Vec<String> = w
        .store
        .nonzero()
        .into_iter()
        .map(|(call, count)| format!("{} {count} ({:.3})", call.name(), count as f64 / n))
        .collect();
    println!(
        "| {a} wave: state store calls by method (per target) | {} |",
        per_method.join(", ")
    );
    println!(
        "| {a} wave: spoke API calls | {} ({:.2} per target) |",
        w.spoke_calls,
        w.spoke_calls as f64 / n
    );
}

fn print_cpu(r: &ScaleReport, clock: &ClockCost) {
    let n = r.seeded.max(1) as f64;
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n;
    println!(
        "| CPU clock: one timed call's start + stop / of it inside the interval | {} ns / {} ns |",
        clock.pair.as_nanos(),
        clock.inside.as_nanos()
    );
    for w in [&r.stop, &r.start] {
        let Some(c) = w.cpu else { continue };
        println!(
            "| {} wave: CPU per target: our code / fakes (and counting) / harness / process | {:.1} µs / {:.1} µs / {:.1} µs / {:.1} µs ({} fake calls, {} handler calls timed) |",
            w.action,
            us(c.ours(clock)),
            us(c.fakes.cpu),
            us(c.harness()),
            us(c.process),
            c.fakes.calls,
            c.handlers.calls,
        );
    }
}
