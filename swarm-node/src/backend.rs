//! The seam between the Docker API layer ([`crate::api`]) and the daemon that runs the swarm.
//!
//! The API layer translates Docker's HTTP requests into store transactions and reads; everything it
//! needs from the running daemon goes through [`Backend`]: whether this node is in a swarm (and
//! unlocked), the store and proposer when it is, `swarm init` / `unlock` / `leave`, task logs, and
//! facts about the host. The daemon ([`crate::daemon`]) implements it; tests may implement it over a
//! plain [`swarm_core::LocalProposer`].
//!
//! Autolock and unlock-key rotation are not methods here: as in SwarmKit, `docker swarm update
//! --autolock` and `docker swarm unlock-key --rotate` change the cluster object (its
//! `spec.encryption.auto_lock_managers` flag and its `unlock_keys`) through the proposer, and the
//! manager reacts to that change by re-wrapping its keys.

use std::sync::Arc;

use async_trait::async_trait;
use swarm_core::objects::node::Platform;
use swarm_core::{CommitError, Id, Proposer, SharedStore, Task};
use swarm_runtime::{Capabilities, LogLine, LogOptions, LogRecords};
use thiserror::Error;

/// Whether this daemon takes part in a swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwarmState {
    /// Not part of a swarm: only `swarm init` works.
    Inactive,
    /// Part of a swarm, but autolock is on and the unlock key has not been given since the start.
    Locked,
    /// Part of a swarm and serving.
    Active,
}

/// What the API layer may use while the swarm is active.
#[derive(Clone)]
pub struct ClusterAccess {
    /// The replicated store (read it; never write it directly).
    pub store: SharedStore,
    /// Commits changes to the store.
    pub proposer: Arc<dyn Proposer>,
    /// This node's id.
    pub node_id: Id,
    /// Checks that this node can serve a newly published port; `None` checks nothing.
    pub ports: Option<Arc<dyn PortCheck>>,
}

/// Asked before a service starts publishing a port (its own, already published ports are never
/// asked about): whether this node can serve it. The daemon answers from its routing mesh
/// (`crate::mesh`), which tries to bind the port.
pub trait PortCheck: Send + Sync {
    /// `Err(reason)` when `port` (protocol, published port, mode) cannot be published here, e.g.
    /// `address in use` because another program holds it.
    fn check(&self, port: &swarm_core::objects::service::PortConfig) -> Result<(), String>;
}

impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Parameters of `docker swarm init` the daemon acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitRequest {
    /// `--autolock`: start with autolock on.
    pub autolock: bool,
    /// `--force-new-cluster`: restart from the local state as a single-manager cluster.
    pub force_new_cluster: bool,
    /// `--advertise-addr` / `--listen-addr`, kept for display (single host: loopback).
    pub advertise_addr: String,
    /// The cluster spec to start with (the request's `Spec` over the defaults, validated);
    /// `autolock` decides `encryption.auto_lock_managers`.
    pub spec: swarm_core::objects::cluster::ClusterSpec,
    /// `DefaultAddrPool`, `SubnetSize`, `DataPathPort` (validated).
    pub network_bootstrap: swarm_core::objects::cluster::NetworkBootstrap,
    /// `DataPathAddr`, if given: validated as an IP address, otherwise unused (this node has no
    /// data plane, and Docker shows it nowhere in `GET /swarm`).
    pub data_path_addr: Option<String>,
    /// `--availability` of this node (`active`, `pause`, `drain`), if given.
    pub availability: Option<swarm_core::objects::node::NodeAvailability>,
}

/// Facts about this daemon and host, for `/info` and `/version`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonInfo {
    /// Host name.
    pub hostname: String,
    /// OS and architecture (`linux`, `x86_64`).
    pub platform: Platform,
    /// CPUs.
    pub ncpu: u64,
    /// Memory in bytes.
    pub mem_total: u64,
    /// Runtime adapter in use (`process`, `docker`, `sim`).
    pub runtime: String,
    /// swarm version.
    pub version: String,
    /// Data directory.
    pub data_dir: String,
    /// This node's id once it has one.
    pub node_id: Option<Id>,
}

/// Why a daemon-level request failed. Messages are Docker's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    /// Not part of a swarm.
    #[error("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.")]
    NotInSwarm,
    /// Autolock is on and the swarm was not unlocked yet.
    #[error("Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.")]
    Locked,
    /// `swarm init` on a node already in a swarm.
    #[error("This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.")]
    AlreadyInSwarm,
    /// `swarm unlock` with a wrong key.
    #[error("swarm could not be unlocked: invalid key provided")]
    InvalidUnlockKey,
    /// `swarm unlock` with text that is not an unlock key.
    #[error("invalid unlock key: {0}")]
    MalformedUnlockKey(String),
    /// `swarm unlock` on an unlocked swarm.
    #[error("swarm is not locked")]
    NotLocked,
    /// `swarm leave` without `--force` on the last manager.
    #[error("You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.")]
    LeaveRefused,
    /// The task is unknown to this node's runtime.
    #[error("task {0} has no logs on this node")]
    NoLogs(Id),
    /// The change was not committed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The daemon failed (storage, runtime); the message says what to look at.
    #[error("{0}")]
    Internal(String),
}

/// What the API layer needs from the running daemon. See the module docs.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Current state; cheap.
    fn swarm_state(&self) -> SwarmState;
    /// Store and proposer, or [`BackendError::NotInSwarm`] / [`BackendError::Locked`].
    fn cluster(&self) -> Result<ClusterAccess, BackendError>;
    /// `docker swarm init`: creates the cluster with this node as its only manager (and worker).
    /// Returns the node id.
    async fn init(&self, req: InitRequest) -> Result<Id, BackendError>;
    /// `docker swarm unlock`: gives the unlock key after a restart with autolock on.
    async fn unlock(&self, key: &str) -> Result<(), BackendError>;
    /// `docker swarm leave`.
    async fn leave(&self, force: bool) -> Result<(), BackendError>;
    /// Log lines of a task that ran on this node, oldest first (`tail` = only the last N).
    async fn task_logs(
        &self,
        task: &Task,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>, BackendError>;
    /// A task's output with the time each line was written, selected by `opts` (`since`,
    /// `tail`) and with `opts.follow` every later line until the task's output ends; dropping
    /// the stream releases what the runtime held for it. [`BackendError::NoLogs`] when the task
    /// never ran here. Default: [`Backend::task_logs`] once, without times and without follow.
    async fn task_log_stream(
        &self,
        task: &Task,
        opts: LogOptions,
    ) -> Result<LogRecords, BackendError> {
        Ok(opts.stream_untimed(self.task_logs(task, None).await?))
    }
    /// Facts about this daemon.
    fn info(&self) -> DaemonInfo;
    /// What the worker's runtime adapter shares with the host (the API shows a service of a
    /// host-network runtime on the host network). Default: an isolated runtime.
    fn runtime_capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}
