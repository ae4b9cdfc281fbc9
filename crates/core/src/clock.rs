//! Time, injected: every decision that depends on "now" reads it from a [`Clock`], so DST,
//! catch-up and lease expiry are testable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// A source of the current instant.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;

    /// Twelve hex digits that tell apart ids made in the same minute (a manual operation's):
    /// random, unless the clock is a replayable one.
    fn unique(&self) -> String {
        random_suffix()
    }
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that reads what it was last set to (tests, the demo's fast-forward day).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    /// The last id suffix handed out, when they count up instead of being random.
    counted: Option<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(at),
            counted: None,
        }
    }

    /// A clock stopped at `at` whose [`Clock::unique`] suffixes count up from 1 instead of
    /// being random, so a run that reads only this clock and a seeded generator replays
    /// exactly (the chaos suite's seeds: two operations started in one minute are ordered by
    /// their ids). Ids it makes repeat from one such clock to the next: one run, one store.
    pub fn replayable(at: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(at),
            counted: Some(AtomicU64::new(0)),
        }
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().expect("clock lock poisoned") = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().expect("clock lock poisoned");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock poisoned")
    }

    fn unique(&self) -> String {
        match &self.counted {
            Some(last) => format!("{:012x}", last.fetch_add(1, Ordering::SeqCst) + 1),
            None => random_suffix(),
        }
    }
}
