//! A multi-manager cluster in one process over the in-memory [`Router`], with real WALs in
//! temporary directories (feature `testing`). Used by this crate's tests and by the benchmarks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use openraft::ServerState;
use swarm_core::SharedStore;
use swarm_secrets::{KdfParams, UnlockKey};

use crate::config::{NodeConfig, RaftConfig};
use crate::error::StartError;
use crate::node::{RaftNode, StartOptions};
use crate::router::Router;
use crate::types::NodeId;

/// Timing for tests: heartbeat 50 ms, election timeout 300-600 ms, proposals give up after 3 s.
pub fn fast_config() -> RaftConfig {
    RaftConfig {
        heartbeat: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        step_down_after: Duration::from_millis(650),
        propose_timeout: Duration::from_secs(3),
        ..RaftConfig::default()
    }
}

/// Cheap argon2id parameters for tests (never use outside tests).
pub fn test_kdf() -> KdfParams {
    KdfParams::new(64, 1, 1).unwrap_or(KdfParams::RECOMMENDED)
}

/// Managers `1..=n` in one process.
pub struct TestCluster {
    /// The network.
    pub router: Router,
    /// Running nodes.
    pub nodes: BTreeMap<NodeId, RaftNode>,
    /// Raft settings every node starts with.
    pub config: RaftConfig,
    root: tempfile::TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("nodes", &self.nodes.keys())
            .finish_non_exhaustive()
    }
}

/// Panics with a message: test harness only.
fn fail(msg: String) -> ! {
    panic!("{msg}")
}

impl TestCluster {
    /// An empty cluster (no node started).
    pub fn empty(config: RaftConfig) -> TestCluster {
        let root = tempfile::tempdir().unwrap_or_else(|e| fail(format!("tempdir: {e}")));
        TestCluster {
            router: Router::new(),
            nodes: BTreeMap::new(),
            config,
            root,
        }
    }

    /// `n` managers: node 1 bootstraps, the others are added one by one (learner, then voter).
    pub async fn new(n: u64, config: RaftConfig) -> TestCluster {
        let mut c = TestCluster::empty(config);
        let first = c
            .start(1, StartOptions::default())
            .await
            .unwrap_or_else(|e| fail(format!("start 1: {e}")));
        first
            .bootstrap()
            .await
            .unwrap_or_else(|e| fail(format!("bootstrap: {e}")));
        c.wait_leader(&[1], Duration::from_secs(10)).await;
        for id in 2..=n {
            c.start(id, StartOptions::default())
                .await
                .unwrap_or_else(|e| fail(format!("start {id}: {e}")));
            let leader = c.wait_leader(&c.ids(), Duration::from_secs(10)).await;
            c.nodes[&leader]
                .add_manager(id, format!("node-{id}"))
                .await
                .unwrap_or_else(|e| fail(format!("add {id}: {e}")));
        }
        c
    }

    /// Ids of the running nodes.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    /// The root of every data directory.
    pub fn root(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }

    /// Node `id` (panics if not running).
    pub fn node(&self, id: NodeId) -> &RaftNode {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| fail(format!("node {id} is not running")))
    }

    /// The configuration node `id` starts with.
    pub fn node_config(&self, id: NodeId) -> NodeConfig {
        let mut c = NodeConfig::new(id, format!("node-{id}"), self.data_dir(id));
        c.raft = self.config.clone();
        c.kdf = test_kdf();
        c
    }

    /// Starts (or restarts) node `id` from its data directory and registers it on the router.
    pub async fn start(
        &mut self,
        id: NodeId,
        opts: StartOptions<'_>,
    ) -> Result<RaftNode, StartError> {
        let node = RaftNode::start(
            self.node_config(id),
            SharedStore::default(),
            self.router.endpoint(id),
            opts,
        )
        .await?;
        self.router.register(node.clone());
        self.nodes.insert(id, node.clone());
        Ok(node)
    }

    /// Starts node `id` with autolock keys.
    pub async fn start_locked(
        &mut self,
        id: NodeId,
        unlock: Option<&UnlockKey>,
    ) -> Result<RaftNode, StartError> {
        self.start(
            id,
            StartOptions {
                unlock_key: unlock,
                ..StartOptions::default()
            },
        )
        .await
    }

    /// Stops node `id` (unreachable, raft shut down, files closed).
    pub async fn stop(&mut self, id: NodeId) {
        self.router.unregister(id);
        if let Some(n) = self.nodes.remove(&id) {
            n.shutdown().await;
        }
    }

    /// Stops and starts node `id`.
    pub async fn restart(&mut self, id: NodeId) -> RaftNode {
        self.stop(id).await;
        self.start(id, StartOptions::default())
            .await
            .unwrap_or_else(|e| fail(format!("restart {id}: {e}")))
    }

    /// Waits until one of `among` is leader (and the others that run agree), returns it.
    pub async fn wait_leader(&self, among: &[NodeId], timeout: Duration) -> NodeId {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for &id in among {
                if let Some(n) = self.nodes.get(&id) {
                    let m = n.raft().metrics().borrow().clone();
                    if m.state == ServerState::Leader && n.is_leader() {
                        return id;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                fail(format!("no leader among {among:?} within {timeout:?}"));
            }
            // Poll the condition (metrics of several nodes) until the deadline.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every node in `ids` applied at least `index`.
    pub async fn wait_applied(&self, ids: &[NodeId], index: u64, timeout: Duration) {
        for &id in ids {
            self.node(id)
                .raft()
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), "applied")
                .await
                .unwrap_or_else(|e| fail(format!("node {id} did not apply {index}: {e}")));
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for id in self.ids() {
            self.stop(id).await;
        }
    }
}

/// The WAL segment files of the data directory `dir` (`dir/wal/*.wal`), in log order; empty if
/// there is no log.
pub fn wal_segment_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Appends `entries` to `wal` and waits until they are durable; panics on failure (tests).
pub async fn append_durably(wal: &crate::Wal, entries: Vec<crate::types::Entry>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = wal.append_for_test(entries, tx) {
        panic!("append failed: {e}");
    }
    match rx.await {
        Ok(Ok(())) => {}
        other => panic!("append did not become durable: {other:?}"),
    }
}
