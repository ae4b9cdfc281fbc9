//! `make bench`: stop and start waves over a seeded emulator fleet, set against the most the
//! emulator itself can serve, measured in the same run.
//!
//! Seeds `--accounts` x `--asgs-per-account` ASGs (default 20 x 50 = 1,000) and, with
//! `--nodegroups-per-cluster N`, two EKS clusters of N managed node groups in every account
//! (default none), measures moto's
//! ceiling (requests/s of a bare UpdateAutoScalingGroup loop through the real Auto Scaling
//! client, `--ceiling-calls` calls, before and after the waves), then runs a stop and a start
//! wave through the real router and worker with the local dispatcher at `--concurrency`, and,
//! with `--serial 1`, first at concurrency 1 too. For each wave: wall time, emulator requests
//! per target, its request rate as a fraction of the ceiling, and the share of its wall time moto
//! was busy (CPU time from /proc): a wave at a small fraction of the ceiling with moto busy all
//! along is made of requests dearer to moto than the ceiling's, not of moto waiting on curfew. Also the counts that carry over to AWS: task messages per
//! SendMessageBatch call, STS AssumeRole calls per credential lookup. Prints a table and records
//! the `emulator` section of `target/curfew-bench.json`. Usage: `curfew-bench [--accounts N]
//! [--asgs-per-account N] [--nodegroups-per-cluster N] [--concurrency N] [--serial 0|1]
//! [--ceiling-calls N]`.

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
use curfew_core::target::TargetKind;
use curfew_tests::bench::{arg, record, results_path, CountingQueue};
use curfew_tests::{emulator_cpu_seconds, emulator_requests, spawn_hub, TestHub};
use serde_json::json;

/// What each wave selects: every target seeded (all in one region).
const FLEET: &str = "region=eu-west-1";

/// One wave, measured.
struct Wave {
    action: &'static str,
    concurrency: usize,
    secs: f64,
    targets: u64,
    requests: usize,
    /// Seconds of CPU moto used during the wave.
    emulator_cpu: f64,
}

impl Wave {
    fn requests_per_target(&self) -> f64 {
        self.requests as f64 / self.targets as f64
    }

    fn requests_per_s(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    /// The share of the wave's wall time moto spent computing (1.0: never waiting for curfew).
    fn emulator_busy(&self) -> f64 {
        self.emulator_cpu / self.secs
    }
}

fn emulator_cpu() -> f64 {
    emulator_cpu_seconds().unwrap_or(f64::NAN)
}

async fn wave(hub: &Hub, dispatcher: &Dispatcher, action: &'static str) -> Wave {
    let requests = emulator_requests();
    let cpu = emulator_cpu();
    let started = Instant::now();
    let payload = json!({"action": action, "select": FLEET});
    let response = invoke(hub, Invocation::parse(&payload).unwrap())
        .await
        .unwrap();
    dispatcher.drain().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let emulator_cpu = emulator_cpu() - cpu;
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
    Wave {
        action,
        concurrency: dispatcher.max_concurrency,
        secs,
        targets: op.counts.succeeded,
        requests: emulator_requests() - requests,
        emulator_cpu,
    }
}

/// The emulator's ceiling: `calls` UpdateAutoScalingGroup calls one after the other on one
/// fleet ASG, setting the sizes it already has, through a spoke's Auto Scaling client as the
/// worker builds it (assumed-role credentials, same endpoint). moto answers one request at a
/// time (`scripts/moto_server.py`), so a loop of its cheapest write is about the most requests
/// per second it can serve; curfew's waves cannot go faster than that here. Returns
/// requests per second and the share of the loop's wall time moto was busy.
async fn ceiling(t: &TestHub, target: &FleetTarget, calls: usize) -> (f64, f64) {
    let sizes = t.sizes(target).await;
    let client = t.autoscaling(&target.account, &target.region).await;
    let requests = emulator_requests();
    let cpu = emulator_cpu();
    let started = Instant::now();
    for _ in 0..calls {
        client
            .update_auto_scaling_group()
            .auto_scaling_group_name(&target.name)
            .min_size(sizes.min)
            .max_size(sizes.max)
            .desired_capacity(sizes.desired)
            .send()
            .await
            .expect("UpdateAutoScalingGroup on the emulator");
    }
    let secs = started.elapsed().as_secs_f64();
    let busy = (emulator_cpu() - cpu) / secs;
    let answered = emulator_requests() - requests;
    assert_eq!(answered, calls, "one emulator request per call, no retries");
    (calls as f64 / secs, busy)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let accounts = arg("--accounts", 20);
    let per_account = arg("--asgs-per-account", 50);
    let nodegroups = arg("--nodegroups-per-cluster", 0);
    let concurrency = arg("--concurrency", 8);
    let serial = arg("--serial", 0) != 0;
    let ceiling_calls = arg("--ceiling-calls", 500);
    let run = Instant::now();
    let mut t = spawn_hub(
        Utc.with_ymd_and_hms(2027, 1, 4, 12, 0, 0).unwrap(),
        accounts,
    )
    .await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet: Vec<FleetTarget> = demo_fleet(
        &t.accounts,
        &["eu-west-1".to_string()],
        per_account,
        nodegroups,
    );
    let node_groups = fleet
        .iter()
        .filter(|f| f.kind == TargetKind::Nodegroup)
        .count();
    eprintln!(
        "seeding {} ASGs and {node_groups} node groups in {accounts} accounts...",
        fleet.len() - node_groups
    );
    let seeding = Instant::now();
    t.seed(&fleet).await;
    let seed_secs = seeding.elapsed().as_secs_f64();
    eprintln!("seeded in {seed_secs:.1}s");

    let (ceiling_before, busy_before) = ceiling(&t, &fleet[0], ceiling_calls).await;
    eprintln!("emulator ceiling: {ceiling_before:.0} requests/s");

    let spokes = Arc::new(AwsSpokes::new(
        t.sdk.clone(),
        Arc::new(SystemClock) as Arc<dyn Clock>,
    ));
    let tasks = Arc::new(CountingQueue::new(t.hub.task_queue.clone()));
    t.hub.spokes = spokes.clone();
    t.hub.task_queue = tasks.clone();
    let dispatcher = |n| {
        Dispatcher::new(
            t.hub.clone(),
            aws_sdk_sqs::Client::new(&t.sdk),
            &t.config.router_queue_url,
            &t.config.task_queue_url,
            n,
        )
    };

    // Warm-up discovery is not part of any wave: a throwaway plan fills the inventory cache.
    curfew_core::service::router::plan(
        &t.hub,
        curfew_core::decision::Action::Stop,
        &FLEET.parse().unwrap(),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let mut levels = vec![concurrency];
    if serial && concurrency != 1 {
        levels.insert(0, 1);
    }
    let mut waves = Vec::new();
    for n in levels {
        let d = dispatcher(n);
        for action in ["stop", "start"] {
            let w = wave(&t.hub, &d, action).await;
            eprintln!("{action} wave, concurrency {n}: {:.1}s", w.secs);
            waves.push(w);
        }
    }
    let (ceiling_after, busy_after) = ceiling(&t, &fleet[0], ceiling_calls).await;
    // The better of the two: a wave's fraction is then never flattered by a slow measurement.
    let ceiling = ceiling_before.max(ceiling_after);
    let task_messages = tasks.messages();
    let batch_calls = tasks.batch_calls();
    let worked: u64 = waves.iter().map(|w| w.targets).sum();

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| targets (ASGs + node groups) x accounts | {} ({} + {node_groups}) x {accounts} |",
        fleet.len(),
        fleet.len() - node_groups
    );
    println!(
        "| emulator ceiling (UpdateAutoScalingGroup loop, {ceiling_calls} calls; before / after the waves) | {ceiling_before:.0} / {ceiling_after:.0} requests/s (moto busy {:.0}% / {:.0}% of the loop) |",
        100.0 * busy_before,
        100.0 * busy_after
    );
    for w in &waves {
        println!(
            "| {} wave, concurrency {} | {:.1} s ({:.1} targets/s), {:.1} requests per target, {:.0} requests/s = {:.0}% of the ceiling; moto busy {:.0}% of the wave |",
            w.action,
            w.concurrency,
            w.secs,
            w.targets as f64 / w.secs,
            w.requests_per_target(),
            w.requests_per_s(),
            100.0 * w.requests_per_s() / ceiling,
            100.0 * w.emulator_busy()
        );
    }
    println!(
        "| task messages / SendMessageBatch calls | {task_messages} / {batch_calls} ({:.1} per call) |",
        task_messages as f64 / batch_calls as f64
    );
    println!(
        "| tasks worked / spoke credential lookups / STS AssumeRole calls | {worked} / {} / {} ({:.0} lookups per STS call) |",
        spokes.credential_lookups(),
        spokes.assume_role_calls(),
        spokes.credential_lookups() as f64 / spokes.assume_role_calls().max(1) as f64
    );
    let total_secs = run.elapsed().as_secs_f64();
    println!("| whole run (emulator start, seeding, ceilings, waves) | {total_secs:.0} s |");

    let waves: Vec<serde_json::Value> = waves
        .iter()
        .map(|w| {
            json!({
                "action": w.action,
                "concurrency": w.concurrency,
                "wall_s": w.secs,
                "targets": w.targets,
                "requests": w.requests,
                "requests_per_target": w.requests_per_target(),
                "requests_per_s": w.requests_per_s(),
                "fraction_of_ceiling": w.requests_per_s() / ceiling,
                "emulator_cpu_s": w.emulator_cpu,
                "emulator_busy": w.emulator_busy(),
            })
        })
        .collect();
    let section = json!({
        "accounts": accounts,
        "targets": fleet.len(),
        "node_groups": node_groups,
        "seed_s": seed_secs,
        "ceiling": {
            "calls": ceiling_calls,
            "requests_per_s_before": ceiling_before,
            "requests_per_s_after": ceiling_after,
            "requests_per_s": ceiling,
            "emulator_busy_before": busy_before,
            "emulator_busy_after": busy_after,
        },
        "waves": waves,
        "task_messages": task_messages,
        "send_message_batch_calls": batch_calls,
        "tasks_worked": worked,
        "credential_lookups": spokes.credential_lookups(),
        "assume_role_calls": spokes.assume_role_calls(),
        "run_s": total_secs,
    });
    let path = results_path();
    record(&path, "emulator", section).expect("the results file is writable");
    eprintln!("recorded in {}", path.display());
}
