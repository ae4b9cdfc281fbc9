//! `curfew dlq list | redrive` against a hub on the emulator: a task still waiting on its
//! message's last receive is dead-lettered, listed without being taken, and resumed.

use crate::common::{block_on, sdk, TestHub};
use chrono::{Duration, Utc};
use curfew_aws::DynamoStore;
use curfew_core::decision::Action;
use curfew_core::ports::{Lease, LeaseToken, TargetStore};
use serde_json::{json, Value};

/// Holds `key`'s lease as another, older operation would while it works on the target: the
/// stop's deliveries find it held on every receive.
fn hold_lease(hub: &TestHub, key: &str) -> LeaseToken {
    let token = LeaseToken::new("20270104T1700Z-blocker", Action::Stop);
    block_on(async {
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk(&hub.endpoint).await),
            &hub.config.table,
        );
        let now = Utc::now();
        let granted = store
            .acquire_lease(
                key,
                &token,
                now - Duration::hours(1),
                now,
                Duration::hours(1),
            )
            .await
            .expect("the lease is taken");
        assert!(matches!(granted, Lease::Acquired { .. }), "{granted:?}");
    });
    token
}

fn release_lease(hub: &TestHub, key: &str, token: &LeaseToken) {
    block_on(async {
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk(&hub.endpoint).await),
            &hub.config.table,
        );
        store.release_lease(key, token, false).await
    })
    .expect("the lease is released");
}

/// Runs `args` with `--output json`, expecting exit `code`, and parses stdout.
fn json_exit(hub: &TestHub, args: &[&str], code: i32) -> Value {
    let out = hub
        .cmd()
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("curfew runs");
    assert_eq!(
        out.status.code(),
        Some(code),
        "curfew {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn stdout(hub: &TestHub, args: &[&str]) -> String {
    let out = hub.cmd().args(args).output().expect("curfew runs");
    assert!(
        out.status.success(),
        "curfew {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_task_dead_lettered_by_a_stop_is_listed_and_a_redrive_resumes_it() {
    let (hub, account) = TestHub::with_fleet(2, 0);
    let blocked = format!("{account}#eu-west-1#asg#prod-web-01");
    let blocker = hold_lease(&hub, &blocked);

    // The blocked target's message is received 5 times (the provisioned maxReceiveCount), is
    // dead-lettered on the last and moved to the DLQ; the operation ends PARTIAL, exit 1.
    let stop = json_exit(
        &hub,
        &["stop", "--select", &format!("account={account}"), "--wait"],
        1,
    );
    let op_id = stop["operation"]["id"].as_str().unwrap().to_string();
    assert_eq!(stop["operation"]["status"], "PARTIAL");
    assert_eq!(stop["operation"]["counts"]["succeeded"], 1);
    assert_eq!(stop["operation"]["counts"]["dead_lettered"], 1);
    assert_eq!(stop["dead_lettered"][0]["key"], blocked.as_str());
    let reason = stop["dead_lettered"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("dead-lettered after 5 receives") && reason.contains("blocker"),
        "{reason}"
    );
    let shown = stdout(&hub, &["ops", "show", &op_id]);
    assert!(shown.contains("1 task dead-lettered"), "{shown}");
    assert!(shown.contains("prod-web-01"), "{shown}");

    // Listed with its task, twice: listing takes nothing away.
    for _ in 0..2 {
        let listed = json_exit(&hub, &["dlq", "list"], 0);
        let entries = listed.as_array().unwrap();
        assert_eq!(entries.len(), 1, "{listed}");
        assert_eq!(entries[0]["op_id"], op_id.as_str());
        assert_eq!(entries[0]["target"], blocked.as_str());
        assert_eq!(entries[0]["action"], "stop");
        assert_eq!(entries[0]["task_status"], "DEAD_LETTERED");
        assert!(entries[0]["receive_count"].as_u64().unwrap() >= 5);
    }
    let table = stdout(&hub, &["dlq", "list"]);
    assert!(
        table.contains("prod-web-01") && table.contains("nothing deleted"),
        "{table}"
    );

    // The cause is gone; the redrive reopens the task and (local mode) works it.
    release_lease(&hub, &blocked, &blocker);
    let redriven = json_exit(&hub, &["dlq", "redrive"], 0);
    assert_eq!(
        redriven,
        json!({"moved": 1, "reopened": [{"op_id": op_id, "target": blocked}], "plans": 0, "not_tasks": 0})
    );
    let op = json_exit(&hub, &["ops", "show", &op_id], 0);
    assert_eq!(op["operation"]["status"], "SUCCEEDED");
    assert_eq!(
        op["operation"]["counts"],
        json!({"total": 2, "succeeded": 2, "failed": 0, "skipped": 0, "dead_lettered": 0})
    );
    assert_eq!(op["dead_lettered"], json!([]));
    assert_eq!(json_exit(&hub, &["dlq", "list"], 0), json!([]));
    assert!(stdout(&hub, &["dlq", "list"]).contains("empty"));
}

#[test]
fn a_redrive_of_an_empty_dead_letter_queue_moves_nothing() {
    let hub = TestHub::new();
    assert_eq!(
        json_exit(&hub, &["dlq", "redrive"], 0),
        json!({"moved": 0, "reopened": [], "plans": 0, "not_tasks": 0})
    );
    assert!(stdout(&hub, &["dlq", "redrive"]).contains("moved 0 messages"));
}
