//! The notification topic: each [`Notice`] published to SNS with its subject line as the
//! subject, its JSON as the message, and its kind as the `notice_type` message attribute (so a
//! subscription can filter on it). Errors are classified like every other service's.

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use curfew_core::notice::{Notice, Notifier};
use curfew_core::ports::{ErrorKind, PortError, PortResult};

use crate::error::{classify, retrying};

/// The message attribute naming a notice's kind (its JSON `"type"`).
pub const NOTICE_TYPE_ATTRIBUTE: &str = "notice_type";

/// One SNS topic.
#[derive(Clone, Debug)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    /// Publishes to `topic_arn`.
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        SnsNotifier {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    /// The topic.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, notice: &Notice) -> PortResult<()> {
        let kind = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(notice.kind())
            .build()
            .map_err(|e| PortError::with_source(ErrorKind::Invalid, "building a notice", e))?;
        let subject = notice.subject();
        let message = notice.to_json();
        retrying(|| async {
            self.client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(&subject)
                .message(&message)
                .message_attributes(NOTICE_TYPE_ATTRIBUTE, kind.clone())
                .send()
                .await
                .map_err(|e| classify(&format!("publishing to {}", self.topic_arn), e))
        })
        .await?;
        Ok(())
    }
}

/// Creates the topic `name` (idempotent: SNS returns the existing topic's ARN) and returns its
/// ARN. Local mode and tests; in AWS the hub stack owns the topic.
pub async fn create_topic(client: &Client, name: &str) -> PortResult<String> {
    let out = client
        .create_topic()
        .name(name)
        .send()
        .await
        .map_err(|e| classify(&format!("creating topic {name}"), e))?;
    out.topic_arn
        .ok_or_else(|| PortError::new(ErrorKind::Other, format!("topic {name} has no ARN")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sns::operation::publish::{PublishError, PublishOutput};
    use aws_sdk_sns::types::error::AuthorizationErrorException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;
    use curfew_core::notice::DeadLettered;

    const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:curfew-notices";

    fn notice() -> Notice {
        Notice::DeadLettered(DeadLettered {
            operation_id: "20270104T1800Z-dev-stop".into(),
            target: "111111111111#eu-west-1#asg#web".into(),
            reason: "dead-lettered after 5 receives; the last was waiting: throttled".into(),
            at: chrono::Utc.with_ymd_and_hms(2027, 1, 4, 18, 30, 0).unwrap(),
        })
    }

    #[tokio::test]
    async fn a_notice_reaches_the_topic_with_its_subject_json_and_kind() {
        let publish = mock!(aws_sdk_sns::Client::publish)
            .match_requests(|r| {
                r.topic_arn() == Some(TOPIC)
                    && r.subject()
                        == Some("curfew: task dead-lettered: 111111111111#eu-west-1#asg#web")
                    && r.message().and_then(|m| Notice::from_json(m).ok()) == Some(notice())
                    && r.message_attributes()
                        .and_then(|a| a.get(NOTICE_TYPE_ATTRIBUTE))
                        .and_then(|v| v.string_value())
                        == Some("dead_lettered")
            })
            .then_output(|| PublishOutput::builder().message_id("m-1").build());
        let client = mock_client!(aws_sdk_sns, [&publish]);
        SnsNotifier::new(client, TOPIC)
            .publish(&notice())
            .await
            .unwrap();
        assert_eq!(publish.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_refused_publish_is_an_access_denied_error_naming_the_topic() {
        let refused = mock!(aws_sdk_sns::Client::publish).then_error(|| {
            PublishError::AuthorizationErrorException(
                AuthorizationErrorException::builder()
                    .message("not authorized to perform SNS:Publish")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("AuthorizationError")
                            .message("not authorized to perform SNS:Publish")
                            .build(),
                    )
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&refused]);
        let e = SnsNotifier::new(client, TOPIC)
            .publish(&notice())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied);
        assert!(e.message.contains(TOPIC), "{}", e.message);
        assert_eq!(refused.num_calls(), 1, "not retried");
    }
}
