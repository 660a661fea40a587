//! The [`Proposer`] seam: how a change gets committed.
//!
//! Every change to the cluster state is a list of [`StoreAction`]s handed to a [`Proposer`], which
//! commits it (through raft, in swarm-raft) and applies it to the store on every replica, in log
//! order. [`LocalProposer`] commits to one in-process store, for tests and single-process embedders.
//! [`update`] is the usual way to change the store: stage a [`Tx`], propose its actions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::action::{encode_actions, split_into_batches, Batch, StoreAction, MAX_PROPOSAL_BYTES};
use crate::store::{SharedStore, StoreError, Tx};
use crate::time::Clock;

/// Why a proposal was not committed. Serializable, for proposals forwarded between managers.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
pub enum CommitError {
    /// The store refused the change (conflict, missing object, in use...). Nothing changed.
    #[error(transparent)]
    Rejected(#[from] StoreError),
    /// This node is not the leader; send the proposal to `leader` (if known).
    #[error("this node is not the raft leader{}", leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// Address or id of the current leader, if known.
        leader: Option<String>,
    },
    /// No quorum of managers answered in time; the change may or may not be committed later.
    #[error("the swarm does not have a leader: no quorum of managers answered within {timeout_ms} ms. It's possible that too few managers are online. Make sure more than half of the managers are online")]
    NoQuorum {
        /// How long the proposer waited.
        timeout_ms: u64,
    },
    /// The encoded proposal exceeds the limit.
    #[error("proposal of {bytes} bytes is larger than the {limit}-byte limit; split the change")]
    TooLarge {
        /// Encoded size.
        bytes: usize,
        /// Limit.
        limit: usize,
    },
    /// The proposer is shutting down.
    #[error("the proposer is shutting down")]
    Stopped,
    /// This manager could not make the change durable (its disk is full or failing); the message
    /// names the disk error and the path. Writes resume by themselves once the disk recovers; like
    /// `NoQuorum`, the change may still be committed then.
    #[error("{0}")]
    Storage(String),
}

/// Commits store actions. Implemented by swarm-raft (replicated) and [`LocalProposer`].
///
/// # Contract (to ensure correctness)
/// - `propose` commits `actions` as one atomic [`Batch`] or not at all.
/// - When it returns `Ok(index)`, the batch has been applied to the local store at `index` (so a
///   following read sees it), and every replica applies the same batch at the same index, in order.
/// - If the store refuses the batch on apply, it is refused identically on every replica and
///   `propose` returns [`CommitError::Rejected`].
/// - The batch timestamp is chosen once by the proposer (not by each replica).
#[async_trait]
pub trait Proposer: Send + Sync {
    /// Commits `actions` atomically; returns the index they were applied at.
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<u64, CommitError>;

    /// Waits until the local store shows every change committed before the call, so that a read
    /// of it that follows (an inspect whose version a client feeds back, the read inside an
    /// update) is not older than what any replica already acknowledged. A replicated proposer
    /// whose replica lags (a raft follower) asks the leader for its commit index and waits
    /// until it applied it; errors (no leader, timeout) are `NotLeader` / `NoQuorum`. The
    /// default does nothing: a [`LocalProposer`]'s store is the only one.
    async fn sync_reads(&self) -> Result<(), CommitError> {
        Ok(())
    }

    /// Waits until the local store shows every change this proposer has already taken in, even
    /// one not yet committed: on a raft leader, every entry of its log (a proposal that timed out
    /// is still there and may commit; entries of earlier terms commit with the new term's first
    /// entry). A loop that decides what to propose from the store (an orchestrator creating the
    /// tasks a slot lacks) calls it when it starts leading and after a failed proposal, so that
    /// it never decides again what an earlier proposal already carries: two tasks for one slot.
    /// Errors: `NotLeader` when this replica does not lead, `NoQuorum` when the log is not
    /// applied within the proposer's timeout. The default does nothing (a [`LocalProposer`]
    /// applies every proposal before returning).
    async fn settle(&self) -> Result<(), CommitError> {
        Ok(())
    }
}

/// Checks a proposal against [`MAX_PROPOSAL_BYTES`].
pub fn check_proposal_size(actions: &[StoreAction]) -> Result<(), CommitError> {
    let bytes = encode_actions(actions).len();
    if bytes > MAX_PROPOSAL_BYTES {
        return Err(CommitError::TooLarge {
            bytes,
            limit: MAX_PROPOSAL_BYTES,
        });
    }
    Ok(())
}

/// A non-replicated proposer: applies straight to one [`SharedStore`] with the next index.
pub struct LocalProposer {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    lock: std::sync::Mutex<()>,
    proposals: AtomicU64,
}

impl std::fmt::Debug for LocalProposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProposer")
            .field("proposals", &self.proposals.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LocalProposer {
    /// A proposer committing to `store`, stamping batches with `clock`.
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>) -> LocalProposer {
        LocalProposer {
            store,
            clock,
            lock: std::sync::Mutex::new(()),
            proposals: AtomicU64::new(0),
        }
    }

    /// The store this proposer commits to.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Commits synchronously (the async trait method just calls this).
    pub fn propose_now(&self, actions: Vec<StoreAction>) -> Result<u64, CommitError> {
        check_proposal_size(&actions)?;
        // Serialise proposals so that index allocation and apply happen in one order.
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.store.index() + 1;
        self.store.apply(Batch {
            index,
            timestamp: self.clock.now(),
            actions,
        })?;
        self.proposals.fetch_add(1, Ordering::Relaxed);
        Ok(index)
    }
}

#[async_trait]
impl Proposer for LocalProposer {
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<u64, CommitError> {
        self.propose_now(actions)
    }
}

/// Stages a transaction with `f` and commits its actions through `proposer`. Returns `f`'s result.
/// An empty transaction commits nothing.
pub async fn update<R>(
    store: &SharedStore,
    proposer: &dyn Proposer,
    f: impl FnOnce(&mut Tx<'_>) -> Result<R, StoreError>,
) -> Result<R, CommitError> {
    let (r, actions) = store.prepare(f)?;
    if !actions.is_empty() {
        proposer.propose(actions).await?;
    }
    Ok(r)
}

/// Commits a large list of independent actions in batches of at most
/// [`crate::action::MAX_ACTIONS_PER_BATCH`] actions and [`MAX_PROPOSAL_BYTES`] bytes
/// ([`split_into_batches`]), as SwarmKit's `store.Batch` does. Not atomic as a whole: each batch
/// commits or fails on its own; returns the index of the last batch.
pub async fn propose_in_batches(
    proposer: &dyn Proposer,
    actions: Vec<StoreAction>,
) -> Result<u64, CommitError> {
    let mut last = 0;
    for chunk in split_into_batches(actions) {
        last = proposer.propose(chunk).await?;
    }
    Ok(last)
}
