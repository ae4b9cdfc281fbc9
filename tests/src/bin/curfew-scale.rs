//! `make bench`, second part: a whole stop wave and start wave at fleet scale (default 100,000
//! targets in 200 accounts x 2 regions) through the real poller-free path — direct invocation,
//! two-level router fan-out, worker — over the in-memory ports (`curfew_core::fakes`).
//!
//! The emulator answers one request at a time, so it cannot show what curfew itself costs at
//! 100,000 targets; this does. Queues are worked the way the SQS event source mappings work them:
//! batches of 10 messages, at most `--concurrency` batches at once. After each wave it checks
//! every target: stopped sizes and a baseline equal to the seeded sizes after the stop, exactly
//! the seeded sizes and no baseline left after the start. Usage:
//! `curfew-scale [--targets N] [--accounts N] [--regions N] [--concurrency N]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use curfew_core::account::Account;
use curfew_core::clock::ManualClock;
use curfew_core::fakes::{self, MemoryQueue};
use curfew_core::operation::{Discovery, OpStatus};
use curfew_core::ports::Queue;
use curfew_core::selector::Selector;
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::service::{router_batch, worker_batch, BatchOutcome, Delivery, Hub};
use curfew_core::target::{Sizes, Target, TargetKind};
use curfew_tests::bench::{arg, CountingQueue, BATCH};
use futures::stream::{self, StreamExt};

/// Assorted sizes (min <= desired <= max, max >= 1), deterministic per target.
fn seeded_sizes(i: usize) -> Sizes {
    let min = (i % 3) as i32;
    let max = min + 1 + (i % 5) as i32;
    let desired = min + (i % (max - min + 1) as usize) as i32;
    Sizes::new(min, max, desired)
}

/// Account `a`, region `r`, target `i`: seven ASGs for every three node groups, node groups in
/// clusters of ten, every target tagged `fleet=scale`.
fn seeded_target(account: &str, region: &str, i: usize) -> Target {
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
    }
}

/// Works `queue` in batches of [`BATCH`], `concurrency` batches at once, until it is empty;
/// failed messages go back on the queue. Returns the rounds it took.
async fn work_queue<F, Fut>(queue: &MemoryQueue, concurrency: usize, handler: F) -> usize
where
    F: Fn(Vec<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = (Vec<(String, String)>, BatchOutcome)>,
{
    let mut rounds = 0;
    while !queue.is_empty() {
        rounds += 1;
        let bodies = queue.take_all();
        let batches: Vec<Vec<(String, String)>> = bodies
            .chunks(BATCH)
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
            assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
            retry.extend(
                messages
                    .into_iter()
                    .filter(|(id, _)| outcome.failed.contains(id))
                    .map(|(_, body)| body),
            );
        }
        if !retry.is_empty() {
            queue.send(&retry).await.expect("the memory queue takes it");
        }
        assert!(rounds < 20, "{} messages still failing", queue.len());
    }
    rounds
}

struct Wave {
    route_secs: f64,
    work_secs: f64,
    succeeded: u64,
}

async fn wave(
    hub: &Hub,
    router_q: &MemoryQueue,
    task_q: &MemoryQueue,
    concurrency: usize,
    stop: bool,
) -> Wave {
    let select = Selector::parse("tag:fleet=scale").expect("a valid selector");
    let discovery = Discovery::Cached;
    let invocation = if stop {
        Invocation::Stop {
            select,
            dry_run: false,
            discovery,
            hold: None,
        }
    } else {
        Invocation::Start {
            select,
            dry_run: false,
            discovery,
            hold: None,
        }
    };
    let started = Instant::now();
    let op_id = invoke(hub, invocation)
        .await
        .expect("the invocation is accepted")
        .operation_id;
    work_queue(router_q, concurrency, |m| async move {
        let outcome = router_batch(hub, &m).await;
        (m, outcome)
    })
    .await;
    let route_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    // Retried messages go back on the memory queue as new messages, so every delivery here is
    // a first receive: no task is given up for the dead-letter queue.
    work_queue(task_q, concurrency, |m| async move {
        let deliveries: Vec<Delivery> = m
            .iter()
            .map(|(id, body)| Delivery::first(id.clone(), body.clone()))
            .collect();
        let outcome = worker_batch(hub, &deliveries).await;
        (m, outcome)
    })
    .await;
    let work_secs = started.elapsed().as_secs_f64();
    let op = hub
        .store
        .get_operation(&op_id)
        .await
        .expect("the store answers")
        .expect("the operation exists");
    assert_eq!(op.status, OpStatus::Succeeded, "{op:?}");
    Wave {
        route_secs,
        work_secs,
        succeeded: op.counts.succeeded,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let targets = arg("--targets", 100_000);
    let accounts = arg("--accounts", 200);
    let regions = arg("--regions", 2);
    let concurrency = arg("--concurrency", 50);
    let region_names: Vec<String> = (0..regions).map(|r| format!("eu-test-{}", r + 1)).collect();

    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(),
    ));
    let (mut hub, store, router_q, task_q, spokes) = fakes::hub(clock);
    let counted = Arc::new(CountingQueue::new(task_q.clone()));
    hub.task_queue = counted.clone();

    let mut seeded = Vec::with_capacity(targets);
    let shards = accounts * regions;
    for a in 0..accounts {
        let account = format!("{:012}", 100_000_000_000u64 + a as u64);
        let role = format!("arn:aws:iam::{account}:role/curfew-spoke");
        let registered =
            Account::new(&account, &role, None, &region_names).expect("a valid account");
        hub.store
            .put_account(&registered)
            .await
            .expect("the store answers");
        for (r, region) in region_names.iter().enumerate() {
            let shard = a * regions + r;
            // Spread the targets evenly; the first shards take the remainder.
            let in_shard = targets / shards + usize::from(shard < targets % shards);
            for i in 0..in_shard {
                let target = seeded_target(&account, region, i);
                let sizes = seeded_sizes(seeded.len());
                spokes.add(target.clone(), sizes);
                seeded.push((target, sizes));
            }
        }
    }
    eprintln!(
        "{} targets in {accounts} accounts x {regions} regions; concurrency {concurrency}",
        seeded.len()
    );

    let stop = wave(&hub, &router_q, &task_q, concurrency, true).await;
    let baselines = store.baselines();
    for (target, sizes) in &seeded {
        let key = target.key();
        assert_eq!(
            spokes.sizes(&key),
            Some(target.kind.stopped_sizes(*sizes)),
            "{key} is not stopped"
        );
        let baseline = baselines
            .get(&key)
            .unwrap_or_else(|| panic!("{key} has no baseline"));
        assert_eq!(baseline.sizes, *sizes, "{key}'s baseline");
    }
    let stop_messages = counted.messages();

    let start = wave(&hub, &router_q, &task_q, concurrency, false).await;
    for (target, sizes) in &seeded {
        let key = target.key();
        assert_eq!(spokes.sizes(&key), Some(*sizes), "{key} is not restored");
    }
    assert!(
        store.baselines().is_empty(),
        "baselines left after the start"
    );

    let messages = counted.messages();
    let batch_calls = counted.batch_calls();
    let n = seeded.len() as f64;
    println!("| measure (in-memory ports, one run) | value |");
    println!("|---|---|");
    println!(
        "| targets x accounts x regions | {} x {accounts} x {regions} ({} per shard) |",
        seeded.len(),
        seeded.len().div_ceil(shards)
    );
    for (name, w) in [("stop", &stop), ("start", &start)] {
        println!(
            "| {name} wave: routing (fan-out + {shards} shards) / working | {:.2} s / {:.2} s ({:.0} targets/s, {:.1} µs per target) |",
            w.route_secs,
            w.work_secs,
            w.succeeded as f64 / (w.route_secs + w.work_secs),
            (w.route_secs + w.work_secs) * 1e6 / n
        );
    }
    println!(
        "| targets checked after each wave | {} stopped with their baseline, {} restored exactly |",
        stop.succeeded, start.succeeded
    );
    println!(
        "| task messages / SendMessageBatch calls | {messages} / {batch_calls} ({:.1} per call; stop wave {stop_messages}) |",
        messages as f64 / batch_calls as f64
    );
    println!(
        "| spoke API calls (describe, update, ASG processes, EKS update status; discovery) | {} ({:.2} per target per wave) |",
        spokes.calls(),
        spokes.calls() as f64 / (2.0 * n)
    );
}
