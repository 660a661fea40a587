//! How a daemon is configured: data directory, socket, runtime adapter, and the tunables tests and
//! benchmarks turn down (raft timers, unlock-key stretching, dispatcher batching).
//!
//! Defaults (documented for operators in the crate docs):
//! - data directory: `/var/lib/swarm-node` when running as root, otherwise
//!   `$XDG_DATA_HOME/swarm` (falling back to `$HOME/.local/share/swarm`, then `./swarm-data`);
//! - socket: `<data-dir>/swarm.sock`;
//! - runtime: `auto`, which picks `docker` when `/var/run/docker.sock` answers a ping within a
//!   second and `process` otherwise;
//! - routing mesh address (`--mesh-addr`): `0.0.0.0`, every address of the host;
//! - swarm listener (`--listen-addr`): `0.0.0.0:2377` ([`DEFAULT_LISTEN_ADDR`]): the QUIC port
//!   other nodes reach this one on once it is in a swarm; the advertised address
//!   (`--advertise-addr`) defaults to the `swarm init`/`join` request's, else to the listen
//!   address when it names one host, else to `127.0.0.1:<port>`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use swarm_core::{Entropy, SharedClock};
use swarm_secrets::KdfParams;

use crate::dispatcher::DispatcherOptions;

/// The swarm port (Docker's): managers serve raft, the CA and the dispatcher on it.
pub const DEFAULT_PORT: u16 = 2377;

/// `--listen-addr` default: every address of the host, port 2377.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT);

/// Which runtime adapter the worker uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuntimeKind {
    /// `docker` if the engine's socket answers a ping, else `process`.
    #[default]
    Auto,
    /// Local child processes.
    Process,
    /// The local Docker Engine.
    Docker,
    /// The in-memory simulator (tests and scale runs).
    Sim,
}

impl RuntimeKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Auto => "auto",
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Sim => "sim",
        }
    }
}

impl FromStr for RuntimeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RuntimeKind::Auto),
            "process" => Ok(RuntimeKind::Process),
            "docker" => Ok(RuntimeKind::Docker),
            "sim" => Ok(RuntimeKind::Sim),
            other => Err(format!(
                "unknown runtime {other:?}: choose auto, process, docker or sim"
            )),
        }
    }
}

/// Everything a [`crate::daemon::Daemon`] needs to start.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Data directory: `node.json` (identity), `raft/` (log, snapshots, keys),
    /// `volumes/` (volumes of the process runtime).
    pub data_dir: PathBuf,
    /// The Docker API socket (used by the binary; the library only reports it).
    pub socket: PathBuf,
    /// The runtime adapter.
    pub runtime: RuntimeKind,
    /// Initialise a single-node swarm on the first start (no-op once initialised).
    pub init: bool,
    /// Raft tunables (defaults: swarm-raft's).
    pub raft: swarm_raft::RaftConfig,
    /// Cost of stretching unlock keys ([`KdfParams::RECOMMENDED`] outside tests).
    pub kdf: KdfParams,
    /// Dispatcher batching and liveness.
    pub dispatcher: DispatcherOptions,
    /// Overrides the hostname the node reports (default: the host's).
    pub hostname: Option<String>,
    /// The address the routing mesh binds published ports on (default `0.0.0.0`).
    pub mesh_addr: IpAddr,
    /// Carry connections to service VIPs in the kernel's nat table and the mesh's VIP proxy
    /// (root, Linux; `crate::mesh::vip`). Default off.
    pub vip_dataplane: bool,
    /// Let the kernel carry published TCP ports' connections to this node's tasks (root, Linux,
    /// nftables DNAT; `crate::mesh` `kernel.rs`). Default off.
    pub kernel_ingress: bool,
    /// The executable that supervises each process-runtime task (`<it> supervise <socket>`;
    /// `swarm-node run` sets its own binary). With one, tasks outlive the daemon and a restart
    /// adopts them; without (the default, for in-process embedders) tasks are the daemon's
    /// children and die with it.
    pub supervisor: Option<PathBuf>,
    /// The address the node's swarm listener (QUIC: raft, CA, dispatcher) binds once the node
    /// is in a swarm; a `swarm init`/`join` request's `ListenAddr` overrides it. Port 0 binds
    /// any free port. [`DaemonConfig::new`] sets `127.0.0.1:0` (embedders and tests of one
    /// host); `swarm-node run` defaults to [`DEFAULT_LISTEN_ADDR`].
    pub listen_addr: SocketAddr,
    /// Whether `listen_addr` was fixed by the operator (`--listen-addr`): then a request's
    /// `ListenAddr` equal to Docker's default (`0.0.0.0:2377`, sent by `docker swarm init/join`
    /// when its own `--listen-addr` is not given) does not override it. [`DaemonConfig::new`]
    /// sets it (the loopback default is for embedders and tests).
    pub listen_addr_fixed: bool,
    /// The address other nodes reach this one on (`host:port`), when the operator fixes it at
    /// start (`--advertise-addr`); a request's `AdvertiseAddr` overrides it.
    pub advertise_addr: Option<String>,
    /// Where the daemon draws its randomness from: node, cluster and raft ids, object ids,
    /// secrets' generated bytes, the CA's node ids and serials, the orchestrator's choices, the
    /// dispatcher's heartbeat jitter and the worker's choice of manager. The operating system's
    /// RNG by default; a deterministic simulation passes a seeded [`Entropy`]. The daemon hands
    /// forks of it to raft (election timeouts: it replaces [`swarm_raft::RaftConfig::entropy`])
    /// and to the dispatcher (it replaces [`DispatcherOptions::entropy`]).
    pub entropy: Entropy,
    /// The clock that stamps what the daemon writes to the store: raft batches, the control
    /// layer's update statuses, the orchestrator's deadlines and the agent's task statuses. The
    /// system clock by default; a simulation passes its virtual clock. Certificates are issued
    /// and checked on the system clock regardless (rustls checks validity against it).
    pub clock: SharedClock,
}

impl DaemonConfig {
    /// A configuration for `data_dir` with every other setting at its default.
    pub fn new(data_dir: impl Into<PathBuf>) -> DaemonConfig {
        let data_dir = data_dir.into();
        DaemonConfig {
            socket: default_socket(&data_dir),
            data_dir,
            runtime: RuntimeKind::Auto,
            init: false,
            raft: swarm_raft::RaftConfig::default(),
            kdf: KdfParams::RECOMMENDED,
            dispatcher: DispatcherOptions::default(),
            hostname: None,
            mesh_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            vip_dataplane: false,
            kernel_ingress: false,
            supervisor: None,
            listen_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            listen_addr_fixed: true,
            advertise_addr: None,
            entropy: swarm_raft::entropy::os(),
            clock: SharedClock::new(swarm_raft::SystemClock),
        }
    }

    /// Where the raft data lives.
    pub fn raft_dir(&self) -> PathBuf {
        self.data_dir.join("raft")
    }

    /// Where the process runtime keeps volumes (`volumes/<name>/_data`, as Docker does).
    pub fn volumes_dir(&self) -> PathBuf {
        self.data_dir.join("volumes")
    }

    /// How the process runtime supervises tasks: `<supervisor> supervise <socket>`, sockets in
    /// `<data dir>/supervisors`. `None` when [`DaemonConfig::supervisor`] is unset.
    pub fn supervisor_options(&self) -> Option<swarm_runtime::process::SupervisorOptions> {
        let program = self.supervisor.clone()?;
        Some(swarm_runtime::process::SupervisorOptions {
            program,
            args: vec!["supervise".into()],
            dir: self.data_dir.join("supervisors"),
        })
    }
}

/// Creates the data directory (and missing parents) owner-only, as the daemon's first act: with
/// autolock off the raft key file holds the key-encryption key, and the default socket lives
/// here too. An existing directory with a wider mode is tightened to 0700.
pub fn create_data_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    if std::fs::metadata(path)?.permissions().mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Name of the advisory lock file in the data directory: a running daemon (and an offline
/// backup or restore) holds an exclusive `flock` on it, so two of them never use one directory.
pub const LOCK_FILE: &str = "daemon.lock";

/// An exclusive advisory lock on a data directory ([`LOCK_FILE`]), released when dropped (the
/// kernel also releases it when the process dies, so a crash leaves no stale lock).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Takes the lock without waiting; `Ok(None)` if another holder has it. The directory must
    /// exist; the lock file is created owner-only.
    pub fn try_acquire(data_dir: &Path) -> std::io::Result<Option<DataDirLock>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(data_dir.join(LOCK_FILE))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(DataDirLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// `<data_dir>/swarm.sock`.
pub fn default_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("swarm.sock")
}

/// The default data directory (see the module docs).
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/swarm-node");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("swarm");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/swarm");
    }
    PathBuf::from("swarm-data")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// How long `auto` waits for the Docker Engine to answer a ping.
pub const DOCKER_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Resolves `auto`: `docker` when the engine's default socket (chosen by swarm-runtime,
/// [`swarm_runtime::DockerOptions::socket_path`]) answers a ping within [`DOCKER_PING_TIMEOUT`],
/// else `process`.
pub async fn resolve_runtime(kind: RuntimeKind) -> RuntimeKind {
    if kind != RuntimeKind::Auto {
        return kind;
    }
    let engine = swarm_runtime::DockerOptions::default();
    if swarm_runtime::docker::engine_answers(&engine, DOCKER_PING_TIMEOUT).await {
        RuntimeKind::Docker
    } else {
        RuntimeKind::Process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names_round_trip() {
        for k in [
            RuntimeKind::Auto,
            RuntimeKind::Process,
            RuntimeKind::Docker,
            RuntimeKind::Sim,
        ] {
            assert_eq!(k.as_str().parse::<RuntimeKind>(), Ok(k));
        }
        assert!("podman".parse::<RuntimeKind>().is_err());
    }

    #[test]
    fn socket_defaults_to_the_data_dir() {
        let c = DaemonConfig::new("/tmp/x");
        assert_eq!(c.socket, PathBuf::from("/tmp/x/swarm.sock"));
        assert_eq!(c.raft_dir(), PathBuf::from("/tmp/x/raft"));
    }
}
