//! The poller's reads per tick (issue 9: "poller items read per tick with 100,000 schedules
//! defined and 1,000 due"): `defined` schedules of which `due` are due, one tick, and what it
//! read, per due schedule.
//!
//! Over the in-memory store ([`in_memory`]) the reads are counted through
//! [`CountingStore`]: the items each port call returned, and the DynamoDB items the adapter
//! reads for those calls ([`crate::counting::dynamo`]). On the emulator ([`on_emulator`]) the
//! real adapter runs, and an interceptor on its DynamoDB client observes every request: each
//! Query's `Count` and `ScannedCount` and items, and each GetItem.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use chrono::{DateTime, Duration, TimeZone, Utc};
use curfew_aws::DynamoStore;
use curfew_core::clock::ManualClock;
use curfew_core::fakes;
use curfew_core::ports::{PortResult, ScheduleStore, StateStore};
use curfew_core::schedule::Schedule;
use curfew_core::service::poller::{self, TickReport};
use futures::{StreamExt, TryStreamExt};

use crate::counting::dynamo::DynamoUse;
use crate::counting::CountingStore;

/// Schedules defined, and of them due at the tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollShape {
    /// Schedules in the table.
    pub defined: usize,
    /// Of them, due at the tick (the others fire the next day).
    pub due: usize,
}

/// The tick's instant: Monday 4 January 2027, 18:00 UTC.
pub fn tick_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap()
}

/// The schedules of `shape`: every one stops at 18:00 UTC daily a selector that matches
/// nothing; the first `due` are due at `now`, the others next fire a day later.
pub fn schedules(shape: &PollShape, now: DateTime<Utc>) -> Vec<Schedule> {
    // Parsed once and copied: parsing 100,000 cron expressions would be most of the bench.
    let daily = crate::stop_schedule("poll", "0 18 * * *", "name=nothing-matches", now);
    (0..shape.defined)
        .map(|i| {
            let mut schedule = daily.clone();
            schedule.name = format!("poll-{i:06}");
            if i >= shape.due {
                schedule.next_fire = Some(now + Duration::days(1));
            }
            schedule
        })
        .collect()
}

/// What one tick read over the in-memory store.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPoll {
    /// The shape.
    pub shape: PollShape,
    /// Operations the tick created.
    pub fired: usize,
    /// Items the poller's reads returned through the port.
    pub items_returned: u64,
    /// What the DynamoDB adapter sends for the tick's calls.
    pub dynamo: DynamoUse,
}

impl MemoryPoll {
    /// Port items returned per due schedule.
    pub fn items_returned_per_due(&self) -> f64 {
        self.items_returned as f64 / self.shape.due.max(1) as f64
    }

    /// DynamoDB items read per due schedule (the adapter's reads for the same calls).
    pub fn items_read_per_due(&self) -> f64 {
        self.dynamo.items_read as f64 / self.shape.due.max(1) as f64
    }
}

/// Seeds `shape` into an in-memory store (not counted) and counts one tick's reads.
///
/// # Errors
/// When seeding or the tick fails.
pub async fn in_memory(shape: &PollShape) -> PortResult<MemoryPoll> {
    let now = tick_time();
    let (mut hub, store, _, _, _) = fakes::hub(Arc::new(ManualClock::new(now)));
    for schedule in schedules(shape, now) {
        store.create_schedule(&schedule).await?;
    }
    let counted = Arc::new(CountingStore::new(store));
    hub.store = counted.clone();
    let report = poller::tick(&hub).await?;
    let counts = counted.counts();
    Ok(MemoryPoll {
        shape: *shape,
        fired: fired(&report),
        items_returned: counts.items_returned,
        dynamo: counts.dynamo,
    })
}

/// Schedule fires the tick created (its drift check, if any, is not one).
fn fired(report: &TickReport) -> usize {
    report.created.len() - usize::from(report.drift_check.is_some())
}

/// What the emulator answered the adapter during a tick, request by request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Query requests (pages).
    pub queries: u64,
    /// The Queries' `Count`s summed: items they returned.
    pub query_count: u64,
    /// Their `ScannedCount`s summed: items they read before any filter.
    pub query_scanned: u64,
    /// GetItem requests.
    pub gets: u64,
    /// Of them, those that found an item.
    pub gets_found: u64,
    /// Every other DynamoDB request.
    pub others: u64,
}

impl Observed {
    /// Items the tick read from DynamoDB: every item a Query scanned, every item a GetItem
    /// returned.
    pub fn items_read(&self) -> u64 {
        self.query_scanned + self.gets_found
    }
}

/// Records what the DynamoDB client receives, for [`on_emulator`].
#[derive(Clone, Debug, Default)]
struct Observer(Arc<Mutex<Observed>>);

impl Intercept for Observer {
    fn name(&self) -> &'static str {
        "curfew-poll-bench"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        let mut seen = self.0.lock().expect("not poisoned");
        if let Some(query) = output.downcast_ref::<QueryOutput>() {
            seen.queries += 1;
            seen.query_count += query.count.max(0) as u64;
            seen.query_scanned += query.scanned_count.max(0) as u64;
        } else if let Some(get) = output.downcast_ref::<GetItemOutput>() {
            seen.gets += 1;
            seen.gets_found += u64::from(get.item.is_some());
        } else {
            seen.others += 1;
        }
        Ok(())
    }
}

/// What one tick read on the emulator.
#[derive(Clone, Debug, PartialEq)]
pub struct EmulatorPoll {
    /// The shape.
    pub shape: PollShape,
    /// Operations the tick created.
    pub fired: usize,
    /// What the adapter was answered.
    pub observed: Observed,
    /// Seconds seeding the schedules took.
    pub seed_s: f64,
}

impl EmulatorPoll {
    /// DynamoDB items read per due schedule.
    pub fn items_read_per_due(&self) -> f64 {
        self.observed.items_read() as f64 / self.shape.due.max(1) as f64
    }
}

/// Seeds `shape` on a fresh hub on the emulator (started once per process) and observes one
/// tick of the real poller over the real DynamoDB adapter.
///
/// # Errors
/// When seeding or the tick fails.
pub async fn on_emulator(shape: &PollShape) -> PortResult<EmulatorPoll> {
    let now = tick_time();
    let mut t = crate::spawn_hub(now, 0).await;
    let seeding = std::time::Instant::now();
    let plain = t.hub.store.clone();
    let seeds = futures::stream::iter(schedules(shape, now))
        .map(|schedule| {
            let plain = plain.clone();
            async move { plain.create_schedule(&schedule).await }
        })
        .buffer_unordered(8);
    seeds.try_collect::<Vec<()>>().await?;
    let seed_s = seeding.elapsed().as_secs_f64();
    let observer = Observer::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&t.sdk)
            .interceptor(observer.clone())
            .build(),
    );
    let store: Arc<dyn StateStore> = Arc::new(DynamoStore::new(client, &t.config.table));
    t.hub.store = store;
    let report = poller::tick(&t.hub).await?;
    let observed = observer.0.lock().expect("not poisoned").clone();
    Ok(EmulatorPoll {
        shape: *shape,
        fired: fired(&report),
        observed,
        seed_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_due_schedules_are_due_and_the_others_fire_a_day_later() {
        let now = tick_time();
        let all = schedules(
            &PollShape {
                defined: 10,
                due: 3,
            },
            now,
        );
        let due: Vec<bool> = all.iter().map(|s| s.next_fire == Some(now)).collect();
        assert_eq!(
            due,
            [true, true, true, false, false, false, false, false, false, false]
        );
    }
}
