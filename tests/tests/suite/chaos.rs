//! The chaos suite's smoke run inside `make test`: seeds 1..=500 of the suite's mix and
//! 1..=200 of the held-clusters mix (a few seconds), each a fresh scenario and fault stream,
//! checked against the model once quiesced. `make chaos SEEDS=N [MIX=holds]` runs more; a
//! failing seed here names the command that replays it.

use curfew_tests::chaos::{replay_command, run_seed_in, Mix};

/// Runs seeds `1..=seeds` of `mix`; fails naming each seed that broke an invariant.
fn run_seeds(seeds: u64, mix: Mix) {
    let mut failures = Vec::new();
    let mut faults = 0;
    for seed in 1..=seeds {
        let report = run_seed_in(seed, mix);
        faults += report.faults;
        if !report.violations.is_empty() {
            failures.push(format!(
                "seed {seed} ({}):\n  {}",
                replay_command(seed, mix),
                report.violations.join("\n  ")
            ));
        }
    }
    assert!(
        faults > seeds * 10,
        "the runs injected only {faults} faults: the fault layer is not reaching the ports"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn five_hundred_seeds_of_duplicates_crashes_and_overlapping_operations_break_no_invariant() {
    run_seeds(500, Mix::Fleet);
}

#[test]
fn two_hundred_seeds_of_held_clusters_joined_and_restored_at_once_break_no_invariant() {
    run_seeds(200, Mix::Holds);
}
