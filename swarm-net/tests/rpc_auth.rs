//! Authentication and authorization over real QUIC handshakes on 127.0.0.1: each test sets up a
//! server and a client whose certificates differ in exactly the property under test, so a refusal
//! can only come from that property.

mod rpc_support;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rpc_support::*;
use swarm_core::Timestamp;
use swarm_net::pki::testing::system_now;
use swarm_net::pki::{CertInfo, DenySet, DEFAULT_NODE_CERT_VALIDITY};
use swarm_net::rpc::frame::{self, FrameKind};
use swarm_net::rpc::{Code, Peer, RpcConfig, RpcError, ServerOptions, Status, TlsState};
use swarm_net::{NodeIdentity, Role};

fn is_auth(e: &RpcError) -> bool {
    matches!(e, RpcError::Authentication(_))
}

/// A client whose certificate comes from another cluster's CA is refused at the handshake; with TLS
/// 1.3 the refusal reaches the client on its first call, and must read as an authentication error.
#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let (_pki, _, m) = worker_and_manager(10);
    let mut other = pki(11);
    // Same cluster id, trusts our root: only the CA that signed its certificate is wrong.
    let id = NodeIdentity {
        cluster_id: m.identity().cluster_id,
        ..other.identity(Role::Worker)
    };
    let stranger = other
        .node_as(id, DEFAULT_NODE_CERT_VALIDITY, system_now())
        .with_roots(m.roots().to_vec())
        .unwrap();
    let (server, _, peer) = server(&m, ServerOptions::default());
    let (client, _) = client(&stranger);
    let err = client.unary(&peer, &ECHO, &vec![1], T).await.unwrap_err();
    assert!(is_auth(&err), "{err}");
    assert!(
        err.to_string().contains("refused our TLS handshake"),
        "{err}"
    );
    server.shutdown(T).await;
}

/// A server whose certificate does not chain to the client's roots is refused by the client.
#[tokio::test]
async fn server_certificate_from_another_ca_is_refused() {
    let (_pki, w, _) = worker_and_manager(12);
    let mut other = pki(13);
    let fake = other.node(Role::Manager);
    let (server, _, peer) = server(&fake, ServerOptions::default());
    let (client, _) = client(&w);
    let err = client.unary(&peer, &ECHO, &vec![1], T).await.unwrap_err();
    assert!(is_auth(&err), "{err}");
    server.shutdown(T).await;
}

/// The authorization table on the wire: a worker may call node methods but not manager methods; a
/// manager may call both and the handler sees its role.
#[tokio::test]
async fn worker_certificate_is_refused_on_a_manager_method() {
    let (mut pki, w, m) = worker_and_manager(14);
    let m2 = pki.node(Role::Manager);
    let (server, _, peer) = server(&m, ServerOptions::default());
    let (worker, _) = client(&w);
    assert_eq!(worker.unary(&peer, &ECHO, &vec![7], T).await.unwrap(), [7]);
    let err = worker.unary(&peer, &WHO, &(), T).await.unwrap_err();
    assert!(matches!(err, RpcError::PermissionDenied(_)), "{err}");
    let (manager, _) = client(&m2);
    assert_eq!(
        manager.unary(&peer, &WHO, &(), T).await.unwrap(),
        "swarm-manager"
    );
    server.shutdown(T).await;
}

/// A joining node (no certificate, roots pinned) reaches anonymous methods only.
#[tokio::test]
async fn no_certificate_reaches_only_anonymous_methods() {
    let (_pki, _, m) = worker_and_manager(15);
    let (server, _, peer) = server(&m, ServerOptions::default());
    let joiner = client_with(TlsState::joining(m.roots()).unwrap());
    assert_eq!(joiner.unary(&peer, &OPEN, &(), T).await.unwrap(), "open");
    let err = joiner.unary(&peer, &ECHO, &vec![1], T).await.unwrap_err();
    assert!(is_auth(&err), "{err}");
    // Before it knows the roots, a joiner can still fetch them (and must check the digest itself).
    let blind = client_with(TlsState::unverified().unwrap());
    assert_eq!(blind.unary(&peer, &OPEN, &(), T).await.unwrap(), "open");
    server.shutdown(T).await;
}

/// An expired certificate is refused by TLS; a removed node (the CA's deny set as the server's
/// policy hook) is refused from its next call on, even on a connection opened before the removal.
#[tokio::test]
async fn expired_and_removed_nodes_are_refused() {
    let (mut pki, w, m) = worker_and_manager(16);
    let id = pki.identity(Role::Worker);
    // Issued two hours ago for one hour (backdated one hour): expired an hour ago.
    let past = Timestamp(system_now().as_nanos() - 2 * 3600 * 1_000_000_000);
    let expired = pki.node_as(id, Duration::from_secs(3600), past);

    // The CA's deny set, shared between the embedder (which records removals) and the server.
    let deny = Arc::new(RwLock::new(DenySet::new()));
    let (server, _, peer) = server(
        &m,
        ServerOptions {
            policy: deny.clone(),
            ..ServerOptions::default()
        },
    );
    let (old, _) = client(&expired);
    let err = old.unary(&peer, &ECHO, &vec![1], T).await.unwrap_err();
    assert!(is_auth(&err), "{err}");

    let (client, _) = client(&w);
    assert_eq!(client.unary(&peer, &ECHO, &vec![1], T).await.unwrap(), [1]);
    let not_after = CertInfo::parse(w.leaf()).unwrap().not_after;
    deny.write()
        .unwrap()
        .handle_removed(w.identity().node_id, not_after);
    let err = client.unary(&peer, &ECHO, &vec![2], T).await.unwrap_err();
    assert!(is_auth(&err), "{err}");
    server.shutdown(T).await;
}

/// The caller states whom it expects; a valid certificate of another node or role is refused.
#[tokio::test]
async fn a_different_peer_than_expected_is_refused() {
    let (mut pki, w, m) = worker_and_manager(17);
    let (server, _, peer) = server(&m, ServerOptions::default());
    let (client, _) = client(&w);
    let other_id = pki.identity(Role::Manager).node_id;
    let wrong_node = Peer {
        node_id: Some(other_id),
        ..peer
    };
    let err = client
        .unary(&wrong_node, &ECHO, &vec![1], T)
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::WrongPeer { .. }), "{err}");
    let wrong_role = Peer {
        role: Role::Worker,
        node_id: None,
        ..peer
    };
    let err = client
        .unary(&wrong_role, &ECHO, &vec![1], T)
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::WrongPeer { .. }), "{err}");
    assert_eq!(client.unary(&peer, &ECHO, &vec![1], T).await.unwrap(), [1]);
    server.shutdown(T).await;
}

/// A request over the method's limit is refused by the client before sending, and by the server
/// from the length prefix alone when a peer sends one anyway (the server answers before the payload
/// exists: the test never sends it).
#[tokio::test]
async fn oversized_frames_are_refused() {
    let (_pki, w, m) = worker_and_manager(18);
    let (server, _, peer) = server(&m, ServerOptions::default());
    let (client, tls) = client(&w);
    let err = client
        .unary(&peer, &ECHO, &vec![0; 5000], T)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Frame(frame::FrameError::TooLarge { .. })),
        "{err}"
    );

    // By hand: a head for test.echo, then a prefix announcing 4 GiB and no payload.
    let config = RpcConfig::default().client_config(&tls).unwrap();
    let conn = client
        .endpoint()
        .connect_with(config, peer.addr, "swarm")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let head_kind = FrameKind {
        name: "head",
        limit: 1024,
    };
    let head = frame::encode(head_kind, &("test.echo".to_string(), Some(10_000u64))).unwrap();
    send.write_all(&head).await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let reply_kind = FrameKind {
        name: "reply",
        limit: 8192,
    };
    let reply: Result<Vec<u8>, Status> =
        tokio::time::timeout(T, frame::read(&mut recv, reply_kind))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    let status = reply.unwrap_err();
    assert_eq!(status.code, Code::ResourceExhausted, "{status}");
    server.shutdown(T).await;
}
