//! `curfew`: the operator's command line (DESIGN.md "The operator's command line").
//!
//! Wiring only: parse, set up diagnostics, run the command on a tokio runtime, and turn any
//! failure into one line on stderr with exit code 2 (bad input) or 1 (run time). A reader that
//! closes stdout early (`curfew ops | head -1`) ends the command quietly.

mod changes;
mod cli;
mod commands;
mod connect;
mod error;
mod local;
mod output;
mod progress;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
                ErrorKind::MissingSubcommand => {
                    eprintln!("{}", missing_subcommand_line(&e));
                    ExitCode::from(2)
                }
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
        Err(e) if output::stdout_closed(&e) => ExitCode::SUCCESS,
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

/// `curfew account` without a subcommand: the subcommands on one line, not the whole help
/// (every failure is one line on stderr).
fn missing_subcommand_line(e: &clap::Error) -> String {
    let command = match e.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(name)) => name.as_str(),
        _ => "curfew",
    };
    let choices = match e.get(ContextKind::ValidSubcommand) {
        Some(ContextValue::Strings(names)) => names
            .iter()
            .filter(|name| *name != "help")
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    format!("error: `{command}` needs a subcommand: {choices} (see `{command} --help`)")
}

/// Logs from the shared services go to stderr as the Lambdas write them (JSON lines with the
/// task's operation, account, region and target; never the SDK's wire detail, see
/// `curfew_aws::lambda::json_logs`), filtered by `CURFEW_LOG` (default `error`), so tables and
/// JSON on stdout stay clean.
fn init_diagnostics() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CURFEW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let logs = curfew_aws::lambda::json_logs(filter, std::io::stderr);
    // A second subscriber can only be refused (tests that run main twice); logging stays on.
    let _ = tracing::subscriber::set_global_default(logs);
}
