//! Many identities on one client socket ([`ClientEndpoint`]) over real QUIC handshakes on
//! 127.0.0.1: the server must see each client as the node its certificate names, although every
//! packet comes from the same address, and one client must not borrow another's connection.

mod rpc_support;

use rpc_support::*;
use swarm_net::pki::TlsMaterial;
use swarm_net::rpc::{
    Access, CallContext, ClientEndpoint, Code, Peer, Router, RpcConfig, RpcError, Server,
    ServerOptions, Status, TlsState, Unary,
};
use swarm_net::Role;

/// Returns the caller's node id and role as the server authenticated them.
const WHOAMI: Unary<(), String> = Unary::new("test.whoami", Access::Node, 16, 256);

fn whoami_router() -> Router {
    Router::new().unary(&WHOAMI, |ctx: CallContext, ()| async move {
        let peer = ctx
            .peer
            .ok_or_else(|| Status::new(Code::Internal, "no peer"))?;
        Ok(format!("{} {}", peer.identity.node_id, peer.identity.role))
    })
}

/// A server for manager material `m` on 127.0.0.1 serving [`WHOAMI`], and the peer to call.
fn whoami_server(m: &TlsMaterial, config: &RpcConfig) -> (Server, Peer) {
    let server = Server::bind(
        loopback(),
        TlsState::new(m).unwrap(),
        config,
        whoami_router(),
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

/// Two worker identities and one joining (certificate-less) client on one endpoint: one socket,
/// one connection per identity, and the server authenticates each as its own certificate's node.
/// Were the connection or the TLS configuration shared between clients, both calls would come
/// back with the same node id.
#[tokio::test]
async fn identities_on_one_endpoint_are_distinct_peers() {
    let (mut pki, w1, m) = worker_and_manager(40);
    let w2 = pki.node(Role::Worker);
    assert_ne!(w1.identity().node_id, w2.identity().node_id);
    let (server, peer) = whoami_server(&m, &RpcConfig::default());

    let shared = ClientEndpoint::bind(loopback(), RpcConfig::default()).unwrap();
    let c1 = shared.client(TlsState::new(&w1).unwrap()).unwrap();
    let c2 = shared.client(TlsState::new(&w2).unwrap()).unwrap();
    assert_eq!(
        c1.endpoint().local_addr().unwrap(),
        shared.local_addr().unwrap()
    );
    assert_eq!(
        c2.endpoint().local_addr().unwrap(),
        shared.local_addr().unwrap()
    );

    let (a, b) = tokio::join!(
        c1.unary(&peer, &WHOAMI, &(), T),
        c2.unary(&peer, &WHOAMI, &(), T)
    );
    assert_eq!(
        a.unwrap(),
        format!("{} swarm-worker", w1.identity().node_id)
    );
    assert_eq!(
        b.unwrap(),
        format!("{} swarm-worker", w2.identity().node_id)
    );
    // A second call reuses each client's own connection.
    assert_eq!(
        c1.unary(&peer, &WHOAMI, &(), T).await.unwrap(),
        format!("{} swarm-worker", w1.identity().node_id)
    );
    assert_eq!(shared.open_connections(), 2);
    assert_eq!(server.endpoint().open_connections(), 2);

    // A joining client on the same socket has no certificate: a node method refuses it while the
    // two authenticated clients keep working.
    let joiner = shared
        .client(TlsState::joining(m.roots()).unwrap())
        .unwrap();
    let err = joiner.unary(&peer, &WHOAMI, &(), T).await.unwrap_err();
    assert!(matches!(err, RpcError::Authentication(_)), "{err}");
    assert_eq!(
        c2.unary(&peer, &WHOAMI, &(), T).await.unwrap(),
        format!("{} swarm-worker", w2.identity().node_id)
    );

    // Dropping one client leaves the endpoint to the others; closing the endpoint ends them all.
    drop(joiner);
    assert!(c1.unary(&peer, &WHOAMI, &(), T).await.is_ok());
    shared.close();
    let err = c1.unary(&peer, &WHOAMI, &(), T).await.unwrap_err();
    assert!(
        matches!(err, RpcError::Endpoint(_) | RpcError::Unavailable(_)),
        "{err}"
    );
    server.shutdown(T).await;
}

/// Servers send no keep-alives (a manager would otherwise ping every worker's idle connection):
/// an idle connection must then live on its client's keep-alives alone. Idle for five idle
/// timeouts, it is still open on both sides; were neither side pinging, both would have closed
/// it after one.
#[tokio::test]
async fn an_idle_connection_lives_on_the_client_keep_alives() {
    let (_pki, w, m) = worker_and_manager(41);
    let config = RpcConfig {
        idle_timeout: std::time::Duration::from_millis(400),
        keep_alive: std::time::Duration::from_millis(100),
        ..RpcConfig::default()
    };
    let (server, peer) = whoami_server(&m, &config);
    let shared = ClientEndpoint::bind(loopback(), config).unwrap();
    let client = shared.client(TlsState::new(&w).unwrap()).unwrap();
    client.unary(&peer, &WHOAMI, &(), T).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        server.endpoint().open_connections(),
        1,
        "the server closed it"
    );
    assert_eq!(shared.open_connections(), 1, "the client closed it");
    client.unary(&peer, &WHOAMI, &(), T).await.unwrap();
    server.shutdown(T).await;
}

/// A server grants the idle timeout its client asks for, up to `server_idle_timeout`, whatever
/// its own clients use (`idle_timeout`): a worker whose heartbeats are its only traffic keeps its
/// connection to a manager whose own connections time out within a fraction of that.
#[tokio::test]
async fn a_server_grants_a_longer_idle_timeout_than_its_own() {
    use std::time::Duration;
    let (_pki, w, m) = worker_and_manager(42);
    let manager = RpcConfig {
        idle_timeout: Duration::from_millis(300),
        server_idle_timeout: Duration::from_secs(20),
        ..RpcConfig::default()
    };
    // A client that sends no keep-alive within the test and asks for 10 s.
    let worker = RpcConfig {
        idle_timeout: Duration::from_secs(10),
        keep_alive: Duration::from_secs(30),
        ..RpcConfig::default()
    };
    let (server, peer) = whoami_server(&m, &manager);
    let shared = ClientEndpoint::bind(loopback(), worker).unwrap();
    let client = shared.client(TlsState::new(&w).unwrap()).unwrap();
    client.unary(&peer, &WHOAMI, &(), T).await.unwrap();
    // Idle for five of the server's own timeouts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        server.endpoint().open_connections(),
        1,
        "the server closed it"
    );
    assert_eq!(shared.open_connections(), 1, "the client closed it");
    server.shutdown(T).await;
}

/// ...and the shorter of the two wins: a client asking for less than the server grants gets it.
#[tokio::test]
async fn a_client_asking_for_a_shorter_idle_timeout_gets_it() {
    use std::time::Duration;
    let (_pki, w, m) = worker_and_manager(43);
    let manager = RpcConfig {
        server_idle_timeout: Duration::from_secs(20),
        ..RpcConfig::default()
    };
    let worker = RpcConfig {
        idle_timeout: Duration::from_millis(300),
        keep_alive: Duration::from_secs(30),
        ..RpcConfig::default()
    };
    let (server, peer) = whoami_server(&m, &manager);
    let shared = ClientEndpoint::bind(loopback(), worker).unwrap();
    let client = shared.client(TlsState::new(&w).unwrap()).unwrap();
    client.unary(&peer, &WHOAMI, &(), T).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.endpoint().open_connections() > 0 || shared.open_connections() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open 10 s after a 300 ms idle timeout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown(T).await;
}
