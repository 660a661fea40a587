//! Node-state marking in batches: the nodes a sweep finds overdue (`down`) and the nodes without a
//! session after a leader change (`unknown`) are marked in proposals of up to [`MARK_BATCH`]
//! nodes, not one proposal per node.
//!
//! Why: at 10,000 nodes a leader change found every node without a session here and proposed
//! 10,000 single-node updates while the same nodes re-registered (each a proposal too); the
//! version conflicts between the two retried one node at a time, and the commit queue took
//! minutes to drain (docs/BENCHMARKS.md, "Scale (issue 19)"). A batch re-reads its nodes and the
//! node table on every try, so a node that registered meanwhile is left out of the retry instead
//! of being overwritten.

use swarm_core::objects::node::NodeState;
use swarm_core::{CommitError, Id, Node, StoreError};

use super::StoreDispatcher;

/// Nodes marked in one proposal. A node object is well under 2 KiB encoded (its description is
/// the bulk), so a batch stays far below the 1.5 MiB proposal limit.
pub(super) const MARK_BATCH: usize = 256;
/// Tries of one batch against version conflicts (each re-reads its nodes).
const MARK_TRIES: usize = 5;

/// `n` with its status set to `state` and `message` (and an address if it had none).
pub(super) fn with_state(n: &Node, state: NodeState, message: &str) -> Node {
    let mut nn = n.clone();
    nn.status.state = state;
    nn.status.message = message.to_string();
    if nn.status.addr.is_empty() {
        nn.status.addr = "127.0.0.1".into();
    }
    nn
}

impl StoreDispatcher {
    /// Sets `state` and `message` on each of `nodes` for which `still` holds, in proposals of at
    /// most [`MARK_BATCH`] nodes. `still` is asked again before every try (a node that
    /// registered meanwhile drops out); a batch that keeps conflicting is given up after
    /// [`MARK_TRIES`] and logged. Returns the nodes that were in that state after their batch
    /// committed (changed by it, or already so); nodes removed from the store are skipped.
    pub(super) async fn mark_nodes(
        &self,
        nodes: &[Id],
        state: NodeState,
        message: &str,
        still: impl Fn(&StoreDispatcher, Id) -> bool,
    ) -> Vec<Id> {
        let mut marked = Vec::new();
        for chunk in nodes.chunks(MARK_BATCH) {
            let mut failure = None;
            for _ in 0..MARK_TRIES {
                let candidates: Vec<Id> =
                    chunk.iter().copied().filter(|n| still(self, *n)).collect();
                let staged = self.inner.store.prepare(|tx| {
                    let mut present = Vec::with_capacity(candidates.len());
                    for id in &candidates {
                        let Some(n) = tx.get::<Node>(id) else {
                            continue;
                        };
                        let nn = with_state(&n, state, message);
                        if nn != *n {
                            tx.update(nn)?;
                        }
                        present.push(*id);
                    }
                    Ok::<_, StoreError>(present)
                });
                let (present, actions) = match staged {
                    Ok(staged) => staged,
                    Err(e) => {
                        failure = Some(CommitError::Rejected(e));
                        break;
                    }
                };
                if actions.is_empty() {
                    marked.extend(present);
                    failure = None;
                    break;
                }
                match self.inner.proposer.propose(actions).await {
                    Ok(_) => {
                        marked.extend(present);
                        failure = None;
                        break;
                    }
                    Err(e @ CommitError::Rejected(StoreError::VersionConflict { .. })) => {
                        failure = Some(e);
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failure {
                tracing::warn!(nodes = chunk.len(), state = ?state, error = %e, "could not mark a batch of nodes");
            }
        }
        marked
    }
}
