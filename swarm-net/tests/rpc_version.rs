//! The protocol version (TLS ALPN, `RpcConfig::alpn_protocol`): nodes configured with different
//! versions refuse each other at the handshake with an error that says so; equal non-default
//! versions talk.

mod rpc_support;

use rpc_support::*;
use swarm_net::rpc::{Peer, Router, RpcConfig, RpcError, Server, ServerOptions, TlsState, ALPN};
use swarm_net::Role;

fn config(alpn: &[u8]) -> RpcConfig {
    RpcConfig {
        alpn_protocol: alpn.to_vec(),
        ..RpcConfig::default()
    }
}

fn serve(m: &swarm_net::pki::TlsMaterial, alpn: &[u8]) -> (Server, Peer) {
    let router = Router::new().unary(&ECHO, |_ctx, req: Vec<u8>| async move { Ok(req) });
    let server = Server::bind(
        loopback(),
        TlsState::new(m).unwrap(),
        &config(alpn),
        router,
        ServerOptions::default(),
    )
    .unwrap();
    let peer = Peer {
        addr: server.local_addr().unwrap(),
        role: Role::Manager,
        node_id: Some(m.identity().node_id),
    };
    (server, peer)
}

#[test]
fn the_default_is_swarm_1() {
    assert_eq!(RpcConfig::default().alpn_protocol, ALPN);
    assert_eq!(ALPN, b"swarm/1");
}

#[tokio::test]
async fn different_versions_refuse_each_other_and_say_why() {
    let (_pki, w, m) = worker_and_manager(40);
    let (server, peer) = serve(&m, b"swarm/1-store2");
    let client = swarm_net::rpc::Client::bind(
        loopback(),
        TlsState::new(&w).unwrap(),
        config(b"swarm/1-store1"),
    )
    .unwrap();
    let err = client.unary(&peer, &ECHO, &vec![1], T).await.unwrap_err();
    match &err {
        RpcError::ProtocolVersion { ours } => assert_eq!(ours, "swarm/1-store1"),
        other => panic!("expected a protocol version refusal, got {other}"),
    }
    assert!(
        err.to_string().contains("different protocol version"),
        "{err}"
    );
    // Not retried as if transient: a second call fails the same way, not with a timeout.
    let again = client.unary(&peer, &ECHO, &vec![1], T).await.unwrap_err();
    assert!(matches!(again, RpcError::ProtocolVersion { .. }), "{again}");
    server.shutdown(T).await;
}

#[tokio::test]
async fn equal_custom_versions_talk() {
    let (_pki, w, m) = worker_and_manager(41);
    let (server, peer) = serve(&m, b"swarm/1-store2");
    let client = swarm_net::rpc::Client::bind(
        loopback(),
        TlsState::new(&w).unwrap(),
        config(b"swarm/1-store2"),
    )
    .unwrap();
    let got = client.unary(&peer, &ECHO, &vec![7], T).await.unwrap();
    assert_eq!(got, vec![7]);
    server.shutdown(T).await;
}
