//! A state table written by an earlier version, on the emulator. A stop keeps baselines on the
//! target's lease item (indexed in gsi3 while saved), and a baseline an earlier version saved
//! as an item of its own is still read, listed and retired, so a fleet stopped before an
//! upgrade wakes from what it saved. Audit chain heads are indexed in gsi3 (keys only), and a
//! head still in gsi1 is listed and verified, and moves with its chain's next append. A change
//! in flight is recorded on the lease's mark only, and one an earlier version left (recorded
//! APPLYING on its task) is finished from the task's record. An inventory cache of an item a
//! target is read, and the next listing lays it out in buckets.

use aws_sdk_dynamodb::types::AttributeValue as Av;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use chrono::{TimeZone, Utc};
use curfew_aws::local::FleetTarget;
use curfew_core::target::{Sizes, TargetKind};
use curfew_tests::{key, spawn_hub, TestHub};
use serde_json::json;
use std::collections::HashMap;

fn asg(t: &TestHub, name: &str, sizes: Sizes) -> FleetTarget {
    FleetTarget {
        account: t.accounts[0].clone(),
        region: "eu-west-1".into(),
        kind: TargetKind::Asg,
        cluster: None,
        name: name.into(),
        sizes,
        tags: Default::default(),
        cluster_tags: Default::default(),
    }
}

fn n(v: i32) -> Av {
    Av::N(v.to_string())
}

/// The baseline item an earlier version wrote for `target` (its own item, indexed in gsi1).
async fn put_earlier_baseline(t: &TestHub, target: &FleetTarget, sizes: Sizes, op_id: &str) {
    let k = key(target);
    let item = HashMap::from([
        ("pk".to_string(), Av::S(format!("TARGET#{k}"))),
        ("sk".to_string(), Av::S("BASELINE".into())),
        (
            "gsi1pk".to_string(),
            Av::S(format!("ASLEEP#{}#{}", target.account, target.region)),
        ),
        ("gsi1sk".to_string(), Av::S(k.clone())),
        ("target_key".to_string(), Av::S(k)),
        (
            "sizes".to_string(),
            Av::M(HashMap::from([
                ("min".to_string(), n(sizes.min)),
                ("max".to_string(), n(sizes.max)),
                ("desired".to_string(), n(sizes.desired)),
            ])),
        ),
        ("op_id".to_string(), Av::S(op_id.into())),
        ("saved_at".to_string(), Av::S("2027-01-03T18:00:00Z".into())),
    ]);
    aws_sdk_dynamodb::Client::new(&t.sdk)
        .put_item()
        .table_name(&t.config.table)
        .set_item(Some(item))
        .send()
        .await
        .expect("the earlier layout's baseline item written");
}

async fn asleep_keys(t: &TestHub) -> Vec<String> {
    let mut keys: Vec<String> = t
        .hub
        .store
        .asleep_baselines(&t.accounts[0], "eu-west-1")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.target_key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_stopped_before_the_upgrade_wakes_from_the_baselines_it_saved_then() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 7, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let old = asg(&t, "upgraded-old", Sizes::new(0, 0, 0));
    let new = asg(&t, "upgraded-new", Sizes::new(2, 6, 3));
    t.seed(&[old.clone(), new.clone()]).await;
    put_earlier_baseline(&t, &old, Sizes::new(1, 4, 2), "op-before-upgrade").await;

    let read = t.hub.store.get_baseline(&key(&old)).await.unwrap();
    assert_eq!(read.map(|b| b.sizes), Some(Sizes::new(1, 4, 2)));
    assert_eq!(asleep_keys(&t).await, vec![key(&old)]);

    // A stop puts the other to sleep under the new layout and leaves the old baseline be.
    t.run(json!({"action": "stop", "select": "name=upgraded-*"}))
        .await;
    assert_eq!(t.sizes(&new).await, Sizes::new(0, 0, 0));
    assert_eq!(t.sizes(&old).await, Sizes::new(0, 0, 0));
    let kept = t.hub.store.get_baseline(&key(&old)).await.unwrap().unwrap();
    assert_eq!(
        (kept.sizes, kept.op_id.as_str()),
        (Sizes::new(1, 4, 2), "op-before-upgrade")
    );
    assert_eq!(asleep_keys(&t).await, {
        let mut both = vec![key(&old), key(&new)];
        both.sort();
        both
    });

    t.run(json!({"action": "start", "select": "name=upgraded-*"}))
        .await;
    assert_eq!(t.sizes(&old).await, Sizes::new(1, 4, 2));
    assert_eq!(t.sizes(&new).await, Sizes::new(2, 6, 3));
    for target in [&old, &new] {
        assert!(
            t.hub
                .store
                .get_baseline(&key(target))
                .await
                .unwrap()
                .is_none(),
            "{} keeps no baseline after its start",
            target.name
        );
    }
    assert!(asleep_keys(&t).await.is_empty());
}

fn schema(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .unwrap()
}

fn string_attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_table_made_before_the_asleep_index_gains_it() {
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 7, 0, 0).unwrap(), 0).await;
    let client = aws_sdk_dynamodb::Client::new(&t.sdk);
    let table = format!("{}-earlier", t.config.table);
    let gsi1 = GlobalSecondaryIndex::builder()
        .index_name("gsi1")
        .key_schema(schema("gsi1pk", KeyType::Hash))
        .key_schema(schema("gsi1sk", KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .unwrap();
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(schema("pk", KeyType::Hash))
        .key_schema(schema("sk", KeyType::Range))
        .attribute_definitions(string_attr("pk"))
        .attribute_definitions(string_attr("sk"))
        .attribute_definitions(string_attr("gsi1pk"))
        .attribute_definitions(string_attr("gsi1sk"))
        .global_secondary_indexes(gsi1)
        .send()
        .await
        .unwrap();

    curfew_aws::dynamo::create_table(&client, &table)
        .await
        .expect("an existing table is upgraded, not refused");
    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let indexes = described.table().unwrap().global_secondary_indexes();
    let asleep = indexes
        .iter()
        .find(|i| i.index_name() == Some("gsi3"))
        .expect("gsi3 added");
    let projection = asleep.projection().unwrap();
    assert_eq!(projection.projection_type(), Some(&ProjectionType::Include));
    assert_eq!(projection.non_key_attributes(), ["baseline".to_string()]);
    // Asked again, the table is left as it is.
    curfew_aws::dynamo::create_table(&client, &table)
        .await
        .unwrap();
}

/// A chain head as an earlier version left it: indexed in gsi1, not gsi3.
async fn move_head_to_gsi1(t: &TestHub, chain: &str) {
    let bucket = curfew_core::trail::bucket(chain, 8);
    aws_sdk_dynamodb::Client::new(&t.sdk)
        .update_item()
        .table_name(&t.config.table)
        .key("pk", Av::S(format!("AUDIT#{chain}")))
        .key("sk", Av::S("HEAD".into()))
        .update_expression("SET gsi1pk = :p, gsi1sk = :c REMOVE gsi3pk, gsi3sk")
        .condition_expression("attribute_exists(gsi3pk)")
        .expression_attribute_values(":p", Av::S(format!("AUDITHEADS#{bucket}")))
        .expression_attribute_values(":c", Av::S(chain.into()))
        .send()
        .await
        .expect("the head was in gsi3 and is now where an earlier version kept it");
}

async fn head_item(t: &TestHub, chain: &str) -> HashMap<String, Av> {
    aws_sdk_dynamodb::Client::new(&t.sdk)
        .get_item()
        .table_name(&t.config.table)
        .key("pk", Av::S(format!("AUDIT#{chain}")))
        .key("sk", Av::S("HEAD".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the chain has a head")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_head_an_earlier_version_indexed_is_listed_verified_and_moved_by_its_next_append() {
    use curfew_core::clock::Clock;

    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let target = asg(&t, "audited", Sizes::new(1, 4, 2));
    t.seed(std::slice::from_ref(&target)).await;
    t.run(json!({"action": "stop", "select": "name=audited"}))
        .await;
    // The stop's change, in its delivery's chain.
    let heads = t.hub.store.audit_heads().await.unwrap();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let chain = heads[0].chain.clone();
    let item = head_item(&t, &chain).await;
    assert!(item.contains_key("gsi3pk") && !item.contains_key("gsi1pk"));

    move_head_to_gsi1(&t, &chain).await;
    let heads = t.hub.store.audit_heads().await.unwrap();
    let listed: Vec<(&str, u64)> = heads.iter().map(|h| (h.chain.as_str(), h.seq)).collect();
    assert!(listed.contains(&(chain.as_str(), 1)), "{listed:?}");
    let report = curfew_core::audit_verify::verify_store(t.hub.store.as_ref(), None)
        .await
        .unwrap();
    assert!(
        report.chain_problems.is_empty() && report.problems.is_empty(),
        "{report:?}"
    );

    // The next append to that chain (a delivery's chain takes one only when a later write
    // picks its name; a target's chain takes drift records).
    t.clock.advance(chrono::Duration::hours(12));
    let entry = curfew_core::trail::AuditEntry::new(
        curfew_core::trail::ChangeKind::DriftFound,
        key(&target),
        "worker",
        t.clock.now(),
    );
    curfew_core::trail::record(
        t.hub.store.as_ref(),
        &t.hub.settings.audit,
        &chain,
        "a-later-change",
        &entry,
    )
    .await
    .unwrap();
    let item = head_item(&t, &chain).await;
    assert!(
        item.contains_key("gsi3pk") && !item.contains_key("gsi1pk"),
        "the append rewrote the head where this version keeps it: {item:?}"
    );
    let heads = t.hub.store.audit_heads().await.unwrap();
    let ours: Vec<u64> = heads
        .iter()
        .filter(|h| h.chain == chain)
        .map(|h| h.seq)
        .collect();
    assert_eq!(ours, vec![2], "listed once, at its new last record");
    let report = curfew_core::audit_verify::verify_store(t.hub.store.as_ref(), None)
        .await
        .unwrap();
    assert!(report.chain_problems.is_empty(), "{report:?}");
}

/// A delivery of an earlier version recorded its change (with the change's mark) and stopped
/// before finishing its task; a drift record then moved the chain's head. This version's
/// redelivery finishes the task and finds the mark: the change is in the chain once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_an_earlier_version_recorded_before_finishing_its_task_is_not_recorded_again() {
    use curfew_core::clock::Clock;
    use curfew_core::service::invocation::{invoke, Invocation};
    use curfew_core::service::worker::{self, TaskStep};
    use curfew_core::trail::{record, target_chain, verify_chain, AuditEntry, ChangeKind};

    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    t.register_accounts(&["eu-west-1"]).await;
    let target = asg(&t, "recorded-once", Sizes::new(1, 4, 2));
    t.seed(std::slice::from_ref(&target)).await;
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "name=recorded-once"})).unwrap(),
    )
    .await
    .unwrap();
    let messages = t.route_and_take_tasks().await;
    let msg = &messages[0];
    let k = key(&target);
    let chain = target_chain(&k);

    // The earlier version's delivery: leased, scaled, recorded the change, then stopped.
    let now = t.clock.now();
    let ttl = t.hub.settings.lease_ttl;
    t.crash_after_scaling(msg, Sizes::new(1, 4, 2)).await;
    let mut change = AuditEntry::new(ChangeKind::TargetStopped, &k, "worker", now);
    change.operation = Some(op.operation_id.clone());
    let store = t.hub.store.as_ref();
    record(
        store,
        &t.hub.settings.audit,
        &chain,
        &op.operation_id,
        &change,
    )
    .await
    .unwrap();
    let drift = AuditEntry::new(ChangeKind::DriftFound, &k, "worker", now);
    record(
        store,
        &t.hub.settings.audit,
        &chain,
        "a-check#drift",
        &drift,
    )
    .await
    .unwrap();

    t.clock.advance(ttl + chrono::Duration::seconds(1));
    assert_eq!(
        worker::handle(&t.hub, msg).await.unwrap(),
        TaskStep::Finished(curfew_core::operation::TaskStatus::Succeeded)
    );
    let records = t.hub.store.audit_chain(&chain).await.unwrap();
    let ours = records
        .iter()
        .filter_map(|r| r.entries())
        .flatten()
        .filter(|e| e.operation.as_deref() == Some(op.operation_id.as_str()))
        .count();
    assert_eq!(ours, 1, "the change is recorded once: {records:?}");
    let head = t.hub.store.audit_head(&chain).await.unwrap();
    assert_eq!(verify_chain(&chain, &records, head.as_ref(), None), Ok(()));
}

/// A delivery of an earlier version marked the lease with its change (the operation, the
/// action and the sizes planned, nothing more), recorded the task APPLYING with the sizes
/// before, scaled the target and stopped. This version's redelivery finishes that change from
/// the task's record: the sizes before are the task's, not the target's now (without them the
/// change would read 0/0/0 -> 0/0/0 and go unrecorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_an_earlier_version_left_in_flight_is_finished_from_its_task_record() {
    use curfew_core::operation::TaskStatus;
    use curfew_core::service::invocation::{invoke, Invocation};
    use curfew_core::service::worker::{self, TaskStep};
    use curfew_core::trail::target_chain;

    let mut t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(), 1).await;
    // The earlier version wrote a task item per target at planning, as a shard too large to
    // list still does.
    t.hub.store = std::sync::Arc::new(
        curfew_aws::dynamo::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&t.sdk),
            &t.config.table,
        )
        .with_listing_bytes(0),
    );
    t.register_accounts(&["eu-west-1"]).await;
    let target = asg(&t, "in-flight", Sizes::new(1, 4, 2));
    t.seed(std::slice::from_ref(&target)).await;
    let op = invoke(
        &t.hub,
        Invocation::parse(&json!({"action": "stop", "select": "name=in-flight"})).unwrap(),
    )
    .await
    .unwrap();
    let msg = &t.route_and_take_tasks().await[0];
    let k = key(&target);
    t.crash_after_scaling(msg, Sizes::new(1, 4, 2)).await;

    // What the earlier version left instead: a mark without the sizes before or its time, and
    // the task APPLYING with them.
    let client = aws_sdk_dynamodb::Client::new(&t.sdk);
    client
        .update_item()
        .table_name(&t.config.table)
        .key("pk", Av::S(format!("TARGET#{k}")))
        .key("sk", Av::S("LEASE".into()))
        .update_expression("REMOVE inflight_from, inflight_at")
        .send()
        .await
        .unwrap();
    let sizes = |s: Sizes| {
        Av::M(HashMap::from([
            ("min".to_string(), n(s.min)),
            ("max".to_string(), n(s.max)),
            ("desired".to_string(), n(s.desired)),
        ]))
    };
    client
        .update_item()
        .table_name(&t.config.table)
        .key(
            "pk",
            Av::S(format!(
                "OP#{}#{}#{}",
                op.operation_id, target.account, target.region
            )),
        )
        .key("sk", Av::S(format!("TASK#{k}")))
        .update_expression("SET #status = :applying, #before = :before, #after = :after")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#before", "before")
        .expression_attribute_names("#after", "after")
        .expression_attribute_values(":applying", Av::S("APPLYING".into()))
        .expression_attribute_values(":before", sizes(Sizes::new(1, 4, 2)))
        .expression_attribute_values(":after", sizes(Sizes::new(0, 0, 0)))
        .condition_expression("attribute_exists(pk)")
        .send()
        .await
        .unwrap();

    t.clock
        .advance(t.hub.settings.lease_ttl + chrono::Duration::seconds(1));
    assert_eq!(
        worker::handle(&t.hub, msg).await.unwrap(),
        TaskStep::Finished(TaskStatus::Succeeded)
    );
    let task = t
        .hub
        .store
        .get_task(&op.operation_id, &k)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.before, task.after),
        (Some(Sizes::new(1, 4, 2)), Some(Sizes::new(0, 0, 0)))
    );
    let records = t.hub.store.audit_chain(&target_chain(&k)).await.unwrap();
    assert_eq!(records.len(), 1, "the change is recorded: {records:?}");
    let baseline = t.hub.store.get_baseline(&k).await.unwrap();
    assert_eq!(baseline.map(|b| b.sizes), Some(Sizes::new(1, 4, 2)));
}

/// Every item of `account` and `region`'s inventory partition, by sort key.
async fn inventory_items(t: &TestHub, region: &str) -> Vec<(String, HashMap<String, Av>)> {
    let items = aws_sdk_dynamodb::Client::new(&t.sdk)
        .query()
        .table_name(&t.config.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", Av::S(format!("INV#{}#{region}", t.accounts[0])))
        .send()
        .await
        .expect("the inventory partition read")
        .items
        .unwrap_or_default();
    items
        .into_iter()
        .map(|item| (item["sk"].as_s().unwrap().clone(), item))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_an_earlier_version_cached_is_read_then_laid_out_in_buckets() {
    use curfew_core::clock::Clock;
    use curfew_core::target::Target;
    let t = spawn_hub(Utc.with_ymd_and_hms(2027, 1, 4, 7, 0, 0).unwrap(), 1).await;
    let now = t.clock.now();
    let target = |name: &str, team: &str| Target {
        account: t.accounts[0].clone(),
        region: "eu-west-1".into(),
        kind: TargetKind::Asg,
        cluster: None,
        name: name.into(),
        tags: [("team".to_string(), team.to_string())].into(),
        cluster_tags: Default::default(),
        instance_types: vec![],
    };
    let old = vec![target("web", "a"), target("api", "a")];
    // The cache as an earlier version wrote it: an item a target and a marker without a
    // bucket count.
    let pk = Av::S(format!("INV#{}#eu-west-1", t.accounts[0]));
    let mut items: Vec<HashMap<String, Av>> = old
        .iter()
        .map(|o| {
            HashMap::from([
                ("pk".to_string(), pk.clone()),
                ("sk".to_string(), Av::S(format!("T#asg#{}", o.name))),
                ("account".to_string(), Av::S(o.account.clone())),
                ("region".to_string(), Av::S(o.region.clone())),
                ("kind".to_string(), Av::S("asg".into())),
                ("name".to_string(), Av::S(o.name.clone())),
                (
                    "tags".to_string(),
                    Av::M(HashMap::from([("team".to_string(), Av::S("a".into()))])),
                ),
                ("cluster_tags".to_string(), Av::M(HashMap::new())),
            ])
        })
        .collect();
    items.push(HashMap::from([
        ("pk".to_string(), pk.clone()),
        ("sk".to_string(), Av::S("META".into())),
        ("refreshed_at".to_string(), Av::S(now.to_rfc3339())),
        ("targets".to_string(), n(2)),
    ]));
    let client = aws_sdk_dynamodb::Client::new(&t.sdk);
    for item in items {
        client
            .put_item()
            .table_name(&t.config.table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    let store = &t.hub.store;
    let sorted = |mut v: Vec<Target>| {
        v.sort_by_key(Target::key);
        v
    };
    let (_, read) = store
        .get_inventory(&t.accounts[0], "eu-west-1")
        .await
        .unwrap()
        .expect("the earlier cache is read");
    assert_eq!(sorted(read), sorted(old.clone()));

    // The next listing: one retagged, one new. The cache is laid out in buckets and the items
    // of the earlier layout go.
    let listed = vec![target("web", "a"), target("api", "b"), target("db", "a")];
    store
        .put_inventory(&t.accounts[0], "eu-west-1", &listed, now)
        .await
        .unwrap();
    let items = inventory_items(&t, "eu-west-1").await;
    let keys: Vec<&str> = items.iter().map(|(sk, _)| sk.as_str()).collect();
    assert_eq!(keys, ["B#00000", "META"], "one bucket holds three targets");
    let meta = &items[1].1;
    assert_eq!(meta.get("buckets"), Some(&n(1)));
    let (_, read) = store
        .get_inventory(&t.accounts[0], "eu-west-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sorted(read), sorted(listed.clone()));

    // The same listing again rewrites no bucket.
    store
        .put_inventory(&t.accounts[0], "eu-west-1", &listed, now)
        .await
        .unwrap();
    assert_eq!(inventory_items(&t, "eu-west-1").await[0], items[0]);
}
