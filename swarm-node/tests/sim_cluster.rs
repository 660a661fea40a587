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

/// Workload operations per seed: `SWARM_SIM_OPS`, else 16.
fn operations() -> usize {
    std::env::var("SWARM_SIM_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16)
}

/// The shrinking step for a failing seed: reruns it with the first 1, 2, ... operations of its
/// workload (the fault schedule is drawn from a stream of its own and lasts as long as the
/// workload, so a shorter run is a prefix of the failing one) and prints the shortest that
/// still fails, with the command that reproduces it.
fn shrink(seed: u64, operations: usize) {
    for n in 1..operations {
        let dir = data_root();
        let mut config = SimConfig::new(seed, dir.path());
        config.operations = n;
        let report = sim::run(&config);
        eprintln!(
            "shrink seed={seed}: {n} operations {}",
            if report.passed() { "pass" } else { "fail" }
        );
        if !report.passed() {
            eprintln!(
                "shrunk: seed={seed} fails with {n} of {operations} operations; reproduce: SWARM_SIM_OPS={n} SWARM_SIM_SEED={seed} cargo test -p swarm-node --features sim --test sim_cluster seeds_with_faults\n{}",
                report.violations.join("\n")
            );
            return;
        }
    }
    eprintln!("shrink seed={seed}: no shorter workload fails");
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

/// The batch of seeds with every fault of this slice. `SWARM_SIM_JOBS=N` runs N seeds at once,
/// one per thread (each simulation is confined to its thread, so a seed's run is the same as
/// alone); the summary line gives the campaign's figures.
#[test]
fn seeds_with_faults() {
    let seeds = seeds();
    let jobs = std::env::var("SWARM_SIM_JOBS")
        .ok()
        .and_then(|j| j.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, seeds.len().max(1));
    let campaign = std::time::Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(&seed) = seeds.get(i) else { break };
                eprintln!("seed {seed} starts at {:?}", campaign.elapsed());
                let dir = data_root();
                let mut config = SimConfig::new(seed, dir.path());
                config.operations = operations();
                let report = run(config);
                if !report.passed() {
                    eprintln!("{}", report.failure("sim_cluster"));
                    if std::env::var_os("SWARM_SIM_SHRINK").is_some() {
                        shrink(seed, operations());
                    }
                }
                let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                r.push((seed, report.passed(), report.virtual_elapsed));
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let wall = campaign.elapsed();
    let virt: std::time::Duration = results.iter().map(|r| r.2).sum();
    let mut failed: Vec<u64> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    failed.sort_unstable();
    eprintln!(
        "campaign: {} seeds ({} jobs), {} failed {failed:?}; virtual {:.0}s, wall {:.1}s, {:.1} virtual s per wall s ({:.4} virtual h per wall s), {:.1} seeds per wall minute",
        results.len(),
        jobs,
        failed.len(),
        virt.as_secs_f64(),
        wall.as_secs_f64(),
        virt.as_secs_f64() / wall.as_secs_f64(),
        virt.as_secs_f64() / 3600.0 / wall.as_secs_f64(),
        results.len() as f64 * 60.0 / wall.as_secs_f64()
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
