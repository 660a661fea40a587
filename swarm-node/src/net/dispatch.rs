//! The dispatcher over QUIC (SwarmKit's protocol): the methods a manager serves to agents, and
//! [`NetDispatcher`], the agent's [`Dispatcher`] over them with manager failover.
//!
//! # Methods (all `Access::Node`: any node certificate of the cluster)
//! - [`SESSION`] (server streaming): opens a session. The first item is a [`SessionInfo`] (the
//!   session id, the caller's node id, the weighted manager list, the root CA bundle, the first
//!   heartbeat period); then [`AssignmentSet`]s (a full one, then incremental ones), and the
//!   session info again whenever the manager list or root CA changes.
//! - [`HEARTBEAT`] (unary): keeps the session alive; answers the period to wait before the next
//!   one (5 s ± 10 %, chosen by the server). Without one for three periods the session ends and
//!   the node is marked down.
//! - [`UPDATE_STATUS`] (unary, at most [`MAX_STATUS_UPDATES`] updates): task status reports. Updates
//!   for tasks not assigned to the caller are refused: not committed, and their ids are returned
//!   in [`StatusResponse::refused`], which the client logs (the agent drops them: the next
//!   assignment set does not hold those tasks).
//!
//! The node id is always the caller's certificate's, never taken from a request.
//!
//! # Leadership
//! The routes outlive leadership: [`DispatcherTarget`] says whether this manager leads (and gives
//! its [`StoreDispatcher`]) or who leads. On a follower, [`SESSION`] answers one
//! [`SessionMessage::NotLeader`] item naming the leader (the client follows it; calls are not
//! proxied), and the unary methods answer `Unavailable` with the leader's address in the message.
//! A session ends (`Unavailable`) when this manager's leadership changes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use swarm_core::dispatch::{AssignmentSet, NodeRegistration, StatusBatch, TaskStatusUpdate};
use swarm_core::objects::node::NodeDescription;
use swarm_core::Id;
use swarm_net::rpc::{
    Access, CallContext, Client, Code, ItemSender, Peer, Router, RpcError, ServerStreaming, Status,
    Streaming, Unary,
};
use swarm_net::Role;
use swarm_runtime::{DispatchError, Dispatcher, Session};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dispatcher::StoreDispatcher;

/// Most status updates in one [`UPDATE_STATUS`] call (SwarmKit's agent sends at most 1,024).
pub const MAX_STATUS_UPDATES: usize = 1024;

/// Largest session item (a full assignment set with its secrets and configs).
const MAX_SESSION_ITEM: u32 = 64 << 20;
/// Largest session request (a node description).
const MAX_SESSION_REQUEST: u32 = 1 << 20;
/// Largest status request: 1,024 updates with their messages and container details.
const MAX_STATUS_REQUEST: u32 = 8 << 20;

/// Opens a session: see the module docs.
pub const SESSION: ServerStreaming<SessionRequest, SessionMessage> = ServerStreaming::new(
    "dispatcher.session",
    Access::Node,
    MAX_SESSION_REQUEST,
    MAX_SESSION_ITEM,
);
/// A heartbeat of a session.
pub const HEARTBEAT: Unary<HeartbeatRequest, HeartbeatResponse> =
    Unary::new("dispatcher.heartbeat", Access::Node, 64, 64);
/// Task status updates of a session.
pub const UPDATE_STATUS: Unary<StatusRequest, StatusResponse> = Unary::new(
    "dispatcher.update_status",
    Access::Node,
    MAX_STATUS_REQUEST,
    1 << 20,
);

/// A manager an agent may talk to, and how often to pick it relative to the others.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WeightedManager {
    /// Its QUIC address.
    pub addr: SocketAddr,
    /// Its node id, when known (a join address alone has none): checked against its certificate.
    pub node_id: Option<Id>,
    /// Relative weight (0 counts as 1).
    pub weight: u32,
}

/// What a session tells the node about itself and the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's id, quoted in heartbeats and status updates.
    pub session_id: u64,
    /// The caller's node id (from its certificate).
    pub node_id: Id,
    /// The managers to fail over to.
    pub managers: Vec<WeightedManager>,
    /// The cluster's root CA bundle (DER certificates concatenated as the CA server gives them;
    /// may be empty).
    pub root_ca: Vec<u8>,
    /// The period to wait before the first heartbeat.
    pub heartbeat_period: Duration,
}

/// The request opening a session. The node id comes from the certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// What the node reports about itself.
    pub description: NodeDescription,
}

/// One item of the session stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionMessage {
    /// The session's information (first item, and again on change).
    Info(SessionInfo),
    /// Assignments (the first full, then incremental).
    Assignments(AssignmentSet),
    /// This manager does not lead: go to `leader` (if known). The only item of its stream.
    NotLeader {
        /// The leader, if this manager knows it.
        leader: Option<WeightedManager>,
    },
}

/// A heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The session it keeps alive.
    pub session_id: u64,
}

/// The answer to a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// How long to wait before the next heartbeat.
    pub period: Duration,
}

/// Status updates of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusRequest {
    /// The session reporting.
    pub session_id: u64,
    /// At most [`MAX_STATUS_UPDATES`].
    pub updates: Vec<TaskStatusUpdate>,
}

/// The answer to [`UPDATE_STATUS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Tasks whose update was refused because they are not assigned to the caller.
    pub refused: Vec<Id>,
}

/// Whether this manager leads, as the dispatcher routes need it.
#[derive(Clone, Debug)]
pub enum Leadership {
    /// This manager leads: sessions are served by this dispatcher.
    Leader(StoreDispatcher),
    /// Another manager leads (or none yet): callers are sent there.
    Follower {
        /// The leader, if known.
        leader: Option<WeightedManager>,
    },
}

/// What sessions tell nodes about the cluster: fed by the integrator from the store's manager
/// nodes and the CA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The managers, weighted.
    pub managers: Vec<WeightedManager>,
    /// The root CA bundle.
    pub root_ca: Vec<u8>,
}

/// The inputs of [`dispatcher_routes`]: two `watch` channels the daemon keeps current (the
/// leadership as raft changes it, and the manager list and root CA as the store changes them).
/// Sessions follow both: a leadership change ends them, a view change is sent to every node.
#[derive(Clone, Debug)]
pub struct DispatcherTarget {
    leadership: watch::Receiver<Leadership>,
    view: watch::Receiver<ClusterView>,
}

impl DispatcherTarget {
    /// A target reading `leadership` and `view`.
    pub fn new(
        leadership: watch::Receiver<Leadership>,
        view: watch::Receiver<ClusterView>,
    ) -> DispatcherTarget {
        DispatcherTarget { leadership, view }
    }

    fn leader(&self) -> Result<StoreDispatcher, Status> {
        match &*self.leadership.borrow() {
            Leadership::Leader(d) => Ok(d.clone()),
            Leadership::Follower { leader } => Err(not_leader(leader.as_ref())),
        }
    }
}

fn not_leader(leader: Option<&WeightedManager>) -> Status {
    match leader {
        Some(l) => Status::new(
            Code::Unavailable,
            format!(
                "this manager is not the leader; the leader is at {}",
                l.addr
            ),
        ),
        None => Status::new(
            Code::Unavailable,
            "this manager is not the leader, and no leader is known",
        ),
    }
}

fn caller(ctx: &CallContext) -> Result<Id, Status> {
    ctx.peer
        .as_ref()
        .map(|p| p.identity.node_id)
        .ok_or_else(|| Status::new(Code::Unauthenticated, "no node certificate"))
}

fn to_status(e: DispatchError) -> Status {
    match e {
        DispatchError::Unreachable { reason } => Status::new(Code::Unavailable, reason),
        DispatchError::SessionClosed => Status::new(
            Code::FailedPrecondition,
            "the session is not current (ended, or replaced by a newer one)",
        ),
        DispatchError::Refused { reason } => Status::new(Code::PermissionDenied, reason),
    }
}

/// Adds the dispatcher's methods to `router`, served through `target`.
pub fn dispatcher_routes(router: Router, target: DispatcherTarget) -> Router {
    let t_session = target.clone();
    let t_heartbeat = target.clone();
    router
        .server_streaming(&SESSION, move |ctx, req: SessionRequest, out| {
            serve_session(t_session.clone(), ctx, req, out)
        })
        .unary(&HEARTBEAT, move |ctx, req: HeartbeatRequest| {
            let target = t_heartbeat.clone();
            async move {
                let node = caller(&ctx)?;
                let d = target.leader()?;
                let period = d.heartbeat(node, req.session_id).map_err(to_status)?;
                Ok(HeartbeatResponse { period })
            }
        })
        .unary(&UPDATE_STATUS, move |ctx, req: StatusRequest| {
            let target = target.clone();
            async move {
                let node = caller(&ctx)?;
                if req.updates.len() > MAX_STATUS_UPDATES {
                    return Err(Status::new(
                        Code::InvalidArgument,
                        format!(
                            "{} status updates in one call; at most {MAX_STATUS_UPDATES}",
                            req.updates.len()
                        ),
                    ));
                }
                let d = target.leader()?;
                let batch = StatusBatch {
                    node_id: Some(node),
                    updates: req.updates,
                };
                let refused = d
                    .report_remote(node, req.session_id, batch)
                    .map_err(to_status)?;
                Ok(StatusResponse { refused })
            }
        })
}

async fn serve_session(
    target: DispatcherTarget,
    ctx: CallContext,
    req: SessionRequest,
    mut out: ItemSender<SessionMessage>,
) -> Result<(), Status> {
    let node = caller(&ctx)?;
    let mut leadership = target.leadership.clone();
    let now = leadership.borrow_and_update().clone();
    let dispatcher = match now {
        Leadership::Leader(d) => d,
        Leadership::Follower { leader } => {
            out.send(&SessionMessage::NotLeader { leader }).await?;
            return Ok(());
        }
    };
    let remote = dispatcher
        .open_remote(NodeRegistration {
            node_id: node,
            description: req.description,
        })
        .await
        .map_err(to_status)?;
    let mut view = target.view.clone();
    let info = |v: &ClusterView, period: Duration| SessionInfo {
        session_id: remote.id,
        node_id: node,
        managers: v.managers.clone(),
        root_ca: v.root_ca.clone(),
        heartbeat_period: period,
    };
    let first = {
        let v = view.borrow_and_update();
        info(&v, remote.period)
    };
    out.send(&SessionMessage::Info(first)).await?;
    let mut view_open = true;
    loop {
        let view_changed = async {
            if view_open {
                view.changed().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            set = remote.session.next_assignments() => match set {
                Ok(set) => out.send(&SessionMessage::Assignments(set)).await?,
                Err(e) => return Err(Status::new(Code::Unavailable, e.to_string())),
            },
            changed = view_changed => {
                if changed.is_err() {
                    // The provider is gone: keep serving without further updates.
                    view_open = false;
                    continue;
                }
                let current = {
                    let v = view.borrow_and_update();
                    info(&v, remote.period)
                };
                out.send(&SessionMessage::Info(current)).await?;
            }
            _ = leadership.changed() => {
                return Err(Status::new(
                    Code::Unavailable,
                    "this manager's leadership changed; open a new session",
                ));
            }
        }
    }
}

/// Tunables of [`NetDispatcher`] (SwarmKit's agent: 5 s RPC timeout, 100 ms .. 8 s backoff).
#[derive(Clone, Debug)]
pub struct NetDispatcherOptions {
    /// Longest wait for one call (opening a session up to its first item, a heartbeat, a status
    /// update).
    pub rpc_timeout: Duration,
    /// Wait before opening a session after a failed attempt; doubled per failure...
    pub backoff_min: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// "Not the leader, go to X" answers followed in one `open_session`.
    pub max_redirects: usize,
    /// Draws the weighted choice of manager (the operating system's RNG by default).
    pub entropy: swarm_core::Entropy,
}

impl Default for NetDispatcherOptions {
    fn default() -> Self {
        NetDispatcherOptions {
            rpc_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(8),
            max_redirects: 3,
            entropy: swarm_raft::entropy::os(),
        }
    }
}

struct NetInner {
    client: Arc<Client>,
    options: NetDispatcherOptions,
    managers: Mutex<Vec<WeightedManager>>,
    failures: Mutex<u32>,
    info: watch::Sender<Option<SessionInfo>>,
}

impl NetInner {
    fn managers(&self) -> MutexGuard<'_, Vec<WeightedManager>> {
        self.managers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn learn(&self, info: SessionInfo) {
        if !info.managers.is_empty() {
            *self.managers() = info.managers.clone();
        }
        self.info.send_replace(Some(info));
    }

    fn add_manager(&self, m: &WeightedManager) {
        let mut ms = self.managers();
        if !ms.iter().any(|x| x.addr == m.addr) {
            ms.push(m.clone());
        }
    }
}

/// The agent's [`Dispatcher`] over QUIC: see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct NetDispatcher {
    inner: Arc<NetInner>,
}

impl std::fmt::Debug for NetDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetDispatcher")
            .field("managers", &*self.inner.managers())
            .finish()
    }
}

impl NetDispatcher {
    /// A dispatcher client calling through `client` (whose certificate is the node's), starting
    /// from `seeds` (the join address, or the manager list persisted from an earlier session).
    pub fn new(
        client: Arc<Client>,
        seeds: Vec<WeightedManager>,
        options: NetDispatcherOptions,
    ) -> NetDispatcher {
        NetDispatcher {
            inner: Arc::new(NetInner {
                client,
                options,
                managers: Mutex::new(seeds),
                failures: Mutex::new(0),
                info: watch::channel(None).0,
            }),
        }
    }

    /// The latest session info (manager list, root CA), `None` before the first session: persist
    /// the managers, pick up root rotations.
    pub fn session_info(&self) -> watch::Receiver<Option<SessionInfo>> {
        self.inner.info.subscribe()
    }

    /// The managers this client currently knows.
    pub fn managers(&self) -> Vec<WeightedManager> {
        self.inner.managers().clone()
    }

    /// The managers it knows, as RPC peers (the certificate renewal and the mesh view follow
    /// them).
    pub fn manager_peers(&self) -> Vec<Peer> {
        self.inner
            .managers()
            .iter()
            .map(|m| Peer {
                addr: m.addr,
                role: Role::Manager,
                node_id: m.node_id,
            })
            .collect()
    }

    fn pick(&self, tried: &HashSet<SocketAddr>) -> Option<WeightedManager> {
        use rand_core::RngCore;
        let ms = self.inner.managers();
        let candidates: Vec<&WeightedManager> =
            ms.iter().filter(|m| !tried.contains(&m.addr)).collect();
        let total: u64 = candidates.iter().map(|m| u64::from(m.weight.max(1))).sum();
        if total == 0 {
            return None;
        }
        let mut r = self.inner.options.entropy.clone().next_u64() % total;
        for m in candidates {
            let w = u64::from(m.weight.max(1));
            if r < w {
                return Some(m.clone());
            }
            r -= w;
        }
        None
    }

    async fn try_open(
        &self,
        m: &WeightedManager,
        registration: &NodeRegistration,
    ) -> Result<Opened, DispatchError> {
        let peer = Peer {
            addr: m.addr,
            role: Role::Manager,
            node_id: m.node_id,
        };
        let req = SessionRequest {
            description: registration.description.clone(),
        };
        let client = &self.inner.client;
        let open = async {
            let mut stream = client.server_streaming(&peer, &SESSION, &req, None).await?;
            let first = stream.next().await;
            Ok::<_, RpcError>((stream, first))
        };
        let (stream, first) = tokio::time::timeout(self.inner.options.rpc_timeout, open)
            .await
            .map_err(|_| DispatchError::Unreachable {
                reason: format!("manager {} did not open a session in time", m.addr),
            })?
            .map_err(from_rpc)?;
        let info = match first {
            Some(Ok(SessionMessage::Info(info))) => info,
            Some(Ok(SessionMessage::NotLeader { leader })) => return Ok(Opened::Redirect(leader)),
            Some(Ok(SessionMessage::Assignments(_))) => {
                return Err(DispatchError::Unreachable {
                    reason: format!("manager {} sent assignments before session info", m.addr),
                })
            }
            Some(Err(e)) => return Err(from_rpc(e)),
            None => {
                return Err(DispatchError::Unreachable {
                    reason: format!("manager {} ended the session at once", m.addr),
                })
            }
        };
        if info.node_id != registration.node_id {
            return Err(DispatchError::Refused {
                reason: format!(
                    "the manager sees this node as {}, not {}: the certificate names another node",
                    info.node_id, registration.node_id
                ),
            });
        }
        let id = info.session_id;
        let period = info.heartbeat_period;
        tracing::debug!(manager = %m.addr, session = id, "dispatcher session opened");
        self.inner.learn(info);
        let (dead_tx, dead) = watch::channel(None);
        let dead_tx = Arc::new(dead_tx);
        let heartbeat = tokio::spawn(heartbeats(
            self.inner.clone(),
            peer,
            id,
            period,
            dead_tx.clone(),
        ));
        Ok(Opened::Session(Arc::new(NetSession {
            inner: self.inner.clone(),
            peer,
            id,
            stream: tokio::sync::Mutex::new(stream),
            dead,
            dead_tx,
            heartbeat,
        })))
    }
}

enum Opened {
    Session(Arc<NetSession>),
    Redirect(Option<WeightedManager>),
}

fn from_rpc(e: RpcError) -> DispatchError {
    match e {
        RpcError::Authentication(why) | RpcError::PermissionDenied(why) => {
            DispatchError::Refused { reason: why }
        }
        RpcError::Status(s) if s.code == Code::FailedPrecondition => DispatchError::SessionClosed,
        other => DispatchError::Unreachable {
            reason: other.to_string(),
        },
    }
}

async fn heartbeats(
    inner: Arc<NetInner>,
    peer: Peer,
    session_id: u64,
    mut period: Duration,
    dead: Arc<watch::Sender<Option<DispatchError>>>,
) {
    loop {
        tokio::time::sleep(period).await;
        let answer = inner
            .client
            .unary(
                &peer,
                &HEARTBEAT,
                &HeartbeatRequest { session_id },
                inner.options.rpc_timeout,
            )
            .await;
        match answer {
            Ok(r) => period = r.period,
            Err(e) => {
                tracing::info!(manager = %peer.addr, error = %e, "heartbeat failed: ending the session");
                dead.send_replace(Some(from_rpc(e)));
                return;
            }
        }
    }
}

#[async_trait]
impl Dispatcher for NetDispatcher {
    async fn open_session(
        &self,
        registration: NodeRegistration,
    ) -> Result<Arc<dyn Session>, DispatchError> {
        let failures = *self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if failures > 0 {
            let o = &self.inner.options;
            let wait = o
                .backoff_min
                .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
                .min(o.backoff_max);
            tokio::time::sleep(wait).await;
        }
        let mut tried = HashSet::new();
        let mut next: Option<WeightedManager> = None;
        let mut redirects = 0;
        let mut last = DispatchError::Unreachable {
            reason: "no manager address is known".into(),
        };
        while let Some(m) = next.take().or_else(|| self.pick(&tried)) {
            tried.insert(m.addr);
            match self.try_open(&m, &registration).await {
                Ok(Opened::Session(s)) => {
                    *self
                        .inner
                        .failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = 0;
                    return Ok(s);
                }
                Ok(Opened::Redirect(Some(leader)))
                    if redirects < self.inner.options.max_redirects && leader.addr != m.addr =>
                {
                    tracing::debug!(from = %m.addr, to = %leader.addr, "following the leader");
                    redirects += 1;
                    self.inner.add_manager(&leader);
                    tried.remove(&leader.addr);
                    next = Some(leader);
                }
                Ok(Opened::Redirect(_)) => {
                    last = DispatchError::Unreachable {
                        reason: format!("manager {} is not the leader and names none", m.addr),
                    };
                }
                Err(e @ DispatchError::Refused { .. }) => {
                    self.note_failure();
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(manager = %m.addr, error = %e, "session not opened; trying another manager");
                    last = e;
                }
            }
        }
        self.note_failure();
        Err(last)
    }
}

impl NetDispatcher {
    fn note_failure(&self) {
        let mut f = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *f = f.saturating_add(1);
    }
}

struct NetSession {
    inner: Arc<NetInner>,
    peer: Peer,
    id: u64,
    stream: tokio::sync::Mutex<Streaming<SessionMessage>>,
    dead: watch::Receiver<Option<DispatchError>>,
    dead_tx: Arc<watch::Sender<Option<DispatchError>>>,
    heartbeat: JoinHandle<()>,
}

impl NetSession {
    fn end(&self, e: DispatchError) -> DispatchError {
        self.heartbeat.abort();
        self.dead_tx.send_if_modified(|d| {
            if d.is_none() {
                *d = Some(e.clone());
                true
            } else {
                false
            }
        });
        e
    }

    fn ended(&self) -> Option<DispatchError> {
        self.dead.borrow().clone()
    }
}

#[async_trait]
impl Session for NetSession {
    async fn next_assignments(&self) -> Result<AssignmentSet, DispatchError> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        let mut stream = self.stream.lock().await;
        let mut dead = self.dead.clone();
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = dead.wait_for(|d| d.is_some()) => {
                    return Err(self.ended().unwrap_or(DispatchError::SessionClosed));
                }
            };
            match item {
                Some(Ok(SessionMessage::Assignments(set))) => return Ok(set),
                Some(Ok(SessionMessage::Info(info))) => self.inner.learn(info),
                Some(Ok(SessionMessage::NotLeader { .. })) | None => {
                    return Err(self.end(DispatchError::SessionClosed))
                }
                Some(Err(e)) => {
                    tracing::debug!(manager = %self.peer.addr, error = %e, "session stream ended");
                    return Err(self.end(DispatchError::SessionClosed));
                }
            }
        }
    }

    async fn report(&self, batch: StatusBatch) -> Result<(), DispatchError> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        for chunk in batch.updates.chunks(MAX_STATUS_UPDATES) {
            let req = StatusRequest {
                session_id: self.id,
                updates: chunk.to_vec(),
            };
            let answer = self
                .inner
                .client
                .unary(
                    &self.peer,
                    &UPDATE_STATUS,
                    &req,
                    self.inner.options.rpc_timeout,
                )
                .await;
            match answer {
                Ok(r) if r.refused.is_empty() => {}
                Ok(r) => tracing::warn!(
                    refused = ?r.refused,
                    "the dispatcher refused status updates for tasks not assigned to this node"
                ),
                Err(e) => return Err(self.end(from_rpc(e))),
            }
        }
        Ok(())
    }
}

impl Drop for NetSession {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}
