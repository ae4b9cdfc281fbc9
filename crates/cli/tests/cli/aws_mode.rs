//! Against AWS (no endpoint set), `stop`/`start`/`trigger` invoke the router Lambda with the
//! payload of docs/INVOKE.md. A fake Lambda Invoke API on loopback stands in for AWS, reached
//! through the SDK's service-specific endpoint variable (`AWS_ENDPOINT_URL_LAMBDA`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::common::{assert_fails, curfew, TestHub};
use serde_json::{json, Value};

/// Requests the fake received: (path, body).
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Answers every Invoke with `body`, as a function error when `function_error` is set.
fn fake_lambda(body: Value, function_error: Option<&'static str>) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let log = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            let mut payload = vec![0; length];
            reader.read_exact(&mut payload).unwrap();
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            log.lock().unwrap().push((
                path,
                serde_json::from_slice(&payload).unwrap_or(Value::Null),
            ));
            let text = body.to_string();
            let error_header = function_error
                .map(|e| format!("X-Amz-Function-Error: {e}\r\n"))
                .unwrap_or_default();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{error_header}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, received)
}

fn aws(lambda_url: &str) -> assert_cmd::Command {
    let mut cmd = curfew();
    cmd.env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL_LAMBDA", lambda_url)
        .env("CURFEW_ROUTER_FUNCTION", "curfew-router");
    cmd
}

#[test]
fn stop_invokes_the_router_function_with_the_documented_payload() {
    let response = json!({"operation_id": "20270104T1830Z-m7f3a9c2b41d0", "status": "RUNNING"});
    let (url, received) = fake_lambda(response.clone(), None);
    let out = aws(&url)
        .args([
            "stop",
            "--select",
            "tag:env=dev,region=eu-west-1",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        response
    );
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].0,
        "/2015-03-31/functions/curfew-router/invocations"
    );
    assert_eq!(
        received[0].1,
        json!({"action": "stop", "select": "tag:env=dev,region=eu-west-1", "dry_run": false, "discovery": "cached"})
    );
}

#[test]
fn start_and_trigger_send_their_payloads() {
    let (url, received) = fake_lambda(json!({"operation_id": "x", "status": "RUNNING"}), None);
    aws(&url)
        .args([
            "start",
            "--select",
            "kind=asg",
            "--dry-run",
            "--discovery",
            "live",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("operation x running"));
    aws(&url)
        .args(["trigger", "dev-evening-stop"])
        .assert()
        .success();
    let received = received.lock().unwrap();
    assert_eq!(
        received[0].1,
        json!({"action": "start", "select": "kind=asg", "dry_run": true, "discovery": "live"})
    );
    assert_eq!(
        received[1].1,
        json!({"action": "trigger", "schedule": "dev-evening-stop"})
    );
}

#[test]
fn a_function_error_is_one_line_with_the_routers_message() {
    let (url, _) = fake_lambda(
        json!({"errorType": "InvocationError", "errorMessage": "invalid schedule: no schedule named \"nope\""}),
        Some("Unhandled"),
    );
    assert_fails(
        aws(&url).args(["trigger", "nope"]),
        1,
        &["curfew-router", "Unhandled", "no schedule named \"nope\""],
    );
}

#[test]
fn waiting_needs_the_table_and_checks_it_before_invoking() {
    let (url, received) = fake_lambda(json!({"operation_id": "x", "status": "RUNNING"}), None);
    assert_fails(
        aws(&url).args(["stop", "--select", "kind=asg", "--wait"]),
        2,
        &["--table", "CURFEW_TABLE"],
    );
    assert!(received.lock().unwrap().is_empty());
}

#[test]
fn waiting_follows_the_operation_in_the_state_table() {
    let (hub, account) = TestHub::with_fleet(2, 0);
    // An operation that exists in the table, as the deployed router would have created it.
    let done = hub.json(&["stop", "--select", &format!("account={account}")]);
    let (url, _) = fake_lambda(
        json!({"operation_id": done["operation_id"], "status": "RUNNING"}),
        None,
    );
    let out = aws(&url)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &hub.endpoint)
        .env("CURFEW_TABLE", &hub.config.table)
        .args([
            "stop",
            "--select",
            &format!("account={account}"),
            "--wait",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["operation"]["id"], done["operation_id"]);
    assert_eq!(shown["operation"]["status"], "SUCCEEDED");
    assert_eq!(shown["tasks"].as_array().unwrap().len(), 2);
}
