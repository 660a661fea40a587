//! The routing mesh (`swarm_node::mesh`) against real sockets on loopback.
//!
//! Each test writes services and tasks into a store through a `LocalProposer`, as the control
//! layer and the agent would, and starts the tasks' "containers" itself: tokio TCP/UDP servers on
//! 127.0.0.x (every 127/8 address is loopback on Linux, so three backends share one target port).
//! A TCP backend greets each connection with its name and a newline, then echoes; a line `die`
//! makes it drop that connection. A UDP backend answers `<name>:<datagram>`. The mesh listens on
//! 127.0.0.1. Every wait polls a condition with a deadline; no sleep stands in for
//! synchronisation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::{PortConfig, Protocol, PublishMode};
use swarm_core::objects::task::{Health, TaskAddress};
use swarm_core::testing::task;
use swarm_core::{Object, StoreAction, TaskState};
use swarm_node::backend::PortCheck;
use swarm_node::mesh::MeshConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

mod mesh_support;
use mesh_support::*;

/// TCP backends named `b<n>` on 127.0.0.<n+1> (n = 1..=count), all on one port.
async fn tcp_backends(count: u8) -> (u16, Vec<JoinHandle<()>>) {
    'again: loop {
        let port = free_port();
        let mut listeners = Vec::new();
        for n in 1..=count {
            match TcpListener::bind(SocketAddr::new(lo(n + 1), port)).await {
                Ok(l) => listeners.push((n, l)),
                Err(_) => continue 'again,
            }
        }
        let handles = listeners
            .into_iter()
            .map(|(n, l)| tokio::spawn(serve_tcp(format!("b{n}"), l)))
            .collect();
        return (port, handles);
    }
}

async fn serve_tcp(name: String, l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let name = name.clone();
        tokio::spawn(async move {
            if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                return;
            }
            let mut buf = [0u8; 1024];
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if buf[..n].starts_with(b"die") {
                    return;
                }
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A connection through the mesh, with the backend's greeting read.
struct Client {
    name: String,
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect(SocketAddr::new(lo(1), port)).await?;
        let mut stream = BufReader::new(s);
        let mut name = String::new();
        tokio::time::timeout(DEADLINE, stream.read_line(&mut name))
            .await
            .map_err(|_| std::io::Error::other("no greeting"))??;
        if name.is_empty() {
            return Err(std::io::Error::other("closed before the greeting"));
        }
        Ok(Client {
            name: name.trim().to_string(),
            stream,
        })
    }

    /// Sends `line` and reads its echo.
    async fn echo(&mut self, line: &str) -> String {
        self.stream
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut back = String::new();
        tokio::time::timeout(DEADLINE, self.stream.read_line(&mut back))
            .await
            .expect("echo in time")
            .unwrap();
        back.trim().to_string()
    }
}

/// Names of the backends `count` new connections reached.
async fn spread(port: u16, count: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..count {
        let c = Client::connect(port)
            .await
            .expect("connect through the mesh");
        *seen.entry(c.name).or_insert(0) += 1;
    }
    seen
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Three running tasks: round robin gives each of them a third of 30 sequential connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_spread_over_three_backends() {
    let f = Fixture::new();
    let (target, _b) = tcp_backends(3).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    for n in 1..=3u8 {
        f.run_task(u128::from(n) + 10, &s, lo(n + 1)).await;
    }
    let all: Vec<_> = (2..=4).map(|n| SocketAddr::new(lo(n), target)).collect();
    f.wait_backends(tcp(published), &all).await;
    let seen = spread(published, 30).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["b1", "b2", "b3"])
    );
    assert!(seen.values().all(|&n| n == 10), "{seen:?}");
    f.mesh.stop().await;
}

/// A task whose desired state becomes shutdown leaves the backends at once (before it stops):
/// new connections avoid it while the one already open to it keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_task_gets_no_new_connections_and_keeps_its_own() {
    let f = Fixture::new();
    let (target, _b) = tcp_backends(3).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    let mut ids = Vec::new();
    for n in 1..=3u8 {
        ids.push(f.run_task(u128::from(n) + 10, &s, lo(n + 1)).await);
    }
    let all: Vec<_> = (2..=4).map(|n| SocketAddr::new(lo(n), target)).collect();
    f.wait_backends(tcp(published), &all).await;
    let mut to_b1 = None;
    for _ in 0..3 {
        let c = Client::connect(published).await.unwrap();
        if c.name == "b1" {
            to_b1 = Some(c);
        }
    }
    let mut to_b1 = to_b1.expect("round robin reached b1");
    f.edit_task(ids[0], |t| t.desired_state = TaskState::Shutdown)
        .await;
    f.wait_backends(tcp(published), &all[1..]).await;
    let seen = spread(published, 12).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["b2", "b3"])
    );
    assert_eq!(to_b1.echo("still there").await, "still there");
    f.mesh.stop().await;
}

/// A task that starts running joins the backends and gets connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_running_task_is_added() {
    let f = Fixture::new();
    let (target, _b) = tcp_backends(2).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    f.run_task(11, &s, lo(2)).await;
    f.wait_backends(tcp(published), &[SocketAddr::new(lo(2), target)])
        .await;
    assert_eq!(spread(published, 3).await.len(), 1);
    // Written as the agent does: created pending, then reported running.
    let mut t = task(12, &s, 2);
    t.status.state = TaskState::Starting;
    let id = t.id;
    f.commit(vec![StoreAction::Create(Object::Task(Arc::new(t)))])
        .await;
    f.edit_task(id, |t| {
        t.status.state = TaskState::Running;
        t.status.addresses = vec![TaskAddress {
            network_id: None,
            addr: lo(3),
        }];
    })
    .await;
    f.wait_backends(
        tcp(published),
        &[
            SocketAddr::new(lo(2), target),
            SocketAddr::new(lo(3), target),
        ],
    )
    .await;
    let seen = spread(published, 6).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["b1", "b2"])
    );
    f.mesh.stop().await;
}

/// A backend address where nothing listens (connection refused) is skipped: every client is
/// served by another backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_backend_is_skipped() {
    let f = Fixture::new();
    let (target, _b) = tcp_backends(2).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    f.run_task(11, &s, lo(2)).await;
    f.run_task(12, &s, lo(3)).await;
    // Nothing listens on 127.0.0.9:<target>.
    f.run_task(13, &s, lo(9)).await;
    let all: Vec<_> = [2, 3, 9]
        .iter()
        .map(|&n| SocketAddr::new(lo(n), target))
        .collect();
    f.wait_backends(tcp(published), &all).await;
    let seen = spread(published, 12).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["b1", "b2"])
    );
    assert_eq!(seen.values().sum::<usize>(), 12);
    f.mesh.stop().await;
}

/// A backend that drops a connection mid-stream ends that client's connection only: another
/// open connection still echoes, and the listener accepts new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_mid_stream_ends_only_that_connection() {
    let f = Fixture::new();
    let (target, _b) = tcp_backends(1).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    f.run_task(11, &s, lo(2)).await;
    f.wait_backends(tcp(published), &[SocketAddr::new(lo(2), target)])
        .await;
    let mut a = Client::connect(published).await.unwrap();
    let mut b = Client::connect(published).await.unwrap();
    assert_eq!(a.echo("hello").await, "hello");
    a.stream.get_mut().write_all(b"die\n").await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(DEADLINE, a.stream.read_to_end(&mut rest))
        .await
        .expect("the client sees the close")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing after the backend closed");
    assert_eq!(b.echo("still here").await, "still here");
    let mut c = Client::connect(published).await.unwrap();
    assert_eq!(c.echo("new").await, "new");
    f.mesh.stop().await;
}

/// UDP backends answering `<name>:<datagram>`, on 127.0.0.<n+1>, one port.
async fn udp_backends(count: u8) -> (u16, Vec<JoinHandle<()>>) {
    'again: loop {
        let port = free_port();
        let mut socks = Vec::new();
        for n in 1..=count {
            match UdpSocket::bind(SocketAddr::new(lo(n + 1), port)).await {
                Ok(s) => socks.push((n, s)),
                Err(_) => continue 'again,
            }
        }
        let handles = socks
            .into_iter()
            .map(|(n, s)| {
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    loop {
                        let Ok((len, from)) = s.recv_from(&mut buf).await else {
                            return;
                        };
                        let mut reply = format!("b{n}:").into_bytes();
                        reply.extend_from_slice(&buf[..len]);
                        let _ = s.send_to(&reply, from).await;
                    }
                })
            })
            .collect();
        return (port, handles);
    }
}

/// Sends `msg` to the mesh from `sock` until an answer comes (UDP may drop); returns it.
async fn udp_ask(sock: &UdpSocket, port: u16, msg: &str) -> String {
    let mut buf = [0u8; 2048];
    let start = tokio::time::Instant::now();
    loop {
        sock.send_to(msg.as_bytes(), SocketAddr::new(lo(1), port))
            .await
            .unwrap();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await
        {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(start.elapsed() < DEADLINE, "no udp answer through the mesh");
    }
}

/// Datagrams go through and back; each client address gets its own session, sessions spread
/// over the three backends, and a client keeps its backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_round_trip_and_spread() {
    let f = Fixture::new();
    let (target, _b) = udp_backends(3).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Udp, published, target).await;
    for n in 1..=3u8 {
        f.run_task(u128::from(n) + 10, &s, lo(n + 1)).await;
    }
    let all: Vec<_> = (2..=4).map(|n| SocketAddr::new(lo(n), target)).collect();
    f.wait_backends(udp(published), &all).await;
    let mut seen = BTreeSet::new();
    for i in 0..6 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = udp_ask(&client, published, &format!("hi{i}")).await;
        let (name, payload) = first.split_once(':').unwrap();
        assert_eq!(payload, format!("hi{i}"));
        let again = udp_ask(&client, published, "again").await;
        assert_eq!(
            again,
            format!("{name}:again"),
            "a session keeps its backend"
        );
        seen.insert(name.to_string());
    }
    assert_eq!(seen, names(&["b1", "b2", "b3"]));
    f.mesh.stop().await;
}

/// A flow's first datagram reaches its backend (no resend): a one-datagram exchange such as a
/// DNS query works. A session's socket is new when that datagram is relayed, and tokio's
/// `try_send` on a socket its reactor has not yet seen writable drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_the_first_datagram_of_each_flow_is_relayed() {
    let f = Fixture::new();
    let (target, _b) = udp_backends(2).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Udp, published, target).await;
    for n in 1..=2u8 {
        f.run_task(u128::from(n) + 10, &s, lo(n + 1)).await;
    }
    let all: Vec<_> = (2..=3).map(|n| SocketAddr::new(lo(n), target)).collect();
    f.wait_backends(udp(published), &all).await;
    // The listener is bound once its backends are known; a first flow, with resends, makes
    // sure it is.
    let warm = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp_ask(&warm, published, "warm").await;
    for i in 0..6 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let msg = format!("once{i}");
        client
            .send_to(msg.as_bytes(), SocketAddr::new(lo(1), published))
            .await
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(DEADLINE, client.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("flow {i}: its only datagram got no answer"))
            .unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(reply.ends_with(&format!(":{msg}")), "flow {i}: {reply}");
    }
    f.mesh.stop().await;
}

/// Removing the only service publishing a port closes its listener (connect refused);
/// publishing it again re-opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_closes_when_unpublished_and_reopens() {
    let f = Fixture::new();
    let (target, _b) = tcp_backends(1).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    f.run_task(11, &s, lo(2)).await;
    f.wait_backends(tcp(published), &[SocketAddr::new(lo(2), target)])
        .await;
    assert_eq!(Client::connect(published).await.unwrap().name, "b1");
    f.remove_service(s.id).await;
    wait_until("the listener is closed", || async {
        matches!(
            TcpStream::connect(SocketAddr::new(lo(1), published)).await,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
    .await;
    assert_eq!(f.mesh.backends(tcp(published)), None);
    let s2 = f.publish(2, Protocol::Tcp, published, target).await;
    f.run_task(21, &s2, lo(2)).await;
    f.wait_backends(tcp(published), &[SocketAddr::new(lo(2), target)])
        .await;
    assert_eq!(Client::connect(published).await.unwrap().name, "b1");
    f.mesh.stop().await;
}

/// Tasks whose health is unhealthy or still starting get no traffic; once healthy they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_and_starting_tasks_are_excluded() {
    let f = Fixture::new();
    let (target, _b) = tcp_backends(3).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    let healthy = f.run_task(11, &s, lo(2)).await;
    let unhealthy = f.run_task(12, &s, lo(3)).await;
    let starting = f.run_task(13, &s, lo(4)).await;
    f.edit_task(healthy, |t| t.status.health = Some(Health::Healthy))
        .await;
    f.edit_task(unhealthy, |t| t.status.health = Some(Health::Unhealthy))
        .await;
    f.edit_task(starting, |t| t.status.health = Some(Health::Starting))
        .await;
    f.wait_backends(tcp(published), &[SocketAddr::new(lo(2), target)])
        .await;
    let seen = spread(published, 6).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["b1"])
    );
    f.edit_task(starting, |t| t.status.health = Some(Health::Healthy))
        .await;
    f.wait_backends(
        tcp(published),
        &[
            SocketAddr::new(lo(2), target),
            SocketAddr::new(lo(4), target),
        ],
    )
    .await;
    let seen = spread(published, 6).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["b1", "b3"])
    );
    f.mesh.stop().await;
}

fn port(protocol: Protocol, mode: PublishMode, published: u16, target: u16) -> PortConfig {
    PortConfig {
        protocol,
        target_port: u32::from(target),
        published_port: u32::from(published),
        publish_mode: mode,
        ..Default::default()
    }
}

/// The port check: a port another program holds is refused with the OS's reason, a free one
/// accepted, one the mesh already serves accepted; the process-runtime rule on equal ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_check_reports_taken_ports_and_accepts_free_ones() {
    let f = Fixture::new();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let err = f
        .mesh
        .check(&port(Protocol::Tcp, PublishMode::Ingress, taken, 80))
        .unwrap_err();
    assert_eq!(err, "address already in use");
    // Host mode binds 0.0.0.0, which a listener on 127.0.0.1 blocks too.
    assert_eq!(
        f.mesh
            .check(&port(Protocol::Tcp, PublishMode::Host, taken, 80))
            .unwrap_err(),
        "address already in use"
    );
    let held_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken_udp = held_udp.local_addr().unwrap().port();
    assert_eq!(
        f.mesh
            .check(&port(Protocol::Udp, PublishMode::Ingress, taken_udp, 53))
            .unwrap_err(),
        "address already in use"
    );
    let free = free_port();
    assert_eq!(
        f.mesh
            .check(&port(Protocol::Tcp, PublishMode::Ingress, free, 80)),
        Ok(())
    );
    assert_eq!(
        f.mesh.check(&port(Protocol::Tcp, PublishMode::Host, 0, 80)),
        Ok(())
    );
    // A port the mesh serves is fine (another of the service's ports, an update...).
    let published = free_port();
    f.publish(1, Protocol::Tcp, published, 80).await;
    wait_until("the mesh listens", || {
        let ok = f.mesh.is_listening(tcp(published));
        async move { ok }
    })
    .await;
    assert_eq!(
        f.mesh
            .check(&port(Protocol::Tcp, PublishMode::Ingress, published, 80)),
        Ok(())
    );
    // Equal published and target ports are fine unless tasks share the host network.
    assert_eq!(
        f.mesh
            .check(&port(Protocol::Tcp, PublishMode::Ingress, free, free)),
        Ok(())
    );
    f.mesh.stop().await;
    let process = Fixture::with(MeshConfig {
        addr: lo(1),
        shared_host_network: true,
        ..MeshConfig::default()
    });
    assert_eq!(
        process
            .mesh
            .check(&port(Protocol::Tcp, PublishMode::Ingress, 8080, 8080))
            .unwrap_err(),
        "with the process runtime tasks share the node's network, so an ingress port must differ from its target port (published 8080, target 8080)"
    );
    process.mesh.stop().await;
    drop((held, held_udp));
}

/// A port taken by another program when it is published is retried: the mesh binds it once
/// it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_taken_at_publish_time_is_bound_when_freed() {
    let f = Fixture::with(MeshConfig {
        addr: lo(1),
        rebind_interval: Duration::from_millis(50),
        ..MeshConfig::default()
    });
    let (target, _b) = tcp_backends(1).await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let published = held.local_addr().unwrap().port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    f.run_task(11, &s, lo(2)).await;
    wait_until("the port is published but not bound", || {
        let p = f.mesh.published();
        async move { p == vec![(tcp(published), false)] }
    })
    .await;
    drop(held);
    f.wait_backends(tcp(published), &[SocketAddr::new(lo(2), target)])
        .await;
    assert_eq!(Client::connect(published).await.unwrap().name, "b1");
    f.mesh.stop().await;
}

/// Stopping the mesh closes its listeners and the connections it proxies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_listeners_and_connections() {
    let f = Fixture::new();
    let (target, _b) = tcp_backends(1).await;
    let published = free_port();
    let s = f.publish(1, Protocol::Tcp, published, target).await;
    f.run_task(11, &s, lo(2)).await;
    f.wait_backends(tcp(published), &[SocketAddr::new(lo(2), target)])
        .await;
    let mut c = Client::connect(published).await.unwrap();
    f.mesh.stop().await;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(DEADLINE, c.stream.read_to_end(&mut rest))
        .await
        .expect("the connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let refused = TcpStream::connect(SocketAddr::new(lo(1), published)).await;
    assert!(refused.is_err(), "the listener is closed");
    assert!(f.mesh.published().is_empty());
}
