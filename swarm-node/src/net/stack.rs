//! The node's one swarm listener: a swarm-net QUIC [`Server`] on `--listen-addr` serving a
//! [`Router`] the pieces add their routes to (raft, membership, CA, dispatcher), next to the
//! [`Client`] this node calls with (its own UDP socket: raft's transport needs the client before
//! the listener can serve the manager it belongs to), both with one shared [`TlsState`] (a
//! renewed certificate or a rotated root is installed once, with [`TlsState::update`], and both
//! directions use it at the next handshake).
//!
//! The router is fixed when the listener starts, so every route finds its current target through
//! a shared slot ([`ManagerSlot`] for what lives in the manager): the listener outlives manager
//! restarts (unlock, promotion, force-new-cluster), and a call arriving while no manager runs is
//! answered `Unavailable` by the route.
//!
//! Lifecycle: started with the manager (or the worker) and stopped first on shutdown or leave,
//! bounded by [`LISTENER_STOP`] (peers see the connection close at once rather than at their
//! idle timeout).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use swarm_core::{Id, SharedStore};
use swarm_net::rpc::{Client, Router, RpcConfig, RpcError, Server, ServerOptions, TlsState};
use swarm_raft::RaftNode;

/// Longest the listener's close may wait for peers to see it.
pub const LISTENER_STOP: Duration = Duration::from_secs(2);

/// What the routes of a manager need from the running manager.
#[derive(Clone)]
pub struct ManagerHandle {
    /// This manager's raft node.
    pub raft: RaftNode,
    /// The replicated store.
    pub store: SharedStore,
    /// This node's id.
    pub node_id: Id,
}

impl std::fmt::Debug for ManagerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerHandle")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The running manager, as the listener's routes see it: empty while none runs (a worker, a
/// locked node, a manager restarting).
#[derive(Clone, Debug, Default)]
pub struct ManagerSlot(Arc<RwLock<Option<ManagerHandle>>>);

impl ManagerSlot {
    /// The current manager, if one runs.
    pub fn get(&self) -> Option<ManagerHandle> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs (or with `None` removes) the current manager.
    pub fn set(&self, handle: Option<ManagerHandle>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = handle;
    }
}

/// The node's listener and client. See the module docs.
pub struct NetStack {
    server: Server,
    client: Arc<Client>,
    tls: Arc<TlsState>,
    local: SocketAddr,
}

impl std::fmt::Debug for NetStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetStack")
            .field("local", &self.local)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl NetStack {
    /// Binds `listen` and serves `router` with the credentials in `tls`, next to `client`.
    pub fn start(
        listen: SocketAddr,
        tls: Arc<TlsState>,
        client: Arc<Client>,
        config: &RpcConfig,
        router: Router,
        options: ServerOptions,
    ) -> Result<NetStack, RpcError> {
        let server = Server::bind(listen, tls.clone(), config, router, options)?;
        let local = server.local_addr()?;
        tracing::info!(%local, "swarm listener started");
        Ok(NetStack {
            server,
            client,
            tls,
            local,
        })
    }

    /// The client for this node's own calls (raft transport, joins, dispatcher sessions).
    pub fn caller(&self) -> &Arc<Client> {
        &self.client
    }

    /// The credentials both directions use.
    pub fn tls(&self) -> &Arc<TlsState> {
        &self.tls
    }

    /// The address the listener is bound to (the port resolved when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A client for `tls` on its own UDP socket: any port of `ip` (the listen address's, so a
    /// node listening on loopback calls from loopback).
    pub fn client(
        tls: Arc<TlsState>,
        config: &RpcConfig,
        ip: std::net::IpAddr,
    ) -> Result<Arc<Client>, RpcError> {
        Ok(Arc::new(Client::bind(
            SocketAddr::new(ip, 0),
            tls,
            config.clone(),
        )?))
    }

    /// Closes every connection and stops accepting, waiting at most [`LISTENER_STOP`].
    pub async fn stop(self) {
        self.server.shutdown(LISTENER_STOP).await;
        tracing::info!(local = %self.local, "swarm listener stopped");
    }
}
