//! `make bench`: each Lambda binary's cold start and peak memory, against a Lambda Runtime API
//! on loopback (`curfew_tests::runtime_api`) and a provisioned hub on the moto emulator.
//!
//! For each of the worker, router and poller, `--runs` times (default 5): spawn the release
//! binary (`$CARGO_TARGET_DIR/release/curfew-*`, built by `make bench` before this runs) in a
//! cleared environment holding what Lambda and the hub stack would set, hand it one real event,
//! and measure process spawn -> its first `next` poll (init) and -> its result received, then
//! its peak RSS (`VmHWM`). The events, and the checks of what each did, are
//! `curfew_tests::cold_starts`'s (a smoke run of them with the debug binaries is in `make test`).
//!
//! Prints medians and records the `cold_start` section of `target/curfew-bench.json`, and the
//! worker's medians as the top-level `cold_start_ms_worker` and `rss_mib_worker`.
//! Usage: `curfew-coldstart [--runs N]`.

use curfew_tests::bench::{arg, record, results_path};
use curfew_tests::cold_starts::{run_each, Run, POLLER, ROUTER, WORKER};
use curfew_tests::coldstart::median;
use serde_json::{json, Value};

fn summary(runs: &[Run]) -> Value {
    let pick = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let first = pick(|r| r.cold.first_event_ms);
    let init = pick(|r| r.cold.init_ms);
    let rss = pick(|r| r.cold.peak_rss_kib as f64 / 1024.0);
    let anon = pick(|r| r.cold.rss_anon_kib as f64 / 1024.0);
    let file = pick(|r| r.cold.rss_file_kib as f64 / 1024.0);
    let requests = pick(|r| r.requests as f64);
    json!({
        "emulator_requests_median": median(&requests),
        "emulator_requests": requests,
        "runs": runs.len(),
        "first_event_ms_median": median(&first),
        "init_ms_median": median(&init),
        "peak_rss_mib_median": median(&rss),
        "peak_rss_mib_max": rss.iter().copied().fold(0.0, f64::max),
        "rss_anon_mib_median": median(&anon),
        "rss_file_mib_median": median(&file),
        "first_event_ms": first,
        "init_ms": init,
        "peak_rss_mib": rss,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = arg("--runs", 5).max(1);
    let binaries = results_path().with_file_name("release");
    for f in [&WORKER, &ROUTER, &POLLER] {
        let binary = binaries.join(f.name);
        if !binary.exists() {
            eprintln!(
                "curfew-coldstart: no {} (cargo build --release -p {})",
                binary.display(),
                f.name
            );
            std::process::exit(1);
        }
    }
    let cold = run_each(&binaries, runs).await;
    let (worker, router, poller) = (cold.worker, cold.router, cold.poller);

    println!("| Lambda (x86_64 release build, {runs} runs) | spawn -> first poll (median) | spawn -> first result (median) | emulator requests for the event (median) | peak RSS (median / max) | resident after the event: anonymous / file-backed (medians) |");
    println!("|---|---|---|---|---|---|");
    let mut section = serde_json::Map::new();
    for (f, runs) in [(&WORKER, &worker), (&ROUTER, &router), (&POLLER, &poller)] {
        let s = summary(runs);
        println!(
            "| {} | {:.1} ms | {:.1} ms | {} | {:.1} / {:.1} MiB | {:.1} / {:.1} MiB |",
            f.name,
            s["init_ms_median"].as_f64().unwrap(),
            s["first_event_ms_median"].as_f64().unwrap(),
            s["emulator_requests_median"],
            s["peak_rss_mib_median"].as_f64().unwrap(),
            s["peak_rss_mib_max"].as_f64().unwrap(),
            s["rss_anon_mib_median"].as_f64().unwrap(),
            s["rss_file_mib_median"].as_f64().unwrap(),
        );
        section.insert(f.name.trim_start_matches("curfew-").to_string(), s);
    }
    let worker = &section["worker"];
    let path = results_path();
    record(
        &path,
        "cold_start_ms_worker",
        worker["first_event_ms_median"].clone(),
    )
    .and_then(|()| {
        record(
            &path,
            "rss_mib_worker",
            worker["peak_rss_mib_median"].clone(),
        )
    })
    .and_then(|()| record(&path, "cold_start", Value::Object(section.clone())))
    .expect("the results file is writable");
    eprintln!("recorded in {}", path.display());
}
