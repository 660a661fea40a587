//! The Worker: swarm-runtime's [`Agent`] over the chosen runtime adapter, connected in-process to
//! the manager's dispatcher.
//!
//! The runtime is made once per daemon ([`make_runtime`]) and outlives workers, so `swarm leave`
//! then `swarm init` reuses it. Workers never need the unlock key; in this single-host daemon the
//! worker starts once the manager is unlocked, because its dispatcher lives in that manager (a
//! docker workload keeps running while the swarm is locked, and is adopted at the unlock).
//!
//! Restart and adoption: when the agent starts it calls `Runtime::recover` for this node. The
//! `docker` runtime adopts the containers a previous run of the node left (label
//! `com.docker.swarm.node.id` = this node): the ones still assigned keep running untouched (no
//! restart, same container), the others are stopped and removed. The `process` runtime does the
//! same for the tasks whose supervisors (`swarm-node supervise`, one per task) outlived the
//! daemon. A runtime that cannot adopt (`sim`; `process` embedded without a supervisor
//! executable) reports nothing, and the agent then
//! reports each such task `failed` ("the task's process is gone") for the orchestrator to
//! replace per its restart policy.
//!
//! Stopping is bounded by the agent (see `swarm_runtime::Agent::stop`).

use std::path::PathBuf;
use std::sync::Arc;

use swarm_core::objects::node::NodeDescription;
use swarm_core::Id;
use swarm_runtime::{
    Agent, AgentConfig, Dispatcher, DockerOptions, DockerRuntime, LogLine, ProcessOptions,
    ProcessRuntime, Runtime, RuntimeError, SimRuntime,
};
use thiserror::Error;

use crate::config::RuntimeKind;

/// Why the worker's runtime could not be made.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The adapter refused to start (no Docker Engine, no tmpfs for secrets, ...).
    #[error("the {runtime} runtime could not start: {source}")]
    Runtime {
        /// Which adapter.
        runtime: &'static str,
        /// Why.
        source: RuntimeError,
    },
}

/// Makes the runtime adapter `kind` (`auto` must be resolved first; it is treated as `process`).
/// The process runtime keeps its volumes in `volumes_dir` ([`crate::config::DaemonConfig::volumes_dir`])
/// and runs each task under a `supervisor` when given one
/// ([`crate::config::DaemonConfig::supervisor_options`]).
pub async fn make_runtime(
    kind: RuntimeKind,
    volumes_dir: PathBuf,
    supervisor: Option<swarm_runtime::process::SupervisorOptions>,
) -> Result<Arc<dyn Runtime>, WorkerError> {
    let process = ProcessOptions {
        volumes_dir: Some(volumes_dir),
        supervisor,
        ..ProcessOptions::default()
    };
    Ok(match kind {
        RuntimeKind::Sim => Arc::new(SimRuntime::new()),
        RuntimeKind::Docker => Arc::new(
            DockerRuntime::connect(DockerOptions::default())
                .await
                .map_err(|source| WorkerError::Runtime {
                    runtime: "docker",
                    source,
                })?,
        ),
        RuntimeKind::Process | RuntimeKind::Auto => {
            Arc::new(ProcessRuntime::with_options(process).map_err(|source| {
                WorkerError::Runtime {
                    runtime: "process",
                    source,
                }
            })?)
        }
    })
}

/// A running worker. See the module docs.
pub struct Worker {
    agent: Agent,
    runtime: Arc<dyn Runtime>,
    /// Serves this node's task logs to the managers (multi-host nodes only).
    logs: Option<crate::net::logs::LogPublisher>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("runtime", &self.runtime.name())
            .field("agent", &self.agent)
            .finish()
    }
}

impl Worker {
    /// Starts the agent for `node_id` on `runtime`, connected to `dispatcher`, stamping task
    /// statuses with `clock`.
    pub async fn start(
        node_id: Id,
        description: NodeDescription,
        runtime: Arc<dyn Runtime>,
        dispatcher: Arc<dyn Dispatcher>,
        clock: swarm_core::SharedClock,
    ) -> Worker {
        let mut config = AgentConfig::new(node_id, description);
        config.clock = clock;
        // The dispatcher is in-process: reconnect quickly after a manager restart or unlock.
        config.reconnect_max = std::time::Duration::from_millis(500);
        let agent = Agent::spawn(config, runtime.clone(), dispatcher);
        Worker {
            agent,
            runtime,
            logs: None,
        }
    }

    /// Serves this node's task logs to the managers `managers` lists (`crate::net::logs`),
    /// calling with `client`: only the tasks this worker's agent controls.
    pub fn serve_logs(
        &mut self,
        node_id: Id,
        client: Arc<swarm_net::rpc::Client>,
        managers: crate::net::logs::ManagerList,
    ) {
        let tasks = self.agent.tasks();
        let source = crate::net::logs::LogSource {
            node_id,
            runtime: Arc::new(self.runtime.clone()),
            owns: Arc::new(move |id: &Id| tasks.holds(id)),
        };
        self.logs = Some(crate::net::logs::LogPublisher::start(
            client, source, managers,
        ));
    }

    /// The agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The runtime adapter.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// A task's output from the runtime (the last `tail` lines, or all it kept).
    pub async fn logs(&self, task: &Id, tail: Option<usize>) -> Result<Vec<LogLine>, RuntimeError> {
        self.runtime.logs(task, tail).await
    }

    /// A task's output with write times, and with `opts.follow` its later lines
    /// ([`Runtime::log_stream`]).
    pub async fn log_stream(
        &self,
        task: &Id,
        opts: swarm_runtime::LogOptions,
    ) -> Result<swarm_runtime::LogRecords, RuntimeError> {
        self.runtime.log_stream(task, opts).await
    }

    /// Stops every task (stop signal, grace period, kill), reports their last status, and ends
    /// the agent.
    pub async fn stop(self) {
        if let Some(logs) = self.logs {
            logs.stop().await;
        }
        self.agent.stop().await;
    }
}
