//! A worker pack: `count` simulated worker nodes in one process and one tokio runtime, each a
//! real node as far as the managers can tell: its own key, CSR and certificate (joined with the
//! worker token through the CA, `swarm_node::net::ca::join::join_on`), its own QUIC connection
//! presenting its own certificate, a `NetDispatcher` session with heartbeats and status reports,
//! and an `Agent` over its own `SimRuntime`. The nodes' connections share one UDP socket, one
//! `swarm_net::rpc::ClientEndpoint` per pack: a quinn endpoint per node cost about 2.2 MiB RSS
//! each (its receive buffer), which kept a 10,000-node run off this machine.
//!
//! What it leaves out of a worker daemon: the data directory (nothing is written to disk: the
//! key and certificate live in memory only), certificate renewal (certificates outlive any run)
//! and the log publisher.
//!
//! Protocol with the driver (stdout, one line each): `joined <n> <ms>` as joins complete (every
//! 5 %), `failed <index> <error>` per join given up, `ready <count> <ms>` once every agent runs,
//! then `connected <n>` every 5 s (agents that have opened a session at least once). The pack exits when its standard
//! input closes (the driver went away) or on SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::objects::node::NodeAvailability;
use swarm_net::rpc::{Client, ClientEndpoint, TlsState};
use swarm_node::net::ca::join::join_on;
use swarm_node::net::dispatch::{NetDispatcher, NetDispatcherOptions, WeightedManager};
use swarm_node::net::node::{now, worker_rpc_config};
use swarm_runtime::{Agent, AgentConfig, SimRuntime};
use tokio::sync::Semaphore;

/// What a pack is told by the driver.
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// The manager to join through (and the dispatcher's first seed).
    pub manager: SocketAddr,
    /// The worker join token.
    pub token: String,
    /// How many nodes.
    pub count: usize,
    /// The loopback address the nodes' endpoints bind.
    pub bind_ip: IpAddr,
    /// Hostname prefix (`<prefix>-<i>`).
    pub name: String,
    /// Joins in flight at once.
    pub parallel: usize,
}

/// One running simulated node (kept alive by being held).
struct SimNode {
    _agent: Agent,
    _client: Arc<Client>,
}

/// Tries of one node's join before it is given up.
const JOIN_TRIES: u32 = 5;

async fn start_node(
    o: &PackOptions,
    endpoint: &ClientEndpoint,
    index: usize,
    connected: Arc<AtomicUsize>,
) -> Result<SimNode, String> {
    let mut last = String::new();
    let mut joined = None;
    for attempt in 0..JOIN_TRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << attempt.min(4))).await;
        }
        match join_on(endpoint, o.manager, &o.token, NodeAvailability::Active, now).await {
            Ok(j) => {
                joined = Some(j);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let joined = joined.ok_or(last)?;
    let tls = TlsState::new(&joined.material).map_err(|e| e.to_string())?;
    let client = Arc::new(endpoint.client(tls).map_err(|e| e.to_string())?);
    let seeds = vec![WeightedManager {
        addr: o.manager,
        node_id: None,
        weight: 1,
    }];
    let dispatcher = NetDispatcher::new(client.clone(), seeds, NetDispatcherOptions::default());
    // Counts sessions: a session info arrives with every session opened.
    {
        let mut info = dispatcher.session_info();
        tokio::spawn(async move {
            let mut counted = false;
            while info.changed().await.is_ok() {
                if !counted && info.borrow_and_update().is_some() {
                    counted = true;
                    connected.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let description =
        swarm_node::manager::host::describe_host(Some(&format!("{}-{index}", o.name)));
    let config = AgentConfig::new(joined.node_id, description);
    let agent = Agent::spawn(config, Arc::new(SimRuntime::new()), Arc::new(dispatcher));
    Ok(SimNode {
        _agent: agent,
        _client: client,
    })
}

/// Runs the pack until stdin closes or SIGTERM. See the module docs.
pub async fn run(o: PackOptions) -> Result<(), String> {
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(o.parallel.max(1)));
    let connected = Arc::new(AtomicUsize::new(0));
    let endpoint = ClientEndpoint::bind(
        SocketAddr::new(o.bind_ip, 0),
        worker_rpc_config(&swarm_raft::entropy::os()),
    )
    .map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..o.count {
        let o = o.clone();
        let gate = gate.clone();
        let tx = tx.clone();
        let connected = connected.clone();
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let r = start_node(&o, &endpoint, i, connected).await;
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let mut nodes = Vec::with_capacity(o.count);
    let mut done = 0usize;
    let step = (o.count / 20).max(1);
    while let Some((i, r)) = rx.recv().await {
        done += 1;
        match r {
            Ok(n) => nodes.push(n),
            Err(e) => println!("failed {i} {}", e.replace('\n', " ")),
        }
        if done.is_multiple_of(step) {
            println!("joined {done} {}", start.elapsed().as_millis());
        }
    }
    println!("ready {} {}", nodes.len(), start.elapsed().as_millis());
    // Standard input closing (the driver gone) ends the pack.
    let (eof_tx, mut eof) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = eof_tx.send(());
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = &mut eof => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => println!("connected {}", connected.load(Ordering::Relaxed)),
        }
    }
    // Exiting drops every node: the managers see the connections close.
    drop(nodes);
    endpoint.close();
    Ok(())
}
