//! Pre-vote (Raft thesis, section 9.6): before a voter raises its term to run an election, it asks
//! the other voters whether they would vote for it, without changing anyone's term.
//!
//! openraft 0.9 has no pre-vote, and swarm-raft's watchdog ([`crate::membership`]) decides when
//! to start elections, so the round runs there, just before `trigger().elect()`:
//!
//! 1. The candidate sends [`PreVote`] (its id, the term it would run in, its last log id) to every
//!    other voter of its effective membership, in parallel.
//! 2. A voter answers yes ([`PreVoteReply::granted`]) only if the candidate's log is at least as up
//!    to date as its own (the same comparison as for a real vote) **and** it has not heard from a
//!    live leader within its smallest election timeout: an append or snapshot chunk accepted from
//!    the leader of its term, or it leads itself. Answering changes nothing on the voter (no term,
//!    no vote, no election timer).
//! 3. The candidate starts the real election only with a majority of yes in every configuration
//!    of its membership (a joint membership has two), its own yes included. Otherwise it draws a
//!    new election timeout and asks again after it.
//!
//! A manager that can receive but not send, or that was partitioned away, therefore never raises
//! its term alone, and does not depose a healthy leader when its link heals (issue 17, defect 1).
//! When the leader really is gone, every voter stopped hearing from it at about the same time, so
//! the first candidate's round succeeds: failover costs one more round trip.
//!
//! A leadership transfer (`TimeoutNow`, [`crate::transfer`]) skips the round: the leader asked.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::{LogId, ServerState};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::network::{RaftReply, RaftRpc};
use crate::node::{Inner, RaftNode};
use crate::types::NodeId;

/// A candidate asks whether the receiver would vote for it in `term` (its current term + 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    /// The voter asking.
    pub candidate: NodeId,
    /// The term it would run in (informational: a real election settles terms).
    pub term: u64,
    /// Its last log id.
    pub last_log_id: Option<LogId<NodeId>>,
}

/// A voter's answer to a [`PreVote`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteReply {
    /// Whether it would vote for the candidate.
    pub granted: bool,
    /// The voter's current term.
    pub term: u64,
    /// The voter's last log id (a refusal for a longer log makes the candidate back off).
    pub last_log_id: Option<LogId<NodeId>>,
}

impl RaftNode {
    /// Answers a [`PreVote`] (see the module docs). Changes nothing on this node.
    pub(crate) fn pre_vote(&self, req: &PreVote) -> PreVoteReply {
        let m = self.inner.raft.metrics().borrow().clone();
        let ours = self.inner.log.wal().log_state().1;
        let log_ok = req.last_log_id >= ours;
        let live_leader = m.state == ServerState::Leader
            || heard_leader_within(&self.inner, self.inner.config.raft.election_timeout_min);
        let granted = log_ok && !live_leader;
        tracing::debug!(
            id = m.id,
            candidate = req.candidate,
            term = req.term,
            log_ok,
            live_leader,
            granted,
            "pre-vote"
        );
        PreVoteReply {
            granted,
            term: m.current_term,
            last_log_id: ours,
        }
    }

    /// Records that the leader of this node's term reached it (an accepted append or snapshot).
    pub(crate) fn heard_leader(&self) {
        *self
            .inner
            .heard_leader
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

/// Whether a leader reached this node within `within`.
fn heard_leader_within(inner: &Inner, within: Duration) -> bool {
    inner
        .heard_leader
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some_and(|t| t.elapsed() < within)
}

/// Whether `yes` holds a majority of every configuration in `configs`.
pub(crate) fn majority_of_each(configs: &[BTreeSet<NodeId>], yes: &BTreeSet<NodeId>) -> bool {
    configs
        .iter()
        .all(|c| c.iter().filter(|v| yes.contains(v)).count() * 2 > c.len())
}

/// Whether `no` makes a majority of some configuration in `configs` impossible.
fn hopeless(configs: &[BTreeSet<NodeId>], no: &BTreeSet<NodeId>) -> bool {
    configs
        .iter()
        .any(|c| c.iter().filter(|v| no.contains(v)).count() * 2 >= c.len())
}

/// Runs a pre-vote round for this node (see the module docs); true if a majority of every
/// configuration would vote for it. Waits at most the smallest election timeout for answers
/// (an unreachable voter counts as no), and returns as soon as the outcome is known.
pub(crate) async fn round(
    inner: &Inner,
    m: &openraft::RaftMetrics<NodeId, crate::types::ManagerNode>,
) -> bool {
    let membership = m.membership_config.membership();
    let configs = membership.get_joint_config().clone();
    let mut yes = BTreeSet::from([m.id]);
    if majority_of_each(&configs, &yes) {
        return true;
    }
    let ours = inner.log.wal().log_state().1;
    let req = PreVote {
        candidate: m.id,
        term: m.current_term + 1,
        last_log_id: ours,
    };
    let wait = inner.config.raft.election_timeout_min;
    let mut calls = tokio::task::JoinSet::new();
    let mut no = BTreeSet::new();
    for peer in membership.voter_ids().filter(|v| *v != m.id) {
        let Some(node) = membership.get_node(&peer).cloned() else {
            no.insert(peer);
            continue;
        };
        let (transport, req) = (Arc::clone(&inner.transport), req.clone());
        calls.spawn(async move {
            let r = tokio::time::timeout(wait, transport.call(peer, &node, RaftRpc::PreVote(req)))
                .await;
            (peer, r)
        });
    }
    let deadline = Instant::now() + wait;
    while !majority_of_each(&configs, &yes) && !hopeless(&configs, &no) {
        let next = tokio::time::timeout_at(deadline, calls.join_next()).await;
        let Ok(Some(Ok((peer, answer)))) = next else {
            // Out of time, no call left, or a call task that failed: what we have is the answer.
            break;
        };
        match answer {
            Ok(Ok(RaftReply::PreVote(r))) if r.granted => {
                yes.insert(peer);
            }
            Ok(Ok(RaftReply::PreVote(r))) => {
                if r.last_log_id > ours {
                    inner.health.saw_longer_log();
                }
                no.insert(peer);
            }
            // Unreachable, timed out, or a wrong reply: no.
            _ => {
                no.insert(peer);
            }
        }
    }
    let won = majority_of_each(&configs, &yes);
    tracing::info!(
        id = m.id,
        term = m.current_term,
        granted = ?yes,
        won,
        "pre-vote round"
    );
    won
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    /// Property: a majority needs more than half of every configuration; "hopeless" when half
    /// or more of one configuration said no.
    #[test]
    fn majorities_count_every_configuration() {
        let three = vec![set(&[1, 2, 3])];
        assert!(!majority_of_each(&three, &set(&[1])));
        assert!(majority_of_each(&three, &set(&[1, 2])));
        assert!(!hopeless(&three, &set(&[2])));
        assert!(hopeless(&three, &set(&[2, 3])));
        let joint = vec![set(&[1, 2, 3]), set(&[1, 4, 5])];
        assert!(!majority_of_each(&joint, &set(&[1, 2])));
        assert!(majority_of_each(&joint, &set(&[1, 2, 4])));
        assert!(hopeless(&joint, &set(&[4, 5])));
        let one = vec![set(&[1])];
        assert!(majority_of_each(&one, &set(&[1])));
        let two = vec![set(&[1, 2])];
        assert!(!majority_of_each(&two, &set(&[1])));
        assert!(hopeless(&two, &set(&[2])));
    }
}
