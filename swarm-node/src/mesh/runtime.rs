//! [`ResolverRuntime`]: a runtime adapter wrapper that gives every task of a runtime whose tasks
//! share the node's network (the process runtime) its own resolver address, in
//! [`super::RESOLVER_ENV`], when the node runs a routing mesh. Every call is forwarded unchanged
//! otherwise; `remove` also stops the task's resolver.
//!
//! A runtime whose tasks have a network namespace of their own (docker) on a node that plumbs
//! them (`--vip-dataplane`, see `plumb.rs`): the task is prepared without its swarm networks and
//! with network mode `none`, linked to the node once started (a failure fails the start), and
//! `inspect` reports the address it was given.
//!
//! Tasks adopted after a daemon restart keep the address they were started with, which no
//! longer answers until they are replaced (the resolver's port is not kept across restarts).

use std::time::Duration;

use async_trait::async_trait;
use swarm_core::Id;
use swarm_runtime::{
    Capabilities, ExecResult, ExitStatus, LogLine, LogOptions, LogRecords, RecoveredTask, Runtime,
    RuntimeError, TaskConfig, TaskInspect,
};

use super::RESOLVER_ENV;
use crate::net::mesh::MeshSlot;

/// The docker runtime's option choosing a task's network mode.
const NETWORK_OPTION: &str = "swarm.runtime.docker.network";

/// See the module docs.
pub struct ResolverRuntime {
    inner: std::sync::Arc<dyn Runtime>,
    mesh: MeshSlot,
}

impl ResolverRuntime {
    /// Wraps `inner`; resolvers come from the mesh in `mesh` when one runs.
    pub fn new(inner: std::sync::Arc<dyn Runtime>, mesh: MeshSlot) -> ResolverRuntime {
        ResolverRuntime { inner, mesh }
    }
}

impl std::fmt::Debug for ResolverRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolverRuntime")
            .field("inner", &self.inner.name())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Runtime for ResolverRuntime {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn prepare(&self, config: &TaskConfig) -> Result<(), RuntimeError> {
        if let Some(mesh) = self
            .mesh
            .get()
            .filter(|m| m.plumbs_tasks() && !config.networks.is_empty())
        {
            let scope: Vec<Id> = config.networks.iter().map(|a| a.network.id).collect();
            let port = match mesh.resolver_for(config.task_id, scope) {
                Ok(addr) => addr.port(),
                Err(e) => {
                    tracing::warn!(task = %config.task_id, error = %e, "no resolver for this task: its names do not resolve");
                    0
                }
            };
            let networks = config.networks.iter().map(|a| a.network.clone()).collect();
            mesh.expect_plumbing(config.task_id, networks, port);
            let mut config = config.clone();
            config.networks.clear();
            config
                .container
                .labels
                .insert(NETWORK_OPTION.to_string(), "none".to_string());
            return self.inner.prepare(&config).await;
        }
        let mesh = self.mesh.get();
        let Some(mesh) = mesh.filter(|_| self.inner.capabilities().host_network) else {
            return self.inner.prepare(config).await;
        };
        let scope: Vec<Id> = config.networks.iter().map(|a| a.network.id).collect();
        match mesh.resolver_for(config.task_id, scope) {
            Ok(addr) => {
                let mut config = config.clone();
                let prefix = format!("{RESOLVER_ENV}=");
                config.container.env.retain(|e| !e.starts_with(&prefix));
                config.container.env.push(format!("{prefix}{addr}"));
                self.inner.prepare(&config).await
            }
            Err(e) => {
                tracing::warn!(task = %config.task_id, error = %e, "no resolver for this task: it starts without {RESOLVER_ENV}");
                self.inner.prepare(config).await
            }
        }
    }

    async fn start(&self, task: &Id) -> Result<(), RuntimeError> {
        self.inner.start(task).await?;
        let Some(mesh) = self.mesh.get().filter(|m| m.expects_plumbing(task)) else {
            return Ok(());
        };
        let pid = self.inner.inspect(task).await?.pid;
        mesh.plumb(*task, pid)
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::StartFailed {
                task: *task,
                reason: format!("linking the container to this node's networks: {e}"),
            })
    }

    async fn wait(&self, task: &Id) -> Result<ExitStatus, RuntimeError> {
        self.inner.wait(task).await
    }

    async fn shutdown(&self, task: &Id) -> Result<(), RuntimeError> {
        self.inner.shutdown(task).await
    }

    async fn remove(&self, task: &Id) -> Result<(), RuntimeError> {
        if let Some(mesh) = self.mesh.get() {
            mesh.release_resolver(task);
            mesh.unplumb(task).await;
        }
        self.inner.remove(task).await
    }

    async fn inspect(&self, task: &Id) -> Result<TaskInspect, RuntimeError> {
        let mut out = self.inner.inspect(task).await?;
        if let Some(addr) = self.mesh.get().and_then(|m| m.plumbed_address(task)) {
            out.addresses = vec![addr];
        }
        Ok(out)
    }

    async fn exec(
        &self,
        task: &Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        self.inner.exec(task, cmd, timeout).await
    }

    async fn logs(&self, task: &Id, tail: Option<usize>) -> Result<Vec<LogLine>, RuntimeError> {
        self.inner.logs(task, tail).await
    }

    async fn log_stream(&self, task: &Id, opts: LogOptions) -> Result<LogRecords, RuntimeError> {
        self.inner.log_stream(task, opts).await
    }

    async fn recover(&self, node: &Id) -> Result<Vec<RecoveredTask>, RuntimeError> {
        self.inner.recover(node).await
    }
}
