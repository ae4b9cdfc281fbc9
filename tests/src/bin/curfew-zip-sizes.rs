//! `make sizes`, after `make build BUILD_ARGS="--output-format zip"`: the size of each Lambda's
//! deployment package (`target/lambda/curfew-*/bootstrap.zip`, the arm64 bootstrap cargo lambda
//! zipped), printed and recorded as the `lambda_zip_bytes` section of `target/curfew-bench.json`.
//! Usage: `curfew-zip-sizes [LAMBDA_DIR]` (default `target/lambda`).

use curfew_tests::bench::{record, results_path};
use serde_json::json;

/// The three Lambda packages (`LAMBDA_PACKAGES` in the Makefile); cargo lambda names each
/// package's directory after its binary.
const FUNCTIONS: [&str; 3] = ["curfew-poller", "curfew-router", "curfew-worker"];

fn main() {
    let results = results_path();
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| results.with_file_name("lambda"));
    let mut sizes = serde_json::Map::new();
    println!("| Lambda | bootstrap.zip (arm64) |");
    println!("|---|---|");
    for name in FUNCTIONS {
        let zip = dir.join(name).join("bootstrap.zip");
        let bytes = std::fs::metadata(&zip)
            .map(|m| m.len())
            .unwrap_or_else(|e| {
                eprintln!(
                "curfew-zip-sizes: {}: {e} (make build BUILD_ARGS=\"--output-format zip\" first)",
                zip.display()
            );
                std::process::exit(1)
            });
        println!(
            "| {name} | {bytes} bytes ({:.2} MiB) |",
            bytes as f64 / (1024.0 * 1024.0)
        );
        sizes.insert(name.to_string(), json!(bytes));
    }
    record(
        &results,
        "lambda_zip_bytes",
        serde_json::Value::Object(sizes),
    )
    .expect("the results file is writable");
    eprintln!("recorded in {}", results.display());
}
