//! The audit trail: every change curfew and its operators made, filtered, newest first.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use curfew_core::audit_list::{compact, list};
use curfew_core::audit_verify::verify_store;

use super::{PageError, PageResult};
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
/// The trail verified as `curfew audit verify` does: a summary, and every problem found.
async fn verify_section(console: &Console) -> Result<String, PageError> {
    let key = console.hub.settings.audit.key.as_ref();
    let report = verify_store(console.hub.store.as_ref(), key).await?;
    let count = |n: u64, what: &str| match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    };
    let mut out = format!(
        r#"<h2>Verify</h2><p id="verify-summary" class="{}">{} in {}, {} with {}: {}{}</p>"#,
        if report.problem_count() == 0 {
            "ok"
        } else {
            "error"
        },
        count(report.records, "record"),
        count(report.chains, "chain"),
        count(report.operations, "finished operation"),
        count(report.tasks, "task"),
        match report.problem_count() {
            0 => "no problems".to_string(),
            n => count(n as u64, "problem"),
        },
        if report.signatures_checked {
            ""
        } else {
            " (CURFEW_AUDIT_KEY is not set: the heads' signatures were not checked)"
        },
    );
    if report.problem_count() > 0 {
        out.push_str(r#"<ul id="verify-problems">"#);
        for p in &report.chain_problems {
            let _ = write!(
                out,
                "<li>chain {} record {}: {}</li>",
                esc(&p.chain),
                p.seq,
                esc(&p.problem)
            );
        }
        for p in &report.problems {
            let _ = write!(
                out,
                "<li>operation {}{}: {}</li>",
                esc(&p.operation),
                p.target
                    .as_ref()
                    .map(|t| format!(" target {}", esc(t)))
                    .unwrap_or_default(),
                esc(&p.problem)
            );
        }
        out.push_str("</ul>");
    }
    Ok(out)
}

/// `GET /audit`: the trail with filters, and the verify result.
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
    out.push_str(&verify_section(&console).await?);
    Ok(Html(html::page("Audit trail", "Audit", &out)).into_response())
}
