//! Daemon start with 10 000 tasks in the raft log, and resident memory with 10 000 running tasks.
//!
//! 1. Builds a data directory: a sim-runtime daemon, `swarm init`, one service of 10 000 replicas
//!    created with a control call (`swarm_core::update` on the Backend's `ClusterAccess`), waited
//!    on until every task runs. Prints the convergence time and the process's resident memory
//!    (VmRSS from /proc/self/status) before init and with the 10 000 tasks running.
//! 2. Three times: stops the daemon gracefully, then times `Daemon::start` on that directory until
//!    the API answers `GET /info` with the swarm active (raft log replayed into the store, leader
//!    elected, loops, dispatcher and agent started). Target: <= 2 s.
//!
//! `cargo bench -p swarm-benches --bench node_start` (`SWARM_BENCH_N` = replicas, default 10 000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::{TaskState, WatchFilter};
use swarm_node::backend::{Backend, InitRequest, SwarmState};
use swarm_node::config::{DaemonConfig, RuntimeKind};
use swarm_node::daemon::Daemon;
use swarm_node::testing::TestServer;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn config(dir: &std::path::Path) -> DaemonConfig {
    let mut c = DaemonConfig::new(dir);
    c.runtime = RuntimeKind::Sim;
    c
}

async fn build(dir: &std::path::Path, n: u64) -> Arc<Daemon> {
    let before = rss_mib();
    let daemon = Daemon::start(config(dir)).await.expect("daemon starts");
    daemon
        .init(InitRequest::default())
        .await
        .expect("swarm init");
    let a = daemon.cluster().expect("active");
    let svc = swarm_core::testing::service(1, "bench", n);
    let watcher = a.store.watch(WatchFilter::all());
    let start = Instant::now();
    swarm_core::update(&a.store, a.proposer.as_ref(), |tx| tx.create(svc))
        .await
        .expect("service created");
    let running = |s: &swarm_core::Store| {
        s.iter::<swarm_core::Task>()
            .filter(|t| t.status.state == TaskState::Running)
            .count()
    };
    let wait = async {
        while a.store.view(running) < n as usize {
            if watcher.recv_many().await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), wait)
        .await
        .expect("every replica runs");
    println!(
        "control_to_{n}_running/sim: {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "rss: {before:.1} MiB before init, {:.1} MiB with {n} tasks running (store + raft + agent + sim runtime)",
        rss_mib()
    );
    daemon
}

async fn timed_start(dir: &std::path::Path) -> (Duration, Arc<Daemon>, u64) {
    let start = Instant::now();
    let daemon = Daemon::start(config(dir)).await.expect("daemon restarts");
    let server = TestServer::start(daemon.clone() as Arc<dyn Backend>)
        .await
        .expect("API serves");
    let mut client = server.client().await.expect("API connects");
    let info = client.get("/v1.44/info").await.expect("info answered");
    let took = start.elapsed();
    assert_eq!(info.status, 200);
    assert_eq!(daemon.swarm_state(), SwarmState::Active);
    let index = daemon.cluster().expect("active").store.index();
    (took, daemon, index)
}

fn main() {
    let n: u64 = std::env::var("SWARM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut daemon = build(dir.path(), n).await;
        let mut times = Vec::new();
        for _ in 0..3 {
            daemon.shutdown().await;
            drop(daemon);
            let (took, d, index) = timed_start(dir.path()).await;
            println!(
                "start_to_serving/{n}_tasks_in_log: {:.0} ms (store index {index})",
                took.as_secs_f64() * 1e3
            );
            times.push(took);
            daemon = d;
        }
        daemon.shutdown().await;
        times.sort();
        println!(
            "start_to_serving/{n}_tasks_in_log: median {:.0} ms, target <= 2 s",
            times[1].as_secs_f64() * 1e3
        );
    });
}
