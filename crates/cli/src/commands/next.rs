//! `curfew next`: the schedule preview, with curfew's DST rules (see `curfew_core::cron`), the
//! dates a schedule skips marked as skipped, and for a stored window schedule both kinds of
//! fire.

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use curfew_core::calendar::Calendars;
use curfew_core::ports::StateStore;
use curfew_core::schedule::{Fire, Schedule, ScheduleRecord, When};

use super::parse_instant;
use crate::cli::{GlobalOpts, NextArgs, Output};
use crate::connect;
use crate::error::bad_input;
use crate::output::{self, outln, FireJson};

/// The preview's schedule from `--cron`/`--tz` and the skips given with them. The action is a
/// placeholder the preview never prints: a `--cron` preview has none.
fn cron_schedule(args: &NextArgs) -> Result<Schedule> {
    let record = ScheduleRecord {
        name: "next".into(),
        cron: args.cron.clone(),
        tz: args.tz.clone().unwrap_or_default(),
        action: Some("stop".into()),
        asleep: None,
        selector: "name=*".into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: args.skip_dates.clone(),
        skip_calendars: args.skip_calendar.clone(),
        awake_calendars: Vec::new(),
        enforce: false,
        default_start: None,
        hold: None,
        next_fire: None,
    };
    Schedule::try_from(record).map_err(|e| bad_input(format!("--{}: {e}", e.field())))
}

/// The calendars `schedule` names, each of which must exist.
pub(crate) async fn calendars(store: &dyn StateStore, schedule: &Schedule) -> Result<Calendars> {
    let mut calendars = Calendars::none();
    for name in schedule.calendar_names() {
        let calendar = store
            .get_calendar(name)
            .await
            .with_context(|| format!("reading calendar {name}"))?
            .ok_or_else(|| anyhow!("no calendar named {name:?} (see `curfew calendar list`)"))?;
        calendars.insert(calendar);
    }
    Ok(calendars)
}

/// Prints the next `--count` fire times strictly after `--after`.
pub async fn run(args: &NextArgs, opts: &GlobalOpts) -> Result<()> {
    let after = match &args.after {
        Some(value) => parse_instant(value, "--after")?,
        None => Utc::now(),
    };
    let stored = args.schedule.as_ref().or(args.name.as_ref());
    let (schedule, calendars) = match stored {
        Some(name) => {
            curfew_core::schedule::validate_name(name)
                .map_err(|e| bad_input(format!("--schedule: {e}")))?;
            let store = connect::store(opts).await?;
            let schedule = store
                .get_schedule(name)
                .await
                .with_context(|| format!("reading schedule {name}"))?
                .ok_or_else(|| anyhow!("no schedule named {name:?}"))?;
            let calendars = calendars(store.as_ref(), &schedule).await?;
            (schedule, calendars)
        }
        None => {
            let schedule = cron_schedule(args)?;
            let calendars = if schedule.skip_calendars.is_empty() {
                Calendars::none()
            } else {
                let store = connect::store(opts).await?;
                calendars(store.as_ref(), &schedule)
                    .await
                    .map_err(|e| bad_input(format!("--skip-calendar: {e:#}")))?
            };
            (schedule, calendars)
        }
    };
    let fires = schedule.upcoming(after, usize::from(args.count), &calendars);
    // A --cron preview has no action to show: it prints the contract's {utc, local} only.
    let with_action = stored.is_some();
    match opts.output {
        Output::Json => output::print_json(
            &fires
                .iter()
                .map(|f| {
                    let mut json = FireJson::from(f);
                    if !with_action {
                        json.action = None;
                    }
                    json
                })
                .collect::<Vec<_>>(),
        ),
        Output::Table => print(&schedule, &fires, with_action),
    }
}

fn print(schedule: &Schedule, fires: &[Fire], with_action: bool) -> Result<()> {
    let zone = schedule.zone();
    let local_header = format!("local ({})", zone.name());
    let mut table = if with_action {
        output::table(["UTC", &local_header, "", "action", "note"])
    } else {
        output::table(["UTC", &local_header, "", "note"])
    };
    for fire in fires {
        let mut row = vec![
            output::utc(fire.time.utc),
            output::local(fire.time.local),
            fire.time
                .utc
                .with_timezone(&zone)
                .format("%a %H:%M %Z")
                .to_string(),
        ];
        if with_action {
            row.push(fire.action.to_string());
        }
        row.push(
            fire.skipped
                .as_ref()
                .map(|s| format!("skipped: {s}"))
                .unwrap_or_default(),
        );
        table.add_row(row);
    }
    outln!("{table}")?;
    match &schedule.when {
        When::Cron { cron, .. } => {
            let rule = if cron.is_fixed_time() {
                "fixed time: a skipped time fires right after the jump, a repeated one at its first occurrence"
            } else {
                "follows real time across daylight-saving changes"
            };
            outln!("{} in {} ({rule})", cron.expression(), cron.zone_name())?;
        }
        When::Window(w) => {
            outln!(
                "asleep {} in {} (each edge fires as a fixed-time cron: a skipped time right after the jump, a repeated one at its first occurrence)",
                w.week().to_text(),
                zone.name()
            )?;
        }
    }
    if fires.is_empty() {
        outln!("no fire times before the year 5000")?;
    }
    Ok(())
}
