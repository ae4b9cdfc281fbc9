//! Savings: capacity kept asleep over the last week, per schedule, with a chart.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{Html, IntoResponse};

use super::PageResult;
use crate::console::Console;
use crate::html::{self, esc};
use crate::savings::chart;

/// `GET /savings`.
pub async fn page(State(console): State<Console>) -> PageResult {
    let s = console.savings().await?;
    let mut out = format!(
        r#"<section class="totals" aria-label="Totals">
<div><b id="node-hours">{:.2}</b> node-hours asleep</div>
<div><b id="instance-hours">{:.2}</b> instance-hours asleep</div>
</section>
<p class="muted">The last 7 days (UTC days in the chart), from {} to {}, from the operations' recorded sizes and times: a stop to zero sleeps its capacity before the stop until the next start.</p>"#,
        s.node_hours,
        s.instance_hours,
        html::time(s.from),
        html::time(s.until),
    );
    out.push_str("<h2>Capacity asleep per hour</h2>");
    out.push_str(&chart(&s));
    out.push_str(
        r#"<h2>Per schedule</h2><div class="scroll"><table class="sortable" id="per-schedule">"#,
    );
    out.push_str(&html::header(&["Schedule", "Node-hours", "Instance-hours"]));
    out.push_str("<tbody>");
    for (name, (nodes, instances)) in &s.per_schedule {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{nodes:.2}</td><td>{instances:.2}</td></tr>",
            esc(name)
        );
    }
    out.push_str("</tbody></table></div>");
    Ok(Html(html::page("Savings", "Savings", &out)).into_response())
}
