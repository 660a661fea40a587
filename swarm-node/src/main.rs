//! `swarm-node`: the swarm daemon, and two client subcommands that talk to it over its socket.
//!
//! ```text
//! swarm-node run [--data-dir DIR] [--socket PATH] [--runtime auto|process|docker|sim] [--init]
//!                [--unlock-key-file FILE|-] [--mesh-addr ADDR] [--max-replicas N]
//!                [--api-header-timeout SECS] [--api-max-connections N]
//!                [--listen-addr HOST:PORT] [--advertise-addr HOST[:PORT]] [--hostname NAME]
//! swarm-node unlock [--data-dir DIR] [--socket PATH] [--key SWMKEY-1-...]   (else read from stdin)
//! swarm-node status [--data-dir DIR] [--socket PATH]
//! swarm-node backup [--data-dir DIR] OUT             (offline: the daemon must be stopped)
//! swarm-node restore [--data-dir DIR] [--force] IN   (offline)
//! ```
//!
//! `run` prints the socket path and `export DOCKER_HOST=unix://<socket>`; the ordinary `docker`
//! CLI then drives the swarm. Logs go to stderr, filtered by `RUST_LOG` (default `info,openraft=warn`). SIGINT
//! or SIGTERM stops every task, commits their last status and closes the raft log.
#![forbid(unsafe_code)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use swarm_node::backend::{Backend, SwarmState};
use swarm_node::config::{
    create_data_dir, default_data_dir, default_socket, DaemonConfig, RuntimeKind,
};
use swarm_node::daemon::Daemon;
use swarm_node::http_client::UnixClient;

/// How long open API connections may take to finish after SIGINT/SIGTERM.
const SERVE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Parser)]
#[command(name = "swarm-node", version, about = "A Docker swarm mode node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Location {
    /// Data directory [default: /var/lib/swarm-node as root, else $XDG_DATA_HOME/swarm]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The API socket [default: <data-dir>/swarm.sock]
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Location {
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| default_socket(&self.data_dir()))
    }
}

/// The API's protective limits (`swarm_node::api::ApiOptions`).
#[derive(Args, Clone)]
struct ApiLimits {
    /// Most tasks one service may ask for (Replicas, or a job's MaxConcurrent/TotalCompletions)
    #[arg(long, value_name = "N", default_value_t = swarm_core::validate::DEFAULT_MAX_REPLICAS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_replicas: u64,
    /// Seconds a client connection may take to send a request head (or sit idle between requests)
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    api_header_timeout: u64,
    /// Most API connections open at once; past it the longest-idle connection is closed
    #[arg(long, value_name = "N", default_value_t = swarm_node::api::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    api_max_connections: usize,
}

impl ApiLimits {
    fn options(&self) -> swarm_node::api::ApiOptions {
        swarm_node::api::ApiOptions {
            header_read_timeout: std::time::Duration::from_secs(self.api_header_timeout),
            max_connections: self.api_max_connections,
            service_limits: swarm_core::validate::ServiceLimits {
                max_replicas: self.max_replicas,
            },
        }
    }
}

/// Where this node serves the swarm protocol (QUIC: raft, CA, dispatcher) once in a swarm.
#[derive(Args, Clone)]
struct SwarmAddrs {
    /// Address the swarm listener binds [default: 0.0.0.0:2377, or a swarm init/join request's
    /// ListenAddr]; when given, a request's ListenAddr still overrides it unless it is Docker's
    /// default (what `docker swarm init` sends when its --listen-addr is not given)
    #[arg(long, value_name = "HOST:PORT")]
    listen_addr: Option<std::net::SocketAddr>,
    /// Address other nodes reach this one on (port 2377 when only a host is given); a request's
    /// AdvertiseAddr overrides it
    #[arg(long, value_name = "HOST[:PORT]")]
    advertise_addr: Option<String>,
    /// The hostname this node reports (default: the host's)
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Route connections to service VIPs through the routing mesh (root, Linux: adds the VIPs
    /// to lo and an nftables redirect, removed at stop); one daemon per network namespace
    #[arg(long)]
    vip_dataplane: bool,
    /// Let the kernel carry published TCP ports' connections to this node's tasks (root,
    /// Linux: nftables DNAT, removed at stop; without root or nft the userspace proxy carries
    /// them); one daemon per network namespace
    #[arg(long)]
    kernel_ingress: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon and serve the Docker API on a Unix socket.
    Run {
        #[command(flatten)]
        at: Location,
        /// Runtime adapter: auto (docker if its socket answers, else process), process, docker, sim
        #[arg(long, default_value = "auto")]
        runtime: RuntimeKind,
        /// Initialise a single-node swarm on the first start (no-op once initialised)
        #[arg(long)]
        init: bool,
        /// Unlock a locked swarm at start with the key read from FILE ("-": standard input)
        #[arg(long, value_name = "FILE")]
        unlock_key_file: Option<PathBuf>,
        /// Address the routing mesh binds published ports on (e.g. 127.0.0.1 for loopback only)
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
        mesh_addr: std::net::IpAddr,
        /// Serve Prometheus metrics on http://HOST:PORT/metrics (like dockerd's metrics-addr);
        /// nothing listens without it
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<std::net::SocketAddr>,
        #[command(flatten)]
        limits: ApiLimits,
        #[command(flatten)]
        swarm: SwarmAddrs,
    },
    /// Unlock a locked swarm through the running daemon's socket.
    Unlock {
        #[command(flatten)]
        at: Location,
        /// The unlock key (prefer standard input: arguments are visible to other users)
        #[arg(long)]
        key: Option<String>,
    },
    /// Print the swarm state, this node's id and its tasks by state.
    Status {
        #[command(flatten)]
        at: Location,
    },
    /// Back up this node's swarm state into the new directory OUT (offline: stop the daemon
    /// first). With autolock on, the backup needs the unlock key to be used.
    Backup {
        /// Data directory [default: /var/lib/swarm-node as root, else $XDG_DATA_HOME/swarm]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The backup directory to create (must not exist)
        out: PathBuf,
    },
    /// Restore a backup made by `swarm-node backup` into the data directory (offline).
    Restore {
        /// Data directory [default: /var/lib/swarm-node as root, else $XDG_DATA_HOME/swarm]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Restore over existing swarm state, moving it aside to <data-dir>.pre-restore-<time>
        #[arg(long)]
        force: bool,
        /// The backup directory
        input: PathBuf,
    },
    /// (internal) Supervise one process-runtime task; the daemon starts this itself.
    #[command(hide = true)]
    Supervise {
        /// The Unix socket to serve the supervisor protocol on
        socket: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarm-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Supervise { socket } = &cli.command {
        // Before any async runtime or logging exists: the supervisor runs its own
        // single-threaded loop (the thread that forks the task must be the one that entered its
        // PID namespace) and its standard streams belong to the protocol.
        return swarm_runtime::process::supervise(socket).context("supervising a task");
    }
    not_dumpable();
    match &cli.command {
        Command::Backup { data_dir, out } => return backup(data_dir.clone(), out),
        Command::Restore {
            data_dir,
            force,
            input,
        } => return restore(data_dir.clone(), *force, input),
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Run {
                at,
                runtime,
                init,
                unlock_key_file,
                mesh_addr,
                metrics_addr,
                limits,
                swarm,
            } => {
                run(
                    at,
                    runtime,
                    init,
                    unlock_key_file,
                    mesh_addr,
                    metrics_addr,
                    limits.options(),
                    swarm,
                )
                .await
            }
            Command::Unlock { at, key } => unlock(at, key).await,
            Command::Status { at } => status(at).await,
            Command::Supervise { .. } | Command::Backup { .. } | Command::Restore { .. } => {
                unreachable!("handled before the async runtime starts")
            }
        }
    })
}

fn backup(data_dir: Option<PathBuf>, out: &Path) -> Result<()> {
    let data_dir = data_dir.unwrap_or_else(default_data_dir);
    let m = swarm_node::backup::backup(&data_dir, out)?;
    println!(
        "backed up node {} of cluster {} ({} files, {} bytes) into {}",
        m.node_id,
        m.cluster_id,
        m.files.len(),
        m.total_bytes(),
        out.display()
    );
    if m.autolock {
        println!("autolock is on: restoring this backup needs the swarm's unlock key");
    } else {
        println!("autolock is off: the backup holds the swarm's key-encryption key; keep it as safe as the node");
    }
    Ok(())
}

fn restore(data_dir: Option<PathBuf>, force: bool, input: &Path) -> Result<()> {
    let data_dir = data_dir.unwrap_or_else(default_data_dir);
    let r = swarm_node::backup::restore(input, &data_dir, force)?;
    if let Some(aside) = &r.moved_aside {
        println!(
            "the former state of {} was moved to {}",
            data_dir.display(),
            aside.display()
        );
    }
    println!(
        "restored node {} of cluster {} ({} files) into {}",
        r.manifest.node_id,
        r.manifest.cluster_id,
        r.manifest.files.len(),
        data_dir.display()
    );
    println!("start it with `swarm-node run`; on another host, then run `docker swarm init --force-new-cluster`");
    if r.manifest.autolock {
        println!(
            "autolock is on: the node starts locked until unlocked with the swarm's unlock key"
        );
    }
    Ok(())
}

/// Makes this process non-dumpable: no core dump (it would hold secrets and keys), and other
/// processes of the same user cannot read its memory or `/proc/<pid>/` files (root still can).
fn not_dumpable() {
    use rustix::process::{set_dumpable_behavior, DumpableBehavior};
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        eprintln!("swarm-node: warning: could not make the process non-dumpable: {e}");
    }
}

fn read_key(source: Option<&Path>) -> Result<String> {
    let mut text = String::new();
    match source {
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the unlock key from standard input")?;
        }
        Some(p) if p == Path::new("-") => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the unlock key from standard input")?;
        }
        Some(p) => {
            text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the unlock key from {}", p.display()))?
        }
    }
    Ok(text.trim().to_string())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    at: Location,
    runtime: RuntimeKind,
    init: bool,
    unlock_key_file: Option<PathBuf>,
    mesh_addr: std::net::IpAddr,
    metrics_addr: Option<std::net::SocketAddr>,
    api: swarm_node::api::ApiOptions,
    swarm: SwarmAddrs,
) -> Result<()> {
    let mut config = DaemonConfig::new(at.data_dir());
    config.listen_addr = swarm
        .listen_addr
        .unwrap_or(swarm_node::config::DEFAULT_LISTEN_ADDR);
    config.listen_addr_fixed = swarm.listen_addr.is_some();
    config.advertise_addr = swarm.advertise_addr;
    config.hostname = swarm.hostname;
    config.socket = at.socket();
    config.runtime = runtime;
    config.init = init;
    config.mesh_addr = mesh_addr;
    config.vip_dataplane = swarm.vip_dataplane;
    config.kernel_ingress = swarm.kernel_ingress;
    // Tasks of the process runtime run under `swarm-node supervise` and outlive the daemon.
    // Resolved now: a binary replaced in place later still starts supervisors by this path.
    match std::env::current_exe() {
        Ok(exe) => config.supervisor = Some(exe),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this executable; process tasks will not outlive the daemon")
        }
    }
    let socket = config.socket.clone();
    // Before binding: the default socket is inside the data directory, and binding would
    // otherwise create that directory with the umask's permissions.
    create_data_dir(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let listener = bind(&socket).await?;
    let daemon = Daemon::start(config).await.context("starting the daemon")?;
    if daemon.swarm_state() == SwarmState::Locked {
        if let Some(file) = unlock_key_file.as_deref() {
            let key = read_key(Some(file))?;
            daemon.unlock(&key).await.context("unlocking the swarm")?;
        }
    }
    println!("swarm-node: serving the Docker API on {}", socket.display());
    println!("export DOCKER_HOST=unix://{}", socket.display());
    tracing::info!(
        state = ?daemon.swarm_state(),
        runtime = %daemon.info().runtime,
        data_dir = %daemon.config().data_dir.display(),
        "daemon started"
    );
    let backend: Arc<dyn Backend> = daemon.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    if let Some(addr) = metrics_addr {
        let listener = swarm_node::metrics::bind(addr).await?;
        println!("swarm-node: serving metrics on http://{addr}/metrics");
        let (mut stop, backend) = (stop_rx.clone(), backend.clone());
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = swarm_node::metrics::serve(listener, backend, stopped).await {
                tracing::warn!(error = %e, "the metrics listener failed");
            }
        });
    }
    let mut graceful = stop_rx.clone();
    let serve = swarm_node::api::serve_with(listener, backend, api, async move {
        let _ = graceful.wait_for(|s| *s).await;
    });
    let mut deadline = stop_rx;
    // Streaming requests (`logs -f`, `events`) may never end: give them a moment, then go on.
    let served = tokio::select! {
        r = serve => r,
        _ = async {
            let _ = deadline.wait_for(|s| *s).await;
            tokio::time::sleep(SERVE_GRACE).await;
        } => {
            tracing::warn!("API connections still open after {SERVE_GRACE:?}; shutting down anyway");
            Ok(())
        }
    };
    tracing::info!("shutting down: stopping tasks and closing the raft log");
    daemon.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    served.context("serving the API")
}

/// Binds the socket, replacing a stale one but refusing to take over a live daemon's.
async fn bind(socket: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            bail!(
                "another daemon is serving on {}; stop it or choose another --socket",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the permissions of {}", socket.display()))?;
    Ok(listener)
}

/// Exit code when a second stop signal cuts the graceful stop short.
const EXIT_SECOND_SIGNAL: i32 = 130;

/// The daemon's stop signals (`SIGTERM`, `SIGINT`), listened to from the start so that none is
/// missed between the first and the second.
struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn recv(&mut self) {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.term) => {}
            _ = one(&mut self.int) => {}
        }
    }
}

/// Resolves on the first `SIGTERM` or `SIGINT`: the graceful stop begins (tasks get their stop
/// grace period, bounded as `Daemon::shutdown` documents). A second one exits at once with
/// [`EXIT_SECOND_SIGNAL`], leaving tasks as they are (a docker workload is adopted by the next
/// start).
async fn shutdown_signal() {
    let mut signals = StopSignals::new();
    signals.recv().await;
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("swarm-node: second stop signal: exiting now, without waiting for tasks to stop");
        std::process::exit(EXIT_SECOND_SIGNAL);
    });
}

async fn unlock(at: Location, key: Option<String>) -> Result<()> {
    let key = match key {
        Some(k) => k,
        None => {
            eprintln!("Please enter unlock key:");
            read_key(None)?
        }
    };
    let body = serde_json::json!({ "UnlockKey": key }).to_string();
    let (code, text) = http(&at.socket(), "POST", "/swarm/unlock", Some(&body)).await?;
    if code >= 300 {
        bail!("{}", error_message(&text));
    }
    println!("swarm unlocked");
    Ok(())
}

async fn status(at: Location) -> Result<()> {
    let socket = at.socket();
    let (code, text) = http(&socket, "GET", "/info", None).await?;
    if code >= 300 {
        bail!("{}", error_message(&text));
    }
    let info: serde_json::Value = serde_json::from_str(&text).context("decoding /info")?;
    let swarm = &info["Swarm"];
    let state = swarm["LocalNodeState"].as_str().unwrap_or("unknown");
    println!("socket:   {}", socket.display());
    println!("swarm:    {state}");
    if let Some(id) = swarm["NodeID"].as_str().filter(|s| !s.is_empty()) {
        println!("node id:  {id}");
    }
    if let Some(rt) = info["DefaultRuntime"].as_str() {
        println!("runtime:  {rt}");
    }
    if state != "active" {
        return Ok(());
    }
    let (code, text) = http(&socket, "GET", "/tasks", None).await?;
    if code >= 300 {
        bail!("{}", error_message(&text));
    }
    let tasks: Vec<serde_json::Value> = serde_json::from_str(&text).context("decoding /tasks")?;
    let mut by_state = std::collections::BTreeMap::<String, usize>::new();
    for t in &tasks {
        let s = t["Status"]["State"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        *by_state.entry(s).or_default() += 1;
    }
    let counts: Vec<String> = by_state.iter().map(|(s, n)| format!("{s}={n}")).collect();
    println!("tasks:    {} ({})", tasks.len(), counts.join(" "));
    Ok(())
}

fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string())
}

/// One request over the daemon's socket; returns the status code and the body.
async fn http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut client = UnixClient::connect(socket)
        .await
        .map_err(|e| anyhow::anyhow!("{e}: is `swarm-node run` serving there?"))?;
    let reply = client
        .request(method, path, body.map(str::as_bytes))
        .await
        .context("talking to the daemon")?;
    Ok((reply.status, reply.text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_the_json_body() {
        assert_eq!(error_message(r#"{"message":"nope"}"#), "nope");
        assert_eq!(error_message(" plain text\n"), "plain text");
    }
}
