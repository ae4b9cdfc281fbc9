//! Local mode: `curfew local up | down | run | demo`. The emulator (moto on 127.0.0.1), a hub
//! provisioned on it, three spoke accounts and a seeded demo fleet.

pub mod demo;
pub mod poll;
mod state;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use aws_config::SdkConfig;
use curfew_aws::hub::HubConfig;
use curfew_aws::local::emulator::{self, Emulator};
use curfew_aws::local::{demo_fleet, seed_fleet, spoke_role_arn, FleetTarget};
use curfew_aws::DynamoStore;
use curfew_core::account::Account;
use curfew_core::ports::StateStore;

use crate::connect::{self, LOCAL_REGION};
use crate::output::{self, outln};
use state::{LocalState, Status};

/// The demo's spoke accounts.
pub const DEMO_ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];
/// The regions curfew manages in each of them.
pub const DEMO_REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// The checkout curfew runs from: the folder holding `scripts/moto-venv.sh`, found above the
/// current directory, else above the binary (`target/debug/curfew` in the default target
/// folder), else the checkout it was built from (a binary built with `CARGO_TARGET_DIR`
/// elsewhere, run from outside the checkout).
pub fn project_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    emulator::project_root(&cwd)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| emulator::project_root(&exe))
        })
        .or_else(|| emulator::project_root(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .ok_or_else(|| {
            anyhow!(
                "cannot find the curfew checkout (a folder with scripts/moto-venv.sh) above {}; run curfew from inside it",
                cwd.display()
            )
        })
}

/// Registers the demo accounts, each reached through `curfew-spoke` in both demo regions.
pub async fn register_demo_accounts(store: &dyn StateStore) -> Result<Vec<Account>> {
    let regions: Vec<String> = DEMO_REGIONS.iter().map(|r| r.to_string()).collect();
    let mut accounts = Vec::new();
    for id in DEMO_ACCOUNTS {
        let account = Account::new(id, &spoke_role_arn(id), None, &regions)
            .context("building a demo account")?;
        store
            .put_account(&account)
            .await
            .with_context(|| format!("registering account {id}"))?;
        accounts.push(account);
    }
    Ok(accounts)
}

/// Seeds 60 targets: in each account and region six ASGs (half env=dev) and two clusters
/// (`dev-cluster` tagged env=dev, `prod-cluster` env=prod) with two node groups each.
pub async fn seed_demo_fleet(sdk: &SdkConfig) -> Result<Vec<FleetTarget>> {
    let accounts: Vec<String> = DEMO_ACCOUNTS.iter().map(|a| a.to_string()).collect();
    let regions: Vec<String> = DEMO_REGIONS.iter().map(|r| r.to_string()).collect();
    let fleet = demo_fleet(&accounts, &regions, 6, 2);
    seed_fleet(sdk, &fleet)
        .await
        .context("seeding the demo fleet")?;
    Ok(fleet)
}

/// A value safe to paste after `export NAME=` unquoted, or single-quoted.
fn shell_value(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":/._-@%+=,".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// The variables `local up` exports, in order (new ones go at the end: scripts may read the
/// lines by position).
pub const EXPORTED: [&str; 10] = [
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "CURFEW_TABLE",
    "CURFEW_ROUTER_QUEUE_URL",
    "CURFEW_TASK_QUEUE_URL",
    "CURFEW_TASK_DLQ_URL",
    "CURFEW_NOTIFY_TOPIC_ARN",
    "CURFEW_AUDIT_KEY",
];

/// A fresh audit key for one local hub (64 hex digits from two random UUIDs): the local
/// dispatcher and the CLI sign the audit trail's chain heads with it, as the hub's Secrets
/// Manager key does in AWS, so `curfew audit verify` checks signatures locally too.
fn local_audit_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn exports(endpoint: &str, hub: &HubConfig, audit_key: &str) -> String {
    let values = [
        Some(endpoint),
        Some(LOCAL_REGION),
        Some("test"),
        Some("test"),
        Some(hub.table.as_str()),
        Some(hub.router_queue_url.as_str()),
        Some(hub.task_queue_url.as_str()),
        hub.task_dlq_url.as_deref(),
        hub.notify_topic_arn.as_deref(),
        Some(audit_key),
    ];
    EXPORTED
        .iter()
        .zip(values)
        .filter_map(|(name, value)| Some(format!("export {name}={}\n", shell_value(value?))))
        .collect()
}

/// Starts `curfew local run` in the background with the exported settings, so schedules fire
/// on the real clock as EventBridge would fire the poller in AWS. Returns its pid.
fn start_poller(state: &LocalState, exports: &str) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the curfew binary")?;
    let log_path = state.dir().join("poller.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = std::process::Command::new(exe);
    command.args(["local", "run"]);
    for line in exports.lines() {
        if let Some((name, value)) = line.trim_start_matches("export ").split_once('=') {
            command.env(name, value.trim_matches('\''));
        }
    }
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: it outlives this command, like the emulator.
        .process_group(0)
        .spawn()
        .context("starting the background poller")?;
    let pid = child.id();
    std::fs::write(state.dir().join("poller.pid"), format!("{pid}\n"))
        .context("recording the poller's pid")?;
    Ok(pid)
}

/// Stops the background poller recorded in the state directory, if any (by pid, and only if
/// that pid is still a `curfew local run`: a stale file's pid may belong to anything now).
fn stop_poller(dir: &std::path::Path) {
    let path = dir.join("poller.pid");
    let pid = std::fs::read_to_string(&path)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    if let Some(pid) = pid {
        if state::is_poller(pid) {
            emulator::stop_pid(pid);
            eprintln!("curfew local: background poller (pid {pid}) stopped");
        } else {
            eprintln!(
                "curfew local: pid {pid} is no longer the background poller; removed the stale {} (nothing signalled)",
                path.display()
            );
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// `curfew local up`: prints only shell exports on stdout; progress goes to stderr.
pub async fn up(empty: bool, poller: bool, local_dir: Option<PathBuf>) -> Result<()> {
    let root = project_root()?;
    let state = LocalState::new(local_dir.unwrap_or_else(|| root.join(".curfew/local")));
    match state.status() {
        Status::Running { pid, exports } => {
            eprintln!("curfew local: already running (pid {pid}); its settings:");
            return output::write_stdout(format_args!("{exports}"));
        }
        Status::Unresponsive { pid } => {
            return Err(anyhow!(
                "the emulator started earlier (pid {pid}) does not answer; stop it with `curfew local down` (log: {})",
                state.log_path().display()
            ))
        }
        Status::Stopped => {
            stop_poller(state.dir());
            state.remove()?
        }
    }
    eprintln!(
        "curfew local: starting the AWS emulator (moto; the first run installs it into .venv-moto)"
    );
    let log = state.log_path();
    let mut emulator = tokio::task::spawn_blocking(move || Emulator::start(&root, &log, None))
        .await
        .context("starting the emulator")??;
    eprintln!(
        "curfew local: moto on {} (pid {})",
        emulator.endpoint, emulator.pid
    );
    // Until the state is recorded, a failure stops the emulator (stop_on_drop): nothing is
    // left running that `local down` would not know about.
    let sdk = connect::sdk_config(Some(&emulator.endpoint), Some(LOCAL_REGION)).await;
    let mut hub = curfew_aws::hub::provision(&sdk, "curfew")
        .await
        .context("provisioning the hub's table and queues")?;
    let topic = curfew_aws::hub::provision_topic(&sdk, "curfew")
        .await
        .context("creating the notification topic")?;
    eprintln!(
        "curfew local: hub table {}, queues and notification topic {topic} ready",
        hub.table
    );
    hub.notify_topic_arn = Some(topic);
    if !empty {
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &hub.table);
        let accounts = register_demo_accounts(&store).await?;
        let fleet = seed_demo_fleet(&sdk).await?;
        eprintln!(
            "curfew local: {} spoke accounts registered, {} targets seeded (regions {})",
            accounts.len(),
            fleet.len(),
            DEMO_REGIONS.join(",")
        );
    }
    let text = exports(&emulator.endpoint, &hub, &local_audit_key());
    state.record(emulator.pid, &text)?;
    if poller {
        let pid = start_poller(&state, &text)?;
        eprintln!("curfew local: background poller (pid {pid}) fires schedules every minute");
    }
    emulator.stop_on_drop = false;
    eprintln!("curfew local: ready; stop it with: eval \"$(curfew local down)\"");
    output::write_stdout(format_args!("{text}"))
}

/// `curfew local down`: stops the emulator by its recorded pid (never by name), removes the
/// state, and prints `unset` lines for the exported variables.
pub fn down(local_dir: Option<PathBuf>) -> Result<()> {
    let dir = match local_dir {
        Some(dir) => dir,
        None => project_root()?.join(".curfew/local"),
    };
    let state = LocalState::new(dir);
    stop_poller(state.dir());
    match state.status() {
        Status::Running { pid, .. } | Status::Unresponsive { pid } => {
            if state::stop(pid) {
                eprintln!("curfew local: emulator (pid {pid}) stopped");
            } else {
                eprintln!("curfew local: pid {pid} is no longer the emulator (nothing signalled)");
            }
        }
        Status::Stopped => match state.recorded_pid() {
            Some(pid) => eprintln!(
                "curfew local: pid {pid} is no longer the emulator; removed the stale state in {} (nothing signalled)",
                state.dir().display()
            ),
            None => eprintln!("curfew local: nothing running in {}", state.dir().display()),
        },
    }
    state.remove()?;
    for name in EXPORTED {
        outln!("unset {name}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_one_shell_line_each() {
        let hub = HubConfig {
            table: "curfew-state".into(),
            router_queue_url: "http://127.0.0.1:5000/123456789012/curfew-router".into(),
            task_queue_url: "http://127.0.0.1:5000/123456789012/curfew-tasks".into(),
            task_dlq_url: Some("http://127.0.0.1:5000/123456789012/curfew-tasks-dlq".into()),
            notify_topic_arn: Some("arn:aws:sns:eu-west-1:123456789012:curfew-notices".into()),
        };
        let text = exports("http://127.0.0.1:5000", &hub, &local_audit_key());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10);
        let key = lines[9].strip_prefix("export CURFEW_AUDIT_KEY=").unwrap();
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
        assert_eq!(lines[0], "export AWS_ENDPOINT_URL=http://127.0.0.1:5000");
        assert_eq!(lines[4], "export CURFEW_TABLE=curfew-state");
        assert_eq!(
            lines[7],
            "export CURFEW_TASK_DLQ_URL=http://127.0.0.1:5000/123456789012/curfew-tasks-dlq"
        );
        assert_eq!(
            lines[8],
            "export CURFEW_NOTIFY_TOPIC_ARN=arn:aws:sns:eu-west-1:123456789012:curfew-notices"
        );
        assert_eq!(shell_value("it's"), r"'it'\''s'");
    }
}
