//! Whole clusters on virtual time (feature `sim`): 3 managers and 2 workers, the real daemon on
//! each turmoil host, a seeded workload with faults, every invariant of `swarm_node::sim`.
//!
//! `cargo test -p swarm-node --features sim --test sim_cluster` runs a fixed batch of seeds;
//! `SWARM_SIM_SEED=N` runs that one seed, `SWARM_SIM_SEEDS=N` runs seeds 1..=N (a campaign).
#![cfg(feature = "sim")]

use swarm_node::sim::{self, FaultConfig, SimConfig};

/// The seeds CI runs.
const CI_SEEDS: &[u64] = &[1, 2, 3];

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SWARM_SIM_SEED") {
        return vec![s.parse().expect("SWARM_SIM_SEED is a number")];
    }
    if let Ok(n) = std::env::var("SWARM_SIM_SEEDS") {
        let n: u64 = n.parse().expect("SWARM_SIM_SEEDS is a number");
        return (1..=n).collect();
    }
    CI_SEEDS.to_vec()
}

fn run(config: SimConfig) -> sim::SimReport {
    let started = std::time::Instant::now();
    let report = sim::run(&config);
    eprintln!(
        "seed={} virtual={:?} wall={:?} events={} ops acked {}/{} trace={}",
        report.seed,
        report.virtual_elapsed,
        started.elapsed(),
        report.events,
        report.acked,
        report.attempted,
        &report.trace_hash[..16]
    );
    report
}

/// No faults: the cluster forms, the workload's services converge, every invariant holds.
#[test]
fn baseline_without_faults() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::new(7, dir.path());
    config.faults = FaultConfig::none();
    config.operations = 6;
    let report = run(config);
    assert!(report.passed(), "{}", report.failure("sim_cluster"));
    assert!(report.acked > 0, "the workload was acknowledged");
}

/// The batch of seeds with every fault of this slice.
#[test]
fn seeds_with_faults() {
    let mut failed = Vec::new();
    for seed in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(SimConfig::new(seed, dir.path()));
        if !report.passed() {
            eprintln!("{}", report.failure("sim_cluster"));
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
