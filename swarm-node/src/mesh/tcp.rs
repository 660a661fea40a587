//! The TCP side of the mesh: one accept loop per published port, one task per proxied
//! connection, to a local task directly or through a stream to the task's node.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_net::rpc::{RecvStream, SendStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::route::Route;
use super::{bind_retrying, is_local, Shared};

/// Stream error code sent when the client side of a piped connection failed (reset).
const ABORTED: u32 = 1;

/// Listen backlog: a burst of 1 000 simultaneous connects must not overflow it (the kernel caps
/// it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;
/// Pause after an accept error that is not about one connection (EMFILE, ENFILE, ENOBUFS): the
/// condition usually clears when connections close, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this interval for repeated accept errors or a full listener.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Binds a listening socket with `SO_REUSEADDR` (a port whose last connections are in TIME_WAIT
/// can be published again at once).
pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

/// Accepts on `route`'s port until aborted; see the module docs of [`super`] for the policy.
pub(crate) async fn serve(route: Arc<Route>, shared: Arc<Shared>) {
    let addr = SocketAddr::new(shared.config.addr, route.key.port);
    let listener = bind_retrying(&route, shared.config.rebind_interval, || bind_tcp(addr)).await;
    let permits = Arc::new(Semaphore::new(
        shared
            .config
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut last_warning: Option<Instant> = None;
    let mut warn_now = || {
        let now = Instant::now();
        let due = last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
        if due {
            last_warning = Some(now);
        }
        due
    };
    loop {
        if permits.available_permits() == 0 && warn_now() {
            tracing::warn!(
                port = route.key.port,
                limit = shared.config.max_connections,
                "routing mesh: {addr} has reached its connection limit; new connections wait in the backlog"
            );
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((client, _)) => {
                let _ = client.set_nodelay(true);
                tokio::spawn(proxy(
                    client,
                    route.clone(),
                    shared.clone(),
                    shared.stop.subscribe(),
                    permit,
                ));
            }
            Err(e) if per_connection(&e) => {}
            Err(e) => {
                if warn_now() {
                    tracing::warn!(port = route.key.port, error = %e, "routing mesh: accept failed on {addr}; backing off");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Errors about one connection that died before it was accepted: go on at once.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Where a connection goes: a local task, or a stream to another node.
enum Upstream {
    Local(TcpStream),
    Remote(SendStream, RecvStream, OwnedSemaphorePermit),
}

/// Connects `client` to the first backend that answers (round robin, each at most once; a
/// backend on another node through a stream to it), then copies both ways until both sides
/// closed (half-close passed on), an error, or the mesh stops.
async fn proxy(
    mut client: TcpStream,
    route: Arc<Route>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let connect_timeout = shared.config.connect_timeout;
    let buffer = shared.config.copy_buffer;
    let mut server = None;
    let mut candidates: Vec<_> = route.candidates().collect();
    if shared.kernel_carried(route.key, &client) {
        // Remote tasks first (stable: still round robin among each kind).
        candidates.sort_by_key(|b| is_local(shared.node, b));
    }
    for b in candidates {
        if !is_local(shared.node, &b) {
            let Some(peers) = &shared.peers else {
                continue;
            };
            match peers.open(route.key, &b, connect_timeout).await {
                Ok((send, recv, slot)) => {
                    server = Some(Upstream::Remote(send, recv, slot));
                    break;
                }
                Err(e) => {
                    tracing::debug!(port = route.key.port, task = %b.task, error = %e, "routing mesh: remote backend unusable; trying the next");
                    continue;
                }
            }
        }
        let backend = b.addr;
        match tokio::time::timeout(connect_timeout, TcpStream::connect(backend)).await {
            Ok(Ok(s)) => {
                server = Some(Upstream::Local(s));
                break;
            }
            Ok(Err(e)) => {
                tracing::debug!(port = route.key.port, %backend, error = %e, "routing mesh: backend refused; trying the next")
            }
            Err(_) => {
                tracing::debug!(port = route.key.port, %backend, "routing mesh: backend did not answer within {connect_timeout:?}; trying the next")
            }
        }
    }
    let Some(server) = server else {
        tracing::debug!(
            port = route.key.port,
            "routing mesh: no backend accepted the connection; closing it"
        );
        return;
    };
    let copy = async {
        match server {
            Upstream::Local(mut server) => {
                let _ = server.set_nodelay(true);
                tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, buffer, buffer)
                    .await
                    .map(drop)
            }
            Upstream::Remote(send, recv, _slot) => pipe(client, send, recv, buffer).await,
        }
    };
    tokio::select! {
        biased;
        r = copy => {
            if let Err(e) = r {
                tracing::trace!(port = route.key.port, error = %e, "routing mesh: connection ended");
            }
        }
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Copies bytes between `tcp` and a mesh stream both ways until both directions ended: the TCP
/// side's end of input finishes the stream, the stream's finish shuts the TCP side's writing
/// down. An error either way ends both: the stream is reset, the TCP connection closed.
pub(crate) async fn pipe(
    tcp: TcpStream,
    mut send: SendStream,
    mut recv: RecvStream,
    buffer: usize,
) -> io::Result<()> {
    let (mut r, mut w) = tcp.into_split();
    let up = async {
        let mut buf = vec![0u8; buffer.max(1024)];
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                send.finish().map_err(io::Error::other)?;
                return Ok::<(), io::Error>(());
            }
            send.write_all(&buf[..n]).await.map_err(io::Error::other)?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; buffer.max(1024)];
        loop {
            match recv.read(&mut buf).await.map_err(io::Error::other)? {
                Some(n) => w.write_all(&buf[..n]).await?,
                None => {
                    w.shutdown().await?;
                    return Ok::<(), io::Error>(());
                }
            }
        }
    };
    let r = tokio::try_join!(up, down).map(drop);
    if r.is_err() {
        let _ = send.reset(ABORTED.into());
        let _ = recv.stop(ABORTED.into());
    }
    r
}
