//! The QUIC settings of a node's RPC: idle timeouts, keep-alives and socket buffers, for
//! managers ([`rpc_config`]) and workers ([`worker_rpc_config`]). Re-exported by
//! [`super::node`].

use std::time::Duration;

use swarm_net::rpc::RpcConfig;

/// How long a silent connection lives: a manager killed without closing its connections is
/// noticed by its peers after this (a call forwarded to it fails then), so it bounds leader
/// failover; swarm-net's default is 6 s.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a worker's silent connection lives (what its client asks for; managers grant up to
/// this). A worker's heartbeats (every 5 s by default, ± 10 %) are the liveness traffic of its
/// connection to the manager, so its keep-alive ([`WORKER_KEEP_ALIVE`]) waits longer than one
/// period and fires only when the heartbeats stop or the operator sets a longer period. Under
/// the 15 s after which a silent node is marked down. A worker notices a dead manager by its
/// heartbeat's deadline, not by this.
pub const WORKER_IDLE_TIMEOUT: Duration = Duration::from_secs(14);

/// A worker's keep-alive: longer than the default heartbeat period (5.5 s at most with its
/// jitter), so that at rest a worker sends its heartbeats and nothing else. With the managers'
/// 1 s keep-alive, at rest the machine of the scale benchmark carried 2.6 datagrams per node per
/// second (5,000 nodes); with this one, 0.9 (10,000 nodes; docs/BENCHMARKS.md, "Scale (issue
/// 19)").
pub const WORKER_KEEP_ALIVE: Duration = Duration::from_secs(7);

/// The UDP socket buffers every node asks for: past Linux's usual `net.core.rmem_max` (4 MiB
/// here) when the daemon may (root), since a leader's one socket takes the datagrams of every
/// worker and of raft: at 4 MiB (8 MiB as the kernel counts it) it overflowed at 8,000 nodes.
pub const SOCKET_BUFFER: usize = 16 << 20;

/// The RPC settings every node of the cluster uses: swarm-net's, with [`IDLE_TIMEOUT`] (and a
/// keep-alive a third of it, so one lost packet does not close a healthy connection), and the
/// protocol version [`crate::net::raft::alpn_protocol`] (store and raft encodings): nodes of
/// releases that could not decode each other refuse at the handshake, joins included. Its
/// server grants a worker's longer idle timeout ([`worker_rpc_config`]); a manager's own
/// connections, asking for [`IDLE_TIMEOUT`], keep it.
pub fn rpc_config(entropy: &swarm_core::Entropy) -> RpcConfig {
    RpcConfig {
        rng_seed: Some(entropy.seed()),
        idle_timeout: IDLE_TIMEOUT,
        server_idle_timeout: WORKER_IDLE_TIMEOUT,
        keep_alive: IDLE_TIMEOUT / 3,
        socket_buffer: SOCKET_BUFFER,
        alpn_protocol: crate::net::raft::alpn_protocol(),
        ..RpcConfig::default()
    }
}

/// A worker's RPC settings: [`rpc_config`] with the worker's idle timeout and keep-alive
/// ([`WORKER_IDLE_TIMEOUT`], [`WORKER_KEEP_ALIVE`]) for the connections it opens.
pub fn worker_rpc_config(entropy: &swarm_core::Entropy) -> RpcConfig {
    RpcConfig {
        idle_timeout: WORKER_IDLE_TIMEOUT,
        keep_alive: WORKER_KEEP_ALIVE,
        ..rpc_config(entropy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::DispatcherOptions;

    /// At rest a worker's heartbeats keep its connection alive and its keep-alive never fires:
    /// the keep-alive waits longer than the longest default period (jitter included), and the
    /// idle timeout still ends a silent connection before the node would be marked down.
    #[test]
    fn worker_keep_alive_outlasts_a_heartbeat_period() {
        let period = DispatcherOptions::default().heartbeat_period;
        let longest = period + period / 10;
        let w = worker_rpc_config(&swarm_raft::entropy::os());
        assert!(w.keep_alive > longest, "{:?} <= {longest:?}", w.keep_alive);
        assert!(w.keep_alive * 2 <= w.idle_timeout);
        assert!(w.idle_timeout < Duration::from_secs(15));
        // Managers grant it, and keep their own short timeout between themselves.
        let m = rpc_config(&swarm_raft::entropy::os());
        assert!(m.server_idle_timeout >= w.idle_timeout);
        assert_eq!(m.idle_timeout, IDLE_TIMEOUT);
    }
}
