//! Seeded trial loops for the stop and restart acceptance tests: reproducible random moments
//! (the seed is printed, so a failing trial can be replayed) and a summary of stop times.

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
