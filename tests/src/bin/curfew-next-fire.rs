//! `make bench`, after `cargo bench -p curfew-core --bench next_fire`: records what criterion
//! measured in `target/curfew-bench.json`. `next_fire_ns` is the mix's mean time per evaluation
//! (the `next_fire_mix/all` benchmark's mean per iteration over the 70 evaluations in one
//! iteration); the `next_fire` section has every benchmark's, with criterion's interval.
//! Usage: `curfew-next-fire [CRITERION_DIR]` (default `target/criterion`).

use curfew_tests::bench::{record, results_path};
use curfew_tests::criterion_estimates::read_all;
use serde_json::json;

/// The benchmark whose mean is `next_fire_ns` (crates/core/benches/next_fire.rs).
const MIX: (&str, &str) = ("next_fire_mix", "all");

fn main() {
    let results = results_path();
    let criterion = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| results.with_file_name("criterion"));
    let all = read_all(&criterion).unwrap_or_else(|e| {
        eprintln!(
            "curfew-next-fire: {e} (run `cargo bench -p curfew-core --bench next_fire` first)"
        );
        std::process::exit(1)
    });
    let next_fire: Vec<_> = all
        .iter()
        .filter(|e| e.group.starts_with("next_fire"))
        .collect();
    let Some(mix) = next_fire
        .iter()
        .find(|e| (e.group.as_str(), e.function.as_str()) == MIX)
    else {
        eprintln!(
            "curfew-next-fire: no {}/{} benchmark in {}",
            MIX.0,
            MIX.1,
            criterion.display()
        );
        std::process::exit(1)
    };

    println!("| benchmark | ns per evaluation (criterion's interval) |");
    println!("|---|---|");
    let mut cases = serde_json::Map::new();
    for e in &next_fire {
        let (lower, upper) = e.per_element_interval_ns();
        println!(
            "| {}/{} | {:.0} ({lower:.0}-{upper:.0}) |",
            e.group,
            e.function,
            e.per_element_ns()
        );
        cases.insert(
            format!("{}/{}", e.group, e.function),
            json!({
                "ns_per_evaluation": e.per_element_ns(),
                "lower_ns": lower,
                "upper_ns": upper,
                "evaluations_per_iteration": e.elements,
                "ns_per_iteration": e.mean_ns,
            }),
        );
    }
    record(&results, "next_fire_ns", json!(mix.per_element_ns()))
        .and_then(|()| record(&results, "next_fire", serde_json::Value::Object(cases)))
        .expect("the results file is writable");
    eprintln!("recorded in {}", results.display());
}
