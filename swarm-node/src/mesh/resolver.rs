//! The service resolver's sockets: one UDP socket and one TCP listener on the same loopback port
//! per local task that asked for one ([`super::RoutingMesh::resolver_for`]), answering from the
//! node's current [`NameView`] for that task's networks (the port tells who asks: tasks of the
//! process runtime share the node's network, so a source address could not).
//!
//! TCP follows RFC 1035 4.2.2 (each message behind a two-byte length); a connection idle for
//! [`TCP_IDLE`] is closed, at most [`MAX_TCP_CONNECTIONS`] per task at once.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Id;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::dns::{answer, Transport};
use super::names::NameView;

/// A TCP connection without a complete query for this long is closed.
pub(crate) const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections per task's resolver at once; more wait in the backlog.
pub(crate) const MAX_TCP_CONNECTIONS: usize = 64;
/// How many loopback ports are tried for one whose TCP twin is free too.
const BIND_TRIES: usize = 16;

/// One task's resolver: where it listens and the task serving it.
#[derive(Debug)]
pub(crate) struct TaskResolver {
    pub(crate) addr: SocketAddr,
    pub(crate) scope: Vec<Id>,
    pub(crate) serve: JoinHandle<()>,
}

impl Drop for TaskResolver {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

/// Binds a UDP socket and a TCP listener on one free port of 127.0.0.1 and serves queries of a
/// task on `scope` from `names` until dropped. Must run inside a tokio runtime.
pub(crate) fn start(
    scope: Vec<Id>,
    names: watch::Receiver<Arc<NameView>>,
) -> io::Result<TaskResolver> {
    let mut last = None;
    for _ in 0..BIND_TRIES {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = udp.local_addr()?;
        match std::net::TcpListener::bind(addr) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                let udp = UdpSocket::from_std(udp)?;
                let tcp = TcpListener::from_std(tcp)?;
                let serve = tokio::spawn(serve(udp, tcp, scope.clone(), names));
                return Ok(TaskResolver { addr, scope, serve });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free loopback port")))
}

async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    scope: Vec<Id>,
    names: watch::Receiver<Arc<NameView>>,
) {
    let scope: Arc<[Id]> = scope.into();
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    // Dropped (and every connection with it) when this task is aborted.
    let mut conns = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let view = names.borrow().clone();
                match answer(&view, &scope, &buf[..n], Transport::Udp) {
                    Ok(reply) => {
                        let _ = udp.send_to(&reply, from).await;
                    }
                    Err(e) => tracing::debug!(%from, error = %e, "resolver: query dropped"),
                }
            }
            r = tcp.accept() => {
                let Ok((stream, _)) = r else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let (names, scope) = (names.clone(), scope.clone());
                conns.spawn(async move {
                    let _ = serve_tcp(stream, &scope, &names).await;
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Answers length-prefixed queries on one connection until it closes or idles.
async fn serve_tcp(
    mut s: TcpStream,
    scope: &[Id],
    names: &watch::Receiver<Arc<NameView>>,
) -> io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let view = names.borrow().clone();
        let reply = match answer(&view, scope, &msg, Transport::Tcp) {
            Ok(r) => r,
            // A stream that sends garbage is not worth keeping.
            Err(_) => return Ok(()),
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        s.write_all(&n.to_be_bytes()).await?;
        s.write_all(&reply).await?;
    }
}
