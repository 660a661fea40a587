//! Duplex calls over real QUIC on 127.0.0.1: bytes both ways in bulk, half-close in each
//! direction, refusals (by the handler and by the role table), and a server lost mid-stream.

mod rpc_support;

use std::sync::Arc;

use rpc_support::*;
use swarm_net::rpc::{
    Access, CallContext, Code, Duplex, DuplexCall, RpcConfig, RpcError, Server, ServerOptions,
    Status, TlsState,
};
use swarm_net::Role;

/// Echoes every byte until the caller half-closes, then finishes; refuses when the header says.
const ECHO_BYTES: Duplex<bool> = Duplex::new("test.echo_bytes", Access::Node, 16);
/// Reads to the caller's end first, then answers the byte count and `n` bytes of its own.
const COUNT_THEN_SEND: Duplex<u64> = Duplex::new("test.count", Access::Node, 16);
/// Managers only.
const MANAGERS_ONLY: Duplex<()> = Duplex::new("test.managers_only", Access::Manager, 16);

fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) % 251) as u8
}

fn duplex_router() -> swarm_net::rpc::Router {
    swarm_net::rpc::Router::new()
        .duplex(
            &ECHO_BYTES,
            |_ctx: CallContext, refuse: bool, call: DuplexCall| async move {
                if refuse {
                    call.refuse(Status::new(Code::NotFound, "no such task here"))
                        .await;
                    return;
                }
                let Ok((mut send, mut recv)) = call.accept().await else {
                    return;
                };
                if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                    let _ = send.finish();
                }
            },
        )
        .duplex(
            &COUNT_THEN_SEND,
            |_ctx: CallContext, n: u64, call: DuplexCall| async move {
                let Ok((mut send, mut recv)) = call.accept().await else {
                    return;
                };
                let Ok(got) = recv.read_to_end(1 << 20).await else {
                    return;
                };
                let mut out = (got.len() as u64).to_be_bytes().to_vec();
                out.extend((0..n).map(pattern));
                if send.write_all(&out).await.is_ok() {
                    let _ = send.finish();
                }
            },
        )
        .duplex(
            &MANAGERS_ONLY,
            |_ctx: CallContext, (), call: DuplexCall| async move {
                let _ = call.accept().await;
            },
        )
}

fn duplex_server(material: &swarm_net::pki::TlsMaterial) -> (Server, swarm_net::rpc::Peer) {
    let tls = TlsState::new(material).unwrap();
    let server = Server::bind(
        loopback(),
        tls,
        &RpcConfig::default(),
        duplex_router(),
        ServerOptions::default(),
    )
    .unwrap();
    let peer = swarm_net::rpc::Peer {
        addr: server.local_addr().unwrap(),
        role: material.identity().role,
        node_id: Some(material.identity().node_id),
    };
    (server, peer)
}

/// 24 MiB each way at once through an echo: every byte comes back in order, and the caller's
/// half-close reaches the server, whose finish reaches the caller as the end.
#[tokio::test]
async fn large_transfer_both_ways_with_half_close() {
    let (_pki, worker, manager) = worker_and_manager(61);
    let (_server, peer) = duplex_server(&manager);
    let (client, _) = client(&worker);
    let (mut send, mut recv) = client
        .open_duplex(&peer, &ECHO_BYTES, &false, T)
        .await
        .unwrap();
    const LEN: u64 = 24 << 20;
    let writer = tokio::spawn(async move {
        let chunk: Vec<u8> = (0..65_536u64).map(pattern).collect();
        let mut sent = 0u64;
        while sent < LEN {
            send.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        send.finish().unwrap();
        // Keep the half open until the reader is done (dropping it is fine too: it finishes).
        send
    });
    let mut got = 0u64;
    let mut buf = vec![0u8; 100_000];
    loop {
        let Some(n) = recv.read(&mut buf).await.unwrap() else {
            break;
        };
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                pattern((got + i as u64) % 65_536),
                "byte {}",
                got + i as u64
            );
        }
        got += n as u64;
    }
    assert_eq!(got, LEN);
    writer.await.unwrap();
}

/// The caller half-closes at once and still reads the server's answer, which the server writes
/// only after it saw that end; then the server's own end.
#[tokio::test]
async fn half_close_each_way() {
    let (_pki, worker, manager) = worker_and_manager(62);
    let (_server, peer) = duplex_server(&manager);
    let (client, _) = client(&worker);
    let (mut send, mut recv) = client
        .open_duplex(&peer, &COUNT_THEN_SEND, &3_000_000, T)
        .await
        .unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    let got = recv.read_to_end(8 << 20).await.unwrap();
    assert_eq!(&got[..8], &5u64.to_be_bytes());
    assert_eq!(got.len(), 8 + 3_000_000);
    assert!(got[8..]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern(i as u64)));
}

/// A handler's refusal reaches the caller as its status; a worker calling a managers-only
/// method is refused before any header is read; an unknown method is unimplemented.
#[tokio::test]
async fn refusals_reach_the_caller() {
    let (_pki, worker, manager) = worker_and_manager(63);
    let (_server, peer) = duplex_server(&manager);
    let (client, _) = client(&worker);
    match client.open_duplex(&peer, &ECHO_BYTES, &true, T).await {
        Err(RpcError::Status(s)) => {
            assert_eq!(s.code, Code::NotFound);
            assert!(s.message.contains("no such task"), "{s}");
        }
        Err(e) => panic!("expected the handler's refusal, got {e}"),
        Ok(_) => panic!("expected the handler's refusal, got a stream"),
    }
    match client.open_duplex(&peer, &MANAGERS_ONLY, &(), T).await {
        Err(RpcError::PermissionDenied(_)) => {}
        Err(e) => panic!("expected permission denied, got {e}"),
        Ok(_) => panic!("expected permission denied, got a stream"),
    }
    const NOWHERE: Duplex<()> = Duplex::new("test.nowhere", Access::Node, 16);
    match client.open_duplex(&peer, &NOWHERE, &(), T).await {
        Err(RpcError::Status(s)) => assert_eq!(s.code, Code::Unimplemented),
        Err(e) => panic!("expected unimplemented, got {e}"),
        Ok(_) => panic!("expected unimplemented, got a stream"),
    }
    // The connection still serves: a good call after the refusals.
    let (mut send, mut recv) = client
        .open_duplex(&peer, &ECHO_BYTES, &false, T)
        .await
        .unwrap();
    send.write_all(b"ok").await.unwrap();
    send.finish().unwrap();
    let got = recv.read_to_end(64).await.unwrap();
    assert_eq!(got, b"ok");
}

/// The server goes away mid-stream: the caller's read fails (it is not mistaken for a clean
/// end), and a second stream on another server is untouched.
#[tokio::test]
async fn a_lost_peer_fails_only_its_streams() {
    let (mut pki, worker, manager) = worker_and_manager(64);
    let other = pki.node(Role::Manager);
    let (server, peer) = duplex_server(&manager);
    let (server2, peer2) = duplex_server(&other);
    let (client, _) = client(&worker);
    let client = Arc::new(client);
    let (mut send, mut recv) = client
        .open_duplex(&peer, &ECHO_BYTES, &false, T)
        .await
        .unwrap();
    let (mut send2, mut recv2) = client
        .open_duplex(&peer2, &ECHO_BYTES, &false, T)
        .await
        .unwrap();
    send.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    recv.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"before");
    server.shutdown(std::time::Duration::from_secs(2)).await;
    let end = tokio::time::timeout(T, recv.read_to_end(1 << 20))
        .await
        .expect("the lost server is noticed");
    assert!(
        end.is_err(),
        "a lost server must not look like a clean end: {end:?}"
    );
    send2.write_all(b"still here").await.unwrap();
    send2.finish().unwrap();
    let got = recv2.read_to_end(64).await.unwrap();
    assert_eq!(got, b"still here");
    drop(server2);
}
