//! Helpers shared by the `multihost_*` tests: several `swarm-node run` daemons, each on its own
//! "host" (a network namespace), driven by the real `docker` CLI.
//!
//! # Network
//! [`Cluster::new`] creates, for `n` hosts:
//! - a hub namespace `swarmt-<pid>-<c>-hub` holding one bridge (`br0`);
//! - per host a namespace `swarmt-<pid>-<c>-<i>` with a veth pair: `eth0` in the host's namespace,
//!   its peer `h<i>` in the hub, enslaved to the bridge; the host's address is
//!   [`SUBNET`]`.<i+1>/24` (namespace-local, so it never meets docker's or the machine's routes, and
//!   concurrent clusters do not collide).
//!
//! The bridge lives in a namespace of its own rather than in the root one: its iptables are empty
//! (policy ACCEPT), so Docker's `FORWARD DROP` in the root namespace never sees the bridged
//! traffic and no rule has to be added there (and removed afterwards). Deleting the namespaces
//! removes the veths and the bridge with them.
//!
//! # Daemons
//! [`Host::start`] runs `ip netns exec <ns> swarm-node run --data-dir <tmp>/data --socket
//! <tmp>/s.sock --runtime <r> --listen-addr 0.0.0.0:2377 --advertise-addr <ip>:2377`, and waits
//! for its `export DOCKER_HOST=` line. The API socket is a file, so the `docker` CLI (run in the
//! root namespace, `DOCKER_HOST=unix://<socket>` and a private `DOCKER_CONFIG`) reaches it.
//! `SWARM_NODE_BIN=<path>` runs another `swarm-node` build (a release one, for figures).
//! `MULTIHOST_RUST_LOG=<filter>` replaces the daemons' log filter (default `info,openraft=warn,quinn=warn`).
//! Daemon logs of a failed test are kept in `$TMPDIR/swarm-multihost-failed-<hub>/`;
//! `MULTIHOST_KEEP_LOGS=1` keeps those of passing tests too (`swarm-multihost-passed-<hub>/`).
//!
//! # Faults
//! [`Host::kill`] (SIGKILL), [`Host::stop`] (SIGTERM), [`Host::partition`] / [`Host::heal`]
//! (iptables DROP of everything on the host's `eth0`, in the host's namespace: the link stays up,
//! so its sockets and addresses are untouched).
//!
//! # Cleanup
//! Dropping the [`Cluster`] (also while a test panics) stops the daemons it started (SIGTERM, then
//! SIGKILL after 20 s), kills the process-runtime supervisors those daemons left under their data
//! directories, removes the containers of its nodes (the docker runtime: every host uses this
//! machine's one engine, [`ENGINE`]), and deletes the namespaces. It never touches a process it did not start.
//! Needs root and `ip`: otherwise the test is skipped through `skip/mod.rs` (a failure in CI).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[path = "../skip/mod.rs"]
mod skip;
pub use skip::skip;

/// The bound of every wait (debug builds on a busy two-core machine).
pub const TIMEOUT: Duration = Duration::from_secs(90);
/// The bound of one `docker` command.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a wait polls.
const POLL: Duration = Duration::from_millis(200);
/// The first three octets of every host address (namespace-local).
pub const SUBNET: &str = "10.213.0";
/// The swarm port every host listens on.
pub const PORT: u16 = 2377;
/// The port of every daemon's metrics endpoint (`--metrics-addr`), inside its namespace.
pub const METRICS_PORT: u16 = 9323;

static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// Which runtime adapter the daemons run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// Local processes (`docker service create IMAGE cmd...` runs `cmd...`).
    Process,
    /// The in-memory simulator (tasks "run" without doing anything).
    Sim,
    /// Containers of this machine's Docker Engine, shared by every host (see [`Cluster::new`]).
    Docker,
}

impl Runtime {
    fn as_str(self) -> &'static str {
        match self {
            Runtime::Process => "process",
            Runtime::Sim => "sim",
            Runtime::Docker => "docker",
        }
    }
}

/// What a `docker` command did.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1: killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The docker CLI, if installed.
pub fn docker_cli() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/local/bin/docker");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
}

/// The daemon the hosts run: `$SWARM_NODE_BIN` when set (a release build, for the figures of
/// `multihost_figures`), else the debug binary cargo built beside the test.
pub fn swarm_node_bin() -> PathBuf {
    std::env::var_os("SWARM_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_swarm-node")))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether `prog` is on `PATH`.
pub fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// Runs a setup command (`ip ...`, `iptables ...`) synchronously; its error text on failure.
fn sh(prog: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{prog} {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Several hosts on one bridge. See the module docs.
pub struct Cluster {
    hub: String,
    /// Namespaces created so far (deleted on drop).
    namespaces: Vec<String>,
    hosts: Vec<Host>,
}

impl Cluster {
    /// Creates `n` hosts (namespaces, veths, bridge; no daemon yet), or `None` when this machine
    /// cannot run the test (not root, no `ip`, no docker CLI): then the skip is reported.
    pub fn new(n: usize, runtime: Runtime) -> Option<Cluster> {
        if !is_root() {
            skip("multi-host tests need root (network namespaces)");
            return None;
        }
        if !which("ip") || !which("iptables") {
            skip("multi-host tests need `ip` and `iptables`");
            return None;
        }
        if docker_cli().is_none() {
            skip("no docker CLI (/usr/local/bin/docker or on PATH)");
            return None;
        }
        if runtime == Runtime::Docker && !engine_ready() {
            skip("no Docker Engine answering on /var/run/docker.sock");
            return None;
        }
        assert!(n <= 200, "at most 200 hosts");
        let c = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("swarmt-{}-{c}", std::process::id());
        let hub = format!("{prefix}-hub");
        let mut cluster = Cluster {
            hub: hub.clone(),
            namespaces: Vec::new(),
            hosts: Vec::new(),
        };
        cluster.setup(&prefix, n, runtime).unwrap_or_else(|e| {
            panic!("setting up the test network: {e}");
        });
        Some(cluster)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        sh("ip", &["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        sh("ip", &["-n", name, "link", "set", "lo", "up"])
    }

    fn setup(&mut self, prefix: &str, n: usize, runtime: Runtime) -> Result<(), String> {
        let hub = self.hub.clone();
        self.add_ns(&hub)?;
        sh("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        sh("ip", &["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{prefix}-{i}");
            self.add_ns(&ns)?;
            let peer = format!("h{i}");
            sh(
                "ip",
                &[
                    "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer,
                    "netns", &hub,
                ],
            )?;
            sh(
                "ip",
                &["-n", &hub, "link", "set", &peer, "master", "br0", "up"],
            )?;
            let ip = format!("{SUBNET}.{}", i + 1);
            sh(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            )?;
            sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            let dir = tempfile::Builder::new()
                .prefix("swarm-multihost-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            std::fs::create_dir(dir.path().join("docker-config")).map_err(|e| e.to_string())?;
            self.hosts.push(Host {
                index: i,
                ns,
                ip,
                runtime,
                dir,
                child: None,
                starts: 0,
                partitioned: false,
                env: Vec::new(),
                args: Vec::new(),
            });
        }
        Ok(())
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Host `i`, to start, stop or partition it.
    pub fn host_mut(&mut self, i: usize) -> &mut Host {
        &mut self.hosts[i]
    }

    /// Every host.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Starts every host's daemon (none in a swarm yet).
    pub async fn start_all(&mut self) {
        for h in &mut self.hosts {
            h.start().await;
        }
    }

    /// The logs of every host (for failure messages).
    pub fn logs(&self) -> String {
        self.hosts
            .iter()
            .map(Host::log_tail)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed || std::env::var_os("MULTIHOST_KEEP_LOGS").is_some() {
            if failed {
                eprintln!("{}", self.logs());
            }
            // Keep every log of a failed test (the temporary directories go with the drop).
            let outcome = if failed { "failed" } else { "passed" };
            let keep = std::env::temp_dir().join(format!("swarm-multihost-{outcome}-{}", self.hub));
            for h in &self.hosts {
                let to = keep.join(format!("host{}", h.index));
                if std::fs::create_dir_all(&to).is_ok() {
                    for n in 1..=h.starts {
                        let _ = std::fs::copy(h.log_path(n), to.join(format!("daemon-{n}.log")));
                    }
                }
            }
            eprintln!("daemon logs kept in {}", keep.display());
        }
        // The docker runtime leaves its containers running when its daemon stops (they are
        // adopted at the next start): remove those of this cluster's nodes, after the daemons.
        let nodes: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| h.runtime == Runtime::Docker && h.running())
            .filter_map(Host::node_id_now)
            .collect();
        for h in &mut self.hosts {
            h.cleanup();
        }
        for id in nodes {
            remove_containers_of(&id);
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = sh("ip", &["netns", "delete", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// One host: its namespace, address, data directory and daemon.
pub struct Host {
    index: usize,
    ns: String,
    ip: String,
    runtime: Runtime,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    partitioned: bool,
    /// Extra environment for the daemon ([`Host::set_env`]).
    env: Vec<(String, String)>,
    /// Extra arguments of `swarm-node run` ([`Host::add_arg`]).
    args: Vec<String>,
}

impl Host {
    /// Sets an environment variable for the daemon's next starts (a test-only knob such as
    /// `SWARM_NODE_TEST_RENEWAL_SPEEDUP`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Adds an argument to `swarm-node run` for the daemon's next starts (`--vip-dataplane`).
    pub fn add_arg(&mut self, arg: &str) {
        self.args.push(arg.to_string());
    }

    /// The host's index in its cluster (its hostname is `host<index>`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The host's address (no port).
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// `ip:2377`, what `docker swarm join` is given.
    pub fn addr(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    /// The host's network namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The temporary directory (data dir, socket, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("s.sock")
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir().join(format!("daemon-{n}.log"))
    }

    /// Whether the daemon runs (as far as this harness knows).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the daemon in the host's namespace and waits until it serves its socket.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "host {} already runs", self.index);
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("daemon log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(swarm_node_bin())
            .arg("run")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket")
            .arg(self.socket())
            .args(["--runtime", self.runtime.as_str()])
            .args(["--listen-addr", &format!("0.0.0.0:{PORT}")])
            .args(["--advertise-addr", &self.addr()])
            .args(["--hostname", &format!("host{}", self.index)])
            // Namespace-local: a plain HTTP endpoint the harness's own checks can reach.
            .args(["--metrics-addr", &format!("0.0.0.0:{METRICS_PORT}")])
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("MULTIHOST_RUST_LOG")
                    .unwrap_or_else(|_| "info,openraft=warn,quinn=warn".to_string()),
            )
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawning ip netns exec swarm-node");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let want = format!("export DOCKER_HOST=unix://{}", self.socket().display());
        let ready = tokio::time::timeout(TIMEOUT, async {
            let mut seen = Vec::new();
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l == want => return Ok(()),
                    Ok(Some(l)) => seen.push(l),
                    _ => return Err(seen),
                }
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(seen)) => panic!(
                "host {}: swarm-node exited before serving; stdout {seen:?}\n{}",
                self.index,
                self.log_tail()
            ),
            Err(_) => panic!(
                "host {}: swarm-node did not serve within {TIMEOUT:?}\n{}",
                self.index,
                self.log_tail()
            ),
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// Stops the daemon with SIGTERM and waits for it to exit successfully.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            signal(pid, "TERM");
        }
        let status = tokio::time::timeout(TIMEOUT, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "host {}: no exit on SIGTERM\n{}",
                    self.index,
                    self.log_tail()
                )
            })
            .expect("waiting for swarm-node");
        assert!(
            status.success(),
            "host {}: swarm-node exited with {status}\n{}",
            self.index,
            self.log_tail()
        );
    }

    /// Kills the daemon with SIGKILL (a crash) and reaps it.
    pub async fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        child.start_kill().expect("SIGKILL swarm-node");
        let _ = tokio::time::timeout(TIMEOUT, child.wait()).await;
    }

    /// Cuts the host off the network: every packet in or out of its `eth0` dropped.
    pub fn partition(&mut self) {
        for chain in [["INPUT", "-i"], ["OUTPUT", "-o"]] {
            sh(
                "ip",
                &[
                    "netns", "exec", &self.ns, "iptables", "-I", chain[0], chain[1], "eth0", "-j",
                    "DROP",
                ],
            )
            .expect("partitioning");
        }
        self.partitioned = true;
    }

    /// Undoes [`Host::partition`].
    pub fn heal(&mut self) {
        if !self.partitioned {
            return;
        }
        for chain in [["INPUT", "-i"], ["OUTPUT", "-o"]] {
            sh(
                "ip",
                &[
                    "netns", "exec", &self.ns, "iptables", "-D", chain[0], chain[1], "eth0", "-j",
                    "DROP",
                ],
            )
            .expect("healing");
        }
        self.partitioned = false;
    }

    /// Runs `prog args` inside the host's namespace (test probes); its output.
    pub async fn exec(&self, prog: &str, args: &[&str]) -> Out {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, prog])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(CLI_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{prog} {args:?} in {} did not finish", self.ns))
            .expect("running a probe");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `docker args` against this host's daemon.
    pub async fn docker(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(docker_cli().expect("docker CLI"));
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir().join("docker-config"))
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(CLI_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("docker {args:?} did not finish in {CLI_TIMEOUT:?}"))
            .expect("docker's output");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `docker args` with `input` on its standard input (`docker swarm unlock` reads the key
    /// there), which must succeed; its stdout, trimmed.
    pub async fn ok_stdin(&self, args: &[&str], input: &[u8]) -> String {
        use tokio::io::AsyncWriteExt;
        let mut cmd = Command::new(docker_cli().expect("docker CLI"));
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir().join("docker-config"))
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("docker runs");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input)
            .await
            .expect("writing docker's stdin");
        drop(stdin);
        let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("docker {args:?} did not finish in {CLI_TIMEOUT:?}"))
            .expect("docker's output");
        assert!(
            out.status.success(),
            "host {}: docker {args:?} failed:\n{}\n{}\n{}",
            self.index,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker args`, which must succeed; its stdout, trimmed.
    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args).await;
        assert_eq!(
            o.code,
            0,
            "host {}: docker {args:?} failed:\n{}\n{}\n{}",
            self.index,
            o.stdout,
            o.stderr,
            self.log_tail()
        );
        o.stdout.trim().to_string()
    }

    /// `docker args`, which must fail; its stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let o = self.docker(args).await;
        assert_ne!(
            o.code, 0,
            "host {}: docker {args:?} succeeded:\n{}",
            self.index, o.stdout
        );
        o.stderr
    }

    /// Polls `docker args` until it succeeds with a stdout for which `pred` holds; that stdout.
    pub async fn wait_for(&self, what: &str, args: &[&str], pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let o = self.docker(args).await;
            let out = o.stdout.trim().to_string();
            if o.code == 0 && pred(&out) {
                return out;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "host {}: timed out waiting for {what}; last `docker {}`:\n{out}\n{}\n{}",
                    self.index,
                    args.join(" "),
                    o.stderr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// This node's id, asked synchronously (for `Drop`); `None` when it cannot tell.
    fn node_id_now(&self) -> Option<String> {
        let out = std::process::Command::new(docker_cli()?)
            .args(["info", "--format", "{{.Swarm.NodeID}}"])
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir().join("docker-config"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!id.is_empty()).then_some(id)
    }

    /// This node's id (`docker info`), empty when not in a swarm.
    pub async fn node_id(&self) -> String {
        self.ok(&["info", "--format", "{{.Swarm.NodeID}}"]).await
    }

    /// The last lines of the daemon's current log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "--- host {} ({}) swarm-node log {} ---\n{}",
            self.index,
            self.ip,
            self.log_path(self.starts).display(),
            lines[from..].join("\n")
        )
    }

    /// Stops the daemon (SIGTERM; SIGKILL after 20 s) and the task supervisors it left.
    fn cleanup(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(pid, "TERM");
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while std::time::Instant::now() < deadline {
                    if !matches!(child.try_wait(), Ok(None)) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            // `kill_on_drop` sends SIGKILL if it still runs.
            let _ = child.start_kill();
        }
        let needle = self.data_dir().join("supervisors").display().to_string();
        for pid in processes_with(&needle) {
            kill_tree(pid);
        }
    }
}

/// The engine, through the docker CLI (`DOCKER_HOST` pinned to its socket), synchronously.
fn engine_cli(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(docker_cli()?)
        .args(["-H", ENGINE])
        .args(args)
        .env("DOCKER_CLI_HINTS", "false")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The machine's Docker Engine.
pub const ENGINE: &str = "unix:///var/run/docker.sock";
/// The image the docker runtime's tests run (built once per machine by swarm-runtime's
/// `build-test-image.sh`).
pub const IMAGE: &str = "swarm-test/busybox:latest";

/// Whether the engine answers; builds [`IMAGE`] when it is missing.
fn engine_ready() -> bool {
    if engine_cli(&["version", "--format", "{{.Server.Version}}"]).is_none() {
        return false;
    }
    if engine_cli(&["image", "inspect", IMAGE]).is_none() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../swarm-runtime/tests/support/build-test-image.sh");
        let built = std::process::Command::new("bash")
            .arg(&script)
            .arg(IMAGE)
            .status();
        assert!(
            built.is_ok_and(|s| s.success()),
            "building {IMAGE} with {} failed",
            script.display()
        );
    }
    true
}

/// Removes every container the docker runtime of node `id` made on the engine.
fn remove_containers_of(id: &str) {
    let filter = format!("label=com.docker.swarm.node.id={id}");
    let Some(ids) = engine_cli(&["ps", "-aq", "--filter", &filter]) else {
        return;
    };
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids);
        if engine_cli(&args).is_none() {
            eprintln!("cleanup: could not remove the containers of node {id}");
        }
    }
}

/// `kill -SIG pid` through the `kill` program (no `unsafe` in tests).
fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Pids of live (not zombie) processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true);
        if !zombie && String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Kills a supervisor a test's daemon left and the processes it started (their process groups).
fn kill_tree(pid: u32) {
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(") ")
                        .and_then(|(_, r)| r.split(' ').nth(1).map(str::to_string))
                })
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{child}")])
                    .stderr(Stdio::null())
                    .status();
                signal(child, "KILL");
            }
        }
    }
    signal(pid, "KILL");
}

impl Host {
    /// Waits until `docker service ls` shows `replicas` (e.g. `3/3`) for `service`.
    pub async fn wait_replicas(&self, service: &str, replicas: &str) {
        let filter = format!("name={service}");
        let want = format!("{service} {replicas}");
        self.wait_for(
            &format!("service {service} at {replicas}"),
            &[
                "service",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}} {{.Replicas}}",
            ],
            |out| out.lines().any(|l| l == want),
        )
        .await;
    }
}

/// A swarm's join tokens.
pub struct Tokens {
    /// `docker swarm join-token -q manager`.
    pub manager: String,
    /// `docker swarm join-token -q worker`.
    pub worker: String,
}

impl Host {
    /// `docker swarm init [extra...] --advertise-addr <this host>`; returns the join tokens.
    pub async fn init(&self, extra: &[&str]) -> Tokens {
        let mut args = vec!["swarm", "init"];
        args.extend_from_slice(extra);
        args.extend(["--advertise-addr", self.ip()]);
        self.ok(&args).await;
        Tokens {
            manager: self.ok(&["swarm", "join-token", "-q", "manager"]).await,
            worker: self.ok(&["swarm", "join-token", "-q", "worker"]).await,
        }
    }

    /// `docker swarm join --token <token> <manager's address>`.
    pub async fn join(&self, token: &str, manager: &Host) {
        self.ok(&["swarm", "join", "--token", token, &manager.addr()])
            .await;
    }

    /// Waits until `docker node ls` here shows `n` Ready nodes.
    pub async fn wait_ready(&self, n: usize) {
        self.wait_for(
            &format!("{n} ready nodes"),
            &["node", "ls", "--format", "{{.Status}}"],
            |out| out.lines().filter(|l| *l == "Ready").count() == n,
        )
        .await;
    }

    /// `(task id, node)` of the tasks of `service` desired running that run.
    pub async fn running_tasks(&self, service: &str) -> Vec<(String, String)> {
        self.ok(&[
            "service",
            "ps",
            service,
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}} {{.Node}} {{.CurrentState}}",
        ])
        .await
        .lines()
        .filter(|l| l.contains(" Running"))
        .filter_map(|l| {
            let mut it = l.split(' ');
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
    }
}

impl Cluster {
    /// Host 0 runs `swarm init`; the next `managers` hosts join as managers and the `workers`
    /// after them as workers; waits until host 0 sees every one of them Ready.
    pub async fn form(&self, managers: usize, workers: usize) -> Tokens {
        let h0 = self.host(0);
        let tokens = h0.init(&[]).await;
        for i in 1..=managers {
            self.host(i).join(&tokens.manager, h0).await;
        }
        for i in managers + 1..=managers + workers {
            self.host(i).join(&tokens.worker, h0).await;
        }
        h0.wait_ready(1 + managers + workers).await;
        tokens
    }
}
