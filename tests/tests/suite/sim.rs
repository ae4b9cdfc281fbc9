//! The simulation's smoke run (the full one is `make bench`): a small fleet through the real
//! router and worker with AWS latencies on a paused clock, every target checked after both
//! waves, and the makespans never below what the concurrency cap allows.

use std::time::Duration;

use curfew_core::decision::Action;
use curfew_tests::cost::CycleUse;
use curfew_tests::scale::{run_with, Fleet, FleetShape, ScaleReport};
use curfew_tests::sim::{concurrency_bound, Latency, RateLimit, Simulation};

#[tokio::test(start_paused = true)]
async fn a_simulated_fleet_sleeps_and_wakes_exactly_and_no_wave_beats_its_bound() {
    let shape = FleetShape {
        targets: 1_000,
        accounts: 10,
        regions: 2,
        concurrency: 10,
        asleep_every: 7,
        big_account: 0,
    };
    let sim = Simulation::default();
    let report = run_with(&shape, Some(sim)).await;
    let problems: Vec<String> = report.problems().map(ToString::to_string).collect();
    assert!(report.is_clean(), "{problems:#?}");
    for wave in [&report.stop, &report.start] {
        assert!(wave.worker_busy() > Duration::ZERO, "{:?}", wave.action);
        let bound = concurrency_bound(wave.worker_busy(), shape.concurrency);
        assert!(
            wave.work >= bound,
            "{:?}: makespan {:?} below the bound {bound:?}",
            wave.action,
            wave.work
        );
        // Every batch of 10 waits on at least one spoke call: virtual time did pass.
        assert!(wave.work >= Latency::default().spoke, "{:?}", wave.action);
        let worked = &wave.sourced.as_ref().expect("simulated").1;
        assert_eq!(
            worked.over_timeout, 0,
            "{:?}: {:?}",
            wave.action, worked.longest
        );
    }
}

/// With a token bucket of 5 spoke calls a second per account and region, a shard's 150 or so
/// calls a wave (the stop's live listing adds 26 more) cannot take less than about 28 s: the wave never beats that bound, and every
/// target still checks out (calls wait for their tokens, none fails).
#[tokio::test(start_paused = true)]
async fn a_rate_limited_wave_is_held_to_its_rate_bound_and_still_exact() {
    let shape = FleetShape {
        targets: 200,
        accounts: 2,
        regions: 2,
        concurrency: 10,
        asleep_every: 0,
        big_account: 0,
    };
    let sim = Simulation {
        spoke_limit: Some(RateLimit {
            rate: 5.0,
            burst: 10.0,
        }),
        ..Simulation::default()
    };
    let report = run_with(&shape, Some(sim)).await;
    let problems: Vec<String> = report.problems().map(ToString::to_string).collect();
    assert!(report.is_clean(), "{problems:#?}");
    for wave in [&report.stop, &report.start] {
        // About 150 calls per account-region a wave: (150 - 10) / 5 is some 28 s.
        assert!(
            wave.rate_bound > Duration::from_secs(20),
            "{:?}: rate bound {:?}",
            wave.action,
            wave.rate_bound
        );
        assert!(
            wave.route + wave.work >= wave.rate_bound,
            "{:?}: makespan {:?} below the rate bound {:?}",
            wave.action,
            wave.route + wave.work,
            wave.rate_bound
        );
    }
}

/// Both waves over 100 targets in 10 accounts and 500 more in one account-region, whose spoke
/// refuses calls over `rate` a second (burst `rate`), checked clean. Bounded by a virtual hour
/// (the rate bound is some 3 to 6 minutes a wave): a listing that never gets through fails
/// here rather than running on.
async fn large_account_refused_over(rate: f64) -> (ScaleReport, RateLimit) {
    let shape = FleetShape {
        targets: 100,
        accounts: 10,
        regions: 1,
        concurrency: 10,
        asleep_every: 0,
        big_account: 500,
    };
    let refusals = RateLimit { rate, burst: rate };
    let sim = Simulation {
        spoke_refusals: Some(refusals),
        ..Simulation::default()
    };
    let report = tokio::time::timeout(Duration::from_secs(3_600), run_with(&shape, Some(sim)))
        .await
        .expect("both waves end within a virtual hour");
    let problems: Vec<String> = report.problems().map(ToString::to_string).collect();
    assert!(report.is_clean(), "{problems:#?}");
    (report, refusals)
}

/// A large account whose spoke refuses what comes over 10 calls a second (a token bucket, as
/// AWS APIs refuse), worked by ten environments at once: each environment's pace of the account
/// falls once the refusals persist, so the waves end within half again what the rate allows,
/// exact, with under three refused attempts for every call let through. Retrying blindly, each
/// environment on its own (the pace taken out), the stop took 508.7 s against a rate bound of
/// 273.1 s, with 20,819 attempts refused for 2,741 calls let through. Paced, with the SDK's
/// retry jitter seeded (the run repeats exactly), the stop takes 197.4 s against a bound of
/// 178.6 s with 3,251 refused attempts, the start 157.1 s against 152.1 s (with a chunk's task
/// ends written together; 194.9 s / 178.5 s and 154.0 s / 152.2 s when each task wrote its own).
#[tokio::test(start_paused = true)]
async fn a_large_account_the_spoke_refuses_over_its_rate_is_paced_to_that_rate() {
    let (report, refusals) = large_account_refused_over(10.0).await;
    for wave in [&report.stop, &report.start] {
        let let_through = wave.rate_bound.as_secs_f64() * refusals.rate + refusals.burst;
        let refused = wave.spoke_traffic.throttled as f64;
        let makespan = wave.route + wave.work;
        assert!(wave.spoke_traffic.paced > 0, "{:?}", wave.action);
        assert!(
            refused < 3.0 * let_through,
            "{:?}: {refused} refused attempts, {let_through} calls let through",
            wave.action
        );
        assert!(
            makespan.as_secs_f64() < wave.rate_bound.as_secs_f64() * 1.5,
            "{:?}: makespan {makespan:?} against the rate bound {:?}",
            wave.action,
            wave.rate_bound
        );
    }
}

/// A spoke that lets through only 5 calls a second per account-region: the large account's
/// listing waits its turns of the pace its target calls follow, so its plan lists it whole. Its
/// requests went out unpaced before (a limit in flight, not a rate) and one of them was refused
/// past its retries on every attempt at 7 calls a second and under: the run never ended, so
/// this one is bounded in virtual time.
#[tokio::test(start_paused = true)]
async fn a_large_account_the_spoke_refuses_over_5_calls_a_second_is_listed_at_that_pace() {
    let (report, _) = large_account_refused_over(5.0).await;
    for wave in [&report.stop, &report.start] {
        let makespan = wave.route + wave.work;
        assert!(
            makespan.as_secs_f64() < wave.rate_bound.as_secs_f64() * 1.5,
            "{:?}: makespan {makespan:?} against the rate bound {:?}",
            wave.action,
            wave.rate_bound
        );
    }
}

/// One execution environment (concurrency 1) keeps one STS session per account: the start wave
/// (inventory cached, so the router calls no spoke) assumes each account's role exactly once,
/// the stop wave at most once more per account for the router's discovery. With four
/// environments it is still once per account, because an account's 20 targets travel as one
/// task message; cut into messages of 5 targets, the environments that meet an account each
/// assume its role, once each.
#[tokio::test(start_paused = true)]
async fn a_wave_assumes_each_accounts_role_once_however_many_environments_work_it() {
    let shape = FleetShape {
        targets: 120,
        accounts: 6,
        regions: 2,
        concurrency: 1,
        asleep_every: 0,
        big_account: 0,
    };
    let report = run_with(&shape, Some(Simulation::default())).await;
    assert!(report.is_clean(), "{:?}", report.problems().next());
    assert_eq!(report.start.spoke_traffic.sts_calls, 6);
    assert_eq!(report.start.spoke_traffic.sts_accounts, 6);
    assert!(
        (6..=12).contains(&report.stop.spoke_traffic.sts_calls),
        "{:?}",
        report.stop.spoke_traffic
    );

    let wide = FleetShape {
        concurrency: 4,
        ..shape
    };
    let report = run_with(&wide, Some(Simulation::default())).await;
    assert!(report.is_clean(), "{:?}", report.problems().next());
    assert_eq!(
        report.start.task_sends.messages, 6,
        "one message per account"
    );
    assert_eq!(report.start.spoke_traffic.sts_calls, 6);
    assert_eq!(
        report.stop.spoke_traffic.worker_sts_calls, 6,
        "the router's live listing adds the rest: {:?}",
        report.stop.spoke_traffic
    );

    let small_chunks = Simulation {
        chunk_targets: Some(5),
        ..Simulation::default()
    };
    let report = run_with(&wide, Some(small_chunks)).await;
    assert!(report.is_clean(), "{:?}", report.problems().next());
    assert_eq!(report.start.task_sends.messages, 24);
    let calls = report.start.spoke_traffic.sts_calls;
    assert!(
        (7..=4 * 6).contains(&calls),
        "four environments assume between once and four times per account: {calls}"
    );
}

/// A fifth of spoke call attempts throttled: the adapter's retries (the SDK's attempts inside
/// curfew's backoff) carry every target through, and the wave takes longer than without.
#[tokio::test(start_paused = true)]
async fn throttled_spoke_calls_are_retried_and_every_target_still_checks_out() {
    let shape = FleetShape {
        targets: 300,
        accounts: 5,
        regions: 2,
        concurrency: 10,
        asleep_every: 0,
        big_account: 0,
    };
    let calm = run_with(&shape, Some(Simulation::default())).await;
    let stormy = run_with(
        &shape,
        Some(Simulation {
            throttled: 0.2,
            ..Simulation::default()
        }),
    )
    .await;
    let problems: Vec<String> = stormy.problems().map(ToString::to_string).collect();
    assert!(stormy.is_clean(), "{problems:#?}");
    assert_eq!(calm.stop.spoke_traffic.throttled, 0);
    for (calm, stormy) in [(&calm.stop, &stormy.stop), (&calm.start, &stormy.start)] {
        assert!(
            stormy.spoke_traffic.throttled > 50,
            "{:?}",
            stormy.spoke_traffic
        );
        assert!(
            stormy.worker_busy() > calm.worker_busy(),
            "{:?}: retries take time ({:?} vs {:?})",
            stormy.action,
            stormy.worker_busy(),
            calm.worker_busy()
        );
    }
}

/// One large account under a spoke rate limit among small ones: the small accounts finish long
/// before the large one. Messages of 10 targets, so the large account is 100 messages to the
/// small ones' 20 and could fill the 40 pollers, were the task queue not a fair queue (the
/// messages' account is their tenant, noisy from 30 messages in flight).
///
/// Before task chunks, the same shape received as a standard queue (`--unfair`) held the small
/// accounts back until the large one was done. With chunks it no longer does here: the router
/// plans the small accounts' one message each before the large account's hundred, so they are
/// received first; which arrives first is not something to rely on, so only the fair queue is
/// held to it.
#[tokio::test(start_paused = true)]
async fn a_large_rate_limited_account_does_not_starve_the_small_ones() {
    let shape = FleetShape {
        targets: 200,
        accounts: 20,
        regions: 1,
        concurrency: 40,
        asleep_every: 0,
        big_account: 1000,
    };
    let limited = Simulation {
        spoke_limit: Some(RateLimit {
            rate: 5.0,
            burst: 10.0,
        }),
        chunk_targets: Some(10),
        ..Simulation::default()
    };
    let fair = run_with(&shape, Some(limited)).await;
    assert!(fair.is_clean(), "{:?}", fair.problems().next());
    let (big, small) = fair.stop.done.expect("simulated");
    assert!(
        small * 3 < big,
        "small accounts done at {small:?}, the large one at {big:?}"
    );
}

/// An enforce pass over a fleet its stop left asleep, started by a poller tick as in the hub:
/// the worker planning each account reads each target once and plans nothing, so the pass writes nothing per target
/// (only its operation and each account and region's shard), and every target stays as the
/// stop left it.
#[tokio::test(start_paused = true)]
async fn an_enforce_pass_over_a_sleeping_fleet_plans_nothing_and_writes_nothing_per_target() {
    let shape = FleetShape {
        targets: 300,
        accounts: 6,
        regions: 2,
        concurrency: 10,
        asleep_every: 0,
        big_account: 0,
    };
    let fleet = Fleet::seed_with(&shape, Some(Simulation::default()))
        .await
        .unwrap();
    let stop = fleet.wave(Action::Stop).await;
    assert!(stop.problems.is_empty(), "{:#?}", stop.problems);
    let pass = fleet.enforce_pass(stop.op_id.as_deref().unwrap()).await;
    assert!(pass.problems.is_empty(), "{:#?}", pass.problems);
    assert_eq!((pass.tasks, pass.checked), (0, fleet.seeded.len()));
    // One Describe per target by the worker that plans its account, and no other invocation.
    assert_eq!(pass.spoke_calls, fleet.seeded.len());
    assert_eq!(pass.sourced.as_ref().unwrap().1.invocations, shape.accounts);
    let shards = (shape.accounts * shape.regions) as u64;
    let writes = pass.store.dynamo.write_units;
    // Per shard, and under half a unit per target where any write per target costs one.
    let targets = fleet.seeded.len() as u64;
    assert!(
        writes < 10 * shards && 2 * writes < targets,
        "{writes} write units for {targets} targets in {shards} shards"
    );
}

/// A fleet's second stop + start cycle writes less than its first, and not by much: the
/// inventory cache, written once, is a few buckets of many targets (it was an item a target,
/// a write unit each), and every target checks out after all four waves.
#[tokio::test(start_paused = true)]
async fn a_later_cycle_writes_less_than_the_first_and_leaves_every_target_as_it_should() {
    let shape = FleetShape {
        targets: 200,
        accounts: 4,
        regions: 2,
        concurrency: 10,
        ..FleetShape::default()
    };
    let fleet = Fleet::seed_with(&shape, Some(Simulation::default()))
        .await
        .unwrap();
    let targets = fleet.seeded.len();
    let mut writes = Vec::new();
    for _ in 0..2 {
        let stop = fleet.wave(Action::Stop).await;
        let start = fleet.wave(Action::Start).await;
        assert!(stop.problems.is_empty(), "{:#?}", stop.problems);
        assert!(start.problems.is_empty(), "{:#?}", start.problems);
        assert_eq!((stop.checked, start.checked), (targets, targets));
        let used = CycleUse::from_waves(targets, &stop, &start).expect("simulated waves");
        writes.push(used.write_units);
    }
    // The buckets, at least a unit in each of the 8 shards, and far under a unit a target.
    let once = writes[0].saturating_sub(writes[1]);
    assert!(
        (8..targets as u64 / 4).contains(&once),
        "write units per cycle: {writes:?} for {targets} targets"
    );
}
