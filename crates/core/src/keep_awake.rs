//! Keep-awake overrides as operators give them: until an RFC 3339 time, or for a duration from
//! now. Shared by `curfew override add` and the console, so both read a time the same way.

use chrono::{DateTime, SubsecRound, Utc};

use crate::ports::Override;
use crate::schedule::parse_duration;
use crate::selector::Selector;

/// Why an "awake until" value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwakeUntilError {
    /// Neither a time nor a duration.
    #[error("{0:?} is neither an RFC 3339 time (2027-01-04T22:00:00Z) nor a duration (3h, 90m)")]
    Unreadable(String),
    /// A duration past what can be stored.
    #[error("{0:?} from now is past the last time curfew can store")]
    TooFar(String),
    /// A time that is not in the future.
    #[error("{} is not in the future", crate::view::utc(*.0))]
    Past(DateTime<Utc>),
}

/// Until when `value` keeps targets awake: an RFC 3339 time, or a duration from `now` (a bare
/// number is minutes). Must be in the future. Whole seconds: skip reasons quote it, and nobody
/// needs nanoseconds.
pub fn awake_until(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, AwakeUntilError> {
    let until = match DateTime::parse_from_rfc3339(value.trim()) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let duration = parse_duration(value)
                .ok_or_else(|| AwakeUntilError::Unreadable(value.to_string()))?;
            now.checked_add_signed(duration)
                .ok_or_else(|| AwakeUntilError::TooFar(value.to_string()))?
        }
    }
    .trunc_subsecs(0);
    if until <= now {
        return Err(AwakeUntilError::Past(until));
    }
    Ok(until)
}

/// A new override keeping `selector`'s targets awake until `awake_until`, set at `now`, with a
/// time-ordered id (`20270104T180000Z-1a2b3c4d5e6f`).
pub fn new_override(
    selector: Selector,
    awake_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Override {
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    Override {
        id: format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), &uuid[20..]),
        selector,
        awake_until,
        created_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn each_refusal_says_what_was_wrong() {
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        let cases = [
            ("soon", AwakeUntilError::Unreadable("soon".into())),
            ("999999999d", AwakeUntilError::TooFar("999999999d".into())),
            ("2027-01-04T18:00:00Z", AwakeUntilError::Past(now)),
        ];
        for (value, expected) in cases {
            assert_eq!(awake_until(value, now), Err(expected), "{value}");
        }
        assert_eq!(
            AwakeUntilError::Past(now).to_string(),
            "2027-01-04T18:00:00Z is not in the future"
        );
    }

    #[test]
    fn override_ids_start_with_the_time_they_were_set() {
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        let o = new_override(Selector::parse("tag:env=dev").unwrap(), now, now);
        assert!(o.id.starts_with("20270104T180000Z-"), "{}", o.id);
        assert_eq!(o.id.len(), "20270104T180000Z-".len() + 12);
    }
}
