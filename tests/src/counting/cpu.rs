//! CPU clocks for `curfew-scale`'s CPU time per target: the process's CPU time, a thread's CPU
//! time, and [`FakeTime`], the thread CPU time spent inside the fakes' calls (and the counting
//! around them), so it can be taken out of what a wave cost.
//!
//! Thread CPU time around a call is that call's own CPU time only if the call runs on one
//! thread from start to end: true of the in-memory fakes, whose futures finish on their first
//! poll (they never wait), not of anything that awaits a timer or a channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clock ids exist on every Linux and
    // macOS, and clock_gettime only writes through the pointer.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time this process has used so far, every thread of it.
pub fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time the calling thread has used so far.
pub fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Thread CPU time spent inside timed calls, and how many there were.
#[derive(Debug, Default)]
pub struct FakeTime {
    nanos: AtomicU64,
    calls: AtomicU64,
}

/// The totals of a [`FakeTime`] at some moment; subtract two with [`FakeTotals::since`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeTotals {
    /// Thread CPU time inside the timed calls.
    pub cpu: Duration,
    /// Timed calls.
    pub calls: u64,
}

impl FakeTotals {
    /// What was timed after `earlier`.
    pub fn since(&self, earlier: &FakeTotals) -> FakeTotals {
        FakeTotals {
            cpu: self.cpu - earlier.cpu,
            calls: self.calls - earlier.calls,
        }
    }
}

impl FakeTime {
    /// Nothing timed yet.
    pub fn new() -> FakeTime {
        FakeTime::default()
    }

    /// The thread CPU clock at the start of a timed call.
    pub fn start(&self) -> Duration {
        thread_cpu()
    }

    /// Ends a timed call begun at `started` (on this same thread).
    pub fn stop(&self, started: Duration) {
        let spent = thread_cpu().saturating_sub(started);
        self.nanos
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything timed so far.
    pub fn totals(&self) -> FakeTotals {
        FakeTotals {
            cpu: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }
}

/// What reading the clock costs, measured: `pair` is the CPU time of one `start` + `stop` (the
/// timing a timed call adds in all), `inside` the part of it that lands inside the timed
/// interval (a call that does nothing). A timed call adds `pair - inside` outside its interval,
/// which is neither our code nor the fake's and is taken out of the wave's time with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockCost {
    /// One start and stop, in all.
    pub pair: Duration,
    /// Of it, what an empty timed interval measures.
    pub inside: Duration,
}

impl ClockCost {
    /// Measures the clock over `rounds` empty timed calls.
    pub fn measure(rounds: u32) -> ClockCost {
        let rounds = rounds.max(1);
        let timer = FakeTime::new();
        let began = thread_cpu();
        for _ in 0..rounds {
            let t = timer.start();
            timer.stop(t);
        }
        let all = thread_cpu().saturating_sub(began);
        ClockCost {
            pair: all / rounds,
            inside: timer.totals().cpu / rounds,
        }
    }

    /// The timing's cost outside the intervals of `calls` timed calls.
    pub fn outside(&self, calls: u64) -> Duration {
        self.pair.saturating_sub(self.inside) * calls as u32
    }
}

/// Where a plain run's CPU time went during a wave's routing and working phases: the process's
/// CPU time, the thread CPU time inside the handlers (the direct invocation, every router and
/// worker batch), and inside them the fakes' calls (and their counting). Our code's CPU time is
/// the handlers' less the fakes' and less the timing itself ([`CpuSplit::ours`]); the rest of
/// the process's is the harness (queues worked by hand, message ids, deliveries built).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSplit {
    /// The process's CPU time (every thread).
    pub process: Duration,
    /// Thread CPU time inside the handlers, and how many handler calls were timed.
    pub handlers: FakeTotals,
    /// Thread CPU time inside the fakes' calls, and how many were timed.
    pub fakes: FakeTotals,
}

impl CpuSplit {
    /// CPU time in our own code: the handlers' time less the fakes' calls inside them and
    /// less what timing them cost (`clock`): each fake call's clock reads outside its own
    /// interval land in its handler's, and each handler's own empty-interval share.
    pub fn ours(&self, clock: &ClockCost) -> Duration {
        self.handlers
            .cpu
            .saturating_sub(self.fakes.cpu)
            .saturating_sub(clock.outside(self.fakes.calls))
            .saturating_sub(clock.inside * self.handlers.calls as u32)
    }

    /// The process's CPU time outside the handlers: the harness driving them.
    pub fn harness(&self) -> Duration {
        self.process.saturating_sub(self.handlers.cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let began = thread_cpu();
        while thread_cpu() - began < d {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn a_timed_call_adds_the_cpu_time_spent_inside_it() {
        let timer = FakeTime::new();
        let t = timer.start();
        spin(Duration::from_millis(20));
        timer.stop(t);
        spin(Duration::from_millis(20));
        let totals = timer.totals();
        assert_eq!(totals.calls, 1);
        assert!(
            totals.cpu >= Duration::from_millis(20) && totals.cpu < Duration::from_millis(35),
            "{totals:?}"
        );
    }

    #[test]
    fn the_process_clock_counts_every_threads_cpu() {
        let before = process_cpu();
        std::thread::spawn(|| spin(Duration::from_millis(30)))
            .join()
            .unwrap();
        assert!(process_cpu() - before >= Duration::from_millis(30));
        assert!(thread_cpu() < process_cpu());
    }

    #[test]
    fn our_time_is_the_handlers_less_the_fakes_and_the_timing() {
        let split = CpuSplit {
            process: Duration::from_millis(100),
            handlers: FakeTotals {
                cpu: Duration::from_millis(80),
                calls: 10,
            },
            fakes: FakeTotals {
                cpu: Duration::from_millis(30),
                calls: 1000,
            },
        };
        let clock = ClockCost {
            pair: Duration::from_micros(5),
            inside: Duration::from_micros(2),
        };
        // 80 - 30 - 1000 x 3 µs - 10 x 2 µs
        assert_eq!(split.ours(&clock), Duration::from_micros(46_980));
        assert_eq!(split.harness(), Duration::from_millis(20));
    }

    #[test]
    fn reading_the_clock_costs_less_than_a_pair_costs_in_all() {
        let cost = ClockCost::measure(10_000);
        assert!(cost.pair > Duration::ZERO, "{cost:?}");
        assert!(cost.inside <= cost.pair, "{cost:?}");
        assert!(cost.pair < Duration::from_micros(50), "{cost:?}");
    }
}
