//! Schedules: the list, one schedule with its week grid and next fires, and triggering one
//! after seeing its plan.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse};
use chrono::Datelike;
use curfew_core::operation::Discovery;
use curfew_core::schedule::Schedule;
use curfew_core::service::invocation::Invocation;
use curfew_core::service::router;
use curfew_core::view::FireJson;

use super::{PageError, PageResult};
use crate::console::Console;
use crate::html::{self, esc};
use crate::week::{self, Hour};

/// `GET /schedules`.
pub async fn list(State(console): State<Console>) -> PageResult {
    let mut listed = console.hub.store.list_schedules().await?;
    listed.schedules.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    if listed.schedules.is_empty() && listed.broken.is_empty() {
        out.push_str("<p>No schedules yet: <code>curfew schedule add</code> makes one.</p>");
    } else {
        out.push_str(r#"<div class="scroll"><table class="sortable" id="schedules">"#);
        out.push_str(&html::header(&[
            "Name",
            "Action",
            "When",
            "Zone",
            "Selector",
            "Enabled",
            "Next fire",
        ]));
        out.push_str("<tbody>");
        for s in &listed.schedules {
            let next = s.next_fire;
            let _ = write!(
                out,
                r#"<tr><td><a href="/schedules/{}">{}</a></td><td>{}{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>"#,
                html::url(&s.name),
                esc(&s.name),
                s.action_label(),
                if s.dry_run { " (dry run)" } else { "" },
                esc(&s.when_label()),
                esc(s.zone().name()),
                esc(s.selector.as_str()),
                if s.enabled { "yes" } else { "no" },
                html::maybe_time(next),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    for b in &listed.broken {
        let _ = write!(out, r#"<p class="error">{}</p>"#, esc(&b.to_string()));
    }
    Ok(Html(html::page("Schedules", "Schedules", &out)).into_response())
}

async fn load(console: &Console, name: &str) -> Result<(Schedule, Vec<Schedule>), PageError> {
    let all = console.hub.store.list_schedules().await?.schedules;
    let schedule = all
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or_else(|| PageError::not_found(format!("no schedule named {name:?}")))?;
    Ok((schedule, all))
}

/// `GET /schedules/{name}`.
pub async fn show(State(console): State<Console>, Path(name): Path<String>) -> PageResult {
    let (s, all) = load(&console, &name).await?;
    let now = console.hub.clock.now();
    let mut out = format!(
        r#"<dl class="facts">
<dt>Action</dt><dd>{action}{dry}</dd>
<dt>When</dt><dd><code>{cron}</code> in {zone}</dd>
<dt>Selector</dt><dd><code>{select}</code> (<a href="/?select={select_url}">its targets</a>)</dd>
<dt>Enabled</dt><dd>{enabled}</dd>
</dl>"#,
        action = s.action_label(),
        dry = if s.dry_run { " (dry run)" } else { "" },
        cron = esc(&s.when_label()),
        zone = esc(s.zone().name()),
        select = esc(s.selector.as_str()),
        select_url = html::url(s.selector.as_str()),
        enabled = if s.enabled { "yes" } else { "no (never fires)" },
    );
    let _ = write!(
        out,
        r#"<div class="actions"><a class="button" id="trigger" href="/schedules/{name}/trigger">Trigger now…</a>
<form method="post" action="/schedules/{name}/{toggle}"><button type="submit" id="toggle">{label}</button></form></div>"#,
        name = html::url(&s.name),
        toggle = if s.enabled { "disable" } else { "enable" },
        label = if s.enabled { "Disable" } else { "Enable" },
    );
    let partners = week::partners(&s, &all);
    let calendars = curfew_core::service::poller::schedule_calendars(&console.hub, &s).await?;
    let grid = week::week(&partners, &calendars, s.zone(), now);
    let names: Vec<String> = partners.iter().map(|p| esc(&p.name)).collect();
    let _ = write!(
        out,
        r#"<h2>The coming week in {}</h2><p class="muted">From the fires of {}: <span class="key asleep"></span> asleep, <span class="key awake"></span> awake, <span class="key unknown"></span> not known yet, <span class="key skipped"></span> an hour the clocks skip.</p>"#,
        esc(&grid.zone),
        names.join(" and ")
    );
    out.push_str(&grid_table(&grid));
    out.push_str(r#"<h2>Next fires</h2><div class="scroll"><table id="fires">"#);
    out.push_str(&html::header(&[
        "UTC",
        &format!("Local ({})", s.zone().name()),
        "Action",
    ]));
    out.push_str("<tbody>");
    for fire in week::upcoming(&s, now, 5, &calendars) {
        let json = FireJson::from(&fire);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            html::time(fire.time.utc),
            esc(&json.local),
            fire.action
        );
    }
    out.push_str("</tbody></table></div>");
    Ok(Html(html::page(
        &format!("Schedule {}", s.name),
        "Schedules",
        &out,
    ))
    .into_response())
}

fn grid_table(grid: &week::WeekGrid) -> String {
    let mut out = String::from(
        r#"<div class="scroll"><table class="grid" id="week"><thead><tr><th scope="col">Day</th>"#,
    );
    for h in 0..24 {
        let _ = write!(out, r#"<th scope="col">{h:02}</th>"#);
    }
    out.push_str("</tr></thead><tbody>");
    for day in &grid.days {
        let note = day.note.as_deref().map_or_else(String::new, |note| {
            format!(r#" <span class="day-note">{}</span>"#, esc(note))
        });
        let _ = write!(
            out,
            r#"<tr data-date="{}"><th scope="row">{} {}{note}</th>"#,
            day.date,
            day.date.weekday(),
            day.date.format("%d %b")
        );
        for (h, hour) in day.hours.iter().enumerate() {
            let (class, label) = match hour {
                Hour::Asleep => ("asleep", "asleep"),
                Hour::Awake => ("awake", "awake"),
                Hour::Unknown => ("unknown", "not known"),
                Hour::Skipped => ("skipped", "skipped by the clocks"),
            };
            let _ = write!(
                out,
                r#"<td class="{class}" title="{} {h:02}:00 {label}"></td>"#,
                day.date
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `GET /schedules/{name}/trigger`: what running it now would do, and a button to do it.
pub async fn confirm_trigger(
    State(console): State<Console>,
    Path(name): Path<String>,
) -> PageResult {
    let (s, _) = load(&console, &name).await?;
    // What running it now does: a window schedule does what its week says for now.
    let calendars = curfew_core::service::poller::schedule_calendars(&console.hub, &s).await?;
    let action = s.action_at(console.hub.clock.now(), &calendars);
    let plan = router::plan(&console.hub, action, &s.selector, Discovery::Cached, s.hold).await?;
    let mut out = super::run::plan_table(&plan.changes, &plan.problems);
    let changing = plan.changes.iter().filter(|c| c.to.is_some()).count();
    let _ = write!(
        out,
        r#"<p id="plan-summary">{changing} of {} matching targets would change ({} {}{}).</p>"#,
        plan.changes.len(),
        action,
        esc(s.selector.as_str()),
        if s.dry_run { ", dry run" } else { "" }
    );
    match console.read_only() {
        None => {
            let _ = write!(
                out,
                r#"<form method="post" action="/schedules/{}/trigger"><button type="submit" id="confirm" class="danger">Run {} now</button> <a href="/schedules/{}">Back</a></form>"#,
                html::url(&s.name),
                esc(&s.name),
                html::url(&s.name)
            );
        }
        Some(why) => {
            let _ = write!(
                out,
                r#"<p class="notice">This console can only read: {}</p>"#,
                esc(why)
            );
        }
    }
    Ok(Html(html::page(
        &format!("Trigger {}", s.name),
        "Schedules",
        &out,
    ))
    .into_response())
}

/// `POST /schedules/{name}/trigger`: runs it now and goes to the operation.
pub async fn trigger(State(console): State<Console>, Path(name): Path<String>) -> PageResult {
    let response = console
        .start(Invocation::Trigger { schedule: name })
        .await?;
    Ok(super::run::see_operation(&response.operation_id))
}

async fn set_enabled(console: &Console, name: &str, enabled: bool) -> PageResult {
    console.set_schedule_enabled(name, enabled).await?;
    Ok((
        axum::http::StatusCode::SEE_OTHER,
        [(
            axum::http::header::LOCATION,
            format!("/schedules/{}", html::url(name)),
        )],
    )
        .into_response())
}

/// `POST /schedules/{name}/enable`.
pub async fn enable(State(console): State<Console>, Path(name): Path<String>) -> PageResult {
    set_enabled(&console, &name, true).await
}

/// `POST /schedules/{name}/disable`.
pub async fn disable(State(console): State<Console>, Path(name): Path<String>) -> PageResult {
    set_enabled(&console, &name, false).await
}
