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
use super::RoutingMesh;

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

impl RoutingMesh {
    /// The address of the resolver of `task` (a task on this node attached to `scope`, its
    /// networks in attachment order): started at the first call, kept until
    /// [`RoutingMesh::release_resolver`] or the mesh stops. Must run inside a tokio runtime.
    pub fn resolver_for(&self, task: Id, scope: Vec<Id>) -> io::Result<SocketAddr> {
        let mut map = self
            .shared
            .resolvers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get(&task) {
            if r.scope == scope {
                return Ok(r.addr);
            }
        }
        let r = start(scope, self.shared.names.subscribe())?;
        let addr = r.addr;
        map.insert(task, r);
        Ok(addr)
    }

    /// Stops the resolver of `task`, if it has one.
    pub fn release_resolver(&self, task: &Id) {
        self.shared
            .resolvers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task);
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

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::super::names::tests::sample;
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::new(42, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    fn first_a(bytes: &[u8]) -> (ResponseCode, Option<std::net::Ipv4Addr>) {
        let m = Message::from_vec(bytes).unwrap();
        let a = m.answers.iter().find_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        });
        (m.metadata.response_code, a)
    }

    /// One task's resolver answers over UDP and TCP for its networks, follows the view, and
    /// stops answering once dropped; garbage on TCP closes that connection only.
    #[tokio::test]
    async fn a_task_resolver_answers_over_udp_and_tcp_for_its_networks() {
        let (tx, rx) = watch::channel(Arc::new(sample()));
        let r = start(vec![Id::from_u128(1)], rx).unwrap();
        assert!(r.addr.ip().is_loopback());
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.connect(r.addr).await.unwrap();
        let mut buf = [0u8; 1024];
        udp.send(&query("web")).await.unwrap();
        let n = udp.recv(&mut buf).await.unwrap();
        assert_eq!(
            first_a(&buf[..n]),
            (ResponseCode::NoError, Some([10, 0, 1, 2].into()))
        );
        // `db` is on a network this task is not attached to.
        udp.send(&query("db")).await.unwrap();
        let n = udp.recv(&mut buf).await.unwrap();
        assert_eq!(first_a(&buf[..n]), (ResponseCode::NXDomain, None));
        // Garbage gets no answer; the socket still serves.
        udp.send(&[1, 2, 3]).await.unwrap();

        let mut tcp = TcpStream::connect(r.addr).await.unwrap();
        let q = query("web.front");
        tcp.write_all(&(q.len() as u16).to_be_bytes())
            .await
            .unwrap();
        tcp.write_all(&q).await.unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).await.unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut msg).await.unwrap();
        assert_eq!(
            first_a(&msg),
            (ResponseCode::NoError, Some([10, 0, 1, 2].into()))
        );
        let mut bad = TcpStream::connect(r.addr).await.unwrap();
        bad.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(bad.read_to_end(&mut rest).await.unwrap(), 0);

        // The view changes: `web` moves to another VIP.
        let mut v = sample();
        v.services.get_mut(&Id::from_u128(10)).unwrap().vips[0].1 = "10.0.1.99".parse().unwrap();
        tx.send_replace(Arc::new(v));
        udp.send(&query("web")).await.unwrap();
        let n = udp.recv(&mut buf).await.unwrap();
        assert_eq!(
            first_a(&buf[..n]),
            (ResponseCode::NoError, Some([10, 0, 1, 99].into()))
        );

        let addr = r.addr;
        drop(r);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "closed with its task"
        );
    }
}
