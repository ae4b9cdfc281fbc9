//! The poller on the moto emulator with schedule items that no longer decode: the rest still
//! fire, and the broken ones are reported, listed and can be deleted.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};
use curfew_core::operation::Operation;
use curfew_core::service::poller;
use curfew_tests::{spawn_hub, stop_schedule, TestHub};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

/// Writes a schedule item as an older or hand-edited version might have left it: `fields`
/// replace or (with `None`) remove the attributes of a valid stop schedule due at `due`.
async fn put_raw_schedule(
    t: &TestHub,
    name: &str,
    due: DateTime<Utc>,
    fields: &[(&str, Option<&str>)],
) {
    let due_key = due.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let mut item = std::collections::HashMap::from([
        ("pk".to_string(), s("SCHEDULES")),
        ("sk".to_string(), s(&format!("SCHEDULE#{name}"))),
        ("name".to_string(), s(name)),
        ("cron".to_string(), s("0 18 * * *")),
        ("tz".to_string(), s("UTC")),
        ("action".to_string(), s("stop")),
        ("selector".to_string(), s("name=nothing-matches")),
        ("enabled".to_string(), AttributeValue::Bool(true)),
        ("next_fire".to_string(), s(&due.to_rfc3339())),
        ("gsi1pk".to_string(), s("DUE")),
        ("gsi1sk".to_string(), s(&due_key)),
    ]);
    for (field, value) in fields {
        match value {
            Some(v) => item.insert(field.to_string(), s(v)),
            None => item.remove(*field),
        };
    }
    aws_sdk_dynamodb::Client::new(&t.sdk)
        .put_item()
        .table_name(&t.config.table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_that_no_longer_decode_are_reported_and_the_others_still_fire() {
    // Monday 4 January 2027, 18:00 UTC.
    let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
    let t = spawn_hub(now, 0).await;
    // Names sort the broken ones before and after the good one.
    put_raw_schedule(&t, "a-bad-cron", now, &[("cron", Some("61 * * * *"))]).await;
    put_raw_schedule(&t, "b-bad-zone", now, &[("tz", Some("Mars/Olympus"))]).await;
    let good = stop_schedule("c-good", "0 18 * * *", "name=nothing-matches", now);
    t.hub.store.create_schedule(&good).await.unwrap();
    put_raw_schedule(&t, "d-no-action", now, &[("action", None)]).await;

    let report = poller::tick(&t.hub).await.expect("the tick succeeds");

    assert_eq!(report.created, vec![Operation::schedule_id("c-good", now)]);
    let broken: Vec<(&str, &str)> = report
        .broken
        .iter()
        .map(|b| (b.name.as_str(), b.problem.as_str()))
        .collect();
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert_eq!(broken[0].0, "a-bad-cron");
    assert!(
        broken[0].1.contains("cron expression \"61 * * * *\""),
        "{broken:?}"
    );
    assert_eq!(broken[1].0, "b-bad-zone");
    assert!(
        broken[1].1.contains("time zone \"Mars/Olympus\""),
        "{broken:?}"
    );
    assert_eq!(broken[2].0, "d-no-action");
    assert!(broken[2].1.contains("action"), "{broken:?}");
    // The good one moved on; the broken ones stay due and are reported again.
    let again = poller::tick(&t.hub).await.unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.broken, report.broken);

    let listed = t.hub.store.list_schedules().await.unwrap();
    assert_eq!(listed.schedules.len(), 1);
    assert_eq!(listed.schedules[0].name, "c-good");
    assert_eq!(listed.broken, report.broken);
    let read = t.hub.store.get_schedule("b-bad-zone").await.unwrap_err();
    assert!(
        read.message.contains("b-bad-zone") && read.message.contains("Mars/Olympus"),
        "{read}"
    );

    assert!(t.hub.store.delete_schedule("b-bad-zone").await.unwrap());
    assert_eq!(t.hub.store.get_schedule("b-bad-zone").await.unwrap(), None);
    let after = poller::tick(&t.hub).await.unwrap();
    assert_eq!(after.broken.len(), 2);
}
