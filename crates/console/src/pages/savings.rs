//! Savings: capacity kept asleep over the last week, per schedule, priced where a price table
//! says so, with a chart of the capacity awake and asleep per hour.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{Html, IntoResponse};

use super::PageResult;
use crate::console::Console;
use crate::html::{self, esc};
use crate::savings::{chart, Money, Savings};

/// `GET /savings`.
pub async fn page(State(console): State<Console>) -> PageResult {
    let s = console.savings().await?;
    Ok(Html(html::page("Savings", "Savings", &render(&s))).into_response())
}

/// An amount of money: two decimals, and a small non-zero amount not shown as nothing.
fn amount(value: f64, currency: &str) -> String {
    if value > 0.0 && value < 0.005 {
        format!("&lt; 0.01 {}", esc(currency))
    } else {
        format!("{value:.2} {}", esc(currency))
    }
}

fn render(s: &Savings) -> String {
    let mut out = format!(
        r#"<section class="totals" aria-label="Totals">
<div><b id="node-hours">{:.2}</b> node-hours asleep</div>
<div><b id="instance-hours">{:.2}</b> instance-hours asleep</div>"#,
        s.node_hours, s.instance_hours,
    );
    if let Some(m) = &s.money {
        let _ = write!(
            out,
            r#"
<div><b id="money-saved">{}</b> saved on priced hours</div>"#,
            amount(m.total.saved, &m.currency)
        );
        for (id, hours, what) in [
            (
                "unpriced-node-hours",
                m.total.unpriced_node_hours,
                "node-hours",
            ),
            (
                "unpriced-instance-hours",
                m.total.unpriced_instance_hours,
                "instance-hours",
            ),
        ] {
            let class = if hours > 0.0 {
                r#" class="unpriced""#
            } else {
                ""
            };
            let _ = write!(
                out,
                r#"
<div{class}><b id="{id}">{hours:.2}</b> {what} not priced</div>"#
            );
        }
    }
    out.push_str("\n</section>");
    let _ = write!(
        out,
        r#"<p class="muted">The last 7 days (UTC days in the chart), from {} to {}, from the operations' recorded sizes and times: a stop to zero sleeps its capacity before the stop until the next start.</p>"#,
        html::time(s.from),
        html::time(s.until),
    );
    match &s.money {
        Some(m) => {
            let _ = write!(
                out,
                r#"<p class="muted" id="money-note">Money is hours × capacity × the price per instance-hour of the target's instance type in the price table ({}); a target with no type known, a type not in the table, or types at different prices is not priced: its hours count above, its money does not.</p>"#,
                esc(&m.currency),
            );
        }
        None => out.push_str(
            r#"<p class="muted" id="money-note">No money shown: no price table. Start the console with <code>curfew ui --prices FILE</code> (a price per instance-hour for each instance type) to price these hours; nothing is guessed.</p>"#,
        ),
    }
    out.push_str("<h2>Capacity awake and asleep per hour</h2>");
    out.push_str(&chart(s));
    let _ = write!(
        out,
        r#"<p class="muted" id="awake-note">Awake: the desired capacity of the {} target(s) the fleet lists now, at every hour they were not asleep, as curfew next read it (a task's reading, or now){}. Between two readings curfew cannot see autoscaling, and targets created or deleted during the week are counted as the fleet is now.</p>"#,
        s.awake_targets,
        if s.awake_unread > 0 {
            format!(
                "; {} could not be read now and count only up to their last reading",
                s.awake_unread
            )
        } else {
            String::new()
        },
    );
    out.push_str(
        r#"<h2>Per schedule</h2><div class="scroll"><table class="sortable" id="per-schedule">"#,
    );
    let saved = s.money.as_ref().map(|m| format!("Saved ({})", m.currency));
    let mut columns = vec!["Schedule", "Node-hours", "Instance-hours"];
    if let Some(saved) = &saved {
        columns.extend([
            saved.as_str(),
            "Node-hours not priced",
            "Instance-hours not priced",
        ]);
    }
    out.push_str(&html::header(&columns));
    out.push_str("<tbody>");
    for (name, (nodes, instances)) in &s.per_schedule {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{nodes:.2}</td><td>{instances:.2}</td>",
            esc(name)
        );
        if let Some(m) = &s.money {
            let p = m.per_schedule.get(name).cloned().unwrap_or_default();
            let _ = write!(
                out,
                r#"<td class="saved">{}</td><td>{:.2}</td><td>{:.2}</td>"#,
                amount(p.saved, &m.currency),
                p.unpriced_node_hours,
                p.unpriced_instance_hours,
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    if let Some(m) = s.money.as_ref().filter(|m| !m.unpriced.is_empty()) {
        unpriced(&mut out, m);
    }
    out
}

/// The targets whose hours have no price, and why.
fn unpriced(out: &mut String, m: &Money) {
    out.push_str(
        r#"<h2>Not priced</h2><div class="scroll"><table class="sortable" id="unpriced">"#,
    );
    out.push_str(&html::header(&[
        "Target",
        "Kind",
        "Instance types",
        "Why",
        "Hours",
    ]));
    out.push_str("<tbody>");
    for u in &m.unpriced {
        let types = if u.instance_types.is_empty() {
            "–".to_string()
        } else {
            esc(&u.instance_types.join(", "))
        };
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td>{types}</td><td class="why">{}</td><td>{:.2}</td></tr>"#,
            esc(&u.target),
            u.kind,
            esc(&u.reason.to_string()),
            u.hours,
        );
    }
    out.push_str("</tbody></table></div>");
}
