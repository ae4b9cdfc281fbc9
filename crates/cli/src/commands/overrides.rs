//! `curfew override`: keep matching targets awake until a time; stops skip them with a reason.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use curfew_core::ports::Override;
use curfew_core::schedule::parse_duration;

use crate::cli::{GlobalOpts, Output, OverrideArgs};
use crate::connect;
use crate::error::bad_input;
use crate::output;

/// `--awake-until`: an RFC 3339 time, or a duration from `now`. Must be in the future.
fn awake_until(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let until = match DateTime::parse_from_rfc3339(value.trim()) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => parse_duration(value).map(|d| now + d).ok_or_else(|| {
            bad_input(format!(
                "--awake-until: {value:?} is neither an RFC 3339 time (2027-01-04T22:00:00Z) nor a duration (3h, 90m)"
            ))
        })?,
    };
    if until <= now {
        return Err(bad_input(format!(
            "--awake-until: {} is not in the future",
            output::utc(until)
        )));
    }
    Ok(until)
}

/// Stores an override, or lists those in force.
pub async fn run(args: OverrideArgs, opts: &GlobalOpts) -> Result<()> {
    let now = Utc::now();
    if args.list {
        let store = connect::store(opts).await?;
        let mut overrides = store
            .active_overrides(now)
            .await
            .context("listing overrides")?;
        overrides.sort_by_key(|o| o.awake_until);
        return match opts.output {
            Output::Json => output::print_json(&overrides),
            Output::Table => {
                let mut table =
                    output::table(["id", "select", "awake until (UTC)", "set at (UTC)"]);
                for o in &overrides {
                    table.add_row(vec![
                        o.id.clone(),
                        o.selector.to_string(),
                        output::utc(o.awake_until),
                        output::utc(o.created_at),
                    ]);
                }
                println!("{table}");
                Ok(())
            }
        };
    }
    let (Some(selector), Some(until)) = (args.select, args.awake_until) else {
        return Err(bad_input("give --select and --awake-until, or --list"));
    };
    let awake_until = awake_until(&until, now)?;
    let store = connect::store(opts).await?;
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    let o = Override {
        id: format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), &uuid[20..]),
        selector,
        awake_until,
        created_at: now,
    };
    store
        .put_override(&o)
        .await
        .context("storing the override")?;
    match opts.output {
        Output::Json => output::print_json(&o),
        Output::Table => {
            println!(
                "targets matching {} stay awake until {}: stops skip them (override {})",
                o.selector,
                output::utc(o.awake_until),
                o.id
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn awake_until_takes_a_time_or_a_duration_in_the_future() {
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        assert_eq!(
            awake_until("3h", now).unwrap(),
            Utc.with_ymd_and_hms(2027, 1, 4, 21, 0, 0).unwrap()
        );
        assert_eq!(
            awake_until("2027-01-04T22:00:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2027, 1, 4, 21, 0, 0).unwrap()
        );
        assert!(awake_until("2027-01-04T17:00:00Z", now).is_err());
        assert!(awake_until("soon", now).is_err());
    }
}
