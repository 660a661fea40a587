//! Group commit of concurrent proposals on the leader.
//!
//! openraft 0.9's core appends one client write at a time and waits for that append to be durable
//! before it takes the next one (`RaftCore::append_to_log` awaits the flush callback). Submitted
//! one by one, concurrent proposals would therefore each cost one fsync, and the WAL's group
//! commit would never see two of them in flight. The [`Batcher`] sits in front of
//! `Raft::client_write`: at most [`crate::RaftConfig::proposal_pipeline`] log entries of proposals
//! are in flight at once, and proposals that arrive meanwhile wait and are then merged, in arrival
//! order, into the next entry (bounded by [`MAX_PROPOSAL_BYTES`], so the entry stays a valid
//! proposal). One entry, one append, one fsync, one replication message for all of them.
//!
//! # Contract
//! - Each proposal is answered only with the outcome of the entry that carried it: `Ok(index)`
//!   once that entry is committed and applied (so durable on a quorum, as before), or the error.
//! - Merged proposals commit atomically together at one index, which is a valid serial order of
//!   concurrent proposals. If the store refuses a merged entry, nothing of it was applied and each
//!   of its proposals is proposed again on its own, so each gets the answer it would have had
//!   alone (a proposal the store refuses never makes another one fail).
//! - A lone proposal (nothing in flight) is submitted at once: no waiting for company.
//! - A proposal whose caller gave up (timed out) before it was submitted is dropped unsent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use swarm_core::action::MAX_PROPOSAL_BYTES;
use swarm_core::{Clock, CommitError, StoreAction};
use tokio::sync::oneshot;

use crate::types::{Applied, NodeId, Proposal, Raft};

/// Most proposals merged into one entry (besides the byte bound).
const MAX_MERGED: usize = 1024;

/// The answer a proposal waits for.
pub(crate) type Reply = Result<u64, CommitError>;

struct Request {
    actions: Vec<StoreAction>,
    /// Encoded size of `actions`.
    bytes: u64,
    /// Propose in an entry of its own (a merged entry holding it was refused).
    alone: bool,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Request>,
    /// Entries submitted to openraft and not answered yet.
    inflight: usize,
}

/// Merges concurrent proposals into shared log entries (see the module docs).
pub(crate) struct Batcher {
    raft: Raft,
    clock: Arc<dyn Clock>,
    depth: usize,
    timeout: Duration,
    state: Mutex<State>,
}

impl Batcher {
    /// A batcher submitting to `raft`, stamping entries with `clock`; at most `depth` entries in
    /// flight (at least 1), each given up after `timeout` (answered `NoQuorum`).
    pub(crate) fn new(
        raft: Raft,
        clock: Arc<dyn Clock>,
        depth: usize,
        timeout: Duration,
    ) -> Arc<Batcher> {
        Arc::new(Batcher {
            raft,
            clock,
            depth: depth.max(1),
            timeout,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `actions` (encoded size `bytes`, already checked against the proposal limit) and
    /// returns where its answer will arrive. Must be called inside a tokio runtime.
    pub(crate) fn submit(
        self: &Arc<Self>,
        actions: Vec<StoreAction>,
        bytes: u64,
    ) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        st.pending.push_back(Request {
            actions,
            bytes,
            alone: false,
            reply: tx,
        });
        self.pump(st);
        rx
    }

    /// Submits entries while there is room in the pipeline.
    fn pump(self: &Arc<Self>, mut st: MutexGuard<'_, State>) {
        st.pending.retain(|r| !r.reply.is_closed());
        while st.inflight < self.depth && !st.pending.is_empty() {
            let batch = take_batch(&mut st.pending);
            st.inflight += 1;
            let me = self.clone();
            tokio::spawn(async move {
                let retry = me.commit(batch).await;
                let mut st = me.lock();
                st.inflight -= 1;
                for r in retry.into_iter().rev() {
                    st.pending.push_front(r);
                }
                me.pump(st);
            });
        }
    }

    /// Commits `batch` as one entry and answers its proposals; returns the proposals to propose
    /// again on their own (a refused merged entry).
    async fn commit(&self, mut batch: Vec<Request>) -> Vec<Request> {
        let actions = if batch.len() == 1 {
            std::mem::take(&mut batch[0].actions)
        } else {
            batch
                .iter()
                .flat_map(|r| r.actions.iter().cloned())
                .collect()
        };
        let p = Proposal {
            timestamp: self.clock.now(),
            actions,
        };
        let answer = match tokio::time::timeout(self.timeout, self.raft.client_write(p)).await {
            Err(_) => Err(CommitError::NoQuorum {
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            Ok(res) => answer(&self.raft, res),
        };
        if matches!(answer, Err(CommitError::Rejected(_))) && batch.len() > 1 {
            return batch
                .into_iter()
                .map(|r| Request { alone: true, ..r })
                .collect();
        }
        for r in batch {
            let _ = r.reply.send(answer.clone());
        }
        Vec::new()
    }
}

/// Takes the next entry's proposals from the front of `pending` (not empty).
fn take_batch(pending: &mut VecDeque<Request>) -> Vec<Request> {
    let mut batch: Vec<Request> = Vec::new();
    let mut bytes = 0u64;
    while let Some(next) = pending.front() {
        let fits = batch.is_empty()
            || (!next.alone
                && !batch[0].alone
                && batch.len() < MAX_MERGED
                && bytes + next.bytes <= MAX_PROPOSAL_BYTES as u64);
        if !fits {
            break;
        }
        bytes += next.bytes;
        if let Some(r) = pending.pop_front() {
            batch.push(r);
        }
    }
    batch
}

/// The address of `leader` for a `NotLeader` hint (its id if unknown).
pub(crate) fn leader_hint(raft: &Raft, leader: Option<NodeId>) -> Option<String> {
    let leader = leader?;
    let m = raft.metrics().borrow().membership_config.clone();
    Some(
        m.membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
            .unwrap_or_else(|| leader.to_string()),
    )
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
    RaftError<NodeId, ClientWriteError<NodeId, crate::types::ManagerNode>>,
>;

/// What a client write answered, as a proposal's answer.
fn answer(raft: &Raft, res: WriteResult) -> Reply {
    match res {
        Ok(resp) => match resp.data {
            Applied::Committed { index } => Ok(index),
            Applied::Rejected(e) => Err(CommitError::Rejected(e)),
            Applied::Nothing => Err(CommitError::Stopped),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(CommitError::NotLeader {
                leader: leader_hint(raft, f.leader_id),
            })
        }
        Err(RaftError::APIError(e)) => {
            tracing::warn!(error = %e, "unexpected client write error");
            Err(CommitError::Stopped)
        }
        Err(RaftError::Fatal(_)) => Err(CommitError::Stopped),
    }
}
