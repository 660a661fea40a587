//! One agent driving 10 000 `sim` tasks: time from handing the assignment set to the in-process
//! dispatcher until the dispatcher has received `running` for every task (default batching:
//! 100 ms / 10 000 items). Target: <= 1 s. Runs 5 rounds, each with a fresh agent and runtime.
//!
//! `cargo bench -p swarm-benches --bench runtime_agent_sim` (`SWARM_BENCH_N` = tasks).

#[path = "runtime_support/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::objects::node::NodeDescription;
use swarm_core::objects::service::{ContainerSpec, TaskSpec};
use swarm_core::{Annotations, Id, Task, TaskState, TaskStatus};
use swarm_runtime::{Agent, AgentConfig, Dispatcher, LocalDispatcher, SimRuntime};

fn tasks(n: usize, node: Id, round: u128) -> Vec<Arc<Task>> {
    let spec = Arc::new(TaskSpec {
        container: ContainerSpec {
            image: "sim".into(),
            ..ContainerSpec::default()
        },
        ..TaskSpec::default()
    });
    (0..n)
        .map(|i| {
            Arc::new(Task {
                id: Id::from_u128(round * 1_000_000 + i as u128 + 1),
                meta: Default::default(),
                service_id: Id::from_u128(1),
                service_annotations: Annotations::named("bench"),
                slot: i as u64 + 1,
                node_id: Some(node),
                spec: spec.clone(),
                spec_version: Default::default(),
                status: TaskStatus {
                    state: TaskState::Assigned,
                    ..TaskStatus::default()
                },
                desired_state: TaskState::Running,
                job_iteration: None,
                assigned_secrets: Vec::new(),
                assigned_configs: Vec::new(),
                networks: Vec::new(),
                ports: Vec::new(),
            })
        })
        .collect()
}

async fn round(n: usize, r: u128) -> Duration {
    let node = Id::from_u128(42);
    let d = LocalDispatcher::new();
    let rt = Arc::new(SimRuntime::new());
    let dispatcher: Arc<dyn Dispatcher> = Arc::new(d.clone());
    let agent = Agent::spawn(
        AgentConfig::new(node, NodeDescription::default()),
        rt,
        dispatcher,
    );
    assert!(d.wait_connected(node, Duration::from_secs(10)).await);
    let ts = tasks(n, node, r);
    let t0 = Instant::now();
    d.assign(node, ts, vec![], vec![]);
    let ok = d
        .wait_until(Duration::from_secs(120), |m| {
            m.len() >= n && m.values().filter(|s| s.state == TaskState::Running).count() >= n
        })
        .await;
    let took = t0.elapsed();
    assert!(ok, "not all tasks reached running");
    agent.stop().await;
    took
}

fn main() {
    let n = common::iterations(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let mut all = Vec::new();
    for r in 1..=5 {
        let took = rt.block_on(round(n, r));
        println!(
            "agent+sim: {n} tasks assigned -> all running: {}",
            common::ms(took)
        );
        all.push(took);
    }
    let (p50, _, max) = common::percentiles(all);
    println!(
        "agent+sim: {n} tasks, 5 rounds: median {} worst {} (target <= 1000 ms: {})",
        common::ms(p50),
        common::ms(max),
        if max <= Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}
