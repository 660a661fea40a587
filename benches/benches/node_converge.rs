//! Whole-daemon convergence: the time from one Docker API call (`POST /services/create`, served by
//! swarm-node's API on a Unix socket) until every replica runs, as the store shows it (raft commit,
//! orchestrator, scheduler, dispatcher, agent, runtime, status batching, raft commit again).
//!
//! - `process`: 100 replicas of `sleep 300` on the process runtime. Target: <= 3 s.
//! - `sim`: 1 000 replicas on the sim runtime. Target: <= 2 s.
//!
//! Each round uses a fresh daemon and data directory; 3 rounds per scenario, every figure printed.
//!
//! `cargo bench -p swarm-benches --bench node_converge` (`SWARM_BENCH_SCENARIO=process|sim`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::{TaskState, WatchFilter};
use swarm_node::backend::{Backend, InitRequest};
use swarm_node::config::{DaemonConfig, RuntimeKind};
use swarm_node::daemon::Daemon;
use swarm_node::testing::TestServer;

const ROUNDS: usize = 3;

async fn round(runtime: RuntimeKind, replicas: u64) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = DaemonConfig::new(dir.path());
    config.runtime = runtime;
    let daemon = Daemon::start(config).await.expect("daemon starts");
    daemon
        .init(InitRequest::default())
        .await
        .expect("swarm init");
    let server = TestServer::start(daemon.clone() as Arc<dyn Backend>)
        .await
        .expect("API serves");
    let mut client = server.client().await.expect("API connects");
    let store = daemon.cluster().expect("active").store;
    let watcher = store.watch(WatchFilter::all());
    let body = format!(
        r#"{{"Name":"bench","TaskTemplate":{{"ContainerSpec":{{"Image":"busybox","Command":["sleep","300"]}},"RestartPolicy":{{"Condition":"any","Delay":100000000}}}},"Mode":{{"Replicated":{{"Replicas":{replicas}}}}}}}"#
    );
    let running = |s: &swarm_core::Store| {
        s.iter::<swarm_core::Task>()
            .filter(|t| t.status.state == TaskState::Running)
            .count()
    };
    let start = Instant::now();
    let resp = client
        .request("POST", "/v1.44/services/create", Some(body.as_bytes()))
        .await
        .expect("create answered");
    assert_eq!(resp.status, 201, "create failed: {}", resp.text());
    let wait = async {
        while store.view(running) < replicas as usize {
            if watcher.recv_many().await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .expect("every replica runs within 2 minutes");
    let took = start.elapsed();
    drop(client);
    drop(server);
    daemon.shutdown().await;
    took
}

fn report(name: &str, target: &str, mut times: Vec<Duration>) {
    times.sort();
    let all: Vec<String> = times
        .iter()
        .map(|t| format!("{:.0} ms", t.as_secs_f64() * 1e3))
        .collect();
    println!(
        "{name}: median {:.0} ms (rounds: {}) target {target}",
        times[times.len() / 2].as_secs_f64() * 1e3,
        all.join(", ")
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let only = std::env::var("SWARM_BENCH_SCENARIO").ok();
    let want = |s: &str| only.as_deref().is_none_or(|o| o == s);
    rt.block_on(async {
        if want("process") {
            let mut t = Vec::new();
            for _ in 0..ROUNDS {
                t.push(round(RuntimeKind::Process, 100).await);
            }
            report("api_to_100_running/process", "<= 3 s", t);
        }
        if want("sim") {
            let mut t = Vec::new();
            for _ in 0..ROUNDS {
                t.push(round(RuntimeKind::Sim, 1000).await);
            }
            report("api_to_1000_running/sim", "<= 2 s", t);
        }
    });
}
