//! Reading the audit trail the way operators ask for it: a window of time (or one target's
//! chain), filtered by operation and actor, newest first. Shared by `curfew audit list` and the
//! console, so both list the same records.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::ports::PortResult;
use crate::trail::{target_chain, AuditEntry, AuditLog, AuditRecord};

/// The window read when no `since` is given.
pub const DEFAULT_WINDOW_DAYS: i64 = 7;

/// What to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// From this time on.
    pub since: Option<DateTime<Utc>>,
    /// Up to this time.
    pub until: Option<DateTime<Utc>>,
    /// One target's records (its key): its own chain's and its changes in deliveries' chains
    /// ([`target_records`]).
    pub target: Option<String>,
    /// One operation's changes.
    pub operation: Option<String>,
    /// Actors containing this text.
    pub actor: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl AuditFilter {
    /// True when `entry` passes the time, operation and actor filters.
    pub fn keeps(&self, entry: &AuditEntry) -> bool {
        self.since.is_none_or(|t| entry.at >= t)
            && self.until.is_none_or(|t| entry.at <= t)
            && self
                .operation
                .as_ref()
                .is_none_or(|op| entry.operation.as_ref() == Some(op))
            && self.actor.as_ref().is_none_or(|a| entry.actor.contains(a))
    }
}

/// One change as `curfew audit list --output json` prints it: the entry with its record's place
/// in the trail (a delivery's record lists its changes of many targets, each listed alone).
#[derive(Clone, Debug, Serialize)]
pub struct ListedRecord {
    /// The chain it belongs to.
    pub chain: String,
    /// Its place in the chain.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// What changed.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// The records `filter` keeps, newest first, at most `filter.limit`. Without a `since`, the
/// window is the [`DEFAULT_WINDOW_DAYS`] before `until` (default `now`). A target's records are
/// its own chain's (drift found, earlier versions' changes: all of them) and the changes a
/// worker's delivery recorded in the delivery's chain with other targets' (see
/// [`crate::trail::delivery_chain`]): those in the window, read by time.
pub async fn list(
    log: &dyn AuditLog,
    filter: &AuditFilter,
    now: DateTime<Utc>,
) -> PortResult<Vec<ListedRecord>> {
    let until = filter.until.unwrap_or(now);
    let since = filter
        .since
        .unwrap_or(until - Duration::days(DEFAULT_WINDOW_DAYS));
    let records: Vec<AuditRecord> = match &filter.target {
        Some(key) => target_records(log, key, since, until).await?,
        None => log.audit_between(since, until).await?,
    };
    let mut shown: Vec<ListedRecord> = records
        .into_iter()
        .flat_map(|r| {
            // A record whose body no longer parses is tampered with: `audit verify` names it.
            // A delivery's record lists its changes of many targets: each is listed alone.
            let entries = r.entries().unwrap_or_default();
            entries
                .into_iter()
                .filter(|entry| {
                    filter.keeps(entry)
                        && filter
                            .target
                            .as_ref()
                            .is_none_or(|key| &entry.subject == key)
                })
                .map(move |entry| ListedRecord {
                    chain: r.chain.clone(),
                    seq: r.seq,
                    hash: r.hash.clone(),
                    entry,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    shown.sort_by(|a, b| (b.entry.at, &b.chain, b.seq).cmp(&(a.entry.at, &a.chain, a.seq)));
    shown.truncate(filter.limit);
    Ok(shown)
}

/// The records of one target: all of its own chain's, and those of the changes recorded in a
/// delivery's chain ([`crate::trail::delivery_chain`]) dated from `since` to `until`
/// ([`AuditLog::audit_about`]: the adapter reads only the records whose index entry marks
/// the target among its subjects).
pub async fn target_records(
    log: &dyn AuditLog,
    target_key: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> PortResult<Vec<AuditRecord>> {
    let chain = target_chain(target_key);
    let (mut records, window) = futures::try_join!(
        log.audit_chain(&chain),
        log.audit_about(target_key, since, until)
    )?;
    records.extend(window.into_iter().filter(|r| r.chain != chain));
    Ok(records)
}

/// A subject for a table cell: sizes as min/max/desired, anything else as short JSON.
pub fn compact(value: Option<&serde_json::Value>) -> String {
    let Some(value) = value else {
        return "-".into();
    };
    let size = |name: &str| value.get(name).and_then(serde_json::Value::as_i64);
    match (size("min"), size("max"), size("desired")) {
        (Some(min), Some(max), Some(desired)) => format!("{min}/{max}/{desired}"),
        _ => {
            let text = value.to_string();
            if text.chars().count() > 60 {
                format!("{}…", text.chars().take(59).collect::<String>())
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_read_as_min_max_desired_and_long_subjects_are_cut() {
        assert_eq!(
            compact(Some(&json!({"min": 1, "max": 3, "desired": 2}))),
            "1/3/2"
        );
        assert_eq!(compact(None), "-");
        let long = json!({"selector": "x".repeat(80)});
        let cut = compact(Some(&long));
        assert_eq!(cut.chars().count(), 60);
        assert!(cut.ends_with('…'));
    }
}
