//! The console's state: the hub it reads, how it starts operations, and its token.

use std::sync::Arc;

use curfew_aws::changes::ChangeRecorder;
use curfew_aws::dispatch::Dispatcher;
use curfew_aws::router_function::{invoke_router, RouterFunctionError};
use curfew_core::ports::{ErrorKind, PortError};
use curfew_core::selector::Selector;
use curfew_core::service::invocation::{invoke, Invocation, InvocationError, InvocationResponse};
use curfew_core::service::Hub;

use crate::prices::PriceTable;
use crate::savings::Listed;
use crate::token::Token;

/// How the console starts an operation: the same two paths as `curfew stop|start|trigger`.
pub enum Runner {
    /// Local mode (an emulator endpoint): the invocation runs in-process and the dispatcher
    /// drains the queues through the real router and worker code, standing in for the SQS
    /// event source mappings. One drain runs at a time, as one mapping would.
    Local(Box<tokio::sync::Mutex<Dispatcher>>),
    /// Against AWS: the deployed router Lambda is invoked with the invocation's JSON.
    Lambda {
        /// A Lambda client with the operator's credentials.
        client: aws_sdk_lambda::Client,
        /// The router function's name or ARN.
        function: String,
    },
    /// Reading only; the text says why (e.g. no queues or router function configured).
    ReadOnly(String),
}

impl Runner {
    /// Local mode over `dispatcher`.
    pub fn local(dispatcher: Dispatcher) -> Runner {
        Runner::Local(Box::new(tokio::sync::Mutex::new(dispatcher)))
    }
}

/// Why an operation was not started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The request was malformed; `field` names what to fix.
    #[error("{message}")]
    Invalid {
        /// The request field at fault (`select`, `action`, ...).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The schedule to trigger does not exist.
    #[error("no schedule named {0:?}")]
    UnknownSchedule(String),
    /// This console cannot start operations.
    #[error("this console cannot start operations: {0}")]
    ReadOnly(String),
    /// The state table or a queue failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The router function failed.
    #[error(transparent)]
    Router(#[from] RouterFunctionError),
}

impl From<InvocationError> for RunError {
    fn from(e: InvocationError) -> Self {
        match e {
            InvocationError::Payload(message) => RunError::Invalid {
                field: "select",
                message,
            },
            InvocationError::UnknownSchedule(name) => RunError::UnknownSchedule(name),
            InvocationError::Port(e) => RunError::Port(e),
        }
    }
}

/// The invocation of a stop or start of `select`: built through [`Invocation::parse`], the
/// router's own payload parser, so the console asks exactly what `curfew stop|start` and
/// `aws lambda invoke` ask.
pub fn stop_or_start(
    action: curfew_core::decision::Action,
    select: &curfew_core::selector::Selector,
    dry_run: bool,
) -> Result<Invocation, RunError> {
    let payload = serde_json::json!({
        "action": action.as_str(),
        "select": select.as_str(),
        "dry_run": dry_run,
    });
    Ok(Invocation::parse(&payload)?)
}

/// Everything a request handler needs; cheap to clone (shared behind `Arc`s).
#[derive(Clone)]
pub struct Console {
    pub(crate) hub: Hub,
    runner: Arc<Runner>,
    pub(crate) token: Token,
    /// Records configuration changes in the audit trail.
    pub(crate) recorder: ChangeRecorder,
    /// When true, only requests naming a loopback host are served: a page elsewhere cannot
    /// point a DNS name at 127.0.0.1 and read the console through the operator's browser.
    pub(crate) loopback_hosts_only: bool,
    /// Prices per instance-hour for the savings page's money (`None`: hours only).
    prices: Option<Arc<PriceTable>>,
}

impl Console {
    /// A console over `hub`, starting operations with `runner`, recording configuration
    /// changes with `recorder`, guarded by `token`.
    pub fn new(hub: Hub, runner: Runner, recorder: ChangeRecorder, token: Token) -> Console {
        Console {
            hub,
            runner: Arc::new(runner),
            token,
            recorder,
            loopback_hosts_only: true,
            prices: None,
        }
    }

    /// Prices the savings with `prices` (`curfew ui --prices FILE`).
    pub fn with_prices(mut self, prices: PriceTable) -> Console {
        self.prices = Some(Arc::new(prices));
        self
    }

    /// Serves requests for any `Host` (for `--listen` on a non-loopback address, where the
    /// operator's own host name must work). The token still guards every change.
    pub fn any_host(mut self) -> Console {
        self.loopback_hosts_only = false;
        self
    }

    /// The URL to open, with the token: `http://127.0.0.1:PORT/?token=...`.
    pub fn url(&self, addr: std::net::SocketAddr) -> String {
        format!("http://{addr}/?token={}", self.token.as_str())
    }

    /// Why this console cannot start operations, if it cannot.
    pub fn read_only(&self) -> Option<&str> {
        match self.runner.as_ref() {
            Runner::ReadOnly(why) => Some(why),
            _ => None,
        }
    }

    /// Starts the operation `invocation` asks for, the way `curfew stop|start|trigger` does,
    /// and returns as soon as it exists; in local mode its queues are drained in the
    /// background, so its page shows the progress.
    pub async fn start(&self, invocation: Invocation) -> Result<InvocationResponse, RunError> {
        match self.runner.as_ref() {
            Runner::ReadOnly(why) => Err(RunError::ReadOnly(why.clone())),
            Runner::Lambda { client, function } => {
                Ok(invoke_router(client, function, &invocation).await?)
            }
            Runner::Local(_) => {
                let response = invoke(&self.hub, invocation).await?;
                let runner = self.runner.clone();
                let op_id = response.operation_id.clone();
                tokio::spawn(async move {
                    if let Runner::Local(dispatcher) = runner.as_ref() {
                        let dispatcher = dispatcher.lock().await;
                        match dispatcher.drain().await {
                            Ok(report) => {
                                for cause in report.rejected {
                                    tracing::warn!(op_id, cause, "a queue message was rejected");
                                }
                            }
                            Err(e) => {
                                tracing::error!(op_id, error = %e, "draining the queues failed")
                            }
                        }
                    }
                });
                Ok(response)
            }
        }
    }
}

/// How far back savings look.
const SAVINGS_DAYS: i64 = 7;
/// The newest operations read for savings (a stop older than the window may still be asleep
/// in it, so the read reaches further back than the window).
const SAVINGS_OPERATIONS: usize = 500;

impl Console {
    /// What sleeping saved over the last week, from the operations' tasks, priced with the
    /// console's price table if it has one, beside the capacity awake of the fleet listed now.
    pub async fn savings(&self) -> Result<crate::savings::Savings, PortError> {
        let now = self.hub.clock.now();
        let ops = self.hub.store.list_operations(SAVINGS_OPERATIONS).await?;
        let horizon = now - chrono::Duration::days(2 * SAVINGS_DAYS);
        let mut history = Vec::new();
        for op in ops.into_iter().filter(|op| op.created_at >= horizon) {
            let tasks = self.hub.store.list_tasks(&op.id).await?;
            history.push((op, tasks));
        }
        // The fleet page's reads: every target, with its live sizes.
        let everything = Selector::parse(crate::pages::EVERYTHING)
            .map_err(|e| PortError::new(ErrorKind::Invalid, e.to_string()))?;
        let listed: Vec<Listed> = crate::fleet::fleet(&self.hub, &everything)
            .await?
            .targets
            .into_iter()
            .map(|t| Listed {
                key: t.key,
                desired: t.sizes.map(|s| i64::from(s.desired)),
            })
            .collect();
        Ok(crate::savings::savings(
            &history,
            &listed,
            self.prices.as_deref(),
            now,
            SAVINGS_DAYS,
        ))
    }
}
