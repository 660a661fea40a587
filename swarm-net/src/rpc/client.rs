//! The client side: a [`Client`] keeps one connection per peer, opens one stream per call, and
//! enforces deadlines and cancellation.
//!
//! A peer is an address plus the identity the caller expects there ([`Peer`]). After every
//! handshake the server's certificate subject is compared with it and the connection is closed,
//! before any call is sent, if it names another node or role. Connections are made on demand,
//! shared by every call to the same peer, and re-made after they break, with exponential backoff
//! between failed attempts (one attempt at a time per peer; other callers wait for its result).
//!
//! Dropping a call's future (or its [`Streaming`] handle) cancels it: the stream is reset both
//! ways and the server drops its handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use serde::{de::DeserializeOwned, Serialize};
use swarm_core::Id;
use tokio::time::Instant;

use crate::identity::Role;
use crate::rpc::config::RpcConfig;
use crate::rpc::error::{from_stream, RpcError};
use crate::rpc::frame::{self, FrameKind};
use crate::rpc::method::{MethodDescriptor, ServerStreaming, Unary};
use crate::rpc::peer::PeerInfo;
use crate::rpc::status::Status;
use crate::rpc::tls::TlsState;
use crate::rpc::wire::{self, RequestHead, CANCELLED, WRONG_PEER};

/// A server to call: where it is and who it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// UDP address.
    pub addr: SocketAddr,
    /// The role its certificate must state.
    pub role: Role,
    /// Its node id, where the caller knows it (a joining node knows only the address).
    pub node_id: Option<Id>,
}

#[derive(Default)]
struct Slot {
    conn: Option<quinn::Connection>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Makes calls; cheap to share (`Arc`).
pub struct Client {
    endpoint: quinn::Endpoint,
    quic: quinn::ClientConfig,
    config: RpcConfig,
    tls: Arc<TlsState>,
    peers: Mutex<HashMap<Peer, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl Client {
    /// A client on a new UDP socket bound to `addr` (port 0 for any).
    pub fn bind(
        addr: SocketAddr,
        tls: Arc<TlsState>,
        config: RpcConfig,
    ) -> Result<Client, RpcError> {
        let endpoint = config
            .endpoint_with(addr, None, tls.endpoint_config())
            .map_err(|e| RpcError::Endpoint(format!("cannot bind {addr}: {e}")))?;
        Client::on(endpoint, tls, config)
    }

    /// A client on an existing endpoint (a server's, to share its port, or a simulated one). To put
    /// many identities on one socket, see [`crate::rpc::ClientEndpoint`].
    pub fn on(
        endpoint: quinn::Endpoint,
        tls: Arc<TlsState>,
        config: RpcConfig,
    ) -> Result<Client, RpcError> {
        let quic = config.client_config(&tls)?;
        Ok(Client {
            endpoint,
            quic,
            config,
            tls,
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// The client's endpoint (to close it, or read its address).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Calls unary `method` on `peer`, waiting at most `timeout` in all (connecting included).
    pub async fn unary<Req, Resp>(
        &self,
        peer: &Peer,
        method: &Unary<Req, Resp>,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let desc = method.descriptor();
        let deadline = Instant::now() + timeout;
        let call = async {
            let (mut call, mut recv) = self.start(peer, desc, request, Some(deadline)).await?;
            let reply: Option<Result<Resp, Status>> =
                frame::read(&mut recv, wire::response_kind(desc))
                    .await
                    .map_err(from_stream)?;
            call.finish();
            match reply {
                Some(Ok(resp)) => Ok(resp),
                Some(Err(status)) => Err(status.into()),
                None => Err(RpcError::Protocol(format!(
                    "{} ended without a response",
                    desc.name
                ))),
            }
        };
        match tokio::time::timeout_at(deadline, call).await {
            Err(_) => Err(RpcError::DeadlineExceeded),
            // The server resets the stream when the deadline we announced passes; if its reset
            // is read before our own timer fires, the cause is still the deadline.
            Ok(Err(RpcError::Unavailable(_))) if Instant::now() >= deadline => {
                Err(RpcError::DeadlineExceeded)
            }
            Ok(result) => result,
        }
    }

    /// Calls server-streaming `method` on `peer`. `timeout` (None: none) bounds the whole stream,
    /// connecting included.
    pub async fn server_streaming<Req, Item>(
        &self,
        peer: &Peer,
        method: &ServerStreaming<Req, Item>,
        request: &Req,
        timeout: Option<Duration>,
    ) -> Result<Streaming<Item>, RpcError>
    where
        Req: Serialize,
        Item: DeserializeOwned,
    {
        let desc = method.descriptor();
        let deadline = timeout.map(|t| Instant::now() + t);
        let start = self.start(peer, desc, request, deadline);
        let (call, recv) = match deadline {
            Some(at) => tokio::time::timeout_at(at, start)
                .await
                .unwrap_or(Err(RpcError::DeadlineExceeded))?,
            None => start.await?,
        };
        Ok(Streaming {
            call,
            recv,
            kind: wire::response_kind(desc),
            deadline,
            ended: false,
            _item: std::marker::PhantomData,
        })
    }

    /// [`Client::open_stream`], the sending half guarded: dropped unfinished, it cancels the call.
    async fn start<Req: Serialize>(
        &self,
        peer: &Peer,
        desc: &MethodDescriptor,
        request: &Req,
        deadline: Option<Instant>,
    ) -> Result<(CallGuard, RecvStream), RpcError> {
        let (send, recv) = self.open_stream(peer, desc, request, deadline).await?;
        Ok((CallGuard { send, done: false }, recv))
    }

    /// Encodes the request (refusing it locally if over the limit), gets a connection, opens a
    /// stream and sends head and request.
    pub(crate) async fn open_stream<Req: Serialize>(
        &self,
        peer: &Peer,
        desc: &MethodDescriptor,
        request: &Req,
        deadline: Option<Instant>,
    ) -> Result<(SendStream, RecvStream), RpcError> {
        let head = frame::encode(
            wire::HEAD,
            &RequestHead {
                method: desc.name.to_string(),
                timeout_ms: deadline
                    .map(|at| at.saturating_duration_since(Instant::now()).as_millis() as u64),
            },
        )?;
        let body = frame::encode(wire::request_kind(desc), request)?;
        // A connection that turns out to be closed when the stream is opened has carried nothing of
        // this call, so one fresh connection is tried before giving up.
        let mut attempts = 0;
        let (send, recv) = loop {
            attempts += 1;
            let conn = self.connection(peer).await?;
            match conn.open_bi().await {
                Ok(pair) => break pair,
                Err(e) if attempts < 2 => {
                    tracing::debug!(addr = %peer.addr, error = %e, "stale connection; reconnecting");
                    self.forget(peer, &conn).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut send = send;
        let mut bytes = head;
        bytes.extend_from_slice(&body);
        if let Err(e) = send.write_all(&bytes).await {
            let _ = send.reset(CANCELLED.into());
            return Err(from_stream(frame::FrameError::Io {
                kind: desc.name,
                source: e.into(),
            }));
        }
        Ok((send, recv))
    }

    fn slot(&self, peer: &Peer) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.entry(*peer).or_default().clone()
    }

    async fn forget(&self, peer: &Peer, conn: &quinn::Connection) {
        let slot = self.slot(peer);
        let mut slot = slot.lock().await;
        if slot.conn.as_ref().map(|c| c.stable_id()) == Some(conn.stable_id()) {
            slot.conn = None;
        }
    }

    /// The live connection to `peer`, made if needed. Waits out the backoff of earlier failures;
    /// the caller's deadline bounds everything.
    async fn connection(&self, peer: &Peer) -> Result<quinn::Connection, RpcError> {
        let slot = self.slot(peer);
        let mut slot = slot.lock().await;
        if let Some(conn) = &slot.conn {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
            slot.conn = None;
        }
        loop {
            if let Some(at) = slot.retry_at {
                tokio::time::sleep_until(at).await;
            }
            let attempt = tokio::time::timeout(self.config.connect_timeout, self.connect(peer))
                .await
                .unwrap_or_else(|_| Err(RpcError::Unavailable("handshake timed out".into())));
            match attempt {
                Ok(conn) => {
                    *slot = Slot {
                        conn: Some(conn.clone()),
                        failures: 0,
                        retry_at: None,
                    };
                    return Ok(conn);
                }
                Err(e) => {
                    slot.failures = slot.failures.saturating_add(1);
                    slot.retry_at = Some(Instant::now() + self.config.backoff(slot.failures));
                    tracing::debug!(addr = %peer.addr, failures = slot.failures, error = %e, "connection attempt failed");
                    // Refusals (authentication, wrong peer) will not pass on retry: report them.
                    if !e.is_transient() {
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn connect(&self, peer: &Peer) -> Result<quinn::Connection, RpcError> {
        // The name is not checked (see tls.rs); the identity is, below.
        let connecting = self
            .endpoint
            .connect_with(self.quic.clone(), peer.addr, "swarm")
            .map_err(|e| RpcError::Endpoint(format!("cannot connect to {}: {e}", peer.addr)))?;
        let conn = connecting.await.map_err(|e| match RpcError::from(e) {
            RpcError::ProtocolVersion { .. } => RpcError::ProtocolVersion {
                ours: String::from_utf8_lossy(&self.config.alpn_protocol).into_owned(),
            },
            other => other,
        })?;
        let info = match PeerInfo::of(&conn) {
            Ok(Some(info)) => info,
            Ok(None) => {
                conn.close(WRONG_PEER.into(), b"no certificate");
                return Err(RpcError::Authentication(
                    "the server presented no certificate".into(),
                ));
            }
            Err(reason) => {
                conn.close(WRONG_PEER.into(), b"unreadable certificate");
                return Err(RpcError::Authentication(format!(
                    "the server's certificate is not a node certificate: {reason}"
                )));
            }
        };
        let found = info.identity;
        let own_cluster = self.tls.identity().map(|i| i.cluster_id);
        let wrong = found.role != peer.role
            || peer.node_id.is_some_and(|id| id != found.node_id)
            || own_cluster.is_some_and(|c| c != found.cluster_id);
        if wrong {
            conn.close(WRONG_PEER.into(), b"not the expected peer");
            return Err(RpcError::wrong_peer(
                peer.role,
                peer.node_id,
                own_cluster,
                found,
            ));
        }
        Ok(conn)
    }
}

/// The sending half of a call; resets it (cancelling the call on the server) unless finished.
struct CallGuard {
    send: SendStream,
    done: bool,
}

impl CallGuard {
    fn finish(&mut self) {
        self.done = true;
        let _ = self.send.finish();
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.send.reset(CANCELLED.into());
        }
    }
}

/// The items of a server-streaming call. Dropping it cancels the call.
pub struct Streaming<T> {
    call: CallGuard,
    recv: RecvStream,
    kind: FrameKind,
    deadline: Option<Instant>,
    ended: bool,
    _item: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Streaming<T> {
    /// The next item; `None` once the server has ended the stream successfully. After an error the
    /// stream is over.
    pub async fn next(&mut self) -> Option<Result<T, RpcError>> {
        if self.ended {
            return None;
        }
        let read = frame::read::<Result<T, Status>, _>(&mut self.recv, self.kind);
        let got = match self.deadline {
            Some(at) => tokio::time::timeout_at(at, read).await.unwrap_or_else(|_| {
                Ok(Some(Err(Status::new(
                    crate::rpc::status::Code::DeadlineExceeded,
                    "stream deadline passed",
                ))))
            }),
            None => read.await,
        };
        let out = match got {
            Ok(Some(Ok(item))) => return Some(Ok(item)),
            Ok(Some(Err(status))) => Some(Err(status.into())),
            Ok(None) => {
                self.call.finish();
                None
            }
            Err(e) => Some(Err(from_stream(e))),
        };
        self.ended = true;
        if out.is_some() {
            let _ = self.recv.stop(CANCELLED.into());
        }
        out
    }
}
