//! How many requests of one burst are in flight at once: a limit that grows while the service
//! answers and halves when it throttles (additive increase, multiplicative decrease).
//!
//! Live discovery of a large account-region makes thousands of EKS describe requests (one per
//! cluster and one per node group). EKS does not publish its rate limits, so no fixed number of
//! requests in flight is right for every account: too few and a 3,000-node-group region takes
//! minutes to list, too many and a throttled burst retries itself into a failed listing.
//! [`InFlight`] starts at a modest limit, adds one request for every limit's worth of answers,
//! and halves at a throttling error, once for all the requests sent at the limit that drew it.

use std::future::Future;
use std::sync::Mutex;

use curfew_core::ports::{ErrorKind, PortResult};
use tokio::sync::Semaphore;

/// The requests of one burst (one account-region's listing), at most [`InFlight::limit`] at a
/// time. Wrap each attempt, inside the retry loop, so the backoff between attempts holds no
/// place in flight.
#[derive(Debug)]
pub struct InFlight {
    places: Semaphore,
    floor: usize,
    ceiling: usize,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// Requests allowed in flight now.
    limit: usize,
    /// Answers since the limit last changed.
    answered: usize,
    /// Bumped at every decrease: a request sent before it was answered by that decrease.
    epoch: u64,
    /// Places to retire as requests return (a decrease cannot take back places in use).
    owed: usize,
}

impl InFlight {
    /// A burst allowed `start` requests in flight, never fewer than `floor` nor more than
    /// `ceiling` (`start` is kept within them; `floor` is at least one).
    pub fn new(start: usize, floor: usize, ceiling: usize) -> Self {
        let floor = floor.max(1);
        let ceiling = ceiling.max(floor);
        let start = start.clamp(floor, ceiling);
        InFlight {
            places: Semaphore::new(start),
            floor,
            ceiling,
            window: Mutex::new(Window {
                limit: start,
                answered: 0,
                epoch: 0,
                owed: 0,
            }),
        }
    }

    /// Requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.window.lock().expect("not poisoned").limit
    }

    /// Makes one request when a place is free. A throttling error halves the limit (once for
    /// every request sent at the same limit); every limit's worth of answers adds one place.
    pub async fn request<T, F, Fut>(&self, call: F) -> PortResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = PortResult<T>>,
    {
        let place = self
            .places
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let sent_in = self.window.lock().expect("not poisoned").epoch;
        let result = call().await;
        let mut window = self.window.lock().expect("not poisoned");
        match &result {
            Err(e) if e.kind == ErrorKind::Throttled => {
                // The requests already in flight were sent at the old limit: their throttles
                // are the same signal, not a reason to halve again.
                if sent_in == window.epoch {
                    let halved = (window.limit / 2).max(self.floor);
                    window.owed += window.limit - halved;
                    window.limit = halved;
                    window.answered = 0;
                    window.epoch += 1;
                    // Places free now are retired at once; the rest as their requests return.
                    let retired = self.places.forget_permits(window.owed);
                    window.owed -= retired;
                }
            }
            // Anything else says nothing about the rate; nor does an answer to a request sent
            // at a limit since halved.
            Err(_) => {}
            Ok(_) if sent_in != window.epoch => {}
            Ok(_) => {
                window.answered += 1;
                if window.answered >= window.limit && window.limit < self.ceiling {
                    window.answered = 0;
                    window.limit += 1;
                    if window.owed > 0 {
                        window.owed -= 1;
                    } else {
                        self.places.add_permits(1);
                    }
                }
            }
        }
        if window.owed > 0 {
            window.owed -= 1;
            place.forget();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use curfew_core::ports::PortError;
    use futures::future::join_all;
    use tokio::sync::Barrier;

    use super::*;

    fn throttled() -> PortError {
        PortError::new(ErrorKind::Throttled, "Rate exceeded")
    }

    /// Runs `n` requests at once through `in_flight`, each holding its place until every
    /// request that got one has started; returns the most that were in flight together. Each
    /// fails with an error that is not a throttle, so the limit stays where it is.
    async fn most_at_once(in_flight: &InFlight, n: usize) -> usize {
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let requests = (0..n).map(|_| {
            in_flight.request(|| async {
                let here = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(here, Ordering::SeqCst);
                // Let every other request that can start, start.
                for _ in 0..n {
                    tokio::task::yield_now().await;
                }
                now.fetch_sub(1, Ordering::SeqCst);
                Err::<(), _>(PortError::new(ErrorKind::Other, "no such node group"))
            })
        });
        join_all(requests).await;
        most.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn the_limit_grows_by_one_for_every_limits_worth_of_answers_up_to_the_ceiling() {
        let in_flight = InFlight::new(2, 1, 4);
        let mut limits = Vec::new();
        for _ in 0..12 {
            in_flight.request(|| async { Ok(()) }).await.unwrap();
            limits.push(in_flight.limit());
        }
        assert_eq!(limits, [2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4]);
    }

    #[tokio::test]
    async fn requests_sent_together_and_throttled_together_halve_the_limit_once() {
        let in_flight = InFlight::new(8, 1, 64);
        let all_sent = Arc::new(Barrier::new(8));
        let requests = (0..8).map(|_| {
            let all_sent = all_sent.clone();
            in_flight.request(|| async move {
                all_sent.wait().await;
                Err::<(), _>(throttled())
            })
        });
        let results = join_all(requests).await;
        assert!(results.iter().all(|r| r.is_err()));
        assert_eq!(in_flight.limit(), 4, "halved once, not eight times");
        // A throttle of a request sent at the new limit halves it again.
        let again = in_flight.request(|| async { Err::<(), _>(throttled()) });
        assert!(again.await.is_err());
        assert_eq!(in_flight.limit(), 2);
    }

    #[tokio::test]
    async fn the_limit_never_falls_below_its_floor_and_other_errors_leave_it_alone() {
        let in_flight = InFlight::new(4, 3, 8);
        in_flight
            .request(|| async { Err::<(), _>(throttled()) })
            .await
            .unwrap_err();
        assert_eq!(in_flight.limit(), 3);
        in_flight
            .request(|| async { Err::<(), _>(PortError::new(ErrorKind::Other, "no such cluster")) })
            .await
            .unwrap_err();
        assert_eq!(in_flight.limit(), 3);
    }

    #[tokio::test]
    async fn no_more_requests_are_in_flight_than_the_limit_allows_before_and_after_it_halves() {
        let in_flight = InFlight::new(6, 1, 6);
        assert_eq!(most_at_once(&in_flight, 30).await, 6);
        in_flight
            .request(|| async { Err::<(), _>(throttled()) })
            .await
            .unwrap_err();
        assert_eq!(in_flight.limit(), 3);
        assert_eq!(
            most_at_once(&in_flight, 30).await,
            3,
            "the places given up are not used again"
        );
    }

    #[tokio::test]
    async fn a_limit_halved_while_requests_are_in_flight_takes_its_places_back_as_they_return() {
        let in_flight = InFlight::new(8, 1, 8);
        let all_sent = Arc::new(Barrier::new(8));
        // Seven succeed, one is throttled: the limit halves while seven places are in use.
        let requests = (0..8).map(|i| {
            let all_sent = all_sent.clone();
            in_flight.request(move || async move {
                all_sent.wait().await;
                if i == 0 {
                    Err(throttled())
                } else {
                    Ok(())
                }
            })
        });
        join_all(requests).await;
        assert_eq!(in_flight.limit(), 4);
        assert_eq!(most_at_once(&in_flight, 30).await, 4);
        // ... and grows back one place at a time, to its ceiling.
        for _ in 0..(4 + 5 + 6 + 7) {
            in_flight.request(|| async { Ok(()) }).await.unwrap();
        }
        assert_eq!(in_flight.limit(), 8);
        assert_eq!(most_at_once(&in_flight, 30).await, 8);
    }
}
