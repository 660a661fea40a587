//! The Worker: swarm-runtime's [`Agent`] over the chosen runtime adapter, connected in-process to
//! the manager's dispatcher.
//!
//! The runtime is made once per daemon ([`make_runtime`]) and outlives workers, so `swarm leave`
//! then `swarm init` reuses it. Workers never need the unlock key; in this single-host daemon the
//! worker starts once the manager is unlocked, because its dispatcher lives in that manager (and
//! after a restart the runtime holds no task to keep running).
//!
//! Restart and adoption: the `process` and `sim` runtimes lose their tasks with the daemon, and the
//! `docker` adapter keys tasks by an in-memory map, so none of them can adopt a task that ran
//! before a restart. The agent then reports such a task `failed` ("the task's process is gone")
//! and the orchestrator restarts it per its restart policy. With `docker`, containers a crashed
//! daemon left behind (label `com.docker.swarm.node.id` = this node) are removed when the worker
//! starts, so they cannot run twice.

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
    /// Starts the agent for `node_id` on `runtime`, connected to `dispatcher`.
    pub async fn start(
        node_id: Id,
        description: NodeDescription,
        runtime: Arc<dyn Runtime>,
        dispatcher: Arc<dyn Dispatcher>,
    ) -> Worker {
        if runtime.name() == "docker" {
            remove_leftover_containers(node_id).await;
        }
        let mut config = AgentConfig::new(node_id, description);
        // The dispatcher is in-process: reconnect quickly after a manager restart or unlock.
        config.reconnect_max = std::time::Duration::from_millis(500);
        let agent = Agent::spawn(config, runtime.clone(), dispatcher);
        Worker { agent, runtime }
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

    /// Stops every task (stop signal, grace period, kill), reports their last status, and ends
    /// the agent.
    pub async fn stop(self) {
        self.agent.stop().await;
    }
}

/// Removes containers of this node that a previous daemon left running (it cannot adopt them).
async fn remove_leftover_containers(node_id: Id) {
    use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
    let Ok(docker) = bollard::Docker::connect_with_unix(
        swarm_runtime::docker::DEFAULT_SOCKET,
        30,
        bollard::API_DEFAULT_VERSION,
    ) else {
        return;
    };
    let mut filters = std::collections::HashMap::new();
    filters.insert(
        "label".to_string(),
        vec![format!("com.docker.swarm.node.id={node_id}")],
    );
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(list) = docker.list_containers(Some(opts)).await else {
        return;
    };
    for c in list {
        let Some(id) = c.id else { continue };
        tracing::info!(container = %id, "removing a container left by a previous run of this node");
        let rm = RemoveContainerOptionsBuilder::default().force(true).build();
        if let Err(e) = docker.remove_container(&id, Some(rm)).await {
            tracing::warn!(container = %id, error = %e, "could not remove a leftover container");
        }
    }
}
