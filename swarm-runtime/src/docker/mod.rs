//! The `docker` runtime: tasks as containers of the local Docker Engine, through bollard over its
//! Unix socket (API version negotiated, so a 20.10 engine speaking 1.41 works).
//!
//! - Containers are named after the task (`<service>.<slot>.<task id>`) and labelled
//!   `com.docker.swarm.task.id`, `.task.name`, `.service.id`, `.service.name`, `.node.id`.
//! - Images are never pulled: a missing image rejects the task with `image not found` and the
//!   engine's reason.
//! - Secrets and configs are written to a host tmpfs and bind-mounted read-only file by file, never
//!   into the container's writable layer (so `docker commit` cannot capture them), and deleted
//!   when the container exits.
//! - Stop sends the spec's stop signal, waits the grace period (to the millisecond, which the
//!   engine's own stop cannot do), then `SIGKILL`.
//! - Swarm networks are engine bridge networks (`network.rs`), one per swarm network, named
//!   `swarm-<name>-<first 8 of its id>`, labelled `com.docker.swarm.network.id` / `.name` plus the
//!   network's labels, with its `internal`, IPv6 and IPAM (subnet, range, gateway) settings.
//!   `prepare` creates them on demand (or reuses one carrying the right id label, after a daemon
//!   restart or from another daemon on this engine) and refuses a task when a network of that
//!   name belongs to something else. The adapter counts its tasks per network and removes the
//!   bridge with the last one (left alone while other containers still use it).
//! - A task is created on its first swarm network and connected to the others before it starts,
//!   each time with the task's aliases there (service name, `tasks.<service>`, task name, extra
//!   aliases): the engine's embedded DNS resolves a service name to all its running tasks on that
//!   network, and nowhere else.
//! - A task with no swarm network is on the engine's default bridge, or on the network mode of
//!   runtime option `swarm.runtime.docker.network` (`bridge`, `none`, `host`, a network name);
//!   that option together with swarm networks rejects the task.
//! - Host-mode published ports are bound on every host address (`published_port` 0: the engine
//!   picks one); ingress ports are left to swarm-node's routing mesh. A port already in use fails
//!   `start` with `host-mode port <port>/<protocol>: <engine message>`.
//! - `inspect` of a running task reports its addresses (IPv4 and global IPv6) per network, with
//!   the swarm network id for the bridges above and `None` for other engine networks, and the
//!   host ports actually bound; both are read once, right after `start` returns.
//! - Mounts: bind, volume (named volumes with their driver, options, labels and `nocopy`, created
//!   by the engine on first use and never removed with the task; anonymous ones go with the
//!   container) and tmpfs, each read-only on request. A bind mount whose host path is missing
//!   rejects the task before anything is created, in the engine's words; so does any mount the
//!   engine refuses at create.
//! - `prepare` and `start` run as tasks of their own (`create.rs` holds `prepare`'s engine work):
//!   a caller that drops the future cannot cut one between an engine call and the registration
//!   of what it made; `shutdown` and `remove` wait for one in flight first. `start` watches for
//!   the container's exit before it awaits anything else.
//! - Stops are bounded: `KILL_WAIT` after `SIGKILL` without an exit, the engine is asked once
//!   more, then `shutdown` fails with `KillTimedOut`. A failed wait on the engine is not an exit:
//!   a container still running is waited on again, one gone without an exit code is reported by
//!   `wait` as `ExitUnknown`. `remove` waits at most 60 s for a `prepare`/`start` in flight and
//!   30 s for the engine's forced removal.
//! - A timed-out `exec` is killed through a pidfd, only after checking the process is in the
//!   container's PID namespace (`exec.rs`).
//! - `recover(node)` adopts the node's containers a previous run left, by label (`adopt.rs`).

mod adopt;
mod convert;
mod create;
mod exec;
mod logs;
mod network;
mod wait;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{KillContainerOptionsBuilder, LogsOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use swarm_core::objects::service::{HealthConfig, PortConfig};
use swarm_core::objects::task::TaskAddress;
use swarm_core::Id;
use tokio::sync::watch;

use self::convert::{addresses, bound_ports, engine, message, start_failure};
use self::network::Networks;
use self::wait::exit_status;
use crate::error::RuntimeError;
use crate::files::{default_stage_root, Stage, Staged};
use crate::runtime::{
    stop_and_wait, wait_exit, ExecResult, ExitStatus, LogLine, LogStream, RecoveredTask, Runtime,
    RuntimeState, TaskConfig, TaskInspect,
};
use crate::signal::signal_name;

/// The engine's default socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

const OPTIONS: &[&str] = &["network"];

/// How to build a [`DockerRuntime`].
#[derive(Clone, Debug, Default)]
pub struct DockerOptions {
    /// The engine's Unix socket (default [`DEFAULT_SOCKET`]).
    pub socket: Option<PathBuf>,
    /// Where task files are staged; must be (or, as root, becomes) a tmpfs. Default: a fresh
    /// directory under /dev/shm, deleted when the runtime is dropped.
    pub stage_dir: Option<PathBuf>,
}

impl DockerOptions {
    /// The engine socket these options name: [`DockerOptions::socket`], else [`DEFAULT_SOCKET`].
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }
}

/// Whether a Docker Engine answers `GET /_ping` on the socket `opts` names within `timeout`: how
/// an embedder picks this adapter when an engine is there (swarm-node's `--runtime auto`). A
/// missing socket, a refused connection or a slow engine all answer `false`.
pub async fn engine_answers(opts: &DockerOptions, timeout: Duration) -> bool {
    let socket = opts.socket_path();
    if !socket.exists() {
        return false;
    }
    let Ok(docker) = Docker::connect_with_unix(
        &socket.display().to_string(),
        timeout.as_secs().max(1),
        bollard::API_DEFAULT_VERSION,
    ) else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, docker.ping()).await,
        Ok(Ok(_))
    )
}

/// How a container ended: its exit status, or why that could not be observed.
type Exit = Result<ExitStatus, String>;

/// Longest `remove` or `shutdown` waits for a `prepare` or `start` still in flight (they run
/// detached from their caller's future, see [`Inner::ops`]).
const OP_WAIT: Duration = Duration::from_secs(60);

/// Longest an engine call made while removing a container may take.
const REMOVE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct DockerTask {
    container: String,
    stop_signal: i32,
    grace: Duration,
    user: String,
    state: RuntimeState,
    exit_tx: watch::Sender<Option<Exit>>,
    staged: Staged,
    /// For a task adopted from a previous run of the node: its files in that run's stage root,
    /// deleted when it exits like `staged` ones.
    adopted_dir: Option<PathBuf>,
    image_health: Option<HealthConfig>,
    /// The swarm networks this task holds a reference on, with their engine network ids.
    networks: Vec<(String, Id)>,
    /// The task's published ports (the host-mode ones are bound).
    ports: Vec<PortConfig>,
    /// What the engine reported once the container ran (read right after `start`).
    running: Option<RunningInfo>,
}

/// A running container's facts, read once after it started.
#[derive(Clone, Debug, Default)]
struct RunningInfo {
    pid: u32,
    addresses: Vec<TaskAddress>,
    ports: Vec<PortConfig>,
}

struct Inner {
    docker: Docker,
    stage: Stage,
    tasks: Mutex<HashMap<Id, DockerTask>>,
    /// `prepare` and `start` run in tasks of their own, so a caller dropping its future cannot
    /// cut one between an engine call and the registration of what it created (contract clause
    /// 9). Each in-flight operation is here until its result is registered; `remove` and
    /// `shutdown` wait for it first. The receiver resolves when the operation's sender drops.
    ops: Mutex<HashMap<Id, watch::Receiver<()>>>,
    networks: Networks,
}

/// The Docker Engine runtime.
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("stage", &self.inner.stage.root())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Id, DockerTask>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ops(&self) -> MutexGuard<'_, HashMap<Id, watch::Receiver<()>>> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (bounded) for the task's in-flight `prepare` or `start`, if any.
    async fn settle(&self, task: &Id) {
        let Some(mut rx) = self.ops().get(task).cloned() else {
            return;
        };
        if tokio::time::timeout(OP_WAIT, rx.changed()).await.is_err() {
            tracing::warn!(task = %task, "a prepare or start of the task is still running after {OP_WAIT:?}; going on without it");
        }
    }

    /// Marks the task exited, deletes its files, then wakes waiters. An unknown exit shows in
    /// `inspect` as code -1; `wait` reports it as [`RuntimeError::ExitUnknown`].
    fn finish(&self, task: &Id, exit: Exit) {
        let mut map = self.lock();
        let Some(t) = map.get_mut(task) else { return };
        if matches!(t.state, RuntimeState::Exited(_)) {
            return;
        }
        t.state = RuntimeState::Exited(exit.clone().unwrap_or(ExitStatus::code(-1)));
        self.stage.unstage(task);
        if let Some(dir) = t.adopted_dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::debug!(task = %task, error = %e, "adopted task's staged files not deleted");
            }
            // The previous run's root goes with its last task (fails while others remain).
            if let Some(root) = dir.parent() {
                let _ = std::fs::remove_dir(root);
            }
        }
        t.exit_tx.send_replace(Some(exit));
    }
}

/// Awaits a detached `prepare` or `start`.
async fn join_op(
    op: &'static str,
    handle: tokio::task::JoinHandle<Result<(), RuntimeError>>,
) -> Result<(), RuntimeError> {
    match handle.await {
        Ok(r) => r,
        Err(e) => Err(RuntimeError::Engine {
            op,
            message: format!("the operation ended abnormally: {e}"),
        }),
    }
}

impl DockerRuntime {
    /// Connects to the engine and negotiates the API version.
    pub async fn connect(opts: DockerOptions) -> Result<DockerRuntime, RuntimeError> {
        let socket = opts.socket_path();
        let docker = Docker::connect_with_unix(
            &socket.display().to_string(),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| engine("connect", e))?
        .negotiate_version()
        .await
        .map_err(|e| engine("version negotiation", e))?;
        let root = opts
            .stage_dir
            .unwrap_or_else(|| default_stage_root("docker"));
        let stage = Stage::create(root, false)?;
        Ok(DockerRuntime {
            inner: Arc::new(Inner {
                stage,
                tasks: Mutex::new(HashMap::new()),
                ops: Mutex::new(HashMap::new()),
                networks: Networks::new(docker.clone()),
                docker,
            }),
        })
    }

    /// The bollard client (for callers that need more of the engine).
    pub fn client(&self) -> &Docker {
        &self.inner.docker
    }

    /// The container id of a prepared task.
    pub fn container_id(&self, task: &Id) -> Option<String> {
        self.inner.lock().get(task).map(|t| t.container.clone())
    }

    /// Reads a running container's pid, addresses and bound ports from the engine.
    async fn read_running(&self, task: &Id) -> Option<RunningInfo> {
        let (container, nets, ports) = self
            .get(task, |t| {
                (t.container.clone(), t.networks.clone(), t.ports.clone())
            })
            .ok()?;
        let i: ContainerInspectResponse = self
            .inner
            .docker
            .inspect_container(&container, None)
            .await
            .ok()?;
        let settings = i.network_settings.as_ref();
        Some(RunningInfo {
            pid: i
                .state
                .and_then(|s| s.pid)
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
            addresses: addresses(settings, &nets),
            ports: bound_ports(settings, &ports),
        })
    }

    fn get<R>(&self, task: &Id, f: impl FnOnce(&DockerTask) -> R) -> Result<R, RuntimeError> {
        self.inner
            .lock()
            .get(task)
            .map(f)
            .ok_or(RuntimeError::NotFound { task: *task })
    }

    /// Registers an in-flight operation on `task` after `check` passed, both under the locks.
    fn begin_op(
        &self,
        task: Id,
        check: impl FnOnce(
            &HashMap<Id, DockerTask>,
            &HashMap<Id, watch::Receiver<()>>,
        ) -> Result<(), RuntimeError>,
    ) -> Result<watch::Sender<()>, RuntimeError> {
        let tasks = self.inner.lock();
        let mut ops = self.inner.ops();
        check(&tasks, &ops)?;
        let (tx, rx) = watch::channel(());
        ops.insert(task, rx);
        Ok(tx)
    }

    /// The body of `start`: starts the container, then watches for its exit at once (before
    /// anything else is awaited), then reads its addresses and ports.
    async fn start_container(&self, task: &Id) -> Result<(), RuntimeError> {
        let (container, ports) = self.get(task, |t| (t.container.clone(), t.ports.clone()))?;
        if let Err(e) = self.inner.docker.start_container(&container, None).await {
            self.inner.finish(task, Ok(ExitStatus::code(127)));
            return Err(RuntimeError::StartFailed {
                task: *task,
                reason: start_failure(message(&e), &ports),
            });
        }
        if let Some(t) = self.inner.lock().get_mut(task) {
            if t.state == RuntimeState::Created {
                t.state = RuntimeState::Running;
            }
        }
        tokio::spawn(self.inner.clone().watch_exit(*task, container));
        // Addresses and bound ports exist once the engine has started the container: read them
        // now, so `inspect` right after `start` has them without another engine call.
        let info = self.read_running(task).await;
        if let Some(t) = self.inner.lock().get_mut(task) {
            t.running = info;
        }
        Ok(())
    }

    async fn kill(&self, container: &str, sig: i32) {
        let opts = KillContainerOptionsBuilder::default()
            .signal(&signal_name(sig))
            .build();
        if let Err(e) = self
            .inner
            .docker
            .kill_container(container, Some(opts))
            .await
        {
            tracing::debug!(error = %e, "kill failed (the container may have exited)");
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn prepare(&self, config: &TaskConfig) -> Result<(), RuntimeError> {
        let id = config.task_id;
        let done = self.begin_op(id, |tasks, ops| {
            if tasks.contains_key(&id) || ops.contains_key(&id) {
                return Err(RuntimeError::AlreadyPrepared { task: id });
            }
            Ok(())
        })?;
        let me = self.clone();
        let config = config.clone();
        let op = tokio::spawn(async move {
            let r = match me.create(&config).await {
                Ok(t) => {
                    me.inner.lock().insert(id, t);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            me.inner.ops().remove(&id);
            drop(done);
            r
        });
        join_op("prepare", op).await
    }

    async fn start(&self, task: &Id) -> Result<(), RuntimeError> {
        let id = *task;
        let done = self.begin_op(id, |tasks, ops| {
            let t = tasks.get(&id).ok_or(RuntimeError::NotFound { task: id })?;
            if t.state != RuntimeState::Created || ops.contains_key(&id) {
                return Err(RuntimeError::AlreadyStarted { task: id });
            }
            Ok(())
        })?;
        let me = self.clone();
        let op = tokio::spawn(async move {
            let r = me.start_container(&id).await;
            me.inner.ops().remove(&id);
            drop(done);
            r
        });
        join_op("start", op).await
    }

    async fn wait(&self, task: &Id) -> Result<ExitStatus, RuntimeError> {
        let mut rx = self.get(task, |t| t.exit_tx.subscribe())?;
        let exit = wait_exit(&mut rx)
            .await
            .unwrap_or_else(|| Err("the runtime dropped the task".into()));
        exit.map_err(|reason| RuntimeError::ExitUnknown {
            task: *task,
            reason,
        })
    }

    async fn shutdown(&self, task: &Id) -> Result<(), RuntimeError> {
        self.inner.settle(task).await;
        let Ok((container, state, sig, grace, mut rx)) = self.get(task, |t| {
            (
                t.container.clone(),
                t.state,
                t.stop_signal,
                t.grace,
                t.exit_tx.subscribe(),
            )
        }) else {
            return Ok(());
        };
        match state {
            RuntimeState::Exited(_) => return Ok(()),
            RuntimeState::Created => {
                self.inner.finish(task, Ok(ExitStatus::code(0)));
                return Ok(());
            }
            RuntimeState::Running => {}
        }
        let signal = self.kill(&container, sig);
        let kill = self.kill(&container, libc::SIGKILL);
        let timed_out = match stop_and_wait(task, &mut rx, signal, grace, kill).await {
            Err(e @ RuntimeError::KillTimedOut { .. }) => e,
            done => return done,
        };
        // No exit seen: the wait may be what is stuck. Ask the engine once more.
        let state = tokio::time::timeout(
            REMOVE_WAIT,
            self.inner.docker.inspect_container(&container, None),
        )
        .await
        .ok()
        .and_then(|r| r.ok())
        .and_then(|i| i.state);
        match state {
            Some(s) if s.running != Some(true) => {
                let exit = s
                    .exit_code
                    .map(exit_status)
                    .ok_or_else(|| "the engine reports no exit code".to_string());
                self.inner.finish(task, exit);
                Ok(())
            }
            _ => Err(timed_out),
        }
    }

    async fn remove(&self, task: &Id) -> Result<(), RuntimeError> {
        self.inner.settle(task).await;
        let Ok(container) = self.get(task, |t| t.container.clone()) else {
            return Ok(());
        };
        match tokio::time::timeout(REMOVE_WAIT, self.remove_container(&container)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(RuntimeError::Engine {
                    op: "remove container",
                    message: format!("no answer from the engine within {REMOVE_WAIT:?}"),
                })
            }
        }
        self.inner
            .finish(task, Ok(ExitStatus::signal(libc::SIGKILL)));
        let held = self.inner.lock().remove(task).map(|t| t.networks);
        let ids: Vec<Id> = held.into_iter().flatten().map(|(_, id)| id).collect();
        self.inner.networks.release(&ids).await;
        Ok(())
    }

    async fn inspect(&self, task: &Id) -> Result<TaskInspect, RuntimeError> {
        let (container, state, files, image_healthcheck, running) = self.get(task, |t| {
            let files = match t.state {
                RuntimeState::Exited(_) => Vec::new(),
                _ => t.staged.files.iter().map(|f| f.host.clone()).collect(),
            };
            (
                t.container.clone(),
                t.state,
                files,
                t.image_health.clone(),
                t.running.clone(),
            )
        })?;
        let running = match (state, running) {
            (RuntimeState::Running, Some(r)) => r,
            // The read after start failed (engine hiccup): try again.
            (RuntimeState::Running, None) => match self.read_running(task).await {
                Some(info) => {
                    if let Some(t) = self.inner.lock().get_mut(task) {
                        t.running.get_or_insert_with(|| info.clone());
                    }
                    info
                }
                None => RunningInfo::default(),
            },
            _ => RunningInfo::default(),
        };
        Ok(TaskInspect {
            state,
            container_id: container,
            pid: running.pid,
            staged_files: files,
            image_healthcheck,
            addresses: running.addresses,
            ports: running.ports,
        })
    }

    async fn exec(
        &self,
        task: &Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        self.exec_in(task, cmd, timeout).await
    }

    async fn logs(&self, task: &Id, tail: Option<usize>) -> Result<Vec<LogLine>, RuntimeError> {
        let container = self.get(task, |t| t.container.clone())?;
        let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let mut stream = self.inner.docker.logs(&container, Some(opts));
        let mut lines = Vec::new();
        while let Some(item) = stream.next().await {
            let (stream, bytes) = match item.map_err(|e| engine("logs", e))? {
                LogOutput::StdErr { message } => (LogStream::Stderr, message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    (LogStream::Stdout, message)
                }
                LogOutput::StdIn { .. } => continue,
            };
            for l in String::from_utf8_lossy(&bytes).lines() {
                lines.push(LogLine {
                    stream,
                    line: l.to_string(),
                });
            }
        }
        Ok(lines)
    }

    async fn log_stream(
        &self,
        task: &Id,
        opts: crate::runtime::LogOptions,
    ) -> Result<crate::runtime::LogRecords, RuntimeError> {
        self.log_records(task, opts).await
    }

    async fn recover(&self, node: &Id) -> Result<Vec<RecoveredTask>, RuntimeError> {
        self.recover_node(node).await
    }
}
