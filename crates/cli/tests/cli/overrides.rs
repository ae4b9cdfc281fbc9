//! `curfew override` against a hub: what is stored is what skip reasons will quote.

use crate::common::TestHub;

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
