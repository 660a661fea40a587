//! UDP to service VIPs (part of the VIP data plane, `vip.rs`): datagrams from this node to a
//! VIP reach a running task of its service on the same port, anywhere, and the task's answers
//! come back from the VIP.
//!
//! - Kernel side: the `swarm_vip` table's `udp` chain (`prerouting`, `mangle` priority) hands
//!   UDP packets to the VIPs to one transparent socket on 127.0.0.1 (`tproxy`): a process on
//!   this node sending to a VIP (an address on `lo`) loops through `lo`, so its packets pass
//!   `prerouting`. `tproxy` does not rewrite them, and the socket reads the VIP and port each
//!   datagram was sent to (`IP_RECVORIGDSTADDR`). Only packets of a flow's original direction
//!   are taken (`ct direction original`): the answers this proxy sends from the VIP to the
//!   client pass `prerouting` too, and must reach the client.
//! - Per flow (client address, VIP and port) a session to one running task of the VIP's
//!   service, round robin per VIP: a socket connected to a task on this node, or a
//!   `mesh.v1.connect` stream naming the service to the task's node (one datagram per frame,
//!   as for ingress UDP). The flow's own socket, bound to the VIP and port and connected to the
//!   client, sends the answers (from the VIP) and receives the flow's next datagrams (the kernel
//!   delivers them to it rather than to the transparent socket).
//!   A session ends after [`super::MeshConfig::udp_idle_timeout`] idle, or when its task's
//!   socket or stream fails; at most [`super::MeshConfig::max_udp_sessions`] at once
//!   (datagrams of new flows beyond that are dropped).

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn};
use swarm_core::objects::service::Protocol;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::datagram::{self, LastSeen};
use super::names::NameView;
use super::{is_local, udp, PortKey, Shared};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// The transparent socket `tproxy` hands the VIPs' UDP packets to, on 127.0.0.1.
pub(crate) fn bind_transparent() -> io::Result<std::net::UdpSocket> {
    let sock = std::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    socket::setsockopt(&sock, sockopt::IpTransparent, &true).map_err(io::Error::from)?;
    socket::setsockopt(&sock, sockopt::Ipv4OrigDstAddr, &true).map_err(io::Error::from)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// One datagram: its payload length, sender and original destination.
fn recv_one(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SocketAddrV4>)> {
    let mut cmsg = nix::cmsg_space!(nix::libc::sockaddr_in);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrIn>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let from = msg
        .address
        .map(|a| SocketAddr::V4(SocketAddrV4::new(a.ip(), a.port())))
        .ok_or_else(|| io::Error::other("a datagram without a sender"))?;
    let mut dst = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::Ipv4OrigDstAddr(a) = c {
            dst = Some(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            ));
        }
    }
    Ok((msg.bytes, from, dst))
}

/// A flow's queue toward its session.
struct Flow {
    queue: mpsc::Sender<Vec<u8>>,
}

type Flows = Arc<Mutex<HashMap<(SocketAddr, SocketAddrV4), Flow>>>;

/// Relays the VIPs' UDP flows until aborted.
pub(crate) async fn serve(sock: std::net::UdpSocket, shared: Arc<Shared>) {
    let sock = match UdpSocket::from_std(sock) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "vip data plane: no UDP relay; UDP to VIPs is not served");
            return;
        }
    };
    let flows: Flows = Arc::default();
    let turns: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        let (n, client, dst) = match sock.try_io(Interest::READABLE, || recv_one(&sock, &mut buf)) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::debug!(error = %e, "vip data plane: UDP receive failed");
                continue;
            }
        };
        let Some(dst) = dst else {
            continue;
        };
        let data = buf[..n].to_vec();
        let existing = flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(client, dst))
            .map(|f| f.queue.clone());
        if let Some(q) = existing {
            if q.try_send(data).is_ok() {
                continue;
            }
            // A full queue drops the datagram; a closed one means the session ended.
            if !q.is_closed() {
                continue;
            }
            flows
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(client, dst));
            continue;
        }
        let open = flows.lock().unwrap_or_else(|e| e.into_inner()).len();
        if open >= shared.config.max_udp_sessions {
            continue;
        }
        let (tx, rx) = mpsc::channel(datagram::QUEUE);
        let _ = tx.try_send(data);
        flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((client, dst), Flow { queue: tx.clone() });
        let (shared, flows, turns) = (shared.clone(), flows.clone(), turns.clone());
        tokio::spawn(async move {
            session(&shared, &turns, client, dst, (tx, rx)).await;
            flows
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(client, dst));
        });
    }
}

/// The flow's socket: bound to the VIP and port the client sent to (beside other flows' sockets
/// on the same address), connected to the client.
fn flow_socket(dst: SocketAddrV4, client: SocketAddr) -> io::Result<UdpSocket> {
    let s = std::net::UdpSocket::from(
        socket::socket(
            socket::AddressFamily::Inet,
            socket::SockType::Datagram,
            socket::SockFlag::SOCK_NONBLOCK | socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io::Error::from)?,
    );
    socket::setsockopt(&s, sockopt::ReuseAddr, &true).map_err(io::Error::from)?;
    socket::bind(s.as_raw_fd(), &SockaddrIn::from(dst)).map_err(io::Error::from)?;
    s.connect(client)?;
    UdpSocket::from_std(s)
}

/// One flow: picks a task of the VIP's service and relays both ways until the flow ends.
async fn session(
    shared: &Shared,
    turns: &Mutex<HashMap<IpAddr, usize>>,
    client: SocketAddr,
    dst: SocketAddrV4,
    (tx, rx): (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>),
) {
    let vip = IpAddr::V4(*dst.ip());
    let view: Arc<NameView> = shared.names.borrow().clone();
    let Some((service, s)) = view.service_by_vip(vip) else {
        return;
    };
    let n = s.tasks.len();
    if n == 0 {
        return;
    }
    let reply = match flow_socket(dst, client) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::debug!(%vip, error = %e, "vip data plane: cannot answer from the VIP");
            return;
        }
    };
    // The flow's next datagrams arrive on its own socket: into the same queue.
    let pump = {
        let reply = reply.clone();
        async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while let Ok(n) = reply.recv(&mut buf).await {
                // A full queue drops the datagram, as the network would.
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(buf[..n].to_vec()) {
                    return;
                }
            }
        }
    };
    tokio::select! {
        () = relay(shared, &view, service, s, first_turn(turns, vip, n), client, dst, rx, reply) => {}
        () = pump => {}
    }
}

/// The next round-robin turn of `vip`, among `n` tasks.
fn first_turn(turns: &Mutex<HashMap<IpAddr, usize>>, vip: IpAddr, n: usize) -> usize {
    let mut t = turns.lock().unwrap_or_else(|e| e.into_inner());
    let c = t.entry(vip).or_insert(0);
    *c = c.wrapping_add(1);
    *c % n
}

/// Relays the flow to the first of `s`'s tasks (from turn `first`) that can be reached, until
/// the flow ends or the mesh stops.
#[allow(clippy::too_many_arguments)]
async fn relay(
    shared: &Shared,
    view: &NameView,
    service: &swarm_core::Id,
    s: &super::NamedService,
    first: usize,
    client: SocketAddr,
    dst: SocketAddrV4,
    mut rx: mpsc::Receiver<Vec<u8>>,
    reply: Arc<UdpSocket>,
) {
    let n = s.tasks.len();
    let key = PortKey {
        port: dst.port(),
        protocol: Protocol::Udp,
    };
    let idle = shared.config.udp_idle_timeout;
    let mut stop = shared.stop.subscribe();
    for i in 0..n {
        let b = super::vip::backend(view, &s.tasks[(first + i) % n], dst.port());
        if !is_local(shared.node, &b) {
            let Some(peers) = &shared.peers else { continue };
            match peers
                .open_service(*service, key, &b, shared.config.connect_timeout)
                .await
            {
                Ok((send, recv, _slot)) => {
                    let last = LastSeen::new(Instant::now());
                    tokio::select! {
                        () = datagram::client_side((send, recv), rx, reply, client, last, idle) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(vip = %dst.ip(), task = %b.task, error = %e, "vip data plane: remote task unusable; trying the next");
                    continue;
                }
            }
        }
        let Ok(task) = udp::connected(b.addr) else {
            continue;
        };
        tokio::select! {
            () = local(&task, &mut rx, &reply, client, idle) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        return;
    }
}

/// Relays a flow to a task on this node until idle or the task's socket fails.
async fn local(
    task: &UdpSocket,
    rx: &mut mpsc::Receiver<Vec<u8>>,
    reply: &UdpSocket,
    client: SocketAddr,
    idle: std::time::Duration,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(d) => if datagram::send_now(task, &d).is_err() { return },
                None => return,
            },
            r = task.recv(&mut buf) => match r {
                Ok(n) => { let _ = reply.try_send_to(&buf[..n], client); }
                Err(_) => return,
            },
            () = tokio::time::sleep(idle) => return,
        }
    }
}
