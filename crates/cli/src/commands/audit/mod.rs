//! `curfew audit [list | verify | export FILE]`: the audit trail's hash chains (see
//! `curfew_core::trail`) and the operations' records. The checks are pure functions in
//! `curfew_core::trail` and `curfew_core::audit`; these modules read the table (index queries,
//! never a Scan), or an export, and print.

mod export;
mod list;
mod verify;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use curfew_core::ports::StateStore;
use curfew_core::schedule::parse_duration;
use curfew_core::trail::{AuditRecord, ChainHead};

use crate::cli::{AuditArgs, AuditCommand, GlobalOpts};
use crate::error::bad_input;

/// Runs an audit command.
pub async fn run(args: AuditArgs, opts: &GlobalOpts) -> Result<()> {
    match args.command.unwrap_or(AuditCommand::List {
        since: None,
        until: None,
        target: None,
        operation: None,
        actor: None,
        limit: 50,
    }) {
        AuditCommand::List {
            since,
            until,
            target,
            operation,
            actor,
            limit,
        } => {
            let filter = list::Filter {
                since: since.as_deref().map(|t| time("--since", t)).transpose()?,
                until: until.as_deref().map(|t| time("--until", t)).transpose()?,
                target,
                operation,
                actor,
                limit: usize::from(limit),
            };
            list::list(filter, opts).await
        }
        AuditCommand::Verify { file: Some(file) } => verify::verify_file(&file, opts),
        AuditCommand::Verify { file: None } => verify::verify(opts).await,
        AuditCommand::Export { file } => export::export(&file, opts).await,
    }
}

/// A time flag: RFC 3339, or a duration ago (`90m`, `24h`, `7d`).
fn time(flag: &str, value: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    match parse_duration(value) {
        Some(ago) => Ok(Utc::now() - ago),
        None => Err(bad_input(format!(
            "{flag}: {value:?} is neither an RFC 3339 time (2027-01-04T18:00:00Z) nor a duration \
             ago (90m, 24h, 7d)"
        ))),
    }
}

/// One line of an export: a record, or (after every record) a chain's head.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ExportLine {
    /// A record, as stored.
    Record(AuditRecord),
    /// A chain's head, as stored.
    Head(ChainHead),
}

/// Every chain with its stored records, in chain order.
async fn chains(store: &dyn StateStore) -> Result<Vec<(ChainHead, Vec<AuditRecord>)>> {
    curfew_core::audit_verify::chains(store)
        .await
        .context("reading the audit trail's chains")
}
