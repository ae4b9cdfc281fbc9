//! The drift check on the emulator: baselines are indexed per account and region (gsi3,
//! `ASLEEP#account#region`), the poller's check finds the targets held asleep through that
//! index and records the one someone woke by hand, and a start removes them from it.

use chrono::{Duration, TimeZone, Utc};
use curfew_aws::local::FleetTarget;
use curfew_core::operation::TaskStatus;
use curfew_core::service::poller;
use curfew_core::service::{Hub, Settings};
use curfew_core::target::{Sizes, TargetKind};
use curfew_tests::{key, spawn_hub};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_check_finds_the_targets_held_asleep_through_the_index_and_records_a_woken_one() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 30, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let fleet: Vec<FleetTarget> = ["drift-a", "drift-b"]
        .into_iter()
        .map(|name| FleetTarget {
            account: t.accounts[0].clone(),
            region: "eu-west-1".into(),
            kind: TargetKind::Asg,
            cluster: None,
            name: name.into(),
            sizes: Sizes::new(1, 4, 2),
            tags: Default::default(),
            cluster_tags: Default::default(),
        })
        .collect();
    t.seed(&fleet).await;
    t.run(json!({"action": "stop", "select": "name=drift-*"}))
        .await;
    let asleep = t
        .hub
        .store
        .asleep_baselines(&t.accounts[0], "eu-west-1")
        .await
        .unwrap();
    let mut keys: Vec<String> = asleep.iter().map(|b| b.target_key.clone()).collect();
    keys.sort();
    assert_eq!(keys, vec![key(&fleet[0]), key(&fleet[1])]);

    t.set_by_hand(&fleet[1], Sizes::new(1, 4, 1)).await;
    t.clock.advance(Duration::minutes(30));
    let checking = Hub {
        settings: Settings {
            drift_interval: Duration::hours(1),
            ..t.hub.settings.clone()
        },
        ..t.hub.clone()
    };
    let report = poller::tick(&checking).await.unwrap();
    let id = report.drift_check.expect("a drift check at 19:00");
    t.drain().await;
    let task = |target: &FleetTarget| {
        let id = id.clone();
        let target_key = key(target);
        let store = t.hub.store.clone();
        async move { store.get_task(&id, &target_key).await.unwrap().unwrap() }
    };
    assert_eq!(task(&fleet[0]).await.status, TaskStatus::Succeeded);
    let woken = task(&fleet[1]).await;
    assert_eq!(woken.status, TaskStatus::Skipped);
    let reason = woken.reason.unwrap_or_default();
    assert!(
        reason.starts_with("drift: woken: sizes 1/4/1 (asleep is 0/0/0"),
        "{reason}"
    );
    assert_eq!(t.sizes(&fleet[1]).await, Sizes::new(1, 4, 1));

    t.run(json!({"action": "start", "select": "name=drift-*"}))
        .await;
    assert!(t
        .hub
        .store
        .asleep_baselines(&t.accounts[0], "eu-west-1")
        .await
        .unwrap()
        .is_empty());
}
