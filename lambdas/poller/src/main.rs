//! The poller Lambda: EventBridge `rate(1 minute)` -> fire due schedules, each fire once.

use curfew_core::service::{poller, Hub};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

/// The scheduled event's content is not used: the poller asks its clock what time it is, so a
/// late or duplicated event fires nothing twice.
async fn handler(
    _event: LambdaEvent<serde_json::Value>,
    hub: &Hub,
) -> Result<poller::TickReport, Error> {
    Ok(poller::tick(hub).await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    curfew_aws::lambda::init_tracing();
    let hub = curfew_aws::hub::hub_from_env().await?;
    run(service_fn(|event| handler(event, &hub))).await
}
