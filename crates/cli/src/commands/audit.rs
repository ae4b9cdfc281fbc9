//! `curfew audit`: finished operations with every task's change. List-only in this version:
//! `verify` and `export` arrive with the tamper-evident audit log.

use anyhow::{anyhow, Context, Result};

use crate::cli::{AuditArgs, AuditCommand, GlobalOpts, Output};
use crate::connect;
use crate::output::{self, OperationJson};

/// Runs an audit command.
pub async fn run(args: AuditArgs, opts: &GlobalOpts) -> Result<()> {
    let limit = match args.command.unwrap_or(AuditCommand::List { limit: 20 }) {
        AuditCommand::List { limit } => limit,
        AuditCommand::Verify | AuditCommand::Export { .. } => {
            return Err(anyhow!(
                "audit is list-only in this version: `verify` and `export` arrive with the audit log (use `curfew audit list --output json`)"
            ))
        }
    };
    let store = connect::store(opts).await?;
    let ops: Vec<_> = store
        .list_operations(usize::from(limit))
        .await
        .context("listing operations")?
        .into_iter()
        .filter(|op| op.status.is_final())
        .collect();
    let mut entries = Vec::with_capacity(ops.len());
    for op in ops {
        let tasks = store
            .list_tasks(&op.id)
            .await
            .with_context(|| format!("listing the tasks of {}", op.id))?;
        entries.push((op, tasks));
    }
    match opts.output {
        Output::Json => output::print_json(
            &entries
                .iter()
                .map(|(op, tasks)| OperationJson::new(op, tasks))
                .collect::<Vec<_>>(),
        ),
        Output::Table => {
            let mut table = output::table([
                "finished (UTC)",
                "operation",
                "action",
                "source",
                "target",
                "account",
                "region",
                "result",
                "before",
                "after",
                "reason",
            ]);
            for (op, tasks) in &entries {
                for task in tasks {
                    table.add_row(vec![
                        output::utc(task.updated_at),
                        op.id.clone(),
                        op.action.to_string(),
                        output::source(op),
                        task.target.display_name(),
                        task.target.account.clone(),
                        task.target.region.clone(),
                        task.status.to_string(),
                        output::sizes(task.before),
                        output::sizes(task.after),
                        task.reason.clone().unwrap_or_default(),
                    ]);
                }
            }
            println!("{table}");
            Ok(())
        }
    }
}
