//! Recording the operators' changes (schedules, accounts, overrides) in the audit trail's
//! `config` chain: who made each one (the caller's IAM principal, as STS GetCallerIdentity
//! names it), when, and the subject before and after.

use anyhow::Result;
use chrono::Utc;
use curfew_aws::changes::ChangeRecorder;
use curfew_core::ports::StateStore;
use curfew_core::trail::{AuditKey, ChangeKind};

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

pub use curfew_aws::changes::{json, schedule_json};

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

/// Appends one operator's change to the `config` chain (`curfew_aws::changes`). Called once
/// the change is made: if the append fails, the error says the change stands but is not in
/// the trail.
pub async fn record(
    opts: &GlobalOpts,
    store: &dyn StateStore,
    kind: ChangeKind,
    subject: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<()> {
    let key = audit_key()?;
    let sdk = connect::sdk(opts).await?;
    ChangeRecorder::new(&sdk, key)
        .record(store, kind, subject, before, after, Utc::now())
        .await?;
    Ok(())
}
