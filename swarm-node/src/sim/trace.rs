//! The event trace of a simulated run: one line per event (virtual time, host, what happened),
//! hashed with SHA-256 so two runs of one seed can be compared by one value.
//!
//! Events: faults injected and healed, workload operations and their outcomes, leadership seen
//! (term, raft id) and every store state a manager's observer sampled (applied index and the
//! digest of the store's snapshot encoding). The trace holds text only: no secret payload ever
//! reaches it (store digests are hashes of sealed-free encodings, never the bytes).

use std::fmt::Write as _;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The trace of one run.
#[derive(Debug, Default)]
pub struct Trace {
    /// Print every event to stderr as it is recorded (`SWARM_SIM_TRACE=1` in the tests).
    pub echo: bool,
    /// Keep every line (for comparing two runs line by line), not only the last 200.
    pub keep_all: bool,
    hasher: Sha256,
    events: usize,
    /// The last lines, kept for a failure report.
    tail: std::collections::VecDeque<String>,
}

/// How many of the last lines a trace keeps for a failure report.
pub const TAIL: usize = 200;

impl Trace {
    /// Records one event at virtual time `at` on `host`.
    pub fn record(&mut self, at: Duration, host: &str, what: &str) {
        let mut line = String::new();
        let _ = write!(line, "{:>12.6} {host:<6} {what}", at.as_secs_f64());
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.events += 1;
        if self.echo {
            eprintln!("{line}");
        }
        if self.tail.len() == TAIL && !self.keep_all {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// Events recorded so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// The hash of every event so far, hex.
    pub fn hash(&self) -> String {
        let digest = self.hasher.clone().finalize();
        digest.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// The last events (at most 200, or all with [`Trace::keep_all`]), oldest first.
    pub fn tail(&self) -> impl Iterator<Item = &str> {
        self.tail.iter().map(String::as_str)
    }
}

/// The current virtual time of the simulation (zero outside one).
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_events_same_hash_and_order_matters() {
        let mut a = Trace::default();
        let mut b = Trace::default();
        for t in [&mut a, &mut b] {
            t.record(Duration::from_millis(5), "m0", "leader term=1");
            t.record(Duration::from_millis(9), "m1", "index=3");
        }
        assert_eq!(a.hash(), b.hash());
        let mut c = Trace::default();
        c.record(Duration::from_millis(9), "m1", "index=3");
        c.record(Duration::from_millis(5), "m0", "leader term=1");
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.events(), 2);
        assert_eq!(a.tail().count(), 2);
    }
}
