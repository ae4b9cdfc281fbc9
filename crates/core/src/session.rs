//! The STS session cache: one set of credentials per spoke role, reused until shortly before
//! it expires, with at most one AssumeRole in flight per role (single flight), so a burst of
//! 1,000 tasks for one account makes one STS call, not 1,000.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Mutex as AsyncMutex;

use crate::clock::Clock;
use crate::metrics::{self, Metric};

/// Credentials (or anything derived from them, such as SDK clients) with their expiry.
#[derive(Clone, Debug)]
pub struct Session<C> {
    /// The cached value.
    pub value: C,
    /// When the credentials behind it expire.
    pub expires_at: DateTime<Utc>,
}

type Slot<C> = Arc<AsyncMutex<Option<Session<C>>>>;

/// Caches sessions per key (account + role + external id).
pub struct SessionCache<C> {
    slots: Mutex<HashMap<String, Slot<C>>>,
    refresh_before: Duration,
    clock: Arc<dyn Clock>,
}

impl<C: Clone + Send> SessionCache<C> {
    /// A cache that refreshes a session `refresh_before` its expiry.
    pub fn new(clock: Arc<dyn Clock>, refresh_before: Duration) -> Self {
        SessionCache {
            slots: Mutex::new(HashMap::new()),
            refresh_before,
            clock,
        }
    }

    /// The cached session for `key`, or a new one from `assume` if there is none or it is
    /// about to expire. Concurrent callers for the same key wait for one `assume`; callers for
    /// other keys are not blocked. A failed `assume` is not cached.
    pub async fn get_or_assume<F, Fut, E>(&self, key: &str, assume: F) -> Result<C, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Session<C>, E>>,
    {
        let slot = {
            let mut slots = self.slots.lock().expect("session cache lock poisoned");
            slots.entry(key.to_string()).or_default().clone()
        };
        let mut session = slot.lock().await;
        if let Some(s) = session.as_ref() {
            if s.expires_at - self.refresh_before > self.clock.now() {
                metrics::emit(Metric::StsCacheHits, 1.0, None, None);
                return Ok(s.value.clone());
            }
        }
        metrics::emit(Metric::StsCacheMisses, 1.0, None, None);
        let fresh = assume().await?;
        let value = fresh.value.clone();
        *session = Some(fresh);
        Ok(value)
    }

    /// Forgets the session for `key` (e.g. after the spoke rejected its credentials).
    pub fn invalidate(&self, key: &str) {
        self.slots
            .lock()
            .expect("session cache lock poisoned")
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn setup() -> (Arc<ManualClock>, SessionCache<u32>, Arc<AtomicUsize>) {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
        ));
        let cache = SessionCache::new(clock.clone(), Duration::minutes(5));
        (clock, cache, Arc::new(AtomicUsize::new(0)))
    }

    async fn assume(clock: &ManualClock, calls: &AtomicUsize) -> Result<Session<u32>, String> {
        let n = calls.fetch_add(1, Ordering::SeqCst) as u32 + 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok(Session {
            value: n,
            expires_at: clock.now() + Duration::hours(1),
        })
    }

    #[tokio::test]
    async fn a_session_is_reused_until_shortly_before_it_expires() {
        let (clock, cache, calls) = setup();
        assert_eq!(
            cache.get_or_assume("a", || assume(&clock, &calls)).await,
            Ok(1)
        );
        clock.advance(Duration::minutes(54));
        assert_eq!(
            cache.get_or_assume("a", || assume(&clock, &calls)).await,
            Ok(1)
        );
        clock.advance(Duration::minutes(2));
        assert_eq!(
            cache.get_or_assume("a", || assume(&clock, &calls)).await,
            Ok(2)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_for_one_role_make_one_assume_role_call() {
        let (clock, cache, calls) = setup();
        let cache = Arc::new(cache);
        let mut handles = Vec::new();
        for _ in 0..50 {
            let (cache, clock, calls) = (cache.clone(), clock.clone(), calls.clone());
            handles.push(tokio::spawn(async move {
                cache.get_or_assume("a", || assume(&clock, &calls)).await
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap(), Ok(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache
            .get_or_assume("b", || assume(&clock, &calls))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_assume_is_not_cached() {
        let (clock, cache, calls) = setup();
        let failed: Result<u32, String> = cache
            .get_or_assume("a", || async { Err("AccessDenied".to_string()) })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            cache.get_or_assume("a", || assume(&clock, &calls)).await,
            Ok(1)
        );
    }
}
