//! The server side: a [`Router`] of handlers and a [`Server`] that accepts connections and runs
//! one task per call.
//!
//! Per call: read the head, look the method up, check authorization (role table, cluster,
//! certificate expiry, the embedder's [`PeerPolicy`]) **before** reading the request, read the
//! request against the method's limit, then run the handler raced against the caller cancelling
//! and the deadline the caller announced. A refused call gets a [`Status`] frame; a refused frame
//! also stops the stream so the rest is never read.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use serde::{de::DeserializeOwned, Serialize};
use swarm_core::Clock;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::rpc::config::RpcConfig;
use crate::rpc::duplex::DuplexCall;
use crate::rpc::error::RpcError;
use crate::rpc::frame::{self, FrameKind};
use crate::rpc::method::{authorize, MethodDescriptor, ServerStreaming, Unary};
use crate::rpc::peer::{check_expiry, AdmitAll, PeerInfo, PeerPolicy, SharedClock, SystemClock};
use crate::rpc::status::{Code, Status};
use crate::rpc::tls::TlsState;
use crate::rpc::wire::{self, RequestHead, CANCELLED, REFUSED, SHUTDOWN};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type CallHandler = Arc<dyn Fn(CallContext, Vec<u8>, Responder) -> BoxFuture + Send + Sync>;
pub(crate) type DuplexHandler =
    Arc<dyn Fn(CallContext, Vec<u8>, DuplexCall) -> BoxFuture + Send + Sync>;

/// A registered handler: calls answer through a [`Responder`]; duplex calls own their streams.
#[derive(Clone)]
pub(crate) enum Handler {
    Call(CallHandler),
    Duplex(DuplexHandler),
}

/// What a handler knows about its call.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller, if it presented a certificate (always, except for anonymous methods).
    pub peer: Option<PeerInfo>,
    /// The caller's address.
    pub remote: SocketAddr,
    /// The method called.
    pub method: &'static str,
}

/// The methods a server serves.
#[derive(Default, Clone)]
pub struct Router {
    pub(crate) routes: HashMap<&'static str, (MethodDescriptor, Handler)>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// Serves unary `method` with `handler`. A later registration of the same name replaces it.
    pub fn unary<Req, Resp, F, Fut>(mut self, method: &Unary<Req, Resp>, handler: F) -> Router
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(CallContext, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let desc = *method.descriptor();
        let handler = Arc::new(handler);
        let erased: CallHandler = Arc::new(move |ctx, payload, mut out| {
            let handler = handler.clone();
            Box::pin(async move {
                let reply = match frame::decode_payload::<Req>(wire::request_kind(&desc), &payload)
                {
                    Ok(req) => handler(ctx, req).await,
                    Err(e) => Err(Status::new(Code::InvalidArgument, e.to_string())),
                };
                out.reply(&reply).await;
            })
        });
        self.routes.insert(desc.name, (desc, Handler::Call(erased)));
        self
    }

    /// Serves server-streaming `method`: `handler` sends items through the [`ItemSender`] and
    /// returns when the stream is complete (`Err` ends it with that status).
    pub fn server_streaming<Req, Item, F, Fut>(
        mut self,
        method: &ServerStreaming<Req, Item>,
        handler: F,
    ) -> Router
    where
        Req: DeserializeOwned + Send + 'static,
        Item: Serialize + Send + 'static,
        F: Fn(CallContext, Req, ItemSender<Item>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        let desc = *method.descriptor();
        let handler = Arc::new(handler);
        let erased: CallHandler = Arc::new(move |ctx, payload, out| {
            let handler = handler.clone();
            Box::pin(async move {
                let req = match frame::decode_payload::<Req>(wire::request_kind(&desc), &payload) {
                    Ok(req) => req,
                    Err(e) => {
                        let mut out = out;
                        let err: Result<Item, Status> =
                            Err(Status::new(Code::InvalidArgument, e.to_string()));
                        out.reply(&err).await;
                        return;
                    }
                };
                let (sender, shared) = ItemSender::new(out);
                let end = handler(ctx, req, sender).await;
                // The handler gave its sender back by dropping it; take the stream to finish it.
                let Some(mut out) = shared.lock().await.take() else {
                    return;
                };
                match end {
                    Ok(()) => out.finish(),
                    Err(status) => out.reply(&Err::<Item, Status>(status)).await,
                }
            })
        });
        self.routes.insert(desc.name, (desc, Handler::Call(erased)));
        self
    }
}

/// Writes a call's response frames; resets the stream if dropped before finishing (the handler was
/// cancelled), so the caller never mistakes a half-written reply for a complete one.
pub(crate) struct Responder {
    send: SendStream,
    kind: FrameKind,
    done: bool,
}

impl Responder {
    /// Writes the one reply frame and finishes the stream. Encodes before returning the future, so
    /// the handler's types need not be `Sync`.
    fn reply<T: Serialize>(
        &mut self,
        reply: &Result<T, Status>,
    ) -> impl Future<Output = ()> + Send + '_ {
        let bytes = frame::encode(self.kind, reply).or_else(|e| {
            let status = Status::new(Code::ResourceExhausted, e.to_string());
            frame::encode(self.kind, &Err::<(), Status>(status))
        });
        async move {
            if let Ok(bytes) = bytes {
                if self.send.write_all(&bytes).await.is_ok() {
                    self.finish();
                }
            }
        }
    }

    async fn write_item(&mut self, bytes: Vec<u8>) -> Result<(), Status> {
        self.send
            .write_all(&bytes)
            .await
            .map_err(|e| Status::new(Code::Unavailable, format!("the caller went away: {e}")))
    }

    fn finish(&mut self) {
        self.done = true;
        // Already reset or closed by the peer: nothing more to tell it.
        let _ = self.send.finish();
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.send.reset(CANCELLED.into());
        }
    }
}

/// Sends the items of a server stream.
pub struct ItemSender<T> {
    out: Arc<tokio::sync::Mutex<Option<Responder>>>,
    kind: FrameKind,
    _item: std::marker::PhantomData<fn(T)>,
}

impl<T: Serialize> ItemSender<T> {
    fn new(out: Responder) -> (ItemSender<T>, Arc<tokio::sync::Mutex<Option<Responder>>>) {
        let kind = out.kind;
        let out = Arc::new(tokio::sync::Mutex::new(Some(out)));
        (
            ItemSender {
                out: out.clone(),
                kind,
                _item: std::marker::PhantomData,
            },
            out,
        )
    }

    /// Sends one item; waits while the caller is slow (QUIC flow control). `Err` means the caller is
    /// gone (or the item is over the method's limit): stop producing.
    pub fn send(&mut self, item: &T) -> impl Future<Output = Result<(), Status>> + Send + '_ {
        // Encoded before the first await, so items need not be `Sync`.
        let bytes = frame::encode(self.kind, &Ok::<&T, Status>(item))
            .map_err(|e| Status::new(Code::ResourceExhausted, e.to_string()));
        async move {
            let bytes = bytes?;
            match self.out.lock().await.as_mut() {
                Some(out) => out.write_item(bytes).await,
                None => Err(Status::new(Code::Unavailable, "the stream has ended")),
            }
        }
    }
}

struct Shared {
    router: Router,
    policy: Arc<dyn PeerPolicy>,
    clock: SharedClock,
    tls: Arc<TlsState>,
}

/// A running RPC server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    endpoint: quinn::Endpoint,
    accept: JoinHandle<()>,
}

/// Optional parts of a server.
pub struct ServerOptions {
    /// Extra admission rule (for example the CA's deny set of removed nodes).
    pub policy: Arc<dyn PeerPolicy>,
    /// Clock for certificate-expiry checks on open connections.
    pub clock: Arc<dyn Clock>,
    /// Handshakes run at once ([`DEFAULT_MAX_HANDSHAKES`]); later connection attempts wait their
    /// turn in arrival order. Without a bound a herd of clients (every worker of a cluster
    /// reconnecting to a new leader) makes every handshake progress at once, each slower than the
    /// clients' handshake timeout and the connections' idle timeout, and the server ends up
    /// dropping connections its clients already use (they see "reset by peer").
    pub max_handshakes: usize,
    /// A connection attempt that waited this long for its turn is dropped unanswered
    /// ([`DEFAULT_HANDSHAKE_QUEUE_TIMEOUT`], a client's default handshake timeout): its client has
    /// given up on it, so answering would only spend the server's time. A client still trying
    /// retransmits, and its retransmission queues afresh.
    pub handshake_queue_timeout: Duration,
}

/// Default of [`ServerOptions::max_handshakes`].
pub const DEFAULT_MAX_HANDSHAKES: usize = 32;
/// Default of [`ServerOptions::handshake_queue_timeout`]: [`RpcConfig`]'s default
/// `connect_timeout`.
pub const DEFAULT_HANDSHAKE_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            policy: Arc::new(AdmitAll),
            clock: Arc::new(SystemClock),
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            handshake_queue_timeout: DEFAULT_HANDSHAKE_QUEUE_TIMEOUT,
        }
    }
}

impl Server {
    /// Binds a UDP socket on `addr` and serves `router` with the credentials in `tls`.
    pub fn bind(
        addr: SocketAddr,
        tls: Arc<TlsState>,
        config: &RpcConfig,
        router: Router,
        options: ServerOptions,
    ) -> Result<Server, RpcError> {
        let endpoint = config
            .endpoint_with(
                addr,
                Some(config.server_config(&tls)?),
                tls.endpoint_config(),
            )
            .map_err(|e| RpcError::Endpoint(format!("cannot bind {addr}: {e}")))?;
        Ok(Server::serve(endpoint, tls, router, options))
    }

    /// Serves on an existing endpoint, which must already carry a server configuration from
    /// [`RpcConfig::server_config`] for the same `tls` (used by the simulation).
    pub fn serve(
        endpoint: quinn::Endpoint,
        tls: Arc<TlsState>,
        router: Router,
        options: ServerOptions,
    ) -> Server {
        let shared = Arc::new(Shared {
            router,
            policy: options.policy,
            clock: options.clock,
            tls,
        });
        let ep = endpoint.clone();
        let handshakes = Arc::new(Semaphore::new(options.max_handshakes.max(1)));
        let queue_timeout = options.handshake_queue_timeout;
        let accept = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let arrived = tokio::time::Instant::now();
                let (shared, handshakes) = (shared.clone(), handshakes.clone());
                tokio::spawn(async move {
                    // The semaphore is fair: attempts take their turn in arrival order.
                    let Ok(permit) = handshakes.acquire_owned().await else {
                        return;
                    };
                    if arrived.elapsed() >= queue_timeout {
                        tracing::debug!(remote = %incoming.remote_address(), "connection attempt waited too long for a handshake slot; dropped");
                        incoming.ignore();
                        return;
                    }
                    serve_connection(shared, incoming, permit).await;
                });
            }
        });
        Server { endpoint, accept }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, RpcError> {
        self.endpoint
            .local_addr()
            .map_err(|e| RpcError::Endpoint(e.to_string()))
    }

    /// The server's endpoint (to read counters, or to share it with a [`crate::rpc::Client`]).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Connections currently open (handshaking ones included).
    pub fn open_connections(&self) -> usize {
        self.endpoint.open_connections()
    }

    /// Closes every connection (peers see the close at once rather than at their idle timeout)
    /// and stops accepting. Waits at most `grace` for the close to reach the peers.
    pub async fn shutdown(self, grace: Duration) {
        self.endpoint
            .close(SHUTDOWN.into(), b"server shutting down");
        let _ = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
        self.accept.abort();
    }
}

/// Completes `incoming`'s handshake holding `slot` (one of the server's handshake slots), then
/// serves the connection's calls.
async fn serve_connection(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    slot: OwnedSemaphorePermit,
) {
    let remote = incoming.remote_address();
    let handshake = incoming.await;
    drop(slot);
    let conn = match handshake {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "handshake refused");
            return;
        }
    };
    let peer = match PeerInfo::of(&conn) {
        Ok(peer) => {
            tracing::trace!(%remote, node = ?peer.map(|p| p.identity.node_id), "connection accepted");
            peer
        }
        Err(reason) => {
            tracing::debug!(%remote, %reason, "unreadable peer certificate");
            conn.close(REFUSED.into(), b"unreadable certificate");
            return;
        }
    };
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(serve_call(shared.clone(), peer, remote, send, recv));
    }
}

async fn serve_call(
    shared: Arc<Shared>,
    peer: Option<PeerInfo>,
    remote: SocketAddr,
    send: SendStream,
    mut recv: RecvStream,
) {
    let head: RequestHead = match frame::read(&mut recv, wire::HEAD).await {
        Ok(Some(head)) => head,
        // Not a call (or the caller gave up at once): nothing to answer.
        _ => {
            let _ = recv.stop(REFUSED.into());
            return;
        }
    };
    let Some((desc, handler)) = shared.router.routes.get(head.method.as_str()) else {
        let mut out = refuse(send, &mut recv);
        let status = Status::new(Code::Unimplemented, format!("no method {:?}", head.method));
        out.reply(&Err::<(), Status>(status)).await;
        return;
    };
    let handler = match handler {
        Handler::Call(h) => h,
        Handler::Duplex(h) => {
            // A duplex call has no deadline: the handler owns both halves and sees a reset or a
            // lost connection in its own reads and writes.
            let call = DuplexCall::new(desc, send, recv);
            let ctx = CallContext {
                peer,
                remote,
                method: desc.name,
            };
            serve_duplex(&shared, desc, h, ctx, call).await;
            return;
        }
    };
    let mut out = Responder {
        send,
        kind: wire::response_kind(desc),
        done: false,
    };
    if let Err(status) = admit(&shared, desc, peer.as_ref()) {
        let _ = recv.stop(REFUSED.into());
        out.reply(&Err::<(), Status>(status)).await;
        return;
    }
    let payload = match read_payload(&mut recv, wire::request_kind(desc)).await {
        Ok(payload) => payload,
        Err(status) => {
            let _ = recv.stop(REFUSED.into());
            out.reply(&Err::<(), Status>(status)).await;
            return;
        }
    };
    let ctx = CallContext {
        peer,
        remote,
        method: desc.name,
    };
    let deadline = head
        .timeout_ms
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let run = handler(ctx, payload, out);
    tokio::select! {
        () = run => {}
        () = cancelled(&mut recv) => tracing::debug!(method = desc.name, "call cancelled by the caller"),
        () = expire(deadline) => tracing::debug!(method = desc.name, "call deadline passed"),
    }
}

/// Admits a duplex call, reads its header and hands it to `handler`.
async fn serve_duplex(
    shared: &Shared,
    desc: &MethodDescriptor,
    handler: &DuplexHandler,
    ctx: CallContext,
    mut call: DuplexCall,
) {
    if let Err(status) = admit(shared, desc, ctx.peer.as_ref()) {
        call.refuse(status).await;
        return;
    }
    match read_payload(call.recv_mut(), wire::request_kind(desc)).await {
        Ok(payload) => handler(ctx, payload, call).await,
        Err(status) => call.refuse(status).await,
    }
}

fn refuse(send: SendStream, recv: &mut RecvStream) -> Responder {
    let _ = recv.stop(REFUSED.into());
    Responder {
        send,
        kind: wire::response_kind(&MethodDescriptor {
            name: "refusal",
            kind: crate::rpc::method::CallKind::Unary,
            access: crate::rpc::method::Access::Anonymous,
            max_request: 0,
            max_response: 0,
        }),
        done: false,
    }
}

fn admit(shared: &Shared, desc: &MethodDescriptor, peer: Option<&PeerInfo>) -> Result<(), Status> {
    let cluster = shared.tls.identity().map(|i| i.cluster_id);
    authorize(desc.access, peer.map(|p| &p.identity), cluster)?;
    if let Some(peer) = peer {
        if desc.access != crate::rpc::method::Access::Anonymous {
            let now = shared.clock.now();
            check_expiry(peer, now)?;
            shared.policy.check(peer, now)?;
        }
    }
    Ok(())
}

/// Reads the request payload as raw bytes (decoded by the typed handler); the limit is checked on
/// the prefix before the buffer is allocated.
pub(crate) async fn read_payload(
    recv: &mut RecvStream,
    kind: FrameKind,
) -> Result<Vec<u8>, Status> {
    let mut prefix = [0u8; frame::PREFIX_LEN];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| Status::new(Code::InvalidArgument, format!("no request: {e}")))?;
    let len = frame::check_prefix(kind, prefix)
        .map_err(|e| Status::new(Code::ResourceExhausted, e.to_string()))?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload)
        .await
        .map_err(|e| Status::new(Code::InvalidArgument, format!("request truncated: {e}")))?;
    Ok(payload)
}

/// Completes when the caller resets its side of the stream (cancellation) or the connection is
/// lost; never when it simply finishes.
async fn cancelled(recv: &mut RecvStream) {
    let mut buf = [0u8; 64];
    loop {
        match recv.read(&mut buf).await {
            Err(_) => return,
            Ok(None) => std::future::pending::<()>().await,
            Ok(Some(_)) => {}
        }
    }
}

async fn expire(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
