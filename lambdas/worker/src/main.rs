//! The worker Lambda: an SQS batch of task messages -> one target each -> partial batch
//! failures for what must be retried (ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use curfew_aws::lambda::{batch_response, init_tracing, sqs_messages};
use curfew_core::service::{worker_batch, Hub};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

async fn handler(event: LambdaEvent<SqsEvent>, hub: &Hub) -> Result<SqsBatchResponse, Error> {
    let outcome = worker_batch(hub, &sqs_messages(&event.payload)).await;
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
        let pairs = sqs_messages(&event);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].0, "059f36b4-87a3-44ab-83d2-661975830a7d");
        let task: curfew_core::operation::TaskMessage = serde_json::from_str(&pairs[0].1).unwrap();
        assert_eq!(task.action, curfew_core::decision::Action::Stop);
    }
}
