//! Replay (feature `sim`): one seed run twice must give the same event trace, checked by its hash.
//!
//! Ignored: it does not hold yet. The seed fixes turmoil (latency, loss), the workload and the
//! fault schedule, but the daemon still draws ids and keys from the OS RNG, stamps batches with
//! the wall clock, draws raft election timeouts from `rand::thread_rng`, and the WAL's fsync
//! thread and `spawn_blocking` run on OS threads; docs/SIMULATION.md lists every source. Run it
//! with `cargo test -p swarm-node --features sim --test sim_replay -- --ignored`.
#![cfg(feature = "sim")]

use swarm_node::sim::{self, FaultConfig, SimConfig};

#[test]
#[ignore = "not deterministic yet: OS RNG ids and keys, wall-clock timestamps, raft election timeouts from thread_rng, the WAL's fsync thread (docs/SIMULATION.md)"]
fn same_seed_same_trace() {
    let hash = || {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SimConfig::new(5, dir.path());
        config.faults = FaultConfig::none();
        config.operations = 4;
        let report = sim::run(&config);
        assert!(report.passed(), "{}", report.failure("sim_replay"));
        report.trace_hash
    };
    assert_eq!(hash(), hash(), "seed 5 run twice gave two traces");
}
