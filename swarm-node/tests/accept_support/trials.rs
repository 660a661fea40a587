//! Seeded trial loops for the stop and restart acceptance tests: reproducible random moments
//! (the seed is printed, so a failing trial can be replayed) and a summary of stop times.

use std::future::Future;
use std::time::Duration;

use super::Node;

/// A small seeded generator (xorshift64*): the tests need reproducible moments, not quality.
pub struct Rng(u64);

impl Rng {
    /// A generator from the seed in the environment variable `var`, else from the clock; the
    /// seed is printed with `what`.
    pub fn from_env(var: &str, what: &str) -> Rng {
        let seed = env_u64(var).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        eprintln!("{what}: {var}={seed}");
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `[lo, hi)` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// An unsigned number from the environment.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Prints p50, p99 and max of `times` and how many exceeded `bound` (figures for
/// docs/BENCHMARKS.md; the tests assert only that every stop ended).
pub fn report(what: &str, times: &mut [Duration], bound: Duration) {
    if times.is_empty() {
        return;
    }
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let over = times.iter().filter(|t| **t > bound).count();
    eprintln!(
        "{what}: stop time p50 {:?}, p99 {:?}, max {:?}; {over} of {} over {bound:?}",
        pick(0.5),
        pick(0.99),
        times[times.len() - 1],
        times.len()
    );
}

/// Sends SIGTERM to the daemon (`delay` after the trial's service was created) and returns how
/// long it took to exit; panics, with the daemon's log, if it did not exit within `hang` or
/// exited with a failure.
pub async fn sigterm_exits(
    node: &mut Node,
    trial: u32,
    delay: Duration,
    hang: Duration,
) -> Duration {
    let Some((status, took)) = node.signal_and_wait(libc::SIGTERM, hang).await else {
        panic!(
            "trial {trial}: the daemon did not exit within {hang:?} of SIGTERM (sent {delay:?} \
             after create)\n{}",
            node.log_tail()
        );
    };
    assert!(
        status.success(),
        "trial {trial}: exit status {status}\n{}",
        node.log_tail()
    );
    took
}

/// The SIGTERM campaign of the `accept_stop_*` tests: `SWARM_STOP_TRIALS` trials (default 5) at
/// moments drawn from `SWARM_STOP_SEED` (100 ms-10 s after create), each run by `one`, which
/// returns the stop time (`None`: the test was skipped). Prints the summary against `bound`.
pub async fn stop_trials<F, Fut>(what: &str, bound: Duration, mut one: F)
where
    F: FnMut(u32, Duration) -> Fut,
    Fut: Future<Output = Option<Duration>>,
{
    let trials = env_u64("SWARM_STOP_TRIALS").unwrap_or(5);
    eprintln!("{what}: {trials} trials");
    let mut rng = Rng::from_env("SWARM_STOP_SEED", what);
    let mut times = Vec::new();
    for trial in 0..trials {
        let delay = rng.millis(100, 10_000);
        let Some(took) = one(u32::try_from(trial).unwrap_or(0), delay).await else {
            return;
        };
        times.push(took);
    }
    report(what, &mut times, bound);
}
