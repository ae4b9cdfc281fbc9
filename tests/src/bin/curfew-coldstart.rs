//! `make bench`: each Lambda binary's cold start and peak memory, against a Lambda Runtime API
//! on loopback (`curfew_tests::runtime_api`) and a provisioned hub on the moto emulator.
//!
//! For each of the worker, router and poller, `--runs` times (default 5): spawn the release
//! binary (`$CARGO_TARGET_DIR/release/curfew-*`, built by `make bench` before this runs) in a
//! cleared environment holding what Lambda and the hub stack would set, hand it one real event,
//! and measure process spawn -> its first `next` poll (init) and -> its result received, then
//! its peak RSS (`VmHWM`). The events do real work against the emulator:
//!
//! - worker: an SQS event with one task message of a stop operation (a fleet ASG per run);
//! - router: an SQS event with the operation message of a new stop over the fleet;
//! - poller: a scheduled event, with a schedule of its own due (the tick fires it).
//!
//! Prints medians and records the `cold_start` section of `target/curfew-bench.json`, and the
//! worker's medians as the top-level `cold_start_ms_worker` and `rss_mib_worker`.
//! Usage: `curfew-coldstart [--runs N]`.

use std::path::PathBuf;

use chrono::{Duration, DurationRound, Utc};
use curfew_aws::local::demo_fleet;
use curfew_core::service::invocation::{invoke, Invocation as DirectInvocation};
use curfew_tests::bench::{arg, record, results_path};
use curfew_tests::coldstart::{measure, median, sqs_event, ColdStart};
use curfew_tests::emulator_requests;
use curfew_tests::runtime_api::Invocation;
use curfew_tests::{spawn_hub, stop_schedule, TestHub};
use serde_json::{json, Value};

/// The hub account of the emulator (moto's default account for the `test` keys).
const HUB_ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";

/// One Lambda of the hub stack (infra/lib/hub-stack.ts): its binary and memory size.
struct Function {
    name: &'static str,
    memory_mb: u32,
}

const WORKER: Function = Function {
    name: "curfew-worker",
    memory_mb: 256,
};
const ROUTER: Function = Function {
    name: "curfew-router",
    memory_mb: 512,
};
const POLLER: Function = Function {
    name: "curfew-poller",
    memory_mb: 256,
};

impl Function {
    fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{REGION}:{HUB_ACCOUNT}:function:{}",
            self.name
        )
    }

    /// What Lambda sets for the runtime (lambda_runtime refuses to start without the name and
    /// version), what the hub stack sets (`CURFEW_*`, `RUST_LOG`), and the emulator's endpoint
    /// and keys where Lambda would give the execution role's credentials.
    fn env(&self, t: &TestHub) -> Vec<(String, String)> {
        let endpoint = t.sdk.endpoint_url().expect("the test hub has an endpoint");
        [
            ("AWS_LAMBDA_FUNCTION_NAME", self.name),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                &self.memory_mb.to_string(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                &format!("/aws/lambda/{}", self.name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2027/01/04/[$LATEST]coldstart",
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("RUST_LOG", "info"),
            ("CURFEW_TABLE", &t.config.table),
            ("CURFEW_ROUTER_QUEUE_URL", &t.config.router_queue_url),
            ("CURFEW_TASK_QUEUE_URL", &t.config.task_queue_url),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

fn queue_arn(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or(url);
    format!("arn:aws:sqs:{REGION}:{HUB_ACCOUNT}:{name}")
}

/// One run: the cold start and the emulator requests the handler made for its event (each is
/// part of the time to the result, at the emulator's speed).
struct Run {
    cold: ColdStart,
    requests: usize,
}

/// Runs `function` once on `event`, exiting the process with the cause if it fails.
async fn cold_start(function: &Function, t: &TestHub, event: Value) -> Run {
    let binary = binary_dir().join(function.name);
    let before = emulator_requests();
    let cold = measure(
        &binary,
        &function.env(t),
        &function.arn(),
        Invocation::new(event),
    )
    .await
    .unwrap_or_else(|e| {
        eprintln!(
            "curfew-coldstart: {} ({}): {e}",
            function.name,
            binary.display()
        );
        std::process::exit(1)
    });
    Run {
        cold,
        requests: emulator_requests() - before,
    }
}

fn binary_dir() -> PathBuf {
    results_path().with_file_name("release")
}

/// The operation message a direct stop over the whole fleet puts on the router queue.
async fn operation_message(t: &TestHub) -> String {
    let stop = DirectInvocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap();
    invoke(&t.hub, stop).await.expect("the stop is accepted");
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let out = sqs
        .receive_message()
        .queue_url(&t.config.router_queue_url)
        .send()
        .await
        .unwrap();
    let message = out
        .messages
        .unwrap_or_default()
        .pop()
        .expect("one operation message");
    sqs.delete_message()
        .queue_url(&t.config.router_queue_url)
        .receipt_handle(message.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    message.body.expect("a body")
}

/// A schedule of its own, due now: the poller's tick fires it.
async fn due_schedule(t: &TestHub, run: usize) {
    let now = Utc::now().duration_trunc(Duration::minutes(1)).unwrap();
    let schedule = stop_schedule(&format!("coldstart-{run}"), "* * * * *", "kind=asg", now);
    t.hub.store.create_schedule(&schedule).await.unwrap();
}

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
    for f in [&WORKER, &ROUTER, &POLLER] {
        let binary = binary_dir().join(f.name);
        if !binary.exists() {
            eprintln!(
                "curfew-coldstart: no {} (cargo build --release -p {})",
                binary.display(),
                f.name
            );
            std::process::exit(1);
        }
    }
    // The Lambdas read the system clock: the hub's clock starts at the same instant.
    let t = spawn_hub(Utc::now(), 1).await;
    t.register_accounts(&[REGION]).await;
    let fleet = demo_fleet(&t.accounts, &[REGION.to_string()], runs.max(2), 0);
    t.seed(&fleet).await;

    let mut worker = Vec::new();
    {
        let stop =
            DirectInvocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap();
        let op = invoke(&t.hub, stop).await.unwrap().operation_id;
        let tasks = t.route_and_take_tasks().await;
        let queue = queue_arn(&t.config.task_queue_url);
        for (run, task) in tasks.iter().take(runs).enumerate() {
            let body = serde_json::to_string(task).unwrap();
            let c = cold_start(&WORKER, &t, sqs_event(&queue, &[body])).await;
            assert_eq!(
                c.cold.response,
                json!({"batchItemFailures": []}),
                "the task was worked"
            );
            let finished = t.hub.store.list_tasks(&op).await.unwrap();
            let finished = finished.iter().filter(|t| t.status.is_final()).count();
            assert_eq!(finished, run + 1, "each run finishes its task");
            worker.push(c);
        }
    }

    let mut router = Vec::new();
    let queue = queue_arn(&t.config.router_queue_url);
    for _ in 0..runs {
        let body = operation_message(&t).await;
        let c = cold_start(&ROUTER, &t, sqs_event(&queue, &[body])).await;
        assert_eq!(
            c.cold.response,
            json!({"batchItemFailures": []}),
            "the operation was routed"
        );
        router.push(c);
    }

    let mut poller = Vec::new();
    for run in 0..runs {
        due_schedule(&t, run).await;
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": HUB_ACCOUNT,
            "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": REGION,
            "resources": [format!("arn:aws:events:{REGION}:{HUB_ACCOUNT}:rule/curfew-poller")],
            "detail": {}
        });
        let c = cold_start(&POLLER, &t, event).await;
        let created = c.cold.response["created"].as_array().map_or(0, Vec::len);
        assert!(created >= 1, "the due schedule fired: {}", c.cold.response);
        poller.push(c);
    }

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
