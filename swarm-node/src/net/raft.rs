//! Raft between managers over swarm-net's QUIC RPC: the [`QuicTransport`] swarm-raft sends
//! through, and the methods a manager serves ([`raft_routes`]).
//!
//! # Wire
//! One method per raft message, each carrying swarm-raft's [`RaftRpc`] and answering its
//! [`RaftReply`] (bincode, like every swarm-net call); a request whose variant does not match its
//! method is refused with `InvalidArgument`. Every method is [`Access::Manager`]. Size limits:
//! append, snapshot chunk and forwarded proposal at most [`MAX_RAFT_MESSAGE`] (4 MiB, SEMANTICS:
//! "raft message <= 4 MiB"); an append batch is cut at swarm-raft's `MAX_APPEND_BYTES` (3 MiB of
//! WAL records, never smaller than the entries they encode, plus at least one entry, itself at
//! most a 1.5 MiB proposal), a snapshot chunk at `RaftConfig::snapshot_chunk_bytes` (at most
//! 4 MiB - 64 KiB, checked by swarm-raft), and a proposal at 1.5 MiB: every one leaves room for
//! the message around it. Votes, pre-votes and read-index requests are small ([`MAX_SMALL_MESSAGE`]).
//!
//! The protocol version ([`alpn_protocol`]) names the store and raft encodings, so managers of
//! releases that could not decode each other's entries or snapshots refuse each other at the
//! handshake.
//!
//! # Who may speak raft to a manager
//! TLS and [`Access::Manager`] admit only manager certificates of this cluster. On top of that the
//! server admits a caller only if its certificate's node id belongs to the raft cluster:
//! 1. the caller's node id maps ([`MemberIds::raft_id`]) to a raft id that is a voter or learner of
//!    the local node's effective membership, or that the embedder lists as being added; or
//! 2. the local node has no membership yet (a manager that was just started to be added: it cannot
//!    know its peers until the leader's first append, and only managers hold manager
//!    certificates); or
//! 3. the membership has a member whose node id the local node does not know yet (a manager added
//!    in a log entry whose node object has not replicated here, for example a new leader elected
//!    just after it joined) and the caller's node id is not known as any other raft member's: it
//!    may be that member.
//!
//! A certificate whose node id is known and maps to a raft id outside the membership (a removed
//! or demoted-and-removed manager) is refused with `PermissionDenied`, as is a node id that maps
//! to nothing while every member is accounted for. When the caller's raft id is known, the sender
//! named in a vote, pre-vote, append or snapshot message (the vote's leader id, the pre-vote's
//! candidate) must be it: a member cannot speak for another.
//!
//! # Append timing
//! openraft 0.9 bounds every append round trip (send, the follower's WAL fsync, the answer) by
//! `heartbeat_interval`, hard-coded in its replication loop; only snapshot chunks get their own
//! timeout (`RaftConfig::install_snapshot_timeout`). So swarm-raft bounds each append by bytes,
//! per peer, below `MAX_APPEND_BYTES` (swarm-raft `network::AppendBudgets`): the budget starts
//! at what one heartbeat carries at 8 MB/s, halves after an append that timed out and grows
//! while appends answer quickly; openraft is told to send fewer entries with `PayloadTooLarge`
//! hints. One entry is always sent whole: an entry that cannot cross in one heartbeat (a 1.5 MiB
//! proposal over a slow link, or a 100 KiB entry in an unoptimised build on a loaded machine)
//! still cannot be replicated, and a longer heartbeat is then the only remedy.
//!
//! # Queue bound
//! At most [`MAX_QUEUED_PER_PEER`] (4,096) messages to one peer may be in flight or waiting; more
//! and the peer is reported unreachable (openraft backs off and retries) instead of holding
//! unbounded memory for a peer that does not answer.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::Id;
use swarm_net::rpc::{
    Access, CallContext, Client, Code, Peer, Router, RpcError, Status, Unary, ALPN,
};
use swarm_net::Role;
use swarm_raft::types::ManagerNode;
use swarm_raft::{NodeId, RaftNode, RaftReply, RaftRpc, Transport, TransportError};
use tokio::sync::Semaphore;

/// Largest raft message (append, snapshot chunk, forwarded proposal), encoded: 4 MiB.
pub const MAX_RAFT_MESSAGE: u32 = 4 * 1024 * 1024;
/// Largest vote or read-index message, and largest answer to any raft method except a proposal's
/// (answers carry no entries).
pub const MAX_SMALL_MESSAGE: u32 = 64 * 1024;
/// Messages to one peer that may be in flight or waiting (SEMANTICS: 4,096).
pub const MAX_QUEUED_PER_PEER: usize = 4096;

// An append batch (at most MAX_APPEND_BYTES of records, plus framing) fits in a raft message.
const _: () =
    assert!(swarm_raft::log_store::MAX_APPEND_BYTES + 512 * 1024 <= MAX_RAFT_MESSAGE as u64);
// So does a proposal.
const _: () =
    assert!(swarm_core::action::MAX_PROPOSAL_BYTES + 64 * 1024 <= MAX_RAFT_MESSAGE as usize);

/// Replicate entries (and heartbeats).
pub const APPEND: Unary<RaftRpc, RaftReply> = Unary::new(
    "raft.v1.append",
    Access::Manager,
    MAX_RAFT_MESSAGE,
    MAX_SMALL_MESSAGE,
);
/// Ask for a vote.
pub const VOTE: Unary<RaftRpc, RaftReply> = Unary::new(
    "raft.v1.vote",
    Access::Manager,
    MAX_SMALL_MESSAGE,
    MAX_SMALL_MESSAGE,
);
/// One snapshot chunk.
pub const INSTALL_SNAPSHOT: Unary<RaftRpc, RaftReply> = Unary::new(
    "raft.v1.install_snapshot",
    Access::Manager,
    MAX_RAFT_MESSAGE,
    MAX_SMALL_MESSAGE,
);
/// A follower forwards a proposal to the leader.
pub const PROPOSE: Unary<RaftRpc, RaftReply> = Unary::new(
    "raft.v1.propose",
    Access::Manager,
    MAX_RAFT_MESSAGE,
    MAX_SMALL_MESSAGE,
);
/// A follower asks the leader for a read index.
pub const READ_INDEX: Unary<RaftRpc, RaftReply> = Unary::new(
    "raft.v1.read_index",
    Access::Manager,
    MAX_SMALL_MESSAGE,
    MAX_SMALL_MESSAGE,
);

/// The leader hands its leadership to the receiver (raft's TimeoutNow).
pub const TIMEOUT_NOW: Unary<RaftRpc, RaftReply> = Unary::new(
    "raft.v1.timeout_now",
    Access::Manager,
    MAX_SMALL_MESSAGE,
    MAX_SMALL_MESSAGE,
);

/// A candidate asks whether the receiver would vote for it (pre-vote, swarm-raft's `prevote`).
pub const PRE_VOTE: Unary<RaftRpc, RaftReply> = Unary::new(
    "raft.v1.pre_vote",
    Access::Manager,
    MAX_SMALL_MESSAGE,
    MAX_SMALL_MESSAGE,
);

/// The protocol version a manager speaks: swarm-net's [`ALPN`] plus the versions of the
/// encodings raft carries (`store`: the snapshot and store format, `raft`: the raft messages).
/// Put it in `RpcConfig::alpn_protocol` of every node of the cluster (workers included: one
/// listener serves both).
pub fn alpn_protocol() -> Vec<u8> {
    format!(
        "{}-store{}-raft{}",
        String::from_utf8_lossy(ALPN),
        swarm_core::store::SNAPSHOT_FORMAT,
        RAFT_WIRE_VERSION
    )
    .into_bytes()
}

/// Version of the raft messages' encoding ([`RaftRpc`] / [`RaftReply`] under bincode, openraft
/// 0.9's types). Bump it with any change to them. 3: pre-vote ([`PRE_VOTE`]).
pub const RAFT_WIRE_VERSION: u32 = 3;

/// Which swarm node (certificate node id) is which raft member. swarm-node backs it with the store
/// (`Node.manager_status.raft_id`) plus an explicit map of managers being added; tests use
/// [`MemberMap`].
pub trait MemberIds: Send + Sync + 'static {
    /// The node id recorded for raft member `raft_id`, if known.
    fn node_id(&self, raft_id: NodeId) -> Option<Id>;
    /// The raft id recorded for node `node_id`, if it is (or was) a manager known here.
    fn raft_id(&self, node_id: &Id) -> Option<NodeId>;
    /// Raft ids being added right now (not in the membership yet, but allowed to call).
    fn joining(&self) -> Vec<NodeId> {
        Vec::new()
    }
}

/// An explicit raft id <-> node id map (tests, and the "being added" part of swarm-node's
/// resolver).
#[derive(Debug, Default)]
pub struct MemberMap {
    ids: RwLock<HashMap<NodeId, Id>>,
    joining: RwLock<HashSet<NodeId>>,
}

impl MemberMap {
    /// An empty map.
    pub fn new() -> MemberMap {
        MemberMap::default()
    }

    /// Records that raft member `raft_id` is node `node_id`.
    pub fn insert(&self, raft_id: NodeId, node_id: Id) {
        self.ids
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(raft_id, node_id);
    }

    /// Forgets raft member `raft_id`.
    pub fn remove(&self, raft_id: NodeId) {
        self.ids
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&raft_id);
        self.set_joining(raft_id, false);
    }

    /// Marks `raft_id` as being added (or no longer).
    pub fn set_joining(&self, raft_id: NodeId, joining: bool) {
        let mut j = self.joining.write().unwrap_or_else(|e| e.into_inner());
        if joining {
            j.insert(raft_id);
        } else {
            j.remove(&raft_id);
        }
    }
}

impl MemberIds for MemberMap {
    fn node_id(&self, raft_id: NodeId) -> Option<Id> {
        self.ids
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&raft_id)
            .copied()
    }

    fn raft_id(&self, node_id: &Id) -> Option<NodeId> {
        self.ids
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(_, n)| *n == node_id)
            .map(|(r, _)| *r)
    }

    fn joining(&self) -> Vec<NodeId> {
        self.joining
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// swarm-raft's [`Transport`] over swarm-net QUIC. See the module docs.
pub struct QuicTransport {
    client: Arc<Client>,
    members: Arc<dyn MemberIds>,
    call_timeout: Duration,
    queues: Mutex<HashMap<NodeId, Arc<Semaphore>>>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl QuicTransport {
    /// A transport calling through `client` (shared with the node's other calls), expecting each
    /// raft member to present the certificate of the node id `members` records for it.
    pub fn new(client: Arc<Client>, members: Arc<dyn MemberIds>) -> QuicTransport {
        QuicTransport {
            client,
            members,
            // openraft's own deadline (heartbeat, snapshot timeout) cancels calls earlier; this
            // only bounds a call made outside it.
            call_timeout: Duration::from_secs(60),
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn queue(&self, target: NodeId) -> Arc<Semaphore> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(target)
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_QUEUED_PER_PEER)))
            .clone()
    }

    /// The swarm-net peer for raft member `target` at `node.addr`.
    pub fn peer(&self, target: NodeId, node: &ManagerNode) -> Result<Peer, TransportError> {
        let addr: SocketAddr = node.addr.parse().map_err(|e| {
            TransportError::Unreachable(
                target,
                format!("address {:?} is not an IP:port: {e}", node.addr),
            )
        })?;
        let node_id = self.members.node_id(target).ok_or_else(|| {
            TransportError::Unreachable(
                target,
                "no node id is recorded for this raft member, so its certificate cannot be checked"
                    .into(),
            )
        })?;
        Ok(Peer {
            addr,
            role: Role::Manager,
            node_id: Some(node_id),
        })
    }
}

fn method_of(rpc: &RaftRpc) -> &'static Unary<RaftRpc, RaftReply> {
    match rpc {
        RaftRpc::AppendEntries(_) => &APPEND,
        RaftRpc::Vote(_) => &VOTE,
        RaftRpc::InstallSnapshot(_) => &INSTALL_SNAPSHOT,
        RaftRpc::Propose(_) => &PROPOSE,
        RaftRpc::ReadIndex => &READ_INDEX,
        RaftRpc::TimeoutNow(_) => &TIMEOUT_NOW,
        RaftRpc::PreVote(_) => &PRE_VOTE,
    }
}

fn same_variant(rpc: &RaftRpc, reply: &RaftReply) -> bool {
    matches!(
        (rpc, reply),
        (RaftRpc::AppendEntries(_), RaftReply::AppendEntries(_))
            | (RaftRpc::Vote(_), RaftReply::Vote(_))
            | (RaftRpc::InstallSnapshot(_), RaftReply::InstallSnapshot(_))
            | (RaftRpc::Propose(_), RaftReply::Propose(_))
            | (RaftRpc::ReadIndex, RaftReply::ReadIndex(_))
            | (RaftRpc::TimeoutNow(_), RaftReply::TimeoutNow(_))
            | (RaftRpc::PreVote(_), RaftReply::PreVote(_))
    )
}

#[async_trait]
impl Transport for QuicTransport {
    async fn call(
        &self,
        target: NodeId,
        node: &ManagerNode,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        let peer = self.peer(target, node)?;
        let queue = self.queue(target);
        let _permit = queue.try_acquire_owned().map_err(|_| {
            TransportError::Unreachable(
                target,
                format!("{MAX_QUEUED_PER_PEER} messages are already waiting for this manager"),
            )
        })?;
        let method = method_of(&rpc);
        let reply = self
            .client
            .unary(&peer, method, &rpc, self.call_timeout)
            .await
            .map_err(|e| unreachable(target, e))?;
        if !same_variant(&rpc, &reply) {
            return Err(TransportError::BadReply(target));
        }
        Ok(reply)
    }
}

fn unreachable(target: NodeId, e: RpcError) -> TransportError {
    TransportError::Unreachable(target, e.to_string())
}

/// Where the raft server finds the current raft node and who the members are. The listener
/// starts before raft and outlives restarts of the manager: set the node when raft starts, clear
/// it when it stops. Cloning gives another handle to the same target.
#[derive(Clone)]
pub struct RaftTarget {
    node: Arc<RwLock<Option<RaftNode>>>,
    members: Arc<dyn MemberIds>,
}

impl std::fmt::Debug for RaftTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftTarget")
            .field("node", &self.get().map(|n| n.id()))
            .finish_non_exhaustive()
    }
}

impl RaftTarget {
    /// A target with no raft node yet; `members` resolves callers (see the module docs).
    pub fn new(members: Arc<dyn MemberIds>) -> RaftTarget {
        RaftTarget {
            node: Arc::new(RwLock::new(None)),
            members,
        }
    }

    /// Installs (`Some`) or removes (`None`) the raft node served.
    pub fn set(&self, node: Option<RaftNode>) {
        *self.node.write().unwrap_or_else(|e| e.into_inner()) = node;
    }

    /// The raft node served, if any.
    pub fn get(&self) -> Option<RaftNode> {
        self.node.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Checks the caller of a raft method (see the module docs) and returns its raft id if known.
    fn admit(&self, node: &RaftNode, ctx: &CallContext) -> Result<Option<NodeId>, Status> {
        let Some(peer) = ctx.peer else {
            return Err(Status::new(
                Code::Unauthenticated,
                "raft methods need a manager certificate",
            ));
        };
        let caller = peer.identity.node_id;
        let status = node.status();
        let in_membership = |r: NodeId| status.voters.contains(&r) || status.learners.contains(&r);
        let caller_raft = self.members.raft_id(&caller);
        if let Some(r) = caller_raft {
            if in_membership(r) || self.members.joining().contains(&r) {
                return Ok(Some(r));
            }
        }
        if !status.has_membership() {
            return Ok(caller_raft);
        }
        if caller_raft.is_none() {
            let unknown_member = status
                .voters
                .iter()
                .chain(&status.learners)
                .any(|&r| r != node.id() && self.members.node_id(r).is_none());
            if unknown_member {
                return Ok(None);
            }
        }
        Err(Status::new(
            Code::PermissionDenied,
            format!(
                "node {caller} is not a raft member of this cluster{}",
                caller_raft.map_or(String::new(), |r| format!(
                    " (its raft id {r:x} is not in the membership)"
                ))
            ),
        ))
    }
}

/// The raft member a message says it comes from (the candidate or leader in its vote).
fn claimed_sender(rpc: &RaftRpc) -> Option<NodeId> {
    match rpc {
        RaftRpc::AppendEntries(r) => Some(r.vote.leader_id().node_id),
        RaftRpc::Vote(r) => Some(r.vote.leader_id().node_id),
        RaftRpc::InstallSnapshot(r) => Some(r.vote.leader_id().node_id),
        RaftRpc::TimeoutNow(t) => Some(t.leader),
        RaftRpc::PreVote(p) => Some(p.candidate),
        RaftRpc::Propose(_) | RaftRpc::ReadIndex => None,
    }
}

async fn serve(
    target: RaftTarget,
    method: &'static Unary<RaftRpc, RaftReply>,
    ctx: CallContext,
    rpc: RaftRpc,
) -> Result<RaftReply, Status> {
    let name = method.descriptor().name;
    if method_of(&rpc).descriptor().name != name {
        return Err(Status::new(
            Code::InvalidArgument,
            format!("{name} carries another raft message"),
        ));
    }
    let Some(node) = target.get() else {
        return Err(Status::new(
            Code::Unavailable,
            "raft is not running on this manager",
        ));
    };
    let caller = target.admit(&node, &ctx)?;
    if let (Some(caller), Some(claimed)) = (caller, claimed_sender(&rpc)) {
        if caller != claimed {
            return Err(Status::new(
                Code::PermissionDenied,
                format!("raft member {caller:x} sent a message as {claimed:x}"),
            ));
        }
    }
    Ok(node.handle_rpc(rpc).await)
}

/// Adds the raft methods to `router`, served by whatever raft node `target` holds (no node:
/// `Unavailable`).
pub fn raft_routes(router: Router, target: RaftTarget) -> Router {
    let mut router = router;
    for method in [
        &APPEND,
        &VOTE,
        &INSTALL_SNAPSHOT,
        &PROPOSE,
        &READ_INDEX,
        &TIMEOUT_NOW,
        &PRE_VOTE,
    ] {
        let target = target.clone();
        router = router.unary(method, move |ctx, rpc| {
            serve(target.clone(), method, ctx, rpc)
        });
    }
    router
}
