//! The simulation's smoke run (the full one is `make bench`): a small fleet through the real
//! router and worker with AWS latencies on a paused clock, every target checked after both
//! waves, and the makespans never below what the concurrency cap allows.

use std::time::Duration;

use curfew_tests::scale::{run_with, FleetShape};
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
    let sim = Simulation {
        latency: Latency::default(),
        spoke_limit: None,
    };
    let report = run_with(&shape, Some(sim)).await;
    let problems: Vec<String> = report.problems().map(ToString::to_string).collect();
    assert!(report.is_clean(), "{problems:#?}");
    for wave in [&report.stop, &report.start] {
        assert!(wave.worker_busy > Duration::ZERO, "{:?}", wave.action);
        let bound = concurrency_bound(wave.worker_busy, shape.concurrency);
        assert!(
            wave.work >= bound,
            "{:?}: makespan {:?} below the bound {bound:?}",
            wave.action,
            wave.work
        );
        // Every batch of 10 waits on at least one spoke call: virtual time did pass.
        assert!(wave.work >= Latency::default().spoke, "{:?}", wave.action);
    }
}

/// With a token bucket of 5 spoke calls a second per account and region, a shard's 150 or so
/// calls a wave cannot take less than about 28 s: the wave never beats that bound, and every
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
        latency: Latency::default(),
        spoke_limit: Some(RateLimit {
            rate: 5.0,
            burst: 10.0,
        }),
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
