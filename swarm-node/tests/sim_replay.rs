//! Replay (feature `sim`): one seed run twice must give the same event trace, checked by its hash
//! (and, when it differs, the first line that differs is shown).
//!
//! The seed fixes turmoil (latency, loss), the workload and the fault schedule, and through the
//! daemon's injected `Entropy` and `Clock` every id, election timeout, jitter and timestamp; raft
//! storage runs inline (no OS threads). The trace's store digests leave out the bytes ring makes
//! random by design (keys, certificates, CSRs, join tokens): docs/SIMULATION.md, "Determinism".
//! ECDSA signatures have one length inside a simulation (swarm-net's `siglen`), so a seed's
//! datagrams have the same sizes run to run (their varying length was the divergence seen before).
//! tokio's `select!` draws from the runtime's RNG, which turmoil seeds only under
//! `--cfg tokio_unstable` (set for the workspace in .cargo/config.toml); a build without it (a
//! `RUSTFLAGS` of one's own replaces that setting) ignores these tests.
//! `cargo test -p swarm-node --features sim --test sim_replay`; `SWARM_SIM_SEED=N` checks seed N
//! with every fault.
#![cfg(feature = "sim")]

use swarm_node::sim::{self, FaultConfig, SimConfig};

/// The nodes' data directories: on tmpfs when there is one (raft's fsyncs run inline on the
/// simulation's thread), else the default temporary directory.
fn data_root() -> tempfile::TempDir {
    std::path::Path::new("/dev/shm")
        .is_dir()
        .then(|| tempfile::tempdir_in("/dev/shm").ok())
        .flatten()
        .unwrap_or_else(|| tempfile::tempdir().unwrap())
}

/// Runs `config` twice and fails with the first differing trace line if the traces differ.
fn replays(config: &SimConfig) {
    let run = || {
        let dir = data_root();
        let mut config = config.clone();
        config.data_root = dir.path().to_path_buf();
        config.keep_trace = true;
        let started = std::time::Instant::now();
        let report = sim::run(&config);
        eprintln!(
            "seed={} virtual={:?} wall={:?} events={} trace={}",
            report.seed,
            report.virtual_elapsed,
            started.elapsed(),
            report.events,
            &report.trace_hash[..16]
        );
        assert!(report.passed(), "{}", report.failure("sim_replay"));
        report
    };
    let (a, b) = (run(), run());
    if a.trace_hash != b.trace_hash {
        let at = a
            .lines
            .iter()
            .zip(&b.lines)
            .position(|(x, y)| x != y)
            .unwrap_or(a.lines.len().min(b.lines.len()));
        let show =
            |lines: &[String]| lines[at.saturating_sub(5)..(at + 1).min(lines.len())].join("\n");
        panic!(
            "seed {} run twice gave two traces ({} and {} events); first difference at event {at}:\n--- first run\n{}\n--- second run\n{}",
            config.seed,
            a.events,
            b.events,
            show(&a.lines),
            show(&b.lines)
        );
    }
    assert!(a.events > 20, "a run records its events ({})", a.events);
}

#[test]
#[cfg_attr(
    not(tokio_unstable),
    ignore = "needs --cfg tokio_unstable (.cargo/config.toml): without it tokio seeds its scheduler from the OS"
)]
fn same_seed_same_trace_without_faults() {
    let mut config = SimConfig::new(5, "");
    config.faults = FaultConfig::none();
    config.operations = 4;
    replays(&config);
}

#[test]
#[cfg_attr(
    not(tokio_unstable),
    ignore = "needs --cfg tokio_unstable (.cargo/config.toml): without it tokio seeds its scheduler from the OS"
)]
fn same_seed_same_trace_with_faults() {
    // `SWARM_SIM_SEED=N` checks that seed instead.
    let seed = std::env::var("SWARM_SIM_SEED")
        .map(|s| s.parse().expect("SWARM_SIM_SEED is a number"))
        .unwrap_or(3);
    let mut config = SimConfig::new(seed, "");
    config.operations = 8;
    replays(&config);
}
