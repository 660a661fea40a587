//! Membership: adding a manager (learner first, voter once caught up), demoting and removing one
//! (refused when it would leave no reachable quorum or no manager), force-new-cluster, and the
//! leader watchdog that times elections and makes an isolated leader step down. Handing
//! leadership to another voter is in [`crate::transfer`].

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::VoteRequest;
use openraft::{ChangeMembers, EntryPayload, ServerState};

use crate::error::{MembershipError, StartError, StorageFault};
use crate::log_store::LogStore;
use crate::node::{single_voter, Inner, RaftNode};
use crate::state_machine::StateMachine;
use crate::types::{Entry, ManagerNode, NodeId, Vote};
use crate::wal::{log_id, Done};

impl RaftNode {
    pub(crate) fn ensure_leader(&self) -> Result<(), MembershipError> {
        let st = self.status();
        if st.state == ServerState::Leader {
            Ok(())
        } else {
            Err(MembershipError::NotLeader { leader: st.leader })
        }
    }

    pub(crate) fn membership_timeout(&self) -> Duration {
        self.inner.config.raft.propose_timeout
    }

    async fn change(
        &self,
        change: ChangeMembers<NodeId, ManagerNode>,
        retain: bool,
    ) -> Result<(), MembershipError> {
        let t = self.membership_timeout();
        match tokio::time::timeout(t, self.inner.raft.change_membership(change, retain)).await {
            Err(_) => Err(MembershipError::Timeout {
                timeout_ms: t.as_millis() as u64,
            }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(MembershipError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::EmptyMembership(_),
            )))) => Err(MembershipError::LastManager(self.id())),
            Ok(Err(e)) => Err(MembershipError::Raft(e.to_string())),
        }
    }

    /// Whether this node heard from `peer` within the step-down window (always true for itself).
    /// This is the reachability [`RaftNode::demote_manager`] counts.
    pub fn peer_reachable(&self, peer: NodeId) -> bool {
        peer == self.id()
            || self
                .inner
                .health
                .reachable(peer, self.inner.config.raft.step_down_after)
    }

    /// Adds manager `id` at `addr`: first as a learner, waiting until it has caught up with the
    /// log, then as a voter. Call on the leader.
    pub async fn add_manager(
        &self,
        id: NodeId,
        addr: impl Into<String>,
    ) -> Result<(), MembershipError> {
        self.ensure_leader()?;
        let node = ManagerNode { addr: addr.into() };
        let t = self.membership_timeout();
        match tokio::time::timeout(t, self.inner.raft.add_learner(id, node, true)).await {
            Err(_) => {
                return Err(MembershipError::Timeout {
                    timeout_ms: t.as_millis() as u64,
                })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                return Err(MembershipError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(e)) => return Err(MembershipError::Raft(e.to_string())),
            Ok(Ok(_)) => {}
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
    }

    /// Demotes voter `id` to a non-voting member. Refused if it is the last manager, or if the
    /// voters left that this leader reached recently would not be a quorum of the voters left.
    pub async fn demote_manager(&self, id: NodeId) -> Result<(), MembershipError> {
        self.ensure_leader()?;
        let st = self.status();
        if !st.voters.contains(&id) {
            return Err(MembershipError::NotMember(id));
        }
        if st.voters.len() == 1 {
            return Err(MembershipError::LastManager(id));
        }
        let left: Vec<NodeId> = st.voters.iter().copied().filter(|v| *v != id).collect();
        let reachable = left.iter().filter(|v| self.peer_reachable(**v)).count();
        if reachable * 2 <= left.len() {
            return Err(MembershipError::WouldLoseQuorum {
                node: id,
                reachable,
                voters: left.len(),
            });
        }
        self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id])), true)
            .await
    }

    /// Removes non-voting member `id` from the cluster. A voter must be demoted first.
    pub async fn remove_manager(&self, id: NodeId) -> Result<(), MembershipError> {
        self.ensure_leader()?;
        let st = self.status();
        if st.voters.contains(&id) {
            return Err(if st.voters.len() == 1 {
                MembershipError::LastManager(id)
            } else {
                MembershipError::StillVoter(id)
            });
        }
        if !st.learners.contains(&id) {
            return Err(MembershipError::NotMember(id));
        }
        self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
    }
}

/// Before raft starts: append a membership entry naming only this node as voter, in a new term,
/// and vote for ourselves in that term. Raft then starts with a one-voter membership, elects this
/// node and commits the whole local log: every object in the log and snapshot is kept.
pub(crate) async fn rewrite_as_single_voter(
    log: &LogStore,
    sm: &StateMachine,
    id: NodeId,
    addr: &str,
) -> Result<(), StartError> {
    use openraft::storage::RaftLogStorage;
    let wal = log.wal();
    let (_, last) = wal.log_state();
    let last = last.or(sm.applied().0);
    let mut log = log.clone();
    let vote = log
        .read_vote()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let term = last
        .map_or(0, |l| l.leader_id.term)
        .max(vote.map_or(0, |v| v.leader_id().term))
        + 1;
    let index = last.map_or(0, |l| l.index + 1);
    let entry = Entry {
        log_id: log_id(term, id, index),
        payload: EntryPayload::Membership(single_voter(id, addr)),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    wal.append(vec![entry], Done::Barrier(tx))
        .map_err(|f| f.fault)?;
    match rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(StorageFault::io("fsync", wal.dir(), e).into()),
        Err(_) => return Err(StorageFault::Closed.into()),
    }
    log.save_vote(&Vote::new(term, id))
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    tracing::warn!(
        id,
        term,
        index,
        "force-new-cluster: this node is now the only voter"
    );
    Ok(())
}

/// Runs while the node lives: a leader that has not heard from a quorum for `step_down_after`
/// (counted from its election at the earliest) steps down. openraft 0.9 has no call for that, so the watchdog hands the leader a vote request
/// of a higher term from a non-member carrying the leader's own last log id; granting it makes
/// the leader a follower (the vote is persisted like any vote and burns one term, as a normal
/// election would).
///
/// It also times elections (openraft's own election timer is off, see [`crate::RaftConfig`]): a
/// voter that has not heard from a leader for a timeout drawn uniformly from
/// `[election_timeout_min, election_timeout_max)` runs a pre-vote round ([`crate::prevote`]),
/// starts an election only if a majority would vote for it, and draws a new timeout either way;
/// a candidate whose election did not end (a split vote) runs again after a wait drawn from
/// `[2 heartbeats, election_timeout_min)`: nobody leads then, so no lease has to run out. A
/// node that a voter refused for its shorter log within the last `election_timeout_max` waits
/// `election_timeout_max` longer (a manager restarted just before the leader died would
/// otherwise keep running in the same terms as the up-to-date survivor and split its votes), and
/// the survivor that refused it runs above that candidate's term ([`adopt_refused_term`]).
pub(crate) async fn watchdog(node: Weak<Inner>) {
    let (mut timeout, mut retry) = (None, None);
    loop {
        let Some(inner) = node.upgrade() else { return };
        let tick = inner.config.raft.heartbeat;
        let limit =
            u64::try_from(inner.config.raft.step_down_after.as_millis()).unwrap_or(u64::MAX);
        let m = inner.raft.metrics().borrow().clone();
        // How long this node has led in its current term (zero when it does not lead).
        let led_for = {
            let mut led = inner.led_since.lock().unwrap_or_else(|e| e.into_inner());
            match (m.state == ServerState::Leader, *led) {
                (true, Some((term, at))) if term == m.current_term => at.elapsed(),
                (true, _) => {
                    *led = Some((m.current_term, Instant::now()));
                    Duration::ZERO
                }
                (false, _) => {
                    *led = None;
                    Duration::ZERO
                }
            }
        };
        let voters = m.membership_config.membership().voter_ids().count();
        // A leader just elected has no quorum acknowledgement of its term yet (or only a stale
        // one from an earlier term it led): it gets `step_down_after` from its election before
        // the lack of one counts.
        let stale = !matches!(m.millis_since_quorum_ack, Some(ms) if ms <= limit)
            && led_for >= inner.config.raft.step_down_after;
        if m.state == ServerState::Leader && voters > 1 && stale {
            tracing::warn!(
                id = m.id,
                term = m.current_term,
                "leader lost contact with a quorum; stepping down"
            );
            let last = inner.log.wal().log_state().1;
            let req = VoteRequest {
                vote: Vote::new(m.current_term + 1, GHOST),
                last_log_id: last,
            };
            if let Err(e) = inner.raft.vote(req).await {
                tracing::warn!(error = %e, "step-down vote failed");
            }
        }
        let cfg = &inner.config.raft;
        let t = *timeout.get_or_insert_with(|| {
            draw(
                &cfg.entropy,
                cfg.election_timeout_min,
                cfg.election_timeout_max,
            )
        });
        // A candidate (its election split or failed: nobody leads, no lease holds anyone) runs
        // again sooner, after a shorter random wait that still spans many round trips.
        let t = if m.state == ServerState::Candidate {
            *retry.get_or_insert_with(|| {
                draw(&cfg.entropy, cfg.heartbeat * 2, cfg.election_timeout_min)
            })
        } else {
            t
        };
        // A voter with a longer log refused us lately: let the others (who may hold that log)
        // run first instead of splitting their votes with a candidacy that cannot win.
        let t = if inner.health.longer_log_seen(cfg.election_timeout_max) {
            t + cfg.election_timeout_max
        } else {
            t
        };
        let is_voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == m.id);
        if m.state != ServerState::Leader && is_voter {
            let since = inner
                .contact
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed();
            if since >= t {
                tracing::info!(
                    id = m.id,
                    term = m.current_term,
                    ?since,
                    "no leader contact: starting an election"
                );
                *inner.contact.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                timeout = Some(draw(
                    &cfg.entropy,
                    cfg.election_timeout_min,
                    cfg.election_timeout_max,
                ));
                retry = None;
                // Pre-vote: raise the term only if a majority would vote for us; otherwise wait
                // for the timeout just drawn and ask again.
                if crate::prevote::round(&inner, &m).await {
                    adopt_refused_term(&inner, m.current_term).await;
                    if let Err(e) = inner.raft.trigger().elect().await {
                        tracing::warn!(error = %e, "could not start an election");
                    }
                }
            }
        } else {
            *inner.contact.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        drop(inner);
        tokio::time::sleep(tick.clamp(Duration::from_millis(5), Duration::from_millis(20))).await;
    }
}

/// Before an election: if this node refused a shorter-log candidate of a term above `current`
/// (it cannot win, but it voted for itself in that term), move to that term first by a vote for
/// the non-member [`GHOST`] (as the step-down does), so the election that follows runs one term
/// above it, where that candidate can grant its vote. Raft adopts a higher term on any request;
/// openraft does not when it refuses by log, and two survivors then kept starting elections in
/// the same terms (seen as 1-2 s of extra failover). Only called when no leader contacted this
/// node for an election timeout, so no live leader's term is skipped.
async fn adopt_refused_term(inner: &Inner, current: u64) {
    let seen = inner
        .refused_term
        .swap(0, std::sync::atomic::Ordering::Relaxed);
    if seen <= current {
        return;
    }
    let req = VoteRequest {
        vote: Vote::new(seen, GHOST),
        last_log_id: inner.log.wal().log_state().1,
    };
    if let Err(e) = inner.raft.vote(req).await {
        tracing::warn!(error = %e, "could not move to the term of a refused candidate");
    }
}

fn draw(entropy: &swarm_core::Entropy, min: Duration, max: Duration) -> Duration {
    use rand::Rng;
    if max <= min {
        return min;
    }
    entropy.clone().gen_range(min..max)
}

/// The node id used by the watchdog's step-down vote: never a member.
pub const GHOST: NodeId = u64::MAX;
