//! One module per command; [`run`] sends the parsed command line to it.

mod account;
mod audit;
mod calendar;
mod dlq;
mod health;
mod next;
mod ops;
mod overrides;
mod plan;
mod run;
mod schedule;
pub(crate) mod ui;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::cli::{Cli, Command, LocalCommand};
use crate::error::bad_input;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let opts = &cli.global;
    match cli.command {
        Command::Next(args) => next::run(&args, opts).await,
        Command::Calendar(command) => calendar::run(command, opts).await,
        Command::Account(command) => account::run(command, opts).await,
        Command::Schedule(command) => schedule::run(command, opts).await,
        Command::Plan(args) => plan::run(args, opts).await,
        Command::Stop(args) => {
            run::stop_or_start(curfew_core::decision::Action::Stop, args, opts).await
        }
        Command::Start(args) => run::start(args, opts).await,
        Command::Trigger(args) => run::trigger(args, opts).await,
        Command::Ops(args) => ops::run(args, opts).await,
        Command::Override(args) => overrides::run(args, opts).await,
        Command::Audit(args) => audit::run(args, opts).await,
        Command::Dlq(command) => dlq::run(command, opts).await,
        Command::Health(args) => health::run(args, opts).await,
        Command::Ui(args) => ui::run(args, opts).await,
        Command::Local(LocalCommand::Up {
            empty,
            no_poller,
            local_dir,
        }) => crate::local::up(empty, !no_poller, local_dir).await,
        Command::Local(LocalCommand::Down { local_dir }) => crate::local::down(local_dir),
        Command::Local(LocalCommand::Run { once }) => crate::local::poll::run(opts, once).await,
        Command::Local(LocalCommand::Demo) => crate::local::demo::run(opts).await,
    }
}

/// Parses an RFC 3339 instant given to `flag`.
pub(crate) fn parse_instant(value: &str, flag: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            bad_input(format!(
                "{flag}: {value:?} is not an RFC 3339 time such as 2027-03-27T12:00:00Z ({e})"
            ))
        })
}
