//! `curfew audit list`: the trail's records, newest first, filtered.

use anyhow::{Context, Result};
use chrono::Utc;
use curfew_core::audit_list::{compact, list as listed};

use crate::cli::{GlobalOpts, Output};
use crate::connect;
use crate::output::{self, outln};

/// What to list (`curfew_core::audit_list`, which the console lists with too).
pub use curfew_core::audit_list::AuditFilter as Filter;

pub async fn list(filter: Filter, opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let shown = listed(store.as_ref(), &filter, Utc::now())
        .await
        .context("reading the audit trail")?;
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
