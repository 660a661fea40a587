//! Issue 15's multi-host figures, measured on `swarm-node run` daemons in network namespaces
//! (`multihost_support/`) driven by the docker CLI. Ignored by default (minutes of wall time, and
//! figures mean little in a debug build); run them with a release daemon:
//!
//! ```sh
//! cargo build --release -p swarm-node --bin swarm-node
//! SWARM_NODE_BIN=$PWD/target/release/swarm-node \
//!   cargo test -p swarm-node --test multihost_figures -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Each prints `FIGURE` lines (nothing is asserted about time; each test asserts the state it
//! timed was reached):
//! - `join_latency_...`: eleven hosts; ten workers join one after another, each timed from
//!   `docker swarm join --token` to the manager listing the node Ready; p50 and p99 of the ten.
//! - `hundred_replicas_...`: five hosts; `docker service create --detach --replicas 100` to
//!   every replica running (the CLI polled every 200 ms, as `service create` itself does), then a
//!   worker killed (SIGKILL) to all 100 running again on the four others.

mod multihost_support;

use std::time::{Duration, Instant};

use multihost_support::{Cluster, Runtime};

/// The `p`-th percentile (nearest rank) of `samples`.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// Which daemon build ran (figures from a debug build are flagged as such).
fn build() -> &'static str {
    if std::env::var_os("SWARM_NODE_BIN").is_some() {
        "SWARM_NODE_BIN"
    } else {
        "debug build"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figure: minutes of wall time; run with --ignored (see the module docs)"]
async fn join_latency_token_to_ready_over_ten_joins() {
    let Some(mut c) = Cluster::new(11, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    let h0 = c.host(0);
    let token = h0.init(&[]).await.worker;
    let mut samples = Vec::new();
    for i in 1..c.len() {
        let t = Instant::now();
        c.host(i).join(&token, h0).await;
        let want = format!("host{i} Ready");
        h0.wait_for(
            "the worker ready",
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            |out| out.lines().any(|l| l == want),
        )
        .await;
        samples.push(t.elapsed());
    }
    let ready = h0.ok(&["node", "ls", "--format", "{{.Status}}"]).await;
    assert_eq!(ready.lines().filter(|l| *l == "Ready").count(), 11);
    eprintln!(
        "FIGURE join latency (worker, `swarm join` to Ready on the manager, {} joins, {}): p50 {:?} p99 {:?} (samples {samples:?})",
        samples.len(),
        build(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figure: minutes of wall time; run with --ignored (see the module docs)"]
async fn hundred_replicas_over_five_hosts_then_a_host_lost() {
    let Some(mut c) = Cluster::new(5, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    c.form(0, 4).await;
    let h0 = c.host(0);

    let t = Instant::now();
    h0.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "hundred",
        "--replicas",
        "100",
        "busybox",
        "sleep",
        "3600",
    ])
    .await;
    h0.wait_replicas("hundred", "100/100").await;
    let created = t.elapsed();
    let on: Vec<String> = h0
        .running_tasks("hundred")
        .await
        .into_iter()
        .map(|(_, node)| node)
        .collect();
    assert_eq!(on.len(), 100);
    for i in 0..5 {
        let name = format!("host{i}");
        assert_eq!(on.iter().filter(|n| **n == name).count(), 20, "{on:?}");
    }
    eprintln!(
        "FIGURE service create, 100 replicas over 5 hosts, to all running ({}; CLI polled every 200 ms): {created:?}",
        build()
    );

    let t = Instant::now();
    c.host_mut(4).kill().await;
    let h0 = c.host(0);
    h0.wait_for(
        "100 replicas running off host4",
        &[
            "service",
            "ps",
            "hundred",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ],
        |out| {
            let up: Vec<&str> = out.lines().filter(|l| l.contains(" Running")).collect();
            up.len() == 100 && !up.iter().any(|l| l.starts_with("host4 "))
        },
    )
    .await;
    eprintln!(
        "FIGURE node failure (SIGKILL of a worker holding 20 replicas) to its replacements running ({}; 5 s heartbeats, down after 3 missed): {:?}",
        build(),
        t.elapsed()
    );
}
