//! Recent failures of a service version on each node, so that a node where a service keeps failing
//! ranks last for it (SwarmKit: 5 failures within 5 minutes).
//!
//! A failure is a task of the service, placed by the scheduler (not pre-assigned by the global
//! orchestrator), whose observed state changes to `failed` or `rejected`. It is dated with the
//! task's `meta.updated_at`, the timestamp of the committed batch that recorded it, so every manager
//! computes the same history from the same log. Memory is bounded: at most [`KEEP`] timestamps per
//! (service version, node), and entries with nothing inside the window are purged once per window.

use std::collections::VecDeque;
use std::time::Duration;

use swarm_core::{Id, Timestamp, Version};

use super::hash::FxMap;

/// How far back failures count.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Failures within the window at which a node ranks last for the service version.
pub const MAX_FAILURES: u32 = 5;
/// Timestamps kept per (service version, node); older ones cannot change the outcome.
const KEEP: usize = 16;

type PerNode = FxMap<Id, VecDeque<Timestamp>>;

/// Failure history. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    by_version: FxMap<(Id, Version), PerNode>,
    last_purge: Timestamp,
}

fn recent(t: Timestamp, now: Timestamp) -> bool {
    now.since(t) <= FAILURE_WINDOW
}

impl Failures {
    /// Records a failure of `service` at `version` on `node` at `at`.
    pub(crate) fn record(&mut self, service: Id, version: Version, node: Id, at: Timestamp) {
        let q = self
            .by_version
            .entry((service, version))
            .or_default()
            .entry(node)
            .or_default();
        q.push_back(at);
        while q.len() > KEEP {
            q.pop_front();
        }
    }

    /// Nodes with at least [`MAX_FAILURES`] recent failures of this service version, with the count.
    pub(crate) fn penalized(
        &self,
        service: Id,
        version: Version,
        now: Timestamp,
    ) -> Vec<(Id, u32)> {
        let Some(per_node) = self.by_version.get(&(service, version)) else {
            return Vec::new();
        };
        let mut out: Vec<(Id, u32)> = per_node
            .iter()
            .map(|(n, q)| (*n, q.iter().filter(|&&t| recent(t, now)).count() as u32))
            .filter(|&(_, c)| c >= MAX_FAILURES)
            .collect();
        out.sort();
        out
    }

    /// Drops history that fell out of the window; does real work at most once per window.
    pub(crate) fn purge(&mut self, now: Timestamp) {
        if now.since(self.last_purge) < FAILURE_WINDOW {
            return;
        }
        self.last_purge = now;
        self.by_version.retain(|_, per_node| {
            per_node.retain(|_, q| {
                q.retain(|&t| recent(t, now));
                !q.is_empty()
            });
            !per_node.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_recent_failures_penalize() {
        let (s, n) = (Id::from_u128(1), Id::from_u128(2));
        let v = Version(3);
        let mut f = Failures::default();
        for i in 0..4 {
            f.record(s, v, n, Timestamp::from_secs(100 + i));
        }
        assert!(f.penalized(s, v, Timestamp::from_secs(110)).is_empty());
        f.record(s, v, n, Timestamp::from_secs(105));
        assert_eq!(f.penalized(s, v, Timestamp::from_secs(110)), vec![(n, 5)]);
        // Another spec version is unaffected.
        assert!(f
            .penalized(s, Version(4), Timestamp::from_secs(110))
            .is_empty());
        // Five minutes later the first failures have expired.
        assert!(f.penalized(s, v, Timestamp::from_secs(402)).is_empty());
        f.purge(Timestamp::from_secs(1000));
        assert!(f.by_version.is_empty());
    }
}
