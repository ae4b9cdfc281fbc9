//! The poller's reads grow with the schedules due, not with the schedules defined (issue 9's
//! goal: at most 1.5 items read per due schedule), over the in-memory store.

use curfew_tests::poll::{in_memory, PollShape};

#[tokio::test]
async fn a_tick_reads_about_one_item_per_due_schedule_not_every_schedule_defined() {
    let shape = PollShape {
        defined: 2_000,
        due: 20,
    };
    let tick = in_memory(&shape).await.expect("the tick runs");
    assert_eq!(tick.fired, shape.due);
    // What the poller's port calls returned: the due schedules, not the defined ones.
    assert!(
        tick.items_returned_per_due() <= 1.5,
        "{:.2} items returned per due schedule: {tick:?}",
        tick.items_returned_per_due()
    );
    // What the DynamoDB adapter reads for them: each due schedule's index item, no more.
    assert!(
        tick.items_read_per_due() <= 1.5,
        "{:.2} DynamoDB items read per due schedule: {tick:?}",
        tick.items_read_per_due()
    );
}
