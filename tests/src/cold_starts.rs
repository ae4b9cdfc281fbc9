//! The cold starts `curfew-coldstart` measures (`make bench`), and a smoke run of them in
//! `make test`: each Lambda binary of the hub, spawned against a Lambda Runtime API on loopback
//! ([`crate::coldstart::measure`]) with one real event for a hub provisioned on the emulator.
//!
//! - worker: an SQS event with one task message of a stop operation (a fleet ASG per run);
//! - router: an SQS event with the message the poller sends for a new stop over the fleet;
//! - poller: a scheduled event, with a schedule of its own due (the tick fires it).
//!
//! Each run's result is checked (the task worked, the operation fanned out, the schedule
//! fired), so an event the handlers no longer take fails the run rather than timing an error.

use std::path::Path;

use chrono::{Duration, DurationRound, Utc};
use curfew_aws::local::demo_fleet;
use curfew_core::decision::Action;
use curfew_core::operation::{OpSource, Operation, RouterMessage};
use curfew_core::selector::Selector;
use curfew_core::service::invocation::{invoke, Invocation as DirectInvocation};
use serde_json::{json, Value};

use crate::coldstart::{measure, sqs_event, ColdStart};
use crate::runtime_api::Invocation;
use crate::{emulator_requests, spawn_hub, stop_schedule, TestHub};

/// The hub account of the emulator (moto's default account for the `test` keys).
pub const HUB_ACCOUNT: &str = "123456789012";
/// The hub's region.
pub const REGION: &str = "eu-west-1";

/// One Lambda of the hub stack (infra/lib/hub-stack.ts): its binary and memory size.
pub struct Function {
    /// Its binary's name.
    pub name: &'static str,
    /// Its memory size in the hub stack, in MB.
    pub memory_mb: u32,
}

/// The worker.
pub const WORKER: Function = Function {
    name: "curfew-worker",
    memory_mb: 256,
};
/// The router.
pub const ROUTER: Function = Function {
    name: "curfew-router",
    memory_mb: 512,
};
/// The poller.
pub const POLLER: Function = Function {
    name: "curfew-poller",
    memory_mb: 256,
};

impl Function {
    /// Its ARN in the hub account.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{REGION}:{HUB_ACCOUNT}:function:{}",
            self.name
        )
    }

    /// What Lambda sets for the runtime (lambda_runtime refuses to start without the name and
    /// version), what the hub stack sets (`CURFEW_*`, `RUST_LOG`), and the emulator's endpoint
    /// and keys where Lambda would give the execution role's credentials.
    fn env(&self, t: &TestHub) -> Vec<(String, String)> {
        let endpoint = t.sdk.endpoint_url().expect("the test hub has an endpoint");
        [
            ("AWS_LAMBDA_FUNCTION_NAME", self.name),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                &self.memory_mb.to_string(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                &format!("/aws/lambda/{}", self.name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2027/01/04/[$LATEST]coldstart",
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("RUST_LOG", "info"),
            ("CURFEW_TABLE", &t.config.table),
            ("CURFEW_ROUTER_QUEUE_URL", &t.config.router_queue_url),
            ("CURFEW_TASK_QUEUE_URL", &t.config.task_queue_url),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

fn queue_arn(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or(url);
    format!("arn:aws:sqs:{REGION}:{HUB_ACCOUNT}:{name}")
}

/// One run: the cold start and the emulator requests the handler made for its event (each is
/// part of the time to the result, at the emulator's speed).
pub struct Run {
    /// The cold start, measured.
    pub cold: ColdStart,
    /// The emulator requests made while it ran.
    pub requests: usize,
}

/// Runs `function`'s binary in `binaries` once on `event`; panics with the cause if it fails.
async fn cold_start(binaries: &Path, function: &Function, t: &TestHub, event: Value) -> Run {
    let binary = binaries.join(function.name);
    let before = emulator_requests();
    let cold = measure(
        &binary,
        &function.env(t),
        &function.arn(),
        Invocation::new(event),
    )
    .await
    .unwrap_or_else(|e| panic!("{} ({}): {e}", function.name, binary.display()));
    Run {
        cold,
        requests: emulator_requests() - before,
    }
}

/// The message the poller puts on the router queue when a schedule fires (see `create_and_send`
/// in `curfew_core::service::poller`): a new stop over the fleet, created and not yet fanned
/// out, for the router to fan out. (A direct invocation fans out in-process and sends the
/// router nothing: the worker plans each account since eef15d4.)
/// Returns the operation's id and the message.
async fn operation_message(t: &TestHub) -> (String, String) {
    let now = t.hub.clock.now();
    let op = Operation::pending(
        Operation::manual_id(now, &t.hub.clock.unique()),
        Action::Stop,
        Selector::parse("kind=asg").expect("a valid selector"),
        OpSource::Manual,
        now,
    );
    assert!(
        t.hub.store.create_operation(&op).await.unwrap(),
        "the operation is new"
    );
    let body = serde_json::to_string(&RouterMessage::Operation {
        op_id: op.id.clone(),
    })
    .unwrap();
    (op.id, body)
}

/// A schedule of its own, due now: the poller's tick fires it.
async fn due_schedule(t: &TestHub, run: usize) {
    let now = Utc::now().duration_trunc(Duration::minutes(1)).unwrap();
    let schedule = stop_schedule(&format!("coldstart-{run}"), "* * * * *", "kind=asg", now);
    t.hub.store.create_schedule(&schedule).await.unwrap();
}

/// The runs of each Lambda, in the order they ran.
pub struct ColdStarts {
    /// The worker's runs.
    pub worker: Vec<Run>,
    /// The router's runs.
    pub router: Vec<Run>,
    /// The poller's runs.
    pub poller: Vec<Run>,
}

/// Runs each Lambda's binary in `binaries` `runs` times against a hub on a fresh emulator,
/// checking what each run did; panics on a run that failed or did not do its work.
pub async fn run_each(binaries: &Path, runs: usize) -> ColdStarts {
    // The Lambdas read the system clock: the hub's clock starts at the same instant.
    let t = spawn_hub(Utc::now(), 1).await;
    t.register_accounts(&[REGION]).await;
    let fleet = demo_fleet(&t.accounts, &[REGION.to_string()], runs.max(2), 0);
    t.seed(&fleet).await;

    let mut worker = Vec::new();
    {
        let stop =
            DirectInvocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap();
        let op = invoke(&t.hub, stop).await.unwrap().operation_id;
        let tasks = t.route_and_take_tasks().await;
        let queue = queue_arn(&t.config.task_queue_url);
        for (run, task) in tasks.iter().take(runs).enumerate() {
            let body = serde_json::to_string(task).unwrap();
            let c = cold_start(binaries, &WORKER, &t, sqs_event(&queue, &[body])).await;
            assert_eq!(
                c.cold.response,
                json!({"batchItemFailures": []}),
                "the task was worked"
            );
            let finished = t.hub.store.list_tasks(&op).await.unwrap();
            let finished = finished.iter().filter(|t| t.status.is_final()).count();
            assert_eq!(finished, run + 1, "each run finishes its task");
            worker.push(c);
        }
    }

    let mut router = Vec::new();
    let queue = queue_arn(&t.config.router_queue_url);
    for _ in 0..runs {
        let (op_id, body) = operation_message(&t).await;
        let c = cold_start(binaries, &ROUTER, &t, sqs_event(&queue, &[body])).await;
        assert_eq!(
            c.cold.response,
            json!({"batchItemFailures": []}),
            "the operation was routed"
        );
        let op = t.hub.store.get_operation(&op_id).await.unwrap();
        assert_eq!(
            op.and_then(|o| o.shards_total),
            Some(t.accounts.len() as u64),
            "the router fanned the operation out to its account's shard"
        );
        router.push(c);
    }

    let mut poller = Vec::new();
    for run in 0..runs {
        due_schedule(&t, run).await;
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": HUB_ACCOUNT,
            "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": REGION,
            "resources": [format!("arn:aws:events:{REGION}:{HUB_ACCOUNT}:rule/curfew-poller")],
            "detail": {}
        });
        let c = cold_start(binaries, &POLLER, &t, event).await;
        let created = c.cold.response["created"].as_array().map_or(0, Vec::len);
        assert!(created >= 1, "the due schedule fired: {}", c.cold.response);
        poller.push(c);
    }

    ColdStarts {
        worker,
        router,
        poller,
    }
}
