//! `curfew override`: keep matching targets awake until a time; stops skip them with a reason.

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, SubsecRound, Utc};
use curfew_core::ports::{Override, StateStore};
use curfew_core::selector::Selector;
use curfew_core::trail::ChangeKind;

use crate::changes;
use crate::cli::{GlobalOpts, Output, OverrideArgs, OverrideCommand};
use crate::connect;
use crate::error::bad_input;
use crate::output::{self, outln};

/// `--awake-until`: an RFC 3339 time, or a duration from `now` (a bare number is minutes).
/// Must be in the future. Whole seconds: skip reasons quote it, and nobody needs nanoseconds.
fn awake_until(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    curfew_core::keep_awake::awake_until(value, now)
        .map_err(|e| bad_input(format!("--awake-until: {e}")))
}

/// Runs `override add|list|remove`, or its flag aliases (`--select`/`--awake-until`, `--list`,
/// `--remove ID`).
pub async fn run(args: OverrideArgs, opts: &GlobalOpts) -> Result<()> {
    let command = match args.command {
        Some(command) => command,
        None if args.list => OverrideCommand::List,
        None => match (args.remove, args.select, args.awake_until) {
            (Some(id), _, _) => OverrideCommand::Remove { id },
            (None, Some(select), Some(awake_until)) => OverrideCommand::Add {
                select,
                awake_until,
            },
            _ => {
                return Err(bad_input(
                    "give add --select S --awake-until T, list, or remove ID",
                ))
            }
        },
    };
    match command {
        OverrideCommand::List => list(opts).await,
        OverrideCommand::Remove { id } => remove(&id, opts).await,
        OverrideCommand::Add {
            select,
            awake_until,
        } => add(select, &awake_until, opts).await,
    }
}

/// The overrides in force, soonest to expire first.
async fn list(opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let mut overrides = store
        .active_overrides(Utc::now())
        .await
        .context("listing overrides")?;
    overrides.sort_by_key(|o| o.awake_until);
    match opts.output {
        Output::Json => output::print_json(&overrides),
        Output::Table => {
            let mut table = output::table(["id", "select", "awake until (UTC)", "set at (UTC)"]);
            for o in &overrides {
                table.add_row(vec![
                    o.id.clone(),
                    o.selector.to_string(),
                    output::utc(o.awake_until),
                    output::utc(o.created_at),
                ]);
            }
            outln!("{table}")
        }
    }
}

/// Stores (and records in the audit trail) an override keeping `selector`'s targets awake
/// until `awake_until` (whole seconds).
pub(crate) async fn keep_awake(
    store: &dyn StateStore,
    opts: &GlobalOpts,
    selector: Selector,
    awake_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Override> {
    let o = curfew_core::keep_awake::new_override(selector, awake_until.trunc_subsecs(0), now);
    store
        .put_override(&o)
        .await
        .context("storing the override")?;
    changes::record(
        opts,
        store,
        ChangeKind::OverrideAdded,
        &o.id,
        None,
        changes::json(&o),
    )
    .await?;
    Ok(o)
}

/// Stores an override keeping `selector`'s targets awake until `until`.
async fn add(selector: Selector, until: &str, opts: &GlobalOpts) -> Result<()> {
    let now = Utc::now();
    let awake_until = awake_until(until, now)?;
    let store = connect::store(opts).await?;
    let o = keep_awake(store.as_ref(), opts, selector, awake_until, now).await?;
    match opts.output {
        Output::Json => output::print_json(&o),
        Output::Table => {
            outln!(
                "targets matching {} stay awake until {}: stops skip them (override {})",
                o.selector,
                output::utc(o.awake_until),
                o.id
            )
        }
    }
}

/// Ends an override before it expires.
async fn remove(id: &str, opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let before = store
        .active_overrides(Utc::now())
        .await
        .context("reading the overrides")?
        .into_iter()
        .find(|o| o.id == id)
        .and_then(|o| changes::json(&o));
    let removed = store
        .remove_override(id)
        .await
        .with_context(|| format!("removing override {id}"))?;
    if !removed {
        return Err(anyhow!(
            "no override with id {id:?} (see `curfew override list`)"
        ));
    }
    changes::record(
        opts,
        store.as_ref(),
        ChangeKind::OverrideRemoved,
        id,
        before,
        None,
    )
    .await?;
    match opts.output {
        Output::Json => output::print_json(&serde_json::json!({ "removed": id })),
        Output::Table => outln!("override {id} removed: stops no longer skip its targets"),
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

    #[test]
    fn awake_until_is_whole_seconds() {
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
            + chrono::TimeDelta::nanoseconds(317_194_542);
        assert_eq!(
            awake_until("90m", now).unwrap(),
            Utc.with_ymd_and_hms(2027, 1, 4, 19, 30, 0).unwrap()
        );
    }

    #[test]
    fn a_duration_past_the_last_representable_time_is_bad_input() {
        let err = awake_until("999999999d", Utc::now()).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().starts_with("--awake-until: "), "{err}");
    }
}
