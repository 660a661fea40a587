//! Leadership transfer: [`RaftNode::transfer_leadership`] (the leader's side) and
//! [`RaftRpc::TimeoutNow`] (the successor's side), raft's TimeoutNow (Raft thesis 3.10) over
//! openraft 0.9, which has none. A leader to be demoted hands over first, so writes see no
//! election-timeout gap.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use openraft::ServerState;

use crate::error::MembershipError;
use crate::network::{RaftReply, RaftRpc, TimeoutNow};
use crate::node::{Inner, RaftNode};
use crate::types::{ManagerNode, NodeId};

impl RaftNode {
    /// Hands this leader's leadership to voter `to` (or, with `None`, to the reachable voter
    /// that holds the most of the log) and returns the new leader. Call on the leader, before it
    /// leaves the voters: the new leader then demotes it, and writes see no election-timeout gap.
    ///
    /// openraft 0.9 has no leadership transfer, so this is raft's TimeoutNow (Raft thesis 3.10)
    /// on top of it:
    /// 1. Wait until this leader's own lease ran out (openraft refuses every vote for
    ///    [`crate::RaftConfig::leader_lease`] after a node's vote changed, leaders included).
    /// 2. Hold new proposals (they wait, then go to the new leader), and wait until the successor
    ///    has replicated the whole log.
    /// 3. Send it [`RaftRpc::TimeoutNow`]: it starts an election at once in the next term. This
    ///    leader grants it (its lease is over and the successor's log is as long as its own), and
    ///    becomes a follower; with the successor's own vote that is a quorum of three voters. The
    ///    other voters still hold the lease of this leader's last heartbeat and refuse until it
    ///    runs out, so with five or more voters the successor retries every two heartbeats for
    ///    up to one lease.
    ///
    /// Nothing here bypasses a raft rule: the successor wins an ordinary election (a quorum of
    /// votes for a log at least as long as theirs), only earlier than its timer would have
    /// started it. Errors: `NotLeader`, `NotMember` (`to` is not a voter), `LastManager`,
    /// `NoSuccessor` (no other voter reachable), `TransferTimeout` after the propose timeout
    /// (this node may still lead then).
    pub async fn transfer_leadership(&self, to: Option<NodeId>) -> Result<NodeId, MembershipError> {
        self.ensure_leader()?;
        let cfg = &self.inner.config.raft;
        let t = self.membership_timeout();
        let deadline = tokio::time::Instant::now() + t;
        let timed_out = || MembershipError::TransferTimeout {
            timeout_ms: u64::try_from(t.as_millis()).unwrap_or(u64::MAX),
        };
        // 1. Our own lease (counted from when the watchdog saw us lead, which is not earlier than
        //    the vote openraft stamped).
        let led = self
            .inner
            .led_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |(_, at)| at.elapsed());
        let lease_left = (cfg.leader_lease() + cfg.heartbeat).saturating_sub(led);
        if tokio::time::Instant::now() + lease_left >= deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(lease_left).await;
        // 2. Hold proposals until this ends (the guard releases them on every return).
        let _hold = HoldProposals::new(&self.inner.transferring);
        loop {
            let m = self.inner.raft.metrics().borrow().clone();
            if m.state != ServerState::Leader {
                return match m.current_leader {
                    Some(l) if l != self.id() => Ok(l),
                    leader => Err(MembershipError::NotLeader { leader }),
                };
            }
            let target = self.successor(&m, to)?;
            let last = m.last_log_index.unwrap_or(0);
            let matched = |m: &openraft::RaftMetrics<NodeId, ManagerNode>| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&target).copied().flatten())
                    .map_or(0, |l| l.index)
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let caught_up = self
                .inner
                .raft
                .wait(Some(left.min(cfg.election_timeout_max)))
                .metrics(|m| matched(m) >= last, "the successor caught up")
                .await
                .is_ok();
            if caught_up {
                // 3. TimeoutNow, then wait for the election's outcome.
                let req = RaftRpc::TimeoutNow(TimeoutNow {
                    leader: self.id(),
                    term: m.current_term,
                    last_log_index: last,
                });
                let node = m.membership_config.membership().get_node(&target).cloned();
                let started = match node {
                    Some(node) => matches!(
                        tokio::time::timeout(
                            cfg.election_timeout_min,
                            self.inner.transport.call(target, &node, req),
                        )
                        .await,
                        Ok(Ok(RaftReply::TimeoutNow(true)))
                    ),
                    None => false,
                };
                if started {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let me = self.id();
                    let elected = self
                        .inner
                        .raft
                        .wait(Some(
                            left.min(cfg.leader_lease() + cfg.election_timeout_max),
                        ))
                        .metrics(
                            |m| m.current_leader.is_some_and(|l| l != me),
                            "the successor leads",
                        )
                        .await;
                    if let Some(l) = elected.ok().and_then(|m| m.current_leader) {
                        tracing::info!(from = me, to = l, "leadership handed over");
                        return Ok(l);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(timed_out());
            }
            tokio::time::sleep(cfg.heartbeat).await;
        }
    }

    /// The voter to hand leadership to: `to`, or the reachable voter other than this one that
    /// replicated the most of the log (lowest id on ties).
    fn successor(
        &self,
        m: &openraft::RaftMetrics<NodeId, ManagerNode>,
        to: Option<NodeId>,
    ) -> Result<NodeId, MembershipError> {
        let others: Vec<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.id())
            .collect();
        if others.is_empty() {
            return Err(MembershipError::LastManager(self.id()));
        }
        if let Some(t) = to {
            return if others.contains(&t) {
                Ok(t)
            } else {
                Err(MembershipError::NotMember(t))
            };
        }
        let matched = |v: NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&v).copied().flatten())
                .map(|l| l.index)
        };
        others
            .into_iter()
            .filter(|v| self.peer_reachable(*v))
            .max_by_key(|v| (matched(*v), std::cmp::Reverse(*v)))
            .ok_or(MembershipError::NoSuccessor(self.id()))
    }

    /// A leader asks this node to take over ([`RaftRpc::TimeoutNow`]). Starts an election at once
    /// if this node is a voter that still follows that leader in that term and holds its log up
    /// to the index given; otherwise starts nothing (a stale or misdirected request). Returns
    /// whether it started one.
    pub(crate) fn timeout_now(&self, t: &TimeoutNow) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == m.id);
        let ready = voter
            && m.state == ServerState::Follower
            && m.current_term == t.term
            && m.current_leader == Some(t.leader)
            && m.last_log_index.is_some_and(|i| i >= t.last_log_index);
        if !ready {
            tracing::info!(
                id = m.id,
                from = t.leader,
                term = t.term,
                "leadership transfer declined: not a caught-up follower of that leader in that term"
            );
            return false;
        }
        tracing::info!(
            id = m.id,
            from = t.leader,
            term = t.term,
            "leadership handed to this node: starting an election"
        );
        self.touch();
        tokio::spawn(transfer_election(Arc::downgrade(&self.inner), t.term));
        true
    }
}

/// Holds new proposals on a leader while it hands leadership over (see
/// [`RaftNode::transfer_leadership`]); dropping it releases them.
struct HoldProposals<'a>(&'a tokio::sync::watch::Sender<bool>);

impl<'a> HoldProposals<'a> {
    fn new(flag: &'a tokio::sync::watch::Sender<bool>) -> HoldProposals<'a> {
        flag.send_replace(true);
        HoldProposals(flag)
    }
}

impl Drop for HoldProposals<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// The successor's side of a leadership transfer: elect now and, while no leader of a later term
/// than `term` is known, again every two heartbeats (other voters refuse while the old leader's
/// lease runs), for at most one lease plus one heartbeat; after that the watchdog's ordinary
/// election timer is in charge again.
async fn transfer_election(node: Weak<Inner>, term: u64) {
    let started = Instant::now();
    loop {
        let Some(inner) = node.upgrade() else { return };
        let cfg = &inner.config.raft;
        let (give_up, retry) = (cfg.leader_lease() + cfg.heartbeat, cfg.heartbeat * 2);
        let m = inner.raft.metrics().borrow().clone();
        if m.current_term > term && m.current_leader.is_some() {
            return;
        }
        if m.state != ServerState::Leader {
            *inner.contact.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            if let Err(e) = inner.raft.trigger().elect().await {
                tracing::warn!(error = %e, "could not start the transfer election");
                return;
            }
        }
        let raft = inner.raft.clone();
        drop(inner);
        let won = raft
            .wait(Some(retry))
            .metrics(
                |m| m.current_term > term && m.current_leader.is_some(),
                "a leader after the transfer",
            )
            .await;
        if won.is_ok() || started.elapsed() >= give_up {
            return;
        }
    }
}
