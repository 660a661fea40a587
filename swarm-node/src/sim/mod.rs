//! Whole swarm clusters on turmoil's virtual time and network (feature `sim`).
//!
//! [`run`] starts `managers` + `workers` turmoil hosts, each running the real
//! [`Daemon`](crate::daemon::Daemon) (the `Manager` with raft over QUIC, the dispatcher, the CA
//! server and the leader loops on a manager; `WorkerNet` and the `Agent` on a worker) with
//! swarm-runtime's sim runtime. QUIC runs over
//! turmoil's simulated UDP: inside a simulation swarm-net's `RpcConfig::endpoint_with` binds the
//! simulated host's socket, so the daemon's own binds (`Server::bind`, `Client::bind`) take that
//! path unchanged. A driver (a turmoil client) forms the cluster with join tokens as `docker swarm
//! join` would, then runs a seeded workload (service create, scale, update, rollback, remove,
//! node drain and activation, secret rotation, through the control layer of a random manager)
//! while it injects faults (partitions both ways and one way,
//! message loss, duplication and extra delay, crash and restart of managers and workers with their
//! data directories kept and their raft disks as a power cut leaves them, a manager's raft disk
//! full or failing its fsyncs, clock skew between hosts), then heals everything and waits for
//! convergence.
//!
//! Invariants ([`invariants`], one per file) are checked while the cluster runs, from an observer
//! on every manager host (raft status and store, sampled at every change), and after healing: at
//! most one leader per term; the stores of all managers identical at the same applied index; task
//! states never going backwards; no more running tasks in a slot than the update order allows;
//! secrets only sent to nodes with a task that references them (from what the dispatchers send,
//! [`tap`]); no acknowledged write lost; every service converging to its spec
//! within a virtual-time bound. A run returns a [`SimReport`] with its violations and the hash of
//! its event trace ([`trace`]).
//!
//! Policy: one seed fixes turmoil's RNG (message latency and loss), the workload, the fault
//! schedule and, through the daemon's injected [`swarm_core::Entropy`] and
//! [`swarm_core::SharedClock`], every id, election timeout, jitter and timestamp; raft's storage
//! runs without OS threads ([`swarm_raft::disk::InlineDisk`]) and tokio's scheduler is seeded by
//! turmoil (`--cfg tokio_unstable`, `.cargo/config.toml`). The same seed then gives the same trace
//! hash (`tests/sim_replay.rs`), except for the bytes ring makes random (keys, certificates,
//! tokens), which the trace leaves out; their lengths are fixed inside a simulation (swarm-net's
//! `siglen`), so datagram sizes replay. `docs/SIMULATION.md` ("Determinism") lists what is fixed
//! and what is not.
//!
//! Disks ([`NodeDisk`]): raft's storage runs on swarm-raft's in-memory `SimDisk` (crash images
//! that lose unsynced writes and tear the last one, `ENOSPC` and `EIO` periods drawn from the
//! seed); the daemon's own files are in a real temporary directory per node.
//!
//! Not done here: slow fsyncs (the inline storage has no point where virtual time could pass
//! inside an fsync); promotion and demotion, and nodes joining or leaving during the run, are not
//! in the workload yet.

pub mod invariants;
pub mod tap;
pub mod trace;

mod cluster;
mod faults;
mod observe;
mod ops;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

pub use cluster::{NodeDisk, VirtualClock, SIM_EPOCH};
pub use faults::FaultConfig;

/// What one simulated run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Fixes turmoil's RNG, the workload and the fault schedule.
    pub seed: u64,
    /// Manager hosts (`m0` initialises the swarm).
    pub managers: usize,
    /// Worker hosts.
    pub workers: usize,
    /// Where the nodes' data directories go (`<root>/<host>`); the caller owns and removes it.
    pub data_root: PathBuf,
    /// Workload operations (create, scale, update, remove) during the fault phase.
    pub operations: usize,
    /// Faults injected during the workload.
    pub faults: FaultConfig,
    /// After healing, every service must converge within this much virtual time.
    pub heal_bound: Duration,
    /// Hard stop of the simulation (virtual time): a run still going then fails.
    pub max_virtual: Duration,
    /// Print every trace event to stderr as it happens.
    pub echo: bool,
    /// turmoil's step: how much virtual time each step of the simulation advances every host.
    pub tick: Duration,
    /// A term led by two members is a violation (`invariants::leader_per_term`'s strict mode);
    /// otherwise it is reported in [`SimReport::notes`].
    pub strict_terms: bool,
    /// Keep every trace line in [`SimReport::lines`] (replay tests compare two runs by line).
    pub keep_trace: bool,
}

impl SimConfig {
    /// A 3-manager, 2-worker cluster with the default workload and faults.
    pub fn new(seed: u64, data_root: impl Into<PathBuf>) -> SimConfig {
        SimConfig {
            seed,
            managers: 3,
            workers: 2,
            data_root: data_root.into(),
            operations: 24,
            faults: FaultConfig::default(),
            heal_bound: Duration::from_secs(180),
            max_virtual: Duration::from_secs(3600),
            echo: std::env::var_os("SWARM_SIM_TRACE").is_some(),
            tick: std::env::var("SWARM_SIM_TICK_MS")
                .ok()
                .and_then(|t| t.parse().ok())
                .map_or(Duration::from_millis(1), Duration::from_millis),
            strict_terms: std::env::var_os("SWARM_SIM_STRICT_TERMS").is_some(),
            keep_trace: false,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The seed it ran with.
    pub seed: u64,
    /// Invariant violations (empty: the run passed), each with its virtual time.
    pub violations: Vec<String>,
    /// SHA-256 of the event trace, hex.
    pub trace_hash: String,
    /// Events in the trace.
    pub events: usize,
    /// Virtual time simulated.
    pub virtual_elapsed: Duration,
    /// Workload operations acknowledged.
    pub acked: usize,
    /// Workload operations attempted.
    pub attempted: usize,
    /// Terms a leader was seen in (`leader_per_term`'s input).
    pub leader_terms: usize,
    /// Store samples compared with another manager's at the same index (`stores_agree`).
    pub compared_states: usize,
    /// Terms led by two members (see `invariants::leader_per_term`).
    pub shared_terms: usize,
    /// Slots checked by `update_order` (over every sample).
    pub slots_checked: usize,
    /// Assignment sets the dispatchers sent (`secrets_sent`'s input).
    pub assignment_sets: usize,
    /// Secrets sent in those sets.
    pub secrets_sent: usize,
    /// Findings that are not violations in this configuration, with their virtual time.
    pub notes: Vec<String>,
    /// Every trace line, with [`SimConfig::keep_trace`]; empty otherwise.
    pub lines: Vec<String>,
}

impl SimReport {
    /// True when no invariant was violated.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The failure text: seed, a command that reproduces the run, and the violations.
    pub fn failure(&self, test: &str) -> String {
        format!(
            "seed={seed} ; reproduce: SWARM_SIM_SEED={seed} cargo test -p swarm-node --features sim --test {test}\n{}",
            self.violations.join("\n"),
            seed = self.seed,
        )
    }
}

/// Runs one simulated cluster as `config` says; see the module docs.
pub fn run(config: &SimConfig) -> SimReport {
    cluster::run(config)
}
