//! A node's network roles, composed from the pieces of `crate::net`: what a manager serves on its
//! listener ([`ManagerNet`]: raft, membership, CA and dispatcher routes, the CA's background work,
//! and the dispatcher's leadership and cluster view kept current), what a worker runs
//! ([`WorkerNet`]: the networked dispatcher client, its manager list persisted in `node.json`, and
//! certificate renewal), and the raft member directory both sides of raft check peers against
//! ([`StoreMembers`]).
//!
//! Credentials: a node's certificate lives in `<data-dir>/certificates/` (`net::ca::CertDir`), its
//! key sealed with the node-local KEK file next to it (see `net::ca::storage`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use swarm_core::{Clock, Id, Node, SharedStore, Timestamp};
use swarm_net::pki::TlsMaterial;
use swarm_net::rpc::{Client, Peer, Router, ServerOptions, TlsState};
use swarm_net::Role;
use swarm_raft::{NodeId, RaftNode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dispatcher::StoreDispatcher;
use crate::manager::identity::{KnownManager, NodeIdentity};
use crate::net::ca::{CaServer, CertDir, CertStoreError};
use crate::net::dispatch::{
    dispatcher_routes, ClusterView, DispatcherTarget, Leadership, NetDispatcher,
    NetDispatcherOptions, WeightedManager,
};
use crate::net::logs::{logs_routes, LogBroker};
use crate::net::membership::membership_routes;
use crate::net::mesh::{mesh_routes, MeshSlot};
use crate::net::raft::{raft_routes, MemberIds, MemberMap, RaftTarget};
use crate::net::stack::{ManagerSlot, NetStack};

/// How often the cluster view (managers, root CA) sessions carry is recomputed.
const VIEW_EVERY: Duration = Duration::from_secs(1);

pub use super::settings::{
    rpc_config, worker_rpc_config, IDLE_TIMEOUT, SOCKET_BUFFER, WORKER_IDLE_TIMEOUT,
    WORKER_KEEP_ALIVE,
};

/// The wall clock as a [`Timestamp`].
pub fn now() -> Timestamp {
    swarm_raft::SystemClock.now()
}

/// A node's certificate directory and its key-encryption key.
pub fn cert_dir(data_dir: &Path) -> CertDir {
    CertDir::new(data_dir)
}

/// The certificate directory is owner-only, like the data directory (it holds the KEK file).
fn owner_only(dir: &CertDir) -> Result<(), CertStoreError> {
    crate::config::create_data_dir(dir.path()).map_err(|source| CertStoreError::Read {
        path: dir.path().to_path_buf(),
        source,
    })
}

/// Writes `material` under `data_dir` (key sealed with the node-local KEK).
pub fn save_material(data_dir: &Path, material: &TlsMaterial) -> Result<(), CertStoreError> {
    let dir = cert_dir(data_dir);
    owner_only(&dir)?;
    let kek = dir.local_kek(&mut OsRng)?;
    dir.save(material, &kek, &mut OsRng)
}

/// Reads the node's certificate, `None` when it has none (a swarm made before there was a CA).
pub fn load_material(data_dir: &Path) -> Result<Option<TlsMaterial>, CertStoreError> {
    let dir = cert_dir(data_dir);
    if !dir.path().exists() {
        return Ok(None);
    }
    owner_only(&dir)?;
    let kek = dir.local_kek(&mut OsRng)?;
    dir.load(&kek)
}

/// Raft ids <-> node ids: the running manager's store (`Node.manager_status.raft_id`), then the
/// members learnt from a join reply (before the store has them).
#[derive(Debug, Default)]
pub struct StoreMembers {
    slot: ManagerSlot,
    pending: MemberMap,
    joining_store: std::sync::RwLock<Option<SharedStore>>,
    /// Raft id -> node id answers found in the store, each checked against the node object
    /// (one lookup) before use: the raft transport asks on every message, and scanning every
    /// node each time cost the leader a store scan per append at 10,000 nodes.
    found: std::sync::RwLock<std::collections::HashMap<NodeId, Id>>,
}

impl StoreMembers {
    /// Over the manager in `slot`.
    pub fn new(slot: ManagerSlot) -> StoreMembers {
        StoreMembers {
            slot,
            pending: MemberMap::new(),
            joining_store: Default::default(),
            found: Default::default(),
        }
    }

    /// Records a member learnt outside the store (join reply).
    pub fn learn(&self, raft_id: NodeId, node_id: Id) {
        self.pending.insert(raft_id, node_id);
    }

    /// The store of a manager still joining (before it is in the slot).
    pub fn set_joining_store(&self, store: Option<SharedStore>) {
        *self
            .joining_store
            .write()
            .unwrap_or_else(|e| e.into_inner()) = store;
    }

    fn store(&self) -> Option<SharedStore> {
        self.slot.get().map(|h| h.store).or_else(|| {
            self.joining_store
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }
}

impl MemberIds for StoreMembers {
    fn node_id(&self, raft_id: NodeId) -> Option<Id> {
        let is_member = |n: &Node| n.manager_status.as_ref().map(|m| m.raft_id) == Some(raft_id);
        let cached = self
            .found
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&raft_id)
            .copied();
        self.store()
            .and_then(|s| {
                s.view(|s| {
                    if let Some(id) = cached {
                        if s.get::<Node>(&id).is_some_and(|n| is_member(n)) {
                            return Some(id);
                        }
                    }
                    s.iter::<Node>().find(|n| is_member(n)).map(|n| n.id)
                })
            })
            .inspect(|id| {
                if cached != Some(*id) {
                    self.found
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(raft_id, *id);
                }
            })
            .or_else(|| self.pending.node_id(raft_id))
    }

    fn raft_id(&self, node_id: &Id) -> Option<NodeId> {
        self.store()
            .and_then(|s| {
                s.view(|s| {
                    s.get::<Node>(node_id)
                        .and_then(|n| n.manager_status.as_ref().map(|m| m.raft_id))
                })
            })
            .or_else(|| self.pending.raft_id(node_id))
    }

    fn joining(&self) -> Vec<NodeId> {
        self.pending.joining()
    }
}

/// The managers of the store, as dispatcher sessions list them.
pub fn store_managers(store: &SharedStore) -> Vec<WeightedManager> {
    store.view(|s| {
        s.iter::<Node>()
            .filter_map(|n| {
                let m = n.manager_status.as_ref()?;
                Some(WeightedManager {
                    addr: m.addr.parse().ok()?,
                    node_id: Some(n.id),
                    weight: 1,
                })
            })
            .collect()
    })
}

/// The root CA bundle sessions carry (PEM bytes; empty without a CA).
fn root_bundle(store: &SharedStore) -> Vec<u8> {
    store.view(|s| {
        s.cluster()
            .map(|c| c.root_ca.ca_cert_pem.clone().into_bytes())
            .unwrap_or_default()
    })
}

/// One manager instance's listener and the background work tied to it. See the module docs.
pub struct ManagerNet {
    stack: NetStack,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    leadership: Arc<watch::Sender<Leadership>>,
    raft_target: RaftTarget,
    logs: LogBroker,
}

impl std::fmt::Debug for ManagerNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerNet")
            .field("stack", &self.stack)
            .finish_non_exhaustive()
    }
}

impl ManagerNet {
    /// Serves raft (`raft_target` set to `raft`), membership (`slot`), the CA over `store`, the
    /// routing mesh's methods (the mesh in `mesh`) and the dispatcher (once
    /// [`ManagerNet::serve_dispatcher`] is called) on `listen`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        listen: SocketAddr,
        tls: Arc<TlsState>,
        client: Arc<Client>,
        raft: RaftNode,
        store: SharedStore,
        slot: ManagerSlot,
        raft_target: RaftTarget,
        mesh: MeshSlot,
        entropy: swarm_core::Entropy,
    ) -> Result<ManagerNet, String> {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Leadership as a bool for the CA's signer.
        let (leader_tx, leader_rx) = watch::channel(raft.status().leads());
        {
            let raft = raft.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut status = raft.watch_status();
                loop {
                    let leads = status.current().leads();
                    leader_tx.send_if_modified(|l| std::mem::replace(l, leads) != leads);
                    tokio::select! {
                        alive = status.changed() => if !alive { return },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }));
        }
        let rpc = rpc_config(&entropy);
        let ca = CaServer::new(
            store.clone(),
            Arc::new(raft.clone()),
            leader_rx,
            Arc::new(swarm_raft::SystemClock),
            entropy,
        );
        tasks.push(ca.spawn(stop_rx.clone()));
        // The dispatcher's inputs: leadership (set once the manager runs) and the cluster view.
        let (leadership, leadership_rx) = watch::channel(Leadership::Follower { leader: None });
        let (view_tx, view_rx) = watch::channel(ClusterView::default());
        {
            let store = store.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let view = ClusterView {
                        managers: store_managers(&store),
                        root_ca: root_bundle(&store),
                    };
                    view_tx.send_if_modified(|v| {
                        if *v == view {
                            false
                        } else {
                            *v = view;
                            true
                        }
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(VIEW_EVERY) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }));
        }
        raft_target.set(Some(raft));
        let router =
            dispatcher_routes(Router::new(), DispatcherTarget::new(leadership_rx, view_rx));
        let router = ca.routes(router);
        let router = membership_routes(router, slot);
        let router = raft_routes(router, raft_target.clone());
        let logs = LogBroker::new();
        let router = logs_routes(router, logs.clone());
        let router = mesh_routes(router, mesh);
        let options = ServerOptions {
            policy: ca.policy(),
            clock: Arc::new(swarm_net::rpc::SystemClock),
            ..ServerOptions::default()
        };
        let stack = match NetStack::start(listen, tls, client, &rpc, router, options) {
            Ok(s) => s,
            Err(e) => {
                let _ = stop.send(true);
                for t in tasks {
                    t.abort();
                }
                raft_target.set(None);
                return Err(format!("cannot serve the swarm port on {listen}: {e}"));
            }
        };
        Ok(ManagerNet {
            stack,
            stop,
            tasks,
            leadership: Arc::new(leadership),
            raft_target,
            logs,
        })
    }

    /// Serves dispatcher sessions from `dispatcher` while `raft` leads; otherwise sends callers
    /// to the leader (its address from `store`).
    ///
    /// Whenever this manager starts leading, nodes without a session here are marked unknown
    /// (then down unless they come back) **before** sessions are served here, as SwarmKit's
    /// dispatcher does on start: on a change of leader, and also when raft already leads as this
    /// starts (`swarm init --force-new-cluster`, a lone manager restarted), since every session
    /// was then held by another manager or by this node's previous process. A session opened
    /// while the marking ran could otherwise be overwritten by it (Ready, then Unknown with a
    /// live session: never Ready again). This node itself (`me`) is never marked: its agent runs
    /// in this process and talks to the dispatcher directly. The leadership is first confirmed
    /// by a quorum ([`RaftNode::confirm_leadership`]): a manager that led before a restart is
    /// restored as leader by raft until it hears the newer term, and must mark nothing.
    pub fn serve_dispatcher(
        &mut self,
        me: Id,
        dispatcher: StoreDispatcher,
        raft: RaftNode,
        store: SharedStore,
    ) {
        let tx = self.leadership.clone();
        let mut stop = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move {
            let mut status = raft.watch_status();
            let mut last: Option<(bool, Option<u64>)> = None;
            loop {
                let st = status.current();
                let key = (st.leads(), st.leader);
                if last != Some(key) {
                    let became_leader = st.leads() && last.is_none_or(|(led, _)| !led);
                    // A manager that does not lead marks no node down (see `set_leading`).
                    dispatcher.set_leading(st.leads());
                    // openraft restores a manager that led before a restart as leader until it
                    // hears the current term: its marking, re-routed to the real leader once it
                    // steps down, would land after the nodes' sessions there and leave them
                    // unknown (SIMULATION.md defect 7). So the leadership is confirmed first.
                    let confirmed = became_leader
                        && tokio::select! {
                            ok = confirm_leading(&raft) => ok,
                            _ = stop.wait_for(|s| *s) => return,
                        };
                    if confirmed {
                        // Nodes whose sessions were with the old leader (or this node's previous
                        // process): unknown, then down unless they come back.
                        tokio::select! {
                            n = dispatcher.mark_nodes_unknown(Some(me)) => tracing::info!(
                                nodes = n,
                                "this manager leads: nodes without a session here marked unknown"
                            ),
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    }
                    // Raft may have moved on while the marking ran: publish what holds now.
                    let st = status.current();
                    dispatcher.set_leading(st.leads());
                    last = Some((st.leads(), st.leader));
                    let l = if st.leads() {
                        Leadership::Leader(dispatcher.clone())
                    } else {
                        let leader = st.leader.and_then(|r| {
                            store.view(|s| {
                                s.iter::<Node>().find_map(|n| {
                                    let m = n.manager_status.as_ref()?;
                                    if m.raft_id != r {
                                        return None;
                                    }
                                    Some(WeightedManager {
                                        addr: m.addr.parse().ok()?,
                                        node_id: Some(n.id),
                                        weight: 1,
                                    })
                                })
                            })
                        });
                        Leadership::Follower { leader }
                    };
                    tx.send_replace(l);
                }
                tokio::select! {
                    alive = status.changed() => if !alive { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }));
    }

    /// Keeps this manager's certificate fresh, as a worker's is (SwarmKit: every node renews at a
    /// random point in 50-80 % of its validity, and at once when a root rotation marks it): the
    /// manager renews through its own CA server at `identity.addr` (which commits the request
    /// through raft, so the leader's signer signs it even when this manager follows), installs
    /// the new material in `tls` (its listener and its client) and stores it under `data_dir`.
    /// A certificate for another role (a demotion) is left for the node's restart as a worker.
    /// Nothing to do for a manager without a stored certificate (provisional credentials).
    pub fn renew_certificate(
        &mut self,
        identity: &NodeIdentity,
        tls: Arc<TlsState>,
        data_dir: PathBuf,
    ) {
        let material = match load_material(&data_dir) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "no certificate renewal: the stored certificate cannot be read");
                return;
            }
        };
        let Ok(addr) = identity.addr.parse::<SocketAddr>() else {
            tracing::warn!(addr = %identity.addr, "no certificate renewal: the advertised address is not IP:port");
            return;
        };
        let target = crate::net::ca::RenewalTarget {
            client: self.stack.caller().clone(),
            tls,
            manager: Peer {
                addr,
                role: Role::Manager,
                node_id: Some(identity.node_id),
            },
            keep_role: Some(Role::Manager),
            speedup: crate::net::ca::renewal_speedup_from_env(),
            managers: None,
        };
        self.tasks.push(tokio::spawn(crate::net::ca::run_renewal(
            target,
            material,
            self.stop.subscribe(),
            now,
            OsRng,
            move |m: &TlsMaterial| {
                if let Err(e) = save_material(&data_dir, m) {
                    tracing::warn!(error = %e, "could not store the renewed certificate");
                }
            },
        )));
    }

    /// The log broker: the nodes' log streams to this manager.
    pub fn logs(&self) -> &LogBroker {
        &self.logs
    }

    /// The address the swarm listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.stack.local_addr()
    }

    /// The client this manager calls with.
    pub fn client(&self) -> &Arc<Client> {
        self.stack.caller()
    }

    /// Stops the listener (first: peers see the close at once), then the background work.
    pub async fn stop(self) {
        self.raft_target.set(None);
        let _ = self.stop.send(true);
        self.stack.stop().await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

/// The peer for a manager this node knows (IP:port address).
pub fn manager_peer(m: &KnownManager) -> Option<Peer> {
    Some(Peer {
        addr: m.addr.parse().ok()?,
        role: Role::Manager,
        node_id: m.node_id,
    })
}

/// A worker's network parts: the dispatcher client, and the tasks persisting its manager list
/// and renewing its certificate.
pub struct WorkerNet {
    dispatcher: NetDispatcher,
    client: Arc<Client>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Set when the node's certificate names another role (a promotion): the daemon restarts the
    /// node as a manager.
    role: watch::Receiver<Role>,
}

impl std::fmt::Debug for WorkerNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerNet")
            .field("dispatcher", &self.dispatcher)
            .finish_non_exhaustive()
    }
}

impl WorkerNet {
    /// Starts a worker's client side for `identity` with `material`, persisting what it learns
    /// in `data_dir`.
    pub fn start(
        identity: &NodeIdentity,
        material: TlsMaterial,
        tls: Arc<TlsState>,
        client: Arc<Client>,
        data_dir: PathBuf,
        options: NetDispatcherOptions,
    ) -> WorkerNet {
        let seeds: Vec<WeightedManager> = identity
            .managers
            .iter()
            .filter_map(|m| {
                Some(WeightedManager {
                    addr: m.addr.parse().ok()?,
                    node_id: m.node_id,
                    weight: 1,
                })
            })
            .collect();
        let dispatcher = NetDispatcher::new(client.clone(), seeds, options);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Persist the manager list each session brings.
        {
            let mut info = dispatcher.session_info();
            let mut identity = identity.clone();
            let dir = data_dir.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = info.changed() => if r.is_err() { return },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    let managers: Vec<KnownManager> = match &*info.borrow_and_update() {
                        Some(i) => i
                            .managers
                            .iter()
                            .map(|m| KnownManager {
                                node_id: m.node_id,
                                addr: m.addr.to_string(),
                            })
                            .collect(),
                        None => continue,
                    };
                    if !managers.is_empty() && managers != identity.managers {
                        identity.managers = managers;
                        if let Err(e) = identity.store(&dir) {
                            tracing::warn!(error = %e, "could not record the manager list");
                        }
                    }
                }
            }));
        }
        // Renew the certificate; a reissued chain with another role is a promotion.
        let (role_tx, role) = watch::channel(material.identity().role);
        if let Some(peer) = identity.managers.iter().find_map(manager_peer) {
            let target = crate::net::ca::RenewalTarget {
                client: client.clone(),
                tls,
                manager: peer,
                keep_role: None,
                speedup: crate::net::ca::renewal_speedup_from_env(),
                managers: Some({
                    let d = dispatcher.clone();
                    Arc::new(move || d.manager_peers())
                }),
            };
            let dir = data_dir;
            tasks.push(tokio::spawn(crate::net::ca::run_renewal(
                target,
                material,
                stop_rx,
                now,
                OsRng,
                move |m: &TlsMaterial| {
                    if let Err(e) = save_material(&dir, m) {
                        tracing::warn!(error = %e, "could not store the renewed certificate");
                    }
                    role_tx.send_replace(m.identity().role);
                },
            )));
        }
        WorkerNet {
            dispatcher,
            client,
            stop,
            tasks,
            role,
        }
    }

    /// The agent's dispatcher.
    pub fn dispatcher(&self) -> &NetDispatcher {
        &self.dispatcher
    }

    /// The managers the dispatcher client knows now.
    pub fn managers(&self) -> Vec<WeightedManager> {
        self.dispatcher.managers()
    }

    /// The role the node's certificate names (changes on promotion).
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Stops the background work and closes the client.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        self.client.endpoint().close(0u32.into(), b"node stopping");
    }
}

/// Waits until `raft`'s leadership is confirmed by a quorum ([`RaftNode::confirm_leadership`]):
/// true once it is, false as soon as raft no longer shows this node leading.
async fn confirm_leading(raft: &RaftNode) -> bool {
    while raft.status().leads() {
        if raft.confirm_leadership().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
