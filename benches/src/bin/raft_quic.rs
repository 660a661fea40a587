//! Raft throughput with 3 managers over swarm-net QUIC on loopback (swarm-node's `QuicTransport`),
//! beside the same cluster over swarm-raft's in-memory router.
//!
//! Run: `cargo run --release -p swarm-benches --bin raft_quic -- [quic|memory|both] [CLIENTS] [ROUNDS]`
//! (defaults: both, 64 clients, 150 rounds). Each client proposes ROUNDS single-action 1 KiB
//! secret creations on the leader, one after the other; the figure is actions committed per
//! second, with the p50/p99 latency of one proposal. Real WALs (fsync) in a temporary directory,
//! default raft settings (`SWARM_BENCH_WAL_PREALLOC=<bytes>` sets the WAL's preallocation chunk,
//! 0 turns it off), TestPki certificates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::testing::secret;
use swarm_core::{Proposer, SharedStore, StoreAction};
use swarm_net::pki::testing::{system_now, TestPki};
use swarm_net::rpc::{Client, Router, RpcConfig, Server, ServerOptions, TlsState};
use swarm_net::Role;
use swarm_node::net::raft::{alpn_protocol, raft_routes, MemberMap, QuicTransport, RaftTarget};
use swarm_raft::testing::{test_kdf, TestCluster};
use swarm_raft::{NodeConfig, RaftConfig, RaftNode, StartOptions};

type Fail = Box<dyn std::error::Error>;

/// Default raft settings; `SWARM_BENCH_WAL_PREALLOC=<bytes>` overrides the WAL's preallocation
/// chunk (0: off), to tell its share of a figure from the rest.
fn raft_config() -> RaftConfig {
    let mut c = RaftConfig::default();
    if let Some(n) = std::env::var("SWARM_BENCH_WAL_PREALLOC")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.wal_prealloc_bytes = n;
    }
    c
}

/// Three managers over QUIC; returns the nodes (index 0 bootstrapped) and their servers.
async fn quic_cluster(dir: &std::path::Path) -> Result<(Vec<RaftNode>, Vec<Server>), Fail> {
    let mut pki = TestPki::new(1, system_now());
    let members = Arc::new(MemberMap::new());
    let config = RpcConfig {
        alpn_protocol: alpn_protocol(),
        ..RpcConfig::default()
    };
    let (mut nodes, mut servers, mut addrs) = (Vec::new(), Vec::new(), Vec::new());
    for id in 1..=3u64 {
        let material = pki.node(Role::Manager);
        members.insert(id, material.identity().node_id);
        let tls = TlsState::new(&material)?;
        let target = RaftTarget::new(members.clone());
        let bind: SocketAddr = format!("127.0.0.{}:0", 20 + id).parse()?;
        let server = Server::bind(
            bind,
            tls.clone(),
            &config,
            raft_routes(Router::new(), target.clone()),
            ServerOptions::default(),
        )?;
        let addr = server.local_addr()?;
        let client = Client::on(server.endpoint().clone(), tls, config.clone())?;
        let transport = Arc::new(QuicTransport::new(Arc::new(client), members.clone()));
        let mut nc = NodeConfig::new(id, addr.to_string(), dir.join(id.to_string()));
        nc.raft = raft_config();
        nc.kdf = test_kdf();
        let node = RaftNode::start(
            nc,
            SharedStore::default(),
            transport,
            StartOptions::default(),
        )
        .await?;
        target.set(Some(node.clone()));
        nodes.push(node);
        servers.push(server);
        addrs.push(addr);
    }
    nodes[0].bootstrap().await?;
    wait_leader(&nodes[0]).await?;
    for (i, addr) in addrs.iter().enumerate().skip(1) {
        nodes[0].add_manager(i as u64 + 1, addr.to_string()).await?;
    }
    Ok((nodes, servers))
}

async fn wait_leader(n: &RaftNode) -> Result<(), Fail> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(n.status().leads() && n.is_leader()) {
        if Instant::now() > deadline {
            return Err("no leader".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn run(
    label: &str,
    leader: RaftNode,
    followers: &[RaftNode],
    clients: usize,
    rounds: usize,
) -> Result<(), Fail> {
    let before = leader.wal_stats();
    let follower_before = followers.first().map(|f| f.wal_stats());
    let start = Instant::now();
    let mut handles = Vec::new();
    for client in 0..clients {
        let n = leader.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(rounds);
            for r in 0..rounds {
                let k = 30_000_000 + (client * rounds + r) as u128;
                let one = vec![StoreAction::Create(
                    secret(k, &format!("c-{k}"), &[0x5a; 1024]).into(),
                )];
                let t = Instant::now();
                n.propose(one).await.map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await??);
    }
    let took = start.elapsed();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "{label}: {:.0} actions/s ({} proposals in {took:.2?}), p50 {:.2?}, p99 {:.2?}",
        lat.len() as f64 / took.as_secs_f64(),
        lat.len(),
        p(0.5),
        p(0.99),
    );
    // How group commit packed the run: proposals per log entry, entries and fsyncs per second.
    let secs = took.as_secs_f64();
    let after = leader.wal_stats();
    let (entries, fsyncs) = (after.entries - before.entries, after.fsyncs - before.fsyncs);
    println!(
        "  leader WAL: {:.1} actions/entry, {:.0} entries/s, {:.0} fsyncs/s",
        (after.actions - before.actions) as f64 / entries.max(1) as f64,
        entries as f64 / secs,
        fsyncs as f64 / secs,
    );
    if let (Some(f), Some(b)) = (followers.first(), follower_before) {
        let a = f.wal_stats();
        println!(
            "  follower WAL: {:.0} entries/s, {:.0} fsyncs/s",
            (a.entries - b.entries) as f64 / secs,
            (a.fsyncs - b.fsyncs) as f64 / secs,
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("both", |s| s.as_str()).to_string();
    let clients: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let rounds: usize = args.get(3).map_or(Ok(150), |s| s.parse())?;
    if mode == "memory" || mode == "both" {
        let c = TestCluster::new(3, raft_config()).await;
        let leader = c.wait_leader(&c.ids(), Duration::from_secs(20)).await;
        let followers: Vec<RaftNode> = c
            .ids()
            .into_iter()
            .filter(|id| *id != leader)
            .map(|id| c.node(id).clone())
            .collect();
        run(
            &format!("in-memory router, 3 managers, {clients} clients x {rounds}"),
            c.node(leader).clone(),
            &followers,
            clients,
            rounds,
        )
        .await?;
        c.shutdown().await;
    }
    if mode == "quic" || mode == "both" {
        let dir = tempfile_dir()?;
        let (nodes, servers) = quic_cluster(&dir).await?;
        run(
            &format!("QUIC loopback, 3 managers, {clients} clients x {rounds}"),
            nodes[0].clone(),
            &nodes[1..],
            clients,
            rounds,
        )
        .await?;
        for n in &nodes {
            n.shutdown().await;
        }
        for s in servers {
            s.shutdown(Duration::from_millis(200)).await;
        }
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// A fresh directory under the system temp dir (tempfile is a dev-dependency only here).
fn tempfile_dir() -> Result<std::path::PathBuf, Fail> {
    let dir = std::env::temp_dir().join(format!("raft-quic-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
