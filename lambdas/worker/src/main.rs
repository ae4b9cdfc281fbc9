//! The worker Lambda: an SQS batch of task messages -> one target each -> partial batch
//! failures for what must be retried (ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use curfew_aws::lambda::{batch_response, init_tracing, sqs_deliveries};
use curfew_core::service::{worker_batch_until, Hub};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

async fn handler(event: LambdaEvent<SqsEvent>, hub: &Hub) -> Result<SqsBatchResponse, Error> {
    // The invocation's deadline as an instant of this process's (tokio's) clock.
    let left = event
        .context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + left;
    let outcome = worker_batch_until(hub, &sqs_deliveries(&event.payload), Some(deadline)).await;
    Ok(batch_response(outcome.failed))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
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
        let deliveries = sqs_deliveries(&event);
        assert_eq!(deliveries.len(), 2);
        assert_eq!(
            deliveries[0].message_id,
            "059f36b4-87a3-44ab-83d2-661975830a7d"
        );
        let receives: Vec<u32> = deliveries.iter().map(|d| d.receive_count).collect();
        assert_eq!(
            receives,
            [1, 5],
            "from each record's ApproximateReceiveCount"
        );
        assert_eq!(
            deliveries[0].trace_header.as_deref(),
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"),
            "the router's trace, from the record's AWSTraceHeader"
        );
        assert_eq!(deliveries[1].trace_header, None);
        let task: curfew_core::operation::TaskMessage =
            serde_json::from_str(&deliveries[0].body).unwrap();
        assert_eq!(task.action, curfew_core::decision::Action::Stop);
    }
}
