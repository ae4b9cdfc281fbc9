//! `curfew health` against hubs on the emulator: green after a healthy stop wave, red (exit 1)
//! for a message in a dead-letter queue, a broken schedule, or a spoke account STS denies.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::common::{self, assert_fails, block_on, curfew, sdk, TestHub};
use curfew_aws::local::spoke_role_arn;

/// `curfew health --output json`, expecting exit `code`; stdout parsed and stderr's lines.
fn health(hub: &TestHub, endpoint: Option<&str>, code: i32) -> (Value, Vec<String>) {
    let mut cmd = hub.cmd();
    if let Some(endpoint) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", endpoint);
    }
    let out = cmd
        .args(["health", "--output", "json"])
        .output()
        .expect("curfew runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (report, stderr.lines().map(str::to_string).collect())
}

/// The check named `name` in a JSON report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

fn lights(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_hub_after_a_poller_tick_and_a_clean_stop_wave_is_green_and_exits_zero() {
    let (hub, account) = TestHub::with_fleet(2, 0);
    hub.cmd()
        .args(["local", "run", "--once"])
        .assert()
        .success();
    hub.json(&["stop", "--select", &format!("account={account}"), "--wait"]);

    let (report, stderr) = health(&hub, None, 0);

    assert_eq!(report["status"], "green", "{report:#}");
    let names: Vec<String> = lights(&report).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        names,
        [
            "router-queue",
            "task-queue",
            "poller",
            "accounts",
            "operations",
            "schedules"
        ]
    );
    assert!(lights(&report).iter().all(|(_, light)| light == "green"));
    let task = check(&report, "task-queue");
    assert_eq!(task["dead_letters"], 0);
    assert_eq!(
        task["dead_letter_queue"].as_str(),
        hub.config.task_dlq_url.as_deref(),
        "found from the task queue's RedrivePolicy"
    );
    assert_eq!(check(&report, "accounts")["reachable"], 1);
    assert!(check(&report, "poller")["last_tick"].is_string());
    assert!(stderr.is_empty(), "{stderr:?}");

    hub.cmd()
        .arg("health")
        .assert()
        .success()
        .stdout(predicates::str::contains("health: green"))
        .stdout(predicates::str::contains("dead-letter queue empty"));
}

#[test]
fn a_message_in_the_task_dead_letter_queue_turns_health_red_and_exits_one() {
    let hub = TestHub::new();
    let dlq = hub.config.task_dlq_url.clone().expect("a provisioned DLQ");
    block_on(async {
        aws_sdk_sqs::Client::new(&sdk(&hub.endpoint).await)
            .send_message()
            .queue_url(&dlq)
            .message_body(r#"{"op_id":"20270104T1800Z-by-hand"}"#)
            .send()
            .await
    })
    .expect("a message is sent to the DLQ");

    let (report, stderr) = health(&hub, None, 1);

    assert_eq!(report["status"], "red");
    let task = check(&report, "task-queue");
    assert_eq!(task["status"], "red");
    assert_eq!(task["dead_letters"], 1);
    let detail = task["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 message in the dead-letter queue") && detail.contains("curfew dlq list"),
        "{detail}"
    );
    assert_eq!(check(&report, "router-queue")["status"], "green");
    assert_eq!(stderr, ["error: health is red: task-queue"]);
}

#[test]
fn a_broken_schedule_is_red_naming_it_and_its_problem() {
    let hub = TestHub::new();
    block_on(async {
        let s = |v: &str| AttributeValue::S(v.to_string());
        aws_sdk_dynamodb::Client::new(&sdk(&hub.endpoint).await)
            .put_item()
            .table_name(&hub.config.table)
            .item("pk", s("SCHEDULES"))
            .item("sk", s("SCHEDULE#moon-nights"))
            .item("name", s("moon-nights"))
            .item("cron", s("0 19 * * *"))
            .item("tz", s("Moon/Tranquility"))
            .item("action", s("stop"))
            .item("selector", s("kind=asg"))
            .send()
            .await
    })
    .expect("a raw schedule item is written");

    let (report, stderr) = health(&hub, None, 1);

    let schedules = check(&report, "schedules");
    assert_eq!(schedules["status"], "red");
    assert_eq!(schedules["broken"][0]["name"], "moon-nights");
    let detail = schedules["detail"].as_str().unwrap();
    assert!(
        detail.contains("moon-nights") && detail.contains("Moon/Tranquility"),
        "{detail}"
    );
    assert_eq!(stderr, ["error: health is red: schedules"]);
    let out = hub.cmd().arg("health").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("moon-nights") && table.contains("health: red"),
        "{table}"
    );
}

#[test]
fn an_account_whose_role_sts_denies_is_red_after_a_stop_wave() {
    let (hub, reachable) = TestHub::with_fleet(2, 0);
    let denied = common::random_account();
    hub.cmd()
        .args([
            "account",
            "add",
            &denied,
            "--role",
            &spoke_role_arn(&denied),
        ])
        .args(["--regions", "eu-west-1"])
        .assert()
        .success();
    let proxy = DenyingProxy::start(&hub.endpoint, &denied);

    // The wave runs through the proxy: STS refuses the denied account's role.
    hub.cmd()
        .env("AWS_ENDPOINT_URL", &proxy)
        .args(["stop", "--select", "tag:env=dev", "--wait"])
        .output()
        .expect("curfew runs");

    let (report, stderr) = health(&hub, None, 1);

    let accounts = check(&report, "accounts");
    assert_eq!(accounts["status"], "red", "{accounts:#}");
    assert_eq!(accounts["reachable"], 1, "{reachable} was reached");
    let unreachable = accounts["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1, "{accounts:#}");
    assert_eq!(unreachable[0]["account"], denied.as_str());
    assert_eq!(unreachable[0]["outcome"], "denied");
    let error = unreachable[0]["error"].as_str().unwrap();
    assert!(
        error.contains("AccessDenied") && error.contains(&denied),
        "{error}"
    );
    assert!(accounts["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("{denied} denied at")));
    assert!(
        stderr.len() == 1 && stderr[0].contains("accounts"),
        "{stderr:?}"
    );
}

#[test]
fn health_names_a_missing_queue_and_refuses_a_bad_bound() {
    let hub = TestHub::new();
    assert_fails(
        hub.cmd()
            .env_remove("CURFEW_ROUTER_QUEUE_URL")
            .arg("health"),
        2,
        &["--router-queue-url", "CURFEW_ROUTER_QUEUE_URL"],
    );
    for flag in ["--stuck-after", "--lag-bound"] {
        assert_fails(curfew().args(["health", flag, "0s"]), 2, &[flag]);
        assert_fails(curfew().args(["health", flag, "soon"]), 2, &[flag]);
    }
}

/// A loopback HTTP proxy in front of the emulator that answers STS AssumeRole for one
/// account's roles as STS does when the trust policy refuses the caller (403 AccessDenied),
/// and forwards every other request as it is. moto assumes any role it is asked for, so this
/// is how a test meets a spoke account whose role cannot be assumed.
struct DenyingProxy;

impl DenyingProxy {
    /// Starts the proxy; returns its endpoint URL. Its thread lives as long as the test.
    fn start(upstream: &str, denied_account: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let denied = denied_account.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, denied) = (upstream.clone(), denied.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &denied);
                });
            }
        });
        endpoint
    }
}

/// Serves one request on `client` and closes the connection (`Connection: close` both ways,
/// so every response ends where the upstream's does).
fn serve(mut client: TcpStream, upstream: &str, denied: &str) -> std::io::Result<()> {
    let (head, body) = read_request(&mut client)?;
    let body_text = String::from_utf8_lossy(&body);
    if body_text.contains("Action=AssumeRole") && body_text.contains(denied) {
        let xml = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
             <Type>Sender</Type><Code>AccessDenied</Code><Message>User: \
             arn:aws:sts::000000000000:assumed-role/curfew-hub/worker is not authorized to \
             perform: sts:AssumeRole on resource: arn:aws:iam::{denied}:role/curfew-spoke\
             </Message></Error><RequestId>c0ffee00-0000-0000-0000-000000000000</RequestId>\
             </ErrorResponse>"
        );
        write!(
            client,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return client.flush();
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(&closing(&head))?;
    server.write_all(&body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    let split = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    client.write_all(&closing(&response[..split]))?;
    client.write_all(&response[split..])?;
    client.flush()
}

/// The request's head (through the blank line) and its body (`Content-Length` bytes).
fn read_request(client: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&data, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = data[..head_end].to_vec();
    let length = String::from_utf8_lossy(&head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Ok((head, body))
}

/// A message head with its `Connection` header replaced by `Connection: close`.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(name, _)| name.eq_ignore_ascii_case("connection"))
        })
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
