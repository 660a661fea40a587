//! Process-adapter start-to-running latency: `prepare` + `start` of `sleep 1000` until the child
//! runs, measured one task at a time, with and without private namespaces (namespaces need root).
//!
//! `cargo bench -p swarm-benches --bench runtime_process_start` (`SWARM_BENCH_N` = iterations,
//! default 300). Prints p50 / p99 / max.

#[path = "runtime_support/mod.rs"]
mod common;

use std::time::Instant;

use swarm_core::objects::service::ContainerSpec;
use swarm_core::Id;
use swarm_runtime::{ProcessOptions, ProcessRuntime, Runtime, TaskConfig};

async fn measure(namespaces: bool, n: usize) {
    let rt = match ProcessRuntime::with_options(ProcessOptions {
        namespaces,
        stage_dir: None,
        volumes_dir: None,
        supervisor: None,
    }) {
        Ok(rt) => rt,
        Err(e) => {
            println!("process namespaces={namespaces}: skipped ({e})");
            return;
        }
    };
    let spec = ContainerSpec {
        command: vec!["sleep".into(), "1000".into()],
        ..ContainerSpec::default()
    };
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let cfg = TaskConfig::new(Id::from_u128(1_000_000 + i as u128), "bench", spec.clone());
        let t0 = Instant::now();
        rt.prepare(&cfg).await.expect("prepare");
        rt.start(&cfg.task_id).await.expect("start");
        lat.push(t0.elapsed());
        rt.remove(&cfg.task_id).await.expect("remove");
    }
    let (p50, p99, max) = common::percentiles(lat);
    println!(
        "process namespaces={namespaces}: start-to-running over {n} tasks: p50 {} p99 {} max {}",
        common::ms(p50),
        common::ms(p99),
        common::ms(max)
    );
}

fn main() {
    let n = common::iterations(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        measure(false, n).await;
        measure(true, n).await;
    });
}
