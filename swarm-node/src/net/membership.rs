//! Joining the raft cluster as a manager (SwarmKit's `RaftMembership.Join`), over the swarm
//! listener.
//!
//! # Protocol
//! [`RAFT_JOIN`] (managers only: the caller's certificate must say `manager`; its node id comes
//! from the certificate, never from the request) carries the joiner's raft id and advertised
//! address. The joiner has already started its raft node with an empty log before calling, so
//! the leader can replicate to it at once:
//! 1. a manager that does not lead answers [`JoinRaftReply::NotLeader`] with the leader it knows
//!    (the client follows it);
//! 2. the leader refuses a node the store does not know, or whose role is not manager;
//! 3. a node that is already a member under the same raft id only has its address updated (a
//!    manager restarted with another `--advertise-addr`);
//! 4. otherwise the leader records `manager_status {raft_id, addr}` on the node object (so every
//!    manager's transport can check the peer's certificate against it), removes the node's
//!    previous raft member if it had one (its data was lost), and adds the new member as a learner
//!    then a voter (`RaftNode::add_manager`) in a background task: the reply comes at once with
//!    the current members, and the joiner waits until its own raft node counts it as a voter.
//!
//! A raft id already used by another member is refused with `AlreadyExists`; the joiner draws
//! another and retries.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_core::objects::node::{ManagerStatus, NodeRole, Reachability};
use swarm_core::{Id, Node, Proposer};
use swarm_net::rpc::{Access, CallContext, Client, Code, Peer, Router, RpcError, Status, Unary};
use swarm_net::Role;
use thiserror::Error;

use crate::manager::identity::KnownManager;
use crate::net::stack::{ManagerHandle, ManagerSlot};

/// Join the raft cluster (see the module docs).
pub const RAFT_JOIN: Unary<JoinRaftRequest, JoinRaftReply> =
    Unary::new("raft.v1.join", Access::Manager, 4 << 10, 1 << 20);

/// How long one join call may take.
pub const JOIN_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a joining manager asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRaftRequest {
    /// The raft id the joiner started its raft node with.
    pub raft_id: u64,
    /// Where the other managers reach it (`host:port`).
    pub addr: String,
}

/// A raft member as the join reply lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPeer {
    /// Raft id.
    pub raft_id: u64,
    /// The node id its certificate names.
    pub node_id: Id,
    /// Its advertised address.
    pub addr: String,
}

/// The answer to [`RAFT_JOIN`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinRaftReply {
    /// Accepted: the joiner is (being) added; these are the members, itself included.
    Joined {
        /// Every member known to the leader.
        members: Vec<RaftPeer>,
    },
    /// This manager does not lead; ask this one (if known).
    NotLeader {
        /// The leader, when this manager knows it and its node.
        leader: Option<RaftPeer>,
    },
}

/// Why a join through [`join_raft`] failed.
#[derive(Debug, Error)]
pub enum JoinRaftError {
    /// No manager could be reached or none knew the leader.
    #[error("could not reach the raft leader through {tried}: {last}")]
    NoLeader {
        /// The managers tried.
        tried: String,
        /// The last failure.
        last: String,
    },
    /// The leader refused the join.
    #[error("the raft leader refused the join: {0}")]
    Refused(String),
    /// The raft id is taken: draw another.
    #[error("raft id {0} is already used by another member")]
    IdTaken(u64),
}

/// Every raft member with its node id and address, from the membership and the store.
pub fn members(handle: &ManagerHandle) -> Vec<RaftPeer> {
    let st = handle.raft.status();
    let ids: BTreeSet<u64> = st
        .voters
        .iter()
        .chain(st.learners.iter())
        .copied()
        .collect();
    handle.store.view(|s| {
        s.iter::<Node>()
            .filter_map(|n| {
                let m = n.manager_status.as_ref()?;
                ids.contains(&m.raft_id).then(|| RaftPeer {
                    raft_id: m.raft_id,
                    node_id: n.id,
                    addr: m.addr.clone(),
                })
            })
            .collect()
    })
}

fn unavailable(why: impl Into<String>) -> Status {
    Status::new(Code::Unavailable, why)
}

/// The leader side of [`RAFT_JOIN`] for the caller `node_id`.
pub async fn handle_join(
    handle: &ManagerHandle,
    node_id: Id,
    req: JoinRaftRequest,
) -> Result<JoinRaftReply, Status> {
    if req.raft_id == 0 {
        return Err(Status::new(Code::InvalidArgument, "raft id 0 is reserved"));
    }
    if req.addr.is_empty() {
        return Err(Status::new(
            Code::InvalidArgument,
            "the joiner's address is empty",
        ));
    }
    let st = handle.raft.status();
    if !st.leads() {
        let leader = st
            .leader
            .and_then(|l| members(handle).into_iter().find(|p| p.raft_id == l));
        return Ok(JoinRaftReply::NotLeader { leader });
    }
    let node = handle
        .store
        .view(|s| s.get::<Node>(&node_id).cloned())
        .ok_or_else(|| {
            Status::new(
                Code::FailedPrecondition,
                format!("node {node_id} is not known to the cluster; join with a token first"),
            )
        })?;
    if node.role != NodeRole::Manager && node.spec.desired_role != NodeRole::Manager {
        return Err(Status::new(
            Code::PermissionDenied,
            format!("node {node_id} is not a manager"),
        ));
    }
    let is_member = |id: u64| st.voters.contains(&id) || st.learners.contains(&id);
    let previous = node.manager_status.as_ref().map(|m| m.raft_id);
    if previous == Some(req.raft_id) && is_member(req.raft_id) {
        // A member rejoining (restart): only its address may change.
        if node.manager_status.as_ref().map(|m| m.addr.as_str()) != Some(req.addr.as_str()) {
            set_manager_status(handle, node_id, req.raft_id, &req.addr).await?;
        }
        return Ok(JoinRaftReply::Joined {
            members: members(handle),
        });
    }
    let taken = is_member(req.raft_id)
        || handle.store.view(|s| {
            s.iter::<Node>().any(|n| {
                n.id != node_id && n.manager_status.as_ref().map(|m| m.raft_id) == Some(req.raft_id)
            })
        });
    if taken {
        return Err(Status::new(
            Code::AlreadyExists,
            format!("raft id {} is already used", req.raft_id),
        ));
    }
    // The node's previous member (its raft data was lost): take it out first, so the cluster
    // does not count a voter that will never answer again.
    if let Some(old) = previous.filter(|r| is_member(*r)) {
        if st.voters.contains(&old) {
            handle.raft.demote_manager(old).await.map_err(|e| {
                unavailable(format!("removing the node's previous raft member: {e}"))
            })?;
        }
        handle
            .raft
            .remove_manager(old)
            .await
            .map_err(|e| unavailable(format!("removing the node's previous raft member: {e}")))?;
    }
    set_manager_status(handle, node_id, req.raft_id, &req.addr).await?;
    let raft = handle.raft.clone();
    let (raft_id, addr) = (req.raft_id, req.addr.clone());
    tokio::spawn(async move {
        match raft.add_manager(raft_id, addr.clone()).await {
            Ok(()) => tracing::info!(raft_id, %addr, node = %node_id, "manager joined raft"),
            Err(e) => {
                tracing::warn!(raft_id, %addr, node = %node_id, error = %e, "adding the manager to raft failed")
            }
        }
    });
    let mut list = members(handle);
    if !list.iter().any(|p| p.raft_id == req.raft_id) {
        list.push(RaftPeer {
            raft_id: req.raft_id,
            node_id,
            addr: req.addr,
        });
    }
    Ok(JoinRaftReply::Joined { members: list })
}

/// Commits `manager_status {raft_id, addr}` on node `node_id` (reachability unknown until the
/// leader's status loop hears from it).
async fn set_manager_status(
    handle: &ManagerHandle,
    node_id: Id,
    raft_id: u64,
    addr: &str,
) -> Result<(), Status> {
    let proposer = handle.raft.clone();
    swarm_core::proposer::update(&handle.store, &proposer as &dyn Proposer, |tx| {
        let Some(n) = tx.get::<Node>(&node_id) else {
            return Ok(());
        };
        let mut n = (*n).clone();
        n.role = NodeRole::Manager;
        n.manager_status = Some(ManagerStatus {
            raft_id,
            addr: addr.to_string(),
            leader: false,
            reachability: Reachability::Unknown,
        });
        tx.update(n)
    })
    .await
    .map_err(|e| unavailable(format!("recording the new member: {e}")))
}

/// Adds the [`RAFT_JOIN`] route to `router`, answering from the manager in `slot`.
pub fn membership_routes(router: Router, slot: ManagerSlot) -> Router {
    router.unary(&RAFT_JOIN, move |ctx: CallContext, req: JoinRaftRequest| {
        let slot = slot.clone();
        async move {
            let peer = ctx
                .peer
                .ok_or_else(|| Status::new(Code::Unauthenticated, "no client certificate"))?;
            let handle = slot
                .get()
                .ok_or_else(|| unavailable("this node runs no manager right now"))?;
            handle_join(&handle, peer.identity.node_id, req).await
        }
    })
}

/// The joiner's side: asks the managers in `seeds` (in order) to add raft member `raft_id` at
/// `addr`, following "not leader" answers, until one leader accepts or `deadline` passes.
pub async fn join_raft(
    client: &Client,
    seeds: &[KnownManager],
    raft_id: u64,
    addr: &str,
    deadline: Duration,
) -> Result<Vec<RaftPeer>, JoinRaftError> {
    let until = tokio::time::Instant::now() + deadline;
    let req = JoinRaftRequest {
        raft_id,
        addr: addr.to_string(),
    };
    let mut last;
    let mut queue: Vec<KnownManager> = seeds.to_vec();
    let tried: Vec<String> = seeds.iter().map(|m| m.addr.clone()).collect();
    let mut pause = Duration::from_millis(100);
    loop {
        if queue.is_empty() {
            queue = seeds.to_vec();
        }
        let m = queue.remove(0);
        let answer = match resolve_peer(&m) {
            Ok(peer) => {
                client
                    .unary(&peer, &RAFT_JOIN, &req, JOIN_CALL_TIMEOUT)
                    .await
            }
            Err(e) => Err(RpcError::Unavailable(e)),
        };
        match answer {
            Ok(JoinRaftReply::Joined { members }) => return Ok(members),
            Ok(JoinRaftReply::NotLeader { leader: Some(l) }) if Some(l.node_id) != m.node_id => {
                queue.insert(
                    0,
                    KnownManager {
                        node_id: Some(l.node_id),
                        addr: l.addr,
                    },
                );
                continue;
            }
            Ok(JoinRaftReply::NotLeader { .. }) => last = format!("{} knows no leader", m.addr),
            Err(RpcError::Status(s)) if s.code == Code::AlreadyExists => {
                return Err(JoinRaftError::IdTaken(raft_id))
            }
            Err(RpcError::Status(s))
                if matches!(
                    s.code,
                    Code::PermissionDenied | Code::FailedPrecondition | Code::InvalidArgument
                ) =>
            {
                return Err(JoinRaftError::Refused(s.message))
            }
            Err(e) => last = format!("{}: {e}", m.addr),
        }
        if tokio::time::Instant::now() >= until {
            return Err(JoinRaftError::NoLeader {
                tried: tried.join(", "),
                last,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// The RPC peer for a known manager: its address resolved (`host:port`; a host name through the
/// system resolver) and its certificate's node id and role.
pub fn resolve_peer(m: &KnownManager) -> Result<Peer, String> {
    use std::net::ToSocketAddrs;
    let addr = m
        .addr
        .to_socket_addrs()
        .map_err(|e| format!("manager address {:?}: {e}", m.addr))?
        .next()
        .ok_or_else(|| format!("manager address {:?} resolves to nothing", m.addr))?;
    Ok(Peer {
        addr,
        role: Role::Manager,
        node_id: m.node_id,
    })
}
