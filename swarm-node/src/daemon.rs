//! [`Daemon`]: a [`Manager`] and a [`Worker`] composed into one node, implementing [`Backend`] for
//! the Docker API layer.
//!
//! States: **inactive** (no swarm: only `swarm init` and `swarm join` work), **locked** (a swarm
//! whose manager keys are wrapped by the unlock key and no key given since the start: every swarm
//! call answers [`BackendError::Locked`] until `swarm unlock`), **active manager** (manager,
//! worker and routing mesh running), **worker** (a node joined with a worker token: its agent and
//! runtime only; cluster reads and writes answer [`BackendError::NotAManager`], `info` and
//! `swarm leave` work). The routing mesh ([`crate::mesh`]) starts with a manager's worker and
//! stops first; it answers the control layer's port checks ([`ClusterAccess::ports`]). A worker
//! runs one too, fed from a manager's mesh view (`net::mesh`), and a listener on its listen
//! address serving only the mesh's streams, its address reported to the managers in its node
//! description ([`crate::mesh::MESH_ADDR_LABEL`]).
//!
//! Network ([`crate::net`]): a manager serves the swarm protocol (raft, membership, CA,
//! dispatcher) on one QUIC listener bound to `--listen-addr` (or the init/join request's),
//! started with the manager and stopped first (`net::node::ManagerNet`); raft reaches the other
//! managers through `net::raft::QuicTransport`, checking each peer's certificate against the node
//! id the store records for that raft member. `swarm init` creates the cluster CA
//! (`net::ca::new_cluster_ca`: root and join tokens in the cluster object, this manager's
//! certificate in `certificates/`). `swarm join` gets a certificate by token (`net::ca::join`);
//! a worker then runs its agent over `net::dispatch::NetDispatcher` (its manager list persisted
//! in `node.json`, its certificate renewed), a manager starts raft with an empty log behind its
//! listener and asks the leader to add it (`net::membership`). A promoted worker (its renewed
//! certificate says manager) restarts as a manager. A manager's own agent talks to the
//! in-process dispatcher while it leads and to the leader's otherwise
//! (`manager::agent_dispatch`). `swarm init` binds the listener before it reports success: an
//! address that cannot be bound fails the init with Docker's "failed to listen on remote API
//! address" and leaves no state behind. A manager restarted from its data directory whose
//! listener cannot bind keeps working alone (other nodes cannot reach it; the reason is logged).
//! Task logs: every multi-host node's worker publishes its own tasks' logs to every manager
//! (`net::logs`), and a manager reads a task of another node through its `ManagerNet`'s broker
//! (a node the store lists down answers at once).
//!
//! `swarm init --force-new-cluster` on an active manager of a multi-member cluster restarts its
//! raft as the only voter, keeping every object; the other managers are demoted in the store, and
//! workers' sessions fail over to it.
//!
//! Data directory: `node.json` (identity and role, present while in a swarm), `raft/` (log,
//! snapshots and key file; managers), `certificates/` (chain, roots, sealed key and its KEK
//! file), the API socket (the binary's) and `daemon.lock`, whose `flock` the daemon holds from
//! start to shutdown (a second daemon, a backup or a restore on the directory is refused).
//! Transitions (init, join, unlock, leave, promotion, shutdown) are serialised;
//! [`Backend::swarm_state`] and [`Backend::cluster`] read a cached view and never wait.

use std::path::Path;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use rand_core::{OsRng, RngCore};
use swarm_core::objects::node::NodeDescription;
use swarm_core::{Id, Task};
use swarm_runtime::{Capabilities, LogLine, Runtime, RuntimeError};
use swarm_secrets::UnlockKey;
use thiserror::Error;

use crate::backend::{Backend, BackendError, ClusterAccess, DaemonInfo, InitRequest, SwarmState};
use crate::backend::{JoinRequest, LocalNodeInfo, LocalNodeState};
use crate::config::{create_data_dir, resolve_runtime, DaemonConfig, DataDirLock};
use crate::manager::agent_dispatch::AgentDispatcher;
use crate::manager::host::describe_host;
use crate::manager::identity::TRANSITION_FILE;
use crate::manager::identity::{KnownManager, LocalRole};
use crate::manager::{Manager, ManagerConfig, ManagerError, NodeIdentity};
use crate::mesh::{MeshConfig, MeshNode, MeshSource, RoutingMesh, MESH_ADDR_LABEL};
use crate::net::mesh::{MeshPeers, MeshSlot, WorkerMesh, DEFAULT_MAX_STREAMS};
use crate::net::node::{
    load_material, rpc_config, save_material, worker_rpc_config, ManagerNet, StoreMembers,
    WorkerNet,
};
use crate::net::raft::{QuicTransport, RaftTarget};
use crate::net::stack::{ManagerSlot, NetStack};
use crate::worker::{make_runtime, Worker, WorkerError};
use swarm_net::rpc::{Client, TlsState};

/// Default `--advertise-addr` shown for a single-host swarm.
pub const DEFAULT_ADDR: &str = "127.0.0.1:2377";

/// Longest the routing mesh, and separately the orchestration loops, may take to stop.
pub const STOP_STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest the manager may take to commit the last statuses and close raft when stopping.
pub const MANAGER_STOP: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs one stop step with a bound; past it, says which step was abandoned.
async fn bounded(
    what: &str,
    limit: std::time::Duration,
    step: impl std::future::Future<Output = ()>,
) {
    if tokio::time::timeout(limit, step).await.is_err() {
        tracing::warn!("{what} took longer than {limit:?}; going on without it");
    }
}

/// Why the daemon did not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The manager could not reopen the swarm (storage, raft).
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The runtime adapter could not start.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The data directory could not be created.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// `--init` failed.
    #[error("swarm init failed: {0}")]
    Init(BackendError),
}

/// A manager node's running parts: the manager, its worker, the routing mesh and the swarm
/// listener (absent when it could not bind).
type ActiveParts = (Manager, Worker, Arc<RoutingMesh>, Option<ManagerNet>);

/// A worker node's running parts: its worker (agent), its network side and identity, its
/// routing mesh and the listener other nodes' mesh streams reach it on (absent when it could
/// not bind).
type WorkerParts = (
    Worker,
    WorkerNet,
    NodeIdentity,
    Arc<RoutingMesh>,
    Option<NetStack>,
);

enum Running {
    Inactive,
    Locked(NodeIdentity),
    Active(Box<ActiveParts>),
    /// A worker: no store; its routing mesh follows a manager's view (`net::mesh`).
    Worker(Box<WorkerParts>),
}

#[derive(Clone)]
struct View {
    state: SwarmState,
    access: Option<ClusterAccess>,
    node_id: Option<Id>,
    /// The identity while in a swarm (role, address, known managers).
    identity: Option<NodeIdentity>,
}

/// The swarm daemon. See the module docs. Call [`Daemon::shutdown`] before dropping it: raft,
/// the loops and the agent run in tokio tasks that a plain drop does not stop.
pub struct Daemon {
    config: DaemonConfig,
    runtime: Arc<dyn Runtime>,
    host: NodeDescription,
    running: tokio::sync::Mutex<Running>,
    view: RwLock<View>,
    /// The running manager, for the listener's routes.
    slot: ManagerSlot,
    /// Raft ids <-> node ids for the raft transport.
    members: Arc<StoreMembers>,
    /// The raft node the listener serves.
    raft_target: RaftTarget,
    /// The routing mesh the listener's mesh methods serve.
    mesh_slot: MeshSlot,
    /// This daemon, for the tasks that change its role (a worker promoted).
    me: std::sync::OnceLock<std::sync::Weak<Daemon>>,
    /// The data directory's lock, held from the start until [`Daemon::shutdown`].
    lock: std::sync::Mutex<Option<DataDirLock>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("data_dir", &self.config.data_dir)
            .field("state", &self.swarm_state())
            .finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

/// Starts an init or leave: the marker makes a raft directory without `node.json` removable if
/// the change is interrupted.
fn begin_transition(data_dir: &Path) -> Result<(), ManagerError> {
    swarm_raft::files::atomic_write(&data_dir.join(TRANSITION_FILE), b"init or leave\n")
        .map_err(|e| ManagerError::Storage(e.to_string()))
}

fn end_transition(data_dir: &Path) -> Result<(), ManagerError> {
    let path = data_dir.join(TRANSITION_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ManagerError::io("remove", &path, e)),
    }
}

/// With no `node.json`: a raft directory is removed only if an init or leave was interrupted (the
/// marker is there); otherwise it is a swarm's state whose identity is missing, and the start is
/// refused without touching anything.
fn clear_interrupted_transition(data_dir: &Path, raft_dir: &Path) -> Result<(), ManagerError> {
    let holds_state = std::fs::read_dir(raft_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if data_dir.join(TRANSITION_FILE).exists() {
        remove_dir_if_present(raft_dir)?;
        return end_transition(data_dir);
    }
    if holds_state {
        return Err(ManagerError::Storage(format!(
            "{} holds a swarm's raft state but {} is missing, so this node does not know its identity; refusing to start (and to --init over it, which would discard that state). Restore {} from a backup to rejoin that swarm, or recover the state as a new single-manager swarm with `docker swarm init --force-new-cluster` once it is restored; to discard the state, remove {} yourself",
            raft_dir.display(),
            NodeIdentity::path(data_dir).display(),
            crate::manager::identity::IDENTITY_FILE,
            raft_dir.display()
        )));
    }
    Ok(())
}

fn remove_dir_if_present(path: &Path) -> Result<(), ManagerError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ManagerError::io("remove", path, e)),
    }
}

impl Daemon {
    /// Starts a daemon with the runtime `config.runtime` names (`auto` resolved here).
    pub async fn start(config: DaemonConfig) -> Result<Arc<Daemon>, DaemonError> {
        let kind = resolve_runtime(config.runtime).await;
        let runtime = make_runtime(kind, config.volumes_dir(), config.supervisor_options()).await?;
        Self::start_with_runtime(config, runtime).await
    }

    /// Starts a daemon over a runtime the caller made (tests, embedders).
    pub async fn start_with_runtime(
        config: DaemonConfig,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Arc<Daemon>, DaemonError> {
        // Owner-only: with autolock off the raft key file holds the key-encryption key.
        create_data_dir(&config.data_dir).map_err(|e| DaemonError::DataDir {
            path: config.data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let lock = match DataDirLock::try_acquire(&config.data_dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                return Err(DaemonError::DataDir {
                    path: config.data_dir.display().to_string(),
                    reason: "another swarm-node daemon (or a backup or restore) is using it".into(),
                })
            }
            Err(e) => {
                return Err(DaemonError::DataDir {
                    path: config.data_dir.display().to_string(),
                    reason: format!("cannot lock it: {e}"),
                })
            }
        };
        let host = describe_host(config.hostname.as_deref());
        let slot = ManagerSlot::default();
        let mesh_slot = MeshSlot::default();
        // Tasks sharing the node's network get their resolver's address (mesh/runtime.rs).
        let runtime: Arc<dyn Runtime> = Arc::new(crate::mesh::ResolverRuntime::new(
            runtime,
            mesh_slot.clone(),
        ));
        let daemon = Arc::new(Daemon {
            config,
            runtime,
            host,
            running: tokio::sync::Mutex::new(Running::Inactive),
            view: RwLock::new(View {
                state: SwarmState::Inactive,
                access: None,
                node_id: None,
                identity: None,
            }),
            members: Arc::new(StoreMembers::new(slot.clone())),
            raft_target: RaftTarget::new(Arc::new(StoreMembers::new(slot.clone()))),
            slot,
            mesh_slot,
            lock: std::sync::Mutex::new(Some(lock)),
            me: std::sync::OnceLock::new(),
        });
        let _ = daemon.me.set(Arc::downgrade(&daemon));
        match NodeIdentity::load(&daemon.config.data_dir)? {
            None => {
                clear_interrupted_transition(&daemon.config.data_dir, &daemon.config.raft_dir())?;
                if daemon.config.init {
                    daemon
                        .init(InitRequest::default())
                        .await
                        .map_err(DaemonError::Init)?;
                }
            }
            Some(identity) => {
                // node.json is written before the marker is removed: an init that got that far
                // completed.
                end_transition(&daemon.config.data_dir)?;
                let mut running = daemon.running.lock().await;
                if identity.role == LocalRole::Worker {
                    *running = daemon
                        .start_worker(identity)
                        .await
                        .map_err(|e| DaemonError::Manager(ManagerError::Storage(e)))?;
                    drop(running);
                    return Ok(daemon);
                }
                let (tls, client) = daemon
                    .credentials(&identity)
                    .map_err(|e| DaemonError::Manager(ManagerError::Storage(e)))?;
                let opened = Manager::open(
                    &daemon.manager_config(),
                    &identity,
                    None,
                    false,
                    daemon.transport(&client),
                )
                .await;
                match opened {
                    Ok(manager) => *running = daemon.activate(manager, tls, client, None).await,
                    Err(ManagerError::Locked) => {
                        tracing::warn!("autolock is on: the swarm stays locked until `swarm-node unlock` (or `docker swarm unlock`)");
                        daemon.set_view(SwarmState::Locked, None, Some(identity.clone()));
                        *running = Running::Locked(identity);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(daemon)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &DaemonConfig {
        &self.config
    }

    /// The runtime adapter the worker uses.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// Runs `f` on the manager while the swarm is active (tests, benchmarks, embedders).
    pub async fn with_manager<R>(&self, f: impl FnOnce(&Manager, &Worker) -> R) -> Option<R> {
        match &*self.running.lock().await {
            Running::Active(mw) => Some(f(&mw.0, &mw.1)),
            _ => None,
        }
    }

    /// The routing mesh while the swarm is active, on a manager or a worker (tests,
    /// embedders).
    pub async fn mesh(&self) -> Option<Arc<RoutingMesh>> {
        match &*self.running.lock().await {
            Running::Active(mw) => Some(mw.2.clone()),
            Running::Worker(w) => Some(w.3.clone()),
            _ => None,
        }
    }

    fn manager_config(&self) -> ManagerConfig {
        ManagerConfig {
            raft_dir: self.config.raft_dir(),
            raft: swarm_raft::RaftConfig {
                entropy: self.config.entropy.fork(),
                ..self.config.raft.clone()
            },
            kdf: self.config.kdf,
            dispatcher: crate::dispatcher::DispatcherOptions {
                entropy: self.config.entropy.fork(),
                ..self.config.dispatcher.clone()
            },
            entropy: self.config.entropy.fork(),
            clock: self.config.clock.clone(),
        }
    }

    /// The networked dispatcher's tunables, drawing from this daemon's entropy.
    fn net_dispatcher_options(&self) -> crate::net::dispatch::NetDispatcherOptions {
        crate::net::dispatch::NetDispatcherOptions {
            entropy: self.config.entropy.fork(),
            ..Default::default()
        }
    }

    /// How raft reaches the other managers: QUIC through `client`, peers checked against the
    /// node ids the store records for them.
    fn transport(&self, client: &Arc<Client>) -> Arc<dyn swarm_raft::Transport> {
        Arc::new(QuicTransport::new(client.clone(), self.members.clone()))
    }

    /// The address the listener binds for `identity` (its recorded one, else the daemon's).
    fn listen_addr(&self, identity: &NodeIdentity) -> std::net::SocketAddr {
        identity
            .listen_addr
            .as_deref()
            .and_then(|a| a.parse().ok())
            .unwrap_or(self.config.listen_addr)
    }

    /// A manager's credentials (its stored certificate; a swarm made before the cluster CA has
    /// none and gets provisional ones for this start) and the client it calls with.
    fn credentials(&self, identity: &NodeIdentity) -> Result<(Arc<TlsState>, Arc<Client>), String> {
        let tls = match load_material(&self.config.data_dir).map_err(|e| e.to_string())? {
            Some(m) => TlsState::new(&m).map_err(|e| e.to_string())?,
            None => provisional_credentials(identity)?,
        };
        let client = NetStack::client(
            tls.clone(),
            &rpc_config(&self.config.entropy),
            self.listen_addr(identity).ip(),
        )
        .map_err(|e| e.to_string())?;
        Ok((tls, client))
    }

    fn set_view(
        &self,
        state: SwarmState,
        access: Option<ClusterAccess>,
        identity: Option<NodeIdentity>,
    ) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = View {
            state,
            access,
            node_id: identity.as_ref().map(|i| i.node_id),
            identity,
        };
    }

    fn view(&self) -> View {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts the listener (unless `net` is already serving, as for a manager that joined), the
    /// worker and the routing mesh next to a running manager and publishes the active view.
    async fn activate(
        &self,
        manager: Manager,
        tls: Arc<TlsState>,
        client: Arc<Client>,
        net: Option<ManagerNet>,
    ) -> Running {
        let identity = manager.identity().clone();
        let node_id = identity.node_id;
        self.slot.set(Some(manager.handle()));
        self.members.set_joining_store(None);
        let listen = self.listen_addr(&identity);
        let mut net = match net {
            Some(n) => Some(n),
            None => match ManagerNet::start(
                listen,
                tls.clone(),
                client.clone(),
                manager.raft().clone(),
                manager.store().clone(),
                self.slot.clone(),
                self.raft_target.clone(),
                self.mesh_slot.clone(),
                self.config.entropy.fork(),
            ) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(%listen, error = %e, "the swarm listener did not start: other nodes cannot reach this one");
                    None
                }
            },
        };
        if let Some(n) = net.as_mut() {
            n.renew_certificate(&identity, tls, self.config.data_dir.clone());
        }
        // The agent: in-process while this manager leads, the leader's dispatcher otherwise.
        let remote = net.as_mut().map(|n| {
            n.serve_dispatcher(
                node_id,
                manager.dispatcher().clone(),
                manager.raft().clone(),
                manager.store().clone(),
            );
            let seeds = crate::net::node::store_managers(manager.store());
            crate::net::dispatch::NetDispatcher::new(
                client.clone(),
                seeds,
                self.net_dispatcher_options(),
            )
        });
        // Before the worker: its tasks' resolvers come from the mesh (`mesh::ResolverRuntime`).
        // With a listener the mesh forwards to the other nodes' tasks (and they to this one's).
        let mesh_node = net.as_ref().map(|_| MeshNode {
            id: node_id,
            peers: Arc::new(MeshPeers::new(client.clone(), DEFAULT_MAX_STREAMS)),
        });
        let mesh = RoutingMesh::start_node(
            MeshSource::Store(manager.store().clone()),
            self.mesh_config(),
            mesh_node,
        );
        self.mesh_slot.set(Some(mesh.clone()));
        let mut worker = Worker::start(
            node_id,
            self.host.clone(),
            self.runtime.clone(),
            Arc::new(AgentDispatcher::new(
                manager.dispatcher().clone(),
                remote,
                manager.raft().clone(),
            )),
            self.config.clock.clone(),
        )
        .await;
        if net.is_some() {
            // This node's tasks' logs, for the other managers (`net::logs`).
            let store = manager.store().clone();
            worker.serve_logs(
                node_id,
                client.clone(),
                Arc::new(move || crate::net::node::store_managers(&store)),
            );
        }
        let access = ClusterAccess {
            store: manager.store().clone(),
            proposer: manager.proposer(),
            node_id,
            ports: Some(mesh.clone()),
            raft: Some(Arc::new(manager.raft_members())),
            entropy: self.config.entropy.fork(),
        };
        self.watch_demotion(&manager);
        self.set_view(SwarmState::Active, Some(access), Some(identity));
        Running::Active(Box::new((manager, worker, mesh, net)))
    }

    /// Starts a worker node: its agent talks to the managers through the networked dispatcher.
    async fn start_worker(&self, identity: NodeIdentity) -> Result<Running, String> {
        let material = load_material(&self.config.data_dir)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "{} names this node a worker but it has no certificate; leave the swarm (`docker swarm leave`) and join again",
                    crate::manager::identity::IDENTITY_FILE
                )
            })?;
        let tls = TlsState::new(&material).map_err(|e| e.to_string())?;
        let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let client = NetStack::client(tls.clone(), &worker_rpc_config(&self.config.entropy), any)
            .map_err(|e| e.to_string())?;
        let net = WorkerNet::start(
            &identity,
            material,
            tls.clone(),
            client.clone(),
            self.config.data_dir.clone(),
            self.net_dispatcher_options(),
        );
        // The mesh: the view from the managers; a listener for the other nodes' streams to
        // this node's tasks, its address reported in the node description.
        let (mesh, stack, reachable) = WorkerMesh {
            listen: self.listen_addr(&identity),
            advertised: &identity.addr,
            node: identity.node_id,
            config: self.mesh_config(),
            slot: self.mesh_slot.clone(),
            rpc: rpc_config(&self.config.entropy),
        }
        .start(tls, client.clone(), net.dispatcher().clone());
        let mut host = self.host.clone();
        if let Some(addr) = reachable {
            host.engine
                .labels
                .insert(MESH_ADDR_LABEL.to_string(), addr.to_string());
        }
        let mut worker = Worker::start(
            identity.node_id,
            host,
            self.runtime.clone(),
            Arc::new(net.dispatcher().clone()),
            self.config.clock.clone(),
        )
        .await;
        // This node's tasks' logs, for every manager its sessions list (`net::logs`).
        let dispatcher = net.dispatcher().clone();
        worker.serve_logs(
            identity.node_id,
            client,
            Arc::new(move || dispatcher.managers()),
        );
        tracing::info!(node = %identity.node_id, "worker started");
        // Promotion: the CA reissues this node's certificate with the manager role; the renewal
        // loop adopts it, and the node restarts as a manager (as SwarmKit's agent does).
        // A change to the manager role, not the role the node starts with (a demoted manager
        // runs as a worker on its manager certificate until the CA reissues it).
        let mut role = net.role();
        role.borrow_and_update();
        let me = self.me.get().cloned();
        tokio::spawn(async move {
            loop {
                if role.changed().await.is_err() {
                    return;
                }
                if *role.borrow_and_update() == swarm_net::Role::Manager {
                    break;
                }
            }
            if let Some(d) = me.and_then(|w| w.upgrade()) {
                d.promote_self().await;
            }
        });
        self.set_view(SwarmState::Active, None, Some(identity.clone()));
        Ok(Running::Worker(Box::new((
            worker, net, identity, mesh, stack,
        ))))
    }

    /// The routing mesh's settings on this node.
    fn mesh_config(&self) -> MeshConfig {
        MeshConfig {
            addr: self.config.mesh_addr,
            // Tasks on the host network (process runtime) listen on the host's ports.
            shared_host_network: self.runtime.capabilities().host_network,
            vip_dataplane: self.config.vip_dataplane,
            kernel_ingress: self.config.kernel_ingress,
            ..MeshConfig::default()
        }
    }

    /// Stops a worker node: its agent (tasks stopped, last statuses reported), then its network
    /// side.
    async fn stop_worker(&self, parts: Box<WorkerParts>) {
        let (worker, net, _, mesh, stack) = *parts;
        self.mesh_slot.set(None);
        if let Some(stack) = stack {
            bounded("stopping the swarm listener", STOP_STEP, stack.stop()).await;
        }
        bounded("stopping the routing mesh", STOP_STEP, mesh.stop()).await;
        worker.stop().await;
        bounded("stopping the worker's network side", STOP_STEP, net.stop()).await;
    }

    /// Stops the swarm listener, the routing mesh (listeners and proxied connections), the loops,
    /// the worker (tasks are stopped and their last status committed) and the manager, in that
    /// order. Each step is bounded: the swarm listener by `net::stack::LISTENER_STOP`, the mesh
    /// and the loops by [`STOP_STEP`], the worker by the agent's own
    /// deadline (the longest stop grace period of its tasks plus the mesh drain,
    /// `swarm_runtime::KILL_WAIT` and `swarm_runtime::agent::STOP_MARGIN`), the manager by
    /// [`MANAGER_STOP`]. A step past its bound is logged and left behind (the raft log is
    /// crash-safe, so an unfinished close loses nothing committed).
    async fn stop_active(&self, mw: Box<ActiveParts>) {
        let (mut manager, worker, mesh, net) = *mw;
        self.slot.set(None);
        self.mesh_slot.set(None);
        if let Some(net) = net {
            bounded("stopping the swarm listener", STOP_STEP, net.stop()).await;
        }
        bounded("stopping the routing mesh", STOP_STEP, mesh.stop()).await;
        bounded(
            "stopping the orchestration loops",
            STOP_STEP,
            manager.stop_loops(),
        )
        .await;
        worker.stop().await;
        bounded(
            "closing the dispatcher and the raft log",
            MANAGER_STOP,
            manager.shutdown(),
        )
        .await;
    }

    /// Graceful shutdown: every task is stopped, pending statuses are committed, raft is closed.
    /// The data directory can then be opened by another daemon.
    pub async fn shutdown(&self) {
        let mut running = self.running.lock().await;
        match std::mem::replace(&mut *running, Running::Inactive) {
            Running::Active(mw) => self.stop_active(mw).await,
            Running::Worker(w) => self.stop_worker(w).await,
            _ => {}
        }
        self.set_view(SwarmState::Inactive, None, None);
        // The directory is free for another daemon, a backup or a restore.
        drop(running);
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[async_trait]
impl Backend for Daemon {
    fn swarm_state(&self) -> SwarmState {
        self.view().state
    }

    fn cluster(&self) -> Result<ClusterAccess, BackendError> {
        let v = self.view();
        match v.state {
            SwarmState::Inactive => Err(BackendError::NotInSwarm),
            SwarmState::Locked => Err(BackendError::Locked),
            SwarmState::Active => match v.access {
                Some(a) => Ok(a),
                None if v.identity.is_some_and(|i| i.role == LocalRole::Worker) => {
                    Err(BackendError::NotAManager)
                }
                None => Err(BackendError::NotInSwarm),
            },
        }
    }

    fn local_node(&self) -> LocalNodeInfo {
        let v = self.view();
        let state = match v.state {
            SwarmState::Inactive => LocalNodeState::Inactive,
            SwarmState::Locked => LocalNodeState::Locked,
            SwarmState::Active => LocalNodeState::Active,
        };
        let identity = v.identity.as_ref();
        LocalNodeInfo {
            node_id: v.node_id,
            node_addr: identity
                .map(|i| crate::manager::host_of(&i.addr))
                .unwrap_or_default(),
            state,
            control_available: v.access.is_some(),
            error: String::new(),
            remote_managers: identity
                .map(|i| {
                    i.managers
                        .iter()
                        .filter_map(|m| Some((m.node_id?, m.addr.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    async fn join(&self, req: JoinRequest) -> Result<(), BackendError> {
        let mut running = self.running.lock().await;
        if !matches!(&*running, Running::Inactive) {
            return Err(BackendError::AlreadyInSwarm);
        }
        let failed = |e: String| BackendError::JoinFailed(e);
        let remote = req
            .remote_addrs
            .iter()
            .find_map(|a| resolve(a).ok())
            .ok_or_else(|| failed(format!("cannot resolve any of {:?}", req.remote_addrs)))?;
        let listen = self.requested_listen(&req.listen_addr).map_err(failed)?;
        let advertise = self.advertise_addr(&req.advertise_addr, listen, Some(remote));
        let availability = req
            .availability
            .unwrap_or(swarm_core::objects::node::NodeAvailability::Active);
        let bind = std::net::SocketAddr::new(
            match remote.ip() {
                std::net::IpAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                std::net::IpAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            },
            0,
        );
        let started = std::time::Instant::now();
        let joined = crate::net::ca::join(
            bind,
            remote,
            &req.join_token,
            availability,
            &rpc_config(&self.config.entropy),
            crate::net::node::now,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
        let cert = joined.material.identity();
        let role = if cert.role == swarm_net::Role::Manager {
            LocalRole::Manager
        } else {
            LocalRole::Worker
        };
        let mut identity = NodeIdentity {
            node_id: joined.node_id,
            raft_id: 0,
            cluster_id: cert.cluster_id,
            addr: advertise,
            role,
            listen_addr: Some(listen.to_string()),
            managers: vec![KnownManager {
                node_id: None,
                addr: remote.to_string(),
            }],
        };
        begin_transition(&self.config.data_dir).map_err(internal)?;
        save_material(&self.config.data_dir, &joined.material).map_err(internal)?;
        let result = match role {
            LocalRole::Worker => {
                identity.store(&self.config.data_dir).map_err(internal)?;
                self.start_worker(identity.clone()).await.map_err(failed)
            }
            LocalRole::Manager => self.join_as_manager(&mut identity, joined.material).await,
        };
        match result {
            Ok(r) => {
                end_transition(&self.config.data_dir).map_err(internal)?;
                tracing::info!(node = %identity.node_id, role = ?role, elapsed = ?started.elapsed(), "joined the swarm");
                *running = r;
                Ok(())
            }
            Err(e) => {
                let _ = NodeIdentity::remove(&self.config.data_dir);
                let _ = remove_dir_if_present(&self.config.raft_dir());
                let _ =
                    remove_dir_if_present(crate::net::node::cert_dir(&self.config.data_dir).path());
                let _ = end_transition(&self.config.data_dir);
                Err(e)
            }
        }
    }

    async fn init(&self, req: InitRequest) -> Result<Id, BackendError> {
        let mut running = self.running.lock().await;
        match &*running {
            Running::Active(mw) if req.force_new_cluster => {
                let mut identity = mw.0.identity().clone();
                // `--advertise-addr` moves the manager (a data directory restored on another
                // host): the new address goes into node.json and, through the forced restart,
                // into this node's manager status, which workers and managers dial.
                let moved = (!req.advertise_addr.is_empty())
                    .then(|| {
                        let listen = self.listen_addr(&identity);
                        self.advertise_addr(&req.advertise_addr, listen, None)
                    })
                    .filter(|a| *a != identity.addr);
                if mw.0.raft().status().voters.len() <= 1 && moved.is_none() {
                    // Already the only manager: nothing to force.
                    return Ok(mw.0.identity().node_id);
                }
                let Running::Active(mw) = std::mem::replace(&mut *running, Running::Inactive)
                else {
                    unreachable!("matched Active above");
                };
                self.set_view(SwarmState::Inactive, None, None);
                self.stop_active(mw).await;
                if let Some(addr) = moved {
                    tracing::warn!(from = %identity.addr, to = %addr, "force-new-cluster: this manager now advertises another address");
                    identity.addr = addr;
                    identity.store(&self.config.data_dir).map_err(internal)?;
                }
                let (tls, client) = self.credentials(&identity).map_err(internal)?;
                let manager = Manager::open(
                    &self.manager_config(),
                    &identity,
                    None,
                    true,
                    self.transport(&client),
                )
                .await
                .map_err(internal)?;
                tracing::warn!(node = %identity.node_id, "force-new-cluster: this manager now forms a cluster of one, every object kept");
                *running = self.activate(manager, tls, client, None).await;
                return Ok(identity.node_id);
            }
            Running::Active(_) | Running::Worker(_) => return Err(BackendError::AlreadyInSwarm),
            Running::Locked(_) if req.force_new_cluster => return Err(BackendError::Locked),
            Running::Locked(_) => return Err(BackendError::AlreadyInSwarm),
            Running::Inactive => {}
        }
        let listen = self
            .requested_listen(&req.listen_addr)
            .map_err(BackendError::Internal)?;
        let mut rng = self.config.entropy.clone();
        let mut identity = NodeIdentity::new_manager(
            Id::generate(&mut rng),
            rng.next_u64().max(1),
            Id::generate(&mut rng),
            self.advertise_addr(&req.advertise_addr, listen, None),
        );
        identity.listen_addr = Some(listen.to_string());
        // The cluster CA: its root and tokens go into the cluster object, this manager's
        // certificate onto disk.
        let ca = crate::net::ca::new_cluster_ca(
            identity.cluster_id,
            identity.node_id,
            crate::net::node::now(),
            &mut rng,
        )
        .map_err(internal)?;
        let raft_dir = self.config.raft_dir();
        begin_transition(&self.config.data_dir).map_err(internal)?;
        remove_dir_if_present(&raft_dir).map_err(internal)?;
        save_material(&self.config.data_dir, &ca.material).map_err(internal)?;
        let tls = TlsState::new(&ca.material).map_err(internal)?;
        let client = NetStack::client(tls.clone(), &rpc_config(&self.config.entropy), listen.ip())
            .map_err(internal)?;
        let manager = Manager::init(
            &self.manager_config(),
            &identity,
            self.host.clone(),
            &req,
            ca.root_ca,
            Some(ca.certificate),
            self.transport(&client),
        )
        .await
        .map_err(|e| match e {
            ManagerError::Commit(c) => BackendError::Commit(c),
            other => internal(other),
        });
        // A failed init leaves nothing behind: no raft state, no certificate, no marker.
        let undo = || {
            let _ = remove_dir_if_present(&raft_dir);
            let _ = remove_dir_if_present(crate::net::node::cert_dir(&self.config.data_dir).path());
            let _ = end_transition(&self.config.data_dir);
        };
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                undo();
                return Err(e);
            }
        };
        // The swarm listener binds now, before the init is reported done: an address that cannot
        // be bound fails the init, as Docker's does (instead of a manager nobody can join).
        let net = match ManagerNet::start(
            listen,
            tls.clone(),
            client.clone(),
            manager.raft().clone(),
            manager.store().clone(),
            self.slot.clone(),
            self.raft_target.clone(),
            self.mesh_slot.clone(),
            self.config.entropy.fork(),
        ) {
            Ok(n) => n,
            Err(e) => {
                manager.shutdown().await;
                undo();
                tracing::warn!(%listen, error = %e, "swarm init failed: the listen address cannot be bound");
                return Err(BackendError::ListenFailed(e));
            }
        };
        if let Err(e) = identity.store(&self.config.data_dir) {
            net.stop().await;
            manager.shutdown().await;
            undo();
            return Err(internal(e));
        }
        end_transition(&self.config.data_dir).map_err(internal)?;
        tracing::info!(node = %identity.node_id, autolock = req.autolock, "swarm initialised");
        *running = self.activate(manager, tls, client, Some(net)).await;
        Ok(identity.node_id)
    }

    async fn unlock(&self, key: &str) -> Result<(), BackendError> {
        let mut running = self.running.lock().await;
        let identity = match &*running {
            Running::Inactive => return Err(BackendError::NotInSwarm),
            Running::Active(_) | Running::Worker(_) => return Err(BackendError::NotLocked),
            Running::Locked(identity) => identity.clone(),
        };
        let key =
            UnlockKey::parse(key).map_err(|e| BackendError::MalformedUnlockKey(e.to_string()))?;
        let (tls, client) = self.credentials(&identity).map_err(internal)?;
        match Manager::open(
            &self.manager_config(),
            &identity,
            Some(&key),
            false,
            self.transport(&client),
        )
        .await
        {
            Ok(manager) => {
                tracing::info!("swarm unlocked");
                *running = self.activate(manager, tls, client, None).await;
                Ok(())
            }
            Err(ManagerError::InvalidUnlockKey) | Err(ManagerError::Locked) => {
                Err(BackendError::InvalidUnlockKey)
            }
            Err(e) => Err(internal(e)),
        }
    }

    async fn leave(&self, force: bool) -> Result<(), BackendError> {
        let mut running = self.running.lock().await;
        match &*running {
            Running::Inactive => return Err(BackendError::NotInSwarm),
            Running::Locked(_) if !force => return Err(BackendError::LeaveLocked),
            Running::Active(mw) if !force => {
                let members = mw.0.raft_members().members();
                let me = mw.0.identity().raft_id;
                let reachable = members.iter().filter(|m| m.reachable).count();
                let self_reachable = members.iter().any(|m| m.raft_id == me && m.reachable);
                return Err(crate::backend::leave_check(
                    reachable,
                    members.len() - reachable,
                    self_reachable,
                ));
            }
            _ => {}
        }
        match std::mem::replace(&mut *running, Running::Inactive) {
            Running::Active(mw) => self.stop_active(mw).await,
            Running::Worker(w) => self.stop_worker(w).await,
            _ => {}
        }
        self.set_view(SwarmState::Inactive, None, None);
        // The marker goes first: with it, a leftover raft directory is debris removed at start.
        begin_transition(&self.config.data_dir).map_err(internal)?;
        NodeIdentity::remove(&self.config.data_dir).map_err(internal)?;
        remove_dir_if_present(&self.config.raft_dir()).map_err(internal)?;
        remove_dir_if_present(crate::net::node::cert_dir(&self.config.data_dir).path())
            .map_err(internal)?;
        end_transition(&self.config.data_dir).map_err(internal)?;
        tracing::info!("left the swarm; its state was removed");
        Ok(())
    }

    async fn task_logs(
        &self,
        task: &Task,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>, BackendError> {
        let running = self.running.lock().await;
        let worker = match &*running {
            Running::Inactive => return Err(BackendError::NotInSwarm),
            Running::Locked(_) => return Err(BackendError::Locked),
            Running::Active(mw) => &mw.1,
            Running::Worker(w) => &w.0,
        };
        match worker.logs(&task.id, tail).await {
            Ok(lines) => Ok(lines),
            Err(RuntimeError::NotFound { .. }) => Err(BackendError::NoLogs(task.id)),
            Err(e) => Err(internal(e)),
        }
    }

    fn runtime_capabilities(&self) -> Capabilities {
        self.runtime.capabilities()
    }

    async fn task_log_stream(
        &self,
        task: &Task,
        opts: swarm_runtime::LogOptions,
    ) -> Result<swarm_runtime::LogRecords, BackendError> {
        // The lock is held while the stream is opened only, not while it is read.
        let running = self.running.lock().await;
        let worker = match &*running {
            Running::Inactive => return Err(BackendError::NotInSwarm),
            Running::Locked(_) => return Err(BackendError::Locked),
            Running::Active(mw) => {
                // A task of another node: its lines come from that node (`net::logs`).
                let me = mw.0.identity().node_id;
                if let (Some(node), Some(net)) = (task.node_id, mw.3.as_ref()) {
                    if node != me {
                        let down = mw.0.store().view(|s| {
                            s.get::<swarm_core::Node>(&node).is_some_and(|n| {
                                n.status.state == swarm_core::objects::node::NodeState::Down
                            })
                        });
                        if down {
                            return Ok(crate::net::logs::node_down(node, task.id));
                        }
                        let broker = net.logs().clone();
                        drop(running);
                        return broker
                            .subscribe(node, task.id, opts)
                            .await
                            .map_err(|_| BackendError::NoLogs(task.id));
                    }
                }
                &mw.1
            }
            Running::Worker(w) => &w.0,
        };
        match worker.log_stream(&task.id, opts).await {
            Ok(lines) => Ok(lines),
            Err(RuntimeError::NotFound { .. }) => Err(BackendError::NoLogs(task.id)),
            Err(e) => Err(internal(e)),
        }
    }

    fn info(&self) -> DaemonInfo {
        DaemonInfo {
            hostname: self.host.hostname.clone(),
            platform: self.host.platform.clone(),
            ncpu: u64::try_from(self.host.resources.nano_cpus / 1_000_000_000).unwrap_or(1),
            mem_total: u64::try_from(self.host.resources.memory_bytes).unwrap_or(0),
            runtime: self.runtime.name().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: self.config.data_dir.display().to_string(),
            node_id: self.view().node_id,
        }
    }
}

/// Credentials made in memory for one start of a single-host manager: a new root and a manager
/// certificate for `identity` (replaced by the cluster CA's once there is one).
fn provisional_credentials(
    identity: &NodeIdentity,
) -> Result<Arc<swarm_net::rpc::TlsState>, String> {
    use swarm_net::pki::{make_csr, PrivateKey, RootCa, TlsMaterial, DEFAULT_NODE_CERT_VALIDITY};
    let now = swarm_core::Clock::now(&swarm_raft::SystemClock);
    let e = |e: swarm_net::Error| e.to_string();
    let root = RootCa::generate(PrivateKey::generate().map_err(e)?, now, &mut OsRng).map_err(e)?;
    let key = PrivateKey::generate().map_err(e)?;
    let csr = make_csr(&key).map_err(e)?;
    let who = swarm_net::NodeIdentity {
        node_id: identity.node_id,
        role: swarm_net::Role::Manager,
        cluster_id: identity.cluster_id,
    };
    let issued = root
        .issue(&csr, &who, DEFAULT_NODE_CERT_VALIDITY, now, &mut OsRng)
        .map_err(e)?;
    let material =
        TlsMaterial::new(issued.chain, key, vec![root.cert_der().to_vec()]).map_err(e)?;
    swarm_net::rpc::TlsState::new(&material).map_err(|e| e.to_string())
}

/// `host:port` to a socket address (a host name through the system resolver).
fn resolve(addr: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| format!("address {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {addr:?} resolves to nothing"))
}

/// The local address the kernel would use to reach `remote` (no packet is sent).
fn local_ip_towards(remote: std::net::SocketAddr) -> Option<std::net::IpAddr> {
    let any: std::net::SocketAddr = match remote {
        std::net::SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(remote).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

impl Daemon {
    /// Where the listener binds for an init or join request's `ListenAddr` (see
    /// [`DaemonConfig::listen_addr_fixed`]).
    fn requested_listen(&self, requested: &str) -> Result<std::net::SocketAddr, String> {
        let docker_default = requested == crate::config::DEFAULT_LISTEN_ADDR.to_string();
        if requested.is_empty() || (docker_default && self.config.listen_addr_fixed) {
            return Ok(self.config.listen_addr);
        }
        resolve(requested)
    }

    /// The address this node advertises: the request's, else `--advertise-addr`, else the
    /// listen address when it names one host, else the local address towards `remote` (the
    /// manager joined), else [`DEFAULT_ADDR`]. Port 2377 (the listen port) when none is given.
    fn advertise_addr(
        &self,
        requested: &str,
        listen: std::net::SocketAddr,
        remote: Option<std::net::SocketAddr>,
    ) -> String {
        // A listener on any free port (tests) advertises Docker's port.
        let port = match listen.port() {
            0 => crate::config::DEFAULT_PORT,
            p => p,
        };
        let with_port = |a: &str| {
            if a.parse::<std::net::SocketAddr>().is_ok() {
                a.to_string()
            } else if a.parse::<std::net::IpAddr>().is_ok() || !a.contains(':') {
                format!("{a}:{port}")
            } else {
                a.to_string()
            }
        };
        if !requested.is_empty() {
            return with_port(requested);
        }
        if let Some(a) = self
            .config
            .advertise_addr
            .as_deref()
            .filter(|a| !a.is_empty())
        {
            return with_port(a);
        }
        if !listen.ip().is_unspecified() {
            return std::net::SocketAddr::new(listen.ip(), port).to_string();
        }
        if let Some(ip) = remote.and_then(local_ip_towards) {
            return std::net::SocketAddr::new(ip, port).to_string();
        }
        DEFAULT_ADDR.to_string()
    }

    /// Watches this manager's raft membership: once it was a voter and no longer is (the leader
    /// demoted it, SwarmKit's role manager), the node restarts as a worker.
    fn watch_demotion(&self, manager: &Manager) {
        let raft = manager.raft().clone();
        let me_raft = manager.identity().raft_id;
        let me = self.me.get().cloned();
        tokio::spawn(async move {
            let mut status = raft.watch_status();
            let mut was_voter = false;
            loop {
                let st = status.current();
                if st.voters.contains(&me_raft) {
                    was_voter = true;
                } else if was_voter && !st.voters.is_empty() {
                    break;
                }
                if !status.changed().await {
                    return;
                }
            }
            if let Some(d) = me.and_then(|w| w.upgrade()) {
                d.demote_self(me_raft).await;
            }
        });
    }

    /// A manager taken out of raft: stops the manager and runs as a worker, following the
    /// managers its store knew. (Boxed, as [`Daemon::promote_self`].)
    fn demote_self(
        &self,
        raft_id: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let mut running = self.running.lock().await;
            let current =
                matches!(&*running, Running::Active(mw) if mw.0.identity().raft_id == raft_id);
            if !current {
                return;
            }
            let Running::Active(mw) = std::mem::replace(&mut *running, Running::Inactive) else {
                return;
            };
            let mut identity = mw.0.identity().clone();
            let me = identity.node_id;
            identity.managers = crate::net::node::store_managers(mw.0.store())
                .into_iter()
                .filter(|m| m.node_id != Some(me))
                .map(|m| KnownManager {
                    node_id: m.node_id,
                    addr: m.addr.to_string(),
                })
                .collect();
            tracing::info!(node = %me, "demoted: this node leaves raft and runs as a worker");
            self.set_view(SwarmState::Inactive, None, None);
            self.stop_active(mw).await;
            identity.role = LocalRole::Worker;
            identity.raft_id = 0;
            let stored = begin_transition(&self.config.data_dir)
                .and_then(|()| identity.store(&self.config.data_dir))
                .and_then(|()| remove_dir_if_present(&self.config.raft_dir()))
                .and_then(|()| end_transition(&self.config.data_dir));
            if let Err(e) = stored {
                tracing::warn!(error = %e, "demotion: the data directory could not be updated");
                return;
            }
            match self.start_worker(identity).await {
                Ok(r) => *running = r,
                Err(e) => tracing::warn!(error = %e, "demotion: the worker did not start"),
            }
        })
    }

    /// A worker whose certificate now says manager: stops the worker and joins raft through
    /// the managers it knows. On failure it runs as a worker again.
    /// (Boxed: it starts a worker again, whose start spawns the promotion watch.)
    fn promote_self(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let mut running = self.running.lock().await;
            let Running::Worker(parts) = std::mem::replace(&mut *running, Running::Inactive) else {
                return;
            };
            let mut identity = parts.2.clone();
            tracing::info!(node = %identity.node_id, "promoted: restarting as a manager");
            self.stop_worker(parts).await;
            let material = match load_material(&self.config.data_dir) {
                Ok(Some(m)) => m,
                other => {
                    tracing::warn!(?other, "promotion: no certificate to restart with");
                    return;
                }
            };
            identity.role = LocalRole::Manager;
            match self.join_as_manager(&mut identity, material).await {
                Ok(r) => *running = r,
                Err(e) => {
                    tracing::warn!(error = %e, "promotion failed; running as a worker again");
                    identity.role = LocalRole::Worker;
                    let _ = identity.store(&self.config.data_dir);
                    match self.start_worker(identity).await {
                        Ok(r) => *running = r,
                        Err(e) => tracing::warn!(error = %e, "the worker did not restart"),
                    }
                }
            }
        })
    }

    /// Joins raft as a manager: starts raft with an empty log behind a listener serving it,
    /// asks the managers to add it, and runs once the cluster's state arrived.
    async fn join_as_manager(
        &self,
        identity: &mut NodeIdentity,
        material: swarm_net::pki::TlsMaterial,
    ) -> Result<Running, BackendError> {
        let failed = |e: String| BackendError::JoinFailed(e);
        let tls = TlsState::new(&material).map_err(|e| failed(e.to_string()))?;
        let listen = self.listen_addr(identity);
        let client = NetStack::client(tls.clone(), &rpc_config(&self.config.entropy), listen.ip())
            .map_err(|e| failed(e.to_string()))?;
        remove_dir_if_present(&self.config.raft_dir()).map_err(internal)?;
        let seeds = identity.managers.clone();
        let mut last = String::new();
        for _attempt in 0..3 {
            identity.raft_id = self.config.entropy.clone().next_u64().max(1);
            identity.store(&self.config.data_dir).map_err(internal)?;
            let net_cell: Arc<std::sync::Mutex<Option<ManagerNet>>> = Default::default();
            let cell = net_cell.clone();
            let (tls2, client2) = (tls.clone(), client.clone());
            let (slot, target, members, mesh_slot) = (
                self.slot.clone(),
                self.raft_target.clone(),
                self.members.clone(),
                self.mesh_slot.clone(),
            );
            let id = identity.clone();
            let seeds = seeds.clone();
            let entropy = self.config.entropy.fork();
            let joined = Manager::join(
                &self.manager_config(),
                identity,
                self.transport(&client),
                move |raft, store| async move {
                    members.set_joining_store(Some(store.clone()));
                    let net = ManagerNet::start(
                        listen,
                        tls2,
                        client2.clone(),
                        raft,
                        store,
                        slot,
                        target,
                        mesh_slot,
                        entropy,
                    )?;
                    let peers = crate::net::membership::join_raft(
                        &client2,
                        &seeds,
                        id.raft_id,
                        &id.addr,
                        crate::manager::JOIN_TIMEOUT,
                    )
                    .await;
                    *cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(net);
                    for p in peers.map_err(|e| e.to_string())? {
                        members.learn(p.raft_id, p.node_id);
                    }
                    Ok(())
                },
            )
            .await;
            let net = net_cell.lock().unwrap_or_else(|e| e.into_inner()).take();
            match joined {
                Ok(manager) => {
                    identity.managers.clear();
                    identity.store(&self.config.data_dir).map_err(internal)?;
                    return Ok(self.activate(manager, tls, client, net).await);
                }
                Err(e) => {
                    if let Some(n) = net {
                        n.stop().await;
                    }
                    remove_dir_if_present(&self.config.raft_dir()).map_err(internal)?;
                    last = e.to_string();
                    if !last.contains("already used") {
                        break;
                    }
                }
            }
        }
        Err(failed(last))
    }
}
