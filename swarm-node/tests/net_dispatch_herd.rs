//! Many nodes opening their dispatcher sessions at the same moment (a cluster start, or every
//! worker reconnecting after a leader change), in process on 127.0.0.1.
//!
//! Property: when N nodes each open a session over QUIC at once, every one of them gets its
//! session info and full assignment set, and every session is still live afterwards.
//!
//! Why the setup proves it: each node has its own certificate and its own QUIC client (its own
//! UDP socket), as separate hosts would, and all of them start their handshake before any has
//! finished, so the manager's endpoint takes the whole herd at once. Before the server bounded
//! the handshakes it runs at once, all of them progressed together, each slower than the
//! clients' handshake and the connections' idle timeouts on a busy machine: some clients had
//! their calls answered "reset by peer" (the manager had already dropped a connection the client
//! still held), and `dispatch_load 1000` failed. 1,000 nodes in a debug build: before the fix
//! 485 of them failed ("reset by peer", "timed out"); with it all open, in ~35 s on a busy
//! two-core machine.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swarm_core::{Id, LocalProposer, ManualClock, Object, Proposer, SharedStore, StoreAction};
use swarm_core::{TaskState, Timestamp};
use swarm_net::pki::testing::TestPki;
use swarm_net::pki::DEFAULT_NODE_CERT_VALIDITY;
use swarm_net::rpc::{Client, Peer, Router, RpcConfig, Server, ServerOptions, TlsState};
use swarm_net::{NodeIdentity, Role};
use swarm_node::dispatcher::{DispatcherOptions, StoreDispatcher};
use swarm_node::net::dispatch::{
    dispatcher_routes, ClusterView, DispatcherTarget, Leadership, SessionMessage, SessionRequest,
    SESSION,
};

/// Nodes in the herd (`HERD_NODES` overrides, to try a larger herd).
fn herd() -> usize {
    std::env::var("HERD_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}
/// Bound of each node's session opening, up to its full set (far above what a healthy herd
/// needs).
const T: Duration = Duration::from_secs(120);

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_nodes_opening_sessions_at_once_all_get_them() {
    let store = SharedStore::default();
    let proposer: Arc<dyn Proposer> = Arc::new(LocalProposer::new(
        store.clone(),
        Arc::new(ManualClock::new(Default::default())),
    ));
    // No heartbeats here: sessions must not expire while the herd is served (a debug build on a
    // busy machine may take longer than the default 15 s).
    let options = DispatcherOptions {
        down_after: Duration::from_secs(3600),
        heartbeat_period: Duration::from_secs(1200),
        ..DispatcherOptions::default()
    };
    let dispatcher = StoreDispatcher::new(store.clone(), proposer.clone(), options);
    let mut pki = TestPki::new(11, now());
    let cluster_id = pki.cluster_id();
    let mut creds = |node_id: Id, role: Role| {
        let identity = NodeIdentity {
            node_id,
            role,
            cluster_id,
        };
        TlsState::new(&pki.node_as(identity, DEFAULT_NODE_CERT_VALIDITY, now())).expect("TLS state")
    };
    let manager_id = Id::from_u128(u128::MAX - 3);
    let (_lead_tx, lead_rx) = tokio::sync::watch::channel(Leadership::Leader(dispatcher.clone()));
    let (_view_tx, view_rx) = tokio::sync::watch::channel(ClusterView::default());
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        creds(manager_id, Role::Manager),
        &RpcConfig::default(),
        dispatcher_routes(Router::new(), DispatcherTarget::new(lead_rx, view_rx)),
        ServerOptions::default(),
    )
    .expect("server binds");
    let peer = Peer {
        addr: server.local_addr().unwrap(),
        role: Role::Manager,
        node_id: Some(manager_id),
    };

    // Members with one assigned task each, and a client per member.
    let service = swarm_core::testing::service(1, "herd", 1);
    proposer
        .propose(vec![StoreAction::Create(Object::from(service.clone()))])
        .await
        .unwrap();
    let n = herd();
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = swarm_core::testing::node(10 + i as u128);
        let mut task = swarm_core::testing::task(100_000 + i as u128, &service, i as u64 + 1);
        task.node_id = Some(node.id);
        task.status.state = TaskState::Assigned;
        let id = node.id;
        proposer
            .propose(vec![
                StoreAction::Create(Object::from(node)),
                StoreAction::Create(Object::from(task.clone())),
            ])
            .await
            .unwrap();
        let client = Client::bind(
            "127.0.0.1:0".parse().unwrap(),
            creds(id, Role::Worker),
            RpcConfig::default(),
        )
        .expect("client binds");
        nodes.push((id, task.id, Arc::new(client)));
    }

    // The herd: every node opens its session at once.
    let mut opens = Vec::new();
    for (id, task, client) in &nodes {
        let (id, task, client) = (*id, *task, client.clone());
        opens.push(tokio::spawn(async move {
            let open = async {
                let mut s = client
                    .server_streaming(&peer, &SESSION, &SessionRequest::default(), None)
                    .await
                    .map_err(|e| format!("node {id}: session call: {e}"))?;
                match s.next().await {
                    Some(Ok(SessionMessage::Info(i))) if i.node_id == id => {}
                    other => return Err(format!("node {id}: no session info: {other:?}")),
                }
                match s.next().await {
                    Some(Ok(SessionMessage::Assignments(set)))
                        if set.full && set.tasks.iter().map(|t| t.id).eq([task]) => {}
                    other => return Err(format!("node {id}: no full set of its task: {other:?}")),
                }
                Ok(s)
            };
            tokio::time::timeout(T, open)
                .await
                .unwrap_or_else(|_| Err(format!("node {id}: no session within {T:?}")))
        }));
    }
    let mut streams = Vec::new();
    let mut failed = Vec::new();
    for o in opens {
        match o.await.expect("no panic") {
            Ok(s) => streams.push(s),
            Err(e) => failed.push(e),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {n} sessions failed; first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let live = nodes
        .iter()
        .filter(|(id, _, _)| dispatcher.is_connected(*id))
        .count();
    assert_eq!(live, n, "sessions live on the manager");
    drop(streams);
    dispatcher.close().await;
    server.shutdown(Duration::from_millis(100)).await;
}
