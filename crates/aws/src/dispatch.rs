//! The local dispatcher: stands in for the SQS event source mappings when curfew runs against
//! an emulator. It drains the router and task queues through the same batch handlers the
//! Lambdas use, with at most `max_concurrency` worker batches at once (the mapping's maximum
//! concurrency).

use std::time::Duration;

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;
use curfew_core::ports::{ErrorKind, PortError, PortResult};
use curfew_core::service::{
    router_batch, worker_batch, BatchOutcome, Delivery, Hub, TASK_BATCH_SIZE,
};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::error::classify;

/// Totals of one drain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Router messages handled successfully.
    pub router_messages: usize,
    /// Task messages (chunks of up to a hundred targets of one account) handled successfully
    /// (counting duplicate deliveries).
    pub task_messages: usize,
    /// Deliveries left on a queue for a retry.
    pub retries: usize,
    /// Task deliveries whose task was dead-lettered on the message's last receive (also in
    /// `retries`: SQS moves the message to the task dead-letter queue on its next receive).
    pub dead_lettered: usize,
    /// Messages rejected as malformed or unknown, with the cause.
    pub rejected: Vec<String>,
}

/// Drains a hub's queues through the real handlers.
pub struct Dispatcher {
    hub: Hub,
    sqs: Client,
    router_url: String,
    task_url: String,
    /// Worker batches in flight at once.
    pub max_concurrency: usize,
    /// Deliver every task message twice (tests at-least-once delivery).
    pub duplicate_deliveries: bool,
    /// Work the task queue too (false: route only, leaving task messages queued).
    pub work_tasks: bool,
}

impl Dispatcher {
    /// A dispatcher for `hub`'s queues.
    pub fn new(
        hub: Hub,
        sqs: Client,
        router_url: &str,
        task_url: &str,
        max_concurrency: usize,
    ) -> Self {
        Dispatcher {
            hub,
            sqs,
            router_url: router_url.to_string(),
            task_url: task_url.to_string(),
            max_concurrency: max_concurrency.max(1),
            duplicate_deliveries: false,
            work_tasks: true,
        }
    }

    /// Up to `max` messages of `url`: the router's source takes ten, the worker's one chunk
    /// ([`curfew_core::service::TASK_BATCH_SIZE`]), as the hub's event source mappings do.
    async fn receive(&self, url: &str, max: usize) -> PortResult<Vec<Message>> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(0)
            // The worker gives a task up on its message's last receive, as the Lambda event
            // source mapping passes it in each record's attributes.
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .send()
            .await
            .map_err(|e| classify("receiving from SQS", e))?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn settle(
        &self,
        url: &str,
        messages: &[Message],
        outcome: &BatchOutcome,
    ) -> PortResult<usize> {
        let mut deletes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let id = m.message_id().unwrap_or_default();
            let handle = m.receipt_handle().unwrap_or_default();
            if outcome.failed.iter().any(|f| f == id) {
                // Back on the queue soon, as a Lambda partial batch failure would be after its
                // visibility timeout (shortened here so a local run does not stall).
                self.sqs
                    .change_message_visibility()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .visibility_timeout(1)
                    .send()
                    .await
                    .map_err(|e| classify("returning a message to SQS", e))?;
            } else {
                deletes.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| {
                            PortError::with_source(ErrorKind::Invalid, "building a delete", e)
                        })?,
                );
            }
        }
        if deletes.is_empty() {
            return Ok(0);
        }
        // A received batch holds at most 10 messages: one DeleteMessageBatch call settles it.
        let out = self
            .sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(deletes.clone()))
            .send()
            .await
            .map_err(|e| classify("deleting SQS messages", e))?;
        // A stale receipt handle means the message became visible again and was received anew
        // while we worked on it: that delivery is handled (idempotently) on its own.
        if let Some(f) = out
            .failed
            .iter()
            .find(|f| f.code != "ReceiptHandleIsInvalid")
        {
            return Err(PortError::new(
                ErrorKind::Other,
                format!(
                    "deleting an SQS message: {} {}",
                    f.code,
                    f.message.as_deref().unwrap_or("")
                ),
            ));
        }
        Ok(deletes.len() - out.failed.len())
    }

    async fn in_flight(&self, url: &str) -> PortResult<u64> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| classify("reading queue depth", e))?;
        let attrs = out.attributes.unwrap_or_default();
        Ok([
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|k| attrs.get(k)?.parse::<u64>().ok())
        .sum())
    }

    /// True when neither queue holds a message, visible or in flight, in two readings one
    /// after the other. One reading is not enough: the emulator counts visible and in-flight
    /// messages at two different instants, so a message whose visibility timeout ends between
    /// them is counted by neither (a drain once ended with a rejected message still on the
    /// task queue, before its move to the dead-letter queue). The second reading comes after
    /// that instant, so it sees the message as visible.
    async fn queues_empty(&self) -> PortResult<bool> {
        for _ in 0..2 {
            let waiting =
                self.in_flight(&self.router_url).await? + self.in_flight(&self.task_url).await?;
            if waiting > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn pairs(messages: &[Message]) -> Vec<(String, String)> {
        messages
            .iter()
            .map(|m| {
                (
                    m.message_id().unwrap_or_default().to_string(),
                    m.body().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn deliveries(messages: &[Message]) -> Vec<Delivery> {
        messages
            .iter()
            .map(|m| Delivery {
                message_id: m.message_id().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: crate::sqs::receive_count(
                    m.attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .map(String::as_str),
                ),
                trace_header: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
                    .cloned(),
            })
            .collect()
    }

    /// Runs until both queues are empty (nothing visible and nothing in flight).
    pub async fn drain(&self) -> PortResult<DrainReport> {
        let mut report = DrainReport::default();
        loop {
            let router_messages = self
                .receive(&self.router_url, crate::sqs::MAX_BATCH)
                .await?;
            if !router_messages.is_empty() {
                let outcome = router_batch(&self.hub, &Self::pairs(&router_messages)).await;
                report.router_messages += self
                    .settle(&self.router_url, &router_messages, &outcome)
                    .await?;
                report.retries += outcome.failed.len();
                report
                    .rejected
                    .extend(outcome.rejected.into_iter().map(|(_, c)| c));
                continue;
            }
            if !self.work_tasks {
                return Ok(report);
            }
            let worked = self.drain_tasks_once(&mut report).await?;
            if worked {
                continue;
            }
            if self.queues_empty().await? {
                return Ok(report);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Receives task batches until the task queue shows nothing visible, running up to
    /// `max_concurrency` batches at once. True if any message was received.
    async fn drain_tasks_once(&self, report: &mut DrainReport) -> PortResult<bool> {
        let mut running = FuturesUnordered::new();
        let mut received_any = false;
        let mut queue_empty = false;
        loop {
            while !queue_empty && running.len() < self.max_concurrency {
                let batch = self.receive(&self.task_url, TASK_BATCH_SIZE).await?;
                if batch.is_empty() {
                    queue_empty = true;
                    break;
                }
                received_any = true;
                running.push(async move {
                    let deliveries = Self::deliveries(&batch);
                    let mut outcome = worker_batch(&self.hub, &deliveries).await;
                    if self.duplicate_deliveries {
                        // The same messages again, as SQS may deliver them: the end state and
                        // the counts must not change.
                        let again = worker_batch(&self.hub, &deliveries).await;
                        let extra: Vec<String> = again
                            .failed
                            .into_iter()
                            .filter(|id| !outcome.failed.contains(id))
                            .collect();
                        outcome.failed.extend(extra);
                    }
                    (batch, outcome)
                });
            }
            match running.next().await {
                None => return Ok(received_any),
                Some((batch, outcome)) => {
                    let done = self.settle(&self.task_url, &batch, &outcome).await?;
                    report.task_messages += done * if self.duplicate_deliveries { 2 } else { 1 };
                    report.retries += outcome.failed.len();
                    report.dead_lettered += outcome.dead_lettered.len();
                    report
                        .rejected
                        .extend(outcome.rejected.into_iter().map(|(_, c)| c));
                }
            }
        }
    }
}
