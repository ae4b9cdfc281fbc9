//! `make bench`, poller part (issue 9): one poller tick with `--defined` schedules of which
//! `--due` are due, and the items it reads per due schedule (goal: at most 1.5): over the
//! in-memory store (default 100,000 defined, 1,000 due), the items its port calls returned and
//! the DynamoDB items the adapter reads for those calls; on the moto emulator (default 2,000
//! defined, 20 due; `--emulator-defined 0` skips it), the items the real adapter's requests
//! read, observed on its DynamoDB client. Records the `poller` section and the top-level
//! `poller_items_read_per_due_schedule` (DynamoDB items, in-memory run) in
//! `target/curfew-bench.json`. Usage: `curfew-poll-bench [--defined N] [--due N]
//! [--emulator-defined N] [--emulator-due N]`.

use curfew_tests::bench::{arg, record, results_path};
use curfew_tests::poll::{in_memory, on_emulator, PollShape};

/// The goal for DynamoDB items read per due schedule.
const GOAL: f64 = 1.5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let memory_shape = PollShape {
        defined: arg("--defined", 100_000),
        due: arg("--due", 1_000),
    };
    let emulator_shape = PollShape {
        defined: arg("--emulator-defined", 2_000),
        due: arg("--emulator-due", 20),
    };
    let memory = match in_memory(&memory_shape).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("curfew-poll-bench: the in-memory tick failed: {e}");
            std::process::exit(1);
        }
    };
    let d = &memory.dynamo;
    println!(
        "in memory, {} defined / {} due: {} fired; port items returned {} ({:.2} per due schedule); \
         DynamoDB (adapter's requests for those calls) {} items read ({:.2} per due schedule, goal <= {GOAL}), \
         {:.1} RRU, requests {:?}",
        memory_shape.defined,
        memory_shape.due,
        memory.fired,
        memory.items_returned,
        memory.items_returned_per_due(),
        d.items_read,
        memory.items_read_per_due(),
        d.read_units(),
        d.nonzero(),
    );
    let emulator = if emulator_shape.defined > 0 {
        match on_emulator(&emulator_shape).await {
            Ok(e) => {
                let o = &e.observed;
                println!(
                    "emulator, {} defined / {} due: {} fired; {} Query ({} returned, {} scanned), \
                     {} GetItem ({} found), {} other requests; {} items read ({:.2} per due \
                     schedule); seeding took {:.1} s",
                    emulator_shape.defined,
                    emulator_shape.due,
                    e.fired,
                    o.queries,
                    o.query_count,
                    o.query_scanned,
                    o.gets,
                    o.gets_found,
                    o.others,
                    o.items_read(),
                    e.items_read_per_due(),
                    e.seed_s,
                );
                Some(e)
            }
            Err(e) => {
                eprintln!("curfew-poll-bench: the emulator tick failed: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let section = serde_json::json!({
        "in_memory": {
            "defined": memory_shape.defined,
            "due": memory_shape.due,
            "fired": memory.fired,
            "port_items_returned_per_due": memory.items_returned_per_due(),
            "dynamodb_items_read_per_due": memory.items_read_per_due(),
            "dynamodb_read_units_per_due": d.read_units() / memory_shape.due.max(1) as f64,
            "dynamodb_requests": d.total_requests(),
        },
        "emulator": emulator.as_ref().map(|e| serde_json::json!({
            "defined": emulator_shape.defined,
            "due": emulator_shape.due,
            "fired": e.fired,
            "queries": e.observed.queries,
            "query_count": e.observed.query_count,
            "query_scanned_count": e.observed.query_scanned,
            "get_items": e.observed.gets,
            "get_items_found": e.observed.gets_found,
            "other_requests": e.observed.others,
            "dynamodb_items_read_per_due": e.items_read_per_due(),
        })),
        "goal_per_due": GOAL,
    });
    let path = results_path();
    let recorded = record(&path, "poller", section).and_then(|()| {
        record(
            &path,
            "poller_items_read_per_due_schedule",
            serde_json::json!(memory.items_read_per_due()),
        )
    });
    match recorded {
        Ok(()) => println!("recorded in {}", path.display()),
        Err(e) => eprintln!(
            "curfew-poll-bench: could not record {}: {e}",
            path.display()
        ),
    }
}
