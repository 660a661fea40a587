//! Shared setup of the in-process QUIC tests: a test CA, a small service, servers and clients on
//! 127.0.0.1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarm_net::pki::testing::{system_now, TestPki};
use swarm_net::pki::TlsMaterial;
use swarm_net::rpc::{
    Access, CallContext, Client, Code, ItemSender, Peer, Router, RpcConfig, Server, ServerOptions,
    ServerStreaming, Status, TlsState, Unary,
};
use swarm_net::Role;
use tokio::sync::mpsc;

/// Echoes its argument; any node of the cluster.
pub const ECHO: Unary<Vec<u8>, Vec<u8>> = Unary::new("test.echo", Access::Node, 4096, 4096);
/// Returns the caller's role as the server saw it; managers only.
pub const WHO: Unary<(), String> = Unary::new("test.who", Access::Manager, 16, 256);
/// Returns a fixed string; no certificate needed (like the CA methods).
pub const OPEN: Unary<(), String> = Unary::new("test.open", Access::Anonymous, 16, 256);
/// Never answers; reports through the hang channel when its handler is dropped.
pub const HANG: Unary<(), ()> = Unary::new("test.hang", Access::Node, 16, 16);
/// Streams `count` numbers, `gap_ms` apart.
pub const TICKS: ServerStreaming<(u32, u64), u32> =
    ServerStreaming::new("test.ticks", Access::Node, 64, 64);

/// Sends on a channel when dropped: how a test sees that the server dropped a handler.
struct DropSignal(mpsc::UnboundedSender<bool>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(false);
    }
}

/// The test service; the receiver gets `true` when a `HANG` handler starts and `false` when the
/// server drops one.
pub fn router() -> (Router, mpsc::UnboundedReceiver<bool>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new()
        .unary(&ECHO, |_ctx, req: Vec<u8>| async move { Ok(req) })
        .unary(&WHO, |ctx: CallContext, ()| async move {
            let peer = ctx
                .peer
                .ok_or_else(|| Status::new(Code::Internal, "no peer"))?;
            Ok(peer.identity.role.to_string())
        })
        .unary(&OPEN, |_ctx, ()| async move { Ok("open".to_string()) })
        .unary(&HANG, move |_ctx, ()| {
            let signal = DropSignal(tx.clone());
            async move {
                let _ = signal.0.send(true);
                let _signal = signal;
                std::future::pending::<Result<(), Status>>().await
            }
        })
        .server_streaming(
            &TICKS,
            |_ctx, (count, gap_ms): (u32, u64), mut out: ItemSender<u32>| async move {
                for i in 0..count {
                    out.send(&i).await?;
                    tokio::time::sleep(Duration::from_millis(gap_ms)).await;
                }
                Ok(())
            },
        );
    (router, rx)
}

/// A fresh test CA whose certificates are valid now.
pub fn pki(seed: u64) -> TestPki {
    TestPki::new(seed, system_now())
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server for `material` on 127.0.0.1 with the test service.
pub fn server(material: &TlsMaterial, options: ServerOptions) -> (Server, Arc<TlsState>, Peer) {
    let tls = TlsState::new(material).unwrap();
    server_with(tls, material, options)
}

pub fn server_with(
    tls: Arc<TlsState>,
    material: &TlsMaterial,
    options: ServerOptions,
) -> (Server, Arc<TlsState>, Peer) {
    let (router, _) = router();
    let server = Server::bind(
        loopback(),
        tls.clone(),
        &RpcConfig::default(),
        router,
        options,
    )
    .unwrap();
    let peer = Peer {
        addr: server.local_addr().unwrap(),
        role: material.identity().role,
        node_id: Some(material.identity().node_id),
    };
    (server, tls, peer)
}

pub fn client(material: &TlsMaterial) -> (Client, Arc<TlsState>) {
    let tls = TlsState::new(material).unwrap();
    (client_with(tls.clone()), tls)
}

pub fn client_with(tls: Arc<TlsState>) -> Client {
    Client::bind(loopback(), tls, RpcConfig::default()).unwrap()
}

pub const T: Duration = Duration::from_secs(10);

pub fn worker_and_manager(seed: u64) -> (TestPki, TlsMaterial, TlsMaterial) {
    let mut pki = pki(seed);
    let w = pki.node(Role::Worker);
    let m = pki.node(Role::Manager);
    (pki, w, m)
}
