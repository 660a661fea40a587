//! Load figure for the dispatcher over QUIC: N simulated nodes (each with its own certificate and
//! QUIC client) on 127.0.0.1 open sessions against one manager, heartbeat as agents do, and send
//! status reports.
//!
//! Run: `cargo build --release -p swarm-node --example dispatch_load &&
//! target/release/examples/dispatch_load [NODES] [REPORTS_PER_NODE] [REST_SECONDS]`
//! (defaults 1000, 20 and 20). Prints, in order:
//! - sessions opened/s: every node opens its session at once and reads its info and full set;
//!   from then on each node heartbeats every period the manager gives it (5 s ± 10 %), as an
//!   agent does;
//! - status reports/s: each node sends `REPORTS_PER_NODE` unary reports, one update each;
//! - heartbeats/s: each node sends 5 heartbeats back to back (the manager's capacity);
//! - at rest: for `REST_SECONDS`, nothing but the agents' periodic heartbeats; the heartbeats
//!   answered per second and the leader's CPU (its own runtime's threads, named `leader`, read
//!   from `/proc/self/task/*/stat`, so the simulated nodes' CPU is not counted);
//! - how many sessions are still live at the end, and the committer's counters.
//!
//! The manager (server endpoint, dispatcher, status committer) runs on its own tokio runtime (2
//! threads named `leader`), the simulated nodes on another (2 threads); a failed call is counted
//! and its first errors printed, and the program exits non-zero if any call failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    dispatcher_routes, ClusterView, DispatcherTarget, HeartbeatRequest, Leadership, SessionMessage,
    SessionRequest, StatusRequest, HEARTBEAT, SESSION, UPDATE_STATUS,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

const T: Duration = Duration::from_secs(30);
/// Heartbeats each node sends back to back in the capacity phase.
const BURST: usize = 5;
/// `/proc/*/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far by this process's threads named `name` (their `comm`).
fn thread_cpu(name: &str) -> f64 {
    let mut ticks = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid ... utime stime ...": utime and stime are fields 14 and 15.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map_or("", |(_, c)| c);
        if !comm.starts_with(name) {
            continue;
        }
        let fields: Vec<&str> = rest.split(' ').collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        ticks += field(11).unwrap_or(0) + field(12).unwrap_or(0);
    }
    ticks as f64 / TICKS_PER_SECOND
}

/// The machine's UDP receive-buffer overflows so far (`RcvbufErrors` in `/proc/net/snmp`): a
/// datagram dropped because a socket's buffer was full.
fn udp_overflows() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Failed calls: counted, the first few kept to print.
#[derive(Default)]
struct Failures {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Failures {
    fn note(&self, what: &str, e: impl std::fmt::Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 5 {
            first.push(format!("{what}: {e}"));
        }
    }

    fn report(&self, phase: &str) -> u64 {
        let n = self.count.swap(0, Ordering::Relaxed);
        if n > 0 {
            println!("  {phase}: {n} calls FAILED");
            for e in self
                .first
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                println!("    {e}");
            }
        }
        n
    }
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let reports: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let rest: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);

    let leader_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("leader")
        .enable_all()
        .build()?;
    let nodes_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("nodes")
        .enable_all()
        .build()?;

    let store = SharedStore::default();
    let proposer: Arc<dyn Proposer> = Arc::new(LocalProposer::new(
        store.clone(),
        Arc::new(ManualClock::new(Default::default())),
    ));
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
    let manager_tls = creds(manager_id, Role::Manager)?;

    // The manager: everything it spawns (endpoint driver, connections, calls, sessions'
    // streamers, the status committer) runs on the leader runtime.
    let (dispatcher, server, _lead_tx, _view_tx) = {
        let _on_leader = leader_rt.enter();
        let dispatcher = StoreDispatcher::new(
            store.clone(),
            proposer.clone(),
            DispatcherOptions::default(),
        );
        let (lead_tx, lead_rx) =
            tokio::sync::watch::channel(Leadership::Leader(dispatcher.clone()));
        let (view_tx, view_rx) = tokio::sync::watch::channel(ClusterView::default());
        let server = Server::bind(
            "127.0.0.1:0".parse()?,
            manager_tls,
            &RpcConfig::default(),
            dispatcher_routes(Router::new(), DispatcherTarget::new(lead_rx, view_rx)),
            ServerOptions::default(),
        )?;
        (dispatcher, server, lead_tx, view_tx)
    };
    let peer = Peer {
        addr: server.local_addr()?,
        role: Role::Manager,
        node_id: Some(manager_id),
    };

    nodes_rt.block_on(async {
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
            "{nodes} nodes, {reports} reports each, {rest} s at rest; manager on {}",
            peer.addr
        );
        let overflows = udp_overflows();
        let failures = Arc::new(Failures::default());
        let beats = Arc::new(AtomicU64::new(0));
        let mut failed = 0;

        // Sessions: every node opens one and reads its info and full set, then keeps reading
        // its stream and heartbeats every period, as an agent does.
        let started = Instant::now();
        let mut opens = Vec::new();
        for (client, _) in &clients {
            let client = client.clone();
            let (failures, beats) = (failures.clone(), beats.clone());
            opens.push(tokio::spawn(async move {
                // The stream itself has no deadline (it lives as long as the session); opening
                // it, up to the full set, is bounded by T.
                let open = async {
                    let mut s = client
                        .server_streaming(&peer, &SESSION, &SessionRequest::default(), None)
                        .await?;
                    let info = match s.next().await {
                        Some(Ok(SessionMessage::Info(i))) => i,
                        other => return Err(format!("no info: {other:?}").into()),
                    };
                    match s.next().await {
                        Some(Ok(SessionMessage::Assignments(set))) if set.full => {}
                        other => return Err(format!("no full set: {other:?}").into()),
                    }
                    Ok::<_, BoxError>((s, info))
                };
                let (mut s, info) = tokio::time::timeout(T, open)
                    .await
                    .map_err(|_| format!("no session within {T:?}"))??;
                let id = info.session_id;
                let reader = tokio::spawn(async move { while let Some(Ok(_)) = s.next().await {} });
                let beating = tokio::spawn({
                    let client = client.clone();
                    async move {
                        let mut period = info.heartbeat_period;
                        loop {
                            tokio::time::sleep(period).await;
                            let req = HeartbeatRequest { session_id: id };
                            match client.unary(&peer, &HEARTBEAT, &req, T).await {
                                Ok(r) => {
                                    period = r.period;
                                    beats.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    failures.note("periodic heartbeat", e);
                                    return;
                                }
                            }
                        }
                    }
                });
                Ok::<_, BoxError>((id, reader, beating))
            }));
        }
        let mut sessions = Vec::new();
        for o in opens {
            match o.await? {
                Ok(s) => sessions.push(Some(s)),
                Err(e) => {
                    failures.note("session", e);
                    sessions.push(None);
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let opened = sessions.iter().filter(|s| s.is_some()).count();
        println!(
            "sessions: {opened} of {nodes} opened in {secs:.3} s = {:.0} sessions/s",
            opened as f64 / secs
        );
        failed += failures.report("sessions");

        // Status reports: each node reports its task `reports` times.
        let started = Instant::now();
        let mut calls = Vec::new();
        for ((client, task), session) in clients.iter().zip(&sessions) {
            let Some((session, _, _)) = session else {
                continue;
            };
            let (client, task, session) = (client.clone(), task.clone(), *session);
            let failures = failures.clone();
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
                    if let Err(e) = client.unary(&peer, &UPDATE_STATUS, &req, T).await {
                        failures.note("status report", e);
                        return;
                    }
                }
            }));
        }
        for c in calls {
            c.await?;
        }
        let secs = started.elapsed().as_secs_f64();
        let total = opened * reports;
        println!(
            "status reports: {total} in {secs:.3} s = {:.0} reports/s",
            total as f64 / secs
        );
        failed += failures.report("status reports");

        // Heartbeat capacity: BURST heartbeats per node, back to back.
        let started = Instant::now();
        let mut calls = Vec::new();
        for ((client, _), session) in clients.iter().zip(&sessions) {
            let Some((session, _, _)) = session else {
                continue;
            };
            let (client, session) = (client.clone(), *session);
            let failures = failures.clone();
            calls.push(tokio::spawn(async move {
                for _ in 0..BURST {
                    let req = HeartbeatRequest {
                        session_id: session,
                    };
                    if let Err(e) = client.unary(&peer, &HEARTBEAT, &req, T).await {
                        failures.note("burst heartbeat", e);
                        return;
                    }
                }
            }));
        }
        for c in calls {
            c.await?;
        }
        let secs = started.elapsed().as_secs_f64();
        let total = opened * BURST;
        println!(
            "heartbeats (back to back): {total} in {secs:.3} s = {:.0} heartbeats/s",
            total as f64 / secs
        );
        failed += failures.report("burst heartbeats");

        // At rest: only the periodic heartbeats.
        let cpu0 = thread_cpu("leader");
        let beats0 = beats.load(Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(rest)).await;
        let secs = started.elapsed().as_secs_f64();
        let cpu = thread_cpu("leader") - cpu0;
        let answered = beats.load(Ordering::Relaxed) - beats0;
        println!(
            "at rest: {answered} heartbeats in {secs:.1} s = {:.0} heartbeats/s; leader CPU {:.1} % of one core",
            answered as f64 / secs,
            100.0 * cpu / secs
        );
        failed += failures.report("periodic heartbeats");
        let live = members
            .iter()
            .filter(|(id, _)| dispatcher.is_connected(*id))
            .count();
        println!("live sessions at the end: {live} of {nodes}");
        println!(
            "UDP datagrams dropped on full receive buffers (whole machine): {}",
            udp_overflows() - overflows
        );

        dispatcher.flush().await;
        let s = dispatcher.stats();
        println!(
            "committer: {} batches received, {} task updates committed",
            s.batches.load(Ordering::Relaxed),
            s.committed.load(Ordering::Relaxed)
        );
        for (_, reader, beating) in sessions.into_iter().flatten() {
            reader.abort();
            beating.abort();
        }
        if failed > 0 || live != nodes {
            return Err(format!("{failed} calls failed; {live} of {nodes} sessions live").into());
        }
        Ok::<_, BoxError>(())
    })?;
    leader_rt.block_on(async {
        dispatcher.close().await;
        server.shutdown(Duration::from_millis(200)).await;
    });
    Ok(())
}
