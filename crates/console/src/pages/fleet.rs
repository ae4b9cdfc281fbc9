//! The fleet page: every target, filtered by a selector, with totals.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use curfew_core::selector::Selector;
use serde::Deserialize;

use super::PageResult;
use crate::console::Console;
use crate::fleet::{fleet, Fleet, NextFire};
use crate::html::{self, esc};
use crate::token::COOKIE;

/// The selector that matches every target (every name matches `*`).
pub const EVERYTHING: &str = "name=*";

#[derive(Deserialize)]
pub struct FleetQuery {
    select: Option<String>,
    token: Option<String>,
}

/// `GET /`: the fleet; `GET /?token=...` sets the session cookie and comes back here.
pub async fn page(State(console): State<Console>, Query(q): Query<FleetQuery>) -> PageResult {
    if let Some(token) = q.token {
        if !console.token.matches(&token) {
            return Ok((
                StatusCode::FORBIDDEN,
                Html(html::message_page(
                    "Forbidden",
                    "this is not this console's token: open the URL `curfew ui` printed",
                )),
            )
                .into_response());
        }
        // The token leaves the address bar (and the history) at once; the cookie carries it.
        let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        return Ok((
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_string()),
                (header::SET_COOKIE, cookie),
            ],
        )
            .into_response());
    }
    let text = q.select.unwrap_or_default();
    let selector = match Selector::parse(if text.trim().is_empty() {
        EVERYTHING
    } else {
        &text
    }) {
        Ok(selector) => selector,
        Err(e) => {
            let body = filter_form(&text, Some(&e.to_string()));
            return Ok((
                StatusCode::BAD_REQUEST,
                Html(html::page("Fleet", "Fleet", &body)),
            )
                .into_response());
        }
    };
    let fleet = fleet(&console.hub, &selector).await?;
    let body = format!("{}{}", filter_form(&text, None), render(&fleet));
    Ok(Html(html::page("Fleet", "Fleet", &body)).into_response())
}

fn filter_form(value: &str, error: Option<&str>) -> String {
    format!(
        r#"<form class="filter" method="get" action="/">
<div class="field">{}</div>
<button type="submit">Filter</button>
</form>"#,
        html::selector_field(value, error)
    )
}

fn next(fire: &Option<NextFire>) -> String {
    match fire {
        Some(f) => format!(
            r#"{}<br><a class="muted" href="/schedules/{}">{}</a>"#,
            html::time(f.at),
            html::url(&f.schedule),
            esc(&f.schedule)
        ),
        None => "–".to_string(),
    }
}

fn render(fleet: &Fleet) -> String {
    let t = fleet.totals;
    let mut out = format!(
        r#"<section class="totals" aria-label="Totals">
<div><b id="total-targets">{}</b> targets</div>
<div><b id="total-asleep">{}</b> asleep</div>
<div><b id="total-awake">{}</b> awake</div>
<div><b id="nodes-running">{}</b> nodes running</div>
<div><b id="nodes-asleep">{}</b> nodes asleep</div>
</section>"#,
        t.targets,
        t.asleep,
        t.targets - t.asleep,
        t.nodes_running,
        t.nodes_asleep
    );
    for problem in &fleet.problems {
        let _ = write!(out, r#"<p class="error">{}</p>"#, esc(problem));
    }
    if fleet.targets.is_empty() {
        out.push_str("<p>No target matches.</p>");
        return out;
    }
    out.push_str(r#"<div class="scroll"><table class="sortable" id="fleet">"#);
    // The override column only when an override is in force: it is empty otherwise.
    let overrides = fleet.targets.iter().any(|r| r.awake_until.is_some());
    let mut columns = vec![
        "Name",
        "Cluster",
        "Kind",
        "Account",
        "Region",
        "Tags",
        "Min/max/desired",
        "State",
        "Baseline",
        "Next stop",
        "Next start",
    ];
    if overrides {
        columns.push("Awake until");
    }
    out.push_str(&html::header(&columns));
    out.push_str("<tbody>");
    for row in &fleet.targets {
        let target = &row.target;
        let tags: Vec<String> = target
            .tags
            .iter()
            .map(|(k, v)| format!("<span class=\"tag\">{}={}</span>", esc(k), esc(v)))
            .collect();
        let state = if row.asleep {
            r#"<span class="badge asleep">asleep</span>"#
        } else {
            r#"<span class="badge awake">awake</span>"#
        };
        let sizes = match (&row.sizes, &row.problem) {
            (Some(s), _) => s.to_string(),
            (None, Some(p)) => format!(r#"<span class="error" title="{}">unknown</span>"#, esc(p)),
            (None, None) => "–".to_string(),
        };
        let _ = write!(
            out,
            r#"<tr data-key="{key}"><td class="name">{name}</td><td>{cluster}</td><td>{kind}</td><td>{account}</td><td>{region}</td><td class="tags">{tags}</td><td class="sizes">{sizes}</td><td class="state">{state}</td><td class="baseline">{baseline}</td><td class="next-stop">{stop}</td><td class="next-start">{start}</td>{until}</tr>"#,
            key = esc(&row.key),
            kind = target.kind,
            account = esc(&target.account),
            region = esc(&target.region),
            cluster = esc(target.cluster.as_deref().unwrap_or("–")),
            name = esc(&target.name),
            tags = tags.join(" "),
            baseline = row
                .baseline
                .map_or_else(|| "–".to_string(), |b| b.to_string()),
            until = if overrides {
                format!("<td>{}</td>", html::maybe_time(row.awake_until))
            } else {
                String::new()
            },
            stop = next(&row.next_stop),
            start = next(&row.next_start),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}
