//! Docker-adapter start latency: `prepare` (image check, files, container create) + `start` until
//! the container runs, one task at a time, on the local engine with the busybox test image
//! (`swarm-runtime/tests/support/build-test-image.sh`). Skipped without a Docker socket.
//!
//! `cargo bench -p swarm-benches --bench runtime_docker_start` (`SWARM_BENCH_N`, default 30).

#[path = "runtime_support/mod.rs"]
mod common;

use std::time::Instant;

use swarm_core::objects::service::ContainerSpec;
use swarm_core::Id;
use swarm_runtime::{DockerOptions, DockerRuntime, Runtime, TaskConfig};

const IMAGE: &str = "swarm-test/busybox:latest";

fn main() {
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        println!("docker: skipped (no /var/run/docker.sock)");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../swarm-runtime/tests/support/build-test-image.sh"
    );
    let ok = std::process::Command::new("bash")
        .arg(script)
        .arg(IMAGE)
        .status();
    assert!(
        ok.map(|s| s.success()).unwrap_or(false),
        "building {IMAGE} failed"
    );
    let n = common::iterations(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let docker = DockerRuntime::connect(DockerOptions::default())
            .await
            .expect("docker");
        let spec = ContainerSpec {
            image: IMAGE.into(),
            command: vec!["sleep".into(), "1000".into()],
            ..ContainerSpec::default()
        };
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let (mut total, mut start_only) = (Vec::new(), Vec::new());
        for i in 0..n {
            let cfg = TaskConfig::new(Id::from_u128(base + i as u128), "bench", spec.clone());
            let t0 = Instant::now();
            docker.prepare(&cfg).await.expect("prepare");
            let t1 = Instant::now();
            docker.start(&cfg.task_id).await.expect("start");
            total.push(t0.elapsed());
            start_only.push(t1.elapsed());
            docker.remove(&cfg.task_id).await.expect("remove");
        }
        let (p50, p99, max) = common::percentiles(total);
        println!(
            "docker: prepare+start over {n} containers: p50 {} p99 {} max {}",
            common::ms(p50),
            common::ms(p99),
            common::ms(max)
        );
        let (p50, p99, max) = common::percentiles(start_only);
        println!(
            "docker: start only: p50 {} p99 {} max {}",
            common::ms(p50),
            common::ms(p99),
            common::ms(max)
        );
    });
}
