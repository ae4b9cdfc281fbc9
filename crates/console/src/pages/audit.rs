//! The audit trail: every change curfew and its operators made, filtered, newest first.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use curfew_core::audit_list::{compact, list};

use super::PageResult;
use crate::audit::AuditQuery;
use crate::console::Console;
use crate::html::{self, esc};

fn input(name: &str, label: &str, value: &str, placeholder: &str, error: Option<&str>) -> String {
    let (invalid, message) = match error {
        Some(e) => (
            format!(r#" aria-invalid="true" aria-describedby="{name}-error""#),
            format!(
                r#"<span class="field-error" id="{name}-error" role="alert">{}</span>"#,
                esc(e)
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"<div class="field small"><label for="{name}">{label}</label><input id="{name}" name="{name}" value="{}" placeholder="{placeholder}" autocomplete="off"{invalid}>{message}</div>"#,
        esc(value)
    )
}

/// `GET /audit[?since=&until=&target=&operation=&actor=&limit=]`.
pub async fn page(State(console): State<Console>, Query(q): Query<AuditQuery>) -> PageResult {
    let (filter, error) = match q.filter() {
        Ok(filter) => (Some(filter), None),
        Err(error) => (None, Some(error)),
    };
    let at = |field: &str| {
        error
            .as_ref()
            .filter(|(f, _)| *f == field)
            .map(|(_, e)| e.as_str())
    };
    let mut out = format!(
        r#"<form class="filter" method="get" action="/audit">{}{}{}{}{}<button type="submit">Filter</button></form>"#,
        input(
            "since",
            "Since",
            &q.since,
            "2027-01-04T00:00:00Z",
            at("since")
        ),
        input("until", "Until", &q.until, "now", at("until")),
        input(
            "target",
            "Target key",
            &q.target,
            "account#region#kind#name",
            None
        ),
        input("operation", "Operation", &q.operation, "", None),
        input("actor", "Actor contains", &q.actor, "", None),
    );
    let Some(filter) = filter else {
        return Ok((
            StatusCode::BAD_REQUEST,
            Html(html::page("Audit trail", "Audit", &out)),
        )
            .into_response());
    };
    let records = list(console.hub.store.as_ref(), &filter, console.hub.clock.now()).await?;
    if records.is_empty() {
        out.push_str("<p>No change matches.</p>");
    } else {
        out.push_str(r#"<div class="scroll"><table class="sortable" id="audit">"#);
        out.push_str(&html::header(&[
            "Time",
            "Actor",
            "Change",
            "Subject",
            "Before",
            "After",
            "Operation",
            "Detail",
        ]));
        out.push_str("<tbody>");
        for r in &records {
            let e = &r.entry;
            let operation = e.operation.as_ref().map_or_else(
                || "–".to_string(),
                |op| format!(r#"<a href="/operations/{}">{}</a>"#, html::url(op), esc(op)),
            );
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td class="change">{}</td><td class="subject">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                html::time(e.at),
                esc(&e.actor),
                e.kind,
                esc(&e.subject),
                esc(&compact(e.before.as_ref())),
                esc(&compact(e.after.as_ref())),
                operation,
                esc(&e.detail.join("; ")),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str(r#"<p class="muted">Whether the trail's hash chains are intact: <code>curfew audit verify</code>.</p>"#);
    Ok(Html(html::page("Audit trail", "Audit", &out)).into_response())
}
