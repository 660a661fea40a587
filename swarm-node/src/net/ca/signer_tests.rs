//! The signer's passes, driven step by step: what it must still sign (joins, renewals, role
//! changes, failed retries, batches beyond [`SIGN_BATCH`]) now that a pass looks only at the nodes
//! its watch reported.

use std::sync::Arc;

use rand_core::OsRng;
use swarm_core::objects::node::{IssuanceState, Node, NodeCertificate, NodeRole};
use swarm_core::{Id, LocalProposer, SharedStore, StoreAction, Timestamp, WatchFilter, Watcher};
use swarm_net::pki::{make_csr, PrivateKey, SIGNING_RETRY};

use super::*;
use crate::net::ca::test_support::{joiner, put, store_with_cluster, NOW};

struct Rig {
    store: SharedStore,
    proposer: Arc<LocalProposer>,
    watcher: Watcher,
    state: SignerState,
    now: Timestamp,
}

impl Rig {
    fn new() -> Rig {
        let (store, proposer, _) = store_with_cluster();
        let watcher = store.watch(WatchFilter::kinds(&[ObjectKind::Node, ObjectKind::Cluster]));
        Rig {
            store,
            proposer,
            watcher,
            state: SignerState::default(),
            now: NOW,
        }
    }

    /// A pass as `run_signer` makes it: after noting what the watch saw.
    async fn pass(&mut self) {
        let events = self.watcher.drain().unwrap();
        self.state.note(&events);
        sign_pass(
            &self.store,
            &*self.proposer,
            self.now,
            &mut OsRng,
            &mut self.state,
        )
        .await
        .unwrap();
    }

    fn put(&self, node: Node, create: bool) {
        put(&self.proposer, node, create);
    }

    fn node(&self, n: u128) -> Arc<Node> {
        self.store
            .view(|s| s.get::<Node>(&Id::from_u128(n)).cloned())
            .unwrap()
    }

    fn cert(&self, n: u128) -> NodeCertificate {
        self.node(n).certificate.clone().unwrap()
    }
}

#[tokio::test]
async fn joins_renewals_and_role_changes_are_signed() {
    let mut rig = Rig::new();
    rig.pass().await;
    rig.put(joiner(10, IssuanceState::Pending, true), true);
    rig.pass().await;
    let first = rig.cert(10);
    assert_eq!(first.state, IssuanceState::Issued);
    assert!(!first.chain.is_empty());

    // Renewal: a new CSR, state Renew.
    let mut node = (*rig.node(10)).clone();
    let cert = node.certificate.as_mut().unwrap();
    cert.csr = make_csr(&PrivateKey::generate().unwrap()).unwrap();
    cert.state = IssuanceState::Renew;
    rig.put(node, false);
    rig.pass().await;
    let renewed = rig.cert(10);
    assert_eq!(renewed.state, IssuanceState::Issued);
    assert_ne!(renewed.chain, first.chain);

    // Promotion: the desired role differs from the certificate's.
    let mut node = (*rig.node(10)).clone();
    node.spec.desired_role = NodeRole::Manager;
    rig.put(node, false);
    rig.pass().await;
    let promoted = rig.cert(10);
    assert_eq!(promoted.role, NodeRole::Manager);
    assert_eq!(promoted.state, IssuanceState::Issued);
    assert_ne!(promoted.chain, renewed.chain);
}

#[tokio::test]
async fn a_pass_reads_only_the_nodes_its_watch_reported_or_every_node_after_a_rescan() {
    let mut rig = Rig::new();
    rig.pass().await;
    rig.put(joiner(10, IssuanceState::Pending, true), true);
    // Events not noted (as if the pass ran before the watch delivered them): nothing signed.
    let _ = rig.watcher.drain().unwrap();
    rig.pass().await;
    assert_eq!(rig.cert(10).state, IssuanceState::Pending);
    // A lagged watch makes the next pass read every node.
    rig.state.rescan();
    rig.pass().await;
    assert_eq!(rig.cert(10).state, IssuanceState::Issued);
}

#[tokio::test]
async fn more_joiners_than_a_batch_are_all_signed_without_new_events() {
    let mut rig = Rig::new();
    rig.pass().await;
    let count = SIGN_BATCH as u128 * 2 + 7;
    let nodes: Vec<StoreAction> = (0..count)
        .map(|i| StoreAction::Create(joiner(100 + i, IssuanceState::Pending, true).into()))
        .collect();
    rig.proposer.propose_now(nodes).unwrap();
    for _ in 0..3 {
        rig.pass().await;
    }
    for i in 0..count {
        assert_eq!(rig.cert(100 + i).state, IssuanceState::Issued, "node {i}");
    }
}

#[tokio::test]
async fn a_failed_signing_is_retried_after_the_retry_period_without_an_event() {
    let mut rig = Rig::new();
    rig.pass().await;
    rig.put(joiner(10, IssuanceState::Pending, false), true);
    rig.pass().await;
    let failed = rig.cert(10);
    assert_eq!(failed.state, IssuanceState::Failed);
    assert!(!failed.error.is_empty());
    let first_try = rig.now;
    assert_eq!(
        rig.state.failed_at.get(&Id::from_u128(10)),
        Some(&first_try)
    );

    // Before the retry period: not tried again.
    rig.now = first_try.plus(SIGNING_RETRY / 2);
    rig.pass().await;
    assert_eq!(
        rig.state.failed_at.get(&Id::from_u128(10)),
        Some(&first_try)
    );
    // After it: tried again (and failed again), with no store event in between.
    assert!(rig.watcher.drain().unwrap().is_empty());
    rig.now = first_try.plus(SIGNING_RETRY);
    rig.pass().await;
    assert_eq!(rig.state.failed_at.get(&Id::from_u128(10)), Some(&rig.now));

    // A removed node is forgotten.
    rig.proposer
        .propose_now(vec![StoreAction::Remove(swarm_core::ObjectRef {
            kind: ObjectKind::Node,
            id: Id::from_u128(10),
        })])
        .unwrap();
    rig.pass().await;
    assert!(rig.state.failed_at.is_empty());
}
