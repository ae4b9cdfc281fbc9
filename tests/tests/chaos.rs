//! The chaos suite's smoke run inside `make test`: seeds 1..=500 (about a second or two),
//! each a fresh scenario and fault stream, checked against the model once quiesced. `make
//! chaos SEEDS=N` runs more; a failing seed here names the command that replays it.

use curfew_tests::chaos::{replay_command, run_seed};

const SEEDS: u64 = 500;

#[test]
fn five_hundred_seeds_of_duplicates_crashes_and_overlapping_operations_break_no_invariant() {
    let mut failures = Vec::new();
    let mut faults = 0;
    for seed in 1..=SEEDS {
        let report = run_seed(seed);
        faults += report.faults;
        if !report.violations.is_empty() {
            failures.push(format!(
                "seed {seed} ({}):\n  {}",
                replay_command(seed),
                report.violations.join("\n  ")
            ));
        }
    }
    assert!(
        faults > SEEDS * 10,
        "the runs injected only {faults} faults: the fault layer is not reaching the ports"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
