//! The simulation's smoke run (the full one is `make bench`): a small fleet through the real
//! router and worker with AWS latencies on a paused clock, every target checked after both
//! waves, and the makespans never below what the concurrency cap allows.

use std::time::Duration;

use curfew_tests::scale::{run_with, FleetShape};
use curfew_tests::sim::{concurrency_bound, Latency};

#[tokio::test(start_paused = true)]
async fn a_simulated_fleet_sleeps_and_wakes_exactly_and_no_wave_beats_its_bound() {
    let shape = FleetShape {
        targets: 1_000,
        accounts: 10,
        regions: 2,
        concurrency: 10,
        asleep_every: 7,
    };
    let report = run_with(&shape, Some(Latency::default())).await;
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
