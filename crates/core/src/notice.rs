//! Notices: what the hub tells its operators through the notification topic (SNS in AWS), in
//! a stable JSON shape with a short subject line. One notice when an operation ends, and one
//! at once when something needs a person: a spoke role refused, a task given up to the
//! dead-letter queue, a node group stuck UPDATING. docs/NOTIFICATIONS.md documents the shape.
//!
//! Building a notice is pure; sending it goes through the [`Notifier`] port, and keeping each
//! notice to one send goes through [`SentNotices`]. The services publish on a best-effort
//! basis: a notice that cannot be sent is logged, never a reason to fail or retry a task.
//!
//! ```
//! use curfew_core::notice::{subject_line, Notice, SpokeRoleDenied};
//!
//! let notice = Notice::SpokeRoleDenied(SpokeRoleDenied {
//!     operation_id: "20270104T1800Z-dev-stop".into(),
//!     account: "111111111111".into(),
//!     role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
//!     region: "eu-west-1".into(),
//!     error: "AccessDenied: not authorized to perform sts:AssumeRole".into(),
//!     at: "2027-01-04T18:00:05Z".parse().unwrap(),
//! });
//! assert_eq!(notice.subject(), "curfew: spoke role denied in account 111111111111 (eu-west-1)");
//! assert!(subject_line(&"x".repeat(500)).len() < 100);
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{Action, SkipReason};
use crate::operation::{OpCounts, OpSource, OpStatus, Operation, Task, TaskStatus};
use crate::ports::PortResult;

/// The version of the notices' JSON shape: a field added keeps it, a field renamed, removed
/// or given another meaning raises it.
pub const NOTICE_VERSION: u32 = 1;

/// How many failed tasks an `operation_ended` notice lists; the rest are only counted
/// (`failures_omitted`). An SNS message is at most 256 KiB, and a person reads the first few.
pub const MAX_FAILURES_LISTED: usize = 20;

/// SNS refuses a subject of 100 characters or more.
const MAX_SUBJECT_CHARS: usize = 99;

/// RFC 3339 in UTC to the second (`2027-01-04T18:00:00Z`), so the shape does not depend on how
/// precise a clock was.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// One notice. Serialized, it carries its kind in `"type"` and [`NOTICE_VERSION`] in
/// `"version"` beside the kind's own fields.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// An operation reached its final status.
    OperationEnded(OperationEnded),
    /// A spoke account's role could not be assumed, or refused what curfew asked of it.
    SpokeRoleDenied(SpokeRoleDenied),
    /// A task was given up after its message's last receive; its message is in the task
    /// dead-letter queue.
    DeadLettered(DeadLettered),
    /// A node group has been UPDATING for longer than the bound while a task waits on it.
    StuckUpdating(StuckUpdating),
}

/// The wire form: the kind as a tag, the version beside it.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Tagged {
    OperationEnded(Envelope<OperationEnded>),
    SpokeRoleDenied(Envelope<SpokeRoleDenied>),
    DeadLettered(Envelope<DeadLettered>),
    StuckUpdating(Envelope<StuckUpdating>),
}

impl Notice {
    /// The `"type"` of its JSON: `operation_ended`, `spoke_role_denied`, `dead_lettered` or
    /// `stuck_updating` (also sent as the `notice_type` message attribute, for subscription
    /// filter policies).
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::OperationEnded(_) => "operation_ended",
            Notice::SpokeRoleDenied(_) => "spoke_role_denied",
            Notice::DeadLettered(_) => "dead_lettered",
            Notice::StuckUpdating(_) => "stuck_updating",
        }
    }

    /// The notice as one JSON object (the message body).
    pub fn to_json(&self) -> String {
        let version = NOTICE_VERSION;
        let tagged = match self.clone() {
            Notice::OperationEnded(body) => Tagged::OperationEnded(Envelope { version, body }),
            Notice::SpokeRoleDenied(body) => Tagged::SpokeRoleDenied(Envelope { version, body }),
            Notice::DeadLettered(body) => Tagged::DeadLettered(Envelope { version, body }),
            Notice::StuckUpdating(body) => Tagged::StuckUpdating(Envelope { version, body }),
        };
        serde_json::to_string(&tagged).expect("notices serialize to JSON")
    }

    /// Reads a notice back from its JSON (what a subscriber does).
    pub fn from_json(json: &str) -> Result<Notice, serde_json::Error> {
        Ok(match serde_json::from_str(json)? {
            Tagged::OperationEnded(e) => Notice::OperationEnded(e.body),
            Tagged::SpokeRoleDenied(e) => Notice::SpokeRoleDenied(e.body),
            Tagged::DeadLettered(e) => Notice::DeadLettered(e.body),
            Tagged::StuckUpdating(e) => Notice::StuckUpdating(e.body),
        })
    }

    /// A short subject for people (an email's subject): ASCII, one line, fewer than 100
    /// characters, as SNS requires.
    pub fn subject(&self) -> String {
        let text = match self {
            Notice::OperationEnded(n) => {
                let c = n.counts;
                format!(
                    "curfew: {} {} {}: {} succeeded, {} failed, {} skipped of {}",
                    n.action,
                    n.operation_id,
                    n.status,
                    c.succeeded,
                    c.unsuccessful(),
                    c.skipped,
                    c.total
                )
            }
            Notice::SpokeRoleDenied(n) => format!(
                "curfew: spoke role denied in account {} ({})",
                n.account, n.region
            ),
            Notice::DeadLettered(n) => format!("curfew: task dead-lettered: {}", n.target),
            Notice::StuckUpdating(n) => {
                format!("curfew: node group stuck UPDATING: {}", n.target)
            }
        };
        subject_line(&text)
    }

    /// The key that keeps this notice to one send ([`SentNotices::first_send`]): the same
    /// event seen by a redelivery, a retry or a second task gives the same key.
    pub fn once_key(&self) -> String {
        match self {
            // Per outcome: a redrive that reopens a dead-lettered task and settles the
            // operation again with other counts is a new end worth telling.
            Notice::OperationEnded(n) => {
                let c = n.counts;
                format!(
                    "operation_ended#{}#{}#{}/{}/{}/{}/{}",
                    n.operation_id,
                    n.status,
                    c.total,
                    c.succeeded,
                    c.failed,
                    c.skipped,
                    c.dead_lettered
                )
            }
            // Per account and region of an operation: a refused role fails every task there,
            // and one notice says it.
            Notice::SpokeRoleDenied(n) => format!(
                "spoke_role_denied#{}#{}#{}",
                n.operation_id, n.account, n.region
            ),
            Notice::DeadLettered(n) => format!("dead_lettered#{}#{}", n.operation_id, n.target),
            Notice::StuckUpdating(n) => {
                format!("stuck_updating#{}#{}", n.operation_id, n.target)
            }
        }
    }
}

/// `text` made a valid SNS subject: characters outside printable ASCII become `?` (line
/// breaks and tabs a space), and a text too long is cut and ends in `...`.
pub fn subject_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| match c {
            ' '..='~' => c,
            '\n' | '\r' | '\t' => ' ',
            _ => '?',
        })
        .collect();
    if clean.len() <= MAX_SUBJECT_CHARS {
        return clean;
    }
    format!("{}...", &clean[..MAX_SUBJECT_CHARS - 3])
}

/// Where an operation came from, as a notice names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NoticeSource {
    /// A schedule fired.
    Schedule {
        /// The schedule's name.
        schedule: String,
        /// The fire time.
        #[serde(with = "rfc3339")]
        fire_time: DateTime<Utc>,
    },
    /// An operator asked (the command line or a direct router invocation).
    Manual,
    /// The poller's drift check of the targets held asleep.
    DriftCheck,
    /// An enforced schedule's pass in its asleep time.
    Enforce {
        /// The schedule's name.
        schedule: String,
    },
}

impl From<&OpSource> for NoticeSource {
    fn from(source: &OpSource) -> Self {
        match source {
            OpSource::Schedule { name, fire_time } => NoticeSource::Schedule {
                schedule: name.clone(),
                fire_time: *fire_time,
            },
            OpSource::Manual => NoticeSource::Manual,
            OpSource::Check => NoticeSource::DriftCheck,
            OpSource::Enforce { name } => NoticeSource::Enforce {
                schedule: name.clone(),
            },
        }
    }
}

/// A task that did not do its work, as an `operation_ended` notice lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The target's key (`account#region#kind#[cluster/]name`).
    pub target: String,
    /// `FAILED` or `DEAD_LETTERED`.
    pub status: TaskStatus,
    /// Why.
    pub reason: String,
}

/// `operation_ended`: an operation reached its final status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationEnded {
    /// The operation.
    pub operation_id: String,
    /// Stop or start.
    pub action: Action,
    /// Who asked.
    pub source: NoticeSource,
    /// A dry run changed nothing.
    pub dry_run: bool,
    /// SUCCEEDED, PARTIAL or FAILED.
    pub status: OpStatus,
    /// Task counts (a dead-lettered task is not counted as failed: `dead_lettered`).
    pub counts: OpCounts,
    /// Skipped tasks that an override kept awake (part of `counts.skipped`).
    pub skipped_by_override: u64,
    /// When the operation was created.
    #[serde(with = "rfc3339")]
    pub started_at: DateTime<Utc>,
    /// When it was settled.
    #[serde(with = "rfc3339")]
    pub ended_at: DateTime<Utc>,
    /// `ended_at - started_at`, in whole seconds.
    pub duration_seconds: i64,
    /// Problems outside any one task (an account whose targets could not be listed).
    pub notes: Vec<String>,
    /// The first [`MAX_FAILURES_LISTED`] failed or dead-lettered tasks, by target key.
    pub failures: Vec<Failure>,
    /// Failed or dead-lettered tasks beyond those listed.
    pub failures_omitted: u64,
}

impl OperationEnded {
    /// The notice for `op`, settled at `ended_at` with `status`, from its task records.
    pub fn new(op: &Operation, status: OpStatus, tasks: &[Task], ended_at: DateTime<Utc>) -> Self {
        let mut failed: Vec<&Task> = tasks
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::DeadLettered))
            .collect();
        failed.sort_by_key(|t| t.target.key());
        let failures = failed
            .iter()
            .take(MAX_FAILURES_LISTED)
            .map(|t| Failure {
                target: t.target.key(),
                status: t.status,
                reason: t.reason.clone().unwrap_or_default(),
            })
            .collect();
        let skipped_by_override = tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Skipped)
            .filter(|t| t.reason.as_deref().is_some_and(kept_awake))
            .count() as u64;
        OperationEnded {
            operation_id: op.id.clone(),
            action: op.action,
            source: NoticeSource::from(&op.source),
            dry_run: op.dry_run,
            status,
            counts: op.counts,
            skipped_by_override,
            started_at: op.created_at,
            ended_at,
            duration_seconds: (ended_at - op.created_at).num_seconds().max(0),
            notes: op.notes.clone(),
            failures,
            failures_omitted: failed.len().saturating_sub(MAX_FAILURES_LISTED) as u64,
        }
    }
}

impl OperationEnded {
    /// False for a drift check that found every hold in place (SUCCEEDED, nothing skipped):
    /// the poller starts one every interval (hourly in the hub stack), and a notice each time
    /// would bury the ones that matter. A check that found drift (its targets are skipped with
    /// the drift as the reason) or failed is told like any operation. Likewise an enforce
    /// pass (every poller tick in its schedule's asleep time) that put nothing back to sleep:
    /// its targets were asleep or kept awake, so all it did was skip them.
    pub fn is_worth_telling(&self) -> bool {
        let quiet_check = self.source == NoticeSource::DriftCheck
            && self.status == OpStatus::Succeeded
            && self.counts.skipped == 0;
        let quiet_pass = matches!(self.source, NoticeSource::Enforce { .. })
            && self.status == OpStatus::Succeeded
            && self.counts.succeeded == 0;
        !(quiet_check || quiet_pass)
    }
}

/// True for the reason a stop records when an override kept the target awake
/// ([`SkipReason::KeptAwake`]).
fn kept_awake(reason: &str) -> bool {
    let sample = SkipReason::KeptAwake(DateTime::<Utc>::UNIX_EPOCH).to_string();
    let stem = sample.split(" until ").next().unwrap_or(&sample);
    reason.starts_with(stem)
}

/// `spoke_role_denied`: a spoke account's role could not be assumed, or refused a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpokeRoleDenied {
    /// The operation that met it.
    pub operation_id: String,
    /// The spoke account.
    pub account: String,
    /// The role's ARN (its ExternalId is never sent).
    pub role_arn: String,
    /// The region the call was for.
    pub region: String,
    /// The error, as the service gave it.
    pub error: String,
    /// When.
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
}

/// `dead_lettered`: a task was given up after its message's last receive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLettered {
    /// The operation.
    pub operation_id: String,
    /// The target's key.
    pub target: String,
    /// What its last receive was waiting for.
    pub reason: String,
    /// When.
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
}

/// `stuck_updating`: a node group has been UPDATING past the bound while a task waits on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckUpdating {
    /// The operation waiting.
    pub operation_id: String,
    /// The node group's key.
    pub target: String,
    /// Since when the task has waited (its last change: planned, or the update it started).
    #[serde(with = "rfc3339")]
    pub since: DateTime<Utc>,
    /// When it was seen still UPDATING.
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// `at - since`, in whole minutes.
    pub minutes: i64,
}

/// Sends notices to the operators (an SNS topic in AWS).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends one notice: its JSON as the message, its subject line as the subject.
    async fn publish(&self, notice: &Notice) -> PortResult<()>;

    /// False for a notifier that sends nothing, so callers skip the reads a notice needs.
    fn is_enabled(&self) -> bool {
        true
    }
}

/// The notifier when no topic is configured: every notice is dropped.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNotifier;

#[async_trait]
impl Notifier for NoNotifier {
    async fn publish(&self, _notice: &Notice) -> PortResult<()> {
        Ok(())
    }

    fn is_enabled(&self) -> bool {
        false
    }
}

/// The record of notices already sent: SQS delivers at least once, and an operation is seen
/// final by every later delivery of its tasks, so each notice is sent only by whoever records
/// its [`Notice::once_key`] first.
#[async_trait]
pub trait SentNotices: Send + Sync {
    /// Records `key` at `now` unless it is recorded already: true if this call recorded it
    /// (send the notice), false if someone did before (do not).
    async fn first_send(&self, key: &str, now: DateTime<Utc>) -> PortResult<bool>;
}

/// A notifier and the record that keeps its notices to one send each.
#[derive(Clone)]
pub struct Notices {
    /// Where notices go.
    pub notifier: Arc<dyn Notifier>,
    /// Which were sent.
    pub sent: Arc<dyn SentNotices>,
}

impl Notices {
    /// Notices to `notifier`, kept to one send each by `sent`.
    pub fn new(notifier: Arc<dyn Notifier>, sent: Arc<dyn SentNotices>) -> Self {
        Notices { notifier, sent }
    }

    /// No notices (no topic configured): nothing is read, recorded or sent.
    pub fn none() -> Self {
        Notices {
            notifier: Arc::new(NoNotifier),
            sent: Arc::new(NothingSent),
        }
    }

    /// False when notices go nowhere.
    pub fn is_enabled(&self) -> bool {
        self.notifier.is_enabled()
    }
}

/// The record behind [`Notices::none`]: nothing is ever sent, so nothing is recorded.
struct NothingSent;

#[async_trait]
impl SentNotices for NothingSent {
    async fn first_send(&self, _key: &str, _now: DateTime<Utc>) -> PortResult<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::Task;
    use crate::selector::Selector;
    use crate::target::{Target, TargetKind};
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 4, h, m, s).unwrap()
    }

    fn target(name: &str) -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind: TargetKind::Asg,
            cluster: None,
            name: name.into(),
            tags: Default::default(),
            cluster_tags: Default::default(),
            instance_types: Vec::new(),
        }
    }

    fn task(name: &str, status: TaskStatus, reason: Option<&str>) -> Task {
        Task {
            status,
            reason: reason.map(str::to_string),
            ..Task::pending("20270104T1800Z-dev-stop", target(name), at(18, 0, 1))
        }
    }

    fn operation(counts: OpCounts) -> Operation {
        Operation {
            id: "20270104T1800Z-dev-stop".into(),
            action: Action::Stop,
            selector: Selector::parse("tag:env=dev").unwrap(),
            source: OpSource::Schedule {
                name: "dev-stop".into(),
                fire_time: at(18, 0, 0),
            },
            created_at: at(18, 0, 0),
            dry_run: false,
            default_start: None,
            discovery: Default::default(),
            hold: None,
            check: false,
            status: OpStatus::Running,
            counts,
            shards_total: Some(1),
            shards_done: 1,
            notes: vec![],
        }
    }

    fn ended() -> OperationEnded {
        let counts = OpCounts {
            total: 4,
            succeeded: 1,
            failed: 1,
            skipped: 1,
            dead_lettered: 1,
        };
        let kept = SkipReason::KeptAwake(at(23, 0, 0)).to_string();
        let tasks = [
            task("web", TaskStatus::Succeeded, None),
            task(
                "api",
                TaskStatus::Failed,
                Some("updating the target: AccessDenied"),
            ),
            task("batch", TaskStatus::Skipped, Some(&kept)),
            task(
                "queue",
                TaskStatus::DeadLettered,
                Some("dead-lettered after 5 receives"),
            ),
        ];
        OperationEnded::new(&operation(counts), OpStatus::Partial, &tasks, at(18, 2, 5))
    }

    #[test]
    fn an_operation_ended_notice_keeps_its_documented_json_shape() {
        let json: serde_json::Value =
            serde_json::from_str(&Notice::OperationEnded(ended()).to_json()).unwrap();
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/operation-ended.json")).unwrap();
        assert_eq!(json, fixture);
    }

    #[test]
    fn every_notice_reads_back_from_its_json() {
        let notices = [
            Notice::OperationEnded(ended()),
            Notice::SpokeRoleDenied(SpokeRoleDenied {
                operation_id: "op".into(),
                account: "111111111111".into(),
                role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
                region: "eu-west-1".into(),
                error: "AccessDenied".into(),
                at: at(18, 0, 3),
            }),
            Notice::DeadLettered(DeadLettered {
                operation_id: "op".into(),
                target: target("web").key(),
                reason: "dead-lettered after 5 receives".into(),
                at: at(18, 30, 0),
            }),
            Notice::StuckUpdating(StuckUpdating {
                operation_id: "op".into(),
                target: "111111111111#eu-west-1#nodegroup#dev/ng-1".into(),
                since: at(18, 0, 0),
                at: at(18, 45, 0),
                minutes: 45,
            }),
        ];
        for notice in notices {
            let json = notice.to_json();
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["type"], notice.kind(), "{json}");
            assert_eq!(value["version"], NOTICE_VERSION, "{json}");
            assert_eq!(Notice::from_json(&json).unwrap(), notice);
        }
    }

    #[test]
    fn the_ended_notice_counts_override_skips_and_lists_failures_by_target() {
        let notice = ended();
        assert_eq!(notice.skipped_by_override, 1);
        let listed: Vec<&str> = notice.failures.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(
            listed,
            [
                "111111111111#eu-west-1#asg#api",
                "111111111111#eu-west-1#asg#queue"
            ]
        );
        assert_eq!((notice.duration_seconds, notice.failures_omitted), (125, 0));
    }

    #[test]
    fn failures_beyond_the_cap_are_counted_not_listed() {
        let tasks: Vec<Task> = (0..25)
            .map(|i| task(&format!("asg-{i:02}"), TaskStatus::Failed, Some("no")))
            .collect();
        let counts = OpCounts {
            total: 25,
            failed: 25,
            ..Default::default()
        };
        let notice =
            OperationEnded::new(&operation(counts), OpStatus::Failed, &tasks, at(18, 1, 0));
        assert_eq!(notice.failures.len(), MAX_FAILURES_LISTED);
        assert_eq!(notice.failures_omitted, 5);
        assert_eq!(
            notice.failures[0].target,
            "111111111111#eu-west-1#asg#asg-00"
        );
    }

    #[test]
    fn the_ended_subject_names_action_operation_status_and_counts() {
        assert_eq!(
            Notice::OperationEnded(ended()).subject(),
            "curfew: stop 20270104T1800Z-dev-stop PARTIAL: 1 succeeded, 2 failed, 1 skipped of 4"
        );
    }

    #[test]
    fn a_subject_is_one_ascii_line_shorter_than_100_characters() {
        let long = format!("curfew: {}\nnext line \u{e9}", "a".repeat(200));
        let subject = subject_line(&long);
        assert_eq!(subject.len(), 99);
        assert!(subject.ends_with("..."));
        assert!(subject.chars().all(|c| (' '..='~').contains(&c)));
        assert_eq!(subject_line("a\nb \u{e9}"), "a b ?");
    }

    #[test]
    fn a_notice_seen_twice_has_one_once_key_and_a_new_outcome_another() {
        let first = Notice::OperationEnded(ended());
        assert_eq!(first.once_key(), Notice::OperationEnded(ended()).once_key());
        let mut redriven = ended();
        redriven.counts.dead_lettered = 0;
        redriven.counts.succeeded += 1;
        assert_ne!(
            first.once_key(),
            Notice::OperationEnded(redriven).once_key()
        );
    }

    #[test]
    fn an_enforce_pass_is_told_only_when_it_put_something_back_to_sleep_or_failed() {
        let mut pass = ended();
        pass.source = NoticeSource::Enforce {
            schedule: "dev-nights".into(),
        };
        pass.status = OpStatus::Succeeded;
        pass.counts = OpCounts {
            total: 3,
            skipped: 3,
            ..OpCounts::default()
        };
        assert!(!pass.is_worth_telling(), "everything asleep or kept awake");
        pass.counts.succeeded = 1;
        pass.counts.skipped = 2;
        assert!(pass.is_worth_telling(), "one target put back to sleep");
        pass.counts.succeeded = 0;
        pass.status = OpStatus::Partial;
        assert!(pass.is_worth_telling());
    }

    #[test]
    fn a_drift_check_is_told_only_when_it_found_drift_or_failed() {
        let mut check = ended();
        check.source = NoticeSource::DriftCheck;
        check.status = OpStatus::Succeeded;
        check.counts = OpCounts {
            total: 3,
            succeeded: 3,
            ..Default::default()
        };
        assert!(!check.is_worth_telling(), "every hold in place");
        check.counts.succeeded = 2;
        check.counts.skipped = 1;
        assert!(check.is_worth_telling(), "one target drifted");
        check.counts.skipped = 0;
        check.status = OpStatus::Partial;
        assert!(check.is_worth_telling());
        let mut manual = check.clone();
        manual.source = NoticeSource::Manual;
        manual.status = OpStatus::Succeeded;
        assert!(manual.is_worth_telling(), "only drift checks are quiet");
    }

    #[test]
    fn only_the_override_reason_counts_as_kept_awake() {
        assert!(kept_awake(&SkipReason::KeptAwake(at(1, 0, 0)).to_string()));
        assert!(!kept_awake(&SkipReason::AlreadyStopped.to_string()));
    }
}
