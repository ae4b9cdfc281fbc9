//! `curfew`: the operator's command line (DESIGN.md "The operator's command line").
//!
//! Wiring only: parse, set up diagnostics, run the command on a tokio runtime, and turn any
//! failure into one line on stderr with exit code 2 (bad input) or 1 (run time).

mod cli;
mod commands;
mod connect;
mod error;
mod local;
mod output;
mod progress;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
                _ => {
                    eprintln!("{}", error::clap_line(&e));
                    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
                }
            };
        }
    };
    init_diagnostics();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoint = cli.global.endpoint().map(str::to_string);
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut line = error::one_line(&e);
            if let (Some(endpoint), true) = (endpoint, line.contains("could not reach the service"))
            {
                line.push_str(&format!(
                    "; is the emulator at {endpoint} running? (eval \"$(curfew local up)\")"
                ));
            }
            eprintln!("error: {line}");
            ExitCode::from(error::exit_code(&e))
        }
    }
}

/// Logs from the shared services go to stderr, filtered by `CURFEW_LOG` (default `error`),
/// so tables and JSON on stdout stay clean.
fn init_diagnostics() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CURFEW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
