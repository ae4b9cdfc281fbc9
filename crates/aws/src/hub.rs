//! Building a [`Hub`] from configuration, and provisioning a hub's table and queues on an
//! emulator (local mode and tests; in AWS the CDK hub stack owns them).

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use curfew_core::clock::Clock;
use curfew_core::ports::{PortError, PortResult};
use curfew_core::service::{Hub, Settings};

use crate::error::classify;
use crate::{AwsSpokes, DynamoStore, SqsQueue};

/// A required environment variable is missing or invalid.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Where the hub's resources are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// State table name (`CURFEW_TABLE`).
    pub table: String,
    /// Router queue URL (`CURFEW_ROUTER_QUEUE_URL`).
    pub router_queue_url: String,
    /// Task queue URL (`CURFEW_TASK_QUEUE_URL`).
    pub task_queue_url: String,
}

fn var(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError {
            name,
            reason: "is not set".into(),
        }),
    }
}

/// A whole number from the environment, within `range` (so no date arithmetic can overflow).
fn bounded(
    name: &'static str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    unit: &str,
) -> Result<i64, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| ConfigError {
                name,
                reason: format!(
                    "{v:?} is not a whole number of {unit} from {} to {}",
                    range.start(),
                    range.end()
                ),
            }),
    }
}

/// A week, in minutes: the most a catch-up window or an inventory's age may be.
const WEEK_MINUTES: i64 = 7 * 24 * 60;

impl HubConfig {
    /// Reads `CURFEW_TABLE`, `CURFEW_ROUTER_QUEUE_URL` and `CURFEW_TASK_QUEUE_URL`.
    pub fn from_env() -> Result<HubConfig, ConfigError> {
        Ok(HubConfig {
            table: var("CURFEW_TABLE")?,
            router_queue_url: var("CURFEW_ROUTER_QUEUE_URL")?,
            task_queue_url: var("CURFEW_TASK_QUEUE_URL")?,
        })
    }
}

/// Reads the tunables: `CURFEW_CATCHUP_MINUTES` (default 60) and `CURFEW_INVENTORY_MINUTES`
/// (default 15), each at most a week, and `CURFEW_LEASE_SECONDS` (default 900, 1 to 86400).
pub fn settings_from_env() -> Result<Settings, ConfigError> {
    Ok(Settings {
        catchup: chrono::Duration::minutes(bounded(
            "CURFEW_CATCHUP_MINUTES",
            60,
            0..=WEEK_MINUTES,
            "minutes",
        )?),
        inventory_ttl: chrono::Duration::minutes(bounded(
            "CURFEW_INVENTORY_MINUTES",
            15,
            0..=WEEK_MINUTES,
            "minutes",
        )?),
        lease_ttl: chrono::Duration::seconds(bounded(
            "CURFEW_LEASE_SECONDS",
            900,
            1..=86_400,
            "seconds",
        )?),
        ..Settings::default()
    })
}

/// Builds the hub's adapters once (SDK clients are cheap to clone and share connections).
pub fn build_hub(
    sdk: &SdkConfig,
    config: &HubConfig,
    clock: Arc<dyn Clock>,
    settings: Settings,
) -> Hub {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    Hub {
        store: Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &config.table,
        )),
        router_queue: Arc::new(SqsQueue::new(sqs.clone(), &config.router_queue_url)),
        task_queue: Arc::new(SqsQueue::new(sqs, &config.task_queue_url)),
        // Credentials expire in real time, whatever the hub's (possibly simulated) clock says.
        spokes: Arc::new(AwsSpokes::new(
            sdk.clone(),
            Arc::new(curfew_core::clock::SystemClock),
        )),
        clock,
        settings,
    }
}

/// Receives before a message goes to its queue's DLQ (as in the hub stack).
pub const MAX_RECEIVES: u32 = 5;

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    dlq_arn: Option<&str>,
    visibility_seconds: u32,
) -> PortResult<String> {
    let mut request = sqs.create_queue().queue_name(name).attributes(
        QueueAttributeName::VisibilityTimeout,
        visibility_seconds.to_string(),
    );
    if let Some(arn) = dlq_arn {
        request = request.attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVES})
                .to_string(),
        );
    }
    let out = request
        .send()
        .await
        .map_err(|e| classify(&format!("creating queue {name}"), e))?;
    out.queue_url.ok_or_else(|| {
        PortError::new(
            curfew_core::ports::ErrorKind::Other,
            format!("queue {name} has no URL"),
        )
    })
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> PortResult<String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| classify("reading a queue's ARN", e))?;
    out.attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| {
            PortError::new(
                curfew_core::ports::ErrorKind::Other,
                format!("queue {url} has no ARN"),
            )
        })
}

/// Creates the state table and the router and task queues (each with a DLQ) named after
/// `prefix`, and returns where they are. Idempotent.
pub async fn provision(sdk: &SdkConfig, prefix: &str) -> PortResult<HubConfig> {
    let table = format!("{prefix}-state");
    crate::dynamo::create_table(&aws_sdk_dynamodb::Client::new(sdk), &table).await?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut urls = Vec::new();
    for queue in ["router", "tasks"] {
        let dlq = create_queue(&sqs, &format!("{prefix}-{queue}-dlq"), None, 30).await?;
        let dlq_arn = queue_arn(&sqs, &dlq).await?;
        // The local dispatcher hands retried messages back with a 1-second visibility itself.
        urls.push(create_queue(&sqs, &format!("{prefix}-{queue}"), Some(&dlq_arn), 30).await?);
    }
    Ok(HubConfig {
        table,
        task_queue_url: urls.pop().expect("two queues"),
        router_queue_url: urls.pop().expect("two queues"),
    })
}

/// Builds the hub a Lambda runs with, from its environment: `CURFEW_*` variables, the SDK's
/// own (region, credentials, `AWS_ENDPOINT_URL`), and the real clock. Fails at cold start,
/// naming the variable.
pub async fn hub_from_env() -> Result<Hub, ConfigError> {
    let config = HubConfig::from_env()?;
    let settings = settings_from_env()?;
    let sdk = crate::config::load_sdk_config(None, None).await;
    Ok(build_hub(
        &sdk,
        &config,
        Arc::new(curfew_core::clock::SystemClock),
        settings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test owns these variables (others in this binary never read them).
    #[test]
    fn tunables_out_of_range_are_refused_naming_the_variable() {
        std::env::set_var("CURFEW_LEASE_SECONDS", "99999999999999999");
        let e = settings_from_env().unwrap_err();
        assert_eq!(e.name, "CURFEW_LEASE_SECONDS");
        assert!(e.reason.contains("1 to 86400"), "{}", e.reason);
        std::env::set_var("CURFEW_LEASE_SECONDS", "120");
        std::env::set_var("CURFEW_CATCHUP_MINUTES", "99999999999");
        assert_eq!(
            settings_from_env().unwrap_err().name,
            "CURFEW_CATCHUP_MINUTES"
        );
        std::env::set_var("CURFEW_CATCHUP_MINUTES", "30");
        let settings = settings_from_env().unwrap();
        assert_eq!(
            (settings.lease_ttl, settings.catchup),
            (
                chrono::Duration::seconds(120),
                chrono::Duration::minutes(30)
            )
        );
        std::env::remove_var("CURFEW_LEASE_SECONDS");
        std::env::remove_var("CURFEW_CATCHUP_MINUTES");
    }
}
