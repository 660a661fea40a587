//! Node states are marked in batches: after a leader change the dispatcher marks every node
//! without a session `unknown` in proposals of up to 256 nodes (not one per node), leaves a node
//! with a live session alone, and later marks the silent ones `down` in batches too. A proposer
//! that counts proposals shows the batching; the store shows the states.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::dispatch::NodeRegistration;
use swarm_core::objects::node::NodeState;
use swarm_core::testing::{id, node};
use swarm_core::{
    CommitError, LocalProposer, ManualClock, Node, Proposer, SharedStore, StoreAction, WatchFilter,
};
use swarm_node::dispatcher::{DispatcherOptions, StoreDispatcher};
use swarm_runtime::Dispatcher;

const WAIT: Duration = Duration::from_secs(30);

/// A `LocalProposer` that counts its proposals.
struct Counting {
    inner: LocalProposer,
    batches: AtomicUsize,
}

#[async_trait]
impl Proposer for Counting {
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<u64, CommitError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.inner.propose(actions).await
    }
}

fn states(store: &SharedStore) -> (usize, usize, usize) {
    store.view(|s| {
        s.iter::<Node>()
            .fold((0, 0, 0), |(r, u, d), n| match n.status.state {
                NodeState::Ready => (r + 1, u, d),
                NodeState::Unknown => (r, u + 1, d),
                NodeState::Down => (r, u, d + 1),
                _ => (r, u, d),
            })
    })
}

#[tokio::test]
async fn a_leader_change_marks_quiet_nodes_in_batches() {
    const NODES: u128 = 600;
    let store = SharedStore::default();
    let proposer = Arc::new(Counting {
        inner: LocalProposer::new(
            store.clone(),
            Arc::new(ManualClock::new(Default::default())),
        ),
        batches: AtomicUsize::new(0),
    });
    let creates: Vec<StoreAction> = (1..=NODES)
        .map(|n| {
            let mut nd = node(n);
            nd.status.state = NodeState::Ready;
            StoreAction::Create(nd.into())
        })
        .collect();
    proposer
        .inner
        .propose(creates)
        .await
        .expect("nodes created");
    let options = DispatcherOptions {
        down_after: Duration::from_millis(200),
        ..DispatcherOptions::default()
    };
    let d = StoreDispatcher::new(store.clone(), proposer.clone(), options);
    // Node 1 keeps a session open through the leader change.
    let session = d
        .open_session(NodeRegistration {
            node_id: id(1),
            description: node(1).description.unwrap_or_default(),
        })
        .await
        .expect("session");
    let before = proposer.batches.load(Ordering::SeqCst);

    let marked = d.mark_nodes_unknown(None).await;
    assert_eq!(marked, (NODES - 1) as usize);
    // 599 nodes in batches of at most 256: three proposals, not 599.
    assert_eq!(proposer.batches.load(Ordering::SeqCst) - before, 3);
    assert_eq!(states(&store), (1, (NODES - 1) as usize, 0));

    // Twice `down_after` later the silent ones go down, again in batches (a sweep may split
    // them over more than one, never one per node); node 1 stays ready.
    let before = proposer.batches.load(Ordering::SeqCst);
    let watcher = store.watch(WatchFilter::all());
    let all_down = async {
        while states(&store).2 < (NODES - 1) as usize {
            if watcher.recv_many().await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, all_down)
        .await
        .expect("silent nodes down");
    let down_batches = proposer.batches.load(Ordering::SeqCst) - before;
    assert!(
        (3..=20).contains(&down_batches),
        "{down_batches} proposals marked 599 nodes down"
    );
    assert_eq!(states(&store), (1, 0, (NODES - 1) as usize));
    let n = store.view(|s| s.get::<Node>(&id(2)).cloned().expect("node 2"));
    assert_eq!(n.status.message, "heartbeat failure");
    drop(session);
    d.close().await;
}
