//! Whole clusters on virtual time (feature `sim`): 3 managers and 2 workers, the real daemon on
//! each turmoil host, a seeded workload with faults, every invariant of `swarm_node::sim`.
//!
//! `cargo test -p swarm-node --features sim --test sim_cluster` runs a fixed batch of seeds;
//! `SWARM_SIM_SEED=N` runs that one seed, `SWARM_SIM_SEEDS=N` runs seeds 1..=N and
//! `SWARM_SIM_SEEDS=A..=B` seeds A to B (a campaign).
#![cfg(feature = "sim")]

use swarm_node::sim::{self, FaultConfig, SimConfig};

/// The seeds CI runs.
const CI_SEEDS: &[u64] = &[1, 2];

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SWARM_SIM_SEED") {
        return vec![s.parse().expect("SWARM_SIM_SEED is a number")];
    }
    if let Ok(n) = std::env::var("SWARM_SIM_SEEDS") {
        // `N` (seeds 1..=N) or `A..=B`.
        if let Some((a, b)) = n.split_once("..=") {
            let a: u64 = a.parse().expect("SWARM_SIM_SEEDS is N or A..=B");
            let b: u64 = b.parse().expect("SWARM_SIM_SEEDS is N or A..=B");
            return (a..=b).collect();
        }
        let n: u64 = n.parse().expect("SWARM_SIM_SEEDS is N or A..=B");
        return (1..=n).collect();
    }
    CI_SEEDS.to_vec()
}

/// The nodes' data directories: on tmpfs when there is one (fsyncs then cost nothing, as on the
/// simulated disk to come), else the default temporary directory.
fn data_root() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

fn run(config: SimConfig) -> sim::SimReport {
    let started = std::time::Instant::now();
    let report = sim::run(&config);
    eprintln!(
"seed={} virtual={:?} wall={:?} events={} ops acked {}/{} leader terms {} (shared {}) store states compared {} slots checked {} assignment sets {} (secrets {}) trace={}",
        report.seed,
        report.virtual_elapsed,
        started.elapsed(),
        report.events,
        report.acked,
        report.attempted,
        report.leader_terms,
        report.shared_terms,
        report.compared_states,
        report.slots_checked,
        report.assignment_sets,
        report.secrets_sent,
        &report.trace_hash[..16]
    );
    for n in &report.notes {
        eprintln!("seed={} note: {n}", report.seed);
    }
    report
}

/// No faults: the cluster forms, the workload's services converge, every invariant holds.
#[test]
fn baseline_without_faults() {
    let dir = data_root();
    let mut config = SimConfig::new(7, dir.path());
    config.faults = FaultConfig::none();
    config.operations = 6;
    let report = run(config);
    assert!(report.passed(), "{}", report.failure("sim_cluster"));
    assert!(report.acked > 0, "the workload was acknowledged");
    assert!(
        report.compared_states > 0,
        "managers' stores were compared at equal indexes"
    );
}

/// Partitions only (both ways and one way), so every CI run isolates and cuts nodes off.
#[test]
fn partitions_only() {
    let dir = data_root();
    let mut config = SimConfig::new(11, dir.path());
    config.faults = FaultConfig {
        crashes: false,
        loss: 0.0,
        ..FaultConfig::default()
    };
    config.operations = 16;
    let report = run(config);
    assert!(report.passed(), "{}", report.failure("sim_cluster"));
}

/// The batch of seeds with every fault of this slice.
#[test]
fn seeds_with_faults() {
    let mut failed = Vec::new();
    let campaign = std::time::Instant::now();
    for seed in seeds() {
        eprintln!("seed {seed} starts at {:?}", campaign.elapsed());
        let dir = data_root();
        let mut config = SimConfig::new(seed, dir.path());
        config.operations = 16;
        let report = run(config);
        if !report.passed() {
            eprintln!("{}", report.failure("sim_cluster"));
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
