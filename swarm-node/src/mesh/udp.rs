//! The UDP side of the mesh: one socket per published port; per client address a session, i.e. a
//! socket connected to the backend chosen for that client, relaying datagrams both ways.
//!
//! A session ends after [`super::MeshConfig::udp_idle_timeout`] without a datagram either way,
//! when its backend answers with ICMP port unreachable (the next datagram opens a new session on
//! another backend), or when its backend leaves the route. At most
//! [`super::MeshConfig::max_udp_sessions`] live at once per port; datagrams from new clients
//! beyond that are dropped (UDP may drop) until sessions expire.
//!
//! A backend on another node is reached through a `mesh.v1.connect` stream to that node, one
//! per client flow, each datagram a frame ([`super::datagram`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::Id;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::datagram::{self, LastSeen};
use super::route::Route;
use super::view::Backend;
use super::{bind_retrying, is_local, Shared};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// Binds the published port's socket.
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = std::net::UdpSocket::bind(addr)?;
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock)
}

/// Where a flow's datagrams go.
enum Upstream {
    /// A socket connected to a task on this node.
    Local(Arc<UdpSocket>),
    /// The queue toward a stream to the task's node.
    Remote(mpsc::Sender<Vec<u8>>),
}

impl Upstream {
    /// Sends one datagram; an error means the flow is gone (a full buffer or queue drops the
    /// datagram, as the network would, and is no error).
    fn send(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Upstream::Local(sock) => datagram::send_now(sock, data),
            Upstream::Remote(queue) => match queue.try_send(data.to_vec()) {
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    Err(io::Error::other("the stream to the task's node ended"))
                }
                _ => Ok(()),
            },
        }
    }
}

struct Session {
    upstream: Upstream,
    /// The task the flow goes to.
    backend: Id,
    /// The route generation at which `backend` was last seen in the route.
    generation: u64,
    last: LastSeen,
    task: AbortHandle,
}

struct Relay {
    route: Arc<Route>,
    listener: Arc<UdpSocket>,
    shared: Arc<Shared>,
    idle: Duration,
    max_sessions: usize,
    epoch: Instant,
    sessions: HashMap<SocketAddr, Session>,
    tasks: JoinSet<()>,
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
        shared,
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
    /// Sends one client datagram to its session's backend, opening or replacing the session as
    /// needed.
    fn forward(&mut self, data: &[u8], client: SocketAddr) {
        let generation = self.route.generation();
        if let Some(s) = self.sessions.get_mut(&client) {
            let mut keep = !s.task.is_finished();
            if keep && s.generation != generation {
                keep = self.route.backends().iter().any(|b| b.task == s.backend);
                s.generation = generation;
            }
            // An error is ICMP port unreachable from an earlier datagram (the backend is gone)
            // or the end of the stream to its node.
            if keep && s.upstream.send(data).is_ok() {
                s.last.touch();
                return;
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
        let _ = s.upstream.send(data);
        self.sessions.insert(client, s);
    }

    /// A session to the next backend: a task on another node through a stream to it (opened
    /// in the background, datagrams queue meanwhile), or a local one a socket can be connected
    /// to.
    fn open(&mut self, client: SocketAddr, generation: u64) -> Option<Session> {
        let node = self.shared.node;
        for b in self.route.candidates() {
            if !is_local(node, &b) {
                if let Some(s) = self.open_remote(client, b, generation) {
                    return Some(s);
                }
                continue;
            }
            let backend = b.addr;
            let sock = match connected(backend) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::debug!(port = self.route.key.port, %backend, error = %e, "routing mesh: udp backend unusable; trying the next");
                    continue;
                }
            };
            let last = LastSeen::new(self.epoch);
            let task = self.tasks.spawn(reply(
                sock.clone(),
                self.listener.clone(),
                client,
                last.clone(),
                self.idle,
            ));
            return Some(Session {
                upstream: Upstream::Local(sock),
                backend: b.task,
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

impl Relay {
    /// A flow to `b` on another node, through a stream opened in the background; `None` when
    /// this node opens no streams (a single host).
    fn open_remote(&mut self, client: SocketAddr, b: Backend, generation: u64) -> Option<Session> {
        let peers = self.shared.peers.clone()?;
        let (queue, rx) = mpsc::channel(datagram::QUEUE);
        let last = LastSeen::new(self.epoch);
        let (key, timeout, idle) = (
            self.route.key,
            self.shared.config.connect_timeout,
            self.idle,
        );
        let (listener, flow_last) = (self.listener.clone(), last.clone());
        let task = self.tasks.spawn(async move {
            match peers.open(key, &b, timeout).await {
                Ok((send, recv, _slot)) => {
                    datagram::client_side((send, recv), rx, listener, client, flow_last, idle)
                        .await
                }
                Err(e) => {
                    tracing::debug!(port = key.port, task = %b.task, error = %e, "routing mesh: remote udp backend unusable; the next datagram tries the next");
                }
            }
        });
        Some(Session {
            upstream: Upstream::Remote(queue),
            backend: b.task,
            generation,
            last,
            task,
        })
    }
}

/// A socket connected to `backend`, bound to the unspecified address of its family.
pub(crate) fn connected(backend: SocketAddr) -> io::Result<UdpSocket> {
    let local = match backend.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
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
    last: LastSeen,
    idle: Duration,
) {
    loop {
        match tokio::time::timeout_at(last.deadline(idle), sock.readable()).await {
            Err(_) => {
                if last.expired(idle) {
                    return;
                }
            }
            Ok(Err(_)) => return,
            Ok(Ok(())) => match relay_ready(&sock, &listener, client) {
                Ok(true) => last.touch(),
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
