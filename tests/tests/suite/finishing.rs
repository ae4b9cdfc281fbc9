//! A chunk's task ends written together through the real DynamoDB adapter, on the emulator:
//! more changed targets than one transaction holds, their changes in one record per
//! transaction linked in one delivery chain, one of them finished by another delivery first
//! (its transaction is cancelled, and its record's changes and those of the records linked
//! after it come back to be linked again, as the worker does), every other task final, counted
//! once and recorded once, and listed by time through one index entry per transaction.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use curfew_aws::local::demo_fleet;
use curfew_core::clock::Clock;
use curfew_core::operation::{OpStatus, TaskOutcome, TaskStatus};
use curfew_core::ports::{EndsWrite, RecordedFinish, TaskEnd};
use curfew_core::service::endings::writes;
use curfew_core::service::invocation::{invoke, Invocation};
use curfew_core::target::Sizes;
use curfew_core::trail::{delivery_chain, verify_chain, AuditEntry, ChainHead, ChangeKind, Linker};
use curfew_tests::spawn_hub;
use serde_json::json;

const SIZES: Sizes = Sizes::new(1, 4, 2);
const TARGETS: usize = 120;

#[tokio::test]
async fn a_hundred_and_twenty_changed_targets_are_finished_in_two_transactions_and_one_finished_first_is_left_out(
) {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&t.accounts, &["eu-west-1".to_string()], TARGETS, 0);
    t.seed(&fleet).await;
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "kind=asg"})).unwrap(),
    )
    .await
    .unwrap();
    let messages = t.route_and_take_tasks().await;
    assert_eq!(messages.len(), TARGETS);
    let now = t.clock.now();
    let stopped = |skipped: bool| TaskOutcome {
        status: if skipped {
            TaskStatus::Skipped
        } else {
            TaskStatus::Succeeded
        },
        reason: skipped.then(|| "finished by another delivery".to_string()),
        before: Some(SIZES),
        after: Some(Sizes::new(0, 0, 0)),
        steps: Default::default(),
    };
    // Another delivery finished the seventh task first.
    let first = &messages[6];
    assert!(t
        .hub
        .store
        .finish_task(&first.op_id, &first.target, &stopped(true), now)
        .await
        .unwrap());

    // The worker's write: the changes linked in order in the delivery's chain, one record a
    // transaction; the ends sent back (of a record left out, or linked after one) are linked
    // again after the head as written.
    let chain = delivery_chain(&messages[0].target.key(), now);
    let link = |which: &[usize], head: Option<ChainHead>| -> Vec<EndsWrite> {
        let ends = which.iter().map(|&i| {
            let m = &messages[i];
            let mut entry =
                AuditEntry::new(ChangeKind::TargetStopped, m.target.key(), "worker", now);
            // As the worker names it.
            entry.operation = Some(m.op_id.clone());
            entry.task = Some(format!("{}/{}", m.op_id, m.target.key()));
            let end = TaskEnd {
                op_id: m.op_id.clone(),
                target: m.target.clone(),
                outcome: stopped(false),
                recorded: false,
            };
            (
                end,
                Some((format!("{}/{}", m.op_id, m.target.key()), entry)),
            )
        });
        writes(ends, Some(Linker::after(head, &chain, None)))
    };
    let mut results = [None; TARGETS];
    let mut pending: Vec<usize> = (0..TARGETS).collect();
    for round in 0..2 {
        let head = t.hub.store.audit_head(&chain).await.unwrap();
        let writes = link(&pending, head);
        let sizes: Vec<usize> = writes.iter().map(|w| w.ends.len()).collect();
        // 96 ends, their count, their record, its head and its index entry make 100.
        let expected: &[usize] = if round == 0 { &[96, 24] } else { &[96, 23] };
        assert_eq!(sizes, expected);
        let written = t.hub.store.finish_tasks(&writes, now).await.unwrap();
        let sent = std::mem::take(&mut pending);
        for (i, result) in sent.into_iter().zip(written) {
            match result {
                RecordedFinish::HeadMoved => pending.push(i),
                other => results[i] = Some(other),
            }
        }
        if round == 0 {
            assert_eq!(
                pending.len(),
                TARGETS - 1,
                "every change came back to be linked again"
            );
        }
    }
    assert!(pending.is_empty());
    for (i, result) in results.iter().enumerate() {
        let expected = if i == 6 {
            RecordedFinish::AlreadyFinal
        } else {
            RecordedFinish::Finished
        };
        assert_eq!(*result, Some(expected), "end {i}");
    }

    let settled = t
        .hub
        .store
        .finalize_operation(&op.operation_id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.status, OpStatus::Succeeded);
    let op = t
        .hub
        .store
        .get_operation(&op.operation_id)
        .await
        .unwrap()
        .unwrap();
    let counts = (
        op.counts.total,
        op.counts.succeeded,
        op.counts.skipped,
        op.counts.failed,
    );
    assert_eq!(counts, (TARGETS as u64, TARGETS as u64 - 1, 1, 0));
    let records = t.hub.store.audit_chain(&chain).await.unwrap();
    assert_eq!(records.len(), 2, "one record a transaction, in one chain");
    let changes: Vec<_> = records.iter().flat_map(|r| r.entries().unwrap()).collect();
    assert_eq!(changes.len(), TARGETS - 1, "every change once");
    assert!(changes
        .iter()
        .all(|e| e.subject != messages[6].target.key()));
    assert_eq!(
        changes[0].task,
        Some(format!(
            "{}/{}",
            messages[0].op_id,
            messages[0].target.key()
        )),
        "a change's task, left out of the record's body, reads back"
    );
    // A listing about one target finds its record, through the entries that mark it.
    let about = messages[10].target.key();
    let found = t
        .hub
        .store
        .audit_about(&about, now - chrono::Duration::minutes(1), now)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].entry_about(&about).unwrap().subject, about);
    let head = t.hub.store.audit_head(&chain).await.unwrap();
    assert_eq!(verify_chain(&chain, &records, head.as_ref(), None), Ok(()));
    for (i, m) in messages.iter().enumerate() {
        let task = t
            .hub
            .store
            .get_task(&m.op_id, &m.target.key())
            .await
            .unwrap()
            .unwrap();
        let status = if i == 6 {
            TaskStatus::Skipped
        } else {
            TaskStatus::Succeeded
        };
        assert_eq!(task.status, status, "{}", m.target.key());
    }

    // Listed by time through their transactions' index entries: one for the record of the
    // first transaction's 96 changes, one for the 23 of the second; no record is indexed by
    // itself.
    let since = now - chrono::Duration::minutes(1);
    let listed = t.hub.store.audit_between(since, now).await.unwrap();
    assert_eq!(listed.len(), 2);
    let client = aws_sdk_dynamodb::Client::new(&t.sdk);
    let audit_items = client
        .scan()
        .table_name(&t.config.table)
        .filter_expression("begins_with(pk, :audit)")
        .expression_attribute_values(":audit", AttributeValue::S("AUDIT#".into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let kind = |item: &std::collections::HashMap<String, AttributeValue>, prefix: &str| {
        item.get("sk")
            .and_then(|sk| sk.as_s().ok())
            .is_some_and(|sk| sk.starts_with(prefix))
    };
    let entries: Vec<_> = audit_items.iter().filter(|i| kind(i, "IDX#")).collect();
    assert_eq!(entries.len(), 2, "one index entry per transaction");
    assert!(audit_items
        .iter()
        .filter(|i| kind(i, "REC#"))
        .all(|record| !record.contains_key("gsi2pk")));

    // A record its entry lists that is gone (deleted by hand) is left out of the listing;
    // `audit verify` names it in its chain.
    let gone = &listed[0];
    client
        .delete_item()
        .table_name(&t.config.table)
        .key("pk", AttributeValue::S(format!("AUDIT#{}", gone.chain)))
        .key("sk", AttributeValue::S(format!("REC#{:012}", gone.seq)))
        .send()
        .await
        .unwrap();
    let left = t.hub.store.audit_between(since, now).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(!left
        .iter()
        .any(|r| r.chain == gone.chain && r.seq == gone.seq));
}
