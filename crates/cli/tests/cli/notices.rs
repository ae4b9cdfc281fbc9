//! Notices in local mode: with `CURFEW_NOTIFY_TOPIC_ARN` set (as `curfew local up` exports it),
//! the in-process router and worker publish what the Lambdas would.

use serde_json::Value;

use crate::common::{block_on, sdk, TestHub};

/// A topic of its own with a queue subscribed to it: (topic ARN, queue URL).
fn subscribed_queue(hub: &TestHub) -> (String, String) {
    block_on(async {
        let sdk = sdk(&hub.endpoint).await;
        let prefix = format!("{}-n", hub.config.table.trim_end_matches("-state"));
        let topic = curfew_aws::hub::provision_topic(&sdk, &prefix)
            .await
            .unwrap();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let url = sqs
            .create_queue()
            .queue_name(format!("{prefix}-inbox"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
            .remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .unwrap();
        aws_sdk_sns::Client::new(&sdk)
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(arn)
            .send()
            .await
            .unwrap();
        (topic, url)
    })
}

/// The SNS envelopes waiting on the queue.
fn received(hub: &TestHub, url: &str) -> Vec<Value> {
    block_on(async {
        let sdk = sdk(&hub.endpoint).await;
        let out = aws_sdk_sqs::Client::new(&sdk)
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        out.messages
            .unwrap_or_default()
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
            .collect()
    })
}

#[test]
fn a_local_stop_with_a_topic_publishes_the_operation_ended_notice_once() {
    let (hub, account) = TestHub::with_fleet(4, 0);
    let (topic, inbox) = subscribed_queue(&hub);
    let stop = {
        let out = hub
            .cmd()
            .env("CURFEW_NOTIFY_TOPIC_ARN", &topic)
            .args(["stop", "--select", &format!("account={account}"), "--wait"])
            .args(["--output", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let id = stop["operation"]["id"].as_str().unwrap();
    let envelopes = received(&hub, &inbox);
    assert_eq!(envelopes.len(), 1, "{envelopes:#?}");
    assert_eq!(
        envelopes[0]["Subject"],
        format!("curfew: stop {id} SUCCEEDED: 4 succeeded, 0 failed, 0 skipped of 4")
    );
    let notice: Value = serde_json::from_str(envelopes[0]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(notice["type"], "operation_ended");
    assert_eq!(notice["operation_id"], id);
    assert_eq!(
        (&notice["counts"]["total"], &notice["counts"]["succeeded"]),
        (&Value::from(4), &Value::from(4))
    );
    assert_eq!(stop["operation"]["status"], "SUCCEEDED");
    assert_eq!(
        envelopes[0]["MessageAttributes"]["notice_type"]["Value"],
        "operation_ended"
    );
}

#[test]
fn a_local_stop_without_a_topic_publishes_nothing() {
    let (hub, account) = TestHub::with_fleet(2, 0);
    let (_topic, inbox) = subscribed_queue(&hub);
    hub.json(&["stop", "--select", &format!("account={account}"), "--wait"]);
    assert_eq!(received(&hub, &inbox), Vec::<Value>::new());
}
