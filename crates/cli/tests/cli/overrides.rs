//! `curfew override` against a hub: what is stored is what skip reasons will quote.

use crate::common::{assert_fails, TestHub};

#[test]
fn an_override_for_a_duration_is_stored_in_whole_seconds() {
    let hub = TestHub::new();
    let stored = hub.json(&["override", "--select", "kind=asg", "--awake-until", "90m"]);
    let until = stored["awake_until"].as_str().unwrap();
    assert!(
        until.ends_with('Z') && !until.contains('.'),
        "awake_until {until:?} is not whole seconds"
    );
    let listed = hub.json(&["override", "--list"]);
    assert_eq!(listed[0]["awake_until"], stored["awake_until"]);
}

#[test]
fn override_add_list_and_remove_are_subcommands_and_the_flags_stay_their_aliases() {
    let hub = TestHub::new();
    let added = hub.json(&[
        "override",
        "add",
        "--select",
        "tag:team=data",
        "--awake-until",
        "3h",
    ]);
    let aliased = hub.json(&["override", "--select", "kind=asg", "--awake-until", "2h"]);
    let listed = hub.json(&["override", "list"]);
    assert_eq!(
        listed,
        hub.json(&["override", "--list"]),
        "the alias lists the same"
    );
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            aliased["id"].as_str().unwrap(),
            added["id"].as_str().unwrap()
        ],
        "soonest to expire first"
    );

    let id = added["id"].as_str().unwrap();
    assert_eq!(
        hub.json(&["override", "remove", id]),
        serde_json::json!({ "removed": id })
    );
    let other = aliased["id"].as_str().unwrap();
    assert_eq!(
        hub.json(&["override", "--remove", other]),
        serde_json::json!({ "removed": other })
    );
    assert_eq!(hub.json(&["override", "list"]), serde_json::json!([]));
    assert_fails(
        hub.cmd().args(["override", "remove", id]),
        1,
        &["no override with id", "curfew override list"],
    );
}

#[test]
fn override_add_refuses_bad_input_naming_the_field_and_stores_nothing() {
    let hub = TestHub::new();
    assert_fails(
        hub.cmd().args([
            "override",
            "add",
            "--select",
            "kind=asg",
            "--awake-until",
            "whenever",
        ]),
        2,
        &["--awake-until"],
    );
    assert_fails(
        hub.cmd().args([
            "override",
            "add",
            "--select",
            "kind=",
            "--awake-until",
            "1h",
        ]),
        2,
        &["--select"],
    );
    assert_fails(
        hub.cmd().args(["override", "add", "--awake-until", "1h"]),
        2,
        &["--select"],
    );
    // A subcommand and the flag forms do not mix.
    assert_fails(
        hub.cmd().args(["override", "list", "--list"]),
        2,
        &["--list"],
    );
    assert_eq!(hub.json(&["override", "list"]), serde_json::json!([]));
}
