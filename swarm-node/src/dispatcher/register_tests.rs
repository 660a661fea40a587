//! Registrations that arrive together commit together, each caller answered for its own node.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_util::future::join_all;
use swarm_core::testing::{id, node};
use swarm_core::{LocalProposer, ManualClock, StoreAction};
use swarm_runtime::Dispatcher;

use super::*;
use crate::dispatcher::{DispatcherOptions, StoreDispatcher};

/// A [`LocalProposer`] that counts its proposals.
struct Counting {
    inner: LocalProposer,
    proposals: AtomicUsize,
}

#[async_trait]
impl Proposer for Counting {
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<u64, CommitError> {
        self.proposals.fetch_add(1, Ordering::SeqCst);
        self.inner.propose(actions).await
    }
}

/// A store holding nodes `1..=n` (status unknown), and a counting proposer over it.
fn store_with_nodes(n: u128) -> (SharedStore, Arc<Counting>) {
    let store = SharedStore::default();
    let inner = LocalProposer::new(
        store.clone(),
        Arc::new(ManualClock::new(Default::default())),
    );
    let actions = (1..=n)
        .map(|i| {
            let mut nd = node(i);
            nd.status.state = NodeState::Unknown;
            StoreAction::Create(nd.into())
        })
        .collect();
    inner.propose_now(actions).unwrap();
    let counting = Arc::new(Counting {
        inner,
        proposals: AtomicUsize::new(0),
    });
    (store, counting)
}

fn registration(n: u128) -> NodeRegistration {
    NodeRegistration {
        node_id: id(n),
        description: node(n).description.unwrap_or_default(),
    }
}

/// Queues a registration of each of `nodes`; the receivers of their answers.
fn send_all(
    tx: &mpsc::UnboundedSender<Registration>,
    nodes: impl IntoIterator<Item = u128>,
) -> Vec<oneshot::Receiver<Result<(), CommitError>>> {
    nodes
        .into_iter()
        .map(|n| {
            let (reply, done) = oneshot::channel();
            let r = Registration {
                node: id(n),
                registration: registration(n),
                reply,
            };
            tx.send(r)
                .unwrap_or_else(|_| unreachable!("the writer runs"));
            done
        })
        .collect()
}

fn state(store: &SharedStore, n: u128) -> NodeState {
    store.view(|s| s.get::<Node>(&id(n)).unwrap().status.state)
}

#[tokio::test]
async fn concurrent_registrations_share_proposals_and_each_caller_sees_its_node_ready() {
    const NODES: u128 = 600;
    let (store, proposer) = store_with_nodes(NODES);
    let d = StoreDispatcher::new(
        store.clone(),
        proposer.clone(),
        DispatcherOptions::default(),
    );
    let opened = join_all((1..=NODES).map(|n| {
        let d = d.clone();
        let store = store.clone();
        async move {
            let session = d.open_session(registration(n)).await;
            // Answered only once its own write committed.
            (session.is_ok(), state(&store, n))
        }
    }))
    .await;
    for (n, (ok, state)) in (1..=NODES).zip(opened) {
        assert!(ok, "node {n} was not registered");
        assert_eq!(state, NodeState::Ready, "node {n}");
    }
    let proposals = proposer.proposals.load(Ordering::SeqCst);
    // 600 registrations queued at once: batches of at most REGISTER_BATCH.
    assert!(proposals >= NODES as usize / REGISTER_BATCH, "{proposals}");
    assert!(proposals <= NODES as usize / 10, "{proposals} proposals");
    d.close().await;
}

#[tokio::test]
async fn a_failed_registration_fails_only_its_caller() {
    let (store, proposer) = store_with_nodes(2);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(store.clone(), proposer.clone(), rx));
    let answers = send_all(&tx, [1, 99, 2]);
    drop(tx);
    let answers: Vec<_> = join_all(answers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(answers[0], Ok(()));
    assert!(matches!(
        answers[1],
        Err(CommitError::Rejected(StoreError::NotFound { .. }))
    ));
    assert_eq!(answers[2], Ok(()));
    assert_eq!(state(&store, 1), NodeState::Ready);
    assert_eq!(state(&store, 2), NodeState::Ready);
    assert_eq!(proposer.proposals.load(Ordering::SeqCst), 1);
    task.await.unwrap();
}

/// A proposer that refuses everything: the error reaches every caller of the batch.
struct Refusing;

#[async_trait]
impl Proposer for Refusing {
    async fn propose(&self, _: Vec<StoreAction>) -> Result<u64, CommitError> {
        Err(CommitError::NotLeader { leader: None })
    }
}

#[tokio::test]
async fn a_failed_proposal_is_reported_to_every_caller() {
    let (store, _) = store_with_nodes(3);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(store.clone(), Arc::new(Refusing), rx));
    let answers = send_all(&tx, 1..=3);
    drop(tx);
    for a in join_all(answers).await {
        assert_eq!(a.unwrap(), Err(CommitError::NotLeader { leader: None }));
    }
    assert_eq!(state(&store, 1), NodeState::Unknown);
    task.await.unwrap();
}
