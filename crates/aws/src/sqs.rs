//! SQS queues: SendMessageBatch, 10 messages a call, failed entries retried with backoff.

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    MessageSystemAttributeNameForSends, MessageSystemAttributeValue, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use backon::BackoffBuilder;
use curfew_core::ports::{ErrorKind, PortError, PortResult, Queue};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::error::{backoff, classify, retrying};

/// The X-Ray trace header of the invocation being handled: the Lambda runtime sets
/// `_X_AMZN_TRACE_ID` for each event (with active tracing on). `None` outside Lambda.
fn trace_header() -> Option<String> {
    std::env::var("_X_AMZN_TRACE_ID")
        .ok()
        .filter(|t| !t.trim().is_empty())
}

/// The batch's entries: each carries its tenant as `MessageGroupId` and, within a traced
/// invocation, its trace header as the `AWSTraceHeader` system attribute, so the worker's
/// invocation continues the router's trace (Lambda links an SQS-triggered invocation to the
/// trace in the message).
fn entries(
    pending: &[(usize, &String)],
    tenant: Option<&str>,
    trace: Option<&str>,
) -> PortResult<Vec<SendMessageBatchRequestEntry>> {
    let building = |e| PortError::with_source(ErrorKind::Invalid, "building a message", e);
    let trace = trace
        .map(|t| {
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(t)
                .build()
                .map_err(building)
        })
        .transpose()?;
    pending
        .iter()
        .map(|(i, body)| {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body.as_str())
                .set_message_group_id(tenant.map(str::to_string));
            let entry = match &trace {
                Some(t) => entry.message_system_attributes(
                    MessageSystemAttributeNameForSends::AwsTraceHeader,
                    t.clone(),
                ),
                None => entry,
            };
            entry.build().map_err(building)
        })
        .collect()
}

/// One SQS queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// A queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn send_batch(&self, tenant: Option<&str>, batch: &[String]) -> PortResult<()> {
        let mut pending: Vec<(usize, &String)> = batch.iter().enumerate().collect();
        let mut delays = backoff().build();
        let trace = trace_header();
        loop {
            let entries = entries(&pending, tenant, trace.as_deref())?;
            let out = retrying(|| async {
                self.client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries.clone()))
                    .send()
                    .await
                    .map_err(|e| classify("sending to SQS", e))
            })
            .await?;
            let failed: Vec<String> = out.failed.iter().map(|f| f.id.clone()).collect();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(sender_fault) = out.failed.iter().find(|f| f.sender_fault) {
                return Err(PortError::new(
                    ErrorKind::Invalid,
                    format!(
                        "SQS rejected a message: {} {}",
                        sender_fault.code,
                        sender_fault.message.as_deref().unwrap_or("")
                    ),
                ));
            }
            pending.retain(|(i, _)| failed.contains(&i.to_string()));
            match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => {
                    return Err(PortError::new(
                        ErrorKind::Throttled,
                        format!(
                            "{} messages could not be sent to SQS after retries",
                            pending.len()
                        ),
                    ))
                }
            }
        }
    }
}

/// The most messages SQS takes in one SendMessageBatch call (and hands over in one receive).
pub const MAX_BATCH: usize = 10;

/// SendMessageBatch calls one send makes at once (a shard of 1,000 targets is 100 calls).
pub const SEND_CONCURRENCY: usize = 8;

/// A message's receive count, from SQS's `ApproximateReceiveCount` attribute. A missing or
/// unreadable count is taken as a first receive: the worker never gives a task up on a count
/// it cannot read (its message is left for a retry, and SQS still dead-letters it in time).
pub fn receive_count(attribute: Option<&str>) -> u32 {
    attribute
        .and_then(|count| count.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, bodies: &[String]) -> PortResult<()> {
        self.send_all(None, bodies).await
    }

    async fn send_as(&self, tenant: &str, bodies: &[String]) -> PortResult<()> {
        self.send_all(Some(tenant), bodies).await
    }
}

/// The most bytes of message bodies one SendMessageBatch call carries: SQS refuses a call
/// whose messages add up to more than 256 KiB, and the router's task chunks are up to
/// 200 KiB each ([`curfew_core::chunk::MAX_CHUNK_BYTES`]). The rest of the limit is left to
/// the message attributes (the tenant, the trace header).
pub const MAX_BATCH_BYTES: usize = 240 * 1024;

/// `bodies` cut into SendMessageBatch calls of at most [`MAX_BATCH`] messages and
/// [`MAX_BATCH_BYTES`] bytes, in order (a body larger than that goes alone; SQS judges it).
pub fn batches(bodies: &[String]) -> Vec<&[String]> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        if i > start && (i - start == MAX_BATCH || bytes + body.len() > MAX_BATCH_BYTES) {
            calls.push(&bodies[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        calls.push(&bodies[start..]);
    }
    calls
}

impl SqsQueue {
    async fn send_all(&self, tenant: Option<&str>, bodies: &[String]) -> PortResult<()> {
        let sends: Vec<_> = batches(bodies)
            .into_iter()
            .map(|batch| self.send_batch(tenant, batch))
            .collect();
        stream::iter(sends)
            .buffer_unordered(SEND_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
    use aws_sdk_sqs::types::SendMessageBatchResultEntry;
    use aws_smithy_mocks::{mock, mock_client};

    #[test]
    fn an_unreadable_receive_count_counts_as_a_first_receive() {
        assert_eq!(receive_count(Some("5")), 5);
        assert_eq!(receive_count(Some("many")), 1);
        assert_eq!(receive_count(Some("0")), 1);
        assert_eq!(receive_count(None), 1);
    }

    #[tokio::test]
    async fn messages_go_out_in_batches_of_ten() {
        let rule = mock!(Client::send_message_batch)
            .match_requests(|r| r.entries().len() <= 10 && r.queue_url() == Some("https://q"))
            .sequence()
            .output(|| {
                SendMessageBatchOutput::builder()
                    .set_successful(Some(vec![SendMessageBatchResultEntry::builder()
                        .id("0")
                        .message_id("m")
                        .md5_of_message_body("x")
                        .build()
                        .unwrap()]))
                    .set_failed(Some(vec![]))
                    .build()
                    .unwrap()
            })
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_sqs, [&rule]);
        let queue = SqsQueue::new(client, "https://q");
        let bodies: Vec<String> = (0..25).map(|i| format!("{{\"n\":{i}}}")).collect();
        queue.send(&bodies).await.unwrap();
        assert_eq!(rule.num_calls(), 3);
    }

    #[test]
    fn batches_hold_ten_messages_and_at_most_240_kib() {
        let small: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let chunk = "x".repeat(100 * 1024);
        let large = vec![
            chunk.clone(),
            chunk.clone(),
            chunk.clone(),
            "y".repeat(300 * 1024),
        ];
        let sizes: Vec<usize> = batches(&large).iter().map(|b| b.len()).collect();
        assert_eq!(
            sizes,
            [2, 1, 1],
            "two 100 KiB bodies fit, a third does not; 300 KiB goes alone"
        );
        assert!(batches(&[]).is_empty());
    }

    /// A SendMessageBatch answer with no failed entry.
    fn all_sent() -> SendMessageBatchOutput {
        SendMessageBatchOutput::builder()
            .set_successful(Some(vec![]))
            .set_failed(Some(vec![]))
            .build()
            .unwrap()
    }

    #[test]
    fn every_entry_of_a_traced_invocation_carries_its_trace_header_and_untraced_ones_none() {
        let (a, b) = ("a".to_string(), "b".to_string());
        let pending = [(0, &a), (1, &b)];
        let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let traced = entries(&pending, Some("111122223333"), Some(trace)).unwrap();
        for entry in &traced {
            let header = entry
                .message_system_attributes()
                .and_then(|m| m.get(&MessageSystemAttributeNameForSends::AwsTraceHeader))
                .and_then(|v| v.string_value());
            assert_eq!(header, Some(trace));
            assert_eq!(entry.message_group_id(), Some("111122223333"));
        }
        let plain = entries(&pending, None, None).unwrap();
        assert!(plain
            .iter()
            .all(|e| e.message_system_attributes().is_none()));
    }

    #[tokio::test]
    async fn a_tenants_messages_carry_its_message_group_id_and_plain_sends_none() {
        let grouped = mock!(Client::send_message_batch)
            .match_requests(|r| {
                r.entries()
                    .iter()
                    .all(|e| e.message_group_id() == Some("111122223333"))
            })
            .sequence()
            .output(all_sent)
            .repeatedly()
            .build();
        let plain = mock!(Client::send_message_batch)
            .match_requests(|r| r.entries().iter().all(|e| e.message_group_id().is_none()))
            .sequence()
            .output(all_sent)
            .repeatedly()
            .build();
        let client = mock_client!(
            aws_sdk_sqs,
            aws_smithy_mocks::RuleMode::MatchAny,
            [&grouped, &plain]
        );
        let queue = SqsQueue::new(client, "https://q");
        let bodies: Vec<String> = (0..12).map(|i| format!("{{\"n\":{i}}}")).collect();
        queue.send_as("111122223333", &bodies).await.unwrap();
        assert_eq!(grouped.num_calls(), 2);
        assert_eq!(plain.num_calls(), 0);
        queue.send(&bodies[..3]).await.unwrap();
        assert_eq!(plain.num_calls(), 1);
        assert_eq!(grouped.num_calls(), 2);
    }
}
