//! The task dead-letter queue on SQS ([`DeadLetterQueue`]). SQS has no way to look at a message
//! without receiving it, so a listing receives each message with a short visibility timeout
//! (other readers cannot see it meanwhile) and makes every message it read visible again as
//! soon as it is done; nothing is deleted. A move receives a batch, and the mover deletes it
//! once it is sent on.

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use aws_sdk_sqs::Client;
use curfew_core::ports::{DeadLetter, DeadLetterQueue, ErrorKind, PortError, PortResult};

use crate::error::{classify, retrying};
use crate::sqs::{receive_count, MAX_BATCH};

/// How long a listing keeps each message it read hidden: long enough that the listing does
/// not read it twice; the listing makes it visible again when it ends (or, if it dies, SQS
/// does when this passes).
pub const PEEK_VISIBILITY_SECONDS: i32 = 30;

/// How long a move keeps a received batch hidden while it sends the batch on and deletes it.
pub const MOVE_VISIBILITY_SECONDS: i32 = 60;

/// Long polling for a second asks every SQS server, so an empty answer means an empty queue
/// (short polling samples a subset and may answer empty while messages wait).
const WAIT_SECONDS: i32 = 1;

/// A dead-letter queue on SQS.
#[derive(Clone, Debug)]
pub struct SqsDeadLetters {
    client: Client,
    url: String,
}

impl SqsDeadLetters {
    /// The dead-letter queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsDeadLetters {
            client,
            url: url.into(),
        }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn receive_batch(&self, max: usize, visibility: i32) -> PortResult<Vec<DeadLetter>> {
        let max = max.clamp(1, MAX_BATCH) as i32;
        let out = retrying(|| async {
            self.client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(max)
                .visibility_timeout(visibility)
                .wait_time_seconds(WAIT_SECONDS)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(|e| classify("receiving from the dead-letter queue", e))
        })
        .await?;
        Ok(out
            .messages
            .unwrap_or_default()
            .iter()
            .map(letter)
            .collect())
    }

    /// Makes received messages visible again at once.
    async fn release(&self, letters: &[DeadLetter]) -> PortResult<()> {
        for chunk in letters.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&l.receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| {
                            PortError::with_source(ErrorKind::Invalid, "building a release", e)
                        })
                })
                .collect::<PortResult<Vec<_>>>()?;
            let out = retrying(|| async {
                self.client
                    .change_message_visibility_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries.clone()))
                    .send()
                    .await
                    .map_err(|e| classify("making dead letters visible again", e))
            })
            .await?;
            failed_entries("making dead letters visible again", &out.failed)?;
        }
        Ok(())
    }
}

fn letter(m: &Message) -> DeadLetter {
    DeadLetter {
        message_id: m.message_id().unwrap_or_default().to_string(),
        receipt: m.receipt_handle().unwrap_or_default().to_string(),
        body: m.body().unwrap_or_default().to_string(),
        receive_count: receive_count(
            m.attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .map(String::as_str),
        ),
    }
}

/// An error for the first failed entry of a batch call, except a stale receipt handle (the
/// message was received anew meanwhile, or is gone: nothing left to do for this receipt).
fn failed_entries(
    what: &str,
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> PortResult<()> {
    match failed.iter().find(|f| f.code != "ReceiptHandleIsInvalid") {
        None => Ok(()),
        Some(f) => Err(PortError::new(
            ErrorKind::Other,
            format!("{what}: {} {}", f.code, f.message.as_deref().unwrap_or("")),
        )),
    }
}

#[async_trait]
impl DeadLetterQueue for SqsDeadLetters {
    async fn peek(&self, limit: usize) -> PortResult<Vec<DeadLetter>> {
        let mut read: Vec<DeadLetter> = Vec::new();
        let mut held: Vec<DeadLetter> = Vec::new();
        let result = async {
            while read.len() < limit {
                let batch = self
                    .receive_batch(limit - read.len(), PEEK_VISIBILITY_SECONDS)
                    .await?;
                if batch.is_empty() {
                    break;
                }
                for letter in batch {
                    // Read again only if this listing outlasted the visibility timeout.
                    if !read.iter().any(|r| r.message_id == letter.message_id) {
                        read.push(letter.clone());
                    }
                    held.push(letter);
                }
            }
            Ok::<(), PortError>(())
        }
        .await;
        // Visible again whether the listing finished or failed half-way.
        let released = self.release(&held).await;
        result?;
        released?;
        Ok(read)
    }

    async fn receive(&self) -> PortResult<Vec<DeadLetter>> {
        self.receive_batch(MAX_BATCH, MOVE_VISIBILITY_SECONDS).await
    }

    async fn delete(&self, letters: &[DeadLetter]) -> PortResult<()> {
        for chunk in letters.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&l.receipt)
                        .build()
                        .map_err(|e| {
                            PortError::with_source(ErrorKind::Invalid, "building a delete", e)
                        })
                })
                .collect::<PortResult<Vec<_>>>()?;
            let out = retrying(|| async {
                self.client
                    .delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries.clone()))
                    .send()
                    .await
                    .map_err(|e| classify("deleting dead letters", e))
            })
            .await?;
            failed_entries("deleting dead letters", &out.failed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchOutput;
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn message(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body("{}")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "6")
            .build()
    }

    #[tokio::test]
    async fn a_listing_reads_with_a_short_visibility_timeout_and_makes_every_message_visible_again()
    {
        let first = mock!(Client::receive_message)
            .match_requests(|r| {
                r.visibility_timeout() == Some(PEEK_VISIBILITY_SECONDS)
                    && r.wait_time_seconds() == Some(WAIT_SECONDS)
                    && r.message_system_attribute_names()
                        .contains(&MessageSystemAttributeName::ApproximateReceiveCount)
            })
            .then_output(|| {
                ReceiveMessageOutput::builder()
                    .messages(message("a"))
                    .messages(message("b"))
                    .build()
            });
        let empty =
            mock!(Client::receive_message).then_output(|| ReceiveMessageOutput::builder().build());
        let release = mock!(Client::change_message_visibility_batch)
            .match_requests(|r| {
                let handles: Vec<&str> = r.entries().iter().map(|e| e.receipt_handle()).collect();
                handles == ["rh-a", "rh-b"]
                    && r.entries()
                        .iter()
                        .all(|e| e.visibility_timeout() == Some(0))
            })
            .then_output(|| {
                ChangeMessageVisibilityBatchOutput::builder()
                    .set_successful(Some(vec![]))
                    .set_failed(Some(vec![]))
                    .build()
                    .unwrap()
            });
        let client = mock_client!(
            aws_sdk_sqs,
            RuleMode::Sequential,
            [&first, &empty, &release]
        );
        let dlq = SqsDeadLetters::new(client, "https://dlq");

        let letters = dlq.peek(100).await.unwrap();

        let ids: Vec<(&str, u32)> = letters
            .iter()
            .map(|l| (l.message_id.as_str(), l.receive_count))
            .collect();
        assert_eq!(ids, [("a", 6), ("b", 6)]);
        assert_eq!(release.num_calls(), 1, "nothing left hidden");
    }
}
