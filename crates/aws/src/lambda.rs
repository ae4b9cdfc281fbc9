//! What the three Lambda mains share: JSON tracing, and the SQS event <-> batch shapes
//! (ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use curfew_core::metrics;
use curfew_core::service::Delivery;

/// JSON logs, one object per line (CloudWatch Logs Insights reads the fields), filtered by
/// [`log_filter`]. A line logged while working a task or a shard carries the operation, account,
/// region and target in its `span` object. Credentials and ExternalIds are never logged (a test
/// scans a whole stop and start for them).
pub fn init_tracing() {
    tracing::subscriber::set_global_default(lambda_logs(log_filter(), std::io::stdout))
        .expect("tracing is set up once, at cold start");
}

/// The Lambdas' output: [`json_logs`] and, whatever the log filter says, every metric of
/// `curfew_core::metrics` as a CloudWatch Embedded Metric Format line ([`crate::emf`]).
pub fn lambda_logs<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    use tracing_subscriber::prelude::*;
    let metrics = crate::emf::EmfLayer::new(writer.clone()).with_filter(
        tracing_subscriber::filter::filter_fn(|meta| meta.target() == metrics::TARGET),
    );
    tracing_subscriber::registry()
        .with(lines(filter, writer))
        .with(metrics)
}

/// The log format writing to `writer`: JSON lines with the current span's fields, filtered by
/// `filter`, never with the AWS SDK's HTTP debug and trace lines (see [`is_wire_detail`]) nor
/// the metric events (a Lambda writes those as EMF lines, see [`lambda_logs`]).
pub fn json_logs<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry().with(lines(filter, writer))
}

fn lines<S, W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::prelude::*;
    // Per-layer filters: the level filter must not hide the metric events from the EMF layer.
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            !is_wire_detail(meta) && meta.target() != metrics::TARGET
        }))
}

/// The SDK's, the Kubernetes client's and their HTTP stack's debug and trace lines carry whole
/// requests and responses (bearer tokens too):
/// an AssumeRole response's credentials, the session token header, the ExternalId in the
/// request and in the accounts read from the table. They are dropped whatever the filter
/// asks for, so `CURFEW_LOG=trace` cannot put a secret in CloudWatch Logs.
pub fn is_wire_detail(meta: &tracing::Metadata<'_>) -> bool {
    const WIRE: [&str; 10] = [
        "aws_smithy",
        "aws_sigv4",
        "aws_runtime",
        "aws_config",
        "aws_credential_types",
        "aws_sdk_",
        "hyper",
        "h2",
        // The Kubernetes client: its requests carry the EKS bearer token.
        "kube",
        "tower",
    ];
    *meta.level() >= tracing::Level::DEBUG && WIRE.iter().any(|w| meta.target().starts_with(w))
}

/// The log level and filters: `CURFEW_LOG` (as `RUST_LOG` is read, e.g. `info` or
/// `curfew_core=debug,warn`), else `RUST_LOG`, else `info`.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("CURFEW_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// `(message id, body)` pairs of an SQS event, as the batch handlers take them.
pub fn sqs_messages(event: &SqsEvent) -> Vec<(String, String)> {
    event
        .records
        .iter()
        .map(|r| {
            (
                r.message_id.clone().unwrap_or_default(),
                r.body.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The task messages of an SQS event with their receive counts: the event source mapping puts
/// SQS's `ApproximateReceiveCount` in each record's (system) `attributes`.
pub fn sqs_deliveries(event: &SqsEvent) -> Vec<Delivery> {
    event
        .records
        .iter()
        .map(|r| Delivery {
            message_id: r.message_id.clone().unwrap_or_default(),
            body: r.body.clone().unwrap_or_default(),
            receive_count: crate::sqs::receive_count(
                r.attributes
                    .get("ApproximateReceiveCount")
                    .map(String::as_str),
            ),
            trace_header: r.attributes.get("AWSTraceHeader").cloned(),
        })
        .collect()
}

/// The batch response naming the messages SQS must deliver again.
pub fn batch_response(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_messages_are_reported_as_batch_item_failures() {
        let json = serde_json::to_value(batch_response(vec!["m-1".into()])).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
        );
    }
}
