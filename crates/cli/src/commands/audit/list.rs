//! `curfew audit list`: the trail's records, newest first, filtered.

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use curfew_core::trail::{self, AuditEntry, AuditRecord};
use serde::Serialize;

use crate::cli::{GlobalOpts, Output};
use crate::connect;
use crate::output::{self, outln};

/// The window `list` reads when no `--since` is given.
const DEFAULT_WINDOW_DAYS: i64 = 7;

/// What to list.
pub struct Filter {
    /// From this time on.
    pub since: Option<DateTime<Utc>>,
    /// Up to this time.
    pub until: Option<DateTime<Utc>>,
    /// One target's chain.
    pub target: Option<String>,
    /// One operation's changes.
    pub operation: Option<String>,
    /// Actors containing this text.
    pub actor: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl Filter {
    fn keeps(&self, entry: &AuditEntry) -> bool {
        self.since.is_none_or(|t| entry.at >= t)
            && self.until.is_none_or(|t| entry.at <= t)
            && self
                .operation
                .as_ref()
                .is_none_or(|op| entry.operation.as_ref() == Some(op))
            && self.actor.as_ref().is_none_or(|a| entry.actor.contains(a))
    }
}

/// One record as `list --output json` prints it: the entry with its place in the trail.
#[derive(Serialize)]
struct RecordJson {
    chain: String,
    seq: u64,
    hash: String,
    #[serde(flatten)]
    entry: AuditEntry,
}

pub async fn list(filter: Filter, opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let records: Vec<AuditRecord> = match &filter.target {
        Some(key) => store
            .audit_chain(&trail::target_chain(key))
            .await
            .with_context(|| format!("reading the audit chain of {key}"))?,
        None => {
            let until = filter.until.unwrap_or_else(Utc::now);
            let since = filter
                .since
                .unwrap_or(until - Duration::days(DEFAULT_WINDOW_DAYS));
            store
                .audit_between(since, until)
                .await
                .context("reading the audit trail")?
        }
    };
    let mut shown: Vec<RecordJson> = records
        .into_iter()
        .filter_map(|r| {
            // A record whose body no longer parses is tampered with: `audit verify` names it.
            let entry = r.entry()?;
            filter.keeps(&entry).then_some(RecordJson {
                chain: r.chain,
                seq: r.seq,
                hash: r.hash,
                entry,
            })
        })
        .collect();
    shown.sort_by(|a, b| (b.entry.at, &b.chain, b.seq).cmp(&(a.entry.at, &a.chain, a.seq)));
    shown.truncate(filter.limit);
    match opts.output {
        Output::Json => output::print_json(&shown),
        Output::Table => {
            let mut table = output::table([
                "time (UTC)",
                "actor",
                "change",
                "subject",
                "before",
                "after",
                "operation",
                "detail",
            ]);
            for r in &shown {
                let e = &r.entry;
                table.add_row(vec![
                    output::utc(e.at),
                    e.actor.clone(),
                    e.kind.to_string(),
                    e.subject.clone(),
                    compact(e.before.as_ref()),
                    compact(e.after.as_ref()),
                    e.operation.clone().unwrap_or_else(|| "-".into()),
                    e.detail.join("; "),
                ]);
            }
            outln!("{table}")
        }
    }
}

/// A subject for a table cell: sizes as min/max/desired, anything else as short JSON.
fn compact(value: Option<&serde_json::Value>) -> String {
    let Some(value) = value else {
        return "-".into();
    };
    let size = |name: &str| value.get(name).and_then(serde_json::Value::as_i64);
    match (size("min"), size("max"), size("desired")) {
        (Some(min), Some(max), Some(desired)) => format!("{min}/{max}/{desired}"),
        _ => {
            let text = value.to_string();
            if text.chars().count() > 60 {
                format!("{}…", text.chars().take(59).collect::<String>())
            } else {
                text
            }
        }
    }
}
