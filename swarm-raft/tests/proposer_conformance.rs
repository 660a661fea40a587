//! swarm-raft's `RaftNode` passes the `Proposer` conformance suite (`swarm_core::conformance`):
//! on a single manager, and through a follower of three managers (forwarding to the leader),
//! with the other two managers' stores checked as replicas.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::conformance::{run_all, ProposerFixture};
use swarm_core::{Proposer, SharedStore};
use swarm_raft::testing::{fast_config, TestCluster};
use swarm_raft::RaftNode;

const T: Duration = Duration::from_secs(10);

struct Raft {
    via: RaftNode,
    others: Vec<RaftNode>,
}

#[async_trait]
impl ProposerFixture for Raft {
    fn proposer(&self) -> Arc<dyn Proposer> {
        Arc::new(self.via.clone())
    }
    fn store(&self) -> SharedStore {
        self.via.store().clone()
    }
    fn replicas(&self) -> Vec<SharedStore> {
        self.others.iter().map(|n| n.store().clone()).collect()
    }
    async fn settle(&self, index: u64) {
        for n in &self.others {
            n.wait_until(T, "the batch is applied", |s| s.last_applied >= Some(index))
                .await
                .unwrap_or_else(|e| panic!("manager {}: {e}", n.id()));
        }
    }
}

/// Property: a single manager's RaftNode keeps every clause of the Proposer contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_manager_conforms() {
    let c = TestCluster::new(1, fast_config()).await;
    let fixture = Raft {
        via: c.node(1).clone(),
        others: Vec::new(),
    };
    run_all(&fixture).await;
    c.shutdown().await;
}

/// Property: proposing through a follower of three managers (forwarded to the leader) keeps every
/// clause, and the other two managers apply the same batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_of_three_conforms() {
    let c = TestCluster::new(3, fast_config()).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let follower = c.ids().into_iter().find(|id| *id != leader).unwrap();
    let fixture = Raft {
        via: c.node(follower).clone(),
        others: c
            .ids()
            .into_iter()
            .filter(|id| *id != follower)
            .map(|id| c.node(id).clone())
            .collect(),
    };
    run_all(&fixture).await;
    c.shutdown().await;
}
