//! Operations: the list, one operation with every task, and its live progress as Server-Sent
//! Events.

use std::convert::Infallible;
use std::fmt::Write;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use curfew_core::operation::{OpStatus, Operation};
use curfew_core::view::{action, source};
use futures::stream::{self, Stream};
use serde::Serialize;

use super::{PageError, PageResult};
use crate::console::Console;
use crate::html::{self, esc};

/// How many operations the list shows.
const LISTED: usize = 50;
/// How often a live page's operation is read again.
const POLL: Duration = Duration::from_millis(500);

fn status_badge(status: OpStatus) -> String {
    let class = match status {
        OpStatus::Succeeded => "ok",
        s if s.is_final() => "bad",
        _ => "running",
    };
    format!(r#"<span class="badge {class}" id="op-status">{status}</span>"#)
}

/// `GET /operations`.
pub async fn list(State(console): State<Console>) -> PageResult {
    let ops = console.hub.store.list_operations(LISTED).await?;
    let mut out = String::new();
    if ops.is_empty() {
        out.push_str("<p>No operations yet.</p>");
    } else {
        out.push_str(r#"<div class="scroll"><table class="sortable" id="operations">"#);
        out.push_str(&html::header(&[
            "Operation",
            "Action",
            "Selector",
            "Source",
            "Created",
            "Status",
            "Done",
            "OK",
            "Skipped",
            "Failed",
        ]));
        out.push_str("<tbody>");
        for op in &ops {
            let c = op.counts;
            let _ = write!(
                out,
                r#"<tr><td><a href="/operations/{}">{}</a></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                html::url(&op.id),
                esc(&op.id),
                action(op),
                esc(op.selector.as_str()),
                esc(&source(op)),
                html::time(op.created_at),
                status_badge(op.status).replace(r#" id="op-status""#, ""),
                c.done(),
                c.total,
                c.succeeded,
                c.skipped,
                c.failed,
            );
        }
        out.push_str("</tbody></table></div>");
    }
    Ok(Html(html::page("Operations", "Operations", &out)).into_response())
}

async fn load(console: &Console, id: &str) -> Result<Operation, PageError> {
    console
        .hub
        .store
        .get_operation(id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("no operation {id:?}")))
}

/// `GET /operations/{id}`.
pub async fn show(State(console): State<Console>, Path(id): Path<String>) -> PageResult {
    let op = load(&console, &id).await?;
    let tasks = console.hub.store.list_tasks(&id).await?;
    let c = op.counts;
    let live = !op.status.is_final();
    let mut out = format!(
        r#"<section id="progress-box"{live_attr}>
<p>{status} <progress id="progress" max="{total}" value="{done}">{done}/{total}</progress> <span id="done">{done}</span> of <span id="total">{total}</span> tasks done: <span id="succeeded">{ok}</span> succeeded, <span id="skipped">{skipped}</span> skipped, <span id="failed">{failed}</span> failed.</p>
{refresh}</section>
<dl class="facts">
<dt>Action</dt><dd>{action}</dd>
<dt>Selector</dt><dd><code>{select}</code></dd>
<dt>Source</dt><dd>{source}</dd>
<dt>Created</dt><dd>{created}</dd>
</dl>"#,
        live_attr = if live {
            format!(r#" data-live="/operations/{}/events""#, html::url(&op.id))
        } else {
            String::new()
        },
        status = status_badge(op.status),
        total = c.total,
        done = c.done(),
        ok = c.succeeded,
        skipped = c.skipped,
        failed = c.failed,
        // Without JavaScript a running operation's page reloads itself instead.
        refresh = if live {
            r#"<noscript><meta http-equiv="refresh" content="2"></noscript>"#
        } else {
            ""
        },
        action = action(&op),
        select = esc(op.selector.as_str()),
        source = esc(&source(&op)),
        created = html::time(op.created_at),
    );
    for note in &op.notes {
        let _ = write!(out, r#"<p class="notice">{}</p>"#, esc(note));
    }
    out.push_str(r#"<h2>Tasks</h2><div class="scroll"><table class="sortable" id="tasks">"#);
    out.push_str(&html::header(&[
        "Target", "Account", "Region", "Kind", "Status", "Before", "After", "Holds", "Reason",
    ]));
    out.push_str("<tbody>");
    let sizes =
        |s: Option<curfew_core::target::Sizes>| s.map_or_else(|| "–".into(), |s| s.to_string());
    for t in &tasks {
        let _ = write!(
            out,
            r#"<tr data-key="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="status">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&t.target.key()),
            esc(&t.target.display_name()),
            esc(&t.target.account),
            esc(&t.target.region),
            t.target.kind,
            t.status,
            sizes(t.before),
            sizes(t.after),
            esc(&t.steps.join("; ")),
            esc(t.reason.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table></div>");
    Ok(Html(html::page(
        &format!("Operation {}", op.id),
        "Operations",
        &out,
    ))
    .into_response())
}

/// One progress event.
#[derive(Serialize)]
struct Progress {
    status: OpStatus,
    done: u64,
    total: u64,
    succeeded: u64,
    skipped: u64,
    failed: u64,
    #[serde(rename = "final")]
    finished: bool,
}

/// `GET /operations/{id}/events`: a `progress` event whenever the operation's counts change,
/// ending with its final state.
pub async fn events(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    load(&console, &id).await?;
    let state = (console, id, None::<String>, false);
    let events = stream::unfold(state, |(console, id, last, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let op = match console.hub.store.get_operation(&id).await {
                Ok(Some(op)) => op,
                Ok(None) => return None,
                Err(e) => {
                    let event = Event::default().event("problem").data(e.to_string());
                    return Some((Ok(event), (console, id, last, true)));
                }
            };
            let c = op.counts;
            let progress = Progress {
                status: op.status,
                done: c.done(),
                total: c.total,
                succeeded: c.succeeded,
                skipped: c.skipped,
                failed: c.failed,
                finished: op.status.is_final(),
            };
            let data = serde_json::to_string(&progress).unwrap_or_default();
            if last.as_deref() != Some(data.as_str()) {
                let event = Event::default().event("progress").data(data.clone());
                return Some((Ok(event), (console, id, Some(data), progress.finished)));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
