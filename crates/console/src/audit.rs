//! The audit trail's filters as the page and `/api/audit` take them in the query string.

use chrono::{DateTime, Utc};
use curfew_core::audit_list::AuditFilter;
use serde::Deserialize;

/// How many records a listing shows unless told.
const DEFAULT_LIMIT: usize = 100;

/// `?since=&until=&target=&operation=&actor=&limit=` (empty fields are unset).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// RFC 3339.
    #[serde(default)]
    pub since: String,
    /// RFC 3339.
    #[serde(default)]
    pub until: String,
    /// A target key.
    #[serde(default)]
    pub target: String,
    /// An operation id.
    #[serde(default)]
    pub operation: String,
    /// Text in the actor.
    #[serde(default)]
    pub actor: String,
    /// At most this many (1 to 1000).
    pub limit: Option<usize>,
}

fn set(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn instant(
    text: &str,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, (&'static str, String)> {
    set(text)
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    (
                        field,
                        format!("{t:?} is not an RFC 3339 time such as 2027-03-27T12:00:00Z ({e})"),
                    )
                })
        })
        .transpose()
}

impl AuditQuery {
    /// The filter, or the field at fault and why.
    pub fn filter(&self) -> Result<AuditFilter, (&'static str, String)> {
        Ok(AuditFilter {
            since: instant(&self.since, "since")?,
            until: instant(&self.until, "until")?,
            target: set(&self.target),
            operation: set(&self.operation),
            actor: set(&self.actor),
            limit: self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, 1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_unset_and_a_bad_time_names_its_field() {
        let q = AuditQuery {
            actor: " alice ".into(),
            ..Default::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.actor.as_deref(), Some("alice"));
        assert_eq!((f.since, f.target, f.limit), (None, None, 100));
        let bad = AuditQuery {
            until: "yesterday".into(),
            ..Default::default()
        };
        assert_eq!(bad.filter().unwrap_err().0, "until");
    }
}
