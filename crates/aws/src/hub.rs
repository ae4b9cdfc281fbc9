//! Building a [`Hub`] from configuration, and provisioning a hub's table and queues on an
//! emulator (local mode and tests; in AWS the CDK hub stack owns them).

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use curfew_core::clock::Clock;
use curfew_core::health::ContactRecorder;
use curfew_core::ports::{PortError, PortResult};
use curfew_core::service::{Hub, Settings};
use curfew_core::trail::{AuditKey, AuditSigner};

use crate::error::classify;
use crate::{AwsSpokes, DynamoStore, SnsNotifier, SqsQueue};
use curfew_core::notice::Notices;

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
    /// The task queue's dead-letter queue URL (`CURFEW_TASK_DLQ_URL`), if known: only the
    /// operator's `curfew dlq` commands read it, so the Lambdas' configuration leaves it out.
    pub task_dlq_url: Option<String>,
    /// The notification topic's ARN (`CURFEW_NOTIFY_TOPIC_ARN`), if notices are wanted: without
    /// one nothing is published (docs/NOTIFICATIONS.md).
    pub notify_topic_arn: Option<String>,
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

/// A whole number from `env`, within `range` (so no date arithmetic can overflow).
fn bounded(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    unit: &str,
) -> Result<i64, ConfigError> {
    match env(name) {
        None => Ok(default),
        Some(v) => v
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

/// The worker's function timeout when `CURFEW_WORKER_TIMEOUT_SECONDS` is unset: the longest
/// any Lambda function may run.
pub const MAX_WORKER_TIMEOUT_SECONDS: i64 = 900;

/// How much longer than the worker's timeout a lease must last: each worker stamps and checks
/// lease expiry with its own clock, clocks of different hosts disagree a little, and a write
/// sent just before the timeout may still land after it.
pub const LEASE_MARGIN_SECONDS: i64 = 60;

/// The lease when `CURFEW_LEASE_SECONDS` is unset: 15 minutes, or longer when the worker's
/// timeout plus the margin is.
const DEFAULT_LEASE_SECONDS: i64 = 900;

impl HubConfig {
    /// Reads `CURFEW_TABLE`, `CURFEW_ROUTER_QUEUE_URL` and `CURFEW_TASK_QUEUE_URL` (required)
    /// and `CURFEW_TASK_DLQ_URL` and `CURFEW_NOTIFY_TOPIC_ARN` (optional).
    pub fn from_env() -> Result<HubConfig, ConfigError> {
        Ok(HubConfig {
            table: var("CURFEW_TABLE")?,
            router_queue_url: var("CURFEW_ROUTER_QUEUE_URL")?,
            task_queue_url: var("CURFEW_TASK_QUEUE_URL")?,
            task_dlq_url: var("CURFEW_TASK_DLQ_URL").ok(),
            notify_topic_arn: var("CURFEW_NOTIFY_TOPIC_ARN").ok(),
        })
    }
}

/// Reads the tunables: `CURFEW_CATCHUP_MINUTES` (default 60) and `CURFEW_INVENTORY_MINUTES`
/// (default 15), each at most a week, `CURFEW_LEASE_SECONDS` (1 to 86400, default 900 or
/// the minimum below if longer), `CURFEW_STUCK_MINUTES` (how long a task may wait on a node
/// group that stays UPDATING before a `stuck_updating` notice, 0 to a week, 0 never, default
/// 30), and `CURFEW_TASK_MAX_RECEIVES` (the task queue's
/// `maxReceiveCount`, 1 to 1000 as SQS allows, default [`MAX_RECEIVES`]): on that receive of a
/// task message the worker gives the task up rather than leave it for a retry SQS will never
/// make.
///
/// A lease must outlast the worker run that holds it: if it expired while a worker still ran,
/// another worker could take the target and act on it at the same time. So a lease shorter
/// than the worker's function timeout (`CURFEW_WORKER_TIMEOUT_SECONDS`, 1 to 900, default 900)
/// plus [`LEASE_MARGIN_SECONDS`] is refused.
pub fn settings_from_env() -> Result<Settings, ConfigError> {
    settings_from(|name| std::env::var(name).ok())
}

/// [`settings_from_env`] over `env`, which looks a variable up by name.
pub fn settings_from(env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let env = &env;
    let worker_timeout = bounded(
        env,
        "CURFEW_WORKER_TIMEOUT_SECONDS",
        MAX_WORKER_TIMEOUT_SECONDS,
        1..=MAX_WORKER_TIMEOUT_SECONDS,
        "seconds",
    )?;
    let min_lease = worker_timeout + LEASE_MARGIN_SECONDS;
    let lease = bounded(
        env,
        "CURFEW_LEASE_SECONDS",
        DEFAULT_LEASE_SECONDS.max(min_lease),
        1..=86_400,
        "seconds",
    )?;
    if lease < min_lease {
        return Err(ConfigError {
            name: "CURFEW_LEASE_SECONDS",
            reason: format!(
                "{lease} s is shorter than a worker may run: it must be at least {min_lease} s, \
                 the worker's timeout ({worker_timeout} s, CURFEW_WORKER_TIMEOUT_SECONDS) plus \
                 {LEASE_MARGIN_SECONDS} s, so a lease never expires while its worker still acts \
                 on the target"
            ),
        });
    }
    Ok(Settings {
        catchup: chrono::Duration::minutes(bounded(
            env,
            "CURFEW_CATCHUP_MINUTES",
            60,
            0..=WEEK_MINUTES,
            "minutes",
        )?),
        inventory_ttl: chrono::Duration::minutes(bounded(
            env,
            "CURFEW_INVENTORY_MINUTES",
            15,
            0..=WEEK_MINUTES,
            "minutes",
        )?),
        lease_ttl: chrono::Duration::seconds(lease),
        drift_interval: chrono::Duration::minutes(bounded(
            env,
            "CURFEW_DRIFT_MINUTES",
            0,
            0..=WEEK_MINUTES,
            "minutes",
        )?),
        enforce_interval: chrono::Duration::minutes(bounded(
            env,
            "CURFEW_ENFORCE_MINUTES",
            1,
            0..=WEEK_MINUTES,
            "minutes",
        )?),
        stuck_updating: chrono::Duration::minutes(bounded(
            env,
            "CURFEW_STUCK_MINUTES",
            30,
            0..=WEEK_MINUTES,
            "minutes",
        )?),
        task_max_receives: bounded(
            env,
            "CURFEW_TASK_MAX_RECEIVES",
            i64::from(MAX_RECEIVES),
            1..=1000,
            "receives",
        )? as u32,
        chunk_targets: bounded(
            env,
            "CURFEW_CHUNK_TARGETS",
            curfew_core::chunk::MAX_CHUNK_TARGETS as i64,
            1..=curfew_core::chunk::MAX_CHUNK_TARGETS as i64,
            "targets",
        )? as usize,
        audit: audit_signer(env)?,
        ..Settings::default()
    })
}

/// The variable naming the Secrets Manager secret that holds the audit key (the hub stack sets
/// it on the worker, which records target changes): read once, at cold start, so the key is
/// never in the function's configuration.
pub const AUDIT_KEY_SECRET: &str = "CURFEW_AUDIT_KEY_SECRET";

/// The audit key held in the Secrets Manager secret `secret` (its ARN or name), as its string
/// value's bytes.
pub async fn audit_key_from_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Result<AuditKey, ConfigError> {
    let failed = |reason: String| ConfigError {
        name: AUDIT_KEY_SECRET,
        reason,
    };
    let value = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            failed(format!(
                "reading secret {secret}: {}",
                classify("reading the audit key", e)
            ))
        })?;
    let text = value
        .secret_string()
        .ok_or_else(|| failed(format!("secret {secret} has no string value")))?;
    AuditKey::new(text.as_bytes().to_vec()).map_err(|e| failed(format!("secret {secret}: {e}")))
}

/// The audit trail's actor and signing key: `CURFEW_AUDIT_ACTOR` (the hub stack sets each
/// function's role ARN; else `lambda:<function name>`, else `curfew`) and `CURFEW_AUDIT_KEY`
/// (at least 32 bytes; unset: chain heads are not signed).
pub fn audit_signer(env: &dyn Fn(&str) -> Option<String>) -> Result<AuditSigner, ConfigError> {
    let actor = env("CURFEW_AUDIT_ACTOR")
        .filter(|a| !a.trim().is_empty())
        .or_else(|| env("AWS_LAMBDA_FUNCTION_NAME").map(|f| format!("lambda:{f}")))
        .unwrap_or_else(|| "curfew".into());
    let key = match env("CURFEW_AUDIT_KEY").filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(AuditKey::new(k.into_bytes()).map_err(|e| ConfigError {
            name: "CURFEW_AUDIT_KEY",
            reason: e.to_string(),
        })?),
    };
    Ok(AuditSigner { actor, key })
}

/// Builds the hub's adapters once (SDK clients are cheap to clone and share connections).
pub fn build_hub(
    sdk: &SdkConfig,
    config: &HubConfig,
    clock: Arc<dyn Clock>,
    settings: Settings,
) -> Hub {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &config.table,
    ));
    // Credentials expire in real time, whatever the hub's (possibly simulated) clock says.
    let spokes = Arc::new(
        AwsSpokes::new(sdk.clone(), Arc::new(curfew_core::clock::SystemClock))
            .recording_contacts(Arc::new(ContactRecorder::new(store.clone(), clock.clone()))),
    );
    Hub {
        store,
        router_queue: Arc::new(SqsQueue::new(sqs.clone(), &config.router_queue_url)),
        task_queue: Arc::new(SqsQueue::new(sqs, &config.task_queue_url)),
        clusters: crate::clusters::kube_clusters(spokes.clone()),
        spokes,
        clock,
        settings,
        notices: notices(sdk, &config.table, config.notify_topic_arn.as_deref()),
    }
}

/// Notices to the topic `topic_arn`, kept to one send each in the state table `table`; none
/// without a topic.
pub fn notices(sdk: &SdkConfig, table: &str, topic_arn: Option<&str>) -> Notices {
    match topic_arn {
        Some(arn) => Notices::new(
            Arc::new(SnsNotifier::new(aws_sdk_sns::Client::new(sdk), arn)),
            Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table)),
        ),
        None => Notices::none(),
    }
}

/// Creates the notification topic named after `prefix` (as [`provision`] names the table and
/// queues) and returns its ARN. Idempotent.
pub async fn provision_topic(sdk: &SdkConfig, prefix: &str) -> PortResult<String> {
    crate::sns::create_topic(&aws_sdk_sns::Client::new(sdk), &format!("{prefix}-notices")).await
}

/// Receives before a message goes to its queue's DLQ (as in the hub stack, whose worker gets
/// it as `CURFEW_TASK_MAX_RECEIVES`).
pub const MAX_RECEIVES: u32 = curfew_core::service::DEFAULT_MAX_RECEIVES;

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
        let url = create_queue(&sqs, &format!("{prefix}-{queue}"), Some(&dlq_arn), 30).await?;
        urls.push((url, dlq));
    }
    let (task_queue_url, task_dlq_url) = urls.pop().expect("two queues");
    let (router_queue_url, _) = urls.pop().expect("two queues");
    Ok(HubConfig {
        table,
        router_queue_url,
        task_queue_url,
        task_dlq_url: Some(task_dlq_url),
        notify_topic_arn: None,
    })
}

/// Builds the hub a Lambda runs with, from its environment: `CURFEW_*` variables, the SDK's
/// own (region, credentials, `AWS_ENDPOINT_URL`), and the real clock. Fails at cold start,
/// naming the variable.
pub async fn hub_from_env() -> Result<Hub, ConfigError> {
    let config = HubConfig::from_env()?;
    let mut settings = settings_from_env()?;
    let sdk = crate::config::load_sdk_config(None, None).await;
    if let Ok(secret) = std::env::var(AUDIT_KEY_SECRET) {
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        settings.audit.key = Some(audit_key_from_secret(&client, &secret).await?);
    }
    Ok(build_hub(
        &sdk,
        &config,
        Arc::new(curfew_core::clock::SystemClock),
        settings,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[tokio::test]
    async fn the_audit_key_is_read_from_the_named_secret_and_a_short_one_is_refused() {
        use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
        use aws_sdk_secretsmanager::Client;
        use aws_smithy_mocks::{mock, mock_client};

        let long = mock!(Client::get_secret_value)
            .match_requests(|r| {
                r.secret_id() == Some("arn:aws:secretsmanager:eu-west-1:1:secret:k")
            })
            .then_output(|| {
                GetSecretValueOutput::builder()
                    .secret_string("k".repeat(64))
                    .build()
            });
        let client = mock_client!(aws_sdk_secretsmanager, [&long]);
        let key = audit_key_from_secret(&client, "arn:aws:secretsmanager:eu-west-1:1:secret:k")
            .await
            .unwrap();
        assert_eq!(key, AuditKey::new("k".repeat(64).into_bytes()).unwrap());
        assert_eq!(long.num_calls(), 1);

        let short = mock!(Client::get_secret_value).then_output(|| {
            GetSecretValueOutput::builder()
                .secret_string("short")
                .build()
        });
        let client = mock_client!(aws_sdk_secretsmanager, [&short]);
        let e = audit_key_from_secret(&client, "s").await.unwrap_err();
        assert_eq!(e.name, AUDIT_KEY_SECRET);
        assert!(e.reason.contains("at least 32 bytes"), "{}", e.reason);
    }

    #[test]
    fn the_audit_actor_falls_back_to_the_function_name_and_a_short_key_is_refused() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let signer = audit_signer(&env(&[("AWS_LAMBDA_FUNCTION_NAME", "curfew-worker")])).unwrap();
        assert_eq!(
            (signer.actor.as_str(), signer.key),
            ("lambda:curfew-worker", None)
        );
        let signer = audit_signer(&env(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "curfew-worker"),
            ("CURFEW_AUDIT_ACTOR", "arn:aws:iam::1:role/curfew-worker"),
        ]))
        .unwrap();
        assert_eq!(signer.actor, "arn:aws:iam::1:role/curfew-worker");
        let e = audit_signer(&env(&[("CURFEW_AUDIT_KEY", "too-short")])).unwrap_err();
        assert_eq!(e.name, "CURFEW_AUDIT_KEY");
    }

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn tunables_out_of_range_are_refused_naming_the_variable() {
        let e = settings(&[("CURFEW_LEASE_SECONDS", "99999999999999999")]).unwrap_err();
        assert_eq!(e.name, "CURFEW_LEASE_SECONDS");
        assert!(e.reason.contains("1 to 86400"), "{}", e.reason);
        let e = settings(&[("CURFEW_CATCHUP_MINUTES", "99999999999")]).unwrap_err();
        assert_eq!(e.name, "CURFEW_CATCHUP_MINUTES");
        let settings = settings(&[
            ("CURFEW_LEASE_SECONDS", "1200"),
            ("CURFEW_CATCHUP_MINUTES", "30"),
        ])
        .unwrap();
        assert_eq!(
            (settings.lease_ttl, settings.catchup),
            (
                chrono::Duration::seconds(1200),
                chrono::Duration::minutes(30)
            )
        );
    }

    #[test]
    fn a_lease_shorter_than_the_workers_timeout_plus_a_margin_is_refused() {
        let e = settings(&[
            ("CURFEW_WORKER_TIMEOUT_SECONDS", "120"),
            ("CURFEW_LEASE_SECONDS", "120"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "CURFEW_LEASE_SECONDS");
        assert!(e.reason.contains("at least 180"), "{}", e.reason);
        assert!(
            e.reason.contains("CURFEW_WORKER_TIMEOUT_SECONDS"),
            "{}",
            e.reason
        );
        // Unset, the timeout is Lambda's maximum, 900 s.
        let e = settings(&[("CURFEW_LEASE_SECONDS", "900")]).unwrap_err();
        assert!(e.reason.contains("at least 960"), "{}", e.reason);
        let ok = settings(&[
            ("CURFEW_WORKER_TIMEOUT_SECONDS", "120"),
            ("CURFEW_LEASE_SECONDS", "180"),
        ])
        .unwrap();
        assert_eq!(ok.lease_ttl, chrono::Duration::seconds(180));
    }

    #[test]
    fn the_task_queues_max_receives_defaults_to_the_provisioned_redrive_policy() {
        assert_eq!(settings(&[]).unwrap().task_max_receives, MAX_RECEIVES);
        assert_eq!(
            settings(&[("CURFEW_TASK_MAX_RECEIVES", "8")])
                .unwrap()
                .task_max_receives,
            8
        );
        for bad in ["0", "1001", "five"] {
            let e = settings(&[("CURFEW_TASK_MAX_RECEIVES", bad)]).unwrap_err();
            assert_eq!(e.name, "CURFEW_TASK_MAX_RECEIVES");
            assert!(e.reason.contains("1 to 1000"), "{}", e.reason);
        }
    }

    #[test]
    fn the_default_lease_outlasts_the_workers_timeout() {
        let default = |vars: &[(&str, &str)]| settings(vars).unwrap().lease_ttl.num_seconds();
        assert_eq!(default(&[("CURFEW_WORKER_TIMEOUT_SECONDS", "120")]), 900);
        assert_eq!(
            default(&[]),
            960,
            "local mode: no function timeout, Lambda's maximum"
        );
        let e = settings(&[("CURFEW_WORKER_TIMEOUT_SECONDS", "901")]).unwrap_err();
        assert_eq!(e.name, "CURFEW_WORKER_TIMEOUT_SECONDS");
    }
}
