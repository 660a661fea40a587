//! The accept loop: HTTP/1.1 connections on the Unix socket, with a connection cap and a
//! header-read timeout, so a slow or silent client cannot starve the others.
//!
//! Every connection is either *busy* (a request is being handled or its response body is being
//! written) or *idle* (waiting for, or in the middle of reading, a request head: a fresh
//! connection, a keep-alive connection between requests, or a slowloris sending its head a byte at
//! a time).
//! - An idle connection is closed once it has been idle for [`ApiOptions::header_read_timeout`]
//!   (Go's `ReadHeaderTimeout`, which also bounds keep-alive idleness when no `IdleTimeout` is
//!   set).
//! - At [`ApiOptions::max_connections`] open connections (at most half of `ulimit -n`), a new one
//!   closes the connection that has been idle longest, so a normal request gets in at once however
//!   many silent clients hold sockets. Only when every open connection is busy is the new one
//!   refused (closed unanswered): that is real load, which the cap exists to bound.
//! - Out of file descriptors all the same (the daemon's other files), a failed `accept` evicts a
//!   few idle connections the same way, so the socket stays usable.
//!
//! Busy connections are never cut by these limits: `docker logs -f` may stream for hours. On
//! shutdown the loop stops accepting, asks every connection to finish its current request and
//! returns when all have closed.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use swarm_core::validate::ServiceLimits;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

/// Default [`ApiOptions::header_read_timeout`]: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ApiOptions::max_connections`]: 1,024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How the API protects itself. `swarm-node run` sets them from `--api-header-timeout`,
/// `--api-max-connections` and `--max-replicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiOptions {
    /// How long a connection may stay without a request in progress (a request head not yet
    /// complete, or nothing sent) before it is closed.
    pub header_read_timeout: Duration,
    /// Most connections open at once (see the module docs for what happens at the cap); never more
    /// than half the process's file-descriptor limit.
    pub max_connections: usize,
    /// Limits on the service specs this node accepts.
    pub service_limits: ServiceLimits,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            service_limits: ServiceLimits::default(),
        }
    }
}

/// How long the loop backs off after a failed `accept`, so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long it waits after evicting connections to free file descriptors (the connections' tasks
/// close them asynchronously).
const EVICT_PAUSE: Duration = Duration::from_millis(1);
/// How many idle connections one `accept` that ran out of file descriptors closes.
const EVICT_BATCH: usize = 32;

/// The connection cap in force: `configured`, but at most half the process's file-descriptor
/// limit (`ulimit -n`), so that the cap, which evicts at once, is reached before `accept` fails
/// for lack of descriptors, and the other half stays for the daemon's own files and tasks.
fn effective_cap(configured: usize) -> usize {
    // `None` is no limit.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let half = limit.map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX));
    let cap = configured.min(half).max(1);
    if cap < configured {
        tracing::info!(
            configured,
            cap,
            "API connection cap lowered to half the file-descriptor limit (ulimit -n)"
        );
    }
    cap
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Requests in progress (a response body counts until it is dropped).
    in_flight: AtomicUsize,
    /// When the connection last became idle (accepted, or its last response finished).
    idle_since: Mutex<Instant>,
    /// Wakes the connection's task to close it at once (eviction).
    evict: Notify,
}

impl Conn {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks its connection busy while alive (held by the response body until hyper drops it).
struct Busy(Arc<Conn>);

impl Busy {
    fn enter(conn: Arc<Conn>) -> Busy {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // Stamp first, so a connection is never seen idle with an old stamp.
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection busy until it has been written (or abandoned).
struct TrackedBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections by id.
#[derive(Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection, evicting the longest-idle one at the cap. `false` when every
    /// open connection is busy: the new one is refused.
    fn admit(&self, id: u64, conn: Arc<Conn>, max: usize) -> bool {
        let mut conns = self.lock();
        if conns.len() >= max && !evict_longest_idle(&mut conns) {
            return false;
        }
        conns.insert(id, conn);
        true
    }

    /// Closes up to `n` of the connections idle longest; returns how many.
    fn evict_idle(&self, n: usize) -> usize {
        let mut conns = self.lock();
        (0..n)
            .take_while(|_| evict_longest_idle(&mut conns))
            .count()
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Removes the longest-idle connection from `conns` and tells its task to close it; `false` if
/// every connection is busy.
fn evict_longest_idle(conns: &mut BTreeMap<u64, Arc<Conn>>) -> bool {
    let victim = conns
        .iter()
        .filter(|(_, c)| c.is_idle())
        .min_by_key(|(_, c)| c.idle_since())
        .map(|(id, _)| *id);
    match victim.and_then(|v| conns.remove(&v)) {
        Some(victim) => {
            // `notify_one` stores a permit, so the task sees it even if it is not waiting yet.
            victim.evict.notify_one();
            true
        }
        None => false,
    }
}

/// Serves `app` on `listener` with `options` until `shutdown` completes, then waits for the open
/// connections to finish their current request.
pub(crate) async fn serve(
    listener: UnixListener,
    app: Router,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let max = effective_cap(options.max_connections);
    let next_id = AtomicU64::new(0);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors below the cap (the daemon's other files): free
                    // some by closing the longest-idle connections, as the cap would, rather
                    // than let silent clients keep the socket unusable.
                    let out_of_fds = matches!(rustix::io::Errno::from_io_error(&e), Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE));
                    if out_of_fds && registry.evict_idle(EVICT_BATCH) > 0 {
                        tokio::time::sleep(EVICT_PAUSE).await;
                    } else {
                        tracing::warn!(error = %e, "API socket: accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evict: Notify::new(),
        });
        if !registry.admit(id, conn.clone(), max) {
            tracing::debug!(
                max,
                "API socket: every connection is busy; refusing a new one"
            );
            drop(stream);
            continue;
        }
        let task = Connection {
            id,
            conn,
            registry: registry.clone(),
            app: app.clone(),
            timeout: options.header_read_timeout,
            stop: stop_rx.clone(),
            _done: done_tx.clone(),
        };
        tokio::spawn(task.run(stream));
    }
    let _ = stop_tx.send(true);
    drop(done_tx);
    // Every connection task holds a sender; `None` means the last one has ended.
    let _ = done_rx.recv().await;
    Ok(())
}

/// One connection's task.
struct Connection {
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    app: Router,
    timeout: Duration,
    stop: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
}

impl Connection {
    async fn run(mut self, stream: UnixStream) {
        let conn = self.conn.clone();
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::enter(conn.clone());
            let mut app = app.clone();
            async move {
                let req: Request = req.map(Body::new);
                let resp = tower_service::Service::call(&mut app, req).await?;
                Ok::<_, std::convert::Infallible>(
                    resp.map(|inner| Body::new(TrackedBody { inner, _busy: busy })),
                )
            }
        });
        let http = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(http);
        let mut stopping = *self.stop.borrow();
        if stopping {
            http.as_mut().graceful_shutdown();
        }
        loop {
            let deadline = if self.conn.is_idle() {
                self.conn.idle_since() + self.timeout
            } else {
                // Busy: look again after a full timeout (it may be idle by then).
                Instant::now() + self.timeout
            };
            tokio::select! {
                r = http.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "API connection ended with an error");
                    }
                    break;
                }
                () = self.conn.evict.notified() => {
                    tracing::debug!("API connection closed: evicted at the connection cap");
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if self.idle_too_long() {
                        tracing::debug!(
                            timeout = ?self.timeout,
                            "API connection closed: no request head in time"
                        );
                        break;
                    }
                }
                _ = self.stop.changed(), if !stopping => {
                    // A change is the stop signal; an error means the loop itself is gone.
                    stopping = true;
                    http.as_mut().graceful_shutdown();
                }
            }
        }
        self.registry.remove(self.id);
    }

    fn idle_too_long(&self) -> bool {
        self.conn.is_idle() && self.conn.idle_since() + self.timeout <= Instant::now()
    }
}
