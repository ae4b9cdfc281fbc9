//! `curfew stop`, `curfew start` and `curfew trigger`: an operation now.
//!
//! With an endpoint set (an emulator) the invocation runs in-process
//! (`curfew_core::service::invocation::invoke`) and the local dispatcher drains the queues
//! through the real router and worker code. Against AWS the router Lambda is invoked with the
//! same JSON payload `aws lambda invoke` would send (docs/INVOKE.md).

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use curfew_core::decision::Action;
use curfew_core::operation::{OpStatus, Operation};
use curfew_core::ports::StateStore;
use curfew_core::schedule::parse_duration;
use curfew_core::service::invocation::{invoke, Invocation, InvocationError, InvocationResponse};

use crate::cli::{GlobalOpts, Output, RunArgs, StartArgs, TriggerArgs, WaitArgs};
use crate::connect::{self, Queues};
use crate::error::bad_input;
use crate::output::{self, outln, OperationJson};
use crate::progress;

/// `curfew stop` / `curfew start`.
pub async fn stop_or_start(action: Action, args: RunArgs, opts: &GlobalOpts) -> Result<()> {
    let (select, dry_run, discovery) = (args.select, args.dry_run, args.discovery.into());
    let hold = args.hold;
    let invocation = match action {
        Action::Stop => Invocation::Stop {
            hold,
            select,
            dry_run,
            discovery,
        },
        Action::Start => Invocation::Start {
            hold,
            select,
            dry_run,
            discovery,
        },
    };
    execute(invocation, &args.wait, opts).await
}

/// The longest `start --for`: a week. Longer is a schedule's job (or `override add`).
const LONGEST_AWAKE: chrono::Duration = chrono::Duration::days(7);

/// `--for`: a whole number of seconds, more than zero, at most a week.
fn awake_for(value: &str) -> Result<chrono::Duration> {
    let duration = parse_duration(value).ok_or_else(|| {
        bad_input(format!(
            "--for: {value:?} is not a duration such as 3h, 90m or 1h30m"
        ))
    })?;
    if duration <= chrono::Duration::zero() || duration > LONGEST_AWAKE {
        return Err(bad_input(format!(
            "--for: {value:?} must be more than zero and at most 7d (use `curfew override add` or a schedule for longer)"
        )));
    }
    Ok(duration)
}

/// `curfew start`, and with `--for` the override that keeps its targets awake until then:
/// stored before the start, so no stop in between can catch them awake without it.
pub async fn start(args: StartArgs, opts: &GlobalOpts) -> Result<()> {
    let Some(value) = &args.awake_for else {
        return stop_or_start(Action::Start, args.run, opts).await;
    };
    let duration = awake_for(value)?;
    if args.run.dry_run {
        return Err(bad_input(
            "--for: a dry run changes nothing, so there is nothing to keep awake; drop --dry-run or --for",
        ));
    }
    let store = connect::store(opts).await?;
    let now = Utc::now();
    let o = super::overrides::keep_awake(
        store.as_ref(),
        opts,
        args.run.select.clone(),
        now + duration,
        now,
    )
    .await?;
    if opts.output == Output::Table {
        outln!(
            "targets matching {} stay awake until {}: scheduled stops skip them (override {})",
            o.selector,
            output::utc(o.awake_until),
            o.id
        )?;
    }
    stop_or_start(Action::Start, args.run, opts).await
}

/// `curfew trigger NAME`.
pub async fn trigger(args: TriggerArgs, opts: &GlobalOpts) -> Result<()> {
    curfew_core::schedule::validate_name(&args.name)
        .map_err(|e| bad_input(format!("NAME: {e}")))?;
    execute(
        Invocation::Trigger {
            schedule: args.name,
        },
        &args.wait,
        opts,
    )
    .await
}

fn invocation_error(e: InvocationError) -> anyhow::Error {
    match e {
        InvocationError::Payload(_) => bad_input(e.to_string()),
        other => anyhow::Error::new(other),
    }
}

async fn execute(invocation: Invocation, wait: &WaitArgs, opts: &GlobalOpts) -> Result<()> {
    if opts.is_local() {
        run_locally(invocation, wait, opts).await
    } else {
        run_in_aws(invocation, wait, opts).await
    }
}

async fn run_locally(invocation: Invocation, wait: &WaitArgs, opts: &GlobalOpts) -> Result<()> {
    let (hub, sdk) = connect::hub(opts, true).await?;
    let (router, task) = opts.queues()?;
    let queues = Queues { router, task };
    let response = invoke(&hub, invocation).await.map_err(invocation_error)?;
    let op_id = response.operation_id.clone();
    let dispatcher = connect::dispatcher(&hub, &sdk, &queues, opts.max_concurrency);
    let bar = if wait.wait {
        progress::bar(&op_id)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let drained = tokio::time::timeout(
        wait.timeout,
        progress::while_running(hub.store.as_ref(), &op_id, &bar, dispatcher.drain()),
    )
    .await;
    bar.finish_and_clear();
    let report = drained
        .map_err(|_| {
            anyhow!(
                "operation {op_id} still has work queued after {}s (see `curfew ops show {op_id}`)",
                wait.timeout.as_secs()
            )
        })?
        .with_context(|| format!("running operation {op_id} locally"))?;
    for cause in &report.rejected {
        eprintln!("warning: a queue message was rejected: {cause}");
    }
    if report.dead_lettered > 0 {
        eprintln!(
            "warning: {} dead-lettered: still waiting on the last receive its queue allows (see `curfew ops show {op_id}`, `curfew dlq list`)",
            output::count(report.dead_lettered as u64, "task")
        );
    }
    let op = progress::load(hub.store.as_ref(), &op_id).await?;
    if wait.wait {
        print_final(hub.store.as_ref(), &op, opts.output).await
    } else {
        print_started(
            &InvocationResponse {
                operation_id: op.id.clone(),
                status: op.status,
            },
            opts.output,
        )
    }
}

async fn run_in_aws(invocation: Invocation, wait: &WaitArgs, opts: &GlobalOpts) -> Result<()> {
    let function = opts.router_function()?;
    // Checked before invoking: waiting reads the operation from the state table.
    if wait.wait {
        opts.table()?;
    }
    let sdk = connect::sdk(opts).await?;
    let response = curfew_aws::router_function::invoke_router(
        &aws_sdk_lambda::Client::new(&sdk),
        function,
        &invocation,
    )
    .await?;
    if !wait.wait {
        return print_started(&response, opts.output);
    }
    let store = connect::store(opts).await?;
    let bar = progress::bar(&response.operation_id);
    let op = progress::watch(store.as_ref(), &response.operation_id, &bar, wait.timeout).await;
    bar.finish_and_clear();
    print_final(store.as_ref(), &op?, opts.output).await
}

fn print_started(response: &InvocationResponse, out: Output) -> Result<()> {
    match out {
        Output::Json => output::print_json(response),
        Output::Table => {
            outln!(
                "operation {} {}",
                response.operation_id,
                response.status.to_string().to_lowercase()
            )?;
            outln!("  details: curfew ops show {}", response.operation_id)
        }
    }
}

/// Prints the final operation with its tasks; an operation that did not succeed is a failure
/// of the command (exit 1), so scripts can rely on `--wait`.
async fn print_final(store: &dyn StateStore, op: &Operation, out: Output) -> Result<()> {
    let tasks = store
        .list_tasks(&op.id)
        .await
        .with_context(|| format!("listing the tasks of {}", op.id))?;
    match out {
        Output::Json => output::print_json(&OperationJson::new(op, &tasks))?,
        Output::Table => output::print_operation(op, &tasks)?,
    }
    match op.status {
        OpStatus::Succeeded => Ok(()),
        status => Err(anyhow!(
            "operation {} ended {status}: {} of {} tasks failed{}{}",
            op.id,
            op.counts.failed,
            op.counts.total,
            if op.counts.dead_lettered > 0 {
                format!(
                    ", {} dead-lettered (curfew dlq list)",
                    op.counts.dead_lettered
                )
            } else {
                String::new()
            },
            op.notes
                .first()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// docs/INVOKE.md promises these payloads and messages.
    #[test]
    fn the_payloads_and_errors_in_invoke_md_are_what_the_router_sees() {
        let stop = Invocation::Stop {
            select: "tag:env=dev,region=eu-west-1".parse().unwrap(),
            dry_run: false,
            discovery: curfew_core::operation::Discovery::Cached,
            hold: None,
        };
        assert_eq!(
            serde_json::to_value(&stop).unwrap(),
            json!({"action": "stop", "select": "tag:env=dev,region=eu-west-1", "dry_run": false, "discovery": "cached"})
        );
        assert_eq!(
            serde_json::to_value(Invocation::Trigger {
                schedule: "dev-evening-stop".into()
            })
            .unwrap(),
            json!({"action": "trigger", "schedule": "dev-evening-stop"})
        );
        for (payload, message) in [
            (json!({"select": "kind=asg"}), "invalid invocation payload: missing field `action`"),
            (json!({"action": "stop"}), "invalid invocation payload: missing field `select`"),
            (json!({"action": "stop", "select": "env=dev"}), "invalid invocation payload: invalid selector \"env=dev\": unknown term \"env\""),
            (json!({"action": "pause"}), "invalid invocation payload: unknown variant `pause`, expected one of `trigger`, `stop`, `start`"),
        ] {
            let err = Invocation::parse(&payload).unwrap_err().to_string();
            assert!(err.starts_with(message), "{payload}: {err}");
        }
        let response: InvocationResponse = serde_json::from_value(
            json!({"operation_id": "20270104T1830Z-m7f3a9c2b41d0", "status": "RUNNING"}),
        )
        .unwrap();
        assert_eq!(response.status, OpStatus::Running);
    }
}
