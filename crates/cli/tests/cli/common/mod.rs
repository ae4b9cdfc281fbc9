//! Shared by the CLI tests: the `curfew` binary with a clean environment, one emulator per test
//! binary, and isolated hubs (randomly named table and queues, random spoke accounts).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use curfew_aws::hub::HubConfig;
use curfew_aws::local::emulator::{project_root, Emulator};
use curfew_aws::local::{demo_fleet, seed_fleet, spoke_role_arn};
use serde_json::Value;

/// `curfew` with none of the developer's AWS or curfew settings, and no AWS profile files.
pub fn curfew() -> Command {
    let mut cmd = Command::cargo_bin("curfew").expect("the curfew binary is built");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("AWS_") || name.starts_with("CURFEW_") || name == "RUST_LOG" {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/curfew-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/curfew-test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// The checkout (holding scripts/moto-venv.sh).
pub fn root() -> PathBuf {
    project_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("tests run inside the checkout")
}

/// One moto server for this test binary; its watchdog stops it when the binary exits.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        let pid = std::process::id();
        let log = root().join(format!(".curfew/test/cli-{pid}.log"));
        Emulator::start(&root(), &log, Some(pid)).expect("moto starts")
    })
}

/// Runs a future to completion on a fresh runtime (tests are synchronous).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A random 12-digit account id, so fleets of tests sharing the emulator never collide.
pub fn random_account() -> String {
    format!("9{:011}", uuid::Uuid::new_v4().as_u128() % 100_000_000_000)
}

/// A hub of its own on the shared emulator.
pub struct TestHub {
    /// The emulator endpoint.
    pub endpoint: String,
    /// Table and queues.
    pub config: HubConfig,
}

impl TestHub {
    /// Provisions a table and queues with a unique prefix.
    pub fn new() -> TestHub {
        let endpoint = emulator().endpoint.clone();
        let prefix = format!("t{}", &unique()[20..]);
        let config = block_on(async {
            let sdk = sdk(&endpoint).await;
            curfew_aws::hub::provision(&sdk, &prefix).await
        })
        .expect("provisioning a test hub");
        TestHub { endpoint, config }
    }

    /// A hub with one random spoke account registered (through the CLI) in eu-west-1 holding
    /// `asgs` ASGs (half env=dev) and a dev and a prod cluster with `nodegroups` node groups.
    pub fn with_fleet(asgs: usize, nodegroups: usize) -> (TestHub, String) {
        let hub = TestHub::new();
        let account = random_account();
        hub.cmd()
            .args([
                "account",
                "add",
                &account,
                "--role",
                &spoke_role_arn(&account),
            ])
            .args(["--regions", "eu-west-1"])
            .assert()
            .success();
        let fleet = demo_fleet(
            std::slice::from_ref(&account),
            &["eu-west-1".to_string()],
            asgs,
            nodegroups,
        );
        block_on(async {
            let sdk = sdk(&hub.endpoint).await;
            seed_fleet(&sdk, &fleet).await
        })
        .expect("seeding a test fleet");
        (hub, account)
    }

    /// `curfew` pointed at this hub, as after `eval "$(curfew local up)"`.
    pub fn cmd(&self) -> Command {
        let mut cmd = curfew();
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("CURFEW_TABLE", &self.config.table)
            .env("CURFEW_ROUTER_QUEUE_URL", &self.config.router_queue_url)
            .env("CURFEW_TASK_QUEUE_URL", &self.config.task_queue_url);
        if let Some(dlq) = &self.config.task_dlq_url {
            cmd.env("CURFEW_TASK_DLQ_URL", dlq);
        }
        cmd
    }

    /// Runs `args` with `--output json`, expects success, and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self
            .cmd()
            .args(args)
            .args(["--output", "json"])
            .output()
            .expect("curfew runs");
        assert!(
            out.status.success(),
            "curfew {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "curfew {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// The SDK configuration of a test talking to the emulator.
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test",
            "test",
            None,
            None,
            "curfew-test",
        ))
        .load()
        .await
}

/// Asserts a failure: exit `code`, one line on stderr starting with `error: ` and containing
/// every needle, nothing on stdout. Returns the line.
pub fn assert_fails(cmd: &mut Command, code: i32, needles: &[&str]) -> String {
    let out = cmd.output().expect("curfew runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} not in: {stderr}");
    }
    lines[0].to_string()
}
