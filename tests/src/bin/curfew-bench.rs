//! `make bench`: a stop and a start wave over a seeded emulator fleet, measured in one run.
//!
//! Reports wall time per wave at dispatcher concurrency 1 and at the configured concurrency
//! (the ratio is the fan-out's speed-up), and request counts: task messages vs SendMessageBatch
//! calls, tasks vs STS AssumeRole calls (the session cache). Usage:
//! `curfew-bench [--accounts N] [--asgs-per-account N] [--concurrency N]`.

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use curfew_aws::dispatch::Dispatcher;
use curfew_aws::local::{demo_fleet, FleetTarget};
use curfew_aws::AwsSpokes;
use curfew_core::clock::{Clock, SystemClock};
use curfew_core::operation::OpStatus;
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::Hub;
use curfew_tests::bench::{arg, CountingQueue};
use curfew_tests::{emulator_requests, spawn_hub};

async fn wave(hub: &Hub, dispatcher: &Dispatcher, action: &str) -> (f64, u64, usize) {
    let requests = emulator_requests();
    let started = Instant::now();
    let payload = serde_json::json!({"action": action, "select": "kind=asg"});
    let response = invoke(hub, Invocation::parse(&payload).unwrap())
        .await
        .unwrap();
    dispatcher.drain().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let op = hub
        .store
        .get_operation(&response.operation_id)
        .await
        .unwrap()
        .unwrap();
    if op.status != OpStatus::Succeeded {
        for task in hub.store.list_tasks(&op.id).await.unwrap() {
            if !task.status.is_final() {
                eprintln!("unfinished: {task:?}");
            }
        }
        panic!("operation did not succeed: {op:?}");
    }
    (secs, op.counts.succeeded, emulator_requests() - requests)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let accounts = arg("--accounts", 4);
    let per_account = arg("--asgs-per-account", 25);
    let concurrency = arg("--concurrency", 8);
    let mut t = spawn_hub(
        Utc.with_ymd_and_hms(2027, 1, 4, 12, 0, 0).unwrap(),
        accounts,
    )
    .await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet: Vec<FleetTarget> =
        demo_fleet(&t.accounts, &["eu-west-1".to_string()], per_account, 0);
    eprintln!("seeding {} ASGs in {accounts} accounts...", fleet.len());
    let seeding = Instant::now();
    t.seed(&fleet).await;
    eprintln!("seeded in {:.1}s", seeding.elapsed().as_secs_f64());

    let spokes = Arc::new(AwsSpokes::new(
        t.sdk.clone(),
        Arc::new(SystemClock) as Arc<dyn Clock>,
    ));
    let tasks = Arc::new(CountingQueue::new(t.hub.task_queue.clone()));
    t.hub.spokes = spokes.clone();
    t.hub.task_queue = tasks.clone();
    let serial = Dispatcher::new(
        t.hub.clone(),
        aws_sdk_sqs::Client::new(&t.sdk),
        &t.config.router_queue_url,
        &t.config.task_queue_url,
        1,
    );
    let parallel = Dispatcher::new(
        t.hub.clone(),
        aws_sdk_sqs::Client::new(&t.sdk),
        &t.config.router_queue_url,
        &t.config.task_queue_url,
        concurrency,
    );

    // Warm-up discovery is part of the first wave; run a throwaway plan so both waves read the cache.
    curfew_core::service::router::plan(
        &t.hub,
        curfew_core::decision::Action::Stop,
        &"kind=asg".parse().unwrap(),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let (stop_serial, n1, _) = wave(&t.hub, &serial, "stop").await;
    let (start_serial, n2, _) = wave(&t.hub, &serial, "start").await;
    let (stop_parallel, n3, stop_requests) = wave(&t.hub, &parallel, "stop").await;
    let (start_parallel, n4, start_requests) = wave(&t.hub, &parallel, "start").await;
    let task_messages = tasks.messages();
    let batch_calls = tasks.batch_calls();

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| targets (ASGs) x accounts | {} x {accounts} |",
        fleet.len()
    );
    println!(
        "| stop wave, concurrency 1 | {stop_serial:.2} s ({:.1} targets/s) |",
        n1 as f64 / stop_serial
    );
    println!(
        "| start wave, concurrency 1 | {start_serial:.2} s ({:.1} targets/s) |",
        n2 as f64 / start_serial
    );
    println!(
        "| stop wave, concurrency {concurrency} | {stop_parallel:.2} s ({:.1} targets/s) |",
        n3 as f64 / stop_parallel
    );
    println!(
        "| start wave, concurrency {concurrency} | {start_parallel:.2} s ({:.1} targets/s) |",
        n4 as f64 / start_parallel
    );
    println!(
        "| emulator requests per target, stop wave (hub + spoke) | {:.1} |",
        stop_requests as f64 / n3 as f64
    );
    println!(
        "| emulator requests per target, start wave (hub + spoke) | {:.1} |",
        start_requests as f64 / n4 as f64
    );
    println!("| task messages / SendMessageBatch calls | {task_messages} / {batch_calls} ({:.1} per call) |", task_messages as f64 / batch_calls as f64);
    println!(
        "| tasks worked / spoke credential lookups / STS AssumeRole calls | {} / {} / {} ({:.0} lookups per STS call) |",
        n1 + n2 + n3 + n4,
        spokes.credential_lookups(),
        spokes.assume_role_calls(),
        spokes.credential_lookups() as f64 / spokes.assume_role_calls().max(1) as f64
    );
}
