//! `curfew plan`: what a stop or start would do, target by target, with the hold steps it would
//! take. Writes nothing (`curfew_core::service::router::plan`).

use anyhow::{anyhow, Context, Result};
use curfew_core::ports::PlannedChange;
use curfew_core::view::PlannedChangeJson;

use crate::cli::{GlobalOpts, Output, PlanArgs};
use crate::connect;
use crate::output;

/// Prints the plan.
pub async fn run(args: PlanArgs, opts: &GlobalOpts) -> Result<()> {
    let (hub, _) = connect::hub(opts, false).await?;
    let plan = curfew_core::service::router::plan(
        &hub,
        args.action,
        &args.select,
        args.discovery.into(),
        args.hold,
    )
    .await
    .with_context(|| format!("planning a {} of {}", args.action, args.select))?;
    // Accounts that could not be listed never hide the others' plan: it is printed, each
    // problem is named on stderr, and the exit status says the plan is incomplete.
    for problem in &plan.problems {
        eprintln!("warning: {problem}");
    }
    let changes = plan.changes;
    print(&changes, &args, opts)?;
    match plan.problems.len() {
        0 => Ok(()),
        n => Err(anyhow!(
            "the plan is incomplete: {n} account/region(s) could not be listed (named above)"
        )),
    }
}

fn print(changes: &[PlannedChange], args: &PlanArgs, opts: &GlobalOpts) -> Result<()> {
    match opts.output {
        Output::Json => output::print_json(
            &changes
                .iter()
                .map(PlannedChangeJson::from)
                .collect::<Vec<_>>(),
        ),
        Output::Table => {
            let mut table = output::table([
                "target", "account", "region", "kind", "now", "after", "holds", "note",
            ]);
            for c in changes {
                table.add_row(vec![
                    c.target.display_name(),
                    c.target.account.clone(),
                    c.target.region.clone(),
                    c.target.kind.to_string(),
                    c.live.to_string(),
                    output::sizes(c.to),
                    c.steps.join("\n"),
                    c.reason.clone().unwrap_or_default(),
                ]);
            }
            output::outln!("{table}")?;
            let changing = changes.iter().filter(|c| c.to.is_some()).count();
            output::outln!(
                "{changing} of {} matching targets would change ({} {}); nothing was changed",
                changes.len(),
                args.action,
                args.select
            )
        }
    }
}
