//! Duplex calls: a typed header, then raw bytes both ways on one QUIC stream.
//!
//! ```text
//! client -> server   frame: RequestHead { method, timeout_ms: None }   (limit HEAD.limit)
//!                    frame: header                                    (limit: the method's)
//! server -> client   frame: Result<(), Status>        (accept, or the refusal and FIN)
//! then               raw bytes both ways; each side's FIN is its half-close, a reset its abort
//! ```
//!
//! # Policy
//! - Authorization is the same as for every method: role table, cluster, certificate expiry and
//!   the embedder's [`crate::rpc::PeerPolicy`], all checked before the header is read.
//! - The handler decides after reading the header: [`DuplexCall::accept`] hands it both halves,
//!   [`DuplexCall::refuse`] tells the caller why; dropping the call without either resets it.
//! - No deadline once accepted: the caller bounds only the opening
//!   ([`Client::open_duplex`]'s `timeout`); afterwards either side ends its half with
//!   `SendStream::finish` (the peer reads the end) or `SendStream::reset` (the peer reads an
//!   error), and a lost connection fails both halves' reads and writes.
//! - Concurrency: each open duplex call is one of the connection's
//!   [`crate::rpc::RpcConfig::max_concurrent_calls`] streams; an opener beyond it waits for one to
//!   end (within its `timeout`). An embedder bounds its own share below that.
//!
//! # What it does not do
//! No framing of the bytes after the accept: they are whatever the two sides agree on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use serde::{de::DeserializeOwned, Serialize};
use tokio::time::Instant;

use crate::rpc::client::{Client, Peer};
use crate::rpc::error::{from_stream, RpcError};
use crate::rpc::frame::{self, FrameKind};
use crate::rpc::method::{Duplex, MethodDescriptor};
use crate::rpc::server::{CallContext, DuplexHandler, Handler, Router};
use crate::rpc::status::{Code, Status};
use crate::rpc::wire::{self, CANCELLED, REFUSED};

/// The accept frame: `Ok(())` or the refusal.
fn accept_kind(desc: &MethodDescriptor) -> FrameKind {
    wire::response_kind(desc)
}

/// The server's side of a duplex call before it is accepted or refused. Dropping it without
/// either resets the stream (the caller sees the call fail).
pub struct DuplexCall {
    send: Option<SendStream>,
    recv: Option<RecvStream>,
    kind: FrameKind,
}

impl std::fmt::Debug for DuplexCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuplexCall")
            .field("method", &self.kind.name)
            .finish()
    }
}

impl DuplexCall {
    pub(crate) fn new(desc: &MethodDescriptor, send: SendStream, recv: RecvStream) -> DuplexCall {
        DuplexCall {
            send: Some(send),
            recv: Some(recv),
            kind: accept_kind(desc),
        }
    }

    pub(crate) fn recv_mut(&mut self) -> &mut RecvStream {
        // Both halves are present until accept or refuse, which consume the call.
        self.recv.as_mut().expect("duplex call already consumed")
    }

    /// Accepts the call: tells the caller, then hands over both halves for raw bytes. `Err`: the
    /// caller went away meanwhile.
    pub async fn accept(mut self) -> Result<(SendStream, RecvStream), Status> {
        let (Some(mut send), Some(recv)) = (self.send.take(), self.recv.take()) else {
            return Err(Status::new(Code::Internal, "duplex call already consumed"));
        };
        let bytes = frame::encode(self.kind, &Ok::<(), Status>(()))
            .map_err(|e| Status::new(Code::Internal, e.to_string()))?;
        send.write_all(&bytes)
            .await
            .map_err(|e| Status::new(Code::Unavailable, format!("the caller went away: {e}")))?;
        Ok((send, recv))
    }

    /// Refuses the call with `status` (the caller's [`Client::open_duplex`] returns it).
    pub async fn refuse(mut self, status: Status) {
        let (Some(mut send), Some(mut recv)) = (self.send.take(), self.recv.take()) else {
            return;
        };
        let _ = recv.stop(REFUSED.into());
        let bytes = frame::encode(self.kind, &Err::<(), Status>(status)).or_else(|e| {
            let status = Status::new(Code::ResourceExhausted, e.to_string());
            frame::encode(self.kind, &Err::<(), Status>(status))
        });
        if let Ok(bytes) = bytes {
            if send.write_all(&bytes).await.is_ok() {
                let _ = send.finish();
                return;
            }
        }
        let _ = send.reset(CANCELLED.into());
    }
}

impl Drop for DuplexCall {
    fn drop(&mut self) {
        if let Some(mut send) = self.send.take() {
            let _ = send.reset(CANCELLED.into());
        }
        if let Some(mut recv) = self.recv.take() {
            let _ = recv.stop(CANCELLED.into());
        }
    }
}

impl Router {
    /// Serves duplex `method`: `handler` gets the decoded header and the call, which it accepts
    /// (and then copies bytes on the halves) or refuses. The call ends when the handler returns
    /// (halves it dropped unfinished are finished by quinn: reset them to abort).
    pub fn duplex<Req, F, Fut>(mut self, method: &Duplex<Req>, handler: F) -> Router
    where
        Req: DeserializeOwned + Send + 'static,
        F: Fn(CallContext, Req, DuplexCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let desc = *method.descriptor();
        let handler = Arc::new(handler);
        let erased: DuplexHandler = Arc::new(move |ctx, payload, call: DuplexCall| {
            let handler = handler.clone();
            Box::pin(async move {
                match frame::decode_payload::<Req>(wire::request_kind(&desc), &payload) {
                    Ok(req) => handler(ctx, req, call).await,
                    Err(e) => {
                        call.refuse(Status::new(Code::InvalidArgument, e.to_string()))
                            .await
                    }
                }
            })
        });
        self.routes
            .insert(desc.name, (desc, Handler::Duplex(erased)));
        self
    }
}

impl Client {
    /// Opens duplex `method` on `peer` with `header`; waits at most `timeout` for the connection,
    /// a free stream and the server's accept. Returns the two halves for raw bytes: finish the
    /// [`SendStream`] to half-close, reset it to abort; the [`RecvStream`] reads the server's
    /// bytes until its half-close (an error if it reset or the connection was lost).
    pub async fn open_duplex<Req: Serialize>(
        &self,
        peer: &Peer,
        method: &Duplex<Req>,
        header: &Req,
        timeout: Duration,
    ) -> Result<(SendStream, RecvStream), RpcError> {
        let desc = method.descriptor();
        let deadline = Instant::now() + timeout;
        let open = async {
            let (mut send, mut recv) = self.open_stream(peer, desc, header, None).await?;
            let reply = frame::read::<Result<(), Status>, _>(&mut recv, accept_kind(desc)).await;
            let refused = match reply {
                Ok(Some(Ok(()))) => return Ok((send, recv)),
                Ok(Some(Err(status))) => status.into(),
                Ok(None) => RpcError::Protocol(format!("{} ended without an accept", desc.name)),
                Err(e) => from_stream(e),
            };
            let _ = send.reset(CANCELLED.into());
            let _ = recv.stop(CANCELLED.into());
            Err(refused)
        };
        tokio::time::timeout_at(deadline, open)
            .await
            .unwrap_or(Err(RpcError::DeadlineExceeded))
    }
}
