//! The TCP side of the mesh: one accept loop per published port, one task per proxied
//! connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::route::Route;
use super::{bind_retrying, Shared};

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
                    shared.config.connect_timeout,
                    shared.config.copy_buffer,
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

/// Connects `client` to the first backend that answers (round robin, each at most once), then
/// copies both ways until both sides closed (half-close passed on), an error, or the mesh stops.
async fn proxy(
    mut client: TcpStream,
    route: Arc<Route>,
    connect_timeout: Duration,
    buffer: usize,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let mut server = None;
    for backend in route.candidates() {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(backend)).await {
            Ok(Ok(s)) => {
                server = Some(s);
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
    let Some(mut server) = server else {
        tracing::debug!(
            port = route.key.port,
            "routing mesh: no backend accepted the connection; closing it"
        );
        return;
    };
    let _ = server.set_nodelay(true);
    tokio::select! {
        biased;
        r = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, buffer, buffer) => {
            if let Err(e) = r {
                tracing::trace!(port = route.key.port, error = %e, "routing mesh: connection ended");
            }
        }
        _ = stop.wait_for(|s| *s) => {}
    }
}
