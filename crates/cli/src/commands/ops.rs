//! `curfew ops [list | show OP_ID] [--watch]`: operations, newest first, and their tasks.

use anyhow::{Context, Result};

use crate::cli::{GlobalOpts, OpsArgs, OpsCommand, Output};
use crate::connect;
use crate::output::{self, outln, OperationJson};
use crate::progress;

/// Runs an ops command.
pub async fn run(args: OpsArgs, opts: &GlobalOpts) -> Result<()> {
    match args.command.unwrap_or(OpsCommand::List { limit: 20 }) {
        OpsCommand::List { limit } => {
            let store = connect::store(opts).await?;
            let mut ops = store
                .list_operations(usize::from(limit))
                .await
                .context("listing operations")?;
            if args.watch {
                let running: Vec<String> = ops
                    .iter()
                    .filter(|op| !op.status.is_final())
                    .map(|op| op.id.clone())
                    .collect();
                let finished = progress::watch_all(store.as_ref(), &running, args.timeout).await?;
                for done in finished {
                    if let Some(op) = ops.iter_mut().find(|op| op.id == done.id) {
                        *op = done;
                    }
                }
            }
            match opts.output {
                Output::Json => output::print_json(&ops),
                Output::Table => {
                    let mut table = output::table(output::OPERATION_HEADER);
                    for op in &ops {
                        table.add_row(output::operation_row(op));
                    }
                    outln!("{table}")
                }
            }
        }
        OpsCommand::Show { op_id } => {
            let store = connect::store(opts).await?;
            let op = if args.watch {
                let bar = progress::bar(&op_id);
                let op = progress::watch(store.as_ref(), &op_id, &bar, args.timeout).await;
                bar.finish_and_clear();
                op?
            } else {
                progress::load(store.as_ref(), &op_id).await?
            };
            let tasks = store
                .list_tasks(&op_id)
                .await
                .with_context(|| format!("listing the tasks of {op_id}"))?;
            match opts.output {
                Output::Json => output::print_json(&OperationJson::new(&op, &tasks)),
                Output::Table => output::print_operation(&op, &tasks),
            }
        }
    }
}
