//! The CPU budget: real CPU time from `getrusage`, and a token bucket of CPU seconds.
//!
//! Tokens are seconds of CPU time. They accrue at `budget_percent / 100` per second of wall time, up to a
//! capacity (one second's worth, so an idle watcher cannot save up a long burst), and every CPU second the
//! process (or the calling worker thread) actually used since the last look is taken out. A worker may start
//! its next chunk of hashing only while the bucket is not in debt; otherwise it sleeps until the debt is paid.
//! Over any stretch longer than a few chunks the CPU used therefore tracks the budget, however many layers or
//! workers there are. The arithmetic is [`BucketState`], pure and unit-tested; [`TokenBucket`] adds the clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

/// Whose CPU time the bucket charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuClock {
    /// The whole process (`RUSAGE_SELF`): right for the `veritylab check` command, whose process does nothing
    /// else.
    Process,
    /// Only the worker threads doing the checks (`RUSAGE_THREAD`): right when the watcher is embedded in a
    /// process that does other work.
    Threads,
}

/// User plus system CPU time used so far, as `getrusage` reports it.
pub fn cpu_time(clock: CpuClock) -> Duration {
    let who = match clock {
        CpuClock::Process => UsageWho::RUSAGE_SELF,
        CpuClock::Threads => UsageWho::RUSAGE_THREAD,
    };
    // getrusage fails only for an invalid `who`, and both are valid on Linux.
    getrusage(who).map_or(Duration::ZERO, |usage| {
        let micros = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
        };
        micros(usage.user_time()) + micros(usage.system_time())
    })
}

/// The bucket's arithmetic, with time passed in.
#[derive(Debug, Clone)]
pub(crate) struct BucketState {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled: Instant,
}

impl BucketState {
    /// An empty bucket filling at `rate` CPU seconds per wall second up to `capacity` seconds, from `now`.
    pub(crate) fn new(rate: f64, capacity: f64, now: Instant) -> Self {
        Self {
            rate,
            capacity,
            tokens: 0.0,
            refilled: now,
        }
    }

    /// Adds what accrued since the last call (up to the capacity) and takes out `used` CPU time. Returns how
    /// long to wait before the next chunk may start, or `None` if it may start now.
    pub(crate) fn admit(&mut self, now: Instant, used: Duration) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = self.refilled.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity) - used.as_secs_f64();
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }

    /// Tokens in the bucket, in CPU seconds (negative while in debt).
    #[cfg(test)]
    fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// A token bucket of CPU time shared by the watcher's workers.
#[derive(Debug)]
pub struct TokenBucket {
    clock: CpuClock,
    state: Mutex<(BucketState, Duration)>,
}

impl TokenBucket {
    /// A bucket for `budget_percent` of one core (may exceed 100 with several workers), charging `clock`.
    pub fn new(budget_percent: f64, clock: CpuClock) -> Self {
        let rate = budget_percent / 100.0;
        Self {
            clock,
            state: Mutex::new((
                BucketState::new(rate, rate, Instant::now()),
                cpu_time(CpuClock::Process),
            )),
        }
    }

    /// A worker's CPU reading to pass to [`TokenBucket::pace`] (its thread time, or zero for the process clock).
    pub fn worker_start(&self) -> Duration {
        match self.clock {
            CpuClock::Process => Duration::ZERO,
            CpuClock::Threads => cpu_time(CpuClock::Threads),
        }
    }

    /// Charges the CPU used since the last call (by the process, or by this worker whose last reading is
    /// `last`) and sleeps while the bucket is in debt. Returns false, without waiting further, when `deadline`
    /// passes first.
    pub fn pace(&self, last: &mut Duration, deadline: Option<Instant>) -> bool {
        let mut used = self.take_used(last);
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if self.clock == CpuClock::Process {
                    let now = cpu_time(CpuClock::Process);
                    used += now.saturating_sub(state.1);
                    state.1 = now;
                }
                state.0.admit(Instant::now(), std::mem::take(&mut used))
            };
            let Some(wait) = wait else {
                return true;
            };
            let wait = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    wait.min(left)
                }
                None => wait,
            };
            std::thread::sleep(wait);
        }
    }

    fn take_used(&self, last: &mut Duration) -> Duration {
        match self.clock {
            CpuClock::Process => Duration::ZERO,
            CpuClock::Threads => {
                let now = cpu_time(CpuClock::Threads);
                let used = now.saturating_sub(*last);
                *last = now;
                used
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn debt_is_paid_back_at_the_budget_rate() {
        let t0 = Instant::now();
        let mut bucket = BucketState::new(0.10, 0.10, t0);
        assert_eq!(
            bucket.admit(t0, Duration::ZERO),
            None,
            "an empty bucket not in debt admits"
        );
        let wait = bucket.admit(t0, 20 * MS).unwrap();
        assert!(
            (wait.as_secs_f64() - 0.2).abs() < 1e-9,
            "20 ms of CPU at 10% costs 200 ms: {wait:?}"
        );
        assert!(bucket.admit(t0 + 100 * MS, Duration::ZERO).is_some(), "half paid");
        assert_eq!(bucket.admit(t0 + 200 * MS, Duration::ZERO), None, "paid");
    }

    #[test]
    fn idle_time_saves_at_most_the_capacity() {
        let t0 = Instant::now();
        let mut bucket = BucketState::new(0.05, 0.05, t0);
        assert_eq!(bucket.admit(t0 + Duration::from_secs(3600), Duration::ZERO), None);
        assert!(
            (bucket.tokens() - 0.05).abs() < 1e-9,
            "an hour idle saves one second's worth"
        );
        assert!(bucket.admit(t0 + Duration::from_secs(3600), 60 * MS).is_some());
    }

    #[test]
    fn a_long_run_of_chunks_uses_the_budget_share() {
        let t0 = Instant::now();
        let mut bucket = BucketState::new(0.25, 0.25, t0);
        let mut now = t0;
        let mut cpu = Duration::ZERO;
        for _ in 0..10_000 {
            let chunk = 3 * MS;
            now += chunk;
            cpu += chunk;
            if let Some(wait) = bucket.admit(now, chunk) {
                now += wait;
            }
        }
        let share = cpu.as_secs_f64() / (now - t0).as_secs_f64();
        assert!((share - 0.25).abs() < 0.001, "{share}");
    }

    /// Spins until this thread's CPU clock has advanced by `amount` (or 10 s of wall time pass); returns what
    /// the clock saw.
    fn burn(amount: Duration) -> Duration {
        let start = cpu_time(CpuClock::Threads);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut x = 1u64;
        while cpu_time(CpuClock::Threads).saturating_sub(start) < amount && Instant::now() < deadline {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
        cpu_time(CpuClock::Threads).saturating_sub(start)
    }

    #[test]
    fn the_clocks_read_this_process_cpu_time() {
        let process_start = cpu_time(CpuClock::Process);
        let used = burn(20 * MS);
        assert!(used >= 20 * MS, "the thread clock saw {used:?} of a 20 ms spin");
        let process = cpu_time(CpuClock::Process).saturating_sub(process_start);
        assert!(
            process >= used,
            "the process clock saw {process:?}, its thread {used:?}"
        );
    }

    #[test]
    fn pacing_holds_a_busy_worker_to_its_budget() {
        // 5% of a core: 100 ms of CPU may take no less than 2 s of wall time. On an idle machine the burning
        // takes about 100 ms of wall, so only the bucket's waits can make up the rest; on a loaded one the
        // burning itself may take longer and the bucket waits less. The floor holds either way, so that is
        // what is checked, not the share of the waits, which depends on the load.
        let bucket = TokenBucket::new(5.0, CpuClock::Threads);
        let started = Instant::now();
        let mut last = bucket.worker_start();
        let mut cpu = Duration::ZERO;
        while cpu < 100 * MS && started.elapsed() < Duration::from_secs(20) {
            cpu += burn(5 * MS);
            assert!(bucket.pace(&mut last, None));
        }
        let wall = started.elapsed();
        assert!(cpu >= 100 * MS, "the thread clock saw {cpu:?} of CPU in {wall:?}");
        let floor = cpu.as_secs_f64() / 0.05;
        assert!(
            wall.as_secs_f64() >= 0.95 * floor,
            "{cpu:?} of CPU at 5% took {wall:?}, under {floor:.2} s"
        );
    }
}
