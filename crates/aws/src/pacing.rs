//! How fast curfew asks a spoke's API: two limits that follow the service's answers.
//!
//! - [`InFlight`]: how many requests of one burst are in flight at once, a limit that grows
//!   while the service answers and halves when it throttles (additive increase, multiplicative
//!   decrease). Live discovery of a large account-region makes thousands of EKS describe
//!   requests (one per cluster and one per node group). EKS does not publish its rate limits,
//!   so no fixed number of requests in flight is right for every account: too few and a
//!   3,000-node-group region takes minutes to list, too many and a throttled burst retries
//!   itself into a failed listing. [`InFlight`] starts at a modest limit, adds one request for
//!   every limit's worth of answers, and halves at a throttling error, once for all the
//!   requests sent at the limit that drew it.
//! - [`Pace`]: how many requests a second one process sends to one account-region's API. AWS
//!   throttles each account and region with a token bucket and refuses what comes over it;
//!   the worker's 50 execution environments each call a large account at once, and each one's
//!   blind backoff retried refusals into 30 refused attempts for every call let through (the
//!   simulation's model of the SDK's retry at 11787ad; docs/PERFORMANCE.md, "Refused calls"). A [`Pace`] sends at will until throttling
//!   *persists* (several of its latest answers refused), then paces its requests at a rate
//!   that falls by a share at each persisting throttle and grows back while the spoke answers.
//!   A throttle now and then (a busy moment of the service, which the SDK's own retry absorbs)
//!   never paces anything: the SDK's adaptive mode, which slows at every throttle, ran a wave
//!   with 5% of attempts throttled at random to 11.6 times its bound. In a worker invocation,
//!   a request whose turn would come after the invocation's calls must start
//!   ([`calls_start_by`]) is not sent: it fails at once with [`ErrorKind::OutOfTime`].

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use curfew_core::ports::{ErrorKind, PortError, PortResult};
use curfew_core::service::calls_start_by;
use tokio::sync::Semaphore;
use tokio::time::Instant;

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

/// The latest answers a [`Pace`] weighs: throttling persists when [`PERSISTING_THROTTLES`] of
/// them were throttled.
pub const PACE_WINDOW: usize = 10;
/// Throttled answers among the latest [`PACE_WINDOW`] that say the spoke refuses this pace. At
/// 5% of attempts throttled at random, and the SDK's second attempt, a request is throttled
/// about once in 400: three of ten comes about once in half a million windows.
pub const PERSISTING_THROTTLES: usize = 3;
/// The share of its rate a pace keeps at each persisting throttle.
pub const PACE_DECREASE: f64 = 0.7;
/// How much a pace grows a second while its answers are not throttled (20%: back from one fall
/// in about two seconds; by time, not by answers, so a slow pace recovers as soon as a fast
/// one).
pub const PACE_GROWTH: f64 = 0.2;
/// The slowest pace, in requests a second: a process keeps asking at least this often, so a
/// pace never starves its requests (the retry's backoff and the spoke's bucket do the rest).
pub const PACE_FLOOR: f64 = 0.2;
/// A pace past this many requests a second paces nothing worth pacing: it lets go.
pub const PACE_CEILING: f64 = 1000.0;
/// A pace nothing asked through for this long lets go: the spoke's bucket has refilled since,
/// and a process lives on between waves (a Lambda execution environment between invocations).
pub const PACE_IDLE: Duration = Duration::from_secs(60);

/// The requests one process sends to one account-region's API (one service), paced once the
/// spoke's throttling persists. Wrap each attempt, inside the retry loop, so a retry waits its
/// turn like any other request.
#[derive(Debug)]
pub struct Pace {
    state: Mutex<PaceState>,
}

#[derive(Debug)]
struct PaceState {
    /// Requests a second while paced; `None`: sent at will.
    rate: Option<f64>,
    /// The earliest start of the next request while paced.
    next: Instant,
    /// The latest answers since the pace last fell: when each request was sent, and whether it
    /// was throttled.
    recent: VecDeque<(Instant, bool)>,
    /// Bumped at every fall (and at letting go): an answer to a request sent before it says
    /// nothing of the new pace.
    epoch: u64,
    /// How many times the pace fell.
    falls: u64,
    /// When the pace last grew (or fell).
    grown: Instant,
}

impl Default for Pace {
    fn default() -> Self {
        Pace::new()
    }
}

impl Pace {
    /// A pace that sends at will until throttling persists.
    pub fn new() -> Self {
        Pace {
            state: Mutex::new(PaceState {
                rate: None,
                next: Instant::now(),
                recent: VecDeque::with_capacity(PACE_WINDOW),
                epoch: 0,
                falls: 0,
                grown: Instant::now(),
            }),
        }
    }

    /// Requests a second while paced; `None` while requests are sent at will.
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().expect("not poisoned").rate
    }

    /// How many times the pace fell (0: throttling never persisted).
    pub fn falls(&self) -> u64 {
        self.state.lock().expect("not poisoned").falls
    }

    /// Makes one request at its turn: at once while unpaced, else one interval of the rate
    /// after the request before it.
    pub async fn request<T, F, Fut>(&self, call: F) -> PortResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = PortResult<T>>,
    {
        // Wait for a turn; a pace that falls (or lets go) while this request waits moves its
        // turn, so each wait ends with a fresh look.
        loop {
            let turn = {
                let mut state = self.state.lock().expect("not poisoned");
                let now = Instant::now();
                if state.rate.is_some() && now - state.grown >= PACE_IDLE {
                    state.let_go();
                }
                match state.rate {
                    None => None,
                    Some(_) if state.next <= now => {
                        state.next = now + state.interval();
                        None
                    }
                    Some(_) => Some(state.next),
                }
            };
            match turn {
                // Waiting into the function's timeout would cut the task off mid-change with
                // its lease held: it goes back to the queue instead.
                Some(turn) if calls_start_by().is_some_and(|by| turn > by) => {
                    return Err(PortError::new(
                        ErrorKind::OutOfTime,
                        format!(
                            "paced at {:.1} calls a second: the next turn comes after this \
                             invocation's calls must start",
                            self.rate().unwrap_or_default()
                        ),
                    ));
                }
                Some(turn) => tokio::time::sleep_until(turn).await,
                None => break,
            }
        }
        let (sent, sent_in) = (
            Instant::now(),
            self.state.lock().expect("not poisoned").epoch,
        );
        let result = call().await;
        let throttled = matches!(&result, Err(e) if e.kind == ErrorKind::Throttled);
        self.state
            .lock()
            .expect("not poisoned")
            .answered(sent, sent_in, throttled);
        result
    }
}

impl PaceState {
    /// Weighs one answer: the pace falls when throttling persists and grows with every answer
    /// that was not throttled.
    fn answered(&mut self, sent: Instant, sent_in: u64, throttled: bool) {
        // Requests sent before the pace last fell were sent too fast: their answers were
        // already weighed in that fall.
        if sent_in != self.epoch {
            return;
        }
        if self.recent.len() == PACE_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((sent, throttled));
        let refused = self.recent.iter().filter(|(_, t)| *t).count();
        let now = Instant::now();
        if throttled && refused >= PERSISTING_THROTTLES {
            let rate = self.rate.unwrap_or_else(|| self.let_through());
            self.rate = Some((rate * PACE_DECREASE).max(PACE_FLOOR));
            self.grown = now;
            self.next = self.next.min(now + self.interval());
            self.recent.clear();
            self.epoch += 1;
            self.falls += 1;
        } else if !throttled {
            // Growth by time, not by answers: a slow pace must not take minutes to recover.
            let seconds = (now - self.grown).as_secs_f64().min(1.0 / PACE_GROWTH);
            self.grown = now;
            self.rate = self
                .rate
                .map(|rate| rate * (1.0 + PACE_GROWTH * seconds))
                .filter(|&rate| rate <= PACE_CEILING);
        }
    }

    /// Sends at will again; answers to requests sent before say nothing of what comes next.
    fn let_go(&mut self) {
        self.rate = None;
        self.recent.clear();
        self.epoch += 1;
    }

    /// The time between request starts at the current rate.
    fn interval(&self) -> Duration {
        self.rate
            .map_or(Duration::ZERO, |rate| Duration::from_secs_f64(1.0 / rate))
    }

    /// The rate the spoke let through while requests were sent at will: the answers that
    /// were not throttled over the time the latest requests were sent in.
    fn let_through(&self) -> f64 {
        let answered = self.recent.iter().filter(|(_, t)| !*t).count().max(1) as f64;
        let first = self.recent.front().map_or_else(Instant::now, |(at, _)| *at);
        // A burst sent within a moment tells little of a rate: weigh it over a tenth of a
        // second at least.
        let span = first.elapsed().max(Duration::from_millis(100));
        answered / span.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

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

    /// A spoke that refuses requests over `rate` a second (a token bucket holding `rate`
    /// tokens), as AWS APIs refuse them.
    struct RefusingSpoke {
        rate: f64,
        bucket: Mutex<(f64, Instant)>,
        let_through: AtomicUsize,
        refused: AtomicUsize,
    }

    impl RefusingSpoke {
        fn new(rate: f64) -> Self {
            RefusingSpoke {
                rate,
                bucket: Mutex::new((rate, Instant::now())),
                let_through: AtomicUsize::new(0),
                refused: AtomicUsize::new(0),
            }
        }

        /// One request: 50 ms, refused if the bucket is empty when it arrives.
        async fn answer(&self) -> PortResult<()> {
            let taken = {
                let mut bucket = self.bucket.lock().unwrap();
                let now = Instant::now();
                bucket.0 = (bucket.0 + (now - bucket.1).as_secs_f64() * self.rate).min(self.rate);
                bucket.1 = now;
                let taken = bucket.0 >= 1.0;
                if taken {
                    bucket.0 -= 1.0;
                }
                taken
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            if taken {
                self.let_through.fetch_add(1, Ordering::SeqCst);
                Ok(())
            } else {
                self.refused.fetch_add(1, Ordering::SeqCst);
                Err(throttled())
            }
        }
    }

    /// `processes` processes, each with its own pace (if `paced`) and ten requests at a time,
    /// make 200 requests each against `spoke`, every throttled attempt tried again after 50 ms.
    async fn many_processes_call(spoke: &RefusingSpoke, processes: usize, paced: bool) {
        let callers = (0..processes).map(|_| async {
            let pace = Pace::new();
            let requests = (0..10).map(|_| async {
                for _ in 0..20 {
                    loop {
                        let answer = if paced {
                            pace.request(|| spoke.answer()).await
                        } else {
                            spoke.answer().await
                        };
                        if answer.is_ok() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            });
            join_all(requests).await;
        });
        join_all(callers).await;
    }

    #[tokio::test(start_paused = true)]
    async fn paced_processes_sharing_a_refusing_spoke_are_refused_a_fraction_of_what_unpaced_ones_are(
    ) {
        let unpaced = RefusingSpoke::new(20.0);
        let started = Instant::now();
        many_processes_call(&unpaced, 5, false).await;
        let unpaced_took = started.elapsed();
        let paced = RefusingSpoke::new(20.0);
        let started = Instant::now();
        many_processes_call(&paced, 5, true).await;
        let paced_took = started.elapsed();

        assert_eq!(paced.let_through.load(Ordering::SeqCst), 1000);
        eprintln!(
            "refused: paced {} in {paced_took:?}, unpaced {} in {unpaced_took:?}",
            paced.refused.load(Ordering::SeqCst),
            unpaced.refused.load(Ordering::SeqCst)
        );
        let refused = |spoke: &RefusingSpoke| spoke.refused.load(Ordering::SeqCst);
        assert!(
            refused(&paced) * 10 < refused(&unpaced),
            "paced {} refused, unpaced {}",
            refused(&paced),
            refused(&unpaced)
        );
        // 1,000 requests at 20 a second take 50 s, paced or not; pacing must not cost much of
        // the spoke's rate.
        assert!(
            paced_took.as_secs_f64() < unpaced_took.as_secs_f64() * 1.2,
            "paced {paced_took:?}, unpaced {unpaced_took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_now_and_then_never_pace_the_requests() {
        let pace = Pace::new();
        for i in 0..1000 {
            // Two in every ten answers throttled, far more than chance gives at 5% of
            // attempts: still not persisting.
            let throttle = i % 10 == 3 || i % 10 == 8;
            let _ = pace
                .request(|| async move {
                    if throttle {
                        Err(throttled())
                    } else {
                        Ok(())
                    }
                })
                .await;
        }
        assert_eq!(pace.rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn persisting_throttles_pace_below_what_the_spoke_let_through_and_answers_let_go_again() {
        let pace = Pace::new();
        // Ten requests a second, every other one throttled: five let through a second. The
        // third throttle within ten answers paces the requests.
        for i in 0..5 {
            assert_eq!(pace.rate(), None, "unpaced before the third throttle");
            let _ = pace
                .request(|| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if i % 2 == 0 {
                        Err(throttled())
                    } else {
                        Ok(())
                    }
                })
                .await;
        }
        let rate = pace.rate().expect("paced after persisting throttles");
        assert!(rate <= 5.0 * PACE_DECREASE + 0.01, "{rate}");

        // Paced: one interval between request starts.
        let started = Instant::now();
        for _ in 0..3 {
            pace.request(|| async { Ok(()) }).await.unwrap();
        }
        assert!(started.elapsed() >= Duration::from_secs_f64(2.0 / (rate * 1.05)));

        // Growing 20% a second, from 3.5 a second to past 1,000 takes about half a minute.
        let paced_since = Instant::now();
        while pace.rate().is_some() {
            pace.request(|| async { Ok(()) }).await.unwrap();
            assert!(
                paced_since.elapsed() < Duration::from_secs(45),
                "still paced after {:?}",
                paced_since.elapsed()
            );
        }
        assert!(
            paced_since.elapsed() > Duration::from_secs(20),
            "let go after {:?}",
            paced_since.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pace_left_idle_for_a_minute_lets_go() {
        let pace = Pace::new();
        for _ in 0..PERSISTING_THROTTLES {
            let _ = pace.request(|| async { Err::<(), _>(throttled()) }).await;
        }
        assert!(pace.rate().is_some());
        tokio::time::sleep(PACE_IDLE - Duration::from_secs(1)).await;
        pace.request(|| async { Ok(()) }).await.unwrap();
        assert!(pace.rate().is_some(), "not idle long enough");

        tokio::time::sleep(PACE_IDLE).await;
        let started = Instant::now();
        pace.request(|| async { Ok(()) }).await.unwrap();
        assert_eq!(pace.rate(), None);
        assert_eq!(started.elapsed(), Duration::ZERO, "sent at once");
        assert_eq!(pace.falls(), 1, "letting go is not a fall");
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_after_the_invocations_calls_must_start_is_refused_at_once_and_not_sent() {
        let pace = Pace::new();
        for _ in 0..PERSISTING_THROTTLES {
            let _ = pace.request(|| async { Err::<(), _>(throttled()) }).await;
        }
        let interval = Duration::from_secs_f64(1.0 / pace.rate().expect("paced"));
        let by = Instant::now() + interval * 3;
        let sent = AtomicUsize::new(0);
        let send = || async {
            sent.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        let refused = curfew_core::service::calls_starting_by(by, async {
            for _ in 0..20 {
                if let Err(e) = pace.request(send).await {
                    return Some(e);
                }
            }
            None
        })
        .await
        .expect("a request whose turn comes too late is refused");
        assert_eq!(refused.kind, ErrorKind::OutOfTime, "{refused}");
        assert!(Instant::now() <= by, "refused without waiting for its turn");
        let before = sent.load(Ordering::SeqCst);
        assert!(
            (2..=4).contains(&before),
            "{before} sent at the pace before the refusal"
        );

        // Outside such an invocation the same request waits its turn and is sent.
        let waited = Instant::now();
        pace.request(send).await.unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), before + 1);
        assert!(waited.elapsed() > Duration::ZERO, "it waited for its turn");
    }
}
