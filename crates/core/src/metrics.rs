//! The handlers' metrics. Each is a `tracing` event on the [`TARGET`] target, so the domain
//! stays free of I/O: the Lambdas' log layer (`curfew_aws::emf`) writes each one as a CloudWatch
//! Embedded Metric Format line, from which CloudWatch makes the metric; anywhere else (tests,
//! the CLI) they are ordinary events that nothing prints.
//!
//! Dimensions are low-cardinality only — the action and the target kind — never a target,
//! account or operation id, which would make one metric per target.
//!
//! ```
//! use curfew_core::metrics::{emit, Metric};
//! use curfew_core::decision::Action;
//!
//! // Without a subscriber this goes nowhere; in a Lambda it becomes an EMF line.
//! emit(Metric::TargetsStopped, 1.0, Some(Action::Stop), None);
//! ```

use crate::decision::Action;
use crate::target::TargetKind;

/// The `tracing` target metric events carry.
pub const TARGET: &str = "curfew_metrics";

/// The CloudWatch namespace of every curfew metric.
pub const NAMESPACE: &str = "curfew";

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Targets a stop put to sleep (a task SUCCEEDED).
    TargetsStopped,
    /// Targets a start woke (a task SUCCEEDED).
    TargetsStarted,
    /// Tasks SKIPPED (already there, kept awake, no baseline, dry run, superseded).
    TargetsSkipped,
    /// Tasks FAILED.
    TargetsFailed,
    /// Tasks given up on their message's last receive.
    TargetsDeadLettered,
    /// From an operation's creation to its final status, in seconds.
    OperationDuration,
    /// Calls retried after AWS throttled them.
    ThrottleRetries,
    /// Spoke sessions served from the STS session cache.
    StsCacheHits,
    /// Spoke sessions that needed an AssumeRole call.
    StsCacheMisses,
    /// How late the poller fired a schedule: now minus the fire time, in seconds.
    PollerLag,
}

impl Metric {
    /// The metric's name in CloudWatch.
    pub fn name(self) -> &'static str {
        match self {
            Metric::TargetsStopped => "TargetsStopped",
            Metric::TargetsStarted => "TargetsStarted",
            Metric::TargetsSkipped => "TargetsSkipped",
            Metric::TargetsFailed => "TargetsFailed",
            Metric::TargetsDeadLettered => "TargetsDeadLettered",
            Metric::OperationDuration => "OperationDuration",
            Metric::ThrottleRetries => "ThrottleRetries",
            Metric::StsCacheHits => "StsCacheHits",
            Metric::StsCacheMisses => "StsCacheMisses",
            Metric::PollerLag => "PollerLag",
        }
    }

    /// Its CloudWatch unit.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::OperationDuration | Metric::PollerLag => "Seconds",
            _ => "Count",
        }
    }
}

/// Emits one value of `metric`, with the action and the target kind as dimensions where they
/// apply.
pub fn emit(metric: Metric, value: f64, action: Option<Action>, kind: Option<TargetKind>) {
    tracing::info!(
        target: TARGET,
        metric = metric.name(),
        unit = metric.unit(),
        value,
        action = action.map(Action::as_str).unwrap_or(""),
        kind = kind.map(|k| k.as_str()).unwrap_or(""),
    );
}
