//! The audit trail: an append-only record of every change curfew makes — each target it scales,
//! each schedule, account and override an operator changes — kept tamper-evident by hash chains.
//!
//! A record belongs to one **chain** and carries its place in it (`seq`, from 1), the SHA-256
//! of the record before it (`prev`) and its own `hash` over its chain, place, `prev` and body
//! (see [`record_hash`]). Changing, deleting, inserting or reordering any record breaks the
//! links after it. Each chain has a **head** naming its last record, signed with the hub's
//! audit key (HMAC-SHA256, see [`AuditKey`]), so cutting records off the end, or rewriting a
//! chain and its head, shows too unless the key is known.
//!
//! Chains are per partition so no write serializes on one item: each target has its own chain
//! (only its lease holder writes to it, so appends never contend), and the operators' changes
//! share the `config` chain (few, and one order is what an auditor wants to read).
//!
//! ```
//! use curfew_core::trail::{verify_chain, AuditEntry, AuditKey, ChangeKind, Link};
//!
//! let key = AuditKey::new(b"an audit key of at least 32 bytes!".to_vec()).unwrap();
//! let entry = AuditEntry::new(ChangeKind::AccountAdded, "111111111111", "arn:aws:iam::1:user/ana",
//!     "2027-01-04T18:00:00Z".parse().unwrap());
//! let link = Link::after(None, "config", "add 111111111111", &entry, Some(&key));
//! assert!(verify_chain("config", &[link.record.clone()], Some(&link.head), Some(&key)).is_ok());
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ports::{ErrorKind, PortError, PortResult};

/// The chain every operator's change (schedules, accounts, overrides) goes to.
pub const CONFIG_CHAIN: &str = "config";

/// The `prev` of a chain's first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain of one target's changes.
pub fn target_chain(target_key: &str) -> String {
    format!("target/{target_key}")
}

/// The chain of the changes one delivery's task ends record together (see
/// `OperationStore::finish_tasks`): named by the first changed target and the time of the
/// write, a chain of its own that nothing else appends to, so the delivery's records share one
/// head instead of each moving its target's. A later write that picks the same name (the same
/// first target in the same millisecond) finds the head taken and appends after it.
pub fn delivery_chain(first_target_key: &str, at: DateTime<Utc>) -> String {
    format!(
        "ends/{}@{}",
        first_target_key,
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

/// A short mark of an entry's subject (the first 8 hex digits of its SHA-256): what an index
/// entry of many records keeps of each one's subject, so a listing about one subject reads
/// only the records that may be about it.
pub fn subject_mark(subject: &str) -> String {
    hex::encode(&Sha256::digest(subject.as_bytes())[..4])
}

/// The index partition (`0..buckets`) a chain is listed under: the first byte of its name's
/// SHA-256, so every process places a chain alike and chains spread evenly.
pub fn bucket(chain: &str, buckets: u8) -> u8 {
    Sha256::digest(chain.as_bytes())[0] % buckets.max(1)
}

/// What a record says changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A stop scaled a target to zero (its baseline saved).
    TargetStopped,
    /// A start restored a target (its baseline retired).
    TargetStarted,
    /// A schedule was created.
    ScheduleAdded,
    /// A schedule was enabled.
    ScheduleEnabled,
    /// A schedule was disabled.
    ScheduleDisabled,
    /// A schedule was deleted.
    ScheduleDeleted,
    /// A spoke account was added or replaced.
    AccountAdded,
    /// A spoke account was removed.
    AccountRemoved,
    /// An override (keep awake) was added.
    OverrideAdded,
    /// An override was ended before it expired.
    OverrideRemoved,
    /// A target was found changed by something other than curfew while curfew held it asleep
    /// (a drift check), or awake in an enforced schedule's asleep time (an enforce pass).
    DriftFound,
    /// A holiday calendar was created.
    CalendarAdded,
    /// A holiday calendar was deleted.
    CalendarDeleted,
}

impl ChangeKind {
    /// The name used in the record and in `--output json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::TargetStopped => "target_stopped",
            ChangeKind::TargetStarted => "target_started",
            ChangeKind::ScheduleAdded => "schedule_added",
            ChangeKind::ScheduleEnabled => "schedule_enabled",
            ChangeKind::ScheduleDisabled => "schedule_disabled",
            ChangeKind::ScheduleDeleted => "schedule_deleted",
            ChangeKind::AccountAdded => "account_added",
            ChangeKind::AccountRemoved => "account_removed",
            ChangeKind::OverrideAdded => "override_added",
            ChangeKind::OverrideRemoved => "override_removed",
            ChangeKind::DriftFound => "drift_found",
            ChangeKind::CalendarAdded => "calendar_added",
            ChangeKind::CalendarDeleted => "calendar_deleted",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one record says: who changed what, when, from what to what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// Who made it: the caller's IAM principal (the CLI asks STS), or the Lambda's role.
    pub actor: String,
    /// What kind of change.
    pub kind: ChangeKind,
    /// What changed: a target key, a schedule name, an account id or an override id.
    pub subject: String,
    /// The operation that made it (target changes) or that it caused, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The task (`<operation>/<target key>`) that made it, for target changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The subject before (sizes, a schedule, an account), if it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The subject after, if it still exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    /// What else happened (baseline saved or retired, processes suspended, hold steps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<String>,
}

impl AuditEntry {
    /// An entry with nothing but its kind, subject, actor and time.
    pub fn new(
        kind: ChangeKind,
        subject: impl Into<String>,
        actor: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        AuditEntry {
            at,
            actor: actor.into(),
            kind,
            subject: subject.into(),
            operation: None,
            task: None,
            before: None,
            after: None,
            detail: Vec::new(),
        }
    }
}

/// One stored record: an entry at its place in a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The chain it belongs to.
    pub chain: String,
    /// Its place in the chain, from 1.
    pub seq: u64,
    /// The hash of the record before it ([`GENESIS`] for the first).
    pub prev: String,
    /// The hash of this record (see [`record_hash`]).
    pub hash: String,
    /// The entry as JSON, exactly as hashed. Kept as text so an auditor re-hashes the stored
    /// bytes, not a re-serialization that could order fields differently.
    pub body: String,
}

impl AuditRecord {
    /// The changes it records, parsed from the body: one entry, or the changes a delivery
    /// wrote together ([`Linker::link_all`]). `None` if the body is neither (a tampered record:
    /// its hash will not match either).
    pub fn entries(&self) -> Option<Vec<AuditEntry>> {
        if let Ok(entry) = serde_json::from_str::<AuditEntry>(&self.body) {
            return Some(vec![entry]);
        }
        let Changes { shared, changes } = serde_json::from_str(&self.body).ok()?;
        Some(
            changes
                .into_iter()
                .map(|change| change.entry(&shared))
                .collect(),
        )
    }

    /// True when a change it records is about `subject`.
    pub fn is_about(&self, subject: &str) -> bool {
        self.entry_about(subject).is_some()
    }

    /// The (first) change it records about `subject`.
    pub fn entry_about(&self, subject: &str) -> Option<AuditEntry> {
        self.entries()?.into_iter().find(|e| e.subject == subject)
    }
}

/// The body of a record of several changes (a delivery's, written together:
/// [`Linker::link_all`]): `{"actor", "operation", "kind", "at", "detail", "changes": [...]}`,
/// the first change's actor, operation, kind, time and details, which the others share: each
/// change names its subject, its time as nanoseconds after the record's `at` (`ns`), its sizes
/// as `[min, max, desired]`, and only what differs from the record's (its actor, operation,
/// kind or details, and its task when that is not `<operation>/<subject>`, as a worker's is).
/// A transaction bills each of its items at least 1 KB, twice: one record of a delivery's
/// changes bills some 0.11 KB a change where a record each billed 1 KB (docs/PERFORMANCE.md).
#[derive(Serialize, Deserialize)]
struct Changes {
    #[serde(flatten)]
    shared: Shared,
    changes: Vec<Change>,
}

/// What the changes of a [`Changes`] share unless they say otherwise.
#[derive(Serialize, Deserialize)]
struct Shared {
    actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operation: Option<String>,
    kind: ChangeKind,
    at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    detail: Vec<String>,
}

/// One change of [`Changes`].
#[derive(Serialize, Deserialize)]
struct Change {
    /// Nanoseconds after the record's `at`.
    ns: i64,
    /// Its actor, when not the record's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    /// Its kind, when not the record's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<ChangeKind>,
    subject: String,
    /// Its operation, when not the record's (`null`: none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    operation: Option<Option<String>>,
    /// Its task, when that is not `<operation>/<subject>` (`null`: none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    task: Option<Option<String>>,
    /// Sizes as `[min, max, desired]`; anything else as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<serde_json::Value>,
    /// As `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<serde_json::Value>,
    /// Its details, when not the record's (`[]`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<Vec<String>>,
}

/// A field that is there, even as `null` (`Some(None)`); absent, it takes its default (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The task a worker names a change by, and its change by: `<operation>/<target key>`.
pub fn task_name(operation: &str, target_key: &str) -> String {
    format!("{operation}/{target_key}")
}

/// [`task_name`], for a change of `operation` (if any).
fn worker_task(operation: Option<&str>, subject: &str) -> Option<String> {
    operation.map(|op| task_name(op, subject))
}

/// The names of a sizes object, in the order a change lists them.
const SIZES: [&str; 3] = ["min", "max", "desired"];

/// Sizes (`{"min", "max", "desired"}`, whole numbers and nothing else) as `[min, max,
/// desired]`; any other value as it is.
fn sizes_listed(value: &serde_json::Value) -> serde_json::Value {
    let listed = value
        .as_object()
        .filter(|o| o.len() == SIZES.len())
        .and_then(|o| {
            let sizes: Option<Vec<serde_json::Value>> = SIZES
                .iter()
                .map(|name| o.get(*name).filter(|v| v.is_u64()).cloned())
                .collect();
            sizes.map(serde_json::Value::Array)
        });
    listed.unwrap_or_else(|| value.clone())
}

/// The value [`sizes_listed`] lists, back as it was.
fn sizes_named(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Array(listed)
            if listed.len() == SIZES.len() && listed.iter().all(|v| v.is_u64()) =>
        {
            serde_json::Value::Object(SIZES.iter().map(|n| n.to_string()).zip(listed).collect())
        }
        other => other,
    }
}

impl Change {
    /// `entry` in a record whose changes share `shared`.
    fn of(entry: &AuditEntry, shared: &Shared) -> Change {
        let named = worker_task(entry.operation.as_deref(), &entry.subject);
        let ns = (entry.at - shared.at).num_nanoseconds().unwrap_or(i64::MAX);
        Change {
            ns,
            actor: (entry.actor != shared.actor).then(|| entry.actor.clone()),
            kind: (entry.kind != shared.kind).then_some(entry.kind),
            subject: entry.subject.clone(),
            operation: (entry.operation != shared.operation).then(|| entry.operation.clone()),
            task: (entry.task != named).then(|| entry.task.clone()),
            before: entry.before.as_ref().map(sizes_listed),
            after: entry.after.as_ref().map(sizes_listed),
            detail: (entry.detail != shared.detail).then(|| entry.detail.clone()),
        }
    }

    /// The entry, in a record whose changes share `shared`.
    fn entry(self, shared: &Shared) -> AuditEntry {
        let operation = self.operation.unwrap_or_else(|| shared.operation.clone());
        let named = worker_task(operation.as_deref(), &self.subject);
        AuditEntry {
            at: shared.at + chrono::Duration::nanoseconds(self.ns),
            actor: self.actor.unwrap_or_else(|| shared.actor.clone()),
            kind: self.kind.unwrap_or(shared.kind),
            subject: self.subject,
            operation,
            task: self.task.unwrap_or(named),
            before: self.before.map(sizes_named),
            after: self.after.map(sizes_named),
            detail: self.detail.unwrap_or_else(|| shared.detail.clone()),
        }
    }
}

/// The body of a record of `entries`: the one entry as it is, several as [`Changes`].
fn body_of(entries: &[AuditEntry]) -> String {
    let body = match entries {
        [entry] => serde_json::to_string(entry),
        [first, ..] => {
            let shared = Shared {
                actor: first.actor.clone(),
                operation: first.operation.clone(),
                kind: first.kind,
                at: first.at,
                detail: first.detail.clone(),
            };
            let changes = entries.iter().map(|e| Change::of(e, &shared)).collect();
            serde_json::to_string(&Changes { shared, changes })
        }
        // Never linked: a record of no change reads as none (`AuditRecord::entries`).
        [] => Ok(String::new()),
    };
    body.expect("audit entries serialize to JSON")
}

/// A chain's head: its last record, signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The chain.
    pub chain: String,
    /// The last record's place (the chain's length).
    pub seq: u64,
    /// The last record's hash.
    pub hash: String,
    /// The idempotency key of the last append, so a redelivered change is not recorded twice.
    pub last_key: String,
    /// HMAC-SHA256 of the head with the audit key, hex; `None` when the hub has no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The key that signs chain heads: at least 32 bytes, never printed. The hub stack keeps it in
/// Secrets Manager and hands it to the functions as `CURFEW_AUDIT_KEY`; an auditor given it can
/// check the heads' signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey(Arc<[u8]>);

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the audit key must be at least {MIN_KEY_BYTES} bytes (it has {0})")]
pub struct ShortKey(pub usize);

/// The shortest audit key accepted: HMAC-SHA256's block of security.
pub const MIN_KEY_BYTES: usize = 32;

impl AuditKey {
    /// A key from its bytes.
    pub fn new(bytes: Vec<u8>) -> Result<AuditKey, ShortKey> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ShortKey(bytes.len()));
        }
        Ok(AuditKey(bytes.into()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// Who the handlers record as the actor of their changes, and the key they sign heads with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSigner {
    /// The actor: the Lambda's role ARN (`CURFEW_AUDIT_ACTOR`, set by the hub stack).
    pub actor: String,
    /// The signing key, if the hub has one.
    pub key: Option<AuditKey>,
}

impl Default for AuditSigner {
    fn default() -> Self {
        AuditSigner {
            actor: "curfew".into(),
            key: None,
        }
    }
}

/// The record's hash: SHA-256, hex, over
/// `"curfew-audit-v1\n" + chain + "\n" + seq + "\n" + prev + "\n" + body`.
/// docs/OPERATIONS.md gives the same recipe for checking an export offline.
pub fn record_hash(chain: &str, seq: u64, prev: &str, body: &str) -> String {
    let mut sha = Sha256::new();
    sha.update(format!("curfew-audit-v1\n{chain}\n{seq}\n{prev}\n").as_bytes());
    sha.update(body.as_bytes());
    hex::encode(sha.finalize())
}

fn head_message(chain: &str, seq: u64, hash: &str) -> String {
    format!("curfew-audit-head-v1\n{chain}\n{seq}\n{hash}")
}

/// The head's signature with `key`: HMAC-SHA256, hex, over
/// `"curfew-audit-head-v1\n" + chain + "\n" + seq + "\n" + hash`.
pub fn head_signature(key: &AuditKey, chain: &str, seq: u64, hash: &str) -> String {
    let mut mac = key.mac();
    mac.update(head_message(chain, seq, hash).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn signature_holds(key: &AuditKey, head: &ChainHead, signature: &str) -> bool {
    let Ok(bytes) = hex::decode(signature) else {
        return false;
    };
    let mut mac = key.mac();
    mac.update(head_message(&head.chain, head.seq, &head.hash).as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&bytes).is_ok()
}

/// The next record of a chain and the head that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The record to append.
    pub record: AuditRecord,
    /// The chain's head once it is appended.
    pub head: ChainHead,
}

impl Link {
    /// The record that follows `head` (`None`: the chain is empty) with `entry`, and the new
    /// head, signed when `key` is given. `key_of_change` identifies the change, so a retried
    /// append finds it already recorded (see [`ChainHead::last_key`]).
    pub fn after(
        head: Option<&ChainHead>,
        chain: &str,
        key_of_change: &str,
        entry: &AuditEntry,
        key: Option<&AuditKey>,
    ) -> Link {
        Link::after_all(head, chain, key_of_change, std::slice::from_ref(entry), key)
    }

    /// [`Link::after`] with a record of every change in `entries` (one entry's record is as
    /// [`Link::after`] makes it); `key_of_change` names the last.
    pub fn after_all(
        head: Option<&ChainHead>,
        chain: &str,
        key_of_change: &str,
        entries: &[AuditEntry],
        key: Option<&AuditKey>,
    ) -> Link {
        let (seq, prev) = match head {
            Some(h) => (h.seq + 1, h.hash.clone()),
            None => (1, GENESIS.to_string()),
        };
        let body = body_of(entries);
        let hash = record_hash(chain, seq, &prev, &body);
        let signature = key.map(|k| head_signature(k, chain, seq, &hash));
        Link {
            head: ChainHead {
                chain: chain.to_string(),
                seq,
                hash: hash.clone(),
                last_key: key_of_change.to_string(),
                signature,
            },
            record: AuditRecord {
                chain: chain.to_string(),
                seq,
                prev,
                hash,
                body,
            },
        }
    }
}

/// Links changes one after another in one chain, each after the one before (a delivery's, see
/// [`delivery_chain`]), without reading the head between them.
pub struct Linker<'a> {
    chain: &'a str,
    key: Option<&'a AuditKey>,
    tip: Option<ChainHead>,
}

impl<'a> Linker<'a> {
    /// Links after `head` (`None`: the chain is new) in `chain`, signing with `key`.
    pub fn after(head: Option<ChainHead>, chain: &'a str, key: Option<&'a AuditKey>) -> Self {
        Linker {
            chain,
            key,
            tip: head,
        }
    }

    /// The next change's link, and the place of the record it follows (0: none).
    pub fn link(&mut self, key_of_change: &str, entry: &AuditEntry) -> (Link, u64) {
        self.link_all(key_of_change, std::slice::from_ref(entry))
    }

    /// The link of the next record, of every change in `entries` (`key_of_change` names the
    /// last), and the place of the record it follows (0: none).
    pub fn link_all(&mut self, key_of_change: &str, entries: &[AuditEntry]) -> (Link, u64) {
        let expected = self.tip.as_ref().map_or(0, |h| h.seq);
        let link = Link::after_all(
            self.tip.as_ref(),
            self.chain,
            key_of_change,
            entries,
            self.key,
        );
        self.tip = Some(link.head.clone());
        (link, expected)
    }
}

/// The first thing wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainProblem {
    /// The chain.
    pub chain: String,
    /// The first bad record's place (for a head problem: the head's).
    pub seq: u64,
    /// What is wrong, for people.
    pub problem: String,
}

/// Checks one chain: `records` as stored (any order; they are checked in `seq` order), against
/// its head (`None`: the head is missing) and, with `key`, the head's signature. Returns the
/// first problem: an edited record (its hash no longer matches its content), a deleted,
/// inserted or reordered one (a gap in `seq`, or a `prev` that is not the hash before it),
/// records cut off the end or a head rewritten (the head does not name the last record), or a
/// head not signed with `key`.
pub fn verify_chain(
    chain: &str,
    records: &[AuditRecord],
    head: Option<&ChainHead>,
    key: Option<&AuditKey>,
) -> Result<(), ChainProblem> {
    let problem = |seq: u64, problem: String| ChainProblem {
        chain: chain.to_string(),
        seq,
        problem,
    };
    let mut sorted: Vec<&AuditRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.seq);
    let mut prev = GENESIS.to_string();
    for (expected, record) in (1u64..).zip(&sorted) {
        if record.chain != chain {
            return Err(problem(
                record.seq,
                format!("record {} names chain {:?}", record.seq, record.chain),
            ));
        }
        if record.seq != expected {
            return Err(problem(
                expected,
                format!(
                    "record {expected} is missing (the next one stored is {}): deleted",
                    record.seq
                ),
            ));
        }
        if record.prev != prev {
            return Err(problem(
                record.seq,
                format!(
                    "record {} does not follow record {} (its prev hash differs): a record was \
                     deleted, inserted or reordered",
                    record.seq,
                    record.seq - 1
                ),
            ));
        }
        if record_hash(chain, record.seq, &record.prev, &record.body) != record.hash {
            return Err(problem(
                record.seq,
                format!(
                    "record {} was edited: its content no longer matches its hash",
                    record.seq
                ),
            ));
        }
        prev = record.hash.clone();
    }
    let last = sorted.last().map_or(0, |r| r.seq);
    let Some(head) = head else {
        return Err(problem(last, "the chain's head is missing".into()));
    };
    if head.seq != last || (last > 0 && head.hash != prev) {
        return Err(problem(
            head.seq.min(last + 1).max(1),
            format!(
                "the head names record {} but the chain ends at record {last}: records were \
                 deleted from its end, or the head was rewritten",
                head.seq
            ),
        ));
    }
    if let Some(key) = key {
        let signed = head
            .signature
            .as_deref()
            .is_some_and(|s| signature_holds(key, head, s));
        if !signed {
            return Err(problem(
                head.seq,
                "the head's signature does not hold with the audit key: the head was forged, or \
                 the key is not the hub's"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// The state table's audit chains.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// A chain's head, read consistently (`None`: nothing recorded in it yet).
    async fn audit_head(&self, chain: &str) -> PortResult<Option<ChainHead>>;
    /// Stores `link`'s record, its head and the mark of its change (`link.head.last_key`)
    /// together, only if the chain's head is still at record `expected` (0: the chain is
    /// empty) and that change is not in the chain yet. `at` (the entry's time) places the
    /// record in the by-time index.
    async fn append_audit(
        &self,
        link: &Link,
        expected: u64,
        at: DateTime<Utc>,
    ) -> PortResult<Append>;
    /// True when `key_of_change` was appended to `chain` by [`AuditLog::append_audit`] (its
    /// mark is stored). Changes recorded with their task's final state
    /// ([`crate::ports::OperationStore::finish_task_recorded`]) leave no mark: their task says it.
    async fn change_recorded(&self, chain: &str, key_of_change: &str) -> PortResult<bool>;
    /// Every chain's head (a query of the heads index, never a scan).
    async fn audit_heads(&self) -> PortResult<Vec<ChainHead>>;
    /// Every stored record of one chain, in order.
    async fn audit_chain(&self, chain: &str) -> PortResult<Vec<AuditRecord>>;
    /// The records whose entry is dated from `since` to `until`, inclusive, oldest first.
    async fn audit_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<AuditRecord>>;
    /// The records of [`AuditLog::audit_between`] whose entry is about `subject` (a target's
    /// key, say), oldest first. A store may leave unread what it knows is about others (the
    /// adapter: an index entry whose [`subject_mark`]s do not name it).
    async fn audit_about(
        &self,
        subject: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<AuditRecord>> {
        Ok(records_about(
            self.audit_between(since, until).await?,
            subject,
        ))
    }
}

/// Those of `records` with a change about `subject`.
pub fn records_about(records: Vec<AuditRecord>, subject: &str) -> Vec<AuditRecord> {
    records
        .into_iter()
        .filter(|r| r.is_about(subject))
        .collect()
}

/// What became of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Append {
    /// The record is the chain's new last record.
    Appended,
    /// Another append got there first: read the head again.
    HeadMoved,
    /// The change is in the chain already (a redelivery, or a retry after a lost answer):
    /// nothing was written.
    AlreadyRecorded,
}

/// Appends to a trail whose chains others append to as well.
pub(crate) const APPEND_ATTEMPTS: u32 = 50;

/// Records `entry` at the end of `chain`, once: `key_of_change` names the change (the
/// operation, in a target's chain; a command run, in the config chain), and a change already in
/// the chain — a redelivered task, a retry, a superseded delivery recording what it began — is
/// not appended again (the chain's head names its last change, and a mark per change guards
/// the rest). Another append getting in first is retried on the new head, so concurrent
/// appends to one chain all land, in some order.
pub async fn record(
    log: &dyn AuditLog,
    signer: &AuditSigner,
    chain: &str,
    key_of_change: &str,
    entry: &AuditEntry,
) -> PortResult<()> {
    for _ in 0..APPEND_ATTEMPTS {
        let head = log.audit_head(chain).await?;
        if head.as_ref().is_some_and(|h| h.last_key == key_of_change) {
            return Ok(());
        }
        let link = Link::after(
            head.as_ref(),
            chain,
            key_of_change,
            entry,
            signer.key.as_ref(),
        );
        let expected = head.map_or(0, |h| h.seq);
        match log.append_audit(&link, expected, entry.at).await? {
            Append::Appended | Append::AlreadyRecorded => return Ok(()),
            Append::HeadMoved => continue,
        }
    }
    Err(PortError::new(
        ErrorKind::Throttled,
        format!(
            "audit chain {chain}: {APPEND_ATTEMPTS} appends in a row lost to others; try again"
        ),
    ))
}

/// The time as records and listings print it.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuditKey {
        AuditKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    fn entry(n: u32) -> AuditEntry {
        let mut e = AuditEntry::new(
            ChangeKind::ScheduleAdded,
            format!("schedule-{n}"),
            "arn:aws:iam::111111111111:user/ana",
            "2027-01-04T18:00:00Z".parse().unwrap(),
        );
        e.after = Some(serde_json::json!({ "cron": "0 19 * * 1-5" }));
        e
    }

    /// A worker's change of target `n` in operation `op`.
    fn change(op: &str, n: u32) -> AuditEntry {
        let subject = format!("111111111111#eu-west-1#asg#web-{n}");
        let mut e = AuditEntry::new(
            ChangeKind::TargetStopped,
            &subject,
            "arn:aws:sts::999999999999:assumed-role/curfew-worker/x",
            "2027-01-04T18:00:00Z".parse::<DateTime<Utc>>().unwrap()
                + chrono::Duration::nanoseconds(i64::from(n) * 1_234_567_891),
        );
        e.operation = Some(op.to_string());
        e.task = Some(format!("{op}/{subject}"));
        e.before = Some(serde_json::json!({"min": 1, "max": 4, "desired": 2}));
        e.after = Some(serde_json::json!({"min": 0, "max": 0, "desired": 0}));
        e.detail = vec!["baseline saved".into()];
        e
    }

    #[test]
    fn a_record_of_several_changes_reads_back_each_one_as_it_was() {
        let mut changes = vec![
            change("op-1", 1),
            change("op-2", 2),
            change("op-1", 3),
            change("op-1", 4),
        ];
        // What a worker never writes reads back all the same: another actor, a task that is
        // not `<operation>/<subject>`, an operation without a task, no operation.
        changes[1].actor = "arn:aws:iam::111111111111:user/ana".into();
        changes[1].task = Some("elsewhere".into());
        changes[2].task = None;
        changes[3].operation = None;
        // And what differs from the first change besides: its kind, values that are not sizes,
        // a time before it.
        changes[1].kind = ChangeKind::DriftFound;
        changes[1].before = Some(serde_json::json!({"min": 1, "max": 2}));
        changes[2].after = Some(serde_json::json!({"min": 1, "max": 2, "desired": -1}));
        changes[3].at = changes[0].at - chrono::Duration::nanoseconds(7);
        changes[1].detail = Vec::new();
        changes[2].detail = vec!["processes: suspended AZRebalance".into()];
        let link = Link::after_all(None, "ends/x@t", "op-1/web-3", &changes, None);
        assert_eq!(link.record.entries(), Some(changes.clone()));
        assert_eq!(link.head.last_key, "op-1/web-3");
        assert_eq!(link.record.body.matches("curfew-worker").count(), 1);
        assert_eq!(
            link.record.body.matches("\"operation\":\"op-1\"").count(),
            1,
            "{}",
            link.record.body
        );
        assert!(link.record.is_about("111111111111#eu-west-1#asg#web-2"));
        assert!(!link.record.is_about("111111111111#eu-west-1#asg#web-5"));
        assert_eq!(
            link.record.entry_about("111111111111#eu-west-1#asg#web-3"),
            Some(changes[2].clone())
        );
        // One change's record is the entry itself, as every record was before.
        let one = Link::after(None, "ends/x@t", "k", &changes[0], None);
        assert_eq!(one.record.body, serde_json::to_string(&changes[0]).unwrap());
        assert_eq!(one.record.entries(), Some(vec![changes[0].clone()]));
        // A body that is neither is a tampered record.
        let mut tampered = one.record;
        tampered.body = "{\"changes\": 3}".into();
        assert_eq!(tampered.entries(), None);
        assert!(verify_chain("ends/x@t", &[link.record], Some(&link.head), None).is_ok());
    }

    #[test]
    fn a_workers_change_takes_about_a_tenth_of_a_kilobyte_in_a_record_of_many() {
        let op = "20270104T1800Z-m27231e144658";
        let changes: Vec<AuditEntry> = (0..96).map(|n| change(op, n)).collect();
        let many = Link::after_all(None, "ends/x@t", "k", &changes, None);
        let per_change = many.record.body.len() / changes.len();
        // A record each was an item of its own, billed at least 1 KB.
        assert!(per_change < 115, "{per_change} bytes a change");
    }

    /// A chain of `n` records and its head, built the way appends build it.
    fn chain(n: u32, key: Option<&AuditKey>) -> (Vec<AuditRecord>, ChainHead) {
        let mut head: Option<ChainHead> = None;
        let mut records = Vec::new();
        for i in 1..=n {
            let link = Link::after(
                head.as_ref(),
                CONFIG_CHAIN,
                &format!("c{i}"),
                &entry(i),
                key,
            );
            records.push(link.record);
            head = Some(link.head);
        }
        (records, head.expect("n > 0"))
    }

    fn first_problem(records: &[AuditRecord], head: &ChainHead) -> ChainProblem {
        verify_chain(CONFIG_CHAIN, records, Some(head), Some(&key())).unwrap_err()
    }

    #[test]
    fn an_untouched_chain_verifies_with_its_key() {
        let (records, head) = chain(5, Some(&key()));
        assert_eq!(
            verify_chain(CONFIG_CHAIN, &records, Some(&head), Some(&key())),
            Ok(())
        );
    }

    #[test]
    fn the_first_record_follows_genesis_and_each_next_one_its_predecessor() {
        let (records, _) = chain(3, None);
        assert_eq!(records[0].prev, GENESIS);
        assert_eq!(records[1].prev, records[0].hash);
        assert_eq!(records[2].prev, records[1].hash);
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn an_edited_record_is_named() {
        let (mut records, head) = chain(5, Some(&key()));
        records[2].body = records[2].body.replace("0 19", "0 20");
        let p = first_problem(&records, &head);
        assert_eq!(p.seq, 3);
        assert!(p.problem.contains("edited"), "{}", p.problem);
    }

    #[test]
    fn an_edited_record_whose_hash_was_recomputed_breaks_the_next_link() {
        let (mut records, head) = chain(5, Some(&key()));
        records[2].body = records[2].body.replace("0 19", "0 20");
        records[2].hash = record_hash(CONFIG_CHAIN, 3, &records[2].prev, &records[2].body);
        let p = first_problem(&records, &head);
        assert_eq!(p.seq, 4);
        assert!(
            p.problem.contains("does not follow record 3"),
            "{}",
            p.problem
        );
    }

    #[test]
    fn a_deleted_record_is_named() {
        let (mut records, head) = chain(5, Some(&key()));
        records.remove(1);
        let p = first_problem(&records, &head);
        assert_eq!(p.seq, 2);
        assert!(p.problem.contains("missing"), "{}", p.problem);
    }

    #[test]
    fn a_deleted_and_renumbered_record_breaks_the_link() {
        let (mut records, head) = chain(5, Some(&key()));
        records.remove(1);
        for r in records.iter_mut().skip(1) {
            r.seq -= 1;
        }
        let p = first_problem(&records, &head);
        assert_eq!(p.seq, 2);
        assert!(p.problem.contains("does not follow"), "{}", p.problem);
    }

    #[test]
    fn an_inserted_record_is_named() {
        let (mut records, head) = chain(4, Some(&key()));
        let forged = Link::after(None, CONFIG_CHAIN, "x", &entry(99), None).record;
        let mut inserted = forged;
        inserted.seq = 3;
        for r in records.iter_mut().skip(2) {
            r.seq += 1;
        }
        records.insert(2, inserted);
        let p = first_problem(&records, &head);
        assert_eq!(p.seq, 3);
        assert!(
            p.problem.contains("does not follow record 2"),
            "{}",
            p.problem
        );
    }

    #[test]
    fn reordered_records_are_named() {
        let (mut records, head) = chain(5, Some(&key()));
        let (a, b) = (records[1].seq, records[2].seq);
        records[1].seq = b;
        records[2].seq = a;
        let p = first_problem(&records, &head);
        assert_eq!(p.seq, 2);
    }

    #[test]
    fn records_cut_off_the_end_are_caught_by_the_head() {
        let (mut records, head) = chain(5, Some(&key()));
        records.truncate(3);
        let p = first_problem(&records, &head);
        assert!(p.problem.contains("ends at record 3"), "{}", p.problem);
    }

    #[test]
    fn a_rewritten_head_without_the_key_is_caught_by_its_signature() {
        let (mut records, _) = chain(5, Some(&key()));
        records.truncate(3);
        let forged = ChainHead {
            chain: CONFIG_CHAIN.into(),
            seq: 3,
            hash: records[2].hash.clone(),
            last_key: "c3".into(),
            signature: Some(head_signature(
                &AuditKey::new(vec![7; 32]).unwrap(),
                CONFIG_CHAIN,
                3,
                &records[2].hash,
            )),
        };
        let p = first_problem(&records, &forged);
        assert!(p.problem.contains("signature"), "{}", p.problem);
        // Without the key the rewrite cannot be told apart: that is what the key is for.
        assert_eq!(
            verify_chain(CONFIG_CHAIN, &records, Some(&forged), None),
            Ok(())
        );
    }

    #[test]
    fn an_unsigned_head_fails_when_a_key_is_given() {
        let (records, head) = chain(2, None);
        let p = first_problem(&records, &head);
        assert!(p.problem.contains("signature"), "{}", p.problem);
    }

    #[test]
    fn a_missing_head_is_a_problem() {
        let (records, _) = chain(2, None);
        let p = verify_chain(CONFIG_CHAIN, &records, None, None).unwrap_err();
        assert!(p.problem.contains("head is missing"), "{}", p.problem);
    }

    #[test]
    fn keys_shorter_than_32_bytes_are_refused_and_never_printed() {
        assert_eq!(AuditKey::new(vec![1; 31]), Err(ShortKey(31)));
        let k = AuditKey::new(b"super-secret-value-of-32-bytes!!".to_vec()).unwrap();
        assert!(!format!("{k:?}").contains("super"));
    }

    #[test]
    fn the_hash_follows_the_documented_recipe() {
        // sha256("curfew-audit-v1\nconfig\n1\n<64 zeros>\n{}"), computed independently with
        // `printf 'curfew-audit-v1\nconfig\n1\n%s\n{}' $(printf '0%.0s' {1..64}) | sha256sum`.
        assert_eq!(
            record_hash(CONFIG_CHAIN, 1, GENESIS, "{}"),
            "45e55851a9311278bbada20fda42e6254b804d28f0cf86df63a1fc23d598683b"
        );
    }
}
