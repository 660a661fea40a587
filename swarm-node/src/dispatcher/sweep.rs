//! The sweeper: one task enforcing every node's liveness deadlines (a min-heap in
//! `manager::deadlines`), judged against this manager's own ability to keep up (`grace`): it
//! wakes at least every [`PROBE_INTERVAL`], and a wake more than `grace::LAG_LIMIT` late grants
//! every node a fresh `down_after` before any heartbeat expiry takes effect.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use swarm_core::objects::node::NodeState;
use swarm_core::Id;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::grace::PROBE_INTERVAL;
use super::{Deadline, DeadlineKind, Inner, StoreDispatcher};

impl StoreDispatcher {
    /// Marks `nodes` down ("heartbeat failure") in batches (`marking`), each node only while
    /// this manager leads and the node has no live session.
    async fn mark_down(&self, nodes: Vec<Id>) {
        tracing::info!(
            nodes = nodes.len(),
            "nodes missed their heartbeats: marking them down"
        );
        let still = |d: &StoreDispatcher, node: Id| {
            !d.inner.closed.load(Ordering::SeqCst)
                && d.inner.leading.load(Ordering::SeqCst)
                && d.nodes().get(&node).is_some_and(|e| !e.live)
        };
        self.mark_nodes(&nodes, NodeState::Down, "heartbeat failure", still)
            .await;
    }

    /// The deadlines due at `now`: ends the sessions whose heartbeats are overdue and returns
    /// the nodes to mark down; re-files heartbeat deadlines that heartbeats moved, and those
    /// that fall within a grace. `expected` is when the sweeper meant to wake: a wake more than
    /// `grace::LAG_LIMIT` after it grants a grace first.
    pub(super) fn take_due(&self, now: Instant, expected: Option<Instant>) -> Vec<Id> {
        let grace = {
            let mut grace = self.grace();
            if let Some(late) =
                expected.and_then(|e| grace.observe_wake(e, now, self.inner.options.down_after))
            {
                tracing::warn!(
                    late_ms = late.as_millis() as u64,
                    "the dispatcher fell behind: granting every node a fresh heartbeat period"
                );
            }
            *grace
        };
        let mut down = Vec::new();
        let mut nodes = self.nodes();
        let mut deadlines = self
            .inner
            .deadlines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let leading = self.inner.leading.load(Ordering::SeqCst);
        while let Some(d) = deadlines.pop_due(now) {
            let Some(e) = nodes.get_mut(&d.node) else {
                continue;
            };
            if e.generation != d.generation {
                continue;
            }
            // A manager that does not lead still ends overdue sessions but marks no node down:
            // they are not its nodes to judge any more (see `set_leading`).
            match d.kind {
                DeadlineKind::Heartbeat if e.live => match e.heartbeat_deadline {
                    Some(at) if at <= now && grace.effective(at) > now => {
                        deadlines.push(Deadline {
                            at: grace.effective(at),
                            ..d
                        });
                    }
                    Some(at) if at <= now => {
                        e.live = false;
                        if let Some(c) = e.close.take() {
                            let _ = c.send(true);
                        }
                        if leading {
                            down.push(d.node);
                        }
                    }
                    Some(at) => {
                        deadlines.push(Deadline { at, ..d });
                    }
                    None => {}
                },
                DeadlineKind::Heartbeat => {}
                DeadlineKind::Down => {
                    if leading && !e.live && e.down_at == Some(d.at) {
                        let at = grace.effective(d.at);
                        if at > now {
                            e.down_at = Some(at);
                            deadlines.push(Deadline { at, ..d });
                        } else {
                            e.down_at = None;
                            down.push(d.node);
                        }
                    }
                }
            }
        }
        down
    }
}

/// The sweeper: enforces every deadline of the dispatcher `inner` until it closes or is gone.
pub(super) async fn sweep(inner: std::sync::Weak<Inner>, wake: Arc<Notify>) {
    let mut expected = None;
    loop {
        let now = Instant::now();
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let me = StoreDispatcher { inner };
            if me.inner.closed.load(Ordering::SeqCst) {
                return;
            }
            let down = me.take_due(now, expected);
            if !down.is_empty() {
                let m = me.clone();
                tokio::spawn(async move { m.mark_down(down).await });
            }
            // A push after this read still wakes the sleep below: `notify_one` keeps a permit.
            let next = me
                .inner
                .deadlines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next();
            drop(me);
            next
        };
        let at = next.map_or(now + PROBE_INTERVAL, |at| at.min(now + PROBE_INTERVAL));
        expected = Some(at);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = wake.notified() => {}
        }
    }
}
