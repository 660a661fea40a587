//! The simulated cluster: one turmoil host per node running a real [`Daemon`] on the sim runtime,
//! the state the hosts, the driver and the stepping loop share, and the mailbox through which the
//! driver runs code on a node (as a client of that node's API would).
//!
//! A host's software starts the daemon on its data directory (`<root>/<host>`, kept across
//! crashes), starts the observer on a manager, then runs the commands of its mailbox on its own
//! runtime, so everything a command does (raft proposals, forwarding, QUIC) happens on that
//! host's network. Commands queued while the host was down are dropped at its restart (their
//! callers have given up).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarm_core::{Clock, Entropy, SharedClock, Timestamp};
use swarm_raft::disk::{CrashOptions, SimDisk};
use swarm_runtime::SimRuntime;
use swarm_secrets::KdfParams;
use tokio::sync::{mpsc, oneshot};

use super::faults::{HostRequest, MAX_LATENCY};
use super::invariants::Checks;
use super::trace::{self, Trace};
use super::{SimConfig, SimReport};
use crate::config::{DaemonConfig, RuntimeKind};
use crate::daemon::Daemon;

/// The swarm port every simulated node listens on.
pub(crate) const PORT: u16 = 2377;

/// The simulation's wall clock: [`SIM_EPOCH`] plus turmoil's virtual time, plus the host's skew
/// (clock skew between nodes: [`super::FaultConfig::clock_skew`] draws one offset per host, fixed
/// for the run; the driver's clock has none). It stamps what the daemons write to the store (raft
/// batches, update statuses, task statuses) and the orchestrator's deadlines; certificates are
/// still issued and checked on the system clock (rustls checks their validity against it), so
/// skew does not reach certificate validity in a simulated run.
#[derive(Clone, Copy, Debug, Default)]
pub struct VirtualClock {
    /// Added to the shared virtual time, in nanoseconds (negative: this host is behind).
    pub skew_nanos: i64,
}

/// Where [`VirtualClock`] starts: 2026-01-01T00:00:00Z.
pub const SIM_EPOCH: Timestamp = Timestamp(1_767_225_600 * 1_000_000_000);

impl VirtualClock {
    /// A clock `skew_nanos` ahead of (negative: behind) the simulation's shared time.
    pub fn skewed(skew_nanos: i64) -> VirtualClock {
        VirtualClock { skew_nanos }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        let shared = SIM_EPOCH.plus(trace::now()).0;
        Timestamp(shared.saturating_add_signed(self.skew_nanos))
    }
}

/// A node's disk. The daemon's own files (identity, certificates, keys) live in a directory of
/// the real filesystem kept across the node's crashes; raft's storage (WAL, `raft-state`, key
/// file, snapshots) goes through swarm-raft's storage seam to an in-memory
/// [`SimDisk`] with a crash model: a crash replaces it with its crash image (unsynced writes
/// lost, the last one torn at a drawn byte), and the fault loop can make its writes fail with
/// `ENOSPC` or its fsyncs with `EIO`.
#[derive(Clone, Debug)]
pub enum NodeDisk {
    /// The data directory, and the raft disk under it.
    Sim {
        /// The data directory on the real filesystem (`<data root>/<host>`).
        dir: PathBuf,
        /// Raft's storage at `<dir>/raft`, in memory.
        raft: SimDisk,
    },
}

type Command = Box<dyn FnOnce(Arc<Daemon>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// One node's mailbox: the driver sends, the host's current process receives.
struct Mailbox {
    tx: mpsc::UnboundedSender<Command>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Command>>>,
}

/// What the hosts, the driver and the stepping loop share.
pub(crate) struct Shared {
    pub(crate) trace: Mutex<Trace>,
    pub(crate) checks: Mutex<Checks>,
    pub(crate) requests: Mutex<Vec<HostRequest>>,
    mailboxes: BTreeMap<String, Mailbox>,
    pub(crate) managers: Vec<String>,
    pub(crate) workers: Vec<String>,
    /// Each host's clock skew in nanoseconds (absent: none).
    pub(crate) skews: BTreeMap<String, i64>,
    /// Each host's raft disk (replaced by its crash image at a crash).
    disks: BTreeMap<String, Mutex<SimDisk>>,
}

impl Shared {
    /// Records an event at the current virtual time.
    pub(crate) fn event(&self, host: &str, what: &str) {
        lock(&self.trace).record(trace::now(), host, what);
    }

    /// Records a violation at the current virtual time.
    pub(crate) fn violation(&self, what: &str) {
        self.event("check", what);
        lock(&self.checks).violation(trace::now(), what);
    }

    /// Asks the stepping loop to change the simulation.
    pub(crate) fn request(&self, r: HostRequest) {
        lock(&self.requests).push(r);
    }

    /// Runs `f` on `host`'s daemon, on that host's runtime; `None` if it did not answer within
    /// `timeout` of virtual time (down, crashed meanwhile, or too slow).
    pub(crate) async fn call<T, F, Fut>(&self, host: &str, timeout: Duration, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Daemon>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let command: Command = Box::new(move |d| {
            Box::pin(async move {
                let _ = tx.send(f(d).await);
            })
        });
        self.mailboxes.get(host)?.tx.send(command).ok()?;
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }

    /// `host`'s clock (the virtual clock with its skew).
    pub(crate) fn clock(&self, host: &str) -> VirtualClock {
        VirtualClock::skewed(self.skews.get(host).copied().unwrap_or(0))
    }

    /// `host`'s raft disk as it is now (a handle sharing the disk).
    pub(crate) fn raft_disk(&self, host: &str) -> SimDisk {
        self.disks
            .get(host)
            .map(|d| lock(d).clone())
            .unwrap_or_else(SimDisk::inline)
    }

    /// A crash of `host`: its raft disk becomes what a power cut leaves, drawn from `seed`
    /// (each unsynced operation kept or lost, the last kept write torn; in write-back order
    /// for an even seed, independently for an odd one).
    /// `at`: the simulation's time (the stepping loop runs outside any host).
    fn crash_disk(&self, host: &str, seed: u64, at: Duration) {
        if let Some(d) = self.disks.get(host) {
            let mut d = lock(d);
            let lost = d.has_unsynced();
            *d = d.crash_image(
                seed,
                CrashOptions {
                    in_order: seed.is_multiple_of(2),
                },
            );
            lock(&self.trace).record(at, host, &format!("crash image (unsynced writes: {lost})"));
        }
    }

    /// Every host name, managers first.
    pub(crate) fn hosts(&self) -> Vec<String> {
        self.managers.iter().chain(&self.workers).cloned().collect()
    }
}

/// Locks a std mutex, taking over a poisoned one (a panicking host already fails the run).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The daemon configuration of simulated host `name` (its address fixed by turmoil), drawing
/// its randomness from `entropy` and its time from the virtual clock, its raft storage inline
/// (no OS threads).
fn daemon_config(
    disk: &NodeDisk,
    name: &str,
    ip: std::net::IpAddr,
    entropy: Entropy,
    clock: VirtualClock,
) -> DaemonConfig {
    let NodeDisk::Sim { dir, raft } = disk;
    let mut c = DaemonConfig::new(dir);
    c.runtime = RuntimeKind::Sim;
    c.entropy = entropy;
    c.clock = SharedClock::new(clock);
    c.raft.disk = Arc::new(raft.clone());
    // Cheap key stretching: the simulation never uses an unlock key.
    c.kdf = KdfParams::new(64, 1, 1).unwrap_or(KdfParams::RECOMMENDED);
    c.hostname = Some(name.to_string());
    c.listen_addr =
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), PORT);
    c.advertise_addr = Some(format!("{ip}:{PORT}"));
    c
}

/// Runs one simulation; see [`super::run`].
pub(crate) fn run(config: &SimConfig) -> SimReport {
    let managers: Vec<String> = (0..config.managers).map(|i| format!("m{i}")).collect();
    let workers: Vec<String> = (0..config.workers).map(|i| format!("w{i}")).collect();
    let mut mailboxes = BTreeMap::new();
    for h in managers.iter().chain(&workers) {
        let (tx, rx) = mpsc::unbounded_channel();
        mailboxes.insert(
            h.clone(),
            Mailbox {
                tx,
                rx: Arc::new(tokio::sync::Mutex::new(rx)),
            },
        );
    }
    let shared = Arc::new(Shared {
        trace: Mutex::new({
            let mut t = Trace::default();
            t.echo = config.echo;
            t.keep_all = config.keep_trace;
            t
        }),
        checks: Mutex::new({
            let mut c = Checks::default();
            c.leaders.strict = config.strict_terms;
            c
        }),
        requests: Mutex::new(Vec::new()),
        mailboxes,
        managers: managers.clone(),
        workers: workers.clone(),
        skews: super::faults::draw_skews(config, managers.iter().chain(&workers)),
        disks: managers
            .iter()
            .chain(&workers)
            .map(|h| (h.clone(), Mutex::new(SimDisk::inline())))
            .collect(),
    });
    for (host, skew) in &shared.skews {
        shared.event(host, &format!("clock skew {:+.3}s", *skew as f64 / 1e9));
    }
    {
        // What every dispatcher sends, into the `secrets_sent` invariant.
        let shared = shared.clone();
        super::tap::set(std::rc::Rc::new(move |stream, node, set| {
            let found = lock(&shared.checks).secrets.observe(stream, node, set);
            for v in found {
                shared.violation(&v);
            }
        }));
    }
    // No duplication until the fault loop turns it on (the setting is per thread and would
    // outlive a previous run on this thread).
    swarm_net::sim::set_duplication(0.0, 0);
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .simulation_duration(config.max_virtual)
        .tick_duration(config.tick)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(MAX_LATENCY)
        .build();
    // Every host's randomness comes from the seed: one stream per host, forked in host order,
    // and one fork of it per start of the host's software.
    let root = Entropy::seeded(config.seed);
    for name in managers.iter().chain(&workers) {
        let manager = managers.contains(name);
        let dir = config.data_root.join(name);
        let shared = shared.clone();
        let name = name.clone();
        let entropy = root.fork();
        sim.host(name.clone(), move || {
            // The raft disk as the last crash left it.
            let disk = NodeDisk::Sim {
                dir: dir.clone(),
                raft: shared.raft_disk(&name),
            };
            host(shared.clone(), name.clone(), disk, manager, entropy.fork())
        });
    }
    {
        let shared = shared.clone();
        let config = config.clone();
        sim.client("driver", async move {
            super::workload::drive(shared, config).await;
            Ok(())
        });
    }
    let outcome = loop {
        let requests = std::mem::take(&mut *lock(&shared.requests));
        for r in requests {
            match r {
                HostRequest::Crash(h, seed) => {
                    sim.crash(h.as_str());
                    shared.crash_disk(&h, seed, sim.elapsed());
                }
                HostRequest::Restart(h) => sim.bounce(h),
                HostRequest::Network {
                    fail_rate,
                    max_latency,
                } => {
                    sim.set_fail_rate(fail_rate);
                    sim.set_max_message_latency(max_latency);
                }
            }
        }
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    let virtual_elapsed = sim.elapsed();
    drop(sim);
    swarm_net::sim::set_duplication(0.0, 0);
    super::tap::clear();
    let mut checks = lock(&shared.checks);
    if let Err(e) = outcome {
        checks.violation(virtual_elapsed, &format!("simulation: {e}"));
    }
    let trace = lock(&shared.trace);
    let mut violations = checks.violations.clone();
    if !violations.is_empty() {
        violations.push("last events:".into());
        let kept = trace.tail().count();
        violations.extend(
            trace
                .tail()
                .skip(kept.saturating_sub(trace::TAIL))
                .map(str::to_string),
        );
    }
    SimReport {
        seed: config.seed,
        violations,
        trace_hash: trace.hash(),
        events: trace.events(),
        virtual_elapsed,
        acked: checks.acked.acked(),
        attempted: checks.acked.attempted(),
        leader_terms: checks.leaders.terms(),
        compared_states: checks.stores.compared(),
        shared_terms: checks.leaders.shared_terms(),
        slots_checked: checks.slots.checked(),
        assignment_sets: checks.secrets.sets(),
        secrets_sent: checks.secrets.secrets(),
        notes: checks.notes.clone(),
        lines: if config.keep_trace {
            trace.tail().map(str::to_string).collect()
        } else {
            Vec::new()
        },
    }
}

/// One start of a host's software: the daemon, the observer (managers), then the mailbox.
async fn host(
    shared: Arc<Shared>,
    name: String,
    disk: NodeDisk,
    manager: bool,
    entropy: Entropy,
) -> turmoil::Result {
    let ip = turmoil::lookup(name.as_str());
    let config = daemon_config(&disk, &name, ip, entropy, shared.clock(&name));
    shared.event(&name, "start");
    let daemon = match Daemon::start_with_runtime(config, Arc::new(SimRuntime::new())).await {
        Ok(d) => d,
        Err(e) => {
            shared.violation(&format!("restart: {name} did not start: {e}"));
            return Err(e.into());
        }
    };
    if manager {
        lock(&shared.checks).restarted(&name);
        tokio::task::spawn_local(super::observe::observe(
            daemon.clone(),
            shared.clone(),
            name.clone(),
        ));
    }
    let Some(mailbox) = shared.mailboxes.get(&name) else {
        return Ok(());
    };
    let mut rx = mailbox.rx.lock().await;
    // Commands sent while this host was down: their callers gave up.
    while rx.try_recv().is_ok() {}
    while let Some(command) = rx.recv().await {
        tokio::task::spawn_local(command(daemon.clone()));
    }
    Ok(())
}
