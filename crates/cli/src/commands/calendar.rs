//! `curfew calendar add | list | show | delete`: holiday calendars schedules skip or stay awake
//! on.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use chrono::{Duration, NaiveDate};
use curfew_core::calendar::{Calendar, CalendarError, CalendarRecord};
use curfew_core::ports::{ErrorKind, StateStore};
use curfew_core::schedule::validate_name;
use curfew_core::trail::ChangeKind;
use icalendar::{CalendarComponent, Component, DatePerhapsTime};
use serde::Serialize;

use crate::changes;
use crate::cli::{CalendarAddArgs, CalendarCommand, GlobalOpts, Output};
use crate::connect;
use crate::error::bad_input;
use crate::output::{self, outln};

/// The longest all-day event read as dates: a year. Longer is a mistake in the file.
const LONGEST_EVENT_DAYS: i64 = 366;

/// A calendar with the schedules that use it, as `calendar list` prints it.
#[derive(Serialize)]
struct ListedJson {
    #[serde(flatten)]
    record: CalendarRecord,
    used_by: Vec<String>,
}

fn bad(e: CalendarError) -> anyhow::Error {
    let flag = match e.field() {
        "name" => "NAME",
        _ => "--dates",
    };
    bad_input(format!("{flag}: {e}"))
}

/// Runs a calendar command.
pub async fn run(command: CalendarCommand, opts: &GlobalOpts) -> Result<()> {
    if let CalendarCommand::Show { name } | CalendarCommand::Delete { name } = &command {
        validate_name(name).map_err(|_| bad(CalendarError::Name(name.clone())))?;
    }
    match command {
        CalendarCommand::Add(args) => add(args, opts).await,
        CalendarCommand::List => list(opts).await,
        CalendarCommand::Show { name } => {
            let store = connect::store(opts).await?;
            let calendar = get(store.as_ref(), &name).await?;
            let used_by = users(store.as_ref(), &name).await?;
            match opts.output {
                Output::Json => output::print_json(&ListedJson {
                    record: calendar.into(),
                    used_by,
                }),
                Output::Table => {
                    let mut table = output::table(["date", "weekday"]);
                    for d in &calendar.dates {
                        table.add_row(vec![d.to_string(), d.format("%a").to_string()]);
                    }
                    outln!("{table}")?;
                    outln!(
                        "calendar {name}: {} dates; used by {}",
                        calendar.dates.len(),
                        names_or_none(&used_by)
                    )
                }
            }
        }
        CalendarCommand::Delete { name } => delete(&name, opts).await,
    }
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no schedule".to_string()
    } else {
        names.join(", ")
    }
}

/// Validates the name and every date (nothing is written on bad input), then creates it.
async fn add(args: CalendarAddArgs, opts: &GlobalOpts) -> Result<()> {
    let dates = match &args.file {
        Some(path) => dates_from_file(path)?,
        None => args.dates.clone(),
    };
    let calendar = Calendar::new(&args.name, &dates).map_err(|e| match (&args.file, e) {
        (Some(path), CalendarError::Date(d)) => bad_input(format!(
            "--file: {}: invalid date {d:?}: expected YYYY-MM-DD with its year",
            path.display()
        )),
        (_, e) => bad(e),
    })?;
    let store = connect::store(opts).await?;
    let before = if args.replace {
        store
            .get_calendar(&calendar.name)
            .await
            .with_context(|| format!("reading calendar {}", calendar.name))?
    } else {
        None
    };
    match store.create_calendar(&calendar, args.replace).await {
        Ok(()) => {}
        Err(e) if e.kind == ErrorKind::ConditionFailed => {
            return Err(anyhow!(
                "a calendar named {:?} already exists (--replace replaces it)",
                calendar.name
            ))
        }
        Err(e) => return Err(e).with_context(|| format!("creating calendar {}", args.name)),
    }
    changes::record(
        opts,
        store.as_ref(),
        ChangeKind::CalendarAdded,
        &calendar.name,
        before.as_ref().and_then(changes::json),
        changes::json(&calendar),
    )
    .await?;
    if args.replace {
        move_next_fires(store.as_ref(), &calendar.name).await?;
    }
    match opts.output {
        Output::Json => output::print_json(&calendar),
        Output::Table => outln!(
            "calendar {} added: {} dates from {} to {}",
            calendar.name,
            calendar.dates.len(),
            calendar.dates.first().expect("a calendar has dates"),
            calendar.dates.last().expect("a calendar has dates")
        ),
    }
}

/// Recomputes the next fire of every enabled schedule that names `calendar`, with the calendars
/// as they are now: a date taken out of a calendar can be the next fire again. Conditional on
/// the stored next fire, so a poller that moved it meanwhile wins (and read the new dates).
async fn move_next_fires(store: &dyn StateStore, calendar: &str) -> Result<()> {
    let schedules = store
        .list_schedules()
        .await
        .context("listing schedules")?
        .schedules;
    let now = chrono::Utc::now();
    for s in schedules
        .iter()
        .filter(|s| s.enabled && s.names_calendar(calendar))
    {
        // A fire already due is the poller's: it reads the new dates when it fires.
        let Some(stored) = s.next_fire.filter(|t| *t > now) else {
            continue;
        };
        let calendars = super::next::calendars(store, s).await?;
        let next = s.next_fire_after(now, &calendars).map(|f| f.time.utc);
        if next != Some(stored) {
            store
                .advance_schedule(&s.name, stored, next)
                .await
                .with_context(|| format!("moving the next fire of schedule {}", s.name))?;
        }
    }
    Ok(())
}

async fn list(opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let calendars = store.list_calendars().await.context("listing calendars")?;
    let schedules = store
        .list_schedules()
        .await
        .context("listing schedules")?
        .schedules;
    let rows: Vec<ListedJson> = calendars
        .into_iter()
        .map(|c| {
            let mut used_by: Vec<String> = schedules
                .iter()
                .filter(|s| s.names_calendar(&c.name))
                .map(|s| s.name.clone())
                .collect();
            used_by.sort();
            ListedJson {
                record: c.into(),
                used_by,
            }
        })
        .collect();
    match opts.output {
        Output::Json => output::print_json(&rows),
        Output::Table => {
            let mut table = output::table(["name", "dates", "first", "last", "used by"]);
            for row in &rows {
                let dates = &row.record.dates;
                table.add_row(vec![
                    row.record.name.clone(),
                    dates.len().to_string(),
                    dates.first().cloned().unwrap_or_default(),
                    dates.last().cloned().unwrap_or_default(),
                    names_or_none(&row.used_by),
                ]);
            }
            outln!("{table}")
        }
    }
}

/// Refused while a schedule uses the calendar, naming the schedules.
async fn delete(name: &str, opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let before = get(store.as_ref(), name).await?;
    let used_by = users(store.as_ref(), name).await?;
    if !used_by.is_empty() {
        return Err(bad_input(format!(
            "NAME: calendar {name:?} is used by schedule{} {}: delete {} (or add {} again without it) first",
            if used_by.len() == 1 { "" } else { "s" },
            used_by.join(", "),
            if used_by.len() == 1 { "it" } else { "them" },
            if used_by.len() == 1 { "it" } else { "them" },
        )));
    }
    if !store
        .delete_calendar(name)
        .await
        .with_context(|| format!("deleting calendar {name}"))?
    {
        return Err(anyhow!("no calendar named {name:?}"));
    }
    changes::record(
        opts,
        store.as_ref(),
        ChangeKind::CalendarDeleted,
        name,
        changes::json(&before),
        None,
    )
    .await?;
    match opts.output {
        Output::Json => output::print_json(&serde_json::json!({ "deleted": name })),
        Output::Table => outln!("calendar {name} deleted"),
    }
}

async fn get(store: &dyn StateStore, name: &str) -> Result<Calendar> {
    store
        .get_calendar(name)
        .await
        .with_context(|| format!("reading calendar {name}"))?
        .ok_or_else(|| anyhow!("no calendar named {name:?} (see `curfew calendar list`)"))
}

/// The schedules that name the calendar, by name. A broken schedule cannot be read, so it
/// cannot be checked; it never fires either.
async fn users(store: &dyn StateStore, name: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = store
        .list_schedules()
        .await
        .context("listing schedules")?
        .schedules
        .into_iter()
        .filter(|s| s.names_calendar(name))
        .map(|s| s.name)
        .collect();
    names.sort();
    Ok(names)
}

/// The dates in a file: an iCalendar file's all-day events, or one `YYYY-MM-DD` per line
/// (blank lines and `#` comments ignored). `-` reads stdin.
fn dates_from_file(path: &Path) -> Result<Vec<String>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading dates from stdin")?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("--file: cannot read {}: {e}", path.display())))?
    };
    if text.contains("BEGIN:VCALENDAR") {
        return ical_dates(&text)
            .map(|dates| dates.iter().map(ToString::to_string).collect())
            .map_err(|reason| bad_input(format!("--file: {}: {reason}", path.display())));
    }
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Every date an iCalendar file's all-day events cover (DTEND is exclusive, as RFC 5545
/// has it). Events at a time of day and recurring events are refused, naming the event: a
/// calendar is dates, and an RRULE would need expanding to a horizon nobody chose.
fn ical_dates(text: &str) -> std::result::Result<Vec<NaiveDate>, String> {
    let calendar: icalendar::Calendar = text
        .parse()
        .map_err(|e| format!("not a readable iCalendar file: {e}"))?;
    let mut dates = Vec::new();
    for component in &calendar.components {
        let CalendarComponent::Event(event) = component else {
            continue;
        };
        let name = event.get_summary().unwrap_or("(no summary)").to_string();
        if event.property_value("RRULE").is_some() {
            return Err(format!(
                "event {name:?} recurs (RRULE): list each date as its own all-day event"
            ));
        }
        let start = match event.get_start() {
            Some(DatePerhapsTime::Date(d)) => d,
            Some(_) => {
                return Err(format!(
                    "event {name:?} starts at a time of day: only all-day events are dates"
                ))
            }
            None => return Err(format!("event {name:?} has no DTSTART")),
        };
        let end = match event.get_end() {
            Some(DatePerhapsTime::Date(d)) if d > start => d,
            Some(DatePerhapsTime::Date(_)) | None => start + Duration::days(1),
            Some(_) => {
                return Err(format!(
                    "event {name:?} ends at a time of day: only all-day events are dates"
                ))
            }
        };
        if (end - start).num_days() > LONGEST_EVENT_DAYS {
            return Err(format!(
                "event {name:?} lasts more than {LONGEST_EVENT_DAYS} days"
            ));
        }
        dates.extend(start.iter_days().take_while(|d| *d < end));
    }
    if dates.is_empty() {
        return Err("no all-day events in it".into());
    }
    Ok(dates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ics(events: &str) -> String {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n")
    }

    fn event(body: &str) -> String {
        format!(
            "BEGIN:VEVENT\r\nUID:{}\r\nDTSTAMP:20270101T000000Z\r\n{body}END:VEVENT\r\n",
            body.len()
        )
    }

    #[test]
    fn all_day_events_are_their_dates_with_dtend_exclusive() {
        let text = ics(&(event(
            "SUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20271225\r\nDTEND;VALUE=DATE:20271227\r\n",
        ) + &event("SUMMARY:New Year\r\nDTSTART;VALUE=DATE:20280101\r\n")));
        let dates: Vec<String> = ical_dates(&text)
            .unwrap()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(dates, ["2027-12-25", "2027-12-26", "2028-01-01"]);
    }

    #[test]
    fn timed_and_recurring_events_are_refused_naming_the_event() {
        let timed = ics(&event("SUMMARY:Standup\r\nDTSTART:20271224T090000Z\r\n"));
        assert!(ical_dates(&timed)
            .unwrap_err()
            .contains("\"Standup\" starts at a time of day"));
        let yearly = ics(&event(
            "SUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20271225\r\nRRULE:FREQ=YEARLY\r\n",
        ));
        assert!(ical_dates(&yearly)
            .unwrap_err()
            .contains("\"Christmas\" recurs"));
        assert!(ical_dates(&ics(""))
            .unwrap_err()
            .contains("no all-day events"));
    }
}
