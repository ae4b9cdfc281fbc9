//! Stop or start by selector: the form, the plan it would carry out, and the confirmed run.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::Form;
use curfew_core::decision::Action;
use curfew_core::operation::Discovery;
use curfew_core::ports::PlannedChange;
use curfew_core::selector::Selector;
use curfew_core::service::router;
use serde::Deserialize;

use super::PageResult;
use crate::console::Console;
use crate::html::{self, esc};

/// The form's fields (a checkbox is absent when unticked).
#[derive(Default, Deserialize)]
pub struct RunForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    select: String,
    dry_run: Option<String>,
}

impl RunForm {
    fn action(&self) -> Action {
        if self.action == "start" {
            Action::Start
        } else {
            Action::Stop
        }
    }

    fn dry_run(&self) -> bool {
        self.dry_run.is_some()
    }
}

/// `GET /run`: the form (prefilled from the query, e.g. a link from the fleet page).
pub async fn form(State(console): State<Console>, Query(q): Query<RunForm>) -> PageResult {
    Ok(Html(html::page(
        "Stop / start",
        "Stop / start",
        &run_form(&console, &q, None),
    ))
    .into_response())
}

fn run_form(console: &Console, f: &RunForm, error: Option<&str>) -> String {
    let checked = |yes: bool| if yes { " checked" } else { "" };
    let read_only = console.read_only().map_or_else(String::new, |why| {
        format!(
            r#"<p class="notice">This console can only read: {}</p>"#,
            esc(why)
        )
    });
    format!(
        r#"{read_only}<form class="run" method="post" action="/run/plan">
<fieldset><legend>Action</legend>
<label><input type="radio" name="action" value="stop"{stop}> Stop (save the sizes, scale to zero)</label>
<label><input type="radio" name="action" value="start"{start}> Start (restore the saved sizes)</label>
</fieldset>
<div class="field">{field}</div>
<label class="check"><input type="checkbox" id="dry_run" name="dry_run" value="on"{dry}> Dry run: record what would change, change nothing</label>
<button type="submit" id="show-plan">Show the plan</button>
</form>"#,
        stop = checked(f.action() == Action::Stop),
        start = checked(f.action() == Action::Start),
        field = html::selector_field(&f.select, error),
        dry = checked(f.dry_run()),
    )
}

/// The form's selector, or the form again with the error beside the field.
fn parse(console: &Console, f: &RunForm) -> Result<Selector, Html<String>> {
    Selector::parse(&f.select).map_err(|e| {
        let body = run_form(console, f, Some(&e.to_string()));
        Html(html::page("Stop / start", "Stop / start", &body))
    })
}

/// `POST /run/plan`: what the stop or start would do, and a button to do it.
pub async fn plan(State(console): State<Console>, Form(f): Form<RunForm>) -> PageResult {
    let selector = match parse(&console, &f) {
        Ok(s) => s,
        Err(refused) => return Ok((StatusCode::BAD_REQUEST, refused).into_response()),
    };
    let action = f.action();
    let plan = router::plan(&console.hub, action, &selector, Discovery::Cached, None).await?;
    let mut body = plan_table(&plan.changes, &plan.problems);
    let changing = plan.changes.iter().filter(|c| c.to.is_some()).count();
    let _ = write!(
        body,
        r#"<p id="plan-summary">{changing} of {} matching targets would change ({action} {}).</p>"#,
        plan.changes.len(),
        esc(selector.as_str())
    );
    if console.read_only().is_none() {
        let _ = write!(
            body,
            r#"<form method="post" action="/run">
<input type="hidden" name="action" value="{action}">
<input type="hidden" name="select" value="{select}">
{dry}<button type="submit" id="confirm" class="danger">{verb} {changing} target(s){suffix}</button>
<a href="/run?action={action}&amp;select={select_url}">Change the selection</a>
</form>"#,
            select = esc(selector.as_str()),
            select_url = html::url(selector.as_str()),
            dry = if f.dry_run() {
                r#"<input type="hidden" name="dry_run" value="on">"#
            } else {
                ""
            },
            verb = if action == Action::Stop {
                "Stop"
            } else {
                "Start"
            },
            suffix = if f.dry_run() { " (dry run)" } else { "" },
        );
    } else {
        body.push_str(&run_form(&console, &f, None));
    }
    let title = format!(
        "Plan: {action} {}{}",
        selector.as_str(),
        if f.dry_run() { " (dry run)" } else { "" }
    );
    Ok(Html(html::page(&title, "Stop / start", &body)).into_response())
}

/// A plan as a table (also the trigger confirmation's).
pub fn plan_table(changes: &[PlannedChange], problems: &[String]) -> String {
    let mut out = String::new();
    for p in problems {
        let _ = write!(out, r#"<p class="error">{}</p>"#, esc(p));
    }
    out.push_str(r#"<div class="scroll"><table class="sortable" id="plan">"#);
    out.push_str(&html::header(&[
        "Target", "Account", "Region", "Kind", "Now", "After", "Holds", "Note",
    ]));
    out.push_str("<tbody>");
    for c in changes {
        let _ = write!(
            out,
            r#"<tr data-key="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="after">{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&c.target.key()),
            esc(&c.target.display_name()),
            esc(&c.target.account),
            esc(&c.target.region),
            c.target.kind,
            c.live,
            c.to.map_or_else(|| "–".to_string(), |s| s.to_string()),
            esc(&c.steps.join("; ")),
            esc(c.reason.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `POST /run`: starts the operation and goes to its page.
pub async fn start(State(console): State<Console>, Form(f): Form<RunForm>) -> PageResult {
    let selector = match parse(&console, &f) {
        Ok(s) => s,
        Err(refused) => return Ok((StatusCode::BAD_REQUEST, refused).into_response()),
    };
    let invocation = crate::console::stop_or_start(f.action(), &selector, f.dry_run())?;
    let response = console.start(invocation).await?;
    Ok(see_operation(&response.operation_id))
}

/// A 303 to an operation's page (so reloading it never posts again).
pub fn see_operation(op_id: &str) -> axum::response::Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!("/operations/{}", html::url(op_id)),
        )],
    )
        .into_response()
}
