//! [`RpcConfig`]: timeouts, keep-alive, backoff and stream limits, and the quinn configurations
//! built from them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::rpc::tls::{TlsError, TlsState, ALPN};

/// Transport settings shared by servers and clients.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// A connection with no packet from its peer for this long is closed. Well under the 15 s after
    /// which a silent node is marked down, so a dead peer is noticed (and a new connection tried)
    /// before the cluster gives up on it. This is what this side's clients ask for; QUIC takes
    /// the shorter of the two ends' values, so a server grants it up to `server_idle_timeout`.
    pub idle_timeout: Duration,
    /// The idle timeout this side's server offers: the longest a client may ask for. A client
    /// that asks for less (`idle_timeout` on its side) gets what it asked for, so one server can
    /// serve peers that must notice a silent end within seconds (managers between themselves) and
    /// peers whose own calls are their liveness traffic (workers' heartbeats, see
    /// `keep_alive`). Equal to `idle_timeout` by default.
    pub server_idle_timeout: Duration,
    /// How often an idle connection's client sends a keep-alive (a fraction of `idle_timeout`, so
    /// one lost packet does not close a healthy connection). Servers send none (see `transport`).
    /// quinn re-arms it on every packet received, so a client whose own calls come more often
    /// than this (a worker's heartbeats) sends none at all.
    pub keep_alive: Duration,
    /// Longest wait for a handshake when the call's own deadline is later.
    pub connect_timeout: Duration,
    /// First wait after a failed connection attempt; doubled on every further failure.
    pub backoff_initial: Duration,
    /// Longest wait between connection attempts.
    pub backoff_max: Duration,
    /// Calls a peer may have open on one connection at once (QUIC bidirectional streams). quinn
    /// keeps an entry per permitted stream in every connection, so this is also a memory figure:
    /// 1,024 cost ~120 KiB per idle connection on a manager, 128 cost ~45 KiB (docs/BENCHMARKS.md).
    pub max_concurrent_calls: u32,
    /// UDP socket receive and send buffer sizes asked of the kernel. A manager takes bursts of
    /// handshakes and heartbeats from thousands of workers; Linux's default (208 KiB) dropped
    /// datagrams in the 10,000-connection benchmark until handshakes timed out. The kernel caps
    /// an unprivileged request at `net.core.rmem_max` / `wmem_max`; a process with
    /// `CAP_NET_ADMIN` (the daemon runs as root) gets the size asked for regardless
    /// (`SO_RCVBUFFORCE` / `SO_SNDBUFFORCE` on Linux), as QUIC servers commonly need: 4 MiB
    /// overflowed on a 10,000-node leader (docs/BENCHMARKS.md, "Scale (issue 19)").
    pub socket_buffer: usize,
    /// The application protocol (TLS ALPN) this node speaks and accepts, [`ALPN`] (`swarm/1`) by
    /// default. An embedder whose messages depend on its own encodings (swarm-node: the store and
    /// raft formats) puts their versions here, so that two nodes that could not understand each
    /// other refuse each other at the handshake ([`crate::rpc::RpcError::ProtocolVersion`])
    /// instead of failing to decode later.
    pub alpn_protocol: Vec<u8>,
    /// Seeds quinn's endpoint RNG (`quinn::EndpointConfig::rng_seed`: packet-number skips,
    /// connection ids not derived from the node key, every connection's own RNG). `None` (the
    /// default) seeds it from the operating system; a deterministic simulation sets it.
    pub rng_seed: Option<[u8; 32]>,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            idle_timeout: Duration::from_secs(6),
            server_idle_timeout: Duration::from_secs(6),
            keep_alive: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_concurrent_calls: 128,
            socket_buffer: 4 << 20,
            alpn_protocol: ALPN.to_vec(),
            rng_seed: None,
        }
    }
}

impl RpcConfig {
    /// `keep_alive`: whether this side sends keep-alives. Only clients do: every connection has
    /// a client that pings it within `keep_alive` of silence, which keeps the server's idle timer
    /// from expiring too, so a server's own pings would only double the packets on every idle
    /// connection (a manager holds one per node: at 10,000 nodes its pings were thousands of
    /// packets a second; docs/BENCHMARKS.md, "Scale (issue 19)"). A dead client is still noticed
    /// by the idle timeout.
    /// `idle`: the idle timeout this side offers (`idle_timeout` for a client,
    /// `server_idle_timeout` for a server).
    fn transport(&self, idle: Duration, keep_alive: bool) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        // An out-of-range idle timeout (over 2^62 ms) falls back to quinn's default.
        if let Ok(idle) = quinn::IdleTimeout::try_from(idle) {
            t.max_idle_timeout(Some(idle));
        }
        t.keep_alive_interval(keep_alive.then_some(self.keep_alive));
        t.max_concurrent_bidi_streams(self.max_concurrent_calls.into());
        // RPC uses bidirectional streams only.
        t.max_concurrent_uni_streams(0u32.into());
        Arc::new(t)
    }

    /// The quinn server configuration for a node with credentials `tls`.
    pub fn server_config(&self, tls: &Arc<TlsState>) -> Result<quinn::ServerConfig, TlsError> {
        let mut tls_config = tls.server_config()?;
        tls_config.alpn_protocols = vec![self.alpn_protocol.clone()];
        let crypto = QuicServerConfig::try_from(tls_config)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(self.transport(self.server_idle_timeout, false));
        Ok(config)
    }

    /// The quinn client configuration for a node with credentials `tls`.
    pub fn client_config(&self, tls: &Arc<TlsState>) -> Result<quinn::ClientConfig, TlsError> {
        let mut tls_config = tls.client_config()?;
        tls_config.alpn_protocols = vec![self.alpn_protocol.clone()];
        let crypto = QuicClientConfig::try_from(tls_config)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport(self.idle_timeout, true));
        Ok(config)
    }

    /// A quinn endpoint on a UDP socket bound to `addr` with this configuration's socket buffers;
    /// `server` makes it accept connections.
    pub fn endpoint(
        &self,
        addr: SocketAddr,
        server: Option<quinn::ServerConfig>,
    ) -> std::io::Result<quinn::Endpoint> {
        self.endpoint_with(addr, server, quinn::EndpointConfig::default())
    }

    /// [`RpcConfig::endpoint`] with an endpoint configuration, normally
    /// [`TlsState::endpoint_config`] (keys that survive a restart). With feature `turmoil`, called
    /// inside a turmoil simulation it binds the current simulated host's UDP instead
    /// (`sim::endpoint_at`); outside one it binds a real socket, as without the feature.
    pub fn endpoint_with(
        &self,
        addr: SocketAddr,
        server: Option<quinn::ServerConfig>,
        mut endpoint_config: quinn::EndpointConfig,
    ) -> std::io::Result<quinn::Endpoint> {
        if self.rng_seed.is_some() {
            endpoint_config.rng_seed(self.rng_seed);
        }
        // Inside a turmoil simulation (feature `turmoil`), the socket is the simulated host's:
        // the same code path then runs on virtual time and the simulated network.
        #[cfg(feature = "turmoil")]
        if turmoil::in_simulation() {
            return crate::sim::endpoint_at(addr, server, endpoint_config);
        }
        let socket = std::net::UdpSocket::bind(addr)?;
        let state = quinn::udp::UdpSocketState::new((&socket).into())?;
        // Best effort: a smaller buffer than asked for is still a working socket.
        if let Err(e) = state.set_recv_buffer_size((&socket).into(), self.socket_buffer) {
            tracing::debug!(error = %e, "could not enlarge the UDP receive buffer");
        }
        if let Err(e) = state.set_send_buffer_size((&socket).into(), self.socket_buffer) {
            tracing::debug!(error = %e, "could not enlarge the UDP send buffer");
        }
        force_buffers(&socket, self.socket_buffer);
        quinn::Endpoint::new(
            endpoint_config,
            server,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
    }

    /// The wait before connection attempt number `failures + 1` (`failures` >= 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// Past `net.core.rmem_max` / `wmem_max` when the process may (`CAP_NET_ADMIN`): Linux's
/// `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE`, only when the plain request was capped. Without the
/// capability the socket keeps the capped size (logged once per socket at debug level).
#[cfg(target_os = "linux")]
fn force_buffers(socket: &std::net::UdpSocket, size: usize) {
    use rustix::net::sockopt;
    // Linux reports twice the size asked for (its bookkeeping overhead); less means capped.
    let capped = |got: std::io::Result<usize>| got.map(|g| g < size.saturating_mul(2));
    if capped(sockopt::socket_recv_buffer_size(socket).map_err(Into::into)).unwrap_or(false) {
        if let Err(e) = sockopt::set_socket_recv_buffer_size_force(socket, size) {
            tracing::debug!(error = %e, "UDP receive buffer capped by net.core.rmem_max");
        }
    }
    if capped(sockopt::socket_send_buffer_size(socket).map_err(Into::into)).unwrap_or(false) {
        if let Err(e) = sockopt::set_socket_send_buffer_size_force(socket, size) {
            tracing::debug!(error = %e, "UDP send buffer capped by net.core.wmem_max");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn force_buffers(_socket: &std::net::UdpSocket, _size: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = RpcConfig::default();
        let got: Vec<u64> = (1..=9).map(|n| c.backoff(n).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(c.backoff(u32::MAX), c.backoff_max);
    }

    #[test]
    fn defaults_notice_a_dead_peer_well_before_node_down() {
        let c = RpcConfig::default();
        assert!(c.idle_timeout <= Duration::from_secs(15) / 2);
        assert!(c.keep_alive * 3 <= c.idle_timeout);
        assert!(c.idle_timeout <= c.server_idle_timeout);
    }

    /// The receive buffer reaches the size asked for, past `net.core.rmem_max` when the process
    /// may (root: `SO_RCVBUFFORCE`); otherwise at least the capped size.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_receive_buffer_gets_the_size_asked_for_when_privileged() {
        let want = 16 << 20;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        force_buffers(&socket, want);
        let got = rustix::net::sockopt::socket_recv_buffer_size(&socket).unwrap();
        if got >= want {
            return;
        }
        // Capped: only right if this process may not force (no CAP_NET_ADMIN).
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        match rustix::net::sockopt::set_socket_recv_buffer_size_force(&probe, want) {
            Ok(()) => panic!("asked {want}, got {got}, yet SO_RCVBUFFORCE is permitted"),
            Err(e) => {
                eprintln!("SKIP: SO_RCVBUFFORCE not permitted here ({e}); the buffer stays capped");
                assert!(got > 0);
            }
        }
    }
}
