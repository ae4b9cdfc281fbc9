//! `curfew audit`: the hash-chained trail on the emulator — what the worker and the operators'
//! commands record, `list` and its filters, `verify` catching an edited, deleted or
//! reordered record in the table or in an export, signed heads, and `export`.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{self, assert_fails, TestHub};

// ---- audit verify and export ----

/// A directory of its own under the system's temp dir, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("curfew-audit-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("a scratch dir");
        Scratch(dir)
    }

    fn entries(&self) -> BTreeSet<String> {
        std::fs::read_dir(&self.0)
            .expect("the scratch dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `args` with `--output json`, expecting exit `code`; returns stdout as JSON and stderr.
fn json_exit(hub: &TestHub, args: &[&str], code: i32) -> (Value, String) {
    let out = hub
        .cmd()
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("curfew runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "curfew {args:?}: {stderr}");
    let stdout = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "curfew {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (stdout, stderr)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON value"))
        .collect()
}

#[test]
fn audit_verify_names_a_stopped_target_whose_baseline_was_deleted_behind_curfews_back() {
    let (hub, account) = TestHub::with_fleet(2, 1);
    let stop = hub.json(&[
        "stop",
        "--select",
        &format!("account={account},tag:env=dev"),
        "--wait",
    ]);
    let op_id = stop["operation"]["id"].as_str().unwrap();
    let key = format!("{account}#eu-west-1#asg#dev-web-00");
    assert!(stop["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == key.as_str() && t["status"] == "SUCCEEDED"));
    common::block_on(async {
        aws_sdk_dynamodb::Client::new(&common::sdk(&hub.endpoint).await)
            .update_item()
            .table_name(&hub.config.table)
            .key("pk", AttributeValue::S(format!("TARGET#{key}")))
            .key("sk", AttributeValue::S("LEASE".into()))
            .update_expression("REMOVE baseline, gsi3pk, gsi3sk")
            .condition_expression("attribute_exists(baseline)")
            .send()
            .await
            .expect("the lease item carried the baseline, and no longer does")
    });

    let (report, stderr) = json_exit(&hub, &["audit", "verify"], 1);
    assert_eq!(
        report["problems"],
        json!([{
            "operation": op_id,
            "target": key,
            "problem": "asleep with no baseline: a start cannot restore it",
        }])
    );
    assert_eq!(
        report["chain_problems"],
        json!([]),
        "the trail itself is intact"
    );
    assert_eq!(
        stderr.trim().lines().last().unwrap(),
        "error: verified 2 audit records in 2 chains, 1 operation, 2 tasks: 1 problem"
    );
    let out = hub.cmd().args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("asleep with no baseline"), "{table}");
    assert!(table.contains("dev-web-00"), "{table}");
}

#[test]
fn audit_export_to_an_unwritable_path_fails_naming_it_and_leaves_nothing() {
    let (hub, _account) = TestHub::with_fleet(1, 0);
    let scratch = Scratch::new();
    std::fs::write(scratch.0.join("plain-file"), "not a directory").unwrap();
    std::fs::create_dir(scratch.0.join("a-directory")).unwrap();
    let before = scratch.entries();

    // Under a file: the staged file cannot even be created.
    let under_a_file = scratch.0.join("plain-file").join("audit.jsonl");
    let under_a_file = under_a_file.to_str().unwrap();
    assert_fails(
        hub.cmd().args(["audit", "export", under_a_file]),
        1,
        &[under_a_file],
    );
    // Onto a directory: the trail is written, then the rename fails and the staged file goes.
    let onto_a_dir = scratch.0.join("a-directory");
    let onto_a_dir = onto_a_dir.to_str().unwrap();
    assert_fails(
        hub.cmd().args(["audit", "export", onto_a_dir]),
        1,
        &[onto_a_dir],
    );

    assert_eq!(scratch.entries(), before, "nothing left behind");
    assert_eq!(
        std::fs::read_dir(scratch.0.join("a-directory"))
            .unwrap()
            .count(),
        0
    );
}

/// A stopped and started fleet of two dev ASGs (and two prod ones): one account record and four target records.
fn stopped_and_started() -> (TestHub, String) {
    let (hub, account) = TestHub::with_fleet(4, 0);
    let select = format!("account={account},tag:env=dev");
    hub.json(&["stop", "--select", &select, "--wait"]);
    hub.json(&["start", "--select", &select, "--wait"]);
    (hub, account)
}

fn client(hub: &TestHub) -> aws_sdk_dynamodb::Client {
    common::block_on(async { aws_sdk_dynamodb::Client::new(&common::sdk(&hub.endpoint).await) })
}

/// Sets `attribute` of the record at `seq` of `chain` behind curfew's back.
fn edit_record(hub: &TestHub, chain: &str, seq: u64, attribute: &str, value: AttributeValue) {
    let client = client(hub);
    common::block_on(async {
        client
            .update_item()
            .table_name(&hub.config.table)
            .key("pk", AttributeValue::S(format!("AUDIT#{chain}")))
            .key("sk", AttributeValue::S(format!("REC#{seq:012}")))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .expect("the record exists and is edited")
    });
}

fn delete_record(hub: &TestHub, chain: &str, seq: u64) {
    let client = client(hub);
    common::block_on(async {
        client
            .delete_item()
            .table_name(&hub.config.table)
            .key("pk", AttributeValue::S(format!("AUDIT#{chain}")))
            .key("sk", AttributeValue::S(format!("REC#{seq:012}")))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .expect("the record exists and is deleted")
    });
}

const KEY: &str = "an-audit-key-of-more-than-32-bytes-for-tests";

#[test]
fn the_worker_and_the_operators_commands_record_every_change_with_its_actor() {
    let (hub, account) = stopped_and_started();
    add_schedule(&hub, "nightly");
    hub.json(&["schedule", "disable", "nightly"]);
    hub.json(&["schedule", "enable", "nightly"]);
    hub.json(&["schedule", "delete", "nightly"]);
    let o = hub.json(&["override", "--select", "tag:env=dev", "--awake-until", "2h"]);
    hub.json(&["override", "--remove", o["id"].as_str().unwrap()]);
    hub.json(&["account", "remove", &account]);

    let config = hub.json(&["audit", "list", "--target", "x", "--actor", "moto"]);
    assert_eq!(config, json!([]), "--target reads that target's chain only");
    let all = hub.json(&["audit", "list"]);
    let kinds: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "account_removed",
            "override_removed",
            "override_added",
            "schedule_deleted",
            "schedule_enabled",
            "schedule_disabled",
            "schedule_added",
            "target_started",
            "target_started",
            "target_stopped",
            "target_stopped",
            "account_added",
        ]
    );
    // The operators' changes name the caller's principal (moto's default user); the
    // worker's name the handler and the operation.
    let removed = &all[0];
    assert_eq!(removed["before"]["id"], account.as_str());
    assert_eq!(removed["after"], Value::Null);
    let added = &all[11];
    assert_eq!(added["chain"], "config");
    assert_eq!(added["subject"], account.as_str());
    assert!(
        added["actor"].as_str().unwrap().starts_with("arn:aws:"),
        "{added}"
    );
    assert_eq!(added["after"]["id"], account.as_str());
    let enabled = &all[4];
    assert_eq!(enabled["before"]["enabled"], false);
    assert_eq!(enabled["after"]["enabled"], true);
    let disabled = &all[5];
    assert_eq!(disabled["before"]["enabled"], true);
    assert_eq!(disabled["after"]["enabled"], false);
    let overridden = &all[2];
    assert_eq!(overridden["after"]["selector"], "tag:env=dev");
    let started = &all[7];
    assert!(started["chain"].as_str().unwrap().starts_with("ends/"));
    assert_eq!(started["before"], json!({"min": 0, "max": 0, "desired": 0}));
    assert!(started["task"]
        .as_str()
        .unwrap()
        .contains(started["subject"].as_str().unwrap()));

    let key = started["subject"].as_str().unwrap();
    let one = hub.json(&["audit", "list", "--target", key]);
    assert_eq!(one.as_array().unwrap().len(), 2, "{one}");
    let op = started["operation"].as_str().unwrap();
    let of_op = hub.json(&["audit", "list", "--operation", op]);
    assert_eq!(of_op.as_array().unwrap().len(), 2);
    assert_eq!(
        hub.json(&["audit", "list", "--actor", "nobody-at-all"]),
        json!([])
    );
    assert_eq!(
        hub.json(&[
            "audit",
            "list",
            "--since",
            "2001-01-01T00:00:00Z",
            "--until",
            "2001-01-02T00:00:00Z"
        ]),
        json!([])
    );
    assert_eq!(
        hub.json(&["audit", "list", "--limit", "3"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_fails(
        hub.cmd().args(["audit", "list", "--since", "yesterday"]),
        2,
        &["--since"],
    );

    let (verified, _) = json_exit(&hub, &["audit", "verify"], 0);
    assert_eq!(verified["chains"], 3);
    // The config chain's, and one record each for the stop's and the start's delivery.
    assert_eq!(verified["records"], 10);
    assert_eq!(verified["chain_problems"], json!([]));
    assert_eq!(verified["signatures_checked"], false);
}

#[test]
fn verify_names_an_edited_record_and_its_chain() {
    let (hub, _) = stopped_and_started();
    let body = hub.json(&["audit", "list"]);
    let started = body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "target_started")
        .unwrap();
    let chain = started["chain"].as_str().unwrap().to_string();
    // The delivery's one record of both starts.
    assert_eq!(started["seq"], 1);
    edit_record(&hub, &chain, 1, "body", AttributeValue::S(
        json!({"at": started["at"], "actor": "someone-else", "kind": "target_started", "subject": started["subject"]}).to_string(),
    ));

    let (report, stderr) = json_exit(&hub, &["audit", "verify"], 1);
    assert_eq!(
        report["chain_problems"],
        json!([{"chain": chain, "seq": 1, "problem": "record 1 was edited: its content no longer matches its hash"}])
    );
    assert!(
        stderr.contains(&format!("first: chain {chain} record 1")),
        "{stderr}"
    );
}

#[test]
fn verify_names_a_deleted_record_and_records_cut_off_the_end() {
    let hub = three_config_records();
    delete_record(&hub, "config", 2);
    let (report, _) = json_exit(&hub, &["audit", "verify"], 1);
    assert_eq!(report["chain_problems"][0]["chain"], "config");
    assert_eq!(report["chain_problems"][0]["seq"], 2);
    assert!(report["chain_problems"][0]["problem"]
        .as_str()
        .unwrap()
        .contains("missing"));

    let hub = three_config_records();
    delete_record(&hub, "config", 3);
    let (report, _) = json_exit(&hub, &["audit", "verify"], 1);
    assert!(
        report["chain_problems"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("ends at record 2"),
        "{report}"
    );
}

/// The stored record at `seq` of `chain`, every attribute.
fn record_item(hub: &TestHub, chain: &str, seq: u64) -> HashMap<String, AttributeValue> {
    let client = client(hub);
    common::block_on(async {
        client
            .get_item()
            .table_name(&hub.config.table)
            .key("pk", AttributeValue::S(format!("AUDIT#{chain}")))
            .key("sk", AttributeValue::S(format!("REC#{seq:012}")))
            .send()
            .await
            .expect("reading a record")
            .item
            .expect("the record exists")
    })
}

/// Writes `item` as the record at `seq` (its key and `seq` set to that place).
fn put_record(hub: &TestHub, mut item: HashMap<String, AttributeValue>, seq: u64) {
    item.insert("sk".into(), AttributeValue::S(format!("REC#{seq:012}")));
    item.insert("seq".into(), AttributeValue::N(seq.to_string()));
    let client = client(hub);
    common::block_on(async {
        client
            .put_item()
            .table_name(&hub.config.table)
            .set_item(Some(item))
            .send()
            .await
            .expect("writing a record")
    });
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item[name].as_s().expect("a string attribute").clone()
}

/// Adds a weekday-evening stop schedule named `name` (a `schedule_added` record).
fn add_schedule(hub: &TestHub, name: &str) {
    hub.json(&[
        "schedule",
        "add",
        name,
        "--cron",
        "0 19 * * 1-5",
        "--tz",
        "Europe/Berlin",
        "--action",
        "stop",
        "--select",
        "tag:env=dev",
    ]);
}

/// A hub whose config chain holds three records: the account, a schedule added and disabled.
fn three_config_records() -> TestHub {
    let (hub, _) = TestHub::with_fleet(0, 0);
    add_schedule(&hub, "s1");
    hub.json(&["schedule", "disable", "s1"]);
    let (report, _) = json_exit(&hub, &["audit", "verify"], 0);
    assert_eq!(report["records"], 3, "{report}");
    hub
}

#[test]
fn verify_names_a_record_inserted_into_the_table_even_with_a_correct_hash() {
    let hub = three_config_records();
    let (second, third) = (
        record_item(&hub, "config", 2),
        record_item(&hub, "config", 3),
    );
    let first = record_item(&hub, "config", 1);
    // Make room at 2: the old 2 and 3 move to 3 and 4, as they are.
    put_record(&hub, third, 4);
    put_record(&hub, second.clone(), 3);
    // A forged record at 2 that links to record 1 and carries a hash of its own content.
    let body = json!({"at": "2027-01-04T18:00:00Z", "actor": "arn:aws:iam::1:user/mallory",
                      "kind": "schedule_added", "subject": "backdoor"})
    .to_string();
    let prev = text(&first, "hash");
    let mut forged = second;
    forged.insert("body".into(), AttributeValue::S(body.clone()));
    forged.insert("prev".into(), AttributeValue::S(prev.clone()));
    forged.insert(
        "hash".into(),
        AttributeValue::S(curfew_core::trail::record_hash("config", 2, &prev, &body)),
    );
    put_record(&hub, forged, 2);

    let (report, _) = json_exit(&hub, &["audit", "verify"], 1);
    let first_problem = &report["chain_problems"][0];
    assert_eq!(first_problem["chain"], "config");
    assert_eq!(first_problem["seq"], 3, "{report}");
    assert!(
        first_problem["problem"]
            .as_str()
            .unwrap()
            .contains("does not follow record 2"),
        "{report}"
    );
}

#[test]
fn verify_names_two_records_swapped_in_the_table() {
    let hub = three_config_records();
    let (second, third) = (
        record_item(&hub, "config", 2),
        record_item(&hub, "config", 3),
    );
    put_record(&hub, third, 2);
    put_record(&hub, second, 3);

    let (report, _) = json_exit(&hub, &["audit", "verify"], 1);
    let first_problem = &report["chain_problems"][0];
    assert_eq!(first_problem["chain"], "config");
    assert_eq!(first_problem["seq"], 2, "{report}");
    assert!(
        first_problem["problem"]
            .as_str()
            .unwrap()
            .contains("does not follow record 1"),
        "{report}"
    );
}

#[test]
fn signed_heads_verify_with_the_hubs_key_and_not_with_another() {
    let (hub, account) = TestHub::with_fleet(4, 0);
    let select = format!("account={account},tag:env=dev");
    let keyed = |args: &[&str], key: &str| {
        let out = hub
            .cmd()
            .env("CURFEW_AUDIT_KEY", key)
            .args(args)
            .args(["--output", "json"])
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null),
        )
    };
    // Everything written with the key: the account was added without one, so re-add it.
    let (code, _) = keyed(&["stop", "--select", &select, "--wait"], KEY);
    assert_eq!(code, Some(0));
    let (code, report) = keyed(&["audit", "verify"], KEY);
    // The config chain's head (the account `with_fleet` added) is unsigned.
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["signatures_checked"], true);
    let problems = report["chain_problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["chain"], "config");
    assert!(problems[0]["problem"]
        .as_str()
        .unwrap()
        .contains("signature"));

    let other = "another-key-that-is-also-long-enough-here";
    let (code, report) = keyed(&["audit", "verify"], other);
    assert_eq!(code, Some(1));
    // The config chain and the stop's delivery chain.
    assert_eq!(
        report["chain_problems"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    assert_fails(
        hub.cmd()
            .env("CURFEW_AUDIT_KEY", "short")
            .args(["audit", "verify"]),
        2,
        &["CURFEW_AUDIT_KEY"],
    );
}

#[test]
fn an_export_verifies_offline_and_a_tampered_copy_does_not() {
    let (hub, _) = stopped_and_started();
    // A second record in the config chain, to swap with its first.
    add_schedule(&hub, "nightly");
    let scratch = Scratch::new();
    let file = scratch.0.join("audit.jsonl");
    let file_arg = file.to_str().unwrap();

    let summary = hub.json(&["audit", "export", file_arg]);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(summary["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(
        (summary["records"].clone(), summary["chains"].clone()),
        (json!(4), json!(3))
    );
    assert_eq!(summary["heads"].as_array().unwrap().len(), 3);
    let lines = json_lines(&String::from_utf8(bytes.clone()).unwrap());
    assert_eq!(lines.len(), 7, "4 records and 3 heads");
    assert!(lines[..4].iter().all(|l| l["type"] == "record"));
    assert!(lines[4..].iter().all(|l| l["type"] == "head"));
    assert_eq!(
        scratch.entries(),
        BTreeSet::from(["audit.jsonl".to_string()]),
        "no temp file left"
    );

    // Offline: no endpoint, no table.
    let offline = |path: &str, code: i32| {
        let out = common::curfew()
            .args(["audit", "verify", "--file", path, "--output", "json"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let clean = offline(file_arg, 0);
    assert_eq!(clean["sha256"], summary["sha256"]);
    assert_eq!(clean["chain_problems"], json!([]));

    // Two records of one chain swapped in the file, and a record's actor rewritten.
    let text: Vec<String> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    // The first of the config chain's two.
    let config_chain = lines.iter().position(|l| l["chain"] == "config").unwrap();
    assert_eq!(lines[config_chain + 1]["chain"], "config");
    let mut swapped = text.clone();
    let (a, b) = (
        swapped[config_chain].clone(),
        swapped[config_chain + 1].clone(),
    );
    let mut first: Value = serde_json::from_str(&a).unwrap();
    let mut second: Value = serde_json::from_str(&b).unwrap();
    std::mem::swap(&mut first["seq"], &mut second["seq"]);
    swapped[config_chain] = second.to_string();
    swapped[config_chain + 1] = first.to_string();
    let reordered = scratch.0.join("reordered.jsonl");
    std::fs::write(&reordered, swapped.join("\n")).unwrap();
    let report = offline(reordered.to_str().unwrap(), 1);
    assert_eq!(
        report["chain_problems"][0]["chain"],
        lines[config_chain]["chain"]
    );
    assert_eq!(report["chain_problems"][0]["seq"], 1);

    let mut edited = text.clone();
    edited[0] = edited[0].replace("arn:aws:", "arn:aws-forged:");
    assert_ne!(edited[0], text[0], "the first record names an ARN");
    let tampered = scratch.0.join("edited.jsonl");
    std::fs::write(&tampered, edited.join("\n")).unwrap();
    let report = offline(tampered.to_str().unwrap(), 1);
    assert!(
        report["chain_problems"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("edited"),
        "{report}"
    );

    let out = hub.cmd().args(["audit", "export", "-"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(json_lines(&String::from_utf8_lossy(&out.stdout)), lines);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 4 records in 3 chains to -"));
}
