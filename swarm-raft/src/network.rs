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
//!
//! # Append size bounded by time ([`AppendBudgets`])
//! openraft 0.9 gives every append round trip (send, the follower's write and fsync, the answer)
//! `heartbeat_interval` and no more: the deadline is hard-coded in its replication loop. A
//! catch-up batch of [`crate::log_store::MAX_APPEND_BYTES`] (3 MiB) that cannot cross in one
//! heartbeat would time out, be sent again, time out again, and the follower would never catch
//! up (and with a quorum depending on it, the leader would step down). So each peer has a byte
//! budget per append, starting from what the deadline allows at a modest rate
//! ([`INITIAL_BYTES_PER_MS`] per millisecond of heartbeat), halved below the size of an append
//! that timed out, and grown by half while appends near the budget answer within a quarter of the
//! deadline (up to `MAX_APPEND_BYTES`). An append over budget is answered, before anything is
//! sent, with openraft's `PayloadTooLarge` carrying how many of its entries fit; openraft retries
//! at once with that many entries (and keeps the hint for its next ten appends). One entry is
//! always sent, however large.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
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

use crate::log_store::MAX_APPEND_BYTES;
use crate::prevote::{PreVote, PreVoteReply};
use crate::types::{Entry, ManagerNode, NodeId, TypeConfig};

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
    /// Would the receiver vote for this candidate? (Pre-vote, see [`crate::prevote`].)
    PreVote(PreVote),
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
    /// The receiver's pre-vote answer.
    PreVote(PreVoteReply),
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

    /// Records that a voter refused this node's candidacy (or pre-candidacy) for its longer log.
    pub(crate) fn saw_longer_log(&self) {
        *self.longer_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
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

/// Smallest append byte budget (an entry larger than the budget is still sent, alone).
pub const MIN_APPEND_BUDGET: u64 = 16 * 1024;
/// A peer's first append budget, per millisecond of openraft's append deadline (the heartbeat):
/// 8 KiB, i.e. 8 MB/s, which a loaded manager crosses even in an unoptimised build (800 KiB per
/// 100 ms heartbeat). Faster peers grow their budget from there.
pub const INITIAL_BYTES_PER_MS: u64 = 8 * 1024;

/// The byte budget of one append message to each peer. See the module docs.
#[derive(Debug, Default)]
pub struct AppendBudgets {
    budgets: Mutex<HashMap<NodeId, u64>>,
}

impl AppendBudgets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, u64>> {
        self.budgets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The budget of an append to `peer` that must answer within `deadline`.
    pub fn budget(&self, peer: NodeId, deadline: Duration) -> u64 {
        *self
            .lock()
            .entry(peer)
            .or_insert_with(|| initial_budget(deadline))
    }

    /// An append of `sent` bytes to `peer` did not answer within its deadline: the next ones are
    /// at most half as large (never below [`MIN_APPEND_BUDGET`]). `sent` 0 (a heartbeat or a lone
    /// entry, which is never cut) changes nothing.
    pub fn timed_out(&self, peer: NodeId, sent: u64, deadline: Duration) {
        if sent == 0 {
            return;
        }
        let mut b = self.lock();
        let b = b.entry(peer).or_insert_with(|| initial_budget(deadline));
        *b = (sent.min(*b) / 2).max(MIN_APPEND_BUDGET);
    }

    /// An append of `sent` bytes to `peer` answered after `took` (deadline `deadline`): a budget
    /// at least half used that far inside the deadline grows by half (up to `MAX_APPEND_BYTES`).
    pub fn answered(&self, peer: NodeId, sent: u64, took: Duration, deadline: Duration) {
        let mut b = self.lock();
        let b = b.entry(peer).or_insert_with(|| initial_budget(deadline));
        if sent.saturating_mul(2) >= *b && took.saturating_mul(4) <= deadline {
            *b = (*b + *b / 2).min(MAX_APPEND_BYTES);
        }
    }
}

/// The first budget for an append deadline (see [`INITIAL_BYTES_PER_MS`]).
pub fn initial_budget(deadline: Duration) -> u64 {
    let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    ms.saturating_mul(INITIAL_BYTES_PER_MS)
        .clamp(MIN_APPEND_BUDGET, MAX_APPEND_BYTES)
}

/// How many of `entries` (at least one) an append of at most `budget` bytes carries, and their
/// encoded size.
fn entries_within(entries: &[Entry], budget: u64) -> (usize, u64) {
    let mut total = 0u64;
    for (n, e) in entries.iter().enumerate() {
        let len = crate::codec::encoded_len(e);
        if n > 0 && total.saturating_add(len) > budget {
            return (n, total);
        }
        total = total.saturating_add(len);
    }
    (entries.len(), total)
}

/// Shrinks a peer's budget when dropped armed: the append it watches was cancelled (openraft's
/// own deadline) or timed out.
struct Watch<'a> {
    budgets: &'a AppendBudgets,
    peer: NodeId,
    sent: u64,
    deadline: Duration,
    armed: bool,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(
                peer = self.peer,
                bytes = self.sent,
                "append timed out; smaller appends to this peer"
            );
            self.budgets.timed_out(self.peer, self.sent, self.deadline);
        }
    }
}

/// openraft's network factory over a [`Transport`].
#[derive(Clone)]
pub struct NetworkFactory {
    id: NodeId,
    transport: Arc<dyn Transport>,
    health: Arc<PeerHealth>,
    budgets: Arc<AppendBudgets>,
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
            budgets: Arc::new(AppendBudgets::default()),
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
            budgets: self.budgets.clone(),
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
    budgets: Arc<AppendBudgets>,
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
        let deadline = option.hard_ttl();
        // A lone entry is sent whole whatever its size: not worth measuring (the common case of
        // a leader keeping up); its answer or timeout says nothing about how to cut a batch.
        let (fit, sent) = if rpc.entries.len() > 1 {
            entries_within(&rpc.entries, self.budgets.budget(self.target, deadline))
        } else {
            (rpc.entries.len(), 0)
        };
        if fit < rpc.entries.len() {
            let hint = u64::try_from(fit).unwrap_or(u64::MAX).max(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let mut watch = Watch {
            budgets: &self.budgets,
            peer: self.target,
            sent,
            deadline,
            armed: true,
        };
        let started = Instant::now();
        let res = self
            .call(
                RPCTypes::AppendEntries,
                RaftRpc::AppendEntries(rpc),
                deadline,
            )
            .await;
        if !matches!(res, Err(RPCError::Timeout(_))) {
            watch.armed = false;
        }
        drop(watch);
        if res.is_ok() {
            self.budgets
                .answered(self.target, sent, started.elapsed(), deadline);
        }
        match res? {
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
                    self.health.saw_longer_log();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Proposal;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use swarm_core::testing::secret;

    const HB: Duration = Duration::from_millis(100);

    fn entry(index: u64, bytes: usize) -> Entry {
        let action = StoreAction::Create(secret(index as u128, "s", &vec![7u8; bytes]).into());
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal {
                timestamp: Default::default(),
                actions: vec![action],
            }),
        }
    }

    /// Property: the first budget is what the deadline allows at the initial rate, within
    /// [MIN_APPEND_BUDGET, MAX_APPEND_BYTES].
    #[test]
    fn the_first_budget_follows_the_deadline() {
        assert_eq!(initial_budget(HB), 100 * INITIAL_BYTES_PER_MS);
        assert_eq!(initial_budget(Duration::from_millis(1)), MIN_APPEND_BUDGET);
        assert_eq!(initial_budget(Duration::from_secs(3600)), MAX_APPEND_BYTES);
        let b = AppendBudgets::default();
        assert_eq!(b.budget(2, HB), initial_budget(HB));
    }

    /// Property: a timed-out append halves the budget below its own size, never under the
    /// minimum; a timed-out heartbeat changes nothing.
    #[test]
    fn a_timeout_halves_the_budget() {
        let b = AppendBudgets::default();
        let first = b.budget(2, HB);
        b.timed_out(2, 0, HB);
        assert_eq!(b.budget(2, HB), first);
        b.timed_out(2, 300_000, HB);
        assert_eq!(b.budget(2, HB), 150_000);
        b.timed_out(2, 1_000_000, HB); // larger than the budget: halves the budget
        assert_eq!(b.budget(2, HB), 75_000);
        for _ in 0..20 {
            b.timed_out(2, b.budget(2, HB), HB);
        }
        assert_eq!(b.budget(2, HB), MIN_APPEND_BUDGET);
        assert_eq!(b.budget(3, HB), first, "budgets are per peer");
    }

    /// Property: a budget grows by half only when an append used at least half of it and
    /// answered within a quarter of the deadline; it never exceeds MAX_APPEND_BYTES.
    #[test]
    fn quick_full_appends_grow_the_budget() {
        let b = AppendBudgets::default();
        let first = b.budget(2, HB);
        b.answered(2, first / 4, Duration::from_millis(1), HB); // small: no growth
        assert_eq!(b.budget(2, HB), first);
        b.answered(2, first, Duration::from_millis(30), HB); // slow: no growth
        assert_eq!(b.budget(2, HB), first);
        b.answered(2, first, Duration::from_millis(20), HB);
        assert_eq!(b.budget(2, HB), first + first / 2);
        for _ in 0..20 {
            b.answered(2, b.budget(2, HB), Duration::from_millis(1), HB);
        }
        assert_eq!(b.budget(2, HB), MAX_APPEND_BYTES);
    }

    /// Property: an append carries the longest prefix of its entries within the budget, and
    /// always at least one entry.
    #[test]
    fn entries_are_cut_at_the_budget() {
        let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 10_000)).collect();
        let one = crate::codec::encoded_len(&entries[0]);
        assert!(one > 10_000);
        assert_eq!(entries_within(&entries, 5 * one), (5, 5 * one));
        assert_eq!(entries_within(&entries, 3 * one + 1), (3, 3 * one));
        assert_eq!(entries_within(&entries, 1), (1, one));
        assert_eq!(entries_within(&[], 1), (0, 0));
    }
}
