//! Figures for supervised process tasks (docs/BENCHMARKS.md, "Process runtime: supervision"):
//!
//! 1. stop time: `shutdown` of a running supervised task that exits on SIGTERM, p50/p99 over
//!    `--stops` tasks, one at a time;
//! 2. adoption: `N` supervised tasks are started, the runtime is dropped (as a crashed daemon
//!    loses it), and a new runtime on the same directory times `recover` until all `N` are
//!    adopted; then they are all removed.
//!
//! ```sh
//! cargo build --release -p swarm-runtime --bin swarm-supervisor --example supervised_figures
//! target/release/examples/supervised_figures --tasks 1000 --stops 200
//! ```
//! The supervisor binary is looked up next to the example's directory (`../swarm-supervisor`).

use std::time::{Duration, Instant};

use swarm_core::objects::service::ContainerSpec;
use swarm_core::Id;
use swarm_runtime::process::SupervisorOptions;
use swarm_runtime::testing::unique_id;
use swarm_runtime::{ProcessOptions, ProcessRuntime, Runtime, TaskConfig};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime(dir: &std::path::Path) -> ProcessRuntime {
    let exe = std::env::current_exe().expect("current exe");
    let program = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("swarm-supervisor"))
        .expect("supervisor path");
    ProcessRuntime::with_options(ProcessOptions {
        namespaces: false,
        stage_dir: None,
        volumes_dir: None,
        supervisor: Some(SupervisorOptions {
            program,
            args: Vec::new(),
            dir: dir.join("supervisors"),
        }),
    })
    .expect("process runtime")
}

/// A task that exits on SIGTERM (`stop`), or a bare `sleep` (one process per task, so that
/// 10 000 tasks fit under the machine's pid limit).
fn task(node: Id, stoppable: bool) -> TaskConfig {
    let command = if stoppable {
        vec![
            "sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; while :; do sleep 1 & wait; done".into(),
        ]
    } else {
        vec!["sleep".into(), "100000".into()]
    };
    let spec = ContainerSpec {
        command,
        ..ContainerSpec::default()
    };
    let mut c = TaskConfig::new(unique_id(), "figures", spec);
    c.node_id = node;
    c
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn stops(rt: &ProcessRuntime, node: Id, n: usize) {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let c = task(node, true);
        rt.prepare(&c).await.expect("prepare");
        rt.start(&c.task_id).await.expect("start");
        let t = Instant::now();
        rt.shutdown(&c.task_id).await.expect("shutdown");
        times.push(t.elapsed());
        rt.remove(&c.task_id).await.expect("remove");
    }
    times.sort();
    println!(
        "stop (SIGTERM -> exit reported), {n} tasks: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
}

fn main() {
    let tasks = arg("--tasks", 1000);
    let stop_count = arg("--stops", 200);
    let dir = tempfile::tempdir().expect("temp dir");
    let node = unique_id();
    let ids: Vec<Id> = {
        let tokio = tokio::runtime::Runtime::new().expect("tokio");
        tokio.block_on(async {
            let rt = runtime(dir.path());
            if stop_count > 0 {
                stops(&rt, node, stop_count).await;
            }
            let t = Instant::now();
            let mut ids = Vec::with_capacity(tasks);
            for _ in 0..tasks {
                let c = task(node, false);
                rt.prepare(&c).await.expect("prepare");
                rt.start(&c.task_id).await.expect("start");
                ids.push(c.task_id);
            }
            println!("started {tasks} supervised tasks in {:?}", t.elapsed());
            ids
        })
    };
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    tokio.block_on(async {
        let t = Instant::now();
        let rt = runtime(dir.path());
        let found = rt.recover(&node).await.expect("recover");
        let took = t.elapsed();
        assert_eq!(found.len(), ids.len(), "every task adopted");
        println!(
            "new runtime + recover adopting {} tasks: {took:?}",
            found.len()
        );
        let t = Instant::now();
        for id in &ids {
            rt.remove(id).await.expect("remove");
        }
        println!("removed {} tasks in {:?}", ids.len(), t.elapsed());
    });
}
