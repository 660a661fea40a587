//! In-process QUIC calls on 127.0.0.1: unary and streaming calls, deadlines, cancellation,
//! connection reuse and a server restart.

mod rpc_support;

use std::time::Duration;

use rpc_support::*;
use swarm_net::rpc::{RpcError, ServerOptions};

/// A worker calls a node method and streams; one connection carries every call.
#[tokio::test]
async fn unary_and_stream_calls_share_one_connection() {
    let (_pki, w, m) = worker_and_manager(1);
    let (server, _, peer) = server(&m, ServerOptions::default());
    let (client, _) = client(&w);
    for n in 0..5u8 {
        let got = client.unary(&peer, &ECHO, &vec![n; 1000], T).await.unwrap();
        assert_eq!(got, vec![n; 1000]);
    }
    let mut stream = client
        .server_streaming(&peer, &TICKS, &(3, 0), Some(T))
        .await
        .unwrap();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item.unwrap());
    }
    assert_eq!(items, [0, 1, 2]);
    // 64 calls in flight at once over the same connection.
    let reqs: Vec<Vec<u8>> = (0..64u8).map(|n| vec![n]).collect();
    let calls = reqs.iter().map(|r| client.unary(&peer, &ECHO, r, T));
    for (n, got) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(got.unwrap(), vec![n as u8]);
    }
    assert_eq!(client.endpoint().open_connections(), 1);
    server.shutdown(T).await;
}

/// The deadline bounds the call, and the server drops the handler when the caller gives up.
#[tokio::test]
async fn deadline_passes_and_the_server_drops_the_handler() {
    let (_pki, w, m) = worker_and_manager(2);
    let (router, mut dropped) = router();
    let tls = swarm_net::rpc::TlsState::new(&m).unwrap();
    let server = swarm_net::rpc::Server::bind(
        loopback(),
        tls,
        &swarm_net::rpc::RpcConfig::default(),
        router,
        ServerOptions::default(),
    )
    .unwrap();
    let peer = swarm_net::rpc::Peer {
        addr: server.local_addr().unwrap(),
        role: m.identity().role,
        node_id: None,
    };
    let (client, _) = client(&w);
    let err = client
        .unary(&peer, &HANG, &(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::DeadlineExceeded), "{err}");
    tokio::time::timeout(T, dropped.recv())
        .await
        .expect("handler dropped after the deadline")
        .unwrap();

    // Cancellation by dropping the call's future.
    let call = client.unary(&peer, &HANG, &(), T);
    let _ = tokio::time::timeout(Duration::from_millis(200), call).await;
    tokio::time::timeout(T, dropped.recv())
        .await
        .expect("handler dropped after the caller cancelled")
        .unwrap();
    server.shutdown(T).await;
}

/// A server that restarts on the same address is reached again: the client notices the closed
/// connection and makes a new one.
#[tokio::test]
async fn peer_restart_is_survived() {
    let (_pki, w, m) = worker_and_manager(3);
    let (server1, tls, peer) = server(&m, ServerOptions::default());
    let (client, _) = client(&w);
    assert_eq!(client.unary(&peer, &ECHO, &vec![1], T).await.unwrap(), [1]);
    server1.shutdown(T).await;
    let err = client
        .unary(&peer, &ECHO, &vec![2], Duration::from_millis(500))
        .await;
    assert!(err.is_err(), "no server: {err:?}");
    let (router, _) = router();
    let server2 = swarm_net::rpc::Server::bind(
        peer.addr,
        tls,
        &swarm_net::rpc::RpcConfig::default(),
        router,
        ServerOptions::default(),
    )
    .unwrap();
    assert_eq!(client.unary(&peer, &ECHO, &vec![3], T).await.unwrap(), [3]);
    server2.shutdown(T).await;
}
