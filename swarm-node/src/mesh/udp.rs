//! The UDP side of the mesh: one socket per published port; per client address a session, i.e. a
//! socket connected to the backend chosen for that client, relaying datagrams both ways.
//!
//! A session ends after [`super::MeshConfig::udp_idle_timeout`] without a datagram either way,
//! when its backend answers with ICMP port unreachable (the next datagram opens a new session on
//! another backend), or when its backend leaves the route. At most
//! [`super::MeshConfig::max_udp_sessions`] live at once per port; datagrams from new clients
//! beyond that are dropped (UDP may drop) until sessions expire.
//!
//! Only this node's own tasks are UDP backends: datagrams are not carried to other nodes yet
//! (a UDP port answers on the nodes running one of its tasks).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::{AbortHandle, JoinSet};

use super::route::Route;
use super::{bind_retrying, is_local, Shared};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// Binds the published port's socket.
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = std::net::UdpSocket::bind(addr)?;
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock)
}

struct Session {
    sock: Arc<UdpSocket>,
    backend: SocketAddr,
    /// The route generation at which `backend` was last seen in the route.
    generation: u64,
    /// Milliseconds since `Relay::epoch` of the last datagram either way.
    last: Arc<AtomicU64>,
    task: AbortHandle,
}

struct Relay {
    route: Arc<Route>,
    listener: Arc<UdpSocket>,
    idle: Duration,
    max_sessions: usize,
    epoch: Instant,
    sessions: HashMap<SocketAddr, Session>,
    tasks: JoinSet<()>,
    /// This node: only its own tasks are UDP backends.
    node: Option<swarm_core::Id>,
}

/// Relays datagrams on `route`'s port until aborted (which ends every session with it).
pub(crate) async fn serve(route: Arc<Route>, shared: Arc<Shared>) {
    let addr = SocketAddr::new(shared.config.addr, route.key.port);
    let listener = bind_retrying(&route, shared.config.rebind_interval, || bind_udp(addr)).await;
    let mut relay = Relay {
        route,
        listener: Arc::new(listener),
        idle: shared.config.udp_idle_timeout,
        max_sessions: shared.config.max_udp_sessions.max(1),
        epoch: Instant::now(),
        sessions: HashMap::new(),
        tasks: JoinSet::new(),
        node: shared.node,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = match relay.listener.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(port = relay.route.key.port, error = %e, "routing mesh: udp receive failed");
                continue;
            }
        };
        while relay.tasks.try_join_next().is_some() {}
        relay.forward(&buf[..n], client);
    }
}

impl Relay {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends one client datagram to its session's backend, opening or replacing the session as
    /// needed.
    fn forward(&mut self, data: &[u8], client: SocketAddr) {
        let generation = self.route.generation();
        let now = self.now_ms();
        if let Some(s) = self.sessions.get_mut(&client) {
            let mut keep = !s.task.is_finished();
            if keep && s.generation != generation {
                keep = self.route.backends().iter().any(|b| b.addr == s.backend);
                s.generation = generation;
            }
            if keep {
                match s.sock.try_send(data) {
                    Ok(_) => {
                        s.last.store(now, Ordering::Relaxed);
                        return;
                    }
                    // Full socket buffer: drop the datagram, as the network would.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    // ICMP port unreachable from an earlier datagram: the backend is gone.
                    Err(_) => {}
                }
            }
            if let Some(s) = self.sessions.remove(&client) {
                s.task.abort();
            }
        }
        if self.sessions.len() >= self.max_sessions {
            self.sessions.retain(|_, s| !s.task.is_finished());
            if self.sessions.len() >= self.max_sessions {
                tracing::debug!(
                    port = self.route.key.port,
                    %client,
                    "routing mesh: too many udp sessions; datagram dropped"
                );
                return;
            }
        }
        let Some(s) = self.open(client, generation) else {
            return;
        };
        let _ = s.sock.try_send(data);
        self.sessions.insert(client, s);
    }

    /// A session to the next backend that a socket can be connected to.
    fn open(&mut self, client: SocketAddr, generation: u64) -> Option<Session> {
        let node = self.node;
        for backend in self.route.candidates().filter(|b| is_local(node, b)) {
            let backend = backend.addr;
            let local = match backend.ip() {
                IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            };
            let sock = match connected(local, backend) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::debug!(port = self.route.key.port, %backend, error = %e, "routing mesh: udp backend unusable; trying the next");
                    continue;
                }
            };
            let last = Arc::new(AtomicU64::new(self.now_ms()));
            let task = self.tasks.spawn(reply(
                sock.clone(),
                self.listener.clone(),
                client,
                last.clone(),
                self.epoch,
                self.idle,
            ));
            return Some(Session {
                sock,
                backend,
                generation,
                last,
                task,
            });
        }
        tracing::debug!(
            port = self.route.key.port,
            %client,
            "routing mesh: no udp backend; datagram dropped"
        );
        None
    }
}

fn connected(local: SocketAddr, backend: SocketAddr) -> io::Result<UdpSocket> {
    let sock = std::net::UdpSocket::bind(local)?;
    sock.connect(backend)?;
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock)
}

/// Relays the backend's datagrams to `client` until the session has been idle for `idle` or the
/// backend is unreachable.
async fn reply(
    sock: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<AtomicU64>,
    epoch: Instant,
    idle: Duration,
) {
    loop {
        let deadline = epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        match tokio::time::timeout_at(deadline.into(), sock.readable()).await {
            Err(_) => {
                let since = Duration::from_millis(last.load(Ordering::Relaxed));
                if epoch.elapsed() >= since + idle {
                    return;
                }
            }
            Ok(Err(_)) => return,
            Ok(Ok(())) => match relay_ready(&sock, &listener, client) {
                Ok(true) => {
                    let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                    last.store(now, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(_) => return,
            },
        }
    }
}

/// Sends every datagram waiting on `sock` to `client`; whether there was any. The buffer lives
/// on the stack of this synchronous call, not in every session's future.
fn relay_ready(sock: &UdpSocket, listener: &UdpSocket, client: SocketAddr) -> io::Result<bool> {
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut any = false;
    loop {
        match sock.try_recv(&mut buf) {
            Ok(n) => {
                any = true;
                // A full send buffer drops the datagram, as the network would.
                let _ = listener.try_send_to(&buf[..n], client);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
            Err(e) => return Err(e),
        }
    }
}
