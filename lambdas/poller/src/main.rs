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

#[cfg(test)]
mod tests {
    use super::*;
    use curfew_core::schedule::BrokenSchedule;

    #[test]
    fn the_response_counts_missed_fires_per_schedule_and_names_broken_schedules() {
        let report = poller::TickReport {
            created: vec!["20270104T1700Z-every-minute".into()],
            already_fired: vec![],
            missed: vec![poller::MissedFires {
                schedule: "every-minute".into(),
                count: 11_460,
                at_least: false,
                first: "2026-12-27T18:00:00Z".parse().unwrap(),
                last: Some("2027-01-04T16:59:00Z".parse().unwrap()),
            }],
            broken: vec![BrokenSchedule {
                name: "moon-nights".into(),
                problem: "unknown time zone \"Moon/Tranquility\"".into(),
            }],
            drift_check: None,
            skipped: vec![],
            enforce_passes: vec![],
        };
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({
                "created": ["20270104T1700Z-every-minute"],
                "already_fired": [],
                "missed": [{
                    "schedule": "every-minute",
                    "count": 11460,
                    "at_least": false,
                    "first": "2026-12-27T18:00:00Z",
                    "last": "2027-01-04T16:59:00Z"
                }],
                "broken": [{"name": "moon-nights", "problem": "unknown time zone \"Moon/Tranquility\""}]
            })
        );
    }
}
