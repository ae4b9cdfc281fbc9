//! Recording the operators' changes (schedules, accounts, overrides) in the audit trail's
//! `config` chain: who made each one (the caller's IAM principal, as STS GetCallerIdentity
//! names it), when, and the subject before and after.

use anyhow::{Context, Result};
use chrono::Utc;
use curfew_core::ports::StateStore;
use curfew_core::trail::{self, AuditEntry, AuditKey, AuditSigner, ChangeKind, CONFIG_CHAIN};
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::connect;
use crate::error::bad_input;

/// The audit key from `CURFEW_AUDIT_KEY`, if set (refused, naming the variable, when shorter
/// than 32 bytes).
pub fn audit_key() -> Result<Option<AuditKey>> {
    let signer = curfew_aws::hub::audit_signer(&|name| std::env::var(name).ok())
        .map_err(|e| bad_input(e.to_string()))?;
    Ok(signer.key)
}

/// The IAM principal the command runs as.
pub async fn caller(opts: &GlobalOpts) -> Result<String> {
    let sdk = connect::sdk(opts).await?;
    let identity = aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
        .context("asking STS who is making the change (GetCallerIdentity), for the audit trail")?;
    Ok(identity.arn().unwrap_or("unknown principal").to_string())
}

/// A subject as the trail keeps it.
pub fn json<T: Serialize>(subject: &T) -> Option<serde_json::Value> {
    serde_json::to_value(subject).ok()
}

/// An account as the trail keeps it: its ExternalId is a shared secret, so the trail says only
/// whether one is set.
pub fn account_json(account: &curfew_core::account::Account) -> Option<serde_json::Value> {
    let mut value = json(account)?;
    if let Some(id) = value.pointer_mut("/role/external_id") {
        if !id.is_null() {
            *id = serde_json::Value::String("(set)".into());
        }
    }
    Some(value)
}

/// A schedule as the trail keeps it: its stored record, without the next fire (which the
/// poller moves on its own).
pub fn schedule_json(schedule: &curfew_core::schedule::Schedule) -> Option<serde_json::Value> {
    let mut value = json(&curfew_core::schedule::ScheduleRecord::from(
        schedule.clone(),
    ))?;
    if let Some(map) = value.as_object_mut() {
        map.remove("next_fire");
    }
    Some(value)
}

/// Appends one operator's change to the `config` chain. Called once the change is made: if
/// the append fails, the error says the change stands but is not in the trail.
pub async fn record(
    opts: &GlobalOpts,
    store: &dyn StateStore,
    kind: ChangeKind,
    subject: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<()> {
    let key = audit_key()?;
    let actor = caller(opts).await?;
    let mut entry = AuditEntry::new(kind, subject, actor.clone(), Utc::now());
    entry.before = before;
    entry.after = after;
    let signer = AuditSigner { actor, key };
    // Each run of a command is one change: a fresh key, so two identical commands are two
    // records.
    let change = uuid::Uuid::new_v4().to_string();
    trail::record(store, &signer, CONFIG_CHAIN, &change, &entry)
        .await
        .with_context(|| {
            format!("{kind} {subject} was done, but recording it in the audit trail failed")
        })
}
