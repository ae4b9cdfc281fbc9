//! The binary as Lambda starts it. (Having a test here is also what makes `cargo test` build
//! the binary itself, which the integration suite's cold-start smoke run spawns.)

#[test]
fn the_binary_refuses_to_start_without_its_state_table_and_names_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_curfew-poller"))
        .env_clear()
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(stderr.contains("CURFEW_TABLE"), "{stderr}");
}
