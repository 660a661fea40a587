//! QUIC RPC between swarm nodes: typed unary and server-streaming calls, and bidirectional byte
//! streams, over quinn with mutual TLS.
//!
//! # Layout
//! - [`frame`]: `u32` length + bincode frames, size-limited per kind before allocating.
//! - [`method`]: method descriptors ([`Unary`], [`ServerStreaming`]) and the authorization table.
//! - [`status`]: the error a server returns for one call.
//! - `wire`: the call protocol on one QUIC stream.
//! - [`tls`]: rustls configurations over hot-swappable credentials ([`TlsState`]).
//! - [`peer`]: the peer's identity from its certificate, and the embedder's admission hook.
//! - [`config`]: timeouts, keep-alive, backoff.
//! - [`server`]: [`Router`] and [`Server`].
//! - [`duplex`]: bidirectional byte streams ([`Duplex`] methods), both sides.
//! - [`client`]: [`Client`], its connection pool, deadlines and cancellation.
//! - [`endpoint`]: [`ClientEndpoint`], one socket shared by the clients of many identities.
//!
//! swarm-net declares no service. An embedder declares its methods as constants, for example
//!
//! ```
//! use swarm_net::rpc::{Access, Unary};
//! const PING: Unary<u64, u64> = Unary::new("example.ping", Access::Node, 64, 64);
//! ```
//!
//! and registers handlers for them on a [`Router`].

pub mod client;
pub mod config;
pub mod duplex;
pub mod endpoint;
mod error;
pub mod frame;
pub mod method;
pub mod peer;
pub mod server;
pub mod status;
pub mod tls;
mod wire;

pub use client::{Client, Peer, Streaming};
pub use config::RpcConfig;
pub use duplex::DuplexCall;
pub use endpoint::ClientEndpoint;
pub use error::RpcError;
pub use method::{Access, CallKind, Duplex, MethodDescriptor, ServerStreaming, Unary};
pub use peer::{AdmitAll, PeerInfo, PeerPolicy, SystemClock};
/// The halves of a duplex call (quinn's streams: tokio `AsyncWrite` / `AsyncRead`).
pub use quinn::{RecvStream, SendStream};
pub use server::{
    CallContext, ItemSender, Router, Server, ServerOptions, DEFAULT_HANDSHAKE_QUEUE_TIMEOUT,
    DEFAULT_MAX_HANDSHAKES,
};
pub use status::{Code, Status};
pub use tls::{TlsError, TlsState, ALPN};
