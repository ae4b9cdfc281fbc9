//! `curfew local up | down | demo`: the emulator outlives `up`, is found again, is stopped by
//! `down` by its pid; the demo runs the whole day and leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use crate::common::{curfew, root};
use serde_json::Value;

fn alive(pid: u32) -> bool {
    Process::new("kill")
        .args(["-0", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
        // A zombie (exited, not yet reaped) has no command line left.
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// A state folder of its own; whatever `local up` started there is stopped when the test ends,
/// even if it fails.
struct LocalDir(PathBuf);

impl LocalDir {
    fn new() -> LocalDir {
        let dir =
            std::env::temp_dir().join(format!("curfew-local-{}", uuid::Uuid::now_v7().simple()));
        LocalDir(dir)
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.0.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn curfew(&self) -> assert_cmd::Command {
        let mut cmd = curfew();
        cmd.env("CURFEW_LOCAL_DIR", &self.0);
        cmd
    }
}

impl Drop for LocalDir {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            curfew_aws::local::emulator::stop_pid(pid);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn exports(stdout: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let assignment = line
                .strip_prefix("export ")
                .unwrap_or_else(|| panic!("not an export line: {line:?}"));
            let (name, value) = assignment.split_once('=').expect("NAME=VALUE");
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// Runs `script` in `sh` with `$CURFEW` set to the binary, as a clean shell would.
fn sh(dir: &Path, script: &str) -> std::process::Output {
    let mut cmd = Process::new("sh");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("AWS_") || name.starts_with("CURFEW_") {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd.arg("-c")
        .arg(script)
        .env("CURFEW", assert_cmd::cargo::cargo_bin("curfew"))
        .env("CURFEW_LOCAL_DIR", dir);
    cmd.output().unwrap()
}

#[test]
fn local_up_prints_only_exports_survives_is_found_again_and_local_down_stops_it() {
    let local = LocalDir::new();
    let up = local.curfew().args(["local", "up"]).output().unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let vars = exports(&up.stdout);
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "CURFEW_TABLE",
            "CURFEW_ROUTER_QUEUE_URL",
            "CURFEW_TASK_QUEUE_URL",
            "CURFEW_TASK_DLQ_URL",
            "CURFEW_NOTIFY_TOPIC_ARN",
            "CURFEW_AUDIT_KEY"
        ]
    );
    assert_eq!(vars[9].1.len(), 64, "a fresh 32-byte key in hex: {vars:?}");
    assert!(
        vars[8].1.starts_with("arn:aws:sns:eu-west-1:") && vars[8].1.ends_with(":curfew-notices"),
        "{vars:?}"
    );
    assert!(vars[0].1.starts_with("http://127.0.0.1:"), "{vars:?}");
    assert_eq!(vars[1].1, "eu-west-1");
    assert_eq!(vars[2].1, "test");
    let pid = local.pid().expect("local up records the emulator's pid");
    assert!(alive(pid), "the emulator outlives `local up`");

    // Running again while it is up prints the same exports and starts nothing new.
    let again = local.curfew().args(["local", "up"]).output().unwrap();
    assert!(again.status.success());
    assert_eq!(again.stdout, up.stdout);
    assert_eq!(local.pid(), Some(pid));

    // eval "$(curfew local up)" sets up the shell for every other command.
    let out = sh(
        &local.0,
        r#"eval "$("$CURFEW" local up 2>/dev/null)" && "$CURFEW" account list --output json"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accounts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["111111111111", "222222222222", "333333333333"]);
    let out = sh(
        &local.0,
        r#"eval "$("$CURFEW" local up 2>/dev/null)" && "$CURFEW" plan --action stop --select tag:env=dev --output json"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan.as_array().unwrap().len(),
        30,
        "half of the 60 demo targets are env=dev"
    );

    assert!(vars[7].1.ends_with("/curfew-tasks-dlq"), "{vars:?}");
    let out = sh(
        &local.0,
        r#"eval "$("$CURFEW" local up 2>/dev/null)" && "$CURFEW" dlq list --output json"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead_letters: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        dead_letters,
        serde_json::json!([]),
        "the task DLQ is exported"
    );

    // The exported audit key signs what the local dispatcher records, and verify checks it.
    let out = sh(
        &local.0,
        r#"eval "$("$CURFEW" local up 2>/dev/null)" && "$CURFEW" stop --select 'tag:env=dev,kind=asg,account=111111111111' --wait >/dev/null && "$CURFEW" audit verify --output json"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["signatures_checked"], true, "{verified}");
    assert_eq!(verified["chain_problems"], serde_json::json!([]));
    // The stop's changes, in its delivery's chain (or chains), signed.
    assert!(verified["chains"].as_u64().unwrap() >= 1, "{verified}");
    assert!(verified["records"].as_u64().unwrap() >= 1, "{verified}");

    let down = local.curfew().args(["local", "down"]).output().unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(String::from_utf8_lossy(&down.stdout).contains("unset CURFEW_TABLE"));
    assert!(String::from_utf8_lossy(&down.stdout).contains("unset CURFEW_TASK_DLQ_URL"));
    assert!(String::from_utf8_lossy(&down.stdout).contains("unset CURFEW_NOTIFY_TOPIC_ARN"));
    assert!(String::from_utf8_lossy(&down.stdout).contains("unset CURFEW_AUDIT_KEY"));
    assert!(!alive(pid), "local down stops the emulator");
    assert!(!local.0.exists(), "local down removes the state");

    // Nothing left to stop is not an error.
    local.curfew().args(["local", "down"]).assert().success();
}

#[test]
fn local_down_never_signals_a_process_that_a_stale_pid_file_points_at() {
    let local = LocalDir::new();
    std::fs::create_dir_all(&local.0).unwrap();
    let mut bystander = Process::new("sleep").arg("60").spawn().unwrap();
    let pid = bystander.id();
    for file in ["pid", "poller.pid"] {
        std::fs::write(local.0.join(file), format!("{pid}\n")).unwrap();
    }
    let down = local.curfew().args(["local", "down"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&down.stderr);
    let still_running = alive(pid);
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(down.status.success(), "{stderr}");
    assert!(still_running, "local down signalled pid {pid}: {stderr}");
    assert!(stderr.contains("stale"), "{stderr}");
    assert!(!local.0.exists(), "local down removes the stale state");
}

#[test]
fn local_up_empty_provisions_a_hub_with_no_accounts() {
    let local = LocalDir::new();
    let out = sh(
        &local.0,
        r#"eval "$("$CURFEW" local up --empty 2>/dev/null)" && "$CURFEW" account list --output json && "$CURFEW" schedule list --output json"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<String>(),
        "[][]"
    );
    let pid = local.pid().unwrap();
    local.curfew().args(["local", "down"]).assert().success();
    assert!(!alive(pid));
}

#[test]
fn the_demo_runs_a_day_of_stop_and_start_and_leaves_nothing_running() {
    let out = curfew().args(["local", "demo"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("29 env=dev targets stopped at 19:00 and restored"),
        "{stdout}"
    );
    assert!(stdout.contains("1 kept awake by the override"), "{stdout}");
    assert!(
        stdout.contains("kept awake by an override until"),
        "{stdout}"
    );
    assert!(stdout.contains("dev-nights: asleep Mon-Fri 19:00-07:00, Sat-Sun all-day"));
    assert!(
        stdout.contains("Sat ########################"),
        "the week's grid"
    );
    assert!(
        stdout.contains("skipped: calendar demo-holidays"),
        "the holiday's fires, skipped: {stdout}"
    );
    let endpoint = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("moto on "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the demo prints its endpoint")
        .trim_start_matches("http://")
        .to_string();
    let pid: u32 = stdout
        .split_once("(pid ")
        .and_then(|(_, rest)| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .expect("the demo prints the emulator's pid");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !alive(pid),
        "the demo's emulator (pid {pid}) is still running"
    );
    assert!(
        std::net::TcpStream::connect(&endpoint).is_err(),
        "the demo's emulator still answers on {endpoint}"
    );
    assert!(
        !root().join(".curfew/demo/moto.log").exists(),
        "a successful demo leaves its emulator log behind"
    );
}
