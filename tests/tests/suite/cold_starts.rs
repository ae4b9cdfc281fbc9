//! A smoke run of `make bench`'s cold starts (`curfew-coldstart`): each Lambda's debug binary
//! (built by `cargo test`, for the Lambda package's own tests in `lambdas/*/tests`) takes its event from a Lambda Runtime API on loopback and does
//! its work against the emulator. The events are the bench's own, so a change to what a
//! handler takes fails here, not first in a bench run (the router's event did, unseen, when
//! plans moved to the worker).

use std::path::PathBuf;

use curfew_tests::cold_starts::{run_each, POLLER, ROUTER, WORKER};

/// The folder of this build's binaries: `target/debug`, above the test's own `deps`.
fn debug_binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let deps = exe.parent().expect("the test binary is in a folder");
    deps.parent().unwrap_or(deps).to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lambda_binary_does_its_work_on_its_first_event_from_a_cold_start() {
    let binaries = debug_binaries();
    for f in [&WORKER, &ROUTER, &POLLER] {
        assert!(
            binaries.join(f.name).is_file(),
            "no {} in {} (cargo test --workspace --no-run builds it, or cargo build -p {})",
            f.name,
            binaries.display(),
            f.name
        );
    }
    let cold = run_each(&binaries, 1).await;
    for (name, runs) in [
        ("worker", &cold.worker),
        ("router", &cold.router),
        ("poller", &cold.poller),
    ] {
        assert_eq!(runs.len(), 1, "the {name} ran once");
        assert!(
            runs[0].cold.peak_rss_kib > 0 && runs[0].requests > 0,
            "the {name} was measured and called the emulator"
        );
    }
}
