//! The leader's membership loop (SwarmKit's role manager and raft status reporting), and the raft
//! facts the API reads ([`RaftMembers`]).
//!
//! While this manager leads, every [`RECONCILE_EVERY`]:
//! - **promotion**: a node whose `spec.desired_role` is manager and whose `role` is worker gets
//!   `role = manager`. The CA then reissues its certificate with the manager role; the node sees
//!   its new role (certificate renewal or its dispatcher session) and restarts as a manager, which
//!   joins raft through `net::membership` (as SwarmKit's worker does on seeing a manager
//!   certificate).
//! - **demotion**: a node whose desired role is worker and whose role is manager is first taken
//!   out of raft (demoted from voter, refused while the voters left that this leader reaches
//!   would not be a quorum: then retried at the next pass; then removed), and only then gets
//!   `role = worker` and no `manager_status`. A leader to be demoted first hands its leadership
//!   to a caught-up voter ([`RaftNode::transfer_leadership`]: raft's TimeoutNow, so writes see
//!   no election-timeout gap); the new leader's loop then demotes it as any other manager. While
//!   no successor can take over, the demotion waits (with a warning) and is retried each pass.
//! - **manager status**: each member's `manager_status.leader` and `reachability` (from
//!   [`RaftNode::peer_reachable`], the reachability the quorum checks count) are kept current;
//!   a node is written only when one of them changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::node::{NodeRole, Reachability};
use swarm_core::{Id, Node, Proposer, SharedStore};
use swarm_raft::RaftNode;
use tokio::sync::watch;

/// How often the leader reconciles roles and manager status.
pub const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// Runs the loop until `stop` is set or raft stops. See the module docs.
pub(crate) async fn reconcile_loop(
    raft: RaftNode,
    store: SharedStore,
    mut stop: watch::Receiver<bool>,
) {
    let mut warned_self = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
        if raft.stopped_by().is_some() {
            return;
        }
        if !raft.status().leads() {
            continue;
        }
        reconcile_once(&raft, &store, &mut warned_self).await;
    }
}

/// One pass (see the module docs).
pub(crate) async fn reconcile_once(raft: &RaftNode, store: &SharedStore, warned_self: &mut bool) {
    let nodes: Vec<Arc<Node>> = store.view(|s| s.iter::<Node>().cloned().collect());
    for n in nodes {
        if n.spec.desired_role == NodeRole::Worker && n.role == NodeRole::Manager {
            if let Some(r) = n.manager_status.as_ref().map(|m| m.raft_id) {
                if r == raft.id() {
                    match raft.transfer_leadership(None).await {
                        Ok(to) => {
                            tracing::info!(node = %n.id, successor = to, "this leader is to be demoted: leadership handed over, the new leader demotes it")
                        }
                        Err(e) if !*warned_self => {
                            tracing::warn!(node = %n.id, error = %e, "this leader is to be demoted but could not hand its leadership over; retrying");
                            *warned_self = true;
                        }
                        Err(_) => {}
                    }
                    // No longer the leader (or the transfer failed): the next pass decides.
                    return;
                }
                if let Err(e) = leave_raft(raft, r).await {
                    tracing::warn!(node = %n.id, raft_id = r, error = %e, "demotion postponed");
                    continue;
                }
            }
            commit_node(raft, store, n.id, |n| {
                n.role = NodeRole::Worker;
                n.manager_status = None;
            })
            .await;
            tracing::info!(node = %n.id, "manager demoted to worker");
            continue;
        }
        if n.spec.desired_role == NodeRole::Manager && n.role == NodeRole::Worker {
            commit_node(raft, store, n.id, |n| n.role = NodeRole::Manager).await;
            tracing::info!(node = %n.id, "worker promoted to manager: it joins raft once it has its manager certificate");
            continue;
        }
        let Some(m) = &n.manager_status else { continue };
        let st = raft.status();
        if !st.voters.contains(&m.raft_id) && !st.learners.contains(&m.raft_id) {
            continue;
        }
        let leader = st.leader == Some(m.raft_id);
        let reachability = if raft.peer_reachable(m.raft_id) {
            Reachability::Reachable
        } else {
            Reachability::Unreachable
        };
        if m.leader != leader || m.reachability != reachability {
            commit_node(raft, store, n.id, |n| {
                if let Some(m) = n.manager_status.as_mut() {
                    m.leader = leader;
                    m.reachability = reachability;
                }
            })
            .await;
        }
    }
}

/// Takes raft member `id` out: demoted if it votes (quorum rules apply), then removed.
async fn leave_raft(raft: &RaftNode, id: u64) -> Result<(), swarm_raft::MembershipError> {
    let st = raft.status();
    if st.voters.contains(&id) {
        raft.demote_manager(id).await?;
    }
    let st = raft.status();
    if st.learners.contains(&id) {
        raft.remove_manager(id).await?;
    }
    Ok(())
}

/// Commits `change` on node `id` as it is in the store now (a conflict is retried next pass).
async fn commit_node(raft: &RaftNode, store: &SharedStore, id: Id, change: impl FnOnce(&mut Node)) {
    let r = swarm_core::proposer::update(store, raft as &dyn Proposer, |tx| {
        let Some(n) = tx.get::<Node>(&id) else {
            return Ok(());
        };
        let mut n = (*n).clone();
        change(&mut n);
        tx.update(n)
    })
    .await;
    if let Err(e) = r {
        tracing::debug!(node = %id, error = %e, "membership update not committed; retried next pass");
    }
}

/// One raft member as the API shows it (`node ls` MANAGER STATUS, `info` managers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Raft id.
    pub raft_id: u64,
    /// Its node, when the store knows which.
    pub node_id: Option<Id>,
    /// Its address (from the store, else raft's membership).
    pub addr: String,
    /// Whether it is reachable: on the leader, whether it answered the leader recently (always
    /// true for itself); on a follower that knows its leader, what the leader recorded in the
    /// member's `manager_status` (its own record when nothing is, or when no leader is known).
    pub reachable: bool,
    /// Whether it is the leader this manager knows.
    pub leader: bool,
}

impl crate::backend::RaftView for RaftMembers {
    fn members(&self) -> Vec<crate::backend::RaftMember> {
        RaftMembers::members(self)
            .into_iter()
            .map(|m| crate::backend::RaftMember {
                raft_id: m.raft_id,
                node_id: m.node_id,
                addr: m.addr,
                reachable: m.reachable,
                leader: m.leader,
            })
            .collect()
    }

    fn can_remove(&self, raft_id: u64) -> Result<(), String> {
        RaftMembers::can_remove(self, raft_id)
    }
}

/// Raft facts for reads and checks, over this manager's raft node and store.
#[derive(Clone)]
pub struct RaftMembers {
    raft: RaftNode,
    store: SharedStore,
}

impl std::fmt::Debug for RaftMembers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftMembers").finish_non_exhaustive()
    }
}

impl RaftMembers {
    /// Over `raft` and its store.
    pub fn new(raft: RaftNode, store: SharedStore) -> RaftMembers {
        RaftMembers { raft, store }
    }

    /// Every raft member (voters and learners), in raft id order.
    pub fn members(&self) -> Vec<MemberView> {
        let st = self.raft.status();
        let ids: BTreeSet<u64> = st
            .voters
            .iter()
            .chain(st.learners.iter())
            .copied()
            .collect();
        let by_raft: Vec<(u64, Id, String, Reachability)> = self.store.view(|s| {
            s.iter::<Node>()
                .filter_map(|n| {
                    let m = n.manager_status.as_ref()?;
                    Some((m.raft_id, n.id, m.addr.clone(), m.reachability))
                })
                .collect()
        });
        let me = self.raft.id();
        ids.into_iter()
            .map(|r| {
                let known = by_raft.iter().find(|k| k.0 == r);
                // A follower calls nobody in steady state (it only answers the leader), so its
                // own record of who answered says little: while it follows a leader, it shows the
                // reachability that leader recorded in the store (as Docker shows the leader's
                // view everywhere); without a leader, its own.
                let own_view = st.leads() || r == me || st.leader.is_none();
                let recorded = known.map(|k| k.3).unwrap_or(Reachability::Unknown);
                let reachable = match recorded {
                    Reachability::Reachable if !own_view => true,
                    Reachability::Unreachable if !own_view => false,
                    _ => self.raft.peer_reachable(r),
                };
                MemberView {
                    raft_id: r,
                    node_id: known.map(|k| k.1),
                    addr: known.map(|k| k.2.clone()).unwrap_or_default(),
                    reachable,
                    leader: st.leader == Some(r),
                }
            })
            .collect()
    }

    /// Whether raft member `raft_id` may be demoted or removed now: refused for the last
    /// manager, or when the voters left that this manager reaches would not be a quorum of the
    /// voters left (the rule [`RaftNode::demote_manager`] applies). The message is Docker's
    /// wording of the refusal.
    pub fn can_remove(&self, raft_id: u64) -> Result<(), String> {
        let st = self.raft.status();
        if !st.voters.contains(&raft_id) {
            return Ok(());
        }
        if st.voters.len() == 1 {
            return Err("can't remove the last manager of the swarm".into());
        }
        let left: Vec<u64> = st
            .voters
            .iter()
            .copied()
            .filter(|v| *v != raft_id)
            .collect();
        let reachable = left
            .iter()
            .filter(|v| self.raft.peer_reachable(**v))
            .count();
        if reachable * 2 <= left.len() {
            return Err(format!(
                "can't remove or demote this manager: only {reachable} of the {} managers left would be reachable, which is not a quorum",
                left.len()
            ));
        }
        Ok(())
    }
}
