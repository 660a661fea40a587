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

/// The deadline bounds the call, and the server drops the handler when the caller gives up, by
/// deadline or by dropping the call. The handler reports its start and its drop, so the test waits
/// on those events rather than on time.
#[tokio::test]
async fn deadline_passes_and_the_server_drops_the_handler() {
    let (_pki, w, m) = worker_and_manager(2);
    let (router, mut events) = router();
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
    let client = std::sync::Arc::new(client);
    // Connected first, so the short deadline below is spent on the call, not the handshake.
    assert_eq!(client.unary(&peer, &ECHO, &vec![1], T).await.unwrap(), [1]);
    let mut next_event = async || {
        tokio::time::timeout(T, events.recv())
            .await
            .expect("a handler event")
            .unwrap()
    };

    let err = client
        .unary(&peer, &HANG, &(), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::DeadlineExceeded), "{err}");
    assert!(next_event().await, "the handler started");
    assert!(
        !next_event().await,
        "the handler was dropped after the deadline"
    );

    // Cancellation: the caller drops the call while the handler runs.
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.unary(&peer, &HANG, &(), T).await }
    });
    assert!(next_event().await, "the handler started");
    call.abort();
    assert!(
        !next_event().await,
        "the handler was dropped after the caller cancelled"
    );
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

/// A peer that dies without closing its connections and comes back on the same address with the
/// same node key is noticed at the next call, not at the idle timeout: the new instance answers the
/// old connection's packets with a stateless reset whose key derives from the node key. The idle
/// timeout here (120 s) is far beyond the calls' deadlines, so only the reset can end the stale
/// connection in time; the "crash" moves the first instance to another socket without a word, so
/// its connections go silent exactly as a killed process's would.
#[tokio::test]
async fn crashed_peer_is_noticed_through_a_stateless_reset() {
    use swarm_net::rpc::{Client, Peer, RpcConfig, Server, TlsState};
    let (_pki, w, m) = worker_and_manager(4);
    let config = RpcConfig {
        idle_timeout: Duration::from_secs(120),
        keep_alive: Duration::from_secs(40),
        ..RpcConfig::default()
    };
    let (router1, _) = router();
    let first = Server::bind(
        loopback(),
        TlsState::new(&m).unwrap(),
        &config,
        router1,
        ServerOptions::default(),
    )
    .unwrap();
    let peer = Peer {
        addr: first.local_addr().unwrap(),
        role: m.identity().role,
        node_id: Some(m.identity().node_id),
    };
    let client = Client::bind(loopback(), TlsState::new(&w).unwrap(), config.clone()).unwrap();
    assert_eq!(client.unary(&peer, &ECHO, &vec![1], T).await.unwrap(), [1]);

    first
        .endpoint()
        .rebind(std::net::UdpSocket::bind(loopback()).unwrap())
        .unwrap();
    // quinn keeps reading the old socket until traffic arrives on the new one: give it some, so
    // the old address is released (a killed process would release it at once).
    let moved = Peer {
        addr: first.local_addr().unwrap(),
        ..peer
    };
    let other = Client::bind(loopback(), TlsState::new(&w).unwrap(), config.clone()).unwrap();
    assert_eq!(other.unary(&moved, &ECHO, &vec![9], T).await.unwrap(), [9]);
    let second = tokio::time::timeout(T, async {
        loop {
            let (router2, _) = router();
            let tls = TlsState::new(&m).unwrap();
            match Server::bind(peer.addr, tls, &config, router2, ServerOptions::default()) {
                Ok(server) => break server,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("the crashed instance's address is free again");

    let deadline = Duration::from_secs(20);
    let err = client
        .unary(&peer, &ECHO, &vec![2], deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Unavailable(_)), "{err}");
    assert_eq!(
        client
            .unary(&peer, &ECHO, &vec![3], deadline)
            .await
            .unwrap(),
        [3]
    );
    second.shutdown(T).await;
    first.shutdown(T).await;
}

/// With one handshake slot, many clients connecting at once are served one handshake after
/// another, and every one of them gets its call answered; a connection attempt that waited past
/// the queue timeout (here: any wait at all) is dropped unanswered, so its client's handshake
/// times out rather than being served late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_take_turns_and_stale_attempts_are_dropped() {
    let (mut pki, _, m) = worker_and_manager(9);
    let one_at_a_time = ServerOptions {
        max_handshakes: 1,
        ..ServerOptions::default()
    };
    let (taking_turns, _, peer) = server(&m, one_at_a_time);
    let clients: Vec<_> = (0..20)
        .map(|_| client(&pki.node(swarm_net::Role::Worker)).0)
        .collect();
    let reqs: Vec<Vec<u8>> = (0..clients.len() as u8).map(|n| vec![n]).collect();
    let calls = clients
        .iter()
        .zip(&reqs)
        .map(|(c, r)| c.unary(&peer, &ECHO, r, T));
    for (n, got) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(got.unwrap(), vec![n as u8]);
    }
    taking_turns.shutdown(T).await;

    let impatient = ServerOptions {
        handshake_queue_timeout: Duration::ZERO,
        ..ServerOptions::default()
    };
    let (server, _, peer) = server(&m, impatient);
    let (c, _) = client(&pki.node(swarm_net::Role::Worker));
    match c
        .unary(&peer, &ECHO, &vec![1], Duration::from_secs(2))
        .await
    {
        Err(RpcError::DeadlineExceeded) => {}
        other => panic!("a dropped connection attempt was answered: {other:?}"),
    }
    assert_eq!(server.open_connections(), 0);
    server.shutdown(T).await;
}
