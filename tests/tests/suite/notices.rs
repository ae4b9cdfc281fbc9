//! Notices end to end on the moto emulator: an SQS queue subscribed to the notification topic
//! receives what a stop wave with a refused spoke role publishes, in the documented shape,
//! once each however often the wave's messages are delivered again.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use curfew_aws::local::demo_fleet;
use curfew_core::decision::Action;
use curfew_core::notice::Notice;
use curfew_core::operation::{OpStatus, TaskMessage, TaskStatus};
use curfew_core::ports::{ErrorKind, PortError, PortResult};
use curfew_tests::around::{AroundCall, AroundSpokes, InnerCall};
use curfew_tests::{spawn_hub, TestHub};
use serde_json::{json, Value};

const REGION: &str = "eu-west-1";

/// moto accepts any AssumeRole: this answers for one account what STS says to a role whose
/// trust policy does not name the hub, and passes every other call through.
struct DenyAccount(String);

#[async_trait]
impl AroundCall for DenyAccount {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        account: &'a str,
        _region: &'a str,
        call: &'a InnerCall<'a, T>,
    ) -> PortResult<T> {
        if account == self.0 {
            return Err(PortError::new(
                ErrorKind::AccessDenied,
                format!(
                    "assuming arn:aws:iam::{account}:role/curfew-spoke: AccessDenied: not \
                     authorized to perform sts:AssumeRole"
                ),
            ));
        }
        call().await
    }
}

/// A queue subscribed to a fresh topic, and the hub publishing its notices there.
struct Subscribed {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

async fn subscribe(t: &mut TestHub) -> Subscribed {
    let prefix = format!("n{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let topic = curfew_aws::hub::provision_topic(&t.sdk, &prefix)
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{prefix}-inbox"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap();
    aws_sdk_sns::Client::new(&t.sdk)
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .unwrap();
    t.hub.notices = curfew_aws::hub::notices(&t.sdk, &t.config.table, Some(&topic));
    Subscribed { sqs, queue_url }
}

impl Subscribed {
    /// Every SNS envelope waiting on the queue (subject, message and attributes as SQS
    /// subscribers receive them), deleted as read.
    async fn drain(&self) -> Vec<Value> {
        let mut envelopes = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return envelopes;
            }
            for m in messages {
                envelopes.push(serde_json::from_str(m.body().unwrap()).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

fn of_type<'a>(envelopes: &'a [Value], kind: &str) -> Vec<&'a Value> {
    envelopes
        .iter()
        .filter(|e| e["MessageAttributes"]["notice_type"]["Value"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_wave_with_a_refused_role_sends_one_denial_and_one_end_notice() {
    let mut t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 2).await;
    t.register_accounts(&[REGION]).await;
    let fleet = demo_fleet(&t.accounts, &[REGION.to_string()], 3, 0);
    t.seed(&fleet).await;
    let inbox = subscribe(&mut t).await;
    // A dry run caches the inventory while the role still works, so the refused account's
    // targets get tasks and the worker meets the refusal. Its end is told too.
    let rehearsal = t
        .run(json!({"action": "stop", "select": "kind=asg", "dry_run": true}))
        .await;
    let told = inbox.drain().await;
    assert_eq!(of_type(&told, "operation_ended").len(), 1, "{told:#?}");
    let message: Value = serde_json::from_str(told[0]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            &message["operation_id"],
            &message["dry_run"],
            &message["status"]
        ),
        (&json!(rehearsal.id), &json!(true), &json!("SUCCEEDED"))
    );
    let denied = t.accounts[1].clone();
    t.hub.spokes = std::sync::Arc::new(AroundSpokes::new(
        t.hub.spokes.clone(),
        DenyAccount(denied.clone()),
    ));

    let op = t.run(json!({"action": "stop", "select": "kind=asg"})).await;
    assert_eq!(op.status, OpStatus::Partial, "{op:?}");
    let envelopes = inbox.drain().await;
    assert_eq!(envelopes.len(), 2, "{envelopes:#?}");

    let denials = of_type(&envelopes, "spoke_role_denied");
    assert_eq!(denials.len(), 1, "one per account and region, not per task");
    assert_eq!(
        denials[0]["Subject"],
        format!("curfew: spoke role denied in account {denied} ({REGION})")
    );
    let denial: Value = serde_json::from_str(denials[0]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(denial["type"], "spoke_role_denied");
    assert_eq!(denial["version"], 1);
    assert_eq!(denial["operation_id"], op.id);
    assert_eq!(denial["account"], denied);
    assert_eq!(denial["region"], REGION);
    assert_eq!(
        denial["role_arn"],
        format!("arn:aws:iam::{denied}:role/curfew-spoke")
    );
    assert!(denial["error"].as_str().unwrap().contains("AccessDenied"));

    let ends = of_type(&envelopes, "operation_ended");
    assert_eq!(ends.len(), 1);
    assert_eq!(
        ends[0]["Subject"],
        format!(
            "curfew: stop {} PARTIAL: 3 succeeded, 3 failed, 0 skipped of 6",
            op.id
        )
    );
    let message = ends[0]["Message"].as_str().unwrap();
    let Notice::OperationEnded(ended) = Notice::from_json(message).unwrap() else {
        panic!("not an operation_ended notice: {message}");
    };
    assert_eq!(ended.operation_id, op.id);
    assert_eq!(ended.status, OpStatus::Partial);
    assert_eq!(ended.counts, op.counts);
    assert_eq!((ended.counts.succeeded, ended.counts.failed), (3, 3));
    assert_eq!(ended.failures.len(), 3);
    assert!(ended.failures.iter().all(|f| f.target.starts_with(&denied)
        && f.status == TaskStatus::Failed
        && f.reason.contains("AccessDenied")));
    assert_eq!(ended.failures_omitted, 0);
    let shape: Value = serde_json::from_str(message).unwrap();
    assert_eq!(shape["source"], json!({"type": "manual"}));
    assert_eq!(
        shape["started_at"],
        op.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );

    // A late duplicate of a finished task's message settles the operation again: it is
    // already final, and its end was told once.
    let task = t
        .hub
        .store
        .list_tasks(&op.id)
        .await
        .unwrap()
        .into_iter()
        .find(|task| task.target.account != denied)
        .unwrap();
    let account = t
        .hub
        .store
        .get_account(&task.target.account)
        .await
        .unwrap()
        .unwrap();
    let duplicate = TaskMessage {
        op_id: op.id.clone(),
        op_created_at: op.created_at,
        action: Action::Stop,
        target: task.target,
        role: account.role,
        dry_run: false,
        default_start: None,
        hold: None,
        check: false,
        enforce: false,
    };
    let step = curfew_core::service::worker::handle(&t.hub, &duplicate)
        .await
        .unwrap();
    assert_eq!(
        step,
        curfew_core::service::worker::TaskStep::Finished(TaskStatus::Succeeded)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(inbox.drain().await, Vec::<Value>::new(), "no second notice");
}
