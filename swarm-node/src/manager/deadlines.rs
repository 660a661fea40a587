//! The dispatcher's liveness deadlines in one min-heap, so that one sweeper task enforces every
//! node's (instead of a sleeping task per node): when a remote session's heartbeats are overdue,
//! and when a node without a session is to be marked down.
//!
//! Policy: entries are hints, checked against the dispatcher's node table when they come due. A
//! heartbeat only moves the node's deadline in that table; the heap entry is not touched, and
//! when it comes due the sweeper pushes it again at the node's current deadline (so a heartbeat
//! costs no heap operation, and a node costs one heap entry per `down_after` at most). A stale
//! entry (older session, deadline moved, node back) is dropped when popped.
//!
//! Pure: no clock (times are arguments), no tasks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use swarm_core::Id;
use tokio::time::Instant;

/// What comes due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeadlineKind {
    /// A remote session's heartbeat deadline: end the session and mark the node down if no
    /// heartbeat moved it.
    Heartbeat,
    /// Mark the node down if no session opened meanwhile.
    Down,
}

/// One deadline: at `at`, check `node`'s session `generation` for `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    /// When.
    pub at: Instant,
    /// Which node.
    pub node: Id,
    /// Which of its sessions (the node table's generation when the entry was made).
    pub generation: u64,
    /// What to check.
    pub kind: DeadlineKind,
}

/// Deadlines, earliest first. See the module docs.
#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<Deadline>>,
}

impl Deadlines {
    /// Adds a deadline; returns whether it is now the earliest (the sweeper must wake sooner).
    pub fn push(&mut self, d: Deadline) -> bool {
        let earliest = self.next().is_none_or(|n| d.at < n);
        self.heap.push(Reverse(d));
        earliest
    }

    /// The earliest deadline's time.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// Takes the earliest deadline if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
        if self.next()? <= now {
            self.heap.pop().map(|Reverse(d)| d)
        } else {
            None
        }
    }

    /// How many entries (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(n: u8) -> Id {
        Id::from_u128(u128::from(n))
    }

    #[test]
    fn pops_only_due_deadlines_earliest_first() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let at = |s| t0 + Duration::from_secs(s);
        let mk = |s, n, kind| Deadline {
            at: at(s),
            node: id(n),
            generation: 1,
            kind,
        };
        assert!(d.push(mk(10, 1, DeadlineKind::Heartbeat)));
        assert!(!d.push(mk(20, 2, DeadlineKind::Down)));
        assert!(d.push(mk(5, 3, DeadlineKind::Heartbeat)));
        assert_eq!(d.next(), Some(at(5)));
        assert_eq!(d.pop_due(at(4)), None);
        assert_eq!(d.pop_due(at(12)).map(|x| x.node), Some(id(3)));
        assert_eq!(d.pop_due(at(12)).map(|x| x.node), Some(id(1)));
        assert_eq!(d.pop_due(at(12)), None);
        assert_eq!(d.len(), 1);
        assert_eq!(d.pop_due(at(20)).map(|x| x.kind), Some(DeadlineKind::Down));
        assert!(d.is_empty());
    }
}
