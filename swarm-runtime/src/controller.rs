//! One task's lifecycle on the node: the controller the agent runs per task.
//!
//! It walks the task forward through `accepted -> preparing -> ready -> starting -> running` and on
//! to a terminal state (`complete`, `failed`, `shutdown`, `rejected`), calling the [`Runtime`] and
//! reporting every change with Docker's messages (`accepted`, `preparing`, `prepared`, `starting`,
//! `started`, `finished`, `shutdown`) and errors (`task: non-zero exit (1)`). Failures before
//! `starting` reject the task; later ones fail it (SwarmKit's rule). Health checks run here, through
//! [`Runtime::exec`], so every adapter behaves the same. The reported state never goes backwards:
//! `StatusTx` drops any report that would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use swarm_core::objects::task::Health;
use swarm_core::{Id, Task, TaskState, TaskStatus, Timestamp};
use tokio::sync::{mpsc, watch};

use crate::health::{probe_until_unhealthy, HealthTest};
use crate::runtime::{ExitStatus, Runtime, RuntimeState, TaskConfig, TaskInspect};

/// What controllers send to the agent's reporter.
#[derive(Debug)]
pub(crate) enum ReportMsg {
    /// A task's new status.
    Status(Id, TaskStatus),
    /// The task is gone from the node: forget it once its last status is delivered.
    Forget(Id),
}

/// Shared view of every task's latest local status (for [`crate::Agent::task_status`]).
pub(crate) type StatusMap = Arc<Mutex<HashMap<Id, TaskStatus>>>;

/// The wall clock as a [`swarm_core::Clock`]: the default of [`crate::AgentConfig::clock`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WallClock;

impl swarm_core::Clock for WallClock {
    fn now(&self) -> Timestamp {
        now()
    }
}

/// The wall clock as a [`Timestamp`].
pub(crate) fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Resolves once the flag is true (or its sender is gone).
pub(crate) async fn flag_set(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

/// Sends a task's status changes, never backwards.
#[derive(Clone)]
pub(crate) struct StatusTx {
    task: Id,
    current: Arc<Mutex<TaskStatus>>,
    tx: mpsc::UnboundedSender<ReportMsg>,
    map: StatusMap,
    /// Stamps each status sent.
    clock: swarm_core::SharedClock,
}

impl StatusTx {
    pub(crate) fn new(
        task: Id,
        initial: TaskStatus,
        tx: mpsc::UnboundedSender<ReportMsg>,
        map: StatusMap,
        clock: swarm_core::SharedClock,
    ) -> StatusTx {
        StatusTx {
            task,
            current: Arc::new(Mutex::new(initial)),
            tx,
            map,
            clock,
        }
    }

    pub(crate) fn state(&self) -> TaskState {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).state
    }

    /// Applies `f` to a copy of the current status and sends it if its state is not behind.
    fn send(&self, f: impl FnOnce(&mut TaskStatus)) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = cur.clone();
        f(&mut next);
        if !cur.state.can_transition_to(next.state) || *cur == next {
            return;
        }
        next.timestamp = swarm_core::Clock::now(&self.clock);
        *cur = next.clone();
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.task, next.clone());
        let _ = self.tx.send(ReportMsg::Status(self.task, next));
    }

    pub(crate) fn transition(&self, state: TaskState, message: &str) {
        if state <= self.state() {
            return;
        }
        self.send(|s| {
            s.state = state;
            s.message = message.to_string();
        });
    }

    fn terminal(
        &self,
        state: TaskState,
        message: Option<&str>,
        err: String,
        exit: Option<ExitStatus>,
    ) {
        if self.state().is_terminal() {
            return;
        }
        self.send(|s| {
            s.state = state;
            if let Some(m) = message {
                s.message = m.to_string();
            }
            s.err = err;
            if let Some(e) = exit {
                s.exit_code = Some(e.code);
            }
        });
    }

    /// SwarmKit's `fatal`: rejected before `starting`, failed from then on.
    pub(crate) fn fatal(&self, err: String) {
        let state = if self.state() < TaskState::Starting {
            TaskState::Rejected
        } else {
            TaskState::Failed
        };
        self.terminal(state, None, err, None);
    }

    fn health(&self, h: Health) {
        self.send(|s| s.health = Some(h));
    }

    fn forget(&self) {
        let _ = self.tx.send(ReportMsg::Forget(self.task));
    }
}

/// What the agent hands a new controller.
pub(crate) struct Controller {
    pub(crate) task: Arc<Task>,
    pub(crate) config: Result<TaskConfig, String>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) status: StatusTx,
    pub(crate) desired: watch::Receiver<Arc<Task>>,
    pub(crate) removed: watch::Receiver<bool>,
    /// How long a routing-mesh backend keeps running after it is told to stop (see
    /// [`crate::AgentConfig::mesh_drain`]).
    pub(crate) drain: std::time::Duration,
}

impl Controller {
    fn desired(&self) -> TaskState {
        self.desired.borrow().desired_state
    }

    /// Runs the task to a terminal state, then waits until the agent drops it and frees it.
    pub(crate) async fn run(mut self) {
        let mut removed = self.removed.clone();
        let started = {
            let drive = self.drive();
            tokio::pin!(drive);
            tokio::select! {
                started = &mut drive => started,
                _ = flag_set(&mut removed) => true,
            }
        };
        flag_set(&mut removed).await;
        let id = self.task.id;
        if started && !self.status.state().is_terminal() {
            let _ = self.runtime.shutdown(&id).await;
            let exit = self
                .runtime
                .inspect(&id)
                .await
                .ok()
                .and_then(|i| match i.state {
                    RuntimeState::Exited(e) => Some(e),
                    _ => None,
                });
            self.status
                .terminal(TaskState::Shutdown, Some("shutdown"), String::new(), exit);
        }
        if let Err(e) = self.runtime.remove(&id).await {
            tracing::warn!(task = %id, error = %e, "removing the task from the runtime failed");
        }
        self.status.forget();
    }

    /// Drives the task as far as it goes; returns whether the runtime may hold something for it.
    async fn drive(&mut self) -> bool {
        let id = self.task.id;
        // A task the runtime already holds was adopted by `Runtime::recover` (the node's daemon
        // restarted while it ran): carry on from where the runtime has it.
        if let Ok(found) = self.runtime.inspect(&id).await {
            return self.resume(found).await;
        }
        if self.task.status.state >= TaskState::Preparing {
            // Known to the cluster as being worked on, but gone from the runtime.
            self.status.fatal(
                "the task's process is gone: the node's agent restarted while it ran".into(),
            );
            return false;
        }
        self.status.transition(TaskState::Accepted, "accepted");
        if self.desired() > TaskState::Running {
            self.status
                .terminal(TaskState::Shutdown, Some("shutdown"), String::new(), None);
            return false;
        }
        let config = match &self.config {
            Ok(c) => c.clone(),
            Err(msg) => {
                self.status.fatal(msg.clone());
                return false;
            }
        };
        self.status.transition(TaskState::Preparing, "preparing");
        if let Err(e) = self.runtime.prepare(&config).await {
            self.status.fatal(e.to_string());
            return false;
        }
        drop(config);
        self.status.transition(TaskState::Ready, "prepared");
        self.start_when_desired().await
    }

    /// Continues with a task the runtime already held when this controller started.
    async fn resume(&mut self, found: TaskInspect) -> bool {
        match found.state {
            RuntimeState::Created => {
                self.status.transition(TaskState::Accepted, "accepted");
                self.status.transition(TaskState::Preparing, "preparing");
                self.status.transition(TaskState::Ready, "prepared");
                self.start_when_desired().await
            }
            RuntimeState::Running => {
                self.report_running(found);
                self.monitor().await
            }
            RuntimeState::Exited(_) => self.monitor().await,
        }
    }

    /// Reports the task running, with what the runtime knows of it. What the runtime cannot
    /// tell (an adopted task's ports are not re-read) keeps the value the cluster has.
    fn report_running(&self, i: TaskInspect) {
        self.status.send(|s| {
            s.state = TaskState::Running;
            s.message = "started".into();
            s.pid = i64::from(i.pid);
            s.container_id = i.container_id;
            if !i.addresses.is_empty() {
                s.addresses = i.addresses;
            }
            if !i.ports.is_empty() {
                s.port_status = i.ports;
            }
        });
    }

    /// Waits for the desired state to reach `running`, then starts the prepared task and
    /// monitors it.
    async fn start_when_desired(&mut self) -> bool {
        let id = self.task.id;
        loop {
            let d = self.desired();
            if d > TaskState::Running {
                let _ = self.runtime.shutdown(&id).await;
                self.status
                    .terminal(TaskState::Shutdown, Some("shutdown"), String::new(), None);
                return true;
            }
            if d == TaskState::Running {
                break;
            }
            if self.desired.changed().await.is_err() {
                return true;
            }
        }
        self.status.transition(TaskState::Starting, "starting");
        if let Err(e) = self.runtime.start(&id).await {
            self.status.fatal(e.to_string());
            return true;
        }
        match self.runtime.inspect(&id).await {
            Ok(i) => self.report_running(i),
            Err(_) => self.status.send(|s| {
                s.state = TaskState::Running;
                s.message = "started".into();
            }),
        }
        self.monitor().await
    }

    /// Waits for the task to exit, fail its health checks, or be told to stop.
    async fn monitor(&mut self) -> bool {
        let id = self.task.id;
        let health = self.health_probe().await;
        if health.is_some() {
            self.status.health(Health::Starting);
        }
        let runtime = self.runtime.clone();
        let status = self.status.clone();
        let probe = async move {
            match health {
                Some((cfg, cmd)) => {
                    probe_until_unhealthy(runtime, id, cfg, cmd, tokio::time::Instant::now(), |h| {
                        status.health(h)
                    })
                    .await
                }
                None => std::future::pending().await,
            }
        };
        let mut desired = self.desired.clone();
        let stop = async move {
            let _ = desired
                .wait_for(|t| t.desired_state > TaskState::Running)
                .await
                .map(|_| ());
        };
        let runtime = self.runtime.clone();
        tokio::select! {
            exit = runtime.wait(&id) => match exit {
                Ok(e) if e.success() => self.status.terminal(
                    TaskState::Complete, Some("finished"), String::new(), Some(e)),
                Ok(e) => self.status.terminal(
                    TaskState::Failed, None, format!("task: non-zero exit ({})", e.code), Some(e)),
                Err(e) => self.status.fatal(e.to_string()),
            },
            output = probe => {
                let _ = self.runtime.shutdown(&id).await;
                let exit = self.runtime.wait(&id).await.ok();
                let output = output.trim();
                let err = if output.is_empty() {
                    "unhealthy container".to_string()
                } else {
                    format!("unhealthy container: {output}")
                };
                self.status.terminal(TaskState::Failed, None, err, exit);
            }
            _ = stop => {
                if self.is_mesh_backend() && !self.drain.is_zero() {
                    // The routing mesh stopped sending new connections here when the desired
                    // state changed; let the ones in flight finish before the stop signal.
                    tokio::select! {
                        _ = tokio::time::sleep(self.drain) => {}
                        _ = self.runtime.wait(&id) => {}
                    }
                }
                let _ = self.runtime.shutdown(&id).await;
                let exit = self.runtime.wait(&id).await.ok();
                self.status.terminal(TaskState::Shutdown, Some("shutdown"), String::new(), exit);
            }
        }
        true
    }

    /// Whether the routing mesh sends connections to this task (its service publishes ingress
    /// ports).
    fn is_mesh_backend(&self) -> bool {
        self.task
            .ports
            .iter()
            .any(|p| p.publish_mode == swarm_core::objects::service::PublishMode::Ingress)
    }

    /// The probe command and config, if the task has a health check (the spec's, else the
    /// image's).
    async fn health_probe(
        &self,
    ) -> Option<(swarm_core::objects::service::HealthConfig, Vec<String>)> {
        let mut cfg = self.task.spec.container.healthcheck.clone();
        let inherit = match &cfg {
            None => true,
            Some(c) => c.test.is_empty(),
        };
        if inherit {
            let image = self
                .runtime
                .inspect(&self.task.id)
                .await
                .ok()
                .and_then(|i| i.image_healthcheck);
            if let Some(mut image) = image {
                // Spec fields override the image's when set, as in Docker.
                if let Some(spec) = &cfg {
                    image.interval = spec.interval.or(image.interval);
                    image.timeout = spec.timeout.or(image.timeout);
                    image.start_period = spec.start_period.or(image.start_period);
                    if spec.retries != 0 {
                        image.retries = spec.retries;
                    }
                }
                cfg = Some(image);
            }
        }
        let cfg = cfg?;
        match HealthTest::parse(&cfg.test) {
            Ok(HealthTest::Command(cmd)) => Some((cfg, cmd)),
            Ok(HealthTest::Disabled) => None,
            Err(e) => {
                self.status.health(Health::Unhealthy);
                tracing::warn!(task = %self.task.id, error = %e, "invalid health check ignored");
                None
            }
        }
    }
}
