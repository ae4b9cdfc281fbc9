//! The worker Lambda: an SQS batch of task messages -> one target each -> partial batch
//! failures for what must be retried (ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use curfew_core::service::{worker_batch, Hub};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

/// `(message id, body)` pairs of an SQS event.
fn messages(event: &SqsEvent) -> Vec<(String, String)> {
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

/// The batch response listing the messages to retry.
fn response(failed: Vec<String>) -> SqsBatchResponse {
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

async fn handler(event: LambdaEvent<SqsEvent>, hub: &Hub) -> Result<SqsBatchResponse, Error> {
    let outcome = worker_batch(hub, &messages(&event.payload)).await;
    Ok(response(outcome.failed))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let hub = curfew_aws::hub::hub_from_env().await?;
    run(service_fn(|event| handler(event, &hub))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_event_fixture_round_trips_and_yields_its_messages() {
        let fixture = include_str!("../fixtures/sqs-task-event.json");
        let event: SqsEvent = serde_json::from_str(fixture).unwrap();
        let again: SqsEvent =
            serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        assert_eq!(event, again);
        let pairs = messages(&event);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].0, "059f36b4-87a3-44ab-83d2-661975830a7d");
        assert!(pairs[0].1.contains("\"action\":\"stop\""));
    }

    #[test]
    fn failed_messages_are_reported_as_batch_item_failures() {
        let json = serde_json::to_value(response(vec!["m-1".into()])).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
        );
    }
}
