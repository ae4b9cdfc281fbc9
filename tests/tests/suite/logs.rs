//! What the log lines of a whole stop and start say, on the emulator (issue 10, logs and
//! metrics): every line is one JSON object; a line logged while a task is worked carries its
//! operation, account, region and target, and the X-Ray trace header the router's invocation
//! put on its message; the metrics are CloudWatch EMF lines with only the
//! action and kind as dimensions; and no line holds a credential, a session token or an
//! ExternalId, at any level (the capture takes everything down to `trace`, the SDK's own lines
//! included).

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use curfew_aws::lambda::lambda_logs;
use curfew_aws::local::{demo_fleet, spoke_role_arn};
use curfew_core::account::Account;
use curfew_core::operation::OpStatus;
use curfew_tests::{emulator_state, spawn_hub};
use serde_json::{json, Value};

/// An X-Ray trace header, as Lambda hands one to an invocation.
const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every credential moto handed out for an assumed role (its access key id is not secret).
fn assumed_role_secrets(state: &Value) -> Vec<String> {
    state["sts"]["AssumedRole"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|role| {
            ["secret_access_key", "session_token"]
                .into_iter()
                .filter_map(|field| role[field].as_str().map(str::to_string))
        })
        .collect()
}

// A current-thread runtime: the capture is this thread's default subscriber, and every handler
// of the waves runs on this thread.
#[tokio::test]
async fn a_stop_and_start_log_json_lines_naming_their_task_and_never_a_secret() {
    // As the Lambda runtime sets it for the router's invocation: the SQS adapter puts it on
    // every task message, and the worker's task lines carry it.
    std::env::set_var("_X_AMZN_TRACE_ID", TRACE);
    let capture = Capture::default();
    let writer = capture.clone();
    let _logs = tracing::subscriber::set_default(lambda_logs(
        tracing_subscriber::EnvFilter::new("trace"),
        move || writer.clone(),
    ));

    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 19, 0, 0).unwrap(), 2).await;
    let external_id = format!("ext{}", uuid::Uuid::new_v4().simple());
    for id in &t.accounts {
        let account = Account::new(
            id,
            &spoke_role_arn(id),
            Some(&external_id),
            &["eu-west-1".to_string()],
        )
        .unwrap();
        t.hub.store.put_account(&account).await.unwrap();
    }
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], 3, 0);
    t.seed(&fleet).await;
    let stop = t.run(json!({"action": "stop", "select": "kind=asg"})).await;
    let start = t
        .run(json!({"action": "start", "select": "kind=asg"}))
        .await;
    assert_eq!(stop.status, OpStatus::Succeeded, "{stop:?}");
    assert_eq!(start.status, OpStatus::Succeeded, "{start:?}");
    drop(_logs);

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).expect("UTF-8 logs");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // At least a line per task of each wave (6 ASGs, two waves).
    assert!(lines.len() >= 12, "{} lines", lines.len());

    let secrets = assumed_role_secrets(&emulator_state());
    assert!(
        secrets.len() >= 4,
        "moto reports the credentials it issued: {}",
        secrets.len()
    );
    for secret in secrets.iter().chain([&external_id]) {
        let line = text.lines().find(|l| l.contains(secret.as_str()));
        assert!(line.is_none(), "a secret in a log line: {line:?}");
    }

    for op in [&stop, &start] {
        let worked: Vec<&Value> = lines
            .iter()
            .filter(|l| l["span"]["name"] == "task" && l["span"]["op_id"] == op.id.as_str())
            .collect();
        assert!(!worked.is_empty(), "no line names {}'s tasks", op.id);
        for line in worked {
            let span = &line["span"];
            for field in ["account", "region", "target", "message_id"] {
                assert!(span[field].is_string(), "{field} missing: {line}");
            }
            assert_eq!(
                span["trace"], TRACE,
                "the router's trace reached the worker: {line}"
            );
            assert!(
                t.accounts.iter().any(|a| span["account"] == a.as_str()),
                "{line}"
            );
            assert_eq!(span["region"], "eu-west-1");
        }
    }
    // The metrics: EMF lines, counted once per task, with low-cardinality dimensions only.
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    let count = |name: &str, action: &str| {
        emf.iter()
            .filter(|l| l[name].is_number() && l["Action"] == action && l["Kind"] == "asg")
            .map(|l| l[name].as_f64().unwrap())
            .sum::<f64>()
    };
    assert_eq!(count("TargetsStopped", "stop"), 6.0);
    assert_eq!(count("TargetsStarted", "start"), 6.0);
    let durations: Vec<&str> = emf
        .iter()
        .filter(|l| l["OperationDuration"].is_number())
        .map(|l| l["Action"].as_str().unwrap())
        .collect();
    assert_eq!(
        durations,
        ["stop", "start"],
        "one duration per operation, once"
    );
    let misses = emf
        .iter()
        .filter(|l| l["StsCacheMisses"].is_number())
        .count();
    assert!(misses >= 2, "an AssumeRole per account at least: {misses}");
    for line in &emf {
        let spec = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "curfew");
        for dimension in spec["Dimensions"][0].as_array().unwrap() {
            assert!(
                ["Action", "Kind"].contains(&dimension.as_str().unwrap()),
                "{line}"
            );
        }
        let name = spec["Metrics"][0]["Name"].as_str().unwrap();
        assert!(line[name].is_number(), "{line}");
        for target in &fleet {
            assert!(
                !line.to_string().contains(&target.name),
                "a target in a metric: {line}"
            );
        }
    }
    let fanned_out = lines
        .iter()
        .filter(|l| l["span"]["name"] == "operation" && l["span"]["op_id"] == stop.id.as_str())
        .count();
    assert!(
        fanned_out > 0,
        "the router's fan-out lines name the operation"
    );
}
