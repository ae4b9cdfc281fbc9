//! Reading a queue for `curfew health`: its depth, and its dead-letter queue's, found from the
//! queue's own `RedrivePolicy` (deadLetterTargetArn -> GetQueueUrl with the ARN's account).

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use curfew_core::health::{DeadLetters, QueueDepth, QueueInspector, QueueReading};
use curfew_core::ports::{ErrorKind, PortError, PortResult};
use std::collections::HashMap;

use crate::error::{classify, retrying};

/// The depth attributes, as GetQueueAttributes names them.
const DEPTH: [QueueAttributeName; 3] = [
    QueueAttributeName::ApproximateNumberOfMessages,
    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
];

/// Reads SQS queues' depths and redrive policies.
#[derive(Clone, Debug)]
pub struct SqsQueueInspector {
    client: Client,
}

impl SqsQueueInspector {
    /// An inspector over `client`.
    pub fn new(client: Client) -> Self {
        SqsQueueInspector { client }
    }

    async fn attributes(
        &self,
        url: &str,
        names: &[QueueAttributeName],
    ) -> PortResult<HashMap<QueueAttributeName, String>> {
        retrying(|| async {
            self.client
                .get_queue_attributes()
                .queue_url(url)
                .set_attribute_names(Some(names.to_vec()))
                .send()
                .await
                .map(|out| out.attributes.unwrap_or_default())
                .map_err(|e| classify(&format!("reading the attributes of queue {url}"), e))
        })
        .await
    }

    /// The URL of the queue `arn` names, or `None` when no such queue exists.
    async fn queue_url(&self, arn: &QueueArn<'_>) -> PortResult<Option<String>> {
        let result = retrying(|| async {
            self.client
                .get_queue_url()
                .queue_name(arn.name)
                .queue_owner_aws_account_id(arn.account)
                .send()
                .await
                .map_err(|e| {
                    // The typed error, not only its code: SQS answers a missing queue with
                    // either `QueueDoesNotExist` or the older `AWS.SimpleQueueService.NonExistentQueue`.
                    let missing = e
                        .as_service_error()
                        .is_some_and(|s| s.is_queue_does_not_exist());
                    let mut e = classify(&format!("finding the queue {}", arn.arn), e);
                    if missing {
                        e.kind = ErrorKind::NotFound;
                    }
                    e
                })
        })
        .await;
        match result {
            Ok(out) => Ok(out.queue_url),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl QueueInspector for SqsQueueInspector {
    async fn inspect(&self, url: &str) -> PortResult<QueueReading> {
        let mut names = DEPTH.to_vec();
        names.push(QueueAttributeName::RedrivePolicy);
        let attributes = self.attributes(url, &names).await?;
        let dead_letters = match attributes.get(&QueueAttributeName::RedrivePolicy) {
            None => DeadLetters::NoRedrivePolicy,
            Some(policy) => {
                let policy = RedrivePolicy::parse(policy).map_err(|problem| {
                    PortError::new(
                        ErrorKind::Invalid,
                        format!("queue {url}: its RedrivePolicy {policy:?} {problem}"),
                    )
                })?;
                let arn = QueueArn::parse(&policy.dead_letter_target_arn).ok_or_else(|| {
                    PortError::new(
                        ErrorKind::Invalid,
                        format!(
                            "queue {url}: its RedrivePolicy's deadLetterTargetArn {:?} is not an \
                             SQS queue ARN",
                            policy.dead_letter_target_arn
                        ),
                    )
                })?;
                match self.queue_url(&arn).await? {
                    None => DeadLetters::Missing {
                        arn: policy.dead_letter_target_arn.clone(),
                        problem: "no such queue (QueueDoesNotExist)".to_string(),
                    },
                    Some(dlq_url) => {
                        let dlq = self.attributes(&dlq_url, &DEPTH).await?;
                        DeadLetters::Queue {
                            url: dlq_url,
                            depth: depth(&dlq),
                            max_receives: policy.max_receive_count,
                        }
                    }
                }
            }
        };
        Ok(QueueReading {
            url: url.to_string(),
            depth: depth(&attributes),
            dead_letters,
        })
    }
}

/// The depth from the attributes read; a count SQS left out (or garbled) reads as zero.
fn depth(attributes: &HashMap<QueueAttributeName, String>) -> QueueDepth {
    let count = |name: &QueueAttributeName| {
        attributes
            .get(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    QueueDepth {
        visible: count(&QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: count(&QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    }
}

/// A queue's `RedrivePolicy` attribute: a JSON document.
#[derive(Debug, PartialEq, Eq)]
struct RedrivePolicy {
    dead_letter_target_arn: String,
    max_receive_count: Option<u32>,
}

impl RedrivePolicy {
    fn parse(policy: &str) -> Result<RedrivePolicy, String> {
        let value: serde_json::Value =
            serde_json::from_str(policy).map_err(|e| format!("is not JSON ({e})"))?;
        let arn = value["deadLetterTargetArn"]
            .as_str()
            .ok_or("has no deadLetterTargetArn")?;
        // SQS documents maxReceiveCount as a number; some writers (and emulators) store it as
        // a string of digits.
        let max = &value["maxReceiveCount"];
        let max_receive_count = max
            .as_u64()
            .or_else(|| max.as_str().and_then(|s| s.trim().parse().ok()))
            .and_then(|n| u32::try_from(n).ok());
        Ok(RedrivePolicy {
            dead_letter_target_arn: arn.to_string(),
            max_receive_count,
        })
    }
}

/// `arn:PARTITION:sqs:REGION:ACCOUNT:NAME`.
#[derive(Debug, PartialEq, Eq)]
struct QueueArn<'a> {
    arn: &'a str,
    account: &'a str,
    name: &'a str,
}

impl<'a> QueueArn<'a> {
    fn parse(arn: &'a str) -> Option<QueueArn<'a>> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", partition, "sqs", _region, account, name]
                if partition.starts_with("aws")
                    && !account.is_empty()
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && !name.is_empty() =>
            {
                Some(QueueArn { arn, account, name })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::operation::get_queue_url::{GetQueueUrlError, GetQueueUrlOutput};
    use aws_sdk_sqs::types::error::QueueDoesNotExist;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    const POLICY: &str = r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:hub-tasks-dlq","maxReceiveCount":5}"#;

    fn queue_attributes() -> GetQueueAttributesOutput {
        GetQueueAttributesOutput::builder()
            .attributes(QueueAttributeName::ApproximateNumberOfMessages, "7")
            .attributes(
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                "2",
            )
            .attributes(QueueAttributeName::ApproximateNumberOfMessagesDelayed, "0")
            .attributes(QueueAttributeName::RedrivePolicy, POLICY)
            .build()
    }

    #[tokio::test]
    async fn the_dead_letter_queue_is_found_from_the_redrive_policy_and_counted() {
        let source = mock!(Client::get_queue_attributes)
            .match_requests(|r| {
                r.queue_url() == Some("https://sqs/hub-tasks")
                    && r.attribute_names()
                        .contains(&QueueAttributeName::RedrivePolicy)
                    && r.attribute_names()
                        .contains(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            })
            .then_output(queue_attributes);
        let lookup = mock!(Client::get_queue_url)
            .match_requests(|r| {
                r.queue_name() == Some("hub-tasks-dlq")
                    && r.queue_owner_aws_account_id() == Some("123456789012")
            })
            .then_output(|| {
                GetQueueUrlOutput::builder()
                    .queue_url("https://sqs/hub-tasks-dlq")
                    .build()
            });
        let dlq = mock!(Client::get_queue_attributes)
            .match_requests(|r| {
                r.queue_url() == Some("https://sqs/hub-tasks-dlq")
                    && !r
                        .attribute_names()
                        .contains(&QueueAttributeName::RedrivePolicy)
            })
            .then_output(|| {
                GetQueueAttributesOutput::builder()
                    .attributes(QueueAttributeName::ApproximateNumberOfMessages, "1")
                    .attributes(
                        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                        "1",
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&source, &lookup, &dlq]);

        let reading = SqsQueueInspector::new(client)
            .inspect("https://sqs/hub-tasks")
            .await
            .unwrap();

        assert_eq!(
            reading,
            QueueReading {
                url: "https://sqs/hub-tasks".into(),
                depth: QueueDepth {
                    visible: 7,
                    in_flight: 2,
                    delayed: 0
                },
                dead_letters: DeadLetters::Queue {
                    url: "https://sqs/hub-tasks-dlq".into(),
                    depth: QueueDepth {
                        visible: 1,
                        in_flight: 1,
                        delayed: 0
                    },
                    max_receives: Some(5),
                },
            }
        );
        assert_eq!(
            (source.num_calls(), lookup.num_calls(), dlq.num_calls()),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn a_queue_without_a_redrive_policy_reads_as_such_and_looks_nothing_up() {
        let source = mock!(Client::get_queue_attributes).then_output(|| {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::ApproximateNumberOfMessages, "0")
                .build()
        });
        let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&source]);
        let reading = SqsQueueInspector::new(client)
            .inspect("https://sqs/q")
            .await
            .unwrap();
        assert_eq!(reading.dead_letters, DeadLetters::NoRedrivePolicy);
        assert_eq!(source.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_redrive_policy_naming_a_queue_that_does_not_exist_reads_as_missing() {
        let source = mock!(Client::get_queue_attributes).then_output(queue_attributes);
        let lookup = mock!(Client::get_queue_url).then_error(|| {
            GetQueueUrlError::QueueDoesNotExist(
                QueueDoesNotExist::builder()
                    .message("The specified queue does not exist.")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&source, &lookup]);
        let reading = SqsQueueInspector::new(client)
            .inspect("https://sqs/hub-tasks")
            .await
            .unwrap();
        assert_eq!(
            reading.dead_letters,
            DeadLetters::Missing {
                arn: "arn:aws:sqs:eu-west-1:123456789012:hub-tasks-dlq".into(),
                problem: "no such queue (QueueDoesNotExist)".into(),
            }
        );
    }

    #[test]
    fn a_redrive_policy_reads_its_arn_and_max_receives_as_number_or_string() {
        assert_eq!(
            RedrivePolicy::parse(POLICY),
            Ok(RedrivePolicy {
                dead_letter_target_arn: "arn:aws:sqs:eu-west-1:123456789012:hub-tasks-dlq".into(),
                max_receive_count: Some(5),
            })
        );
        let quoted = r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:q","maxReceiveCount":"10"}"#;
        assert_eq!(
            RedrivePolicy::parse(quoted).unwrap().max_receive_count,
            Some(10)
        );
        assert!(RedrivePolicy::parse("{}").is_err());
        assert!(RedrivePolicy::parse("nope").is_err());
    }

    #[test]
    fn a_queue_arn_names_its_account_and_queue() {
        assert_eq!(
            QueueArn::parse("arn:aws:sqs:eu-west-1:123456789012:hub-tasks-dlq"),
            Some(QueueArn {
                arn: "arn:aws:sqs:eu-west-1:123456789012:hub-tasks-dlq",
                account: "123456789012",
                name: "hub-tasks-dlq",
            })
        );
        assert_eq!(QueueArn::parse("arn:aws:sns:eu-west-1:1:topic"), None);
        assert_eq!(QueueArn::parse("arn:aws:sqs:eu-west-1:abc:q"), None);
        assert_eq!(QueueArn::parse("hub-tasks-dlq"), None);
    }
}
