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
//! - Runtime option `swarm.runtime.docker.network` sets the network mode (`bridge`, `none`,
//!   `host`, a network name).

mod convert;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use swarm_core::objects::service::HealthConfig;
use swarm_core::Id;
use tokio::sync::watch;

use self::convert::{create_body, engine, image_health, message, status_code};
use crate::error::RuntimeError;
use crate::files::{default_stage_root, is_root, Stage, Staged};
use crate::runtime::{
    clip_output, runtime_options, ExecResult, ExitStatus, LogLine, LogStream, Runtime,
    RuntimeState, TaskConfig, TaskInspect, MAX_EXEC_OUTPUT,
};
use crate::signal::{parse_signal, signal_name};

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

#[derive(Debug)]
struct DockerTask {
    container: String,
    stop_signal: i32,
    grace: Duration,
    user: String,
    state: RuntimeState,
    exit_tx: watch::Sender<Option<ExitStatus>>,
    staged: Staged,
    image_health: Option<HealthConfig>,
}

struct Inner {
    docker: Docker,
    stage: Stage,
    tasks: Mutex<HashMap<Id, DockerTask>>,
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

    /// Marks the task exited, deletes its files, then wakes waiters.
    fn finish(&self, task: &Id, status: ExitStatus) {
        let mut map = self.lock();
        let Some(t) = map.get_mut(task) else { return };
        if matches!(t.state, RuntimeState::Exited(_)) {
            return;
        }
        t.state = RuntimeState::Exited(status);
        self.stage.unstage(task);
        t.exit_tx.send_replace(Some(status));
    }

    /// Waits for the container to stop, reads its exit code, cleans up.
    async fn watch_exit(self: Arc<Self>, task: Id, container: String) {
        let opts = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut stream = self.docker.wait_container(&container, Some(opts));
        let _ = stream.next().await;
        let status = match self.docker.inspect_container(&container, None).await {
            Ok(i) => {
                let code = i.state.and_then(|s| s.exit_code).unwrap_or(-1);
                if code > 128 && code < 128 + 65 {
                    ExitStatus {
                        code,
                        signal: i32::try_from(code - 128).ok(),
                    }
                } else {
                    ExitStatus::code(code)
                }
            }
            Err(_) => ExitStatus::signal(libc::SIGKILL),
        };
        self.finish(&task, status);
    }
}

impl DockerRuntime {
    /// Connects to the engine and negotiates the API version.
    pub async fn connect(opts: DockerOptions) -> Result<DockerRuntime, RuntimeError> {
        let socket = opts.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
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
                docker,
                stage,
                tasks: Mutex::new(HashMap::new()),
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

    async fn create(&self, config: &TaskConfig) -> Result<DockerTask, RuntimeError> {
        let spec = &config.container;
        let opts = runtime_options(&spec.labels, "docker", OPTIONS)?;
        let stop_signal = parse_signal(&spec.stop_signal)?;
        if spec.image.is_empty() {
            return Err(RuntimeError::invalid(
                "the docker runtime needs an image; give the service one",
            ));
        }
        let image = match self.inner.docker.inspect_image(&spec.image).await {
            Ok(i) => i,
            Err(e) if status_code(&e) == Some(404) => {
                return Err(RuntimeError::ImageNotFound {
                    image: spec.image.clone(),
                    reason: message(&e),
                })
            }
            Err(e) => return Err(engine("inspect image", e)),
        };
        let image_health = image_health(image.config.and_then(|c| c.healthcheck));
        let staged = self.inner.stage.stage(config, is_root())?;
        let body = create_body(config, &staged, stop_signal, opts.get("network").cloned());
        let create = CreateContainerOptionsBuilder::default()
            .name(&config.task_name)
            .build();
        let created = match self.inner.docker.create_container(Some(create), body).await {
            Ok(c) => c,
            Err(e) => {
                self.inner.stage.unstage(&config.task_id);
                return Err(match status_code(&e) {
                    Some(404) => RuntimeError::ImageNotFound {
                        image: spec.image.clone(),
                        reason: message(&e),
                    },
                    Some(400) => RuntimeError::invalid(message(&e)),
                    _ => engine("create container", e),
                });
            }
        };
        let (exit_tx, _) = watch::channel(None);
        Ok(DockerTask {
            container: created.id,
            stop_signal,
            grace: spec.effective_stop_grace_period(),
            user: spec.user.clone(),
            state: RuntimeState::Created,
            exit_tx,
            staged,
            image_health,
        })
    }

    fn get<R>(&self, task: &Id, f: impl FnOnce(&DockerTask) -> R) -> Result<R, RuntimeError> {
        self.inner
            .lock()
            .get(task)
            .map(f)
            .ok_or(RuntimeError::NotFound { task: *task })
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
        if self.inner.lock().contains_key(&config.task_id) {
            return Err(RuntimeError::AlreadyPrepared {
                task: config.task_id,
            });
        }
        let t = self.create(config).await?;
        self.inner.lock().insert(config.task_id, t);
        Ok(())
    }

    async fn start(&self, task: &Id) -> Result<(), RuntimeError> {
        let (container, state) = self.get(task, |t| (t.container.clone(), t.state))?;
        if state != RuntimeState::Created {
            return Err(RuntimeError::AlreadyStarted { task: *task });
        }
        if let Err(e) = self.inner.docker.start_container(&container, None).await {
            self.inner.finish(task, ExitStatus::code(127));
            return Err(RuntimeError::StartFailed {
                task: *task,
                reason: message(&e),
            });
        }
        if let Some(t) = self.inner.lock().get_mut(task) {
            if t.state == RuntimeState::Created {
                t.state = RuntimeState::Running;
            }
        }
        tokio::spawn(self.inner.clone().watch_exit(*task, container));
        Ok(())
    }

    async fn wait(&self, task: &Id) -> Result<ExitStatus, RuntimeError> {
        let mut rx = self.get(task, |t| t.exit_tx.subscribe())?;
        loop {
            if let Some(s) = *rx.borrow_and_update() {
                return Ok(s);
            }
            if rx.changed().await.is_err() {
                return Ok(ExitStatus::signal(libc::SIGKILL));
            }
        }
    }

    async fn shutdown(&self, task: &Id) -> Result<(), RuntimeError> {
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
                self.inner.finish(task, ExitStatus::code(0));
                return Ok(());
            }
            RuntimeState::Running => {}
        }
        self.kill(&container, sig).await;
        if tokio::time::timeout(grace, rx.wait_for(|s| s.is_some()))
            .await
            .is_err()
        {
            self.kill(&container, libc::SIGKILL).await;
            let _ = rx.wait_for(|s| s.is_some()).await;
        }
        Ok(())
    }

    async fn remove(&self, task: &Id) -> Result<(), RuntimeError> {
        let Ok(container) = self.get(task, |t| t.container.clone()) else {
            return Ok(());
        };
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .inner
            .docker
            .remove_container(&container, Some(opts))
            .await
        {
            Ok(()) => {}
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => return Err(engine("remove container", e)),
        }
        self.inner.finish(task, ExitStatus::signal(libc::SIGKILL));
        self.inner.lock().remove(task);
        Ok(())
    }

    async fn inspect(&self, task: &Id) -> Result<TaskInspect, RuntimeError> {
        let (container, state, files, image_healthcheck) = self.get(task, |t| {
            let files = match t.state {
                RuntimeState::Exited(_) => Vec::new(),
                _ => t.staged.files.iter().map(|f| f.host.clone()).collect(),
            };
            (t.container.clone(), t.state, files, t.image_health.clone())
        })?;
        let pid = match state {
            RuntimeState::Running => self
                .inner
                .docker
                .inspect_container(&container, None)
                .await
                .ok()
                .and_then(|i| i.state)
                .and_then(|s| s.pid)
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
            _ => 0,
        };
        Ok(TaskInspect {
            state,
            container_id: container,
            pid,
            staged_files: files,
            image_healthcheck,
            addresses: Vec::new(),
            ports: Vec::new(),
        })
    }

    async fn exec(
        &self,
        task: &Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let (container, state, user) =
            self.get(task, |t| (t.container.clone(), t.state, t.user.clone()))?;
        if state != RuntimeState::Running {
            return Err(RuntimeError::NotRunning { task: *task });
        }
        let docker = &self.inner.docker;
        let created = docker
            .create_exec(
                &container,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.to_vec()),
                    user: (!user.is_empty()).then_some(user),
                    ..CreateExecOptions::default()
                },
            )
            .await
            .map_err(|e| match status_code(&e) {
                Some(409) => RuntimeError::NotRunning { task: *task },
                _ => engine("create exec", e),
            })?;
        let run = async {
            let mut out = Vec::new();
            match docker.start_exec(&created.id, None).await {
                Ok(StartExecResults::Attached { mut output, .. }) => {
                    while let Some(Ok(chunk)) = output.next().await {
                        let bytes = chunk.into_bytes();
                        let room = MAX_EXEC_OUTPUT.saturating_sub(out.len());
                        out.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    }
                }
                Ok(StartExecResults::Detached) => {}
                Err(e) => return Err(engine("start exec", e)),
            }
            Ok(out)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(out) => {
                let out = out?;
                let inspect = docker
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| engine("inspect exec", e))?;
                Ok(ExecResult {
                    exit_code: inspect.exit_code.unwrap_or(-1),
                    output: clip_output(&out),
                })
            }
            Err(_) => {
                // The engine cannot cancel an exec; kill its process on the host, as Docker's
                // own health checks do on timeout.
                if let Ok(i) = docker.inspect_exec(&created.id).await {
                    if let Some(pid) = i.pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
                        if pid > 1 {
                            // SAFETY: kill has no memory-safety preconditions.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
                Err(RuntimeError::ExecTimeout { timeout })
            }
        }
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
}
