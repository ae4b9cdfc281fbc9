//! `curfew schedule add | list | show | enable | disable | delete`.

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use curfew_core::calendar::Calendars;
use curfew_core::ports::{ErrorKind, StateStore};
use curfew_core::schedule::{
    parse_duration, validate_name, BrokenSchedule, Schedule, ScheduleRecord,
};
use curfew_core::target::Sizes;
use curfew_core::trail::ChangeKind;
use curfew_core::view::ScheduleRowJson;
use curfew_core::window::{Week, DAYS};
use serde::Serialize;

use crate::changes;
use crate::cli::{GlobalOpts, Output, ScheduleAddArgs, ScheduleCommand};
use crate::connect;
use crate::error::bad_input;
use crate::output::{self, outln, FireJson};

/// The flag an operator typed for a schedule field (see `ScheduleError::field`).
fn flag(field: &str) -> String {
    match field {
        "name" => "NAME".to_string(),
        other => format!("--{other}"),
    }
}

/// A NAME no schedule can have is bad input (exit 2), checked as `schedule add` checks it,
/// before the table is reached.
fn check_name(name: &str) -> Result<()> {
    validate_name(name).map_err(|e| bad_input(format!("{}: {e}", flag(e.field()))))
}

/// Runs a schedule command.
pub async fn run(command: ScheduleCommand, opts: &GlobalOpts) -> Result<()> {
    if let ScheduleCommand::Show { name }
    | ScheduleCommand::Enable { name }
    | ScheduleCommand::Disable { name }
    | ScheduleCommand::Delete { name } = &command
    {
        check_name(name)?;
    }
    match command {
        ScheduleCommand::Add(args) => add(*args, opts).await,
        ScheduleCommand::List => {
            let store = connect::store(opts).await?;
            let mut list = store.list_schedules().await.context("listing schedules")?;
            list.schedules.sort_by(|a, b| a.name.cmp(&b.name));
            list.broken.sort_by(|a, b| a.name.cmp(&b.name));
            match opts.output {
                Output::Json => output::print_json(&ScheduleRowJson::rows(&list)),
                Output::Table => print_list(&list.schedules, &list.broken),
            }
        }
        ScheduleCommand::Show { name } => {
            let store = connect::store(opts).await?;
            let schedule = get(store.as_ref(), &name).await?;
            let calendars = super::next::calendars(store.as_ref(), &schedule).await?;
            show(schedule, &calendars, opts.output)
        }
        ScheduleCommand::Grid { name } => {
            let store = connect::store(opts).await?;
            let schedule = get(store.as_ref(), &name).await?;
            let window = schedule.window().ok_or_else(|| {
                anyhow!("schedule {name:?} is a cron schedule: only a window schedule has a week to draw")
            })?;
            let week = window.week();
            match opts.output {
                Output::Json => output::print_json(&week.grid_rows()?),
                Output::Table => {
                    let grid = week.to_grid()?;
                    outln!("{}", grid.trim_end())
                }
            }
        }
        ScheduleCommand::Enable { name } => {
            let store = connect::store(opts).await?;
            let schedule = get(store.as_ref(), &name).await?;
            let calendars = super::next::calendars(store.as_ref(), &schedule).await?;
            let next = schedule
                .next_fire_after(Utc::now(), &calendars)
                .map(|f| f.time.utc);
            set_enabled(store.as_ref(), &name, true, next).await?;
            let after = get(store.as_ref(), &name).await?;
            record(
                opts,
                store.as_ref(),
                ChangeKind::ScheduleEnabled,
                &schedule,
                Some(&after),
            )
            .await?;
            let calendars = super::next::calendars(store.as_ref(), &after).await?;
            show(after, &calendars, opts.output)
        }
        ScheduleCommand::Disable { name } => {
            let store = connect::store(opts).await?;
            let schedule = get(store.as_ref(), &name).await?;
            set_enabled(store.as_ref(), &name, false, None).await?;
            let after = get(store.as_ref(), &name).await?;
            record(
                opts,
                store.as_ref(),
                ChangeKind::ScheduleDisabled,
                &schedule,
                Some(&after),
            )
            .await?;
            let calendars = super::next::calendars(store.as_ref(), &after).await?;
            show(after, &calendars, opts.output)
        }
        ScheduleCommand::Delete { name } => {
            let store = connect::store(opts).await?;
            // A broken schedule can still be deleted: its record is then not in the trail.
            let before = store.get_schedule(&name).await.ok().flatten();
            let deleted = store
                .delete_schedule(&name)
                .await
                .with_context(|| format!("deleting schedule {name}"))?;
            if !deleted {
                return Err(anyhow!("no schedule named {name:?}"));
            }
            changes::record(
                opts,
                store.as_ref(),
                ChangeKind::ScheduleDeleted,
                &name,
                before.as_ref().and_then(changes::schedule_json),
                None,
            )
            .await?;
            match opts.output {
                Output::Json => output::print_json(&serde_json::json!({"deleted": name})),
                Output::Table => {
                    outln!("schedule {name} deleted")
                }
            }
        }
    }
}

/// Parses `MIN/MAX/DESIRED`.
fn parse_sizes(value: &str) -> Option<Sizes> {
    let parts: Vec<i32> = value
        .split('/')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [min, max, desired] => Some(Sizes::new(min, max, desired)),
        _ => None,
    }
}

/// The window text of `--asleep`, or of the week `--grid` draws (read from the file or stdin).
fn asleep_text(args: &ScheduleAddArgs) -> Result<Option<String>> {
    let Some(path) = &args.grid else {
        return Ok(args.asleep.clone());
    };
    let text = if path == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading the grid from stdin")?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("--grid: cannot read {}: {e}", path.display())))?
    };
    let week = Week::parse_grid(&text).map_err(|e| bad_input(format!("--grid: {e}")))?;
    Ok(Some(week.to_text()))
}

/// Validates every field (nothing is written on bad input), then creates the schedule with its
/// next fire time.
async fn add(args: ScheduleAddArgs, opts: &GlobalOpts) -> Result<()> {
    let prewarm_minutes = match &args.prewarm {
        None => 0,
        Some(value) => parse_duration(value)
            .filter(|d| d.num_seconds() % 60 == 0 && d.num_minutes() <= 24 * 60)
            .map(|d| d.num_minutes())
            .ok_or_else(|| {
                bad_input(format!(
                    "--prewarm: invalid duration {value:?}: expected whole minutes such as 15m or 1h, at most 24h"
                ))
            })?,
    };
    let default_start = match &args.default_start {
        None => None,
        Some(value) => Some(parse_sizes(value).ok_or_else(|| {
            bad_input(format!(
                "--default-start: {value:?} is not MIN/MAX/DESIRED such as 1/3/2"
            ))
        })?),
    };
    let asleep = asleep_text(&args)?;
    let record = ScheduleRecord {
        hold: args.hold.map(|m| m.to_string().replace('+', ",")),
        name: args.name,
        cron: args.cron,
        tz: args.tz,
        action: args.action,
        asleep,
        selector: args.select,
        enabled: true,
        dry_run: args.dry_run,
        prewarm_minutes,
        skip_dates: args.skip_dates,
        skip_calendars: args.skip_calendar,
        awake_calendars: args.awake_on_calendar,
        enforce: args.enforce,
        default_start,
        next_fire: None,
    };
    let mut schedule = Schedule::try_from(record).map_err(|e| {
        // A grid's week is checked as window text: name the flag the operator used.
        let field = match (e.field(), args.grid.is_some()) {
            ("asleep", true) => "grid",
            (field, _) => field,
        };
        bad_input(format!("{}: {e}", flag(field)))
    })?;
    let store = connect::store(opts).await?;
    let mut calendars = Calendars::none();
    for (field, names) in [
        ("skip-calendar", &schedule.skip_calendars),
        ("awake-on-calendar", &schedule.awake_calendars),
    ] {
        for name in names {
            let calendar = store
                .get_calendar(name)
                .await
                .with_context(|| format!("reading calendar {name}"))?
                .ok_or_else(|| {
                    bad_input(format!(
                        "--{field}: no calendar named {name:?} (add it with `curfew calendar add`)"
                    ))
                })?;
            calendars.insert(calendar);
        }
    }
    schedule.next_fire = schedule
        .next_fire_after(Utc::now(), &calendars)
        .map(|f| f.time.utc);
    match store.create_schedule(&schedule).await {
        Ok(()) => {}
        Err(e) if e.kind == ErrorKind::ConditionFailed => {
            return Err(anyhow!(
                "a schedule named {:?} already exists (delete it first)",
                schedule.name
            ))
        }
        Err(e) => return Err(e).with_context(|| format!("creating schedule {}", schedule.name)),
    }
    changes::record(
        opts,
        store.as_ref(),
        ChangeKind::ScheduleAdded,
        &schedule.name,
        None,
        changes::schedule_json(&schedule),
    )
    .await?;
    show(schedule, &calendars, opts.output)
}

/// Records an enable or disable: the schedule before and after.
async fn record(
    opts: &GlobalOpts,
    store: &dyn StateStore,
    kind: ChangeKind,
    before: &Schedule,
    after: Option<&Schedule>,
) -> Result<()> {
    changes::record(
        opts,
        store,
        kind,
        &before.name,
        changes::schedule_json(before),
        after.and_then(changes::schedule_json),
    )
    .await
}

async fn get(store: &dyn StateStore, name: &str) -> Result<Schedule> {
    store
        .get_schedule(name)
        .await
        .with_context(|| format!("reading schedule {name}"))?
        .ok_or_else(|| anyhow!("no schedule named {name:?}"))
}

async fn set_enabled(
    store: &dyn StateStore,
    name: &str,
    enabled: bool,
    next: Option<chrono::DateTime<Utc>>,
) -> Result<()> {
    let found = store
        .set_schedule_enabled(name, enabled, next)
        .await
        .with_context(|| format!("updating schedule {name}"))?;
    if found {
        Ok(())
    } else {
        Err(anyhow!("no schedule named {name:?}"))
    }
}

fn next_fire(schedule: &Schedule) -> String {
    match schedule.next_fire {
        Some(t) => format!(
            "{} ({})",
            output::utc(t),
            output::local(t.with_timezone(&schedule.zone()).fixed_offset())
        ),
        None => "-".to_string(),
    }
}

/// The schedules and the broken ones, in one table by name; a broken one's row says so and
/// what is wrong with it.
fn print_list(schedules: &[Schedule], broken: &[BrokenSchedule]) -> Result<()> {
    let mut table = output::table([
        "name",
        "enabled",
        "action",
        "when",
        "zone",
        "select",
        "next fire (UTC, local)",
        "options",
    ]);
    let mut rows: Vec<(&str, Vec<String>)> = schedules
        .iter()
        .map(|s| {
            let row = vec![
                s.name.clone(),
                if s.enabled { "yes" } else { "no" }.to_string(),
                s.action_label(),
                s.when_label(),
                s.zone().name().to_string(),
                s.selector.to_string(),
                next_fire(s),
                options(s),
            ];
            (s.name.as_str(), row)
        })
        .collect();
    for b in broken {
        let mut row = vec![b.name.clone(), "BROKEN".to_string()];
        row.extend(std::iter::repeat_n("-".to_string(), 5));
        row.push(format!("broken, never fires: {}", b.problem));
        rows.push((b.name.as_str(), row));
    }
    rows.sort_by(|a, b| a.0.cmp(b.0));
    for (_, row) in rows {
        table.add_row(row);
    }
    outln!("{table}")
}

fn options(s: &Schedule) -> String {
    let mut o = Vec::new();
    if s.dry_run {
        o.push("dry run".to_string());
    }
    if s.enforce {
        o.push("enforce".to_string());
    }
    if !s.prewarm.is_zero() {
        o.push(format!("prewarm {}m", s.prewarm.num_minutes()));
    }
    if !s.skip_dates.is_empty() {
        o.push(format!("{} skip dates", s.skip_dates.len()));
    }
    for c in &s.skip_calendars {
        o.push(format!("skip calendar {c}"));
    }
    for c in &s.awake_calendars {
        o.push(format!("awake on calendar {c}"));
    }
    if let Some(sizes) = s.default_start {
        o.push(format!("default start {sizes}"));
    }
    if let Some(modes) = s.hold {
        o.push(format!("hold {modes}"));
    }
    o.join(", ")
}

/// A schedule with its coming fires (the skipped ones marked) and, for a window, its week.
#[derive(Serialize)]
struct ScheduleJson {
    #[serde(flatten)]
    record: ScheduleRecord,
    /// A window's week as 7 rows Mon..Sun, `#` asleep (absent when it changes off the half
    /// hour, or for a cron schedule).
    #[serde(skip_serializing_if = "Option::is_none")]
    grid: Option<Vec<String>>,
    /// A window's edges as the cron expressions they fire as.
    #[serde(skip_serializing_if = "Option::is_none")]
    crons: Option<serde_json::Value>,
    upcoming: Vec<FireJson>,
}

fn show(schedule: Schedule, calendars: &Calendars, out: Output) -> Result<()> {
    let upcoming = if schedule.enabled {
        schedule.upcoming(Utc::now(), 5, calendars)
    } else {
        Vec::new()
    };
    let window = schedule.window().cloned();
    match out {
        Output::Json => output::print_json(&ScheduleJson {
            grid: window.as_ref().and_then(|w| w.week().grid_rows().ok()),
            crons: window.as_ref().map(|w| {
                let (stop, start) = w.crons();
                serde_json::json!({ "stop": stop, "start": start })
            }),
            upcoming: upcoming.iter().map(FireJson::from).collect(),
            record: ScheduleRecord::from(schedule),
        }),
        Output::Table => {
            print_list(std::slice::from_ref(&schedule), &[])?;
            if !schedule.skip_dates.is_empty() {
                let dates: Vec<String> =
                    schedule.skip_dates.iter().map(|d| d.to_string()).collect();
                outln!("skip dates: {}", dates.join(", "))?;
            }
            if let Some(w) = &window {
                print_week(w.week())?;
                let (stop, start) = w.crons();
                outln!(
                    "fires as: stop {}; start {} (in {})",
                    stop.join(" | "),
                    start.join(" | "),
                    w.zone().name()
                )?;
            }
            if !upcoming.is_empty() {
                let mut table = output::table(["next fires (UTC)", "local", "action", "note"]);
                for f in &upcoming {
                    table.add_row(vec![
                        output::utc(f.time.utc),
                        output::local(f.time.local),
                        f.action.to_string(),
                        f.skipped
                            .as_ref()
                            .map(|s| format!("skipped: {s}"))
                            .unwrap_or_default(),
                    ]);
                }
                outln!("{table}")?;
            }
            Ok(())
        }
    }
}

/// The week for people: an hour ruler over the grid rows, `#` asleep and `.` awake.
fn print_week(week: &Week) -> Result<()> {
    let Ok(rows) = week.grid_rows() else {
        return outln!("week: asleep {}", week.to_text());
    };
    let per_hour = rows[0].len() / 24;
    let ruler: String = (0..24)
        .map(|h| format!("{:<width$}", h % 10, width = per_hour))
        .collect();
    outln!("week (local time, '#' asleep):")?;
    outln!("    {ruler}")?;
    for (day, row) in DAYS.iter().zip(&rows) {
        outln!("{day} {row}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_start_sizes_parse_as_min_max_desired() {
        assert_eq!(parse_sizes("1/3/2"), Some(Sizes::new(1, 3, 2)));
        assert_eq!(parse_sizes("1/3"), None);
        assert_eq!(parse_sizes("a/b/c"), None);
    }
}
