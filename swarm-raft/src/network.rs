//! How managers talk: the [`Transport`] seam and openraft's network traits implemented over it.
//!
//! A transport delivers one [`RaftRpc`] to a manager and returns its [`RaftReply`]. The in-memory
//! `Router` (feature `testing`) implements it for tests and benchmarks; the QUIC transport of
//! swarm-net implements it for real clusters (both ends serialize the enums with bincode). On the
//! receiving side the transport hands the request to [`crate::RaftNode::handle_rpc`].
//!
//! [`NetworkFactory`] adapts a transport to openraft's `RaftNetworkFactory`/`RaftNetwork`, enforces
//! openraft's per-RPC deadline, and records, per peer, when it last answered ([`PeerHealth`]): the
//! leader uses that to refuse membership changes that would leave no reachable quorum.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use serde::{Deserialize, Serialize};
use swarm_core::{CommitError, StoreAction};
use thiserror::Error;

use crate::types::{ManagerNode, NodeId, TypeConfig};

/// A request from one manager to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    /// Replicate entries / heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Ask for a vote.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower forwards a proposal to the leader, which stamps and commits it.
    Propose(Vec<StoreAction>),
    /// A follower asks the leader for a read index (linearizable reads).
    ReadIndex,
    /// The leader hands its leadership to the receiver: start an election now (raft's
    /// TimeoutNow, see [`crate::RaftNode::transfer_leadership`]).
    TimeoutNow(TimeoutNow),
}

/// The leader's side of a leadership transfer: who sends it, in which term, and the last log
/// index the receiver must hold. The receiver starts an election only if it still follows that
/// leader in that term and holds that index (so a late or stale message starts nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNow {
    /// The leader handing over.
    pub leader: NodeId,
    /// Its term.
    pub term: u64,
    /// Its last log index when it asked.
    pub last_log_index: u64,
}

/// The answer to a [`RaftRpc`], same variant.
#[allow(missing_docs)] // One variant per request variant, same name.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The index the proposal was applied at.
    Propose(Result<u64, CommitError>),
    /// The leader's read index.
    ReadIndex(Result<u64, CommitError>),
    /// Whether the receiver started an election.
    TimeoutNow(bool),
}

/// Why a transport could not deliver a request.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TransportError {
    /// The peer cannot be reached (down, partitioned, unknown); openraft backs off and retries.
    #[error("manager {0} is unreachable: {1}")]
    Unreachable(NodeId, String),
    /// The reply did not match the request (a transport bug or a confused peer).
    #[error("manager {0} answered with the wrong message type")]
    BadReply(NodeId),
}

/// Delivers requests between managers. See the module docs.
///
/// # Contract
/// - `call` delivers `rpc` to `target` at most once and returns its reply, or an error if it could
///   not be delivered or the reply was lost. It may take as long as the network takes; the caller
///   enforces deadlines.
/// - Replies come from the node addressed (a transport must authenticate peers: swarm-net checks
///   the certificate's node id and role).
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `rpc` to `target` (whose address is `node.addr`) and waits for the reply.
    async fn call(
        &self,
        target: NodeId,
        node: &ManagerNode,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError>;
}

/// When each peer last answered an RPC from this node.
#[derive(Debug, Default)]
pub struct PeerHealth {
    last_ok: Mutex<HashMap<NodeId, Instant>>,
    /// When a voter last refused our candidacy because its log is longer than ours.
    longer_log: Mutex<Option<Instant>>,
}

impl PeerHealth {
    fn ok(&self, peer: NodeId) {
        self.last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, Instant::now());
    }

    /// Whether `peer` answered within `within`.
    pub fn reachable(&self, peer: NodeId, within: Duration) -> bool {
        self.last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&peer)
            .is_some_and(|t| t.elapsed() <= within)
    }

    /// Whether a voter refused this node's candidacy for its shorter log within `within`: this
    /// node cannot win until it catches up, so its election timer backs off (openraft's own
    /// timer does the same with its `smaller_log_timeout`; swarm-raft's watchdog replaces it).
    pub fn longer_log_seen(&self, within: Duration) -> bool {
        self.longer_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() <= within)
    }
}

/// openraft's network factory over a [`Transport`].
#[derive(Clone)]
pub struct NetworkFactory {
    id: NodeId,
    transport: Arc<dyn Transport>,
    health: Arc<PeerHealth>,
}

impl NetworkFactory {
    /// A factory for node `id` sending through `transport`.
    pub fn new(
        id: NodeId,
        transport: Arc<dyn Transport>,
        health: Arc<PeerHealth>,
    ) -> NetworkFactory {
        NetworkFactory {
            id,
            transport,
            health,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &ManagerNode) -> Connection {
        Connection {
            id: self.id,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
            health: self.health.clone(),
        }
    }
}

/// openraft's network to one peer.
pub struct Connection {
    id: NodeId,
    target: NodeId,
    node: ManagerNode,
    transport: Arc<dyn Transport>,
    health: Arc<PeerHealth>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, ManagerNode, E>>;

impl Connection {
    async fn call<E: std::error::Error>(
        &self,
        action: RPCTypes,
        rpc: RaftRpc,
        ttl: Duration,
    ) -> RpcResult<RaftReply, E> {
        match tokio::time::timeout(ttl, self.transport.call(self.target, &self.node, rpc)).await {
            Err(_) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: ttl,
            })),
            Ok(Err(e @ TransportError::Unreachable(..))) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Ok(Err(e)) => Err(RPCError::Network(NetworkError::new(&e))),
            Ok(Ok(reply)) => {
                self.health.ok(self.target);
                Ok(reply)
            }
        }
    }

    fn bad_reply<E: std::error::Error>(&self) -> RPCError<NodeId, ManagerNode, E> {
        RPCError::Network(NetworkError::new(&TransportError::BadReply(self.target)))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, ManagerNode, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        match self
            .call(
                RPCTypes::AppendEntries,
                RaftRpc::AppendEntries(rpc),
                option.hard_ttl(),
            )
            .await?
        {
            RaftReply::AppendEntries(r) => r.map_err(|e| self.remote(e)),
            _ => Err(self.bad_reply()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        match self
            .call(
                RPCTypes::InstallSnapshot,
                RaftRpc::InstallSnapshot(rpc),
                option.hard_ttl(),
            )
            .await?
        {
            RaftReply::InstallSnapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(self.bad_reply()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        let ours = rpc.last_log_id;
        match self
            .call(RPCTypes::Vote, RaftRpc::Vote(rpc), option.hard_ttl())
            .await?
        {
            RaftReply::Vote(r) => {
                if matches!(&r, Ok(v) if !v.vote_granted && v.last_log_id > ours) {
                    *self
                        .health
                        .longer_log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                }
                r.map_err(|e| self.remote(e))
            }
            _ => Err(self.bad_reply()),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Retry an unreachable peer every 200 ms: short enough that a healed partition or a
        // restarted manager is caught up well within an election timeout.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
