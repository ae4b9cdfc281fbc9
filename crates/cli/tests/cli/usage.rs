//! The command line's surface without AWS: help with examples on every command, documented
//! variables, missing configuration named, and bad input refused before anything is reached.

use crate::common::{assert_fails, curfew};
use predicates::str::contains;

const COMMANDS: [&[&str]; 34] = [
    &[],
    &["next"],
    &["account"],
    &["account", "add"],
    &["account", "list"],
    &["account", "remove"],
    &["schedule"],
    &["schedule", "add"],
    &["schedule", "list"],
    &["schedule", "show"],
    &["schedule", "enable"],
    &["schedule", "disable"],
    &["schedule", "delete"],
    &["plan"],
    &["stop"],
    &["start"],
    &["trigger"],
    &["ops"],
    &["ops", "list"],
    &["ops", "show"],
    &["override"],
    &["audit"],
    &["audit", "list"],
    &["audit", "verify"],
    &["audit", "export"],
    &["dlq"],
    &["dlq", "list"],
    &["dlq", "redrive"],
    &["health"],
    &["local"],
    &["local", "up"],
    &["local", "down"],
    &["local", "run"],
    &["local", "demo"],
];

#[test]
fn every_command_has_help_with_an_example() {
    for command in COMMANDS {
        let out = curfew().args(command).arg("--help").output().unwrap();
        assert!(out.status.success(), "{command:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example"),
            "no example in {command:?} --help:\n{help}"
        );
        assert!(
            help.contains("--output"),
            "{command:?} lacks the global options"
        );
    }
}

#[test]
fn a_missing_subcommand_is_one_line_naming_the_choices() {
    for (command, choices) in [
        (&[][..], "next, account, schedule, calendar, plan, stop"),
        (&["account"], "add, list, remove"),
        (
            &["schedule"],
            "add, list, show, grid, enable, disable, delete",
        ),
        (&["calendar"], "add, list, show, delete"),
        (&["dlq"], "list, redrive"),
        (&["local"], "up, down, run, demo"),
    ] {
        let name = std::iter::once(&"curfew")
            .chain(command)
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        assert_fails(
            curfew().args(command),
            2,
            &[
                &format!("`{name}` needs a subcommand: {choices}"),
                &format!("(see `{name} --help`)"),
            ],
        );
    }
}

#[test]
fn the_top_level_help_documents_every_variable() {
    let assert = curfew().arg("--help").assert().success();
    let help = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    for var in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "CURFEW_TABLE",
        "CURFEW_ROUTER_QUEUE_URL",
        "CURFEW_TASK_QUEUE_URL",
        "CURFEW_TASK_DLQ_URL",
        "CURFEW_TASK_MAX_RECEIVES",
        "CURFEW_ROUTER_FUNCTION",
        "CURFEW_OUTPUT",
        "CURFEW_MAX_CONCURRENCY",
        "CURFEW_CATCHUP_MINUTES",
        "CURFEW_DRIFT_MINUTES",
        "CURFEW_ENFORCE_MINUTES",
        "CURFEW_LEASE_SECONDS",
        "CURFEW_WORKER_TIMEOUT_SECONDS",
        "CURFEW_LOCAL_DIR",
        "CURFEW_LOG",
    ] {
        assert!(help.contains(var), "{var} is not documented");
    }
}

#[test]
fn commands_on_the_state_table_name_the_missing_table() {
    let role = "arn:aws:iam::111111111111:role/curfew-spoke";
    for args in [
        &["account", "list"][..],
        &[
            "account",
            "add",
            "111111111111",
            "--role",
            role,
            "--regions",
            "eu-west-1",
        ],
        &["account", "remove", "111111111111"],
        &["schedule", "list"],
        &["schedule", "show", "x"],
        &["schedule", "enable", "x"],
        &["schedule", "disable", "x"],
        &["schedule", "delete", "x"],
        &[
            "schedule", "add", "x", "--cron", "@daily", "--tz", "UTC", "--action", "stop",
            "--select", "kind=asg",
        ],
        &["plan", "--action", "stop", "--select", "kind=asg"],
        &["ops"],
        &["ops", "show", "x"],
        &["override", "--select", "kind=asg", "--awake-until", "1h"],
        &["override", "--list"],
        &["audit", "list"],
        &["audit", "verify"],
        &["audit", "export", "-"],
    ] {
        assert_fails(curfew().args(args), 2, &["--table", "CURFEW_TABLE"]);
    }
}

#[test]
fn dlq_commands_name_the_missing_dead_letter_queue_then_the_table_and_task_queue() {
    for args in [&["dlq", "list"][..], &["dlq", "redrive"]] {
        assert_fails(
            curfew().args(args),
            2,
            &["--task-dlq-url", "CURFEW_TASK_DLQ_URL"],
        );
        assert_fails(
            curfew()
                .env("CURFEW_TASK_DLQ_URL", "http://127.0.0.1:9/dlq")
                .env("AWS_REGION", "eu-west-1")
                .args(args),
            2,
            &["--table", "CURFEW_TABLE"],
        );
    }
    assert_fails(
        curfew()
            .env("CURFEW_TASK_DLQ_URL", "http://127.0.0.1:9/dlq")
            .env("CURFEW_TABLE", "t")
            .env("AWS_REGION", "eu-west-1")
            .args(["dlq", "redrive"]),
        2,
        &["--task-queue-url", "CURFEW_TASK_QUEUE_URL"],
    );
    assert_fails(
        curfew().args(["dlq", "list", "--limit", "0"]),
        2,
        &["--limit"],
    );
}

#[test]
fn against_aws_stop_start_and_trigger_name_the_missing_router_function() {
    for args in [
        &["stop", "--select", "kind=asg"][..],
        &["start", "--select", "kind=asg"],
        &["trigger", "nightly"],
    ] {
        assert_fails(
            curfew().args(args),
            2,
            &["--router-function", "CURFEW_ROUTER_FUNCTION"],
        );
    }
}

#[test]
fn in_local_mode_stop_names_the_missing_queue() {
    assert_fails(
        curfew()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("CURFEW_TABLE", "t")
            .args(["stop", "--select", "kind=asg"]),
        2,
        &["--router-queue-url", "CURFEW_ROUTER_QUEUE_URL"],
    );
    assert_fails(
        curfew()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("CURFEW_TABLE", "t")
            .env("CURFEW_ROUTER_QUEUE_URL", "http://127.0.0.1:9/q")
            .args(["start", "--select", "kind=asg"]),
        2,
        &["--task-queue-url", "CURFEW_TASK_QUEUE_URL"],
    );
}

#[test]
fn in_local_mode_a_lease_shorter_than_a_worker_may_run_is_refused_naming_the_variable() {
    assert_fails(
        curfew()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("CURFEW_TABLE", "t")
            .env("CURFEW_ROUTER_QUEUE_URL", "http://127.0.0.1:9/r")
            .env("CURFEW_TASK_QUEUE_URL", "http://127.0.0.1:9/t")
            .env("CURFEW_LEASE_SECONDS", "60")
            .args(["stop", "--select", "kind=asg"]),
        2,
        &[
            "CURFEW_LEASE_SECONDS",
            "at least 960",
            "CURFEW_WORKER_TIMEOUT_SECONDS",
        ],
    );
}

#[test]
fn a_malformed_selector_is_refused_naming_the_select_flag() {
    for args in [
        &["plan", "--action", "stop", "--select", "env=dev"][..],
        &["stop", "--select", "kind=vm"],
        &["start", "--select", ""],
        &["override", "--select", "account=12", "--awake-until", "1h"],
    ] {
        assert_fails(curfew().args(args), 2, &["--select"]);
    }
}

#[test]
fn bad_values_of_enumerated_flags_are_refused_naming_the_flag() {
    assert_fails(
        curfew().args(["plan", "--action", "pause", "--select", "kind=asg"]),
        2,
        &["--action", "pause"],
    );
    assert_fails(
        curfew().args([
            "plan",
            "--action",
            "stop",
            "--select",
            "kind=asg",
            "--discovery",
            "psychic",
        ]),
        2,
        &["--discovery"],
    );
    assert_fails(
        curfew().args(["ops", "--output", "yaml"]),
        2,
        &["--output", "yaml"],
    );
    assert_fails(
        curfew().args(["ops", "--max-concurrency", "0"]),
        2,
        &["--max-concurrency"],
    );
    assert_fails(
        curfew().args([
            "stop",
            "--select",
            "kind=asg",
            "--wait",
            "--timeout",
            "soon",
        ]),
        2,
        &["--timeout"],
    );
    assert_fails(
        curfew().args(["ops", "list", "--limit", "0"]),
        2,
        &["--limit"],
    );
}

#[test]
fn bad_input_is_reported_before_missing_configuration() {
    assert_fails(
        curfew()
            .args([
                "schedule",
                "add",
                "x",
                "--cron",
                "0 25 * * *",
                "--tz",
                "UTC",
            ])
            .args(["--action", "stop", "--select", "kind=asg"]),
        2,
        &["--cron"],
    );
    assert_fails(
        curfew()
            .args(["account", "add", "123", "--role", "arn:aws:iam::123:role/x"])
            .args(["--regions", "eu-west-1"]),
        2,
        &["ACCOUNT_ID"],
    );
    assert_fails(
        curfew().args([
            "override",
            "--select",
            "kind=asg",
            "--awake-until",
            "whenever",
        ]),
        2,
        &["--awake-until", "whenever"],
    );
    assert_fails(curfew().args(["trigger", "bad name"]), 2, &["NAME"]);
    for command in ["show", "enable", "disable", "delete"] {
        assert_fails(
            curfew().args(["schedule", command, "bad name"]),
            2,
            &["NAME", "bad name"],
        );
    }
}

#[test]
fn negative_and_out_of_range_values_are_refused_naming_the_flag_and_the_value() {
    assert_fails(
        curfew().args([
            "next",
            "--cron",
            "0 7 * * *",
            "--tz",
            "UTC",
            "--count",
            "-1",
        ]),
        2,
        &["--count", "-1"],
    );
    assert_fails(
        curfew().args(["override", "--select", "kind=asg", "--awake-until", "-5m"]),
        2,
        &["--awake-until", "-5m"],
    );
    for prewarm in ["-5m", "25h"] {
        assert_fails(
            curfew()
                .args(["schedule", "add", "x", "--cron", "0 7 * * *", "--tz", "UTC"])
                .args([
                    "--action",
                    "stop",
                    "--select",
                    "kind=asg",
                    "--prewarm",
                    prewarm,
                ]),
            2,
            &["--prewarm", prewarm],
        );
    }
}

#[test]
fn durations_beyond_the_calendar_are_refused_naming_the_flag() {
    assert_fails(
        curfew().args([
            "override",
            "--select",
            "kind=asg",
            "--awake-until",
            "999999999d",
        ]),
        2,
        &["--awake-until", "999999999d"],
    );
    for args in [
        &["ops", "list", "--timeout", "99999999999999h"][..],
        &[
            "stop",
            "--select",
            "kind=asg",
            "--timeout",
            "99999999999999h",
        ],
    ] {
        assert_fails(curfew().args(args), 2, &["--timeout"]);
    }
}

#[test]
fn override_needs_both_select_and_awake_until() {
    assert_fails(
        curfew().args(["override", "--select", "kind=asg"]),
        2,
        &["--awake-until"],
    );
    assert_fails(
        curfew().args(["override", "--awake-until", "1h"]),
        2,
        &["--select"],
    );
    assert_fails(
        curfew().args(["override", "--list", "--select", "kind=asg"]),
        2,
        &["--list"],
    );
}

#[test]
fn an_unknown_command_is_one_line_with_exit_code_two() {
    assert_fails(curfew().arg("nxt"), 2, &["nxt", "next"]);
    curfew()
        .arg("--version")
        .assert()
        .success()
        .stdout(contains("curfew"));
}

#[test]
fn a_missing_region_against_aws_is_named() {
    assert_fails(
        curfew()
            .env("CURFEW_ROUTER_FUNCTION", "curfew-router")
            .args(["stop", "--select", "kind=asg"]),
        2,
        &["--region", "AWS_REGION"],
    );
}

#[test]
fn local_run_needs_the_emulator_endpoint() {
    assert_fails(
        curfew().args(["local", "run", "--once"]),
        2,
        &["--endpoint", "AWS_ENDPOINT_URL"],
    );
}

#[test]
fn an_emulator_that_is_not_running_is_one_line_with_a_hint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_fails(
        curfew()
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("CURFEW_TABLE", "t")
            .args(["schedule", "list"]),
        1,
        &[
            "could not reach the service (connection refused)",
            "curfew local up",
        ],
    );
}

#[test]
fn curfew_log_never_writes_the_sdks_wire_detail_even_at_trace() {
    // At `trace` the SDK logs every request and response (credentials, session tokens and
    // ExternalIds among them); the CLI's diagnostics drop those lines whatever the filter.
    let out = curfew()
        .env("CURFEW_LOG", "trace")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("CURFEW_TABLE", "t")
        .args(["schedule", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not reach the service"),
        "the one-line error: {stderr}"
    );
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        let line: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        let target = line["target"].as_str().unwrap_or_default();
        let detail = matches!(line["level"].as_str(), Some("DEBUG" | "TRACE"));
        assert!(
            !(detail && (target.starts_with("aws_") || target.starts_with("hyper"))),
            "wire detail logged: {line}"
        );
    }
    // Plain-text lines would be the SDK's too (the old format named its targets).
    assert!(
        !stderr.contains("aws_smithy"),
        "wire detail logged: {stderr}"
    );
    assert!(!stderr.contains('\x1b'), "colour codes in: {stderr}");
}
