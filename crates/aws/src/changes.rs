//! Recording the operators' changes (schedules, accounts, overrides) in the audit trail's
//! `config` chain: who made each one (the caller's IAM principal, as STS GetCallerIdentity
//! names it), when, and the subject before and after. The command line and the console record
//! through here, so a change made in either reads the same in `curfew audit list`.

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use curfew_core::ports::{PortError, StateStore};
use curfew_core::schedule::{Schedule, ScheduleRecord};
use curfew_core::trail::{self, AuditEntry, AuditKey, AuditSigner, ChangeKind, CONFIG_CHAIN};
use serde::Serialize;

use crate::error::classify;

/// Why a change was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// STS could not say who is making the change.
    #[error("asking STS who is making the change (GetCallerIdentity), for the audit trail")]
    Caller(#[source] PortError),
    /// The change is made, but its record could not be appended.
    #[error("{kind} {subject} was done, but recording it in the audit trail failed")]
    Trail {
        /// What was changed.
        kind: ChangeKind,
        /// Its name or id.
        subject: String,
        /// Why the append failed.
        #[source]
        source: PortError,
    },
}

/// Records changes as the principal the SDK configuration's credentials belong to.
#[derive(Clone, Debug)]
pub struct ChangeRecorder {
    sts: aws_sdk_sts::Client,
    key: Option<AuditKey>,
}

impl ChangeRecorder {
    /// A recorder asking STS through `sdk`, signing chain heads with `key` when there is one.
    pub fn new(sdk: &SdkConfig, key: Option<AuditKey>) -> ChangeRecorder {
        ChangeRecorder {
            sts: aws_sdk_sts::Client::new(sdk),
            key,
        }
    }

    /// The IAM principal making the changes.
    pub async fn caller(&self) -> Result<String, ChangeError> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| ChangeError::Caller(classify("GetCallerIdentity", e)))?;
        Ok(identity.arn().unwrap_or("unknown principal").to_string())
    }

    /// Appends one change to the `config` chain. Called once the change is made: if the append
    /// fails, the error says the change stands but is not in the trail.
    pub async fn record(
        &self,
        store: &dyn StateStore,
        kind: ChangeKind,
        subject: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
        at: DateTime<Utc>,
    ) -> Result<(), ChangeError> {
        let actor = self.caller().await?;
        let mut entry = AuditEntry::new(kind, subject, actor.clone(), at);
        entry.before = before;
        entry.after = after;
        let signer = AuditSigner {
            actor,
            key: self.key.clone(),
        };
        // Each change is one record: a fresh key, so two identical changes are two records.
        let change = uuid::Uuid::new_v4().to_string();
        trail::record(store, &signer, CONFIG_CHAIN, &change, &entry)
            .await
            .map_err(|source| ChangeError::Trail {
                kind,
                subject: subject.to_string(),
                source,
            })
    }
}

/// A subject as the trail keeps it.
pub fn json<T: Serialize>(subject: &T) -> Option<serde_json::Value> {
    serde_json::to_value(subject).ok()
}

/// A schedule as the trail keeps it: its stored record, without the next fire (which the
/// poller moves on its own).
pub fn schedule_json(schedule: &Schedule) -> Option<serde_json::Value> {
    let mut value = json(&ScheduleRecord::from(schedule.clone()))?;
    if let Some(map) = value.as_object_mut() {
        map.remove("next_fire");
    }
    Some(value)
}
