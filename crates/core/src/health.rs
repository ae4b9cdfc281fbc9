//! `curfew health`: what the hub records about itself (the poller's heartbeat, the outcome of
//! the last contact with each spoke account), the ports it is read through, and the pure
//! traffic-light rules that turn plain readings into checks.
//!
//! The rules take data, never clients: the command line gathers the readings (state table,
//! queues) and hands them over, so every light is decided, and tested, without I/O.
//!
//! ```
//! use curfew_core::health::{schedules_check, HealthReport, Light};
//! use curfew_core::schedule::{BrokenSchedule, ScheduleList};
//!
//! let list = ScheduleList {
//!     schedules: vec![],
//!     broken: vec![BrokenSchedule { name: "moon".into(), problem: "unknown time zone".into() }],
//! };
//! let report = HealthReport::new(vec![schedules_check(&list)]);
//! assert_eq!(report.status, Light::Red);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::clock::Clock;
use crate::operation::Operation;
use crate::ports::{ErrorKind, PortError, PortResult};
use crate::schedule::ScheduleList;

/// The poller's heartbeat: written once per tick (one small item), so `curfew health` can tell
/// a stopped poller from a quiet one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollerTick {
    /// When the tick ran (the poller's clock).
    pub at: DateTime<Utc>,
    /// How late the tick was on the oldest due fire it handled (`at` - that fire time); zero
    /// when nothing was due.
    pub lag_seconds: i64,
    /// Due schedules the tick handled.
    pub due: u32,
}

impl PollerTick {
    /// The heartbeat of a tick at `at` that handled `due` schedules, the oldest due at
    /// `oldest_due`.
    pub fn new(at: DateTime<Utc>, due: usize, oldest_due: Option<DateTime<Utc>>) -> PollerTick {
        PollerTick {
            at,
            lag_seconds: oldest_due.map_or(0, |fire| (at - fire).num_seconds().max(0)),
            due: u32::try_from(due).unwrap_or(u32::MAX),
        }
    }
}

/// How the last attempt to reach a spoke account (assuming its role) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactOutcome {
    /// The role was assumed.
    Reachable,
    /// STS refused (the trust policy, the ExternalId, or the role itself is wrong).
    Denied,
    /// Anything else (network, throttling that outlasted the retries, no credentials).
    Failed,
}

/// The outcome of the last contact with one spoke account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountContact {
    /// The spoke account id.
    pub account: String,
    /// When.
    pub at: DateTime<Utc>,
    /// How it ended.
    pub outcome: ContactOutcome,
    /// The error, when it was not reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the hub records about itself for `curfew health`, in the state table.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Replaces the poller's heartbeat (one item: one PutItem per tick).
    async fn record_poller_tick(&self, tick: &PollerTick) -> PortResult<()>;
    /// The poller's last heartbeat, if it ever ticked.
    async fn poller_tick(&self) -> PortResult<Option<PollerTick>>;
    /// Replaces the account's last-contact record.
    async fn record_account_contact(&self, contact: &AccountContact) -> PortResult<()>;
    /// Every account's last-contact record (a Query on one partition, not a Scan).
    async fn account_contacts(&self) -> PortResult<Vec<AccountContact>>;
}

/// How often at most one execution environment records a failed contact with an account that
/// keeps failing: each task for an unreachable account tries (and fails) to assume its role,
/// and one write per task would cost more than the answer is worth.
pub const FAILED_CONTACT_INTERVAL: Duration = Duration::minutes(1);

/// Records assume-role outcomes per account, cheaply: a success is recorded each time (the
/// session cache assumes a role about once an hour per execution environment), a failure once
/// per [`FAILED_CONTACT_INTERVAL`] while it keeps failing, and at once when it follows a success.
pub struct ContactRecorder {
    store: Arc<dyn HealthStore>,
    clock: Arc<dyn Clock>,
    /// Per account, the last outcome recorded here and when.
    recorded: Mutex<HashMap<String, (ContactOutcome, DateTime<Utc>)>>,
}

impl ContactRecorder {
    /// A recorder writing to `store`, stamping contacts with `clock`.
    pub fn new(store: Arc<dyn HealthStore>, clock: Arc<dyn Clock>) -> ContactRecorder {
        ContactRecorder {
            store,
            clock,
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Records that `account`'s role was assumed, or why it was not. A failed write is logged,
    /// not returned: the contact's own outcome is what the caller acts on, and a missing record
    /// shows in `curfew health` as an account never contacted.
    pub async fn record(&self, account: &str, outcome: Result<(), &PortError>) {
        let now = self.clock.now();
        let (outcome, error) = match outcome {
            Ok(()) => (ContactOutcome::Reachable, None),
            Err(e) if e.kind == ErrorKind::AccessDenied => {
                (ContactOutcome::Denied, Some(e.to_string()))
            }
            Err(e) => (ContactOutcome::Failed, Some(e.to_string())),
        };
        {
            let mut recorded = self
                .recorded
                .lock()
                .expect("contact recorder lock poisoned");
            if let Some((last, at)) = recorded.get(account) {
                if outcome != ContactOutcome::Reachable
                    && *last == outcome
                    && now - *at < FAILED_CONTACT_INTERVAL
                {
                    return;
                }
            }
            recorded.insert(account.to_string(), (outcome, now));
        }
        let contact = AccountContact {
            account: account.to_string(),
            at: now,
            outcome,
            error,
        };
        if let Err(e) = self.store.record_account_contact(&contact).await {
            tracing::warn!(account, error = %e, "recording the account's last contact failed");
        }
    }
}

/// The depth of one SQS queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Waiting to be received (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Received, not yet deleted (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Sent with a delay not yet passed (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
}

impl QueueDepth {
    /// Every message in the queue, whatever its state.
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// Where a queue's failed messages go, as its redrive policy says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadLetters {
    /// The queue has no redrive policy: a message that keeps failing is received again and
    /// again until it expires, and nobody is told.
    NoRedrivePolicy,
    /// The dead-letter queue named by the policy.
    Queue {
        /// Its URL.
        url: String,
        /// Its depth: every message in it is one the hub gave up on.
        depth: QueueDepth,
        /// Receives before a message is moved there (`maxReceiveCount`).
        max_receives: Option<u32>,
    },
    /// The policy names a queue that cannot be found.
    Missing {
        /// The `deadLetterTargetArn`.
        arn: String,
        /// Why it could not be found.
        problem: String,
    },
}

/// One queue as `curfew health` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueReading {
    /// The queue's URL.
    pub url: String,
    /// Its depth.
    pub depth: QueueDepth,
    /// Its dead-letter queue.
    pub dead_letters: DeadLetters,
}

/// Reads a queue's depth and its dead-letter queue's, the latter found from the queue's own
/// redrive policy (so the report follows the deployed wiring, not a configured guess).
#[async_trait]
pub trait QueueInspector: Send + Sync {
    /// The queue at `url` and its dead-letter queue.
    async fn inspect(&self, url: &str) -> PortResult<QueueReading>;
}

/// A traffic light.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Light {
    /// Nothing to do.
    Green,
    /// Worth a look; nothing is failing yet.
    Amber,
    /// Something needs a person.
    Red,
}

impl std::fmt::Display for Light {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Light::Green => "green",
            Light::Amber => "amber",
            Light::Red => "red",
        })
    }
}

/// One check's light, a line for people and the data behind it for scripts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Which check (`router-queue`, `task-queue`, `poller`, `accounts`, `operations`,
    /// `schedules`).
    pub check: String,
    /// Its light.
    pub status: Light,
    /// What it found, in one line (lines for each item at fault follow it).
    pub detail: String,
    /// The readings, flattened into the check's JSON object.
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

impl Check {
    fn new(check: &str, status: Light, detail: impl Into<String>, data: Value) -> Check {
        Check {
            check: check.to_string(),
            status,
            detail: detail.into(),
            data: match data {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }
}

/// Every check and the worst light among them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthReport {
    /// The worst light of all checks (green when there are none).
    pub status: Light,
    /// The checks, in the order they were made.
    pub checks: Vec<Check>,
}

impl HealthReport {
    /// The report of `checks`.
    pub fn new(checks: Vec<Check>) -> HealthReport {
        HealthReport {
            status: checks
                .iter()
                .map(|c| c.status)
                .max()
                .unwrap_or(Light::Green),
            checks,
        }
    }

    /// The red checks.
    pub fn red(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Light::Red)
    }
}

/// A check whose readings could not be taken: red, since nobody can tell it is fine.
pub fn unreadable(check: &str, error: &PortError) -> Check {
    Check::new(
        check,
        Light::Red,
        format!("could not be read: {error}"),
        json!({ "error": error.to_string() }),
    )
}

/// Which of the hub's queues a reading is of: what its dead letters are, and what to do about
/// them, differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubQueue {
    /// Operations and shards to fan out.
    Router,
    /// One message per target.
    Task,
}

impl HubQueue {
    /// The check's name.
    pub fn check(self) -> &'static str {
        match self {
            HubQueue::Router => "router-queue",
            HubQueue::Task => "task-queue",
        }
    }

    fn dead_letter_hint(self) -> &'static str {
        match self {
            HubQueue::Task => "see `curfew dlq list`, then `curfew dlq redrive` once fixed",
            HubQueue::Router => {
                "operations the router gave up on: see docs/OPERATIONS.md, \"Health\""
            }
        }
    }
}

/// A queue's light: red when its dead-letter queue holds any message (or cannot be found),
/// amber when it has no redrive policy, green otherwise. Depth alone is not a fault: a wave
/// fills the task queue by design.
pub fn queue_check(queue: HubQueue, reading: &QueueReading) -> Check {
    let depth = reading.depth;
    let waiting = format!(
        "{} waiting, {} in flight, {} delayed",
        depth.visible, depth.in_flight, depth.delayed
    );
    let mut data = json!({
        "queue": reading.url,
        "visible": depth.visible,
        "in_flight": depth.in_flight,
        "delayed": depth.delayed,
        "dead_letter_queue": null,
        "dead_letters": null,
    });
    let (status, detail) = match &reading.dead_letters {
        DeadLetters::NoRedrivePolicy => (
            Light::Amber,
            format!(
                "{waiting}; no redrive policy: a message that keeps failing is retried until it \
                 expires and is never set aside"
            ),
        ),
        DeadLetters::Missing { arn, problem } => {
            data["dead_letter_queue"] = json!(arn);
            (
                Light::Red,
                format!("{waiting}; its dead-letter queue {arn} cannot be found: {problem}"),
            )
        }
        DeadLetters::Queue {
            url, depth: dlq, ..
        } => {
            data["dead_letter_queue"] = json!(url);
            data["dead_letters"] = json!(dlq.total());
            if dlq.total() > 0 {
                (
                    Light::Red,
                    format!(
                        "{} in the dead-letter queue {url}: {}",
                        count(dlq.total(), "message"),
                        queue.dead_letter_hint()
                    ),
                )
            } else {
                (Light::Green, format!("{waiting}; dead-letter queue empty"))
            }
        }
    };
    Check::new(queue.check(), status, detail, data)
}

/// The poller's light. Red when its last tick is older than `bound` (or it never ticked) while
/// any schedule is enabled: those schedules are not firing. Amber when the same holds with no
/// schedule enabled (nothing is missed yet), or when its last tick ran more than `bound` late
/// on a due fire. Green otherwise.
pub fn poller_check(
    last: Option<&PollerTick>,
    enabled_schedules: usize,
    now: DateTime<Utc>,
    bound: Duration,
) -> Check {
    let enabled = count(enabled_schedules as u64, "enabled schedule");
    let mut data = json!({
        "last_tick": last.map(|t| t.at),
        "lag_seconds": last.map(|t| t.lag_seconds),
        "enabled_schedules": enabled_schedules,
    });
    let Some(tick) = last else {
        let (status, detail) = if enabled_schedules > 0 {
            (
                Light::Red,
                format!("the poller has never ticked, and there are {enabled}: none fires"),
            )
        } else {
            (
                Light::Amber,
                "the poller has never ticked (no schedule is enabled, so nothing is missed yet)"
                    .to_string(),
            )
        };
        return Check::new("poller", status, detail, data);
    };
    let age = (now - tick.at).max(Duration::zero());
    data["age_seconds"] = json!(age.num_seconds());
    let lag = Duration::seconds(tick.lag_seconds);
    let (status, detail) = if age > bound && enabled_schedules > 0 {
        (
            Light::Red,
            format!(
                "last tick {} ago (bound {}), with {enabled}: schedules are not firing",
                human(age),
                human(bound)
            ),
        )
    } else if age > bound {
        (
            Light::Amber,
            format!(
                "last tick {} ago (bound {}); no schedule is enabled, so nothing is missed yet",
                human(age),
                human(bound)
            ),
        )
    } else if lag > bound {
        (
            Light::Amber,
            format!(
                "last tick {} ago, {} late on its oldest due fire (bound {})",
                human(age),
                human(lag),
                human(bound)
            ),
        )
    } else {
        let lag = if tick.due == 0 {
            "nothing was due".to_string()
        } else {
            format!("{} late on its oldest due fire", human(lag))
        };
        (
            Light::Green,
            format!("last tick {} ago, {lag}; {enabled}", human(age)),
        )
    };
    Check::new("poller", status, detail, data)
}

/// The spoke accounts' light: red for an account whose last contact failed, amber for one
/// never contacted (or when none is registered), green when every account was reachable.
/// Contacts of accounts no longer registered are ignored.
pub fn accounts_check(accounts: &[String], contacts: &[AccountContact]) -> Check {
    let last: BTreeMap<&str, &AccountContact> =
        contacts.iter().map(|c| (c.account.as_str(), c)).collect();
    let mut unreachable = Vec::new();
    let mut never = Vec::new();
    for account in accounts {
        match last.get(account.as_str()) {
            None => never.push(account.as_str()),
            Some(c) if c.outcome != ContactOutcome::Reachable => unreachable.push(*c),
            Some(_) => {}
        }
    }
    let reachable = accounts.len() - unreachable.len() - never.len();
    let data = json!({
        "accounts": accounts.len(),
        "reachable": reachable,
        "unreachable": unreachable,
        "never_contacted": never,
    });
    let (status, detail) = if accounts.is_empty() {
        (
            Light::Amber,
            "no spoke account is registered: curfew manages nothing yet".to_string(),
        )
    } else if !unreachable.is_empty() {
        let lines: Vec<String> = unreachable
            .iter()
            .map(|c| {
                format!(
                    "{} {} at {}: {}",
                    c.account,
                    match c.outcome {
                        ContactOutcome::Denied => "denied",
                        _ => "failed",
                    },
                    c.at.format("%Y-%m-%dT%H:%M:%SZ"),
                    c.error.as_deref().unwrap_or("no error recorded")
                )
            })
            .collect();
        (
            Light::Red,
            format!(
                "{} of {} unreachable at last contact (check the spoke role and its trust \
                 policy):\n{}",
                unreachable.len(),
                count(accounts.len() as u64, "account"),
                lines.join("\n")
            ),
        )
    } else if !never.is_empty() {
        (
            Light::Amber,
            format!(
                "{} of {} not contacted by any operation yet: {}",
                never.len(),
                count(accounts.len() as u64, "account"),
                never.join(", ")
            ),
        )
    } else {
        (
            Light::Green,
            format!(
                "{} reachable at last contact",
                count(accounts.len() as u64, "account")
            ),
        )
    };
    Check::new("accounts", status, detail, data)
}

/// The operations' light: red for any operation still PENDING or RUNNING `stuck_after` after
/// it was created, green otherwise. Final operations in `operations` are ignored.
pub fn operations_check(
    operations: &[Operation],
    now: DateTime<Utc>,
    stuck_after: Duration,
) -> Check {
    let unfinished: Vec<&Operation> = operations
        .iter()
        .filter(|op| !op.status.is_final())
        .collect();
    let stuck: Vec<&Operation> = unfinished
        .iter()
        .copied()
        .filter(|op| now - op.created_at > stuck_after)
        .collect();
    let data = json!({
        "unfinished": unfinished.len(),
        "stuck": stuck.iter().map(|op| json!({
            "id": op.id,
            "status": op.status,
            "created_at": op.created_at,
            "running_seconds": (now - op.created_at).num_seconds(),
        })).collect::<Vec<_>>(),
    });
    let (status, detail) = if stuck.is_empty() {
        (
            Light::Green,
            format!(
                "{} unfinished, none older than {}",
                count(unfinished.len() as u64, "operation"),
                human(stuck_after)
            ),
        )
    } else {
        let lines: Vec<String> = stuck
            .iter()
            .map(|op| format!("{} {} for {}", op.id, op.status, human(now - op.created_at)))
            .collect();
        (
            Light::Red,
            format!(
                "{} unfinished after {} (see `curfew ops show ID`):\n{}",
                count(stuck.len() as u64, "operation"),
                human(stuck_after),
                lines.join("\n")
            ),
        )
    };
    Check::new("operations", status, detail, data)
}

/// The schedules' light: red for every stored schedule that no longer reads as one (it never
/// fires), green otherwise.
pub fn schedules_check(list: &ScheduleList) -> Check {
    let enabled = list.schedules.iter().filter(|s| s.enabled).count();
    let data = json!({
        "schedules": list.schedules.len() + list.broken.len(),
        "enabled": enabled,
        "broken": list.broken,
    });
    let (status, detail) = if list.broken.is_empty() {
        (
            Light::Green,
            format!(
                "{} ({enabled} enabled), none broken",
                count(list.schedules.len() as u64, "schedule")
            ),
        )
    } else {
        let lines: Vec<String> = list
            .broken
            .iter()
            .map(|b| format!("{}: {}", b.name, b.problem))
            .collect();
        (
            Light::Red,
            format!(
                "{} broken, never firing (delete and add again, see `curfew schedule list`):\n{}",
                count(list.broken.len() as u64, "schedule"),
                lines.join("\n")
            ),
        )
    };
    Check::new("schedules", status, detail, data)
}

/// `1 message`, `3 messages`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A duration for people: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
pub fn human(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) if seconds == 0 => format!("{minutes}m"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests;
