//! [`RpcError`]: why a call failed, as the caller sees it.

use crate::identity::{NodeIdentity, Role};
use crate::rpc::frame::FrameError;
use crate::rpc::status::{Code, Status};
use crate::rpc::tls::TlsError;

/// Why a call (or a server start) failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// TLS refused the peer, or the peer refused us: a certificate not chained to the cluster
    /// roots, expired, absent where required, or the node removed. With TLS 1.3 a server's refusal
    /// of our client certificate arrives only after the client finished its handshake, so it shows
    /// here on the first call, not as a network error. Renewing or re-joining may fix it; retrying
    /// as is will not.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// The server's certificate is valid but names a different node or role than the caller
    /// expected; the connection was closed before any call was sent.
    #[error("expected {expected}, but the peer's certificate is {found}")]
    WrongPeer {
        /// What the caller asked for.
        expected: String,
        /// What the certificate says.
        found: NodeIdentity,
    },
    /// The peer does not speak our protocol version (TLS ALPN, [`crate::rpc::RpcConfig::alpn_protocol`]):
    /// it runs a release whose wire or store encodings differ. Not retried: upgrade one side.
    #[error(
        "the peer speaks a different protocol version: we offered {ours:?} and it accepts none of \
         it (nodes of different releases or store encodings cannot work together)"
    )]
    ProtocolVersion {
        /// The protocol version this node offered.
        ours: String,
    },
    /// The caller's role may not call this method.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The deadline passed before the call finished (the server is told by the stream reset).
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The peer could not be reached, or the connection broke during the call. Safe to retry for
    /// idempotent methods.
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    /// The server returned an error status.
    #[error("call failed: {0}")]
    Status(Status),
    /// A message was over its limit, or malformed: locally (the request was not sent) or from the
    /// peer (the call was abandoned without reading the rest).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer broke the protocol (for example: ended a unary call without a response).
    #[error("protocol violation by the peer: {0}")]
    Protocol(String),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The local endpoint could not be created or used.
    #[error("endpoint error: {0}")]
    Endpoint(String),
}

impl RpcError {
    /// Whether a new connection attempt might succeed where this one failed.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, RpcError::Unavailable(_) | RpcError::DeadlineExceeded)
    }

    pub(crate) fn wrong_peer(
        role: Role,
        node_id: Option<swarm_core::Id>,
        cluster: Option<swarm_core::Id>,
        found: NodeIdentity,
    ) -> Self {
        let mut expected = match node_id {
            Some(id) => format!("node {id} ({role})"),
            None => format!("a {role}"),
        };
        if let Some(cluster) = cluster {
            expected.push_str(&format!(" of cluster {cluster}"));
        }
        RpcError::WrongPeer { expected, found }
    }
}

impl From<Status> for RpcError {
    fn from(s: Status) -> Self {
        match s.code {
            Code::Unauthenticated => RpcError::Authentication(s.message),
            Code::PermissionDenied => RpcError::PermissionDenied(s.message),
            Code::DeadlineExceeded => RpcError::DeadlineExceeded,
            _ => RpcError::Status(s),
        }
    }
}

/// The QUIC CRYPTO_ERROR of TLS alert `no_application_protocol` (120): the server accepts none of
/// the ALPN protocols the client offered.
const NO_APPLICATION_PROTOCOL: u64 = 0x100 + 120;

/// Is `code` a QUIC CRYPTO_ERROR (0x100..=0x1ff: a TLS alert)?
fn is_tls_alert(code: u64) -> bool {
    (0x100..=0x1ff).contains(&code)
}

impl From<&quinn::ConnectionError> for RpcError {
    fn from(e: &quinn::ConnectionError) -> Self {
        use quinn::ConnectionError as E;
        match e {
            E::ConnectionClosed(c) if u64::from(c.error_code) == NO_APPLICATION_PROTOCOL => {
                RpcError::ProtocolVersion {
                    ours: "(unknown)".into(),
                }
            }
            E::TransportError(t) if is_tls_alert(u64::from(t.code)) => {
                RpcError::Authentication(format!("we refused the peer's certificate: {t}"))
            }
            E::ConnectionClosed(c) if is_tls_alert(u64::from(c.error_code)) => {
                RpcError::Authentication(format!(
                    "the peer refused our TLS handshake (certificate missing, expired, or not \
                     of this cluster): {c}"
                ))
            }
            other => RpcError::Unavailable(other.to_string()),
        }
    }
}

impl From<quinn::ConnectionError> for RpcError {
    fn from(e: quinn::ConnectionError) -> Self {
        RpcError::from(&e)
    }
}

/// Maps a frame error on a QUIC stream: a lost connection becomes the connection's error (so a TLS
/// refusal surfaces as [`RpcError::Authentication`]), a reset stream becomes `Unavailable`.
pub(crate) fn from_stream(e: FrameError) -> RpcError {
    if let FrameError::Io { source, .. } = &e {
        if let Some(inner) = source.get_ref() {
            if let Some(r) = inner.downcast_ref::<quinn::ReadError>() {
                return match r {
                    quinn::ReadError::ConnectionLost(c) => c.into(),
                    other => RpcError::Unavailable(format!("the peer abandoned the call: {other}")),
                };
            }
            if let Some(w) = inner.downcast_ref::<quinn::WriteError>() {
                return match w {
                    quinn::WriteError::ConnectionLost(c) => c.into(),
                    other => RpcError::Unavailable(format!("the peer abandoned the call: {other}")),
                };
            }
        }
    }
    RpcError::Frame(e)
}
