//! Reaching the hub from the global options: the SDK configuration (an emulator endpoint or
//! real AWS), the state table, the queues and the router Lambda. A command asks only for what
//! it uses, so a missing queue never stops `curfew schedule list`.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use aws_config::SdkConfig;
use curfew_aws::dispatch::Dispatcher;
use curfew_aws::{AwsSpokes, DynamoStore, SqsDeadLetters, SqsQueue};
use curfew_core::clock::{Clock, SystemClock};
use curfew_core::health::ContactRecorder;
use curfew_core::ports::{ErrorKind, PortError, PortResult, Queue, StateStore};
use curfew_core::service::Hub;

use crate::cli::GlobalOpts;
use crate::error::bad_input;

/// The region local mode uses unless told otherwise (the one `curfew local up` exports).
pub const LOCAL_REGION: &str = "eu-west-1";

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl GlobalOpts {
    /// The emulator endpoint, if one is set: local mode.
    pub fn endpoint(&self) -> Option<&str> {
        set(&self.endpoint)
    }

    /// True when an endpoint is set (stop/start/trigger run in-process).
    pub fn is_local(&self) -> bool {
        self.endpoint().is_some()
    }

    /// The state table, or an error naming the flag and the variable.
    pub fn table(&self) -> Result<&str> {
        set(&self.table).ok_or_else(|| {
            bad_input("no state table: set --table or CURFEW_TABLE (local mode: eval \"$(curfew local up)\")")
        })
    }

    /// The router and task queue URLs, or an error naming the missing one.
    pub fn queues(&self) -> Result<(&str, &str)> {
        let router = set(&self.router_queue_url).ok_or_else(|| {
            bad_input("no router queue: set --router-queue-url or CURFEW_ROUTER_QUEUE_URL")
        })?;
        Ok((router, self.task_queue()?))
    }

    /// The task queue URL, or an error naming the flag and the variable.
    pub fn task_queue(&self) -> Result<&str> {
        set(&self.task_queue_url).ok_or_else(|| {
            bad_input("no task queue: set --task-queue-url or CURFEW_TASK_QUEUE_URL (the hub stack's TaskQueueUrl output)")
        })
    }

    /// The task dead-letter queue URL, or an error naming the flag and the variable.
    pub fn task_dlq(&self) -> Result<&str> {
        set(&self.task_dlq_url).ok_or_else(|| {
            bad_input("no task dead-letter queue: set --task-dlq-url or CURFEW_TASK_DLQ_URL (the hub stack's TaskDeadLetterQueueUrl output; local mode: eval \"$(curfew local up)\")")
        })
    }

    /// The notification topic, if one is set (no topic: no notices).
    pub fn notify_topic(&self) -> Option<&str> {
        set(&self.notify_topic_arn)
    }

    /// The router Lambda, or an error naming the flag and the variable.
    pub fn router_function(&self) -> Result<&str> {
        set(&self.router_function).ok_or_else(|| {
            bad_input("no router function: set --router-function or CURFEW_ROUTER_FUNCTION (or --endpoint for local mode)")
        })
    }
}

/// The SDK configuration for an endpoint (an emulator) or real AWS; against an emulator the
/// region defaults to the local one.
pub async fn sdk_config(endpoint: Option<&str>, region: Option<&str>) -> SdkConfig {
    let region = region.or(endpoint.map(|_| LOCAL_REGION));
    curfew_aws::config::load_sdk_config(endpoint, region).await
}

/// The SDK configuration the global options describe. Fails, naming `--region`, when no
/// region can be found for real AWS.
pub async fn sdk(opts: &GlobalOpts) -> Result<SdkConfig> {
    let config = sdk_config(opts.endpoint(), set(&opts.region)).await;
    if config.region().is_none() {
        return Err(bad_input(
            "no AWS region: set --region or AWS_REGION (or a region in your AWS profile)",
        ));
    }
    Ok(config)
}

/// The state table alone.
pub async fn store(opts: &GlobalOpts) -> Result<Arc<dyn StateStore>> {
    let table = opts.table()?.to_string();
    let sdk = sdk(opts).await?;
    Ok(Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        table,
    )))
}

/// A queue that is not configured: any send fails naming the flag and variable. `plan` builds
/// a hub without queues because it sends nothing.
struct MissingQueue(&'static str);

#[async_trait]
impl Queue for MissingQueue {
    async fn send(&self, _bodies: &[String]) -> PortResult<()> {
        Err(PortError::new(ErrorKind::Invalid, self.0))
    }
}

/// The hub's queues, when the command sends messages.
pub struct Queues<'a> {
    /// Router queue URL.
    pub router: &'a str,
    /// Task queue URL.
    pub task: &'a str,
}

/// Builds a hub over `table`. The spokes' session cache runs on the real clock even when the
/// hub runs on a demo clock: credentials expire in real time.
pub fn build_hub(
    sdk: &SdkConfig,
    table: &str,
    queues: Option<&Queues<'_>>,
    clock: Arc<dyn Clock>,
) -> Result<Hub> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let (router_queue, task_queue): (Arc<dyn Queue>, Arc<dyn Queue>) = match queues {
        Some(q) => (
            Arc::new(SqsQueue::new(sqs.clone(), q.router)),
            Arc::new(SqsQueue::new(sqs, q.task)),
        ),
        None => (
            Arc::new(MissingQueue(
                "no router queue: set --router-queue-url or CURFEW_ROUTER_QUEUE_URL",
            )),
            Arc::new(MissingQueue(
                "no task queue: set --task-queue-url or CURFEW_TASK_QUEUE_URL",
            )),
        ),
    };
    let settings = curfew_aws::hub::settings_from_env().map_err(|e| bad_input(e.to_string()))?;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table));
    let contacts = Arc::new(ContactRecorder::new(store.clone(), clock.clone()));
    let spokes =
        Arc::new(AwsSpokes::new(sdk.clone(), Arc::new(SystemClock)).recording_contacts(contacts));
    Ok(Hub {
        store,
        router_queue,
        task_queue,
        clusters: curfew_aws::clusters::kube_clusters(spokes.clone()),
        spokes,
        clock,
        settings,
        // A command that wants notices sets them from the options (`hub`, `task_hub`).
        notices: curfew_core::notice::Notices::none(),
    })
}

/// A hub on the real clock over the state table that sends to the task queue only: what
/// `dlq redrive` needs against AWS, where the workers' event source picks the messages up.
pub async fn task_hub(opts: &GlobalOpts) -> Result<Hub> {
    let table = opts.table()?;
    let task = opts.task_queue()?;
    let sdk = sdk(opts).await?;
    let mut hub = build_hub(&sdk, table, None, Arc::new(SystemClock))?;
    hub.notices = curfew_aws::hub::notices(&sdk, table, opts.notify_topic());
    hub.task_queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), task));
    Ok(hub)
}

/// The task dead-letter queue the global options name.
pub async fn dead_letters(opts: &GlobalOpts) -> Result<SqsDeadLetters> {
    let url = opts.task_dlq()?;
    let sdk = sdk(opts).await?;
    Ok(SqsDeadLetters::new(aws_sdk_sqs::Client::new(&sdk), url))
}

/// A hub on the real clock from the global options, with its queues when `with_queues`.
pub async fn hub(opts: &GlobalOpts, with_queues: bool) -> Result<(Hub, SdkConfig)> {
    let table = opts.table()?;
    let queues = if with_queues {
        let (router, task) = opts.queues()?;
        Some(Queues { router, task })
    } else {
        None
    };
    let sdk = sdk(opts).await?;
    let mut hub = build_hub(&sdk, table, queues.as_ref(), Arc::new(SystemClock))?;
    // The in-process router and worker publish what the Lambdas would, where the Lambdas would.
    hub.notices = curfew_aws::hub::notices(&sdk, table, opts.notify_topic());
    Ok((hub, sdk))
}

/// The local dispatcher over a hub's queues: it stands in for the SQS event source mappings.
pub fn dispatcher(
    hub: &Hub,
    sdk: &SdkConfig,
    queues: &Queues<'_>,
    max_concurrency: u16,
) -> Dispatcher {
    Dispatcher::new(
        hub.clone(),
        aws_sdk_sqs::Client::new(sdk),
        queues.router,
        queues.task,
        usize::from(max_concurrency),
    )
}
