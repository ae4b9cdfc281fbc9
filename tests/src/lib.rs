//! The integration harness: one moto server per test process (installed into the project's
//! virtualenv if missing, on a free loopback port, stopped when the process exits), and per
//! test a hub with its own table and queues and spoke accounts with their own random ids, so
//! tests never see each other's state.

pub mod around;
pub mod bench;
pub mod chaos;
pub mod cold_starts;
pub mod coldstart;
pub mod cost;
pub mod counting;
pub mod criterion_estimates;
pub mod item_size;
pub mod poll;
pub mod runtime_api;
pub mod scale;
pub mod sim;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use chrono::{DateTime, Utc};
use curfew_aws::dispatch::{Dispatcher, DrainReport};
use curfew_aws::hub::{build_hub, provision, HubConfig};
use curfew_aws::local::emulator::Emulator;
use curfew_aws::local::{seed_fleet, spoke_role_arn, FleetTarget};
use curfew_core::account::Account;
use curfew_core::clock::ManualClock;
use curfew_core::service::{Hub, Settings};
use curfew_core::target::{Sizes, TargetKind};

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

fn emulator_log() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/moto-{}.log", std::process::id()))
}

fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        Emulator::start(&root, &emulator_log(), Some(std::process::id()))
            .expect("moto server starts")
    })
}

/// Requests the emulator has answered so far in this process (one access-log line each).
pub fn emulator_requests() -> usize {
    std::fs::read_to_string(emulator_log())
        .map(|log| {
            log.lines()
                .filter(|l| l.contains("\" 200 ") || l.contains("\" 400 "))
                .count()
        })
        .unwrap_or(0)
}

/// Everything the emulator holds, as moto's `GET /moto-api/data.json` reports it (every model
/// instance by service and model, with its attributes: e.g. each STS assumed role's
/// credentials).
pub fn emulator_state() -> serde_json::Value {
    use std::io::{Read, Write};
    let endpoint = emulator()
        .endpoint
        .trim_start_matches("http://")
        .to_string();
    let mut stream = std::net::TcpStream::connect(&endpoint).expect("the emulator listens");
    // HTTP/1.0 with no keep-alive: the server closes the connection after the body.
    write!(
        stream,
        "GET /moto-api/data.json HTTP/1.0\r\nHost: {endpoint}\r\n\r\n"
    )
    .expect("the request is sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the response is read");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .expect("a response with a body");
    serde_json::from_str(body).expect("moto's state is JSON")
}

/// CPU time (user + system, seconds) the emulator has used so far in this process, read from
/// `/proc`: with the wall time of a stretch of work, how busy moto was during it. `None` before
/// the emulator started or where `/proc` does not say.
pub fn emulator_cpu_seconds() -> Option<f64> {
    // The server's own process: the emulator's `pid` is the watchdog that stops it with this
    // process, which is not its parent (reading the watchdog's children read only its
    // `sleep 1`: 0% busy).
    let server = EMULATOR.get()?.server_pid;
    let ticks = cpu_ticks(&std::fs::read_to_string(format!("/proc/{server}/stat")).ok()?)?;
    // /proc counts in USER_HZ, which Linux fixes at 100 for its user-facing interfaces.
    Some(ticks as f64 / 100.0)
}

/// utime + stime of a `/proc/PID/stat` line (fields 14 and 15; the command name in field 2 is
/// in parentheses and may hold spaces, so fields are counted after its closing one).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A valid enabled stop schedule: `cron` in UTC over `selector`, next firing at `next_fire`.
pub fn stop_schedule(
    name: &str,
    cron: &str,
    selector: &str,
    next_fire: DateTime<Utc>,
) -> curfew_core::schedule::Schedule {
    curfew_core::schedule::Schedule::try_from(curfew_core::schedule::ScheduleRecord {
        name: name.into(),
        cron: Some(cron.into()),
        tz: "UTC".into(),
        action: Some("stop".into()),
        asleep: None,
        selector: selector.into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: vec![],
        skip_calendars: vec![],
        awake_calendars: vec![],
        enforce: false,
        default_start: None,
        next_fire: Some(next_fire),
        hold: None,
    })
    .expect("a valid schedule")
}

/// A hub on the emulator, with a clock the test controls.
pub struct TestHub {
    /// SDK config pointing at the emulator with the hub's credentials.
    pub sdk: SdkConfig,
    /// Table and queues.
    pub config: HubConfig,
    /// The clock every handler reads.
    pub clock: Arc<ManualClock>,
    /// The handlers' dependencies.
    pub hub: Hub,
    /// Random spoke account ids of this test.
    pub accounts: Vec<String>,
}

/// `n` random 12-digit account ids.
pub fn random_accounts(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let v = uuid::Uuid::new_v4().as_u128() % 900_000_000_000 + 100_000_000_000;
            v.to_string()
        })
        .collect()
}

/// Starts (once per process) the emulator and provisions a fresh hub at `now`.
pub async fn spawn_hub(now: DateTime<Utc>, accounts: usize) -> TestHub {
    let endpoint = emulator().endpoint.clone();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = provision(&sdk, &prefix).await.expect("hub provisioned");
    let clock = Arc::new(ManualClock::new(now));
    let hub = build_hub(&sdk, &config, clock.clone(), Settings::default());
    TestHub {
        sdk,
        config,
        clock,
        hub,
        accounts: random_accounts(accounts),
    }
}

impl TestHub {
    /// Registers every test account with `regions`.
    pub async fn register_accounts(&self, regions: &[&str]) {
        let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
        for id in &self.accounts {
            let account =
                Account::new(id, &spoke_role_arn(id), Some("curfew-ext"), &regions).unwrap();
            self.hub.store.put_account(&account).await.unwrap();
        }
    }

    /// Creates `fleet` in the emulated spokes.
    pub async fn seed(&self, fleet: &[FleetTarget]) {
        seed_fleet(&self.sdk, fleet).await.expect("fleet seeded");
    }

    /// The largest billed size ([`item_size::item_size`]) of each kind of item in the state
    /// table now, by kind: the partition key's and sort key's first `#`-separated parts
    /// (`TARGET/LEASE`, `OP/TASK`, `AUDIT/REC`, ...), a counter stripe as `OP/COUNT`. A test's
    /// own table: read with a Scan, never on a hot path.
    pub async fn item_sizes(&self) -> BTreeMap<String, usize> {
        let client = aws_sdk_dynamodb::Client::new(&self.sdk);
        let mut sizes = BTreeMap::new();
        let mut pages = client
            .scan()
            .table_name(&self.config.table)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.expect("state table scanned");
            let part = |key: &str| {
                item.get(key)
                    .and_then(|v| v.as_s().ok())
                    .map(|v| v.split('#').next().unwrap_or_default().to_string())
                    .unwrap_or_default()
            };
            let stripe = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.contains("#COUNT#"));
            let kind = if stripe {
                "OP/COUNT".to_string()
            } else {
                format!("{}/{}", part("pk"), part("sk"))
            };
            let size = item_size::item_size(&item);
            let max = sizes.entry(kind).or_insert(0);
            *max = size.max(*max);
        }
        sizes
    }

    /// Adds `now` to `seen`, keeping the larger size of each kind.
    pub fn keep_largest(seen: &mut BTreeMap<String, usize>, now: BTreeMap<String, usize>) {
        for (kind, size) in now {
            let max = seen.entry(kind).or_insert(0);
            *max = size.max(*max);
        }
    }

    /// A dispatcher over this hub's queues.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(
            self.hub.clone(),
            aws_sdk_sqs::Client::new(&self.sdk),
            &self.config.router_queue_url,
            &self.config.task_queue_url,
            8,
        )
    }

    /// Drains both queues through the real router and worker.
    pub async fn drain(&self) -> DrainReport {
        self.dispatcher().drain().await.expect("queues drain")
    }

    async fn creds(&self, account: &str) -> Credentials {
        let c = aws_sdk_sts::Client::new(&self.sdk)
            .assume_role()
            .role_arn(spoke_role_arn(account))
            .role_session_name("curfew-test")
            .send()
            .await
            .unwrap()
            .credentials
            .unwrap();
        Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            None,
            "t",
        )
    }

    /// An Auto Scaling client in a spoke account, as the spoke's own operator would use.
    pub async fn autoscaling(&self, account: &str, region: &str) -> aws_sdk_autoscaling::Client {
        let conf = aws_sdk_autoscaling::config::Builder::from(&self.sdk)
            .region(Region::new(region.to_string()))
            .credentials_provider(self.creds(account).await)
            .build();
        aws_sdk_autoscaling::Client::from_conf(conf)
    }

    /// An EKS client in a spoke account.
    pub async fn eks(&self, account: &str, region: &str) -> aws_sdk_eks::Client {
        let conf = aws_sdk_eks::config::Builder::from(&self.sdk)
            .region(Region::new(region.to_string()))
            .credentials_provider(self.creds(account).await)
            .build();
        aws_sdk_eks::Client::from_conf(conf)
    }

    /// The real sizes of a fleet target, read from the emulator.
    pub async fn sizes(&self, t: &FleetTarget) -> Sizes {
        match t.kind {
            TargetKind::Asg => {
                let out = self
                    .autoscaling(&t.account, &t.region)
                    .await
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(&t.name)
                    .send()
                    .await
                    .unwrap();
                let g = &out.auto_scaling_groups()[0];
                Sizes::new(
                    g.min_size.unwrap(),
                    g.max_size.unwrap(),
                    g.desired_capacity.unwrap(),
                )
            }
            TargetKind::Nodegroup => {
                let out = self
                    .eks(&t.account, &t.region)
                    .await
                    .describe_nodegroup()
                    .cluster_name(t.cluster.as_deref().unwrap())
                    .nodegroup_name(&t.name)
                    .send()
                    .await
                    .unwrap();
                let s = out.nodegroup.unwrap().scaling_config.unwrap();
                Sizes::new(
                    s.min_size.unwrap(),
                    s.max_size.unwrap(),
                    s.desired_size.unwrap(),
                )
            }
        }
    }

    /// Every fleet target's real sizes, by key.
    pub async fn fleet_sizes(&self, fleet: &[FleetTarget]) -> BTreeMap<String, Sizes> {
        let mut sizes = BTreeMap::new();
        for t in fleet {
            sizes.insert(key(t), self.sizes(t).await);
        }
        sizes
    }

    /// Sets a target's sizes by hand, as a spoke operator would.
    pub async fn set_by_hand(&self, t: &FleetTarget, s: Sizes) {
        match t.kind {
            TargetKind::Asg => {
                self.autoscaling(&t.account, &t.region)
                    .await
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&t.name)
                    .min_size(s.min)
                    .max_size(s.max)
                    .desired_capacity(s.desired)
                    .send()
                    .await
                    .unwrap();
            }
            TargetKind::Nodegroup => {
                self.eks(&t.account, &t.region)
                    .await
                    .update_nodegroup_config()
                    .cluster_name(t.cluster.as_deref().unwrap())
                    .nodegroup_name(&t.name)
                    .scaling_config(
                        aws_sdk_eks::types::NodegroupScalingConfig::builder()
                            .min_size(s.min)
                            .max_size(s.max)
                            .desired_size(s.desired)
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Every item in the state table (test assertions only: production code never scans).
    pub async fn table_items(&self) -> usize {
        let out = aws_sdk_dynamodb::Client::new(&self.sdk)
            .scan()
            .table_name(&self.config.table)
            .send()
            .await
            .unwrap();
        out.items.unwrap_or_default().len()
    }
}

/// The curfew target key of a fleet target.
pub fn key(t: &FleetTarget) -> String {
    t.target().key()
}

/// A target's recorded changes of the last 30 days, oldest first: its own chain's and its
/// changes in the deliveries' records that hold them with other targets'
/// (`audit_list::target_records`, as `curfew audit list --target` reads them), each chain they
/// are in verified.
pub async fn trail_of(t: &TestHub, target: &FleetTarget) -> Vec<curfew_core::trail::AuditEntry> {
    use curfew_core::clock::Clock;
    use curfew_core::trail::verify_chain;

    let now = t.clock.now();
    let store = t.hub.store.as_ref();
    let records = curfew_core::audit_list::target_records(
        store,
        &key(target),
        now - chrono::Duration::days(30),
        now,
    )
    .await
    .unwrap();
    let chains: std::collections::BTreeSet<String> =
        records.iter().map(|r| r.chain.clone()).collect();
    for chain in chains {
        let all = store.audit_chain(&chain).await.unwrap();
        let head = store.audit_head(&chain).await.unwrap();
        assert_eq!(verify_chain(&chain, &all, head.as_ref(), None), Ok(()));
    }
    let mut entries: Vec<_> = records
        .iter()
        .filter_map(|r| r.entries())
        .flatten()
        .filter(|e| e.subject == key(target))
        .collect();
    entries.sort_by_key(|e| e.at);
    entries
}

/// True when `t` carries `tag:env=dev` (on itself or its cluster).
pub fn is_dev(t: &FleetTarget) -> bool {
    t.target().tag("env") == Some("dev")
}

impl TestHub {
    /// Plays a delivery of the stop task `msg` that took the target's lease, saved `before` as
    /// its baseline with the change marked on the lease (the task shows APPLYING), scaled the
    /// target to 0/0/0, and crashed before recording the result. Returns the lease it holds.
    pub async fn crash_after_scaling(
        &self,
        msg: &curfew_core::operation::TaskMessage,
        before: Sizes,
    ) -> curfew_core::ports::LeaseToken {
        use curfew_core::clock::Clock;
        use curfew_core::ports::{Baseline, ChangeInFlight, Lease, LeaseToken};
        let (key, now) = (msg.target.key(), self.clock.now());
        let lease = LeaseToken::new(&msg.op_id, msg.action);
        let store = &self.hub.store;
        let granted = store
            .acquire_lease(
                &key,
                &lease,
                msg.op_created_at,
                now,
                self.hub.settings.lease_ttl,
            )
            .await
            .unwrap();
        assert!(matches!(granted, Lease::Acquired { .. }), "{granted:?}");
        let baseline = Baseline {
            target_key: key.clone(),
            sizes: before,
            op_id: msg.op_id.clone(),
            saved_at: now,
            held: Default::default(),
            ca_tags: Vec::new(),
            cluster_hold: false,
        };
        let stopped = Sizes::new(0, 0, 0);
        let change = ChangeInFlight {
            before,
            planned: stopped,
            at: now,
        };
        assert!(store
            .save_baseline(&baseline, &lease, false, &change)
            .await
            .unwrap());
        self.hub
            .spokes
            .set_sizes(&msg.role, &msg.target, stopped)
            .await
            .unwrap();
        lease
    }

    /// Routes every queued operation, plans each account, then takes every task message off
    /// the task queue without working it, one per target of each chunk (the test delivers them
    /// itself).
    pub async fn route_and_take_tasks(&self) -> Vec<curfew_core::operation::TaskMessage> {
        let mut router = self.dispatcher();
        router.work_tasks = false;
        router.drain().await.expect("router drains");
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut messages = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&self.config.task_queue_url)
                .max_number_of_messages(curfew_aws::sqs::MAX_BATCH as i32)
                .send()
                .await
                .unwrap();
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return messages;
            }
            for m in batch {
                match curfew_core::chunk::read_body(m.body().unwrap()).unwrap() {
                    // Planned as the router planned before plans went to the workers: every
                    // chunk sent to the task queue (the next receive takes them), none worked.
                    curfew_core::chunk::TaskBody::Plan(plan) => {
                        curfew_core::service::router::plan_account(
                            &self.hub,
                            &plan.op_id,
                            &plan.shards,
                        )
                        .await
                        .unwrap()
                    }
                    curfew_core::chunk::TaskBody::Targets(tasks) => messages.extend(tasks),
                }
                sqs.delete_message()
                    .queue_url(&self.config.task_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

impl TestHub {
    /// Invokes the router with a direct-invocation payload (as the router Lambda does),
    /// drains the queues, and returns the finished operation.
    pub async fn run(&self, payload: serde_json::Value) -> curfew_core::operation::Operation {
        use curfew_core::service::invocation::{invoke, Invocation};
        let invocation = Invocation::parse(&payload).expect("a valid payload");
        let response = invoke(&self.hub, invocation)
            .await
            .expect("the invocation runs");
        self.drain().await;
        self.hub
            .store
            .get_operation(&response.operation_id)
            .await
            .unwrap()
            .expect("the operation exists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `curfew-bench` sets a wave's requests against how busy moto was: the CPU time must be
    /// the server's (it read 0% while it was read from the watchdog's children).
    #[test]
    fn the_emulators_cpu_time_is_its_servers_and_grows_as_it_answers() {
        emulator();
        let start = emulator_cpu_seconds().expect("read from /proc");
        // Each answer (moto's whole state as JSON) costs moto more than a clock tick.
        for _ in 0..10 {
            emulator_state();
            if emulator_cpu_seconds().expect("read from /proc") > start {
                return;
            }
        }
        panic!("moto answered 10 requests and its CPU time did not grow from {start} s");
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name_even_with_spaces_in_it() {
        let stat = "22710 (python moto) S 22709 22710 22701 0 -1 4194560 2550 0 0 0 3380 260 0 0 20 0 3 0 1851 1 1";
        assert_eq!(cpu_ticks(stat), Some(3640));
        assert_eq!(cpu_ticks("22710 (python) S 1 2"), None);
    }
}
