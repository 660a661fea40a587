//! Load figure for the dispatcher over QUIC: N simulated nodes (each with its own certificate and
//! QUIC client) on 127.0.0.1 open sessions against one manager, then each sends status reports.
//!
//! Run: `cargo run --release -p swarm-node --example dispatch_load -- [NODES] [REPORTS_PER_NODE]`
//! (defaults 1000 and 20). Prints sessions/s (until every node read its full set) and status
//! reports/s (unary calls answered, one update each), and the committed count after a flush.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use swarm_core::dispatch::TaskStatusUpdate;
use swarm_core::{
    Id, LocalProposer, ManualClock, Object, Proposer, SharedStore, StoreAction, TaskState,
    TaskStatus, Timestamp,
};
use swarm_net::pki::testing::TestPki;
use swarm_net::pki::DEFAULT_NODE_CERT_VALIDITY;
use swarm_net::rpc::{Client, Peer, Router, RpcConfig, Server, ServerOptions, TlsState};
use swarm_net::{NodeIdentity, Role};
use swarm_node::dispatcher::{DispatcherOptions, StoreDispatcher};
use swarm_node::net::dispatch::{
    dispatcher_routes, ClusterView, DispatcherTarget, Leadership, SessionMessage, SessionRequest,
    StatusRequest, SESSION, UPDATE_STATUS,
};

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

const T: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let reports: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);

    let store = SharedStore::default();
    let proposer: Arc<dyn Proposer> = Arc::new(LocalProposer::new(
        store.clone(),
        Arc::new(ManualClock::new(Default::default())),
    ));
    let dispatcher = StoreDispatcher::new(
        store.clone(),
        proposer.clone(),
        DispatcherOptions::default(),
    );
    let mut pki = TestPki::new(7, now());
    let cluster_id = pki.cluster_id();
    let mut creds = |node_id: Id, role: Role| {
        let identity = NodeIdentity {
            node_id,
            role,
            cluster_id,
        };
        TlsState::new(&pki.node_as(identity, DEFAULT_NODE_CERT_VALIDITY, now()))
    };
    let manager_id = Id::from_u128(u128::MAX - 1);
    let (_lead_tx, lead_rx) = tokio::sync::watch::channel(Leadership::Leader(dispatcher.clone()));
    let (_view_tx, view_rx) = tokio::sync::watch::channel(ClusterView::default());
    let server = Server::bind(
        "127.0.0.1:0".parse()?,
        creds(manager_id, Role::Manager)?,
        &RpcConfig::default(),
        dispatcher_routes(Router::new(), DispatcherTarget::new(lead_rx, view_rx)),
        ServerOptions::default(),
    )?;
    let peer = Peer {
        addr: server.local_addr()?,
        role: Role::Manager,
        node_id: Some(manager_id),
    };

    // Nodes, one task each.
    let service = swarm_core::testing::service(1, "load", 1);
    proposer
        .propose(vec![StoreAction::Create(Object::from(service.clone()))])
        .await?;
    let mut members = Vec::new();
    for i in 0..nodes {
        let node = swarm_core::testing::node(10 + i as u128);
        let mut task = swarm_core::testing::task(100_000 + i as u128, &service, i as u64 + 1);
        task.node_id = Some(node.id);
        task.status.state = TaskState::Assigned;
        members.push((node.id, task.clone()));
        proposer
            .propose(vec![
                StoreAction::Create(Object::from(node)),
                StoreAction::Create(Object::from(task)),
            ])
            .await?;
    }
    let mut clients = Vec::new();
    for (id, task) in &members {
        let c = Client::bind(
            "127.0.0.1:0".parse()?,
            creds(*id, Role::Worker)?,
            RpcConfig::default(),
        )?;
        clients.push((Arc::new(c), task.clone()));
    }
    println!(
        "{nodes} nodes, {reports} reports each; manager on {}",
        peer.addr
    );

    // Sessions: every node opens one and reads its info and full set.
    let started = Instant::now();
    let mut opens = Vec::new();
    for (client, _) in &clients {
        let client = client.clone();
        opens.push(tokio::spawn(async move {
            let mut s = client
                .server_streaming(&peer, &SESSION, &SessionRequest::default(), Some(T))
                .await?;
            let id = match s.next().await {
                Some(Ok(SessionMessage::Info(i))) => i.session_id,
                other => return Err(format!("no info: {other:?}").into()),
            };
            match s.next().await {
                Some(Ok(SessionMessage::Assignments(set))) if set.full => {}
                other => return Err(format!("no full set: {other:?}").into()),
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((s, id))
        }));
    }
    let mut sessions = Vec::new();
    for o in opens {
        sessions.push(o.await?.map_err(|e| e.to_string())?);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sessions: {nodes} in {secs:.3} s = {:.0} sessions/s",
        nodes as f64 / secs
    );

    // Status reports: each node reports its task `reports` times (assigned -> ... running).
    let started = Instant::now();
    let mut calls = Vec::new();
    for ((client, task), (_, session)) in clients.iter().zip(&sessions) {
        let (client, task, session) = (client.clone(), task.clone(), *session);
        calls.push(tokio::spawn(async move {
            for k in 0..reports {
                let req = StatusRequest {
                    session_id: session,
                    updates: vec![TaskStatusUpdate {
                        task_id: task.id,
                        status: TaskStatus {
                            state: TaskState::Running,
                            message: format!("report {k}"),
                            ..task.status.clone()
                        },
                    }],
                };
                client.unary(&peer, &UPDATE_STATUS, &req, T).await?;
            }
            Ok::<_, swarm_net::rpc::RpcError>(())
        }));
    }
    for c in calls {
        c.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let total = nodes * reports;
    println!(
        "status reports: {total} in {secs:.3} s = {:.0} reports/s",
        total as f64 / secs
    );
    dispatcher.flush().await;
    let s = dispatcher.stats();
    println!(
        "committer: {} batches received, {} task updates committed",
        s.batches.load(std::sync::atomic::Ordering::Relaxed),
        s.committed.load(std::sync::atomic::Ordering::Relaxed)
    );
    drop(sessions);
    dispatcher.close().await;
    server.shutdown(Duration::from_millis(200)).await;
    Ok(())
}
