//! `make chaos`: runs the chaos suite over many seeds and ends with one line
//! `chaos: N seeds, V violations, F faults injected` (exit 1 when V > 0). Each failing seed
//! prints its violations and the command that replays it.
//!
//! Usage: `curfew-chaos [--seeds N] [--first S] [--seed S] [--mix fleet|holds]`
//! (`holds`: mostly node groups in held clusters, more operations overlapping);
//! `CURFEW_CHAOS_TRACE=1` also prints the handlers' log lines.

use std::time::Instant;

use curfew_tests::chaos::{replay_command, run_seed_in, Mix};

fn main() {
    let mut seeds: u64 = 1000;
    let mut first: u64 = 1;
    let mut mix = Mix::Fleet;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> u64 {
            let value = args.next().unwrap_or_default();
            value.parse().unwrap_or_else(|_| {
                eprintln!("curfew-chaos: {flag} needs a whole number, got {value:?}");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--seeds" => seeds = number("--seeds"),
            "--first" => first = number("--first"),
            "--seed" => {
                first = number("--seed");
                seeds = 1;
            }
            "--mix" => {
                let value = args.next().unwrap_or_default();
                mix = Mix::parse(&value).unwrap_or_else(|| {
                    eprintln!("curfew-chaos: --mix is fleet or holds, got {value:?}");
                    std::process::exit(2)
                });
            }
            other => {
                eprintln!(
                    "curfew-chaos: unknown argument {other:?} (use --seeds N, --first S, --seed S \
                     or --mix fleet|holds)"
                );
                std::process::exit(2)
            }
        }
    }
    // CURFEW_CHAOS_TRACE=1 prints the handlers' own log lines (worth it for one replayed seed).
    if std::env::var_os("CURFEW_CHAOS_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .without_time()
            .with_target(false)
            .init();
    }
    let started = Instant::now();
    let (mut violations, mut faults, mut invocations) = (0usize, 0u64, 0u64);
    for seed in first..first + seeds {
        let report = run_seed_in(seed, mix);
        faults += report.faults;
        invocations += report.invocations;
        if !report.violations.is_empty() {
            violations += report.violations.len();
            eprintln!("seed {seed}: {} violation(s)", report.violations.len());
            for v in &report.violations {
                eprintln!("  {v}");
            }
            eprintln!("  replay: {}", replay_command(seed, mix));
        }
    }
    println!(
        "seeds {first}..={}: {invocations} handler invocations in {:.1} s",
        first + seeds - 1,
        started.elapsed().as_secs_f64()
    );
    println!("chaos: {seeds} seeds, {violations} violations, {faults} faults injected");
    if violations > 0 {
        std::process::exit(1);
    }
}
