//! CloudWatch Embedded Metric Format: the layer that writes each metric event of
//! [`curfew_core::metrics`] as one EMF JSON line, which CloudWatch Logs turns into a metric
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//! The line is the whole log line, at the top level: EMF is read from the event itself, so it
//! cannot be a field of the JSON log lines around it.

use std::io::Write;

use curfew_core::metrics::{NAMESPACE, TARGET};
use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Writes metric events as EMF lines to its writer; every other event is not its business.
pub struct EmfLayer<W> {
    writer: W,
}

impl<W> EmfLayer<W> {
    /// A layer writing to `writer` (stdout in a Lambda: its log stream).
    pub fn new(writer: W) -> Self {
        EmfLayer { writer }
    }
}

/// One metric event's fields.
#[derive(Default)]
struct Fields {
    metric: String,
    unit: String,
    value: f64,
    action: String,
    kind: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "metric" => self.metric = value.to_string(),
            "unit" => self.unit = value.to_string(),
            "action" => self.action = value.to_string(),
            "kind" => self.kind = value.to_string(),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "value" {
            self.value = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_f64(field, value as f64);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_f64(field, value as f64);
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// The EMF line of one metric at `timestamp_ms`. Dimensions are the non-empty ones of action
/// and kind; a metric without either has the empty dimension set, as the format allows.
pub fn emf_line(
    metric: &str,
    unit: &str,
    value: f64,
    action: &str,
    kind: &str,
    timestamp_ms: i64,
) -> Value {
    let mut dimensions = Vec::new();
    let mut line = Map::new();
    for (name, value) in [("Action", action), ("Kind", kind)] {
        if !value.is_empty() {
            dimensions.push(name);
            line.insert(name.into(), Value::String(value.into()));
        }
    }
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": [{"Name": metric, "Unit": unit}],
            }],
        }),
    );
    line.insert(metric.into(), json!(value));
    Value::Object(line)
}

impl<S, W> Layer<S> for EmfLayer<W>
where
    S: tracing::Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.metric.is_empty() {
            return;
        }
        let line = emf_line(
            &fields.metric,
            &fields.unit,
            fields.value,
            &fields.action,
            &fields.kind,
            chrono::Utc::now().timestamp_millis(),
        );
        let mut text = line.to_string();
        text.push('\n');
        // A metric that cannot be written is lost, never a failed task.
        let _ = self.writer.make_writer().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_with_action_and_kind_has_them_as_its_one_dimension_set() {
        let line = emf_line(
            "TargetsStopped",
            "Count",
            1.0,
            "stop",
            "asg",
            1_700_000_000_000,
        );
        assert_eq!(
            line,
            json!({
                "_aws": {"Timestamp": 1_700_000_000_000i64, "CloudWatchMetrics": [{
                    "Namespace": "curfew",
                    "Dimensions": [["Action", "Kind"]],
                    "Metrics": [{"Name": "TargetsStopped", "Unit": "Count"}],
                }]},
                "Action": "stop",
                "Kind": "asg",
                "TargetsStopped": 1.0,
            })
        );
    }

    #[test]
    fn a_metric_without_dimensions_has_the_empty_dimension_set() {
        let line = emf_line("StsCacheHits", "Count", 1.0, "", "", 0);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert!(line.get("Action").is_none() && line.get("Kind").is_none());
    }
}
