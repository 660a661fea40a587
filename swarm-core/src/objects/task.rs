//! Tasks: one scheduled unit of a service, with its life-cycle state machine.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use std::net::IpAddr;

use crate::id::Id;
use crate::meta::{Annotations, Meta, Version};
use crate::objects::network::Network;
use crate::objects::service::{PortConfig, TaskSpec};
use crate::time::Timestamp;

/// A task.
///
/// `spec` is an `Arc` so that status updates (the store's hottest write) clone a task without copying
/// its spec, and so that the tasks of one service version can share one spec in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Object id.
    pub id: Id,
    /// Store bookkeeping.
    pub meta: Meta,
    /// The owning service.
    pub service_id: Id,
    /// The service's name and labels at creation (for naming and templates).
    pub service_annotations: Annotations,
    /// Replica slot (1..N for replicated, 0..total-1 for replicated jobs, 0 for global).
    pub slot: u64,
    /// The node it is assigned to (`None` until scheduled).
    pub node_id: Option<Id>,
    /// A copy of the service's task template at the time the task was created.
    pub spec: Arc<TaskSpec>,
    /// The service's `spec_version` that `spec` came from.
    pub spec_version: Version,
    /// Observed status.
    pub status: TaskStatus,
    /// The state the orchestrator wants the task to reach.
    pub desired_state: TaskState,
    /// For jobs: the iteration this task belongs to.
    pub job_iteration: Option<Version>,
    /// Secrets assigned to the task when it was dispatched (ids).
    pub assigned_secrets: Vec<Id>,
    /// Configs assigned to the task when it was dispatched (ids).
    pub assigned_configs: Vec<Id>,
    /// The networks the task attaches to, resolved from `spec.networks` when the task was created
    /// (networks cannot change once created, so the copy never goes stale).
    pub networks: Vec<NetworkAttachment>,
    /// The service's published ports (as allocated) when the task was created. The node binds the
    /// host-mode ones; ingress ports are served by the routing mesh from the service's endpoint.
    pub ports: Vec<PortConfig>,
}

/// A task's attachment to a swarm network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// The network object.
    pub network: Arc<Network>,
    /// Extra DNS aliases from the service's attachment config (the service name and the task name
    /// are always aliases).
    pub aliases: Vec<String>,
}

/// One address a running task can be reached at, as its runtime reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAddress {
    /// The swarm network the address is on; `None` for the runtime's own network (the node's
    /// host network for the process runtime, the engine's default bridge for docker).
    pub network_id: Option<Id>,
    /// The address.
    pub addr: IpAddr,
}

/// Task life-cycle states, in the order a task moves through them. A task's observed state never
/// moves backwards (see [`TaskState::can_transition_to`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum TaskState {
    /// Just created by an orchestrator.
    #[default]
    New,
    /// Waiting for the scheduler (or for resources).
    Pending,
    /// Assigned to a node.
    Assigned,
    /// Accepted by the node's agent.
    Accepted,
    /// The agent is preparing it (pulling, creating).
    Preparing,
    /// Prepared, ready to start.
    Ready,
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// Exited successfully.
    Complete,
    /// Stopped on request.
    Shutdown,
    /// Exited with an error.
    Failed,
    /// The node refused it.
    Rejected,
    /// Desired only: the task should be removed.
    Remove,
    /// The node has been down so long the task is given up on.
    Orphaned,
}

impl TaskState {
    /// Every state, in order.
    pub const ALL: [TaskState; 14] = [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Ready,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Remove,
        TaskState::Orphaned,
    ];

    /// Docker's lowercase spelling (`running`, `shutdown`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// Parses Docker's spelling.
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the task has stopped for good (complete or later).
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }

    /// Whether a task in this observed state still occupies its node (assigned up to running).
    pub fn is_active_on_node(self) -> bool {
        (TaskState::Assigned..=TaskState::Running).contains(&self)
    }

    /// Whether an observed state may move from `self` to `next`: never backwards.
    pub fn can_transition_to(self, next: TaskState) -> bool {
        next >= self
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed status of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// When this status was reported.
    pub timestamp: Timestamp,
    /// Observed state.
    pub state: TaskState,
    /// What happened ("started", "finished", ...).
    pub message: String,
    /// Error, if any (`task: non-zero exit (1)`, `no suitable node (...)`).
    pub err: String,
    /// Container or process id, once created.
    pub container_id: String,
    /// Process id, once running.
    pub pid: i64,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// Health as seen by the agent's health checks.
    pub health: Option<Health>,
    /// Where the running task can be reached (reported when it starts).
    pub addresses: Vec<TaskAddress>,
    /// Host-mode ports actually bound on the node (with the port chosen when none was published).
    pub port_status: Vec<PortConfig>,
}

/// Health check result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// Still in the start period or no verdict yet.
    Starting,
    /// Checks pass.
    Healthy,
    /// `retries` consecutive checks failed.
    Unhealthy,
}

impl Task {
    /// Docker's task name: `<service>.<slot>.<task id>` or, for global tasks, `<service>.<node id>.<task id>`.
    pub fn name(&self) -> String {
        task_name(
            &self.service_annotations.name,
            self.slot,
            self.node_id.as_ref(),
            &self.id,
        )
    }

    /// Whether the orchestrator still wants this task to run (desired running or earlier).
    pub fn is_desired_running(&self) -> bool {
        self.desired_state <= TaskState::Running
    }
}

/// Builds a task name (see [`Task::name`]). Global tasks have slot 0 and use the node id instead.
pub fn task_name(service_name: &str, slot: u64, node: Option<&Id>, task: &Id) -> String {
    match (slot, node) {
        (0, Some(node)) => format!("{service_name}.{node}.{task}"),
        _ => format!("{service_name}.{slot}.{task}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_as_swarmkit() {
        let mut sorted = TaskState::ALL;
        sorted.sort();
        assert_eq!(sorted, TaskState::ALL);
        assert!(TaskState::Running.can_transition_to(TaskState::Failed));
        assert!(!TaskState::Running.can_transition_to(TaskState::Starting));
        assert_eq!(TaskState::parse("shutdown"), Some(TaskState::Shutdown));
        assert_eq!(TaskState::parse("bogus"), None);
        assert!(TaskState::Complete.is_terminal());
        assert!(!TaskState::Running.is_terminal());
    }

    #[test]
    fn names() {
        let t = Id::from_u128(9);
        let n = Id::from_u128(7);
        assert_eq!(task_name("web", 3, Some(&n), &t), format!("web.3.{t}"));
        assert_eq!(
            task_name("agent", 0, Some(&n), &t),
            format!("agent.{n}.{t}")
        );
        assert_eq!(task_name("job", 0, None, &t), format!("job.0.{t}"));
    }
}
