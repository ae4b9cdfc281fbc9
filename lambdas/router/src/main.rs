//! The router Lambda: router-queue batches (operation -> shards -> task messages) and direct
//! invocations (`{"action": "trigger" | "stop" | "start", ...}`, see docs/INVOKE.md).

use aws_lambda_events::event::sqs::SqsEvent;
use curfew_aws::lambda::{batch_response, init_tracing, sqs_messages};
use curfew_core::service::invocation::{invoke, Invocation, InvocationError};
use curfew_core::service::{router_batch, Hub};
use curfew_core::spoke_event::SpokeEvent;
use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

/// An error returned to a direct invoker, with an `errorType` a script can branch on
/// (`InvalidPayload`, `UnknownSchedule`, `StateError`) and a message naming the field.
#[derive(Debug)]
struct RouterError {
    error_type: &'static str,
    message: String,
}

impl From<InvocationError> for RouterError {
    fn from(e: InvocationError) -> Self {
        let error_type = match e {
            InvocationError::Payload(_) => "InvalidPayload",
            InvocationError::UnknownSchedule(_) => "UnknownSchedule",
            InvocationError::Port(_) => "StateError",
        };
        RouterError {
            error_type,
            message: e.to_string(),
        }
    }
}

impl From<serde_json::Error> for RouterError {
    fn from(e: serde_json::Error) -> Self {
        RouterError {
            error_type: "InvalidPayload",
            message: format!("invalid invocation payload: {e}"),
        }
    }
}

impl From<RouterError> for Diagnostic {
    fn from(e: RouterError) -> Self {
        Diagnostic {
            error_type: e.error_type.to_string(),
            error_message: e.message,
        }
    }
}

/// The shapes this function is invoked with.
#[derive(Debug)]
enum Event {
    /// From the router queue's event source mapping.
    Queue(SqsEvent),
    /// From the CLI or `aws lambda invoke`.
    Direct(Invocation),
    /// An Auto Scaling or EKS change in a spoke, forwarded to the hub bus by the spoke's rule.
    SpokeChange(SpokeEvent),
}

fn parse(payload: Value) -> Result<Event, RouterError> {
    if payload.get("Records").is_some() {
        return Ok(Event::Queue(serde_json::from_value(payload)?));
    }
    if payload.get("detail-type").is_some() {
        return Ok(Event::SpokeChange(serde_json::from_value(payload)?));
    }
    Ok(Event::Direct(Invocation::parse(&payload)?))
}

async fn handler(event: LambdaEvent<Value>, hub: &Hub) -> Result<Value, RouterError> {
    match parse(event.payload)? {
        Event::Queue(sqs) => {
            let outcome = router_batch(hub, &sqs_messages(&sqs)).await;
            Ok(serde_json::to_value(batch_response(outcome.failed))?)
        }
        Event::SpokeChange(change) if !change.changes_inventory() => {
            // A resize (curfew's own stops and starts among them): the cache holds no sizes.
            tracing::debug!(account = %change.account, region = %change.region, call = change.call(),
                "spoke change leaves the inventory as it was");
            Ok(serde_json::json!({"ignored": format!("{}/{}", change.account, change.region)}))
        }
        Event::SpokeChange(change) => {
            tracing::info!(account = %change.account, region = %change.region, source = %change.source,
                call = change.call(), "spoke change; inventory will be listed live");
            curfew_core::service::router::spoke_changed(hub, &change.account, &change.region)
                .await
                .map_err(|e| RouterError {
                    error_type: "StateError",
                    message: e.to_string(),
                })?;
            Ok(serde_json::json!({"invalidated": format!("{}/{}", change.account, change.region)}))
        }
        Event::Direct(invocation) => Ok(serde_json::to_value(invoke(hub, invocation).await?)?),
    }
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
    fn a_router_queue_event_is_told_apart_from_a_direct_invocation() {
        let fixture: Value =
            serde_json::from_str(include_str!("../fixtures/sqs-router-event.json")).unwrap();
        assert!(matches!(parse(fixture).unwrap(), Event::Queue(e) if e.records.len() == 1));
        let direct = serde_json::json!({"action": "stop", "select": "tag:env=dev"});
        assert!(matches!(
            parse(direct).unwrap(),
            Event::Direct(Invocation::Stop { .. })
        ));
    }

    #[test]
    fn a_forwarded_spoke_event_is_recognised() {
        let event = serde_json::json!({
            "version": "0", "id": "6a7e8feb", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.autoscaling", "account": "111111111111", "time": "2027-01-04T18:00:00Z",
            "region": "eu-west-1", "resources": [], "detail": {"eventName": "CreateAutoScalingGroup"}
        });
        assert!(
            matches!(parse(event).unwrap(), Event::SpokeChange(c) if c.account == "111111111111" && c.region == "eu-west-1")
        );
    }

    #[test]
    fn a_malformed_direct_invocation_names_the_field() {
        let err = parse(serde_json::json!({"action": "stop"})).unwrap_err();
        assert_eq!(err.error_type, "InvalidPayload");
        let err = err.message;
        assert!(err.contains("select"), "{err}");
    }
}
