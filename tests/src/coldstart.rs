//! Timing one cold start of a Lambda binary: spawn it against a [`RuntimeApi`] on loopback,
//! hand it one event, and measure how long until its result arrives and the most memory it
//! held (`curfew-coldstart` runs it for each Lambda, a few times over).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::runtime_api::{Invocation, Route, RuntimeApi};

/// How long a bootstrap may take to answer its first event before the run gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);

/// One cold start, measured.
#[derive(Clone, Debug)]
pub struct ColdStart {
    /// Process spawn to its first `next` poll: the `main` before the handler (tracing, config,
    /// SDK clients).
    pub init_ms: f64,
    /// Process spawn to the whole result of the first event received.
    pub first_event_ms: f64,
    /// Peak resident set (`VmHWM`) after the first event, in KiB.
    pub peak_rss_kib: u64,
    /// Of the resident set after the first event, the anonymous pages (heap, stacks:
    /// `RssAnon`) and the file-backed ones (the binary's and libraries' pages: `RssFile`), in
    /// KiB: where the memory goes.
    pub rss_anon_kib: u64,
    /// See [`ColdStart::rss_anon_kib`].
    pub rss_file_kib: u64,
    /// What the handler returned.
    pub response: serde_json::Value,
}

/// Why a cold start could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum ColdStartError {
    /// The binary could not be spawned, or the API not started.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The bootstrap reported an error instead of a result.
    #[error("the function failed ({route:?}): {body}")]
    Failed {
        /// `Error` or `InitError`.
        route: Route,
        /// The runtime's error payload.
        body: serde_json::Value,
    },
    /// Nothing arrived within the patience, or the process had exited.
    #[error("no result within {0:?}")]
    Silent(Duration),
    /// `/proc/PID/status` had no `VmHWM` line.
    #[error("no VmHWM in /proc/{0}/status")]
    NoPeakRss(u32),
}

/// Runs `binary` with `env` (on top of a cleared environment but for `PATH`) against a fresh
/// Runtime API serving `invocation`, waits for its result, reads its peak RSS, then kills it.
///
/// # Errors
/// See [`ColdStartError`].
pub async fn measure(
    binary: &Path,
    env: &[(String, String)],
    function_arn: &str,
    invocation: Invocation,
) -> Result<ColdStart, ColdStartError> {
    let mut api = RuntimeApi::start(vec![invocation], function_arn).await?;
    let mut command = tokio::process::Command::new(binary);
    // A cleared environment: nothing from the caller's shell (an AWS profile, a log level)
    // changes what the Lambda does at start.
    command
        .env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
        .envs(env.iter().cloned())
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id().expect("a running child has a pid");
    let mut init_ms = None;
    let result = loop {
        let Some(report) = api.report(PATIENCE).await else {
            break Err(ColdStartError::Silent(PATIENCE));
        };
        let ms = (report.at - started).as_secs_f64() * 1000.0;
        match report.route {
            Route::Next => init_ms = init_ms.or(Some(ms)),
            Route::Response(_) => {
                // Read before the kill: the peak is the process's own, first event included.
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
                break match vm_hwm_kib(&status) {
                    Some(peak_rss_kib) => Ok(ColdStart {
                        init_ms: init_ms.unwrap_or(ms),
                        first_event_ms: ms,
                        peak_rss_kib,
                        rss_anon_kib: status_kib(&status, "RssAnon").unwrap_or(0),
                        rss_file_kib: status_kib(&status, "RssFile").unwrap_or(0),
                        response: report.body,
                    }),
                    None => Err(ColdStartError::NoPeakRss(pid)),
                };
            }
            route @ (Route::Error(_) | Route::InitError) => {
                break Err(ColdStartError::Failed {
                    route,
                    body: report.body,
                })
            }
            Route::Unknown => {}
        }
    };
    child.kill().await?;
    result
}

/// The `VmHWM` (peak resident set) of a `/proc/PID/status` text, in KiB.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status_kib(status, "VmHWM")
}

/// The `field` (a line `field:   123 kB`) of a `/proc/PID/status` text, in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let mut words = line[field.len() + 1..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

/// An SQS event as the event source mapping delivers it to a Lambda: one record per body, each
/// on its first receive, from the queue `queue_arn`.
pub fn sqs_event(queue_arn: &str, bodies: &[String]) -> serde_json::Value {
    let region = queue_arn.split(':').nth(3).unwrap_or("eu-west-1");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
        .to_string();
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .map(|body| {
            serde_json::json!({
                "messageId": uuid::Uuid::new_v4().to_string(),
                "receiptHandle": format!("coldstart-{}", uuid::Uuid::new_v4().simple()),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_resident_set_is_read_from_proc_status() {
        let status = "Name:\tcurfew-worker\nVmPeak:\t  123456 kB\nVmHWM:\t   14336 kB\nVmRSS:\t   14000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(14336));
        assert_eq!(vm_hwm_kib("Name:\tx\nVmRSS:\t 1 kB\n"), None);
        assert_eq!(vm_hwm_kib("VmHWM:\t 12 MB\n"), None, "only kB is known");
    }

    #[test]
    fn the_anonymous_and_file_backed_resident_pages_are_read_by_their_field_name() {
        let status = "RssAnon:\t    9000 kB\nRssFile:\t   11000 kB\nRssShmem:\t       0 kB\n";
        assert_eq!(status_kib(status, "RssAnon"), Some(9000));
        assert_eq!(status_kib(status, "RssFile"), Some(11000));
        assert_eq!(
            status_kib(status, "Rss"),
            None,
            "a field's name, not a prefix of one"
        );
    }

    #[test]
    fn a_built_sqs_event_is_read_by_the_lambdas_as_deliveries_of_its_bodies() {
        let bodies = vec![
            r#"{"op_id":"a"}"#.to_string(),
            r#"{"op_id":"b"}"#.to_string(),
        ];
        let event = sqs_event("arn:aws:sqs:eu-west-1:123456789012:tasks", &bodies);
        let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(event).unwrap();
        let deliveries = curfew_aws::lambda::sqs_deliveries(&event);
        let read: Vec<(&str, u32)> = deliveries
            .iter()
            .map(|d| (d.body.as_str(), d.receive_count))
            .collect();
        assert_eq!(read, [(bodies[0].as_str(), 1), (bodies[1].as_str(), 1)]);
        assert_eq!(event.records[0].aws_region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[30.0, 10.0, 20.0]), Some(20.0));
        assert_eq!(median(&[40.0, 10.0, 30.0, 20.0]), Some(25.0));
    }
}
