//! What the three Lambda mains share: JSON tracing, and the SQS event <-> batch shapes
//! (ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use curfew_core::service::Delivery;

/// JSON logs, filtered by `RUST_LOG` (CloudWatch Logs Insights reads the fields).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
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
