//! The record of notices sent: one item per notice key, written only if absent, so of all
//! the deliveries that see one event (an operation's end, a refused role) one sends it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use curfew_core::notice::SentNotices;
use curfew_core::ports::PortResult;

use super::{n, s, DynamoStore, Item};

/// How long a notice's record is kept: longer than any redelivery of the messages that could
/// send it again (SQS keeps a message at most 14 days).
const KEPT_SECONDS: i64 = 30 * 86_400;

#[async_trait]
impl SentNotices for DynamoStore {
    async fn first_send(&self, key: &str, now: DateTime<Utc>) -> PortResult<bool> {
        let item = Item::from([
            ("sent_at".to_string(), s(now.to_rfc3339())),
            // The table's TTL attribute: DynamoDB removes the record some time after this.
            ("expires_at".to_string(), n(now.timestamp() + KEPT_SECONDS)),
        ]);
        self.put_new(item, &format!("NOTICE#{key}"), "NOTICE").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    #[tokio::test]
    async fn the_first_send_writes_the_key_if_absent_and_a_second_is_refused() {
        let first = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.item().and_then(|i| i.get("pk"))
                    == Some(&AttributeValue::S("NOTICE#operation_ended#op-1".into()))
                    && r.condition_expression() == Some("attribute_not_exists(pk)")
            })
            .then_output(|| PutItemOutput::builder().build());
        let again = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("ConditionalCheckFailedException")
                            .build(),
                    )
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&first, &again]);
        let store = DynamoStore::new(client, "curfew-state");
        let now = Utc::now();
        assert!(store.first_send("operation_ended#op-1", now).await.unwrap());
        assert!(!store.first_send("operation_ended#op-1", now).await.unwrap());
        assert_eq!((first.num_calls(), again.num_calls()), (1, 1));
    }
}
