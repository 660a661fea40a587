//! The `process` runtime: each task is a local child process (with its own session, so that the
//! stop signal reaches everything it started).
//!
//! The spec's `command` + `args` run with exactly the spec's environment (plus Docker's default
//! `PATH`, `HOSTNAME` and `HOME`), working directory and user. There is no image: a spec without a
//! command is rejected.
//!
//! **With namespaces** (the default when the agent runs as root on Linux) each task gets private
//! mount and UTS namespaces: its hostname is the spec's, its secrets appear at
//! `/run/secrets/<target>` and its configs at their targets, bind-mounted read-only from a tmpfs
//! with the requested uid, gid and mode, exactly as in a Docker container; the stage directory is
//! hidden under an empty tmpfs so no task sees another's files. **Without namespaces** (not root,
//! or [`ProcessOptions::namespaces`] = false) the files stay in a per-task tmpfs directory whose
//! location is given to the task in `SWARM_SECRETS_DIR` (files under `/run/secrets`) and
//! `SWARM_CONFIGS_DIR` (every other target, by its absolute path); mounts are rejected. Runtime
//! option `swarm.runtime.process.namespaces` (`true`/`false`) overrides the default per task.
//!
//! # Supervision
//!
//! Without [`ProcessOptions::supervisor`] tasks are the runtime's children and die with it. With
//! it, each task runs under its own supervisor process ([`supervisor`], started as
//! `<program> <args...> <socket>`; the protocol is [`proto`]), which owns the task's process, exit
//! code and output and outlives the runtime and its daemon. A new runtime on the same supervisor
//! directory adopts them all in [`Runtime::recover`]: running tasks keep running untouched, exited
//! ones report their exit code, and only `remove` lets a supervisor go. With namespaces a supervised
//! task is also the init of its own PID namespace with a private `/proc`, so no task reaches
//! another's files through `/proc/<pid>/root`; a stop signal it does not handle (the kernel
//! shields a namespace's init from those) is delivered as `SIGKILL` and reported as that signal,
//! as it would be outside a namespace. The stage root of a supervised runtime is stable
//! (`<supervisor dir>/stage`, a private tmpfs, as root) and swept of dead tasks' files by
//! `recover`.
//!
//! # Mounts
//!
//! Mounts need namespaces and are made in spec order in the task's mount namespace, which starts
//! as a copy of the host's: a target missing on the host is created there (a file when a file is
//! bound, else a directory, with any missing parents) and removed once no task uses it; existing
//! paths are never changed. `read_only` is enforced for every kind (read-only bind remount,
//! `MS_RDONLY` tmpfs).
//! - **bind**: the source must exist (`bind source path does not exist: <path>`, Docker's
//!   wording, with or without namespaces).
//! - **tmpfs**: a fresh tmpfs with the spec's size and mode (default 1777).
//! - **volume**: a host directory bound like a bind mount. A named volume is
//!   `<volumes_dir>/<name>/_data` (Docker's layout; created 0755 and empty on first use, kept
//!   after its tasks are gone, like Docker's local volumes); an anonymous one (no source) is
//!   `<volumes_dir>/_anonymous/<task id>-<mount index>`, removed with its task. Names follow
//!   Docker's rule; only the `local` driver without options exists. Without
//!   [`ProcessOptions::volumes_dir`] volume mounts are rejected. There is no image, so nothing is
//!   copied into a new volume: a task running as another user than root must be given a writable
//!   directory some other way (a bind mount of a directory it owns).
//!
//! # Container options
//!
//! Applied: `command` + `args`, `env`, `dir`, `user` and `groups` (resolved against the host's
//! passwd and group files), `hostname` (with namespaces), `mounts`, secrets and configs,
//! `stop_signal` and the stop grace period, and health checks (run by the agent through `exec`).
//! Refused: `read_only` (there is no image root filesystem to make read-only). Accepted and
//! **ignored** (they are stored and shown by the API, and the docker runtime applies them):
//! `image`, `tty`, `open_stdin`, `init`, `hosts`, `dns_config`, `sysctls`, `capability_add`,
//! `capability_drop`, `ulimits`, `oom_score_adj`, `privileges` (SELinux, seccomp, AppArmor,
//! no-new-privileges), `isolation`, resource limits and `pids_limit`, and network attachments'
//! `driver_opts`. A task that needs one of these must run on the docker runtime.
//!
//! # Networking
//!
//! Tasks share the node's network namespace: no isolation, no per-task address. (Service names
//! come from swarm-node's routing mesh, which gives each task a resolver address in its
//! environment, `SWARM_RESOLVER`.) [`Runtime::inspect`] reports a running task at `127.0.0.1` (network `None`),
//! which is where the routing mesh reaches it for ingress ports. Swarm network attachments are
//! accepted and only scope those names; use the docker runtime for overlay networks. With no NAT, a **host-mode port** is the target port itself: a published port that
//! differs from its target is rejected (0 means the target port), and `prepare` rejects a port
//! already in use on the node (bound on 0.0.0.0, or published by another task of this runtime;
//! SCTP ports are not checked). A running task's [`TaskInspect::ports`] lists its host-mode
//! ports. The task's program must bind the port itself. For the same reason two tasks of this
//! runtime cannot serve one **ingress target port**: the second is rejected naming the first
//! (run one replica per node, update stop-first, or use the docker runtime).

mod logs;
mod mounts;
mod ports;
mod prepare;
pub mod proto;
mod spawn;
mod supervised;
pub mod supervisor;
mod user;

pub use supervised::SupervisorOptions;
pub use supervisor::{supervise, SupervisorError};

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::objects::task::TaskAddress;
use swarm_core::Id;
use tokio::sync::watch;

pub(crate) use self::logs::now as wall_now;
use self::logs::LogBuffer;
use self::mounts::MountPoints;
use self::ports::PortTable;
use self::prepare::Prepared;
use crate::error::RuntimeError;
use crate::files::{default_stage_root, is_root, supervised_stage_root, Stage, SECRETS_DIR};
use crate::runtime::{
    clip_output, kill_and_wait, stop_and_wait, wait_exit, Capabilities, ExecResult, ExitStatus,
    LogLine, LogOptions, LogRecords, LogStream, RecoveredTask, Runtime, RuntimeState, TaskConfig,
    TaskInspect, MAX_EXEC_OUTPUT,
};

/// Docker's default `PATH` for containers.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const OPTIONS: &[&str] = &["namespaces"];

/// How to build a [`ProcessRuntime`].
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    /// Give each task private mount and UTS namespaces (needs root). Default: whether the agent
    /// runs as root.
    pub namespaces: bool,
    /// Where task files are staged; must be (or, as root, becomes) a tmpfs. Default: a fresh
    /// directory under /dev/shm, deleted when the runtime is dropped.
    pub stage_dir: Option<PathBuf>,
    /// Where volumes live: `<volumes_dir>/<name>/_data` for a named volume (kept when its tasks
    /// are gone), `<volumes_dir>/_anonymous/<task id>-<mount index>` for an anonymous one
    /// (removed with its task). Default: none, and volume mounts are rejected.
    pub volumes_dir: Option<PathBuf>,
    /// Run each task under its own supervisor process, so that tasks outlive the runtime (and
    /// the daemon) and a restarted runtime adopts them in [`Runtime::recover`]. Default: none,
    /// tasks are children of the runtime and die with it.
    pub supervisor: Option<SupervisorOptions>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            namespaces: is_root(),
            stage_dir: None,
            volumes_dir: None,
            supervisor: None,
        }
    }
}

#[derive(Debug)]
struct ProcTask {
    prep: Arc<Prepared>,
    /// The node the task belongs to (`recover` lists one node's tasks).
    node: Id,
    state: RuntimeState,
    pid: u32,
    exit_tx: watch::Sender<Option<ExitStatus>>,
    /// Output of an unsupervised task (a supervised one's is kept by its supervisor).
    logs: LogBuffer,
    /// The supervisor's socket, once a supervised task started.
    socket: Option<PathBuf>,
    /// Why the exit could not be observed (its supervisor vanished without reporting it).
    exit_unknown: Option<String>,
}

struct Inner {
    stage: Stage,
    namespaces: bool,
    supervisor: Option<SupervisorOptions>,
    volumes_dir: Option<PathBuf>,
    tasks: Mutex<HashMap<Id, ProcTask>>,
    /// Mount points this runtime created on the host, with how many tasks use each.
    mountpoints: Mutex<MountPoints>,
    /// Host-mode ports published by prepared and running tasks.
    ports: Mutex<PortTable>,
}

/// The local-process runtime.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("stage", &self.inner.stage.root())
            .field("namespaces", &self.inner.namespaces)
            .field("volumes_dir", &self.inner.volumes_dir)
            .finish()
    }
}

impl ProcessRuntime {
    /// A runtime with default options (namespaces when root, stage under /dev/shm).
    pub fn new() -> Result<ProcessRuntime, RuntimeError> {
        ProcessRuntime::with_options(ProcessOptions::default())
    }

    /// A runtime with the given options.
    pub fn with_options(opts: ProcessOptions) -> Result<ProcessRuntime, RuntimeError> {
        if opts.namespaces && !is_root() {
            return Err(RuntimeError::invalid(
                "private mount namespaces need root; run the agent as root or disable namespaces",
            ));
        }
        if let Some(sup) = &opts.supervisor {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&sup.dir)
                .map_err(|e| RuntimeError::io(format!("creating {}", sup.dir.display()), e))?;
            std::fs::set_permissions(&sup.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| RuntimeError::io(format!("chmod {}", sup.dir.display()), e))?;
        }
        // Supervised tasks outlive the runtime, so their stage root must be found again by the
        // next run (and is swept of dead tasks' directories then, in `recover`).
        let persistent = opts.supervisor.is_some();
        let root = match (opts.stage_dir, &opts.supervisor) {
            (Some(dir), _) => dir,
            (None, Some(sup)) => supervised_stage_root(&sup.dir),
            (None, None) => default_stage_root("process"),
        };
        // Only a root agent without namespaces runs tasks as other users that reach their files
        // through host paths; everyone else gets owner-only (0700) stage directories.
        let mut stage = Stage::create(root, !opts.namespaces && is_root())?;
        if persistent {
            stage = stage.persistent();
        }
        if opts.namespaces {
            std::fs::create_dir_all(SECRETS_DIR)
                .map_err(|e| RuntimeError::io(format!("creating {SECRETS_DIR}"), e))?;
        }
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                stage,
                namespaces: opts.namespaces,
                supervisor: opts.supervisor,
                volumes_dir: opts.volumes_dir,
                tasks: Mutex::new(HashMap::new()),
                mountpoints: Mutex::new(MountPoints::default()),
                ports: Mutex::new(PortTable::default()),
            }),
        })
    }

    /// Whether tasks get private namespaces by default.
    pub fn namespaces(&self) -> bool {
        self.inner.namespaces
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Id, ProcTask>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mountpoints(&self) -> MutexGuard<'_, MountPoints> {
        self.mountpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ports(&self) -> MutexGuard<'_, PortTable> {
        self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frees what a task holds only while it may run: staged files, mount points, host ports.
    fn release(&self, task: &Id, prep: &Prepared) {
        self.stage.unstage(task);
        self.mountpoints().release(&prep.mountpoints);
        self.ports().release(task);
    }

    /// Marks the task exited, deletes its files and wakes waiters (in that order).
    fn finish(&self, task: &Id, status: ExitStatus) {
        let mut map = self.lock();
        let Some(t) = map.get_mut(task) else { return };
        if matches!(t.state, RuntimeState::Exited(_)) {
            return;
        }
        t.state = RuntimeState::Exited(status);
        self.release(task, &t.prep);
        t.exit_tx.send_replace(Some(status));
    }

    /// Marks the task exited with an exit nobody observed: `wait` reports why instead of a code.
    fn finish_unknown(&self, task: &Id, reason: String) {
        if let Some(t) = self.lock().get_mut(task) {
            if !matches!(t.state, RuntimeState::Exited(_)) {
                t.exit_unknown = Some(reason);
            }
        }
        self.finish(task, ExitStatus::signal(libc::SIGKILL));
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn capabilities(&self) -> Capabilities {
        // Tasks are host processes: no network namespace of their own.
        Capabilities::default().with_host_network(true)
    }

    async fn prepare(&self, config: &TaskConfig) -> Result<(), RuntimeError> {
        if self.inner.lock().contains_key(&config.task_id) {
            return Err(RuntimeError::AlreadyPrepared {
                task: config.task_id,
            });
        }
        let prep = self.build(config)?;
        let (exit_tx, _) = watch::channel(None);
        self.inner.lock().insert(
            config.task_id,
            ProcTask {
                prep: Arc::new(prep),
                node: config.node_id,
                state: RuntimeState::Created,
                pid: 0,
                exit_tx,
                logs: LogBuffer::default(),
                socket: None,
                exit_unknown: None,
            },
        );
        Ok(())
    }

    async fn start(&self, task: &Id) -> Result<(), RuntimeError> {
        let (prep, logs, node) = {
            let map = self.inner.lock();
            let t = map
                .get(task)
                .ok_or(RuntimeError::NotFound { task: *task })?;
            if t.state != RuntimeState::Created {
                return Err(RuntimeError::AlreadyStarted { task: *task });
            }
            (t.prep.clone(), t.logs.clone(), t.node)
        };
        if self.inner.supervisor.is_some() {
            return self.start_supervised(task, &prep, node).await;
        }
        let setup = Arc::new(self.setup(&prep, None)?);
        let mut child = match spawn::command(&prep.program, &prep.args, &prep.env, setup).spawn() {
            Ok(c) => c,
            Err(e) => {
                self.inner.finish(task, ExitStatus::code(127));
                return Err(RuntimeError::StartFailed {
                    task: *task,
                    reason: e.to_string(),
                });
            }
        };
        let pid = child.id().unwrap_or(0);
        if let Some(out) = child.stdout.take() {
            logs.spawn_reader(LogStream::Stdout, out);
        }
        if let Some(err) = child.stderr.take() {
            logs.spawn_reader(LogStream::Stderr, err);
        }
        {
            let mut map = self.inner.lock();
            if let Some(t) = map.get_mut(task) {
                t.state = RuntimeState::Running;
                t.pid = pid;
            }
        }
        let inner = self.inner.clone();
        let id = *task;
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => spawn::exit_status(s),
                Err(_) => ExitStatus::code(-1),
            };
            // Like a container: when the main process ends, everything it started ends too.
            spawn::kill_group(pid, libc::SIGKILL);
            inner.finish(&id, status);
        });
        Ok(())
    }

    async fn wait(&self, task: &Id) -> Result<ExitStatus, RuntimeError> {
        let mut rx = {
            let map = self.inner.lock();
            let t = map
                .get(task)
                .ok_or(RuntimeError::NotFound { task: *task })?;
            t.exit_tx.subscribe()
        };
        // A dropped record: the task was removed, which kills it.
        let Some(s) = wait_exit(&mut rx).await else {
            return Ok(ExitStatus::signal(libc::SIGKILL));
        };
        let map = self.inner.lock();
        if let Some(reason) = map.get(task).and_then(|t| t.exit_unknown.clone()) {
            return Err(RuntimeError::ExitUnknown {
                task: *task,
                reason,
            });
        }
        Ok(s)
    }

    async fn shutdown(&self, task: &Id) -> Result<(), RuntimeError> {
        let (pid, sig, grace, mut rx, socket) = {
            let map = self.inner.lock();
            let Some(t) = map.get(task) else {
                return Ok(());
            };
            match t.state {
                RuntimeState::Exited(_) => return Ok(()),
                RuntimeState::Created => {
                    drop(map);
                    self.inner.finish(task, ExitStatus::code(0));
                    return Ok(());
                }
                RuntimeState::Running => (
                    t.pid,
                    t.prep.stop_signal,
                    t.prep.grace,
                    t.exit_tx.subscribe(),
                    t.socket.clone(),
                ),
            }
        };
        if let Some(socket) = socket {
            return self.stop_supervised(task, &socket, sig, grace).await;
        }
        let signal = async { spawn::kill_group(pid, sig) };
        let kill = async { spawn::kill_group(pid, libc::SIGKILL) };
        stop_and_wait(task, &mut rx, signal, grace, kill).await
    }

    async fn remove(&self, task: &Id) -> Result<(), RuntimeError> {
        let (running, socket) = {
            let map = self.inner.lock();
            match map.get(task) {
                None => return Ok(()),
                Some(t) if t.state == RuntimeState::Running => {
                    (Some((t.pid, t.exit_tx.subscribe())), t.socket.clone())
                }
                Some(t) => (None, t.socket.clone()),
            }
        };
        if let Some(socket) = socket {
            if running.is_some() {
                self.stop_supervised(task, &socket, libc::SIGKILL, Duration::ZERO)
                    .await?;
            }
            Self::collect(&socket).await;
        } else if let Some((pid, mut rx)) = running {
            let kill = async { spawn::kill_group(pid, libc::SIGKILL) };
            kill_and_wait(task, &mut rx, kill).await?;
        }
        self.inner.finish(task, ExitStatus::signal(libc::SIGKILL));
        if let Some(t) = self.inner.lock().remove(task) {
            t.prep.remove_volumes();
        }
        Ok(())
    }

    async fn inspect(&self, task: &Id) -> Result<TaskInspect, RuntimeError> {
        let map = self.inner.lock();
        let t = map
            .get(task)
            .ok_or(RuntimeError::NotFound { task: *task })?;
        let staged_files = match t.state {
            RuntimeState::Exited(_) => Vec::new(),
            _ => t.prep.staged.files.iter().map(|f| f.host.clone()).collect(),
        };
        // Tasks run on the node's own network: reachable on loopback, ports bound as they are.
        let (addresses, ports) = match t.state {
            RuntimeState::Running => (
                vec![TaskAddress {
                    network_id: None,
                    addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                }],
                t.prep.host_ports.clone(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        Ok(TaskInspect {
            state: t.state,
            container_id: format!("process:{task}"),
            pid: t.pid,
            staged_files,
            image_healthcheck: None,
            addresses,
            ports,
        })
    }

    async fn exec(
        &self,
        task: &Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let (prep, pid) = {
            let map = self.inner.lock();
            let t = map
                .get(task)
                .ok_or(RuntimeError::NotFound { task: *task })?;
            if t.state != RuntimeState::Running {
                return Err(RuntimeError::NotRunning { task: *task });
            }
            (t.prep.clone(), t.pid)
        };
        let Some((prog, args)) = cmd.split_first() else {
            return Err(RuntimeError::invalid("exec needs a command"));
        };
        let program = match spawn::find_program(prog, &prep.path_var) {
            Ok(p) => p,
            Err(e) => {
                return Ok(ExecResult {
                    exit_code: 127,
                    output: e.to_string(),
                })
            }
        };
        let setup = Arc::new(self.setup(&prep, Some(pid))?);
        let mut child = spawn::command(&program, args, &prep.env, setup)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RuntimeError::io(format!("exec {prog:?}"), e))?;
        let child_pid = child.id().unwrap_or(0);
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let run = async {
            let output = spawn::read_both(out, err, MAX_EXEC_OUTPUT).await;
            let status = child.wait().await;
            (output, status)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok((output, status)) => {
                let status = status.map_err(|e| RuntimeError::io("waiting for exec", e))?;
                Ok(ExecResult {
                    exit_code: spawn::exit_status(status).code,
                    output: clip_output(&output),
                })
            }
            Err(_) => {
                spawn::kill_group(child_pid, libc::SIGKILL);
                Err(RuntimeError::ExecTimeout { timeout })
            }
        }
    }

    async fn logs(&self, task: &Id, tail: Option<usize>) -> Result<Vec<LogLine>, RuntimeError> {
        let socket = {
            let map = self.inner.lock();
            let t = map
                .get(task)
                .ok_or(RuntimeError::NotFound { task: *task })?;
            match &t.socket {
                None => return Ok(t.logs.tail(tail)),
                Some(s) => s.clone(),
            }
        };
        Self::logs_supervised(&socket, tail).await
    }

    async fn log_stream(&self, task: &Id, opts: LogOptions) -> Result<LogRecords, RuntimeError> {
        let socket = {
            let map = self.inner.lock();
            let t = map
                .get(task)
                .ok_or(RuntimeError::NotFound { task: *task })?;
            match &t.socket {
                None => return Ok(t.logs.stream(opts)),
                Some(s) => s.clone(),
            }
        };
        Self::log_stream_supervised(&socket, opts).await
    }

    async fn recover(&self, node: &Id) -> Result<Vec<RecoveredTask>, RuntimeError> {
        self.adopt(node).await?;
        let map = self.inner.lock();
        let mut out: Vec<RecoveredTask> = map
            .iter()
            .filter(|(_, t)| t.node == *node)
            .map(|(id, t)| RecoveredTask {
                task: *id,
                state: t.state,
            })
            .collect();
        out.sort_by_key(|r| r.task);
        Ok(out)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            // Supervised tasks outlive the runtime: the next one adopts them and what they hold.
            return;
        }
        let map = self.tasks.get_mut().unwrap_or_else(|e| e.into_inner());
        for t in map.values() {
            if t.state == RuntimeState::Running {
                spawn::kill_group(t.pid, libc::SIGKILL);
            }
            t.prep.remove_volumes();
        }
        self.mountpoints
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .remove_all();
    }
}
