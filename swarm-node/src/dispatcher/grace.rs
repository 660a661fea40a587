//! Heartbeat expiry judged against the manager's own ability to process heartbeats.
//!
//! A node is down when its heartbeats stop arriving, but a manager that is starved of CPU (its
//! runtime lagging, its socket dropping datagrams) stops *processing* heartbeats that did arrive:
//! at 10,000 nodes a starved leader marked 8,892 live nodes down and spent its time evacuating
//! their tasks (docs/BENCHMARKS.md, session `scale2`). So, as SwarmKit grants every node a
//! fresh period when a dispatcher starts leading, a [`Grace`] grants every node a fresh
//! `down_after` period (i) when this manager starts leading and (ii) whenever the sweeper that
//! enforces the deadlines woke more than [`LAG_LIMIT`] late: the sign that this process fell
//! behind. No heartbeat expiry takes effect before the grace ends; a node that heartbeats during
//! the grace has a deadline past its end, and a node that stays silent through it is marked down
//! at its end. The sweeper wakes at least every [`PROBE_INTERVAL`] to measure its lag.
//!
//! Under sustained starvation the grace is renewed, so a node that really died is marked down
//! only once the manager keeps up again: late, but not thousands of live nodes marked down.
//! Not covered: heartbeats lost before the runtime sees them (the socket's receive buffer
//! overflowing while the runtime itself is on time); see docs/BENCHMARKS.md, session 11.

use std::time::Duration;

use tokio::time::Instant;

/// How late the sweeper may wake before this manager counts itself as having fallen behind.
pub(super) const LAG_LIMIT: Duration = Duration::from_secs(1);
/// The sweeper wakes at least this often, so that its lag is measured while no deadline is due.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// When heartbeat expiries may take effect again (pure: every time is an argument).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Grace {
    until: Option<Instant>,
}

impl Grace {
    /// Grants every node a fresh `period` from `now` (an earlier end is extended, a later one
    /// kept).
    pub(super) fn grant(&mut self, now: Instant, period: Duration) {
        let end = now + period;
        self.until = Some(self.until.map_or(end, |u| u.max(end)));
    }

    /// The sweeper meant to wake at `expected` and woke at `now`: if it was more than
    /// [`LAG_LIMIT`] late, grants a fresh `period` and returns how late it was.
    pub(super) fn observe_wake(
        &mut self,
        expected: Instant,
        now: Instant,
        period: Duration,
    ) -> Option<Duration> {
        let late = now.saturating_duration_since(expected);
        if late > LAG_LIMIT {
            self.grant(now, period);
            Some(late)
        } else {
            None
        }
    }

    /// When an expiry due at `at` takes effect: `at`, or the end of the grace if later.
    pub(super) fn effective(&self, at: Instant) -> Instant {
        self.until.map_or(at, |u| u.max(at))
    }

    /// When the grace ends, if one was ever granted.
    #[cfg(test)]
    pub(super) fn until(&self) -> Option<Instant> {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use swarm_core::testing::id;

    use super::super::{DispatcherOptions, RemoteSession, StoreDispatcher};
    use super::*;

    const PERIOD: Duration = Duration::from_secs(15);

    #[test]
    fn no_grace_leaves_deadlines_alone() {
        let t0 = Instant::now();
        let g = Grace::default();
        assert_eq!(g.effective(t0), t0);
        assert_eq!(g.until(), None);
    }

    #[test]
    fn a_late_wake_grants_a_fresh_period_and_a_punctual_one_does_not() {
        let t0 = Instant::now();
        let mut g = Grace::default();
        // Woke on time, or less than the limit late: nothing granted.
        assert_eq!(g.observe_wake(t0, t0, PERIOD), None);
        assert_eq!(g.observe_wake(t0, t0 + LAG_LIMIT, PERIOD), None);
        // A wake before the expected time (woken early) is not lag.
        assert_eq!(g.observe_wake(t0 + PERIOD, t0, PERIOD), None, "woken early");
        assert_eq!(g.until(), None);
        // Three seconds late: every deadline now takes effect no sooner than a period later.
        let woke = t0 + Duration::from_secs(3);
        assert_eq!(
            g.observe_wake(t0, woke, PERIOD),
            Some(Duration::from_secs(3))
        );
        assert_eq!(g.until(), Some(woke + PERIOD));
        assert_eq!(g.effective(t0), woke + PERIOD);
        // A deadline beyond the grace is untouched.
        let later = woke + PERIOD + Duration::from_secs(1);
        assert_eq!(g.effective(later), later);
    }

    #[test]
    fn a_grant_extends_and_never_shortens() {
        let t0 = Instant::now();
        let mut g = Grace::default();
        g.grant(t0 + Duration::from_secs(10), PERIOD);
        g.grant(t0, PERIOD);
        assert_eq!(g.until(), Some(t0 + Duration::from_secs(10) + PERIOD));
        g.grant(t0 + Duration::from_secs(20), PERIOD);
        assert_eq!(g.until(), Some(t0 + Duration::from_secs(20) + PERIOD));
    }

    /// A dispatcher over a store holding nodes 1 and 2, with remote sessions for both opened
    /// at the (paused) clock's now (dropping a session ends it).
    async fn two_remote_sessions() -> (StoreDispatcher, [RemoteSession; 2]) {
        use swarm_core::dispatch::NodeRegistration;
        use swarm_core::testing::{id, node};
        use swarm_core::{LocalProposer, ManualClock, SharedStore, StoreAction};

        let store = SharedStore::default();
        let proposer = Arc::new(LocalProposer::new(
            store.clone(),
            Arc::new(ManualClock::new(Default::default())),
        ));
        proposer
            .propose_now(vec![
                StoreAction::Create(node(1).into()),
                StoreAction::Create(node(2).into()),
            ])
            .unwrap();
        let d = StoreDispatcher::new(store, proposer, DispatcherOptions::default());
        let mut sessions = Vec::new();
        for n in [1, 2] {
            let s = d
                .open_remote(NodeRegistration {
                    node_id: id(n),
                    description: node(n).description.unwrap_or_default(),
                })
                .await
                .unwrap();
            sessions.push(s);
        }
        let [a, b]: [RemoteSession; 2] = sessions.try_into().unwrap();
        (d, [a, b])
    }

    // The clock is paused and never advanced: the sweeper task never wakes on its own, and
    // every time below is an argument.

    #[tokio::test(start_paused = true)]
    async fn a_punctual_sweeper_marks_silent_nodes_down_when_due() {
        let t0 = Instant::now();
        let (d, _sessions) = two_remote_sessions().await;
        let mut down = d.take_due(t0 + PERIOD, Some(t0 + PERIOD));
        down.sort();
        assert_eq!(down, vec![id(1), id(2)]);
        d.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweeper_that_fell_behind_marks_no_live_node_down() {
        let t0 = Instant::now();
        let (d, sessions) = two_remote_sessions().await;
        // The manager stalled: the sweeper meant to wake at t0 + 1 s and woke at t0 + 40 s,
        // heartbeats unprocessed meanwhile. Both deadlines (t0 + 15 s) are past: nobody is
        // marked down, both sessions stay open, and every node has until t0 + 55 s.
        let woke = t0 + Duration::from_secs(40);
        assert!(d
            .take_due(woke, Some(t0 + Duration::from_secs(1)))
            .is_empty());
        assert!(d.is_connected(id(1)) && d.is_connected(id(2)));
        // Node 1's heartbeat gets through during the grace; node 2 stays silent.
        d.heartbeat_at(id(1), sessions[0].id, woke + Duration::from_secs(5))
            .unwrap();
        let end = woke + PERIOD;
        assert!(d.take_due(end - Duration::from_millis(1), None).is_empty());
        assert_eq!(d.take_due(end, Some(end)), vec![id(2)]);
        assert!(d.is_connected(id(1)));
        assert!(!d.is_connected(id(2)));
        d.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn starting_to_lead_grants_every_node_a_fresh_period() {
        let t0 = Instant::now();
        let (d, _sessions) = two_remote_sessions().await;
        d.set_leading_at(false, t0 + Duration::from_secs(5));
        d.set_leading_at(true, t0 + Duration::from_secs(10));
        // The heartbeats were due at t0 + 15 s; the new leader judges them at t0 + 25 s.
        let due = t0 + PERIOD + Duration::from_secs(1);
        assert!(d.take_due(due, Some(due)).is_empty());
        let end = t0 + Duration::from_secs(25);
        let mut down = d.take_due(end, Some(end));
        down.sort();
        assert_eq!(down, vec![id(1), id(2)]);
        // Leading already: a repeated `set_leading(true)` grants nothing new.
        d.set_leading_at(true, end);
        assert_eq!(d.grace().until(), Some(end));
        d.close().await;
    }
}
