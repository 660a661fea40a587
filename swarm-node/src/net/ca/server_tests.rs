//! Status long-polls: a waiter is woken by its own node's changes (and the cluster's), never by
//! another node's, so thousands of pending joiners do not all wake on every change.

use std::sync::Arc;

use swarm_core::objects::node::{IssuanceState, Node};
use swarm_core::{Entropy, Id, LocalProposer, StoreAction};

use super::*;
use crate::net::ca::test_support::{self, put, store_with_cluster};

struct Rig {
    store: SharedStore,
    proposer: Arc<LocalProposer>,
    server: Arc<CaServer>,
}

impl Rig {
    fn new() -> Rig {
        let (store, proposer, clock) = store_with_cluster();
        let (_, leader) = watch::channel(false);
        let server = CaServer::new(
            store.clone(),
            proposer.clone(),
            leader,
            clock,
            Entropy::seeded(7),
        );
        Rig {
            store,
            proposer,
            server,
        }
    }

    fn put(&self, node: Node, create: bool) {
        put(&self.proposer, node, create);
    }

    /// Node `n` with its certificate moved to `state`.
    fn set_state(&self, n: u128, state: IssuanceState) {
        let mut node = self
            .store
            .view(|s| s.get::<Node>(&Id::from_u128(n)).cloned())
            .map(|n| (*n).clone())
            .unwrap();
        let cert = node.certificate.as_mut().unwrap();
        cert.state = state;
        if state == IssuanceState::Issued {
            cert.chain = vec![b"leaf".to_vec()];
        }
        self.put(node, false);
    }
}

fn joiner(n: u128) -> Node {
    test_support::joiner(n, IssuanceState::Pending, false)
}

#[test]
fn a_waiter_watches_its_own_node_and_the_cluster_only() {
    let rig = Rig::new();
    rig.put(joiner(10), true);
    rig.put(joiner(11), true);
    let watcher = rig.store.watch(waiter_filter(Id::from_u128(10)));

    // Another node's changes (creation, update, removal) queue nothing for this waiter.
    rig.put(joiner(12), true);
    rig.set_state(11, IssuanceState::Issued);
    rig.proposer
        .propose_now(vec![StoreAction::Remove(swarm_core::ObjectRef {
            kind: ObjectKind::Node,
            id: Id::from_u128(12),
        })])
        .unwrap();
    assert_eq!(watcher.drain().unwrap(), Vec::new());

    // Its own node's change does.
    rig.set_state(10, IssuanceState::Issued);
    let events = watcher.drain().unwrap();
    assert!(events
        .iter()
        .any(|e| e.object().is_some_and(|o| o.id() == Id::from_u128(10))));
    assert!(events
        .iter()
        .filter_map(Event::object)
        .all(|o| o.id() == Id::from_u128(10)));

    // So does the cluster's (a root rotation changes the answer's roots).
    let cluster = rig.store.view(|s| s.cluster().cloned()).unwrap();
    rig.proposer
        .propose_now(vec![StoreAction::Update((*cluster).clone().into())])
        .unwrap();
    let events = watcher.drain().unwrap();
    assert!(events
        .iter()
        .any(|e| e.object().is_some_and(|o| o.kind() == ObjectKind::Cluster)));
}

#[tokio::test]
async fn a_status_call_is_answered_by_its_own_node_not_by_another() {
    let rig = Rig::new();
    rig.put(joiner(10), true);
    rig.put(joiner(11), true);
    let server = rig.server.clone();
    let call = tokio::spawn(async move {
        server
            .certificate_status(StatusRequest {
                node_id: Id::from_u128(10),
            })
            .await
    });
    // Let the call read the store and start waiting (single-threaded runtime: it runs here).
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert!(!call.is_finished(), "node 10 is pending: the call waits");

    // Node 11 issued: the call for node 10 is still waiting.
    rig.set_state(11, IssuanceState::Issued);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert!(
        !call.is_finished(),
        "another node's change answered the call"
    );

    // Its own node issued: answered with that state and chain.
    rig.set_state(10, IssuanceState::Issued);
    let answer = call.await.unwrap().unwrap();
    assert_eq!(answer.state, IssuanceState::Issued);
    assert_eq!(answer.chain, vec![b"leaf".to_vec()]);
    assert!(!answer.roots.is_empty());
}
