//! The audit trail the worker writes, end to end over the in-memory fakes: one record per
//! change per target, none for dry runs or redeliveries, and chains that verify.

use crate::common::*;
use chrono::Duration;
use curfew_core::audit_list::target_records;
use curfew_core::clock::Clock;
use curfew_core::service::{router_batch, worker_batch};
use curfew_core::trail::{verify_chain, AuditEntry, AuditLog, ChangeKind};

/// A target's recorded changes, oldest first: its own chain's and its changes in the
/// deliveries' records.
async fn records_of(w: &World, key: &str) -> Vec<AuditEntry> {
    let now = w.clock.now();
    let records = target_records(w.store.as_ref(), key, now - Duration::days(30), now)
        .await
        .unwrap();
    let mut entries: Vec<AuditEntry> = records
        .iter()
        .filter_map(|r| r.entries())
        .flatten()
        .filter(|e| e.subject == key)
        .collect();
    entries.sort_by_key(|e| e.at);
    entries
}

/// The kinds and operations recorded for a target, in order.
async fn changes(w: &World, key: &str) -> Vec<(ChangeKind, String)> {
    records_of(w, key)
        .await
        .into_iter()
        .map(|e| (e.kind, e.operation.expect("an operation")))
        .collect()
}

#[tokio::test]
async fn a_stop_and_a_start_each_record_one_change_per_target_with_its_sizes() {
    let w = world(&[]).await;
    let stop = w.run(true).await;
    w.clock.advance(Duration::hours(14));
    let start = w.run(false).await;

    let key = asg(DEV).key();
    assert_eq!(
        changes(&w, &key).await,
        [
            (ChangeKind::TargetStopped, stop.id.clone()),
            (ChangeKind::TargetStarted, start.id.clone())
        ]
    );
    let records = records_of(&w, &key).await;
    let stopped = records[0].clone();
    assert_eq!(
        stopped.before,
        Some(
            serde_json::json!({"min": ASG_SIZES.min, "max": ASG_SIZES.max, "desired": ASG_SIZES.desired})
        )
    );
    assert_eq!(
        stopped.after,
        Some(serde_json::json!({"min": 0, "max": 0, "desired": 0}))
    );
    assert!(
        stopped.detail.iter().any(|d| d == "baseline saved"),
        "{:?}",
        stopped.detail
    );
    assert_eq!(stopped.task, Some(format!("{}/{key}", stop.id)));
    // The changes went to the deliveries' chains, none to a target's own.
    let heads = w.store.audit_heads().await.unwrap();
    assert!(
        !heads.is_empty() && heads.iter().all(|h| h.chain.starts_with("ends/")),
        "{heads:?}"
    );
    for head in heads {
        let records = w.store.audit_chain(&head.chain).await.unwrap();
        assert_eq!(
            verify_chain(&head.chain, &records, Some(&head), None),
            Ok(())
        );
    }
}

#[tokio::test]
async fn a_task_delivered_twice_is_recorded_once() {
    let w = world(&[]).await;
    w.begin(true, false).await;
    let shards = w.router_q.take_all();
    router_batch(&w.hub, &ids(shards)).await;
    let tasks = w.task_q.take_all();
    worker_batch(&w.hub, &deliveries([tasks.clone(), tasks].concat())).await;
    assert!(w.drain().await.settled);

    assert_eq!(changes(&w, &asg(DEV).key()).await.len(), 1);
    assert_eq!(changes(&w, &nodegroup(DEV).key()).await.len(), 1);
}

#[tokio::test]
async fn a_dry_run_and_a_stop_of_a_stopped_fleet_record_nothing() {
    let w = world(&[]).await;
    w.begin(true, true).await;
    assert!(w.drain().await.settled);
    assert!(w.store.audit_heads().await.unwrap().is_empty());

    w.run(true).await;
    w.clock.advance(Duration::minutes(1));
    w.run(true).await;
    assert_eq!(changes(&w, &asg(DEV).key()).await.len(), 1);
}
