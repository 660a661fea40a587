//! The Manager: a raft node and the store it applies to, the leader-only loops (orchestrator,
//! scheduler, membership), the dispatcher, and the autolock watcher.
//!
//! # Calling contract
//! - [`Manager::init`] creates a new swarm (raft bootstrap, the cluster object and this node's
//!   node object); [`Manager::open`] reopens one after a restart, refusing with
//!   [`ManagerError::Locked`] when autolock is on and no key is given, and with
//!   [`ManagerError::InvalidUnlockKey`] for a wrong key (nothing on disk is touched either way).
//! - While running, changes go through [`Manager::proposer`]; agents connect to
//!   [`Manager::dispatcher`].
//! - Shut down with [`Manager::stop_loops`] (no new orchestration decisions), then stop the worker
//!   (its last statuses still reach the dispatcher), then [`Manager::shutdown`].
//!
//! Peers: raft talks to the other managers through the [`Transport`] the embedder passes
//! (the QUIC transport of `crate::net`; [`NoPeers`] for a lone manager, which elects itself at
//! once). [`Manager::join`] starts a manager with an empty log that an existing cluster adds (the
//! leader side is `crate::net::membership`); [`Manager::open`] with `force_new_cluster` restarts
//! from the local state as the only voter (`docker swarm init --force-new-cluster`).
//!
//! # Layout
//! - [`identity`]: `node.json`, this node's ids. [`host`]: what the host reports.
//! - `loops`: the orchestrator and scheduler driver. `keys`: autolock reactions.
//! - [`assign`]: what one node is told (used by [`crate::dispatcher`]); [`feed`]: the one store
//!   watch routed to every session, and the session streamer; [`deadlines`]: the min-heap of
//!   liveness deadlines the dispatcher's one sweeper enforces; `status`: the dispatcher's
//!   batched status committer.

pub mod agent_dispatch;
pub mod assign;
pub mod deadlines;
pub mod feed;
pub mod host;
pub mod identity;
mod keys;
mod loops;
pub mod membership;
pub(crate) mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand_core::{OsRng, RngCore};
use swarm_core::objects::cluster::{EncryptionKey, RootCa};
use swarm_core::objects::node::{
    ManagerStatus, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    Reachability,
};
use swarm_core::{
    Cluster, CommitError, Meta, Node, Proposer, SecretData, SharedStore, StoreAction,
};
use swarm_raft::{
    NodeConfig, RaftNode, RaftReply, RaftRpc, StartError, StartOptions, Transport, TransportError,
};
use swarm_secrets::{KdfParams, UnlockKey, KEY_LEN};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::InitRequest;
use crate::dispatcher::{DispatcherOptions, StoreDispatcher};
pub use identity::NodeIdentity;
use keys::Wrapped;

/// How long starting waits for this manager to become leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the dispatcher may take to commit its last statuses when the manager stops.
const DISPATCHER_CLOSE: Duration = Duration::from_secs(5);
/// How long a loop told to stop may take to finish what it does (a proposal without a quorum
/// waits up to its own timeout) before it is aborted: a loop left running would keep proposing
/// and scheduling beside the next manager opened on the same directory (force-new-cluster).
const LOOPS_STOP: Duration = Duration::from_secs(2);

/// Waits up to `limit` for `h` to finish, then aborts it (and waits for the abort).
async fn stop_within(mut h: JoinHandle<()>, limit: Duration) {
    if tokio::time::timeout(limit, &mut h).await.is_err() {
        tracing::warn!("a manager loop did not stop within {limit:?}; aborting it");
        h.abort();
        let _ = h.await;
    }
}

/// How long a joining manager waits to become a voter with the cluster's state applied.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the manager could not start or change.
#[derive(Debug, Error)]
pub enum ManagerError {
    /// Autolock is on and no unlock key was given.
    #[error("Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.")]
    Locked,
    /// The unlock key does not open this manager's keys.
    #[error("swarm could not be unlocked: invalid key provided")]
    InvalidUnlockKey,
    /// The data directory could not be used.
    #[error("{0}")]
    Storage(String),
    /// Raft did not start or elect this node in time.
    #[error("raft: {0}")]
    Raft(String),
    /// Creating the swarm's first objects failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

impl ManagerError {
    pub(crate) fn io(op: &str, path: &std::path::Path, e: std::io::Error) -> ManagerError {
        ManagerError::Storage(format!("{op} {}: {e}", path.display()))
    }
}

impl From<StartError> for ManagerError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Locked => ManagerError::Locked,
            StartError::WrongUnlockKey(_) => ManagerError::InvalidUnlockKey,
            StartError::Storage(s) => ManagerError::Storage(s.to_string()),
            other => ManagerError::Raft(other.to_string()),
        }
    }
}

/// Where and how the manager keeps its state.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// The raft data directory (`<data-dir>/raft`).
    pub raft_dir: PathBuf,
    /// Raft tunables.
    pub raft: swarm_raft::RaftConfig,
    /// Cost of stretching unlock keys.
    pub kdf: KdfParams,
    /// Dispatcher tunables.
    pub dispatcher: DispatcherOptions,
    /// The orchestrator's randomness (task ids, choices).
    pub entropy: swarm_core::Entropy,
    /// Stamps raft batches and the orchestrator's deadlines.
    pub clock: swarm_core::SharedClock,
}

/// A transport for a manager without peers: every call is refused.
#[derive(Debug, Default)]
pub struct NoPeers;

#[async_trait]
impl Transport for NoPeers {
    async fn call(
        &self,
        target: u64,
        _node: &swarm_raft::types::ManagerNode,
        _rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        Err(TransportError::Unreachable(
            target,
            "single-host swarm: there are no other managers".into(),
        ))
    }
}

/// A running manager. See the module docs.
pub struct Manager {
    identity: NodeIdentity,
    raft: RaftNode,
    store: SharedStore,
    dispatcher: StoreDispatcher,
    stop_loops: watch::Sender<bool>,
    stop_keys: watch::Sender<bool>,
    loops: Option<JoinHandle<()>>,
    membership: Option<JoinHandle<()>>,
    keys: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("node_id", &self.identity.node_id)
            .finish_non_exhaustive()
    }
}

/// A fresh random unlock key and its raw bytes (what the cluster object stores).
fn new_unlock_key() -> (UnlockKey, SecretData) {
    let mut raw = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut raw);
    let key = UnlockKey::from_bytes(raw);
    let data = SecretData::new(raw.to_vec());
    raw.fill(0);
    (key, data)
}

impl Manager {
    async fn start_raft(
        config: &ManagerConfig,
        identity: &NodeIdentity,
        store: SharedStore,
        opts: StartOptions<'_>,
        transport: Arc<dyn Transport>,
    ) -> Result<RaftNode, ManagerError> {
        let mut nc = NodeConfig::new(identity.raft_id, identity.addr.clone(), &config.raft_dir);
        nc.raft = config.raft.clone();
        nc.kdf = config.kdf;
        // Batches are stamped with the daemon's clock (the system clock outside simulations).
        let raft = RaftNode::start(nc, store, transport, opts).await?;
        Ok(raft.with_clock(Arc::new(config.clock.clone())))
    }

    /// Waits until this manager leads and has applied its whole log (so the store is current
    /// before anything reads it).
    async fn wait_leader(raft: &RaftNode) -> Result<(), ManagerError> {
        let m = raft
            .wait_until(LEADER_TIMEOUT, "this manager leads", |m| {
                m.leader == Some(m.id)
            })
            .await
            .map_err(|e| ManagerError::Raft(format!("this manager did not become leader: {e}")))?;
        raft.wait_until(LEADER_TIMEOUT, "the log is applied", |s| {
            s.last_applied >= m.last_log_index
        })
        .await
        .map(|_| ())
        .map_err(|e| ManagerError::Raft(format!("the log was not applied in time: {e}")))
    }

    /// Creates a new single-manager swarm in `config.raft_dir` (which must hold no raft state).
    /// `root_ca` is the cluster's CA (certificate, key, join tokens) when there is one, and
    /// `certificate` this manager's certificate record.
    pub async fn init(
        config: &ManagerConfig,
        identity: &NodeIdentity,
        description: NodeDescription,
        req: &InitRequest,
        root_ca: RootCa,
        certificate: Option<swarm_core::objects::node::NodeCertificate>,
        transport: Arc<dyn Transport>,
    ) -> Result<Manager, ManagerError> {
        let store = SharedStore::default();
        let key = req.autolock.then(new_unlock_key);
        let opts = StartOptions {
            autolock_new: key.as_ref().map(|(k, _)| k),
            ..StartOptions::default()
        };
        let raft = Self::start_raft(config, identity, store.clone(), opts, transport).await?;
        let created = async {
            raft.bootstrap().await?;
            Self::wait_leader(&raft).await?;
            let mut spec = req.spec.clone();
            spec.encryption.auto_lock_managers = req.autolock;
            let cluster = Cluster {
                id: identity.cluster_id,
                meta: Meta::default(),
                spec,
                root_ca,
                unlock_keys: key
                    .as_ref()
                    .map(|(_, data)| EncryptionKey {
                        subsystem: "manager".into(),
                        key: data.clone(),
                        lamport_time: 0,
                    })
                    .into_iter()
                    .collect(),
                network_bootstrap: req.network_bootstrap.clone(),
            };
            let node = Node {
                id: identity.node_id,
                meta: Meta::default(),
                spec: NodeSpec {
                    annotations: Default::default(),
                    desired_role: NodeRole::Manager,
                    availability: req.availability.unwrap_or(NodeAvailability::Active),
                },
                description: Some(description),
                status: NodeStatus {
                    state: NodeState::Ready,
                    message: String::new(),
                    addr: host_of(&identity.addr),
                },
                manager_status: Some(ManagerStatus {
                    raft_id: identity.raft_id,
                    addr: identity.addr.clone(),
                    leader: true,
                    reachability: Reachability::Reachable,
                }),
                role: NodeRole::Manager,
                certificate,
            };
            raft.propose(vec![
                StoreAction::Create(cluster.into()),
                StoreAction::Create(node.into()),
            ])
            .await?;
            Ok::<_, ManagerError>(())
        };
        if let Err(e) = created.await {
            raft.shutdown().await;
            return Err(e);
        }
        let wrapped = match key {
            Some((k, _)) => Wrapped::Key(k),
            None => Wrapped::Stored,
        };
        Ok(Self::run(config, identity.clone(), raft, store, wrapped))
    }

    /// Reopens the swarm after a restart. `unlock` is needed when autolock is on. With
    /// `force_new_cluster` the local state restarts as a cluster whose only voter is this
    /// manager: every object is kept, the other managers are removed from raft and demoted in the
    /// store (their nodes stay, as workers, so their tasks are rescheduled once they are down).
    pub async fn open(
        config: &ManagerConfig,
        identity: &NodeIdentity,
        unlock: Option<&UnlockKey>,
        force_new_cluster: bool,
        transport: Arc<dyn Transport>,
    ) -> Result<Manager, ManagerError> {
        // node.json says this node is in a swarm: its raft state must be there (never recreated).
        // Through raft's storage seam: a simulated disk holds the raft directory in memory.
        let keys = config.raft_dir.join(swarm_raft::keyring::KEY_FILE);
        if !swarm_raft::disk::exists(config.raft.disk.as_ref(), &keys) {
            return Err(ManagerError::Storage(format!(
                "{} names this node as a member of swarm {}, but its raft state is missing ({} does not exist); refusing to start. Restore the raft directory from a backup, or remove {} to leave that swarm",
                identity::IDENTITY_FILE,
                identity.cluster_id,
                keys.display(),
                identity::IDENTITY_FILE
            )));
        }
        let store = SharedStore::default();
        let opts = StartOptions {
            unlock_key: unlock,
            force_new_cluster,
            ..StartOptions::default()
        };
        let raft = Self::start_raft(config, identity, store.clone(), opts, transport).await?;
        // Before anything is written (an election saves a vote): node.json must match this state.
        if let Err(e) = Self::check_identity(&raft, &store, identity).await {
            raft.shutdown().await;
            return Err(e);
        }
        let st = raft.status();
        if st.voters == [identity.raft_id] {
            // The only voter need not wait an election timeout to learn that nobody else leads.
            if st.leader.is_none() {
                if let Err(e) = raft.trigger_election().await {
                    tracing::warn!(error = %e, "could not start an election");
                }
            }
            if let Err(e) = Self::wait_leader(&raft).await {
                raft.shutdown().await;
                return Err(e);
            }
        }
        // With other voters, a leader is elected (or followed) once they answer; the loops wait
        // for leadership, and the API answers from the replicated store meanwhile.
        if force_new_cluster {
            if let Err(e) = Self::forget_other_managers(&raft, &store, identity).await {
                raft.shutdown().await;
                return Err(e);
            }
        }
        let wrapped = match (raft.keys().status().autolock, unlock) {
            (true, Some(k)) => Wrapped::Key(k.clone()),
            _ => Wrapped::Stored,
        };
        Ok(Self::run(config, identity.clone(), raft, store, wrapped))
    }

    /// Starts a manager that joins an existing cluster: raft starts with an empty log in
    /// `config.raft_dir` (which must hold no raft state), `register` is called with it (to make
    /// it reachable through the listener, then ask the leader to add it: see
    /// `crate::net::membership`), and the manager runs once this node is a voter and the store
    /// holds the cluster and this node with its raft id.
    pub async fn join<F, Fut>(
        config: &ManagerConfig,
        identity: &NodeIdentity,
        transport: Arc<dyn Transport>,
        register: F,
    ) -> Result<Manager, ManagerError>
    where
        F: FnOnce(RaftNode, SharedStore) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let store = SharedStore::default();
        let raft = Self::start_raft(
            config,
            identity,
            store.clone(),
            StartOptions::default(),
            transport,
        )
        .await?;
        let joined = async {
            register(raft.clone(), store.clone())
                .await
                .map_err(ManagerError::Raft)?;
            let me = identity.raft_id;
            raft.wait_until(JOIN_TIMEOUT, "this manager is a voter", |s| {
                s.voters.contains(&me)
            })
            .await
            .map_err(|e| {
                ManagerError::Raft(format!("the cluster did not add this manager: {e}"))
            })?;
            let ready = || {
                store.view(|s| {
                    s.cluster().map(|c| c.id) == Some(identity.cluster_id)
                        && s.get::<Node>(&identity.node_id)
                            .and_then(|n| n.manager_status.as_ref().map(|m| m.raft_id))
                            == Some(me)
                })
            };
            let until = tokio::time::Instant::now() + JOIN_TIMEOUT;
            while !ready() {
                if tokio::time::Instant::now() >= until {
                    return Err(ManagerError::Raft(
                        "the cluster's state did not reach this manager in time".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        };
        if let Err(e) = joined.await {
            raft.shutdown().await;
            return Err(e);
        }
        let wrapped = Wrapped::Stored;
        Ok(Self::run(config, identity.clone(), raft, store, wrapped))
    }

    /// After force-new-cluster: waits to lead, then demotes every other manager in the store
    /// (raft already counts only this one) and marks this one leader.
    async fn forget_other_managers(
        raft: &RaftNode,
        store: &SharedStore,
        identity: &NodeIdentity,
    ) -> Result<(), ManagerError> {
        Self::wait_leader(raft).await?;
        let me = identity.node_id;
        swarm_core::proposer::update(store, raft as &dyn Proposer, |tx| {
            for n in tx.list::<Node>() {
                let mut n = (*n).clone();
                if n.id == me {
                    n.manager_status = Some(ManagerStatus {
                        raft_id: identity.raft_id,
                        addr: identity.addr.clone(),
                        leader: true,
                        reachability: Reachability::Reachable,
                    });
                } else if n.manager_status.is_some() || n.role == NodeRole::Manager {
                    n.manager_status = None;
                    n.role = NodeRole::Worker;
                    n.spec.desired_role = NodeRole::Worker;
                } else {
                    continue;
                }
                tx.update(n)?;
            }
            Ok(())
        })
        .await?;
        tracing::warn!(
            "force-new-cluster: the other managers were removed; this manager is the only one"
        );
        Ok(())
    }

    /// Cross-checks `node.json` against the raft membership (its raft id) and the store (the
    /// cluster object and this node's object), which raft restored from the log at start.
    async fn check_identity(
        raft: &RaftNode,
        store: &SharedStore,
        identity: &NodeIdentity,
    ) -> Result<(), ManagerError> {
        let mismatch = |what: String| {
            ManagerError::Storage(format!(
                "{} does not match this node's raft state: {what}. The identity file was edited or belongs to another data directory; restore it. Nothing was changed",
                identity::IDENTITY_FILE
            ))
        };
        let loaded = raft
            .wait_until(
                Duration::from_secs(2),
                "the membership is loaded",
                swarm_raft::NodeStatus::has_membership,
            )
            .await;
        let members: Vec<u64> = match loaded {
            Ok(m) => {
                let mut ids = [m.voters, m.learners].concat();
                ids.sort_unstable();
                ids
            }
            Err(_) => Vec::new(),
        };
        if !members.contains(&identity.raft_id) {
            return Err(mismatch(format!(
                "it names raft id {}, the raft members are {members:?}",
                identity.raft_id
            )));
        }
        let (cluster, node_raft_id) = store.view(|s| {
            (
                s.cluster().map(|c| c.id),
                s.get::<Node>(&identity.node_id)
                    .map(|n| n.manager_status.as_ref().map(|m| m.raft_id)),
            )
        });
        if cluster != Some(identity.cluster_id) {
            return Err(mismatch(format!(
                "it names cluster {}, the store holds {}",
                identity.cluster_id,
                cluster.map_or("no cluster".to_string(), |c| format!("cluster {c}"))
            )));
        }
        match node_raft_id {
            None => Err(mismatch(format!(
                "it names node {}, which the store does not hold",
                identity.node_id
            ))),
            Some(r) if r != Some(identity.raft_id) => Err(mismatch(format!(
                "node {} has raft id {r:?} in the store, node.json says {}",
                identity.node_id, identity.raft_id
            ))),
            Some(_) => Ok(()),
        }
    }

    fn run(
        config: &ManagerConfig,
        identity: NodeIdentity,
        raft: RaftNode,
        store: SharedStore,
        wrapped: Wrapped,
    ) -> Manager {
        let proposer: Arc<dyn Proposer> =
            Arc::new(crate::metrics::MeteredProposer::new(Arc::new(raft.clone())));
        // Ends with raft (its metrics channel closes).
        tokio::spawn(crate::metrics::watch_raft(raft.clone()));
        let dispatcher = StoreDispatcher::new(store.clone(), proposer, config.dispatcher.clone());
        let (stop_loops, loops_rx) = watch::channel(false);
        let (stop_keys, keys_rx) = watch::channel(false);
        let membership = tokio::spawn(membership::reconcile_loop(
            raft.clone(),
            store.clone(),
            loops_rx.clone(),
        ));
        let loops = tokio::spawn(loops::supervise(
            raft.clone(),
            store.clone(),
            Arc::new(config.clock.clone()),
            config.entropy.fork(),
            loops_rx,
        ));
        let keys = tokio::spawn(keys::watch_cluster(
            raft.clone(),
            store.clone(),
            wrapped,
            keys_rx,
        ));
        Manager {
            identity,
            raft,
            store,
            dispatcher,
            stop_loops,
            stop_keys,
            loops: Some(loops),
            membership: Some(membership),
            keys: Some(keys),
        }
    }

    /// This node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The replicated store (read it; change it through [`Manager::proposer`]).
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Commits changes through raft.
    pub fn proposer(&self) -> Arc<dyn Proposer> {
        Arc::new(crate::metrics::MeteredProposer::new(Arc::new(
            self.raft.clone(),
        )))
    }

    /// The raft node.
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// Raft facts for the API (members, reachability, whether one may be removed).
    pub fn raft_members(&self) -> membership::RaftMembers {
        membership::RaftMembers::new(self.raft.clone(), self.store.clone())
    }

    /// What the listener's routes need from this manager.
    pub fn handle(&self) -> crate::net::stack::ManagerHandle {
        crate::net::stack::ManagerHandle {
            raft: self.raft.clone(),
            store: self.store.clone(),
            node_id: self.identity.node_id,
        }
    }

    /// The dispatcher agents connect to.
    pub fn dispatcher(&self) -> &StoreDispatcher {
        &self.dispatcher
    }

    /// Stops the orchestrator and the scheduler (no new decisions); the dispatcher keeps serving.
    pub async fn stop_loops(&mut self) {
        let _ = self.stop_loops.send(true);
        for h in [self.loops.take(), self.membership.take()]
            .into_iter()
            .flatten()
        {
            stop_within(h, LOOPS_STOP).await;
        }
    }

    /// Stops everything: the loops, the dispatcher (pending statuses are committed first), the
    /// autolock watcher, then raft. The data directory can be reopened.
    pub async fn shutdown(mut self) {
        self.stop_loops().await;
        // Bounded: without a quorum the last statuses never commit, and raft must still be shut
        // down (a raft left running on the directory would race the next start on it, as
        // force-new-cluster does at once).
        if tokio::time::timeout(DISPATCHER_CLOSE, self.dispatcher.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "the dispatcher's last statuses were not committed within {DISPATCHER_CLOSE:?} (no quorum?); closing raft anyway"
            );
        }
        let _ = self.stop_keys.send(true);
        if let Some(h) = self.keys.take() {
            let _ = h.await;
        }
        self.raft.shutdown().await;
    }
}

/// The host part of `host:port` (an IPv6 host without its brackets); the whole string when it
/// has no port.
pub fn host_of(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        _ => addr.to_string(),
    }
}
