//! The routing mesh across hosts, on the node-to-node QUIC connections: the methods every node
//! serves and calls, and the per-peer bounds on its streams.
//!
//! - `mesh.v1.routes` (server streaming, any node of the cluster): a manager's mesh view, the
//!   full view first, then the ports that changed ([`crate::mesh::ViewUpdate`]). Served only
//!   by a node whose mesh is fed from a store (a manager); every other node subscribes to one
//!   manager (see `mesh::driver::run_remote`).
//! - `mesh.v1.connect` (duplex, any node of the cluster): "connect me to task T behind
//!   published port P". The receiving node accepts only if T is, in its own view, a backend of
//!   P running on this node (desired and observed running, healthy); it connects to the task's
//!   address and target port itself (the caller never names an address), then, for a TCP port,
//!   bytes are copied both ways with half-close passed on; for a UDP port the stream carries one
//!   client flow, each datagram a length-prefixed frame, relayed through a socket connected to
//!   the task (`mesh::datagram`). A stream naming a service instead carries a connection to
//!   that service's VIP (`mesh::vip`): accepted only if T is, in the receiving node's own view, a
//!   running task of that service on this node; it connects to T on the port the client
//!   connected to on the VIP.
//!
//! # Policy
//! - A node opens at most [`MeshPeers::max_streams`] mesh streams to one peer at once (the QUIC
//!   connection allows [`crate::net::node::rpc_config`]'s `max_concurrent_calls`, shared with
//!   raft and the dispatcher); a connection that finds no free slot within the connect timeout
//!   tries its next backend.
//! - A lost peer fails the streams through it, and only those: their client connections close.
//!
//! # What it does not do
//! No UDP to VIPs, no SCTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_core::objects::service::Protocol;
use swarm_core::Id;
use swarm_net::rpc::{
    Access, CallContext, Client, Code, Duplex, DuplexCall, ItemSender, Peer, RecvStream, Router,
    SendStream, ServerOptions, ServerStreaming, Status, TlsState,
};
use swarm_net::Role;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::mesh::{Backend, MeshConfig, MeshNode, MeshSource, PortKey, RoutingMesh, ViewUpdate};
use crate::net::dispatch::NetDispatcher;
use crate::net::stack::NetStack;

/// The mesh view stream. The request is empty; items are at most 16 MiB (a full view of
/// ~200,000 backends).
pub const MESH_ROUTES: ServerStreaming<(), ViewUpdate> =
    ServerStreaming::new("mesh.v1.routes", Access::Node, 16, 16 << 20);

/// A byte stream to a task on the receiving node.
pub const MESH_CONNECT: Duplex<MeshConnect> = Duplex::new("mesh.v1.connect", Access::Node, 256);

/// The header of a `mesh.v1.connect` stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshConnect {
    /// Without `service`: the published port the client connected to. With it: the port the
    /// client connected to on the service's VIP (the task's port; TCP or UDP).
    pub key: PortKey,
    /// The task chosen for it, which must run on the receiving node.
    pub task: Id,
    /// A connection to this service's VIP: the task must be a running task of it.
    pub service: Option<Id>,
}

/// The node's routing mesh, as the listener's routes see it (empty while none runs).
#[derive(Clone, Debug, Default)]
pub struct MeshSlot(Arc<RwLock<Option<Arc<RoutingMesh>>>>);

impl MeshSlot {
    /// The current mesh.
    pub fn get(&self) -> Option<Arc<RoutingMesh>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs (or with `None` removes) the current mesh.
    pub fn set(&self, mesh: Option<Arc<RoutingMesh>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = mesh;
    }
}

fn unavailable() -> Status {
    Status::new(Code::Unavailable, "no routing mesh runs on this node")
}

/// Adds the mesh methods, served by the mesh in `slot`.
pub fn mesh_routes(router: Router, slot: MeshSlot) -> Router {
    let s = slot.clone();
    router
        .server_streaming(
            &MESH_ROUTES,
            move |_ctx: CallContext, (), out: ItemSender<ViewUpdate>| {
                let mesh = s.get();
                async move {
                    let mesh = mesh.ok_or_else(unavailable)?;
                    mesh.serve_view(out).await
                }
            },
        )
        .duplex(
            &MESH_CONNECT,
            move |ctx: CallContext, header: MeshConnect, call: DuplexCall| {
                let mesh = slot.get();
                async move {
                    let Some(mesh) = mesh else {
                        call.refuse(unavailable()).await;
                        return;
                    };
                    serve_connect(&mesh, ctx, header, call).await;
                }
            },
        )
}

/// The receiving side of `mesh.v1.connect`.
async fn serve_connect(mesh: &RoutingMesh, ctx: CallContext, h: MeshConnect, call: DuplexCall) {
    let found = match h.service {
        Some(_) if h.key.protocol == Protocol::Sctp => Err("VIPs carry no SCTP".to_string()),
        Some(service) => mesh
            .local_service_backend(&service, &h.task, h.key.port)
            .map(|addr| Backend {
                task: h.task,
                node: None,
                addr,
                node_addr: None,
                node_manager: false,
            }),
        None => mesh.local_backend(h.key, &h.task),
    };
    let backend = match found {
        Ok(b) => b,
        Err(why) => {
            tracing::debug!(remote = %ctx.remote, key = %h.key, task = %h.task, "routing mesh: stream refused: {why}");
            call.refuse(Status::new(Code::NotFound, why)).await;
            return;
        }
    };
    let task = match connect_task(mesh, &h, backend.addr).await {
        Ok(t) => t,
        Err(why) => {
            call.refuse(Status::new(Code::Unavailable, why)).await;
            return;
        }
    };
    let Ok((send, recv)) = call.accept().await else {
        return;
    };
    match task {
        TaskConn::Tcp(task) => mesh.pipe_stream(task, send, recv).await,
        TaskConn::Udp(task) => mesh.pipe_datagrams(task, send, recv).await,
    }
}

/// The receiving node's connection to the task a stream names.
enum TaskConn {
    Tcp(TcpStream),
    /// A socket connected to the task: the stream carries one client flow's datagrams.
    Udp(UdpSocket),
}

/// Connects to `task` at `addr` (TCP within the mesh's connect timeout; UDP at once); why not.
async fn connect_task(
    mesh: &RoutingMesh,
    h: &MeshConnect,
    addr: SocketAddr,
) -> Result<TaskConn, String> {
    if h.key.protocol == Protocol::Udp {
        return crate::mesh::connect_udp(addr)
            .map(TaskConn::Udp)
            .map_err(|e| format!("task {}: no socket to it: {e}", h.task));
    }
    let timeout = mesh.config().connect_timeout;
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(TaskConn::Tcp(s))
        }
        Ok(Err(e)) => Err(format!("task {} refused the connection: {e}", h.task)),
        Err(_) => Err(format!("task {} did not answer within {timeout:?}", h.task)),
    }
}

/// How a node opens mesh streams to the others: its RPC client and a bound per peer.
pub struct MeshPeers {
    client: Arc<Client>,
    max_streams: usize,
    slots: Mutex<HashMap<Id, Arc<Semaphore>>>,
}

impl std::fmt::Debug for MeshPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshPeers")
            .field("max_streams", &self.max_streams)
            .finish_non_exhaustive()
    }
}

/// Default of [`MeshPeers::max_streams`]: half of a connection's concurrent calls, leaving the
/// rest to raft, the dispatcher and logs.
pub const DEFAULT_MAX_STREAMS: usize = 64;

/// An open mesh stream: its two halves and its slot among the peer's streams.
pub type MeshStream = (SendStream, RecvStream, OwnedSemaphorePermit);

impl MeshPeers {
    /// Streams through `client`, at most `max_streams` to one peer at once.
    pub fn new(client: Arc<Client>, max_streams: usize) -> MeshPeers {
        MeshPeers {
            client,
            max_streams: max_streams.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The most streams open to one peer at once.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// Opens a stream to `backend`'s node for a connection on `key`, waiting at most `timeout`
    /// for a slot, the connection and the peer's accept.
    pub async fn open(
        &self,
        key: PortKey,
        backend: &Backend,
        timeout: Duration,
    ) -> Result<MeshStream, String> {
        self.open_header(key, None, backend, timeout).await
    }

    /// Opens a stream to `backend`'s node for a connection to `service`'s VIP on port
    /// `key.port` (TCP or UDP), with the same bounds as [`MeshPeers::open`].
    pub async fn open_service(
        &self,
        service: Id,
        key: PortKey,
        backend: &Backend,
        timeout: Duration,
    ) -> Result<MeshStream, String> {
        self.open_header(key, Some(service), backend, timeout).await
    }

    async fn open_header(
        &self,
        key: PortKey,
        service: Option<Id>,
        backend: &Backend,
        timeout: Duration,
    ) -> Result<MeshStream, String> {
        let (Some(node), Some(addr)) = (backend.node, backend.node_addr) else {
            return Err("its node reported no swarm address".into());
        };
        let sem = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .entry(node)
                .or_insert_with(|| Arc::new(Semaphore::new(self.max_streams)))
                .clone()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let permit = tokio::time::timeout_at(deadline, sem.acquire_owned())
            .await
            .map_err(|_| format!("all {} streams to node {node} are busy", self.max_streams))?
            .map_err(|_| "closed".to_string())?;
        let peer = Peer {
            addr,
            role: if backend.node_manager {
                Role::Manager
            } else {
                Role::Worker
            },
            node_id: Some(node),
        };
        let header = MeshConnect {
            key,
            task: backend.task,
            service,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (send, recv) = self
            .client
            .open_duplex(&peer, &MESH_CONNECT, &header, left)
            .await
            .map_err(|e| e.to_string())?;
        Ok((send, recv, permit))
    }

    /// The client the streams and the view subscription use.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }
}

/// A worker's routing mesh: fed from the managers its dispatcher knows, with a listener on
/// `listen` that serves only the mesh methods (a worker serves nothing else).
#[derive(Debug)]
pub struct WorkerMesh<'a> {
    /// Where the listener binds (the node's `--listen-addr`).
    pub listen: SocketAddr,
    /// The node's advertised address (`host:port`), for the host when `listen` is a wildcard.
    pub advertised: &'a str,
    /// This node.
    pub node: Id,
    /// The mesh's settings.
    pub config: MeshConfig,
    /// Where the listener's routes find the mesh (set here).
    pub slot: MeshSlot,
    /// The listener's transport settings (the daemon's `net::node::rpc_config`).
    pub rpc: swarm_net::rpc::RpcConfig,
}

impl WorkerMesh<'_> {
    /// Starts the listener (a failure is logged: the node then forwards to other nodes' tasks
    /// but cannot be reached for its own) and the mesh. Returns the mesh, the listener and the
    /// address the other nodes reach the listener on, to report under
    /// [`crate::mesh::MESH_ADDR_LABEL`].
    pub fn start(
        self,
        tls: Arc<TlsState>,
        client: Arc<Client>,
        dispatcher: NetDispatcher,
    ) -> (Arc<RoutingMesh>, Option<NetStack>, Option<SocketAddr>) {
        let listen = self.listen;
        let stack = match NetStack::start(
            listen,
            tls,
            client.clone(),
            &self.rpc,
            mesh_routes(Router::new(), self.slot.clone()),
            ServerOptions::default(),
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(%listen, error = %e, "the swarm listener did not start: other nodes cannot reach this node's tasks through the routing mesh");
                None
            }
        };
        let reachable = stack
            .as_ref()
            .map(|s| reachable_addr(s.local_addr(), self.advertised));
        let managers = Arc::new(move || dispatcher.manager_peers());
        let mesh = RoutingMesh::start_node(
            MeshSource::Managers {
                client: client.clone(),
                managers,
            },
            self.config,
            Some(MeshNode {
                id: self.node,
                peers: Arc::new(MeshPeers::new(client, DEFAULT_MAX_STREAMS)),
            }),
        );
        self.slot.set(Some(mesh.clone()));
        (mesh, stack, reachable)
    }
}

/// Where the other nodes reach a listener bound to `bound`: that address, or with a wildcard
/// bind the advertised host (`advertised`, `host:port`) with the bound port.
fn reachable_addr(bound: SocketAddr, advertised: &str) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    advertised
        .parse::<SocketAddr>()
        .map(|a| SocketAddr::new(a.ip(), bound.port()))
        .unwrap_or(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_address_of_a_listener() {
        let bound: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        assert_eq!(reachable_addr(bound, "10.9.9.9:2377"), bound);
        let wildcard: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(
            reachable_addr(wildcard, "10.9.9.9:2377"),
            "10.9.9.9:4000".parse::<SocketAddr>().unwrap()
        );
        // An advertised address that is no IP:port: the bound one, as good as it gets.
        assert_eq!(reachable_addr(wildcard, "host.example:2377"), wildcard);
    }
}
