//! Registrations committed in batches (group commit): one writer proposes the node-status writes
//! of every registration queued when it starts a proposal (up to [`REGISTER_BATCH`]) together;
//! registrations arriving while a proposal is in flight wait for the next one. A lone
//! registration waits for nothing (no timer). Each caller is answered once the proposal holding
//! its write committed, or with its own error (its node gone) or the proposal's.
//!
//! Why: after a leader change every worker re-registers at once, and one proposal per
//! registration (10,000 at scale) kept the new leader's commit queue busy for minutes.

use std::collections::HashMap;
use std::sync::Arc;

use swarm_core::dispatch::NodeRegistration;
use swarm_core::objects::node::NodeState;
use swarm_core::{CommitError, Id, Node, ObjectKind, Proposer, SharedStore, StoreError};
use tokio::sync::{mpsc, oneshot};

use super::marking::with_state;

/// Registrations in one proposal (a node object is under 2 KiB encoded: far below the limit).
pub(super) const REGISTER_BATCH: usize = 256;
/// Tries of one batch against version conflicts (each re-reads its nodes).
const REGISTER_TRIES: usize = 5;

/// One registration waiting for its node-status write.
pub(super) struct Registration {
    pub(super) node: Id,
    pub(super) registration: NodeRegistration,
    pub(super) reply: oneshot::Sender<Result<(), CommitError>>,
}

/// Commits the registrations `rx` delivers in batches until every sender is gone.
pub(super) async fn run(
    store: SharedStore,
    proposer: Arc<dyn Proposer>,
    mut rx: mpsc::UnboundedReceiver<Registration>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < REGISTER_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        commit(&store, &*proposer, batch).await;
    }
}

/// `n` registered with `r`: ready, with the agent's description (engine labels kept from the
/// stored node when the agent sends none: they come from the operator's configuration).
fn registered(n: &Node, r: &NodeRegistration) -> Node {
    let mut nn = with_state(n, NodeState::Ready, "");
    let mut d = r.description.clone();
    if let Some(old) = &n.description {
        if d.engine.labels.is_empty() {
            d.engine.labels = old.engine.labels.clone();
        }
    }
    nn.description = Some(d);
    nn
}

/// Writes every registration of `batch` in one proposal (retried on version conflicts) and
/// answers each caller.
async fn commit(store: &SharedStore, proposer: &dyn Proposer, mut batch: Vec<Registration>) {
    let mut result = Err(CommitError::Stopped);
    for _ in 0..REGISTER_TRIES {
        // The last registration of a node in the batch is the one written.
        let latest: HashMap<Id, usize> =
            batch.iter().enumerate().map(|(i, r)| (r.node, i)).collect();
        let staged = store.prepare(|tx| {
            let mut failed: HashMap<Id, StoreError> = HashMap::new();
            for (&node, &i) in &latest {
                let Some(n) = tx.get::<Node>(&node) else {
                    let e = StoreError::NotFound {
                        kind: ObjectKind::Node,
                        id: node,
                    };
                    failed.insert(node, e);
                    continue;
                };
                let nn = registered(&n, &batch[i].registration);
                if nn != *n {
                    if let Err(e) = tx.update(nn) {
                        failed.insert(node, e);
                    }
                }
            }
            Ok::<_, StoreError>(failed)
        });
        let (failed, actions) = match staged {
            Ok(s) => s,
            Err(e) => {
                result = Err(CommitError::Rejected(e));
                break;
            }
        };
        let (bad, good): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|r| failed.contains_key(&r.node));
        for r in bad {
            let e = failed[&r.node].clone();
            let _ = r.reply.send(Err(CommitError::Rejected(e)));
        }
        batch = good;
        if actions.is_empty() {
            result = Ok(());
            break;
        }
        match proposer.propose(actions).await {
            Ok(_) => {
                result = Ok(());
                break;
            }
            Err(e @ CommitError::Rejected(StoreError::VersionConflict { .. })) => result = Err(e),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    for r in batch {
        let _ = r.reply.send(result.clone());
    }
}

#[cfg(test)]
#[path = "register_tests.rs"]
mod tests;
