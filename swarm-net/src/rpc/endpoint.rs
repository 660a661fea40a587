//! [`ClientEndpoint`]: one UDP socket (one quinn endpoint) carrying the connections of many client
//! identities.
//!
//! A [`Client`] made with [`Client::bind`] owns a whole quinn endpoint: a socket, a driver task
//! and a receive buffer sized for GRO batches (about 2.9 MiB on Linux with quinn 0.11), which is
//! fine for one node and far too much for a process that plays thousands of nodes (a test
//! harness, a simulator, a gateway). quinn lets every connection carry its own client
//! configuration (`Endpoint::connect_with`), and swarm-net's TLS client configuration carries the
//! node's certificate, so the endpoint itself belongs to no identity: [`ClientEndpoint::client`]
//! hands out one [`Client`] per identity, all on the same socket. The server tells them apart by
//! their certificates (one QUIC connection each, told apart by connection id, not by address);
//! nothing about authentication or authorization changes.
//!
//! A client endpoint accepts no connections and has no stateless-reset key of its own (only a
//! server needs one that survives restarts). Closing it ([`ClientEndpoint::close`]) closes every
//! client's connections; dropping a [`Client`] leaves the endpoint and the other clients alone.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::rpc::client::Client;
use crate::rpc::config::RpcConfig;
use crate::rpc::error::RpcError;
use crate::rpc::tls::TlsState;

/// A client-only quinn endpoint shared by the [`Client`]s of many identities; cheap to clone
/// (clones share the socket).
#[derive(Clone)]
pub struct ClientEndpoint {
    endpoint: quinn::Endpoint,
    config: RpcConfig,
}

impl std::fmt::Debug for ClientEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientEndpoint")
            .field("local_addr", &self.endpoint.local_addr().ok())
            .field("open_connections", &self.endpoint.open_connections())
            .finish()
    }
}

impl ClientEndpoint {
    /// A client endpoint on a new UDP socket bound to `addr` (port 0 for any), with `config`'s
    /// socket buffers. Every client it hands out uses `config`'s timeouts and limits.
    pub fn bind(addr: SocketAddr, config: RpcConfig) -> Result<ClientEndpoint, RpcError> {
        let endpoint = config
            .endpoint_with(addr, None, quinn::EndpointConfig::default())
            .map_err(|e| RpcError::Endpoint(format!("cannot bind {addr}: {e}")))?;
        Ok(ClientEndpoint { endpoint, config })
    }

    /// A client on this endpoint that presents `tls`'s certificate (or none, for a joining node).
    /// Its connections are its own: two clients calling the same peer hold two connections, and
    /// the peer sees two identities.
    pub fn client(&self, tls: Arc<TlsState>) -> Result<Client, RpcError> {
        Client::on(self.endpoint.clone(), tls, self.config.clone())
    }

    /// The address of the shared socket.
    pub fn local_addr(&self) -> Result<SocketAddr, RpcError> {
        self.endpoint
            .local_addr()
            .map_err(|e| RpcError::Endpoint(e.to_string()))
    }

    /// Connections open on the endpoint, over all its clients.
    pub fn open_connections(&self) -> usize {
        self.endpoint.open_connections()
    }

    /// Closes every connection of every client made from this endpoint: their calls in flight
    /// fail and later calls are refused ([`RpcError::Endpoint`]). The socket is released once the
    /// last handle (this, its clones and its clients) is dropped.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"endpoint closed");
    }
}
