//! Shared by the CA's unit tests: a store holding a cluster with a fresh CA, and joining nodes.

use std::sync::Arc;

use rand_core::OsRng;
use swarm_core::objects::node::{IssuanceState, Node, NodeCertificate, NodeRole};
use swarm_core::{
    Cluster, Id, LocalProposer, ManualClock, Meta, SharedStore, Store, StoreAction, Timestamp,
};
use swarm_net::pki::{make_csr, PrivateKey};

use super::new_cluster_ca;

/// The time the rigs start at.
pub(crate) const NOW: Timestamp = Timestamp(1_800_000_000_000_000_000);

/// A fresh store holding cluster 1 with a new CA, its proposer and clock (at [`NOW`]).
pub(crate) fn store_with_cluster() -> (SharedStore, Arc<LocalProposer>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let store = SharedStore::new(Store::new());
    let proposer = Arc::new(LocalProposer::new(store.clone(), clock.clone()));
    let ca = new_cluster_ca(Id::from_u128(1), Id::from_u128(2), NOW, &mut OsRng).unwrap();
    let cluster = Cluster {
        id: Id::from_u128(1),
        meta: Meta::default(),
        spec: Default::default(),
        root_ca: ca.root_ca,
        unlock_keys: Vec::new(),
        network_bootstrap: Default::default(),
    };
    proposer
        .propose_now(vec![StoreAction::Create(cluster.into())])
        .unwrap();
    (store, proposer, clock)
}

/// Node `n` with a certificate in `state` for a fresh CSR (`csr: false`: an empty, unusable CSR).
pub(crate) fn joiner(n: u128, state: IssuanceState, csr: bool) -> Node {
    let mut node = swarm_core::testing::node(n);
    node.spec.desired_role = NodeRole::Worker;
    node.certificate = Some(NodeCertificate {
        role: NodeRole::Worker,
        csr: if csr {
            make_csr(&PrivateKey::generate().unwrap()).unwrap()
        } else {
            b"not a csr".to_vec()
        },
        state,
        error: String::new(),
        chain: Vec::new(),
        cn: Id::from_u128(n).to_string(),
    });
    node
}

/// Commits `node`: created (`create`) or replacing the stored one.
pub(crate) fn put(proposer: &LocalProposer, node: Node, create: bool) {
    let action = if create {
        StoreAction::Create(node.into())
    } else {
        StoreAction::Update(node.into())
    };
    proposer.propose_now(vec![action]).unwrap();
}
