//! `curfew-scale`'s stop and start waves (`curfew_tests::scale`) over many fleet shapes, at a
//! size that runs in seconds: every shape must stop and restore every target exactly, skip the
//! targets seeded asleep with DESIGN.md's reasons, and count one task per target. The full-size
//! runs are `make bench`'s.

use std::collections::BTreeMap;

use curfew_core::chunk::MAX_CHUNK_TARGETS;
use curfew_core::decision::Action;
use curfew_core::operation::OpStatus;
use curfew_tests::scale::{run, seed_plan, Fleet, FleetShape, Problem};
use proptest::prelude::*;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

proptest! {
    // Each case seeds a fleet and runs two whole waves; 24 of them take a few seconds.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_fleet_shape_stops_and_restores_every_target_exactly(
        targets in 1usize..=300,
        accounts in 1usize..=40,
        regions in 1usize..=3,
        concurrency in 1usize..=8,
        asleep_every in prop_oneof![Just(0usize), 1usize..=7],
    ) {
        let shape = FleetShape { targets, accounts, regions, concurrency, asleep_every, big_account: 0 };
        let report = block_on(run(&shape));
        // One account plan per account, and one more task message per hundred of its targets
        // after the first hundred.
        let (_, seeded) = seed_plan(&shape);
        let mut per_account: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &seeded {
            *per_account.entry(s.target.account.as_str()).or_default() += 1;
        }
        // Every account gets a plan; its worker sends on every chunk but the one it works.
        let chunks_sent_on: u64 =
            per_account.values().map(|n| n.div_ceil(MAX_CHUNK_TARGETS) as u64 - 1).sum();
        let task_messages = accounts as u64 + chunks_sent_on;
        let problems: Vec<String> = report.problems().take(5).map(|p| p.to_string()).collect();
        prop_assert!(problems.is_empty(), "{:?}: {:?}", shape, problems);
        // One in `asleep_every` (none for 0).
        let asleep = targets.checked_div(asleep_every).unwrap_or(0);
        prop_assert_eq!((report.seeded, report.seeded_asleep), (targets, asleep));
        for wave in [&report.stop, &report.start] {
            prop_assert_eq!(wave.status, Some(OpStatus::Succeeded));
            prop_assert_eq!(wave.tasks, targets);
            prop_assert_eq!(wave.counts.total, targets as u64);
            prop_assert_eq!(wave.counts.succeeded, (targets - asleep) as u64);
            prop_assert_eq!(wave.counts.skipped, asleep as u64);
            prop_assert_eq!(wave.counts.failed + wave.counts.dead_lettered, 0);
            prop_assert_eq!((wave.checked, wave.checked_asleep), (targets, asleep));
            prop_assert_eq!(wave.task_sends.messages, task_messages);
            prop_assert!(wave.store.total() > 0 && wave.spoke_calls > 0);
        }
        prop_assert!(report.is_clean());
    }
}

#[test]
fn a_shape_that_once_seeded_node_groups_already_stopped_checks_out() {
    // 100 targets in 3 accounts x 1 region used to seed target 51 (group-17 of the second
    // account, a node group) at 0/2/0 — its stopped sizes — so the stop skipped it and the
    // check for its baseline panicked.
    let shape = FleetShape {
        targets: 100,
        accounts: 3,
        regions: 1,
        concurrency: 4,
        asleep_every: 0,
        big_account: 0,
    };
    let report = block_on(run(&shape));
    assert!(
        report.is_clean(),
        "{:?}",
        report.problems().take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        (report.stop.counts.succeeded, report.start.counts.succeeded),
        (100, 100)
    );
}

#[test]
fn a_target_woken_by_hand_after_the_stop_is_reported_by_the_checks() {
    let shape = FleetShape {
        targets: 30,
        accounts: 2,
        regions: 1,
        concurrency: 2,
        asleep_every: 0,
        big_account: 0,
    };
    block_on(async {
        let fleet = Fleet::seed(&shape).await.expect("the fleet seeds");
        let mut report = fleet.wave(Action::Stop).await;
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.checked, 30);

        let woken = fleet.seeded[4].clone();
        let key = woken.target.key();
        fleet.spokes().resize(&key, woken.sizes);
        let op_id = report.op_id.clone().expect("the stop ran");
        report.problems.clear();
        fleet.check(&op_id, &mut report).await;

        assert_eq!(
            report.problems,
            vec![Problem::Sizes {
                key,
                found: Some(woken.sizes),
                expected: woken.target.kind.stopped_sizes(woken.sizes),
            }]
        );
        assert_eq!(report.checked, 29);
    });
}

#[test]
fn a_start_with_no_stop_before_it_fails_the_checks_of_every_awake_target() {
    let shape = FleetShape {
        targets: 12,
        accounts: 1,
        regions: 2,
        concurrency: 3,
        asleep_every: 0,
        big_account: 0,
    };
    block_on(async {
        let fleet = Fleet::seed(&shape).await.expect("the fleet seeds");
        let report = fleet.wave(Action::Start).await;
        // Nothing was stopped, so every start is skipped for want of a baseline, while the
        // checks expect each awake target to be restored by a SUCCEEDED task.
        assert_eq!(report.checked, 0);
        assert_eq!(report.counts.skipped, 12);
        let task_problems = report
            .problems
            .iter()
            .filter(|p| matches!(p, Problem::Task { .. }))
            .count();
        assert_eq!(task_problems, 12);
        assert!(report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::OperationCounts { .. })));
    });
}
