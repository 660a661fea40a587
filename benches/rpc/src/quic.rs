//! The swarm-net side: an echo method served and called over swarm-net RPC (QUIC, mTLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarm_net::pki::TlsMaterial;
use swarm_net::rpc::{
    Access, Client, Peer, Router, RpcConfig, Server, ServerOptions, TlsState, Unary,
};

/// 1 KiB in, 1 KiB out.
pub const ECHO: Unary<Vec<u8>, Vec<u8>> = Unary::new("bench.echo", Access::Node, 4096, 4096);

pub fn serve(material: &TlsMaterial) -> (Server, Peer) {
    let tls = TlsState::new(material).expect("bench credentials");
    let router = Router::new().unary(&ECHO, |_ctx, req: Vec<u8>| async move { Ok(req) });
    let server = Server::bind(
        "127.0.0.1:0".parse().expect("address"),
        tls,
        &RpcConfig::default(),
        router,
        ServerOptions::default(),
    )
    .expect("bind server");
    let peer = Peer {
        addr: server.local_addr().expect("server address"),
        role: material.identity().role,
        node_id: Some(material.identity().node_id),
    };
    (server, peer)
}

pub fn client(material: &TlsMaterial) -> Arc<Client> {
    let tls = TlsState::new(material).expect("bench credentials");
    Arc::new(
        Client::bind(
            "127.0.0.1:0".parse().expect("address"),
            tls,
            RpcConfig::default(),
        )
        .expect("bind client"),
    )
}

#[allow(clippy::ptr_arg)] // the method's request type is Vec<u8>
pub async fn call(client: &Client, peer: &Peer, payload: &Vec<u8>) {
    let got = client
        .unary(peer, &ECHO, payload, Duration::from_secs(10))
        .await
        .expect("echo call");
    assert_eq!(got.len(), payload.len());
}

/// A quinn endpoint and client configuration for raw handshakes (no pooling).
pub fn raw_endpoint(material: &TlsMaterial) -> (quinn::Endpoint, quinn::ClientConfig) {
    let tls = TlsState::new(material).expect("bench credentials");
    let config = RpcConfig::default()
        .client_config(&tls)
        .expect("client config");
    let endpoint = RpcConfig::default()
        .endpoint("127.0.0.1:0".parse::<SocketAddr>().expect("address"), None)
        .expect("bind");
    (endpoint, config)
}
