//! The seam between the Docker API layer ([`crate::api`]) and the daemon that runs the swarm.
//!
//! The API layer translates Docker's HTTP requests into store transactions and reads; everything it
//! needs from the running daemon goes through [`Backend`]: whether this node is in a swarm (and
//! unlocked), the store and proposer when it is, `swarm init` / `unlock` / `leave`, task logs, and
//! facts about the host. The daemon ([`crate::daemon`]) implements it; tests may implement it over a
//! plain [`swarm_core::LocalProposer`].
//!
//! Multi-host: [`Backend::join`] takes a validated [`JoinRequest`]; a worker's
//! [`Backend::cluster`] answers [`BackendError::NotAManager`] while [`Backend::local_node`] (for
//! `/info` and `/_ping`) and [`Backend::leave`] still work; [`leave_check`] words a manager's
//! refused leave as Docker does; a manager hands the API its raft membership through
//! [`ClusterAccess::raft`] ([`RaftView`]) for `node ls`, demotion and removal checks. Join-token
//! rotation, `CAConfig.ForceRotate` and `NodeCertExpiry` are cluster-object changes made through
//! the proposer (the manager's CA loop reacts to them), like autolock below.
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
    /// The raft membership as the local raft instance sees it (leader, reachability, quorum
    /// checks). `None` on a single-host daemon or the test double: the store's
    /// `Node.manager_status` is used instead (`docker node ls`, demotion checks).
    pub raft: Option<Arc<dyn RaftView>>,
    /// Where the control layer draws object ids and generated secret bytes from (the daemon's
    /// [`crate::config::DaemonConfig::entropy`]).
    pub entropy: swarm_core::Entropy,
}

/// One raft member as the local raft instance sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftMember {
    /// The raft member id.
    pub raft_id: u64,
    /// The swarm node id recorded for this member (`None` while unknown, e.g. just joined).
    pub node_id: Option<Id>,
    /// The address other managers reach it on (`host:port`).
    pub addr: String,
    /// Whether it answers raft messages (the leader's view; on a follower, its best knowledge).
    pub reachable: bool,
    /// Whether it is the current leader.
    pub leader: bool,
}

/// Raft facts for reads and checks, implemented by the daemon over swarm-raft. `docker node ls` /
/// `inspect` show `ManagerStatus { Leader, Reachability, Addr }` from [`RaftView::members`];
/// `docker node demote` asks [`RaftView::can_remove`] before committing the role change;
/// `docker node rm` refuses a node that is still a member.
pub trait RaftView: Send + Sync {
    /// Every current member (voters and learners).
    fn members(&self) -> Vec<RaftMember>;
    /// `Ok(())` when removing member `raft_id` keeps a quorum of reachable managers; otherwise
    /// the reason, e.g. `this would result in a loss of quorum` (the API answers
    /// `can't remove member from the raft: <reason>`, as SwarmKit does).
    fn can_remove(&self, raft_id: u64) -> Result<(), String>;
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
            .field("raft", &self.raft.is_some())
            .finish_non_exhaustive()
    }
}

/// Docker's default swarm port, added to `ListenAddr` / `AdvertiseAddr` / `RemoteAddrs` that name
/// only a host.
pub const DEFAULT_SWARM_PORT: u16 = 2377;
/// Docker's default `ListenAddr`.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:2377";

/// Parameters of `docker swarm init` the daemon acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitRequest {
    /// `--autolock`: start with autolock on.
    pub autolock: bool,
    /// `--force-new-cluster`: restart from the local state as a single-manager cluster.
    pub force_new_cluster: bool,
    /// `--advertise-addr` as `host:port` (port 2377 added when only a host was given), or `""`
    /// when neither it nor a non-wildcard `--listen-addr` was given: the daemon picks (Docker
    /// picks the address of the default route's interface).
    pub advertise_addr: String,
    /// `--listen-addr` as `host:port` ([`DEFAULT_LISTEN_ADDR`] when not given; port 2377 added
    /// when only a host was given): where the manager's swarm port (raft, CA, dispatcher) binds.
    pub listen_addr: String,
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

/// Parameters of `docker swarm join` (`POST /swarm/join`), validated by the API layer: addresses
/// are `host:port` with the port in 1..=65535 (port 2377 added when only a host was given).
/// The join token is a secret: redacted in Debug, wiped on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct JoinRequest {
    /// `--listen-addr` ([`DEFAULT_LISTEN_ADDR`] when not given): where this node's swarm port
    /// binds if it joins as a manager.
    pub listen_addr: String,
    /// `--advertise-addr`, or `""`: the daemon derives it (from a non-wildcard `listen_addr`, or
    /// the local address used to reach the first remote manager).
    pub advertise_addr: String,
    /// `--data-path-addr`, if given (validated as an IP address).
    pub data_path_addr: Option<String>,
    /// Managers to contact (`HOST:PORT` of `docker swarm join --token T HOST:PORT`), at least one.
    pub remote_addrs: Vec<String>,
    /// `SWMTKN-1-...`: decides worker or manager. Checked by the managers, not here (only that it
    /// is not empty).
    pub join_token: zeroize::Zeroizing<String>,
    /// `--availability` of this node (`active`, `pause`, `drain`), if given.
    pub availability: Option<swarm_core::objects::node::NodeAvailability>,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("listen_addr", &self.listen_addr)
            .field("advertise_addr", &self.advertise_addr)
            .field("data_path_addr", &self.data_path_addr)
            .field("remote_addrs", &self.remote_addrs)
            .field("join_token", &"<redacted>")
            .field("availability", &self.availability)
            .finish()
    }
}

/// Docker's `LocalNodeState` (`/info` → `Swarm.LocalNodeState`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocalNodeState {
    /// Not part of a swarm.
    #[default]
    Inactive,
    /// Joining: the join was accepted but the node is not serving yet (or is reconnecting).
    Pending,
    /// Part of a swarm and serving.
    Active,
    /// The node failed to run (see [`LocalNodeInfo::error`]).
    Error,
    /// Autolock is on and the node waits for `swarm unlock`.
    Locked,
}

/// This node's own view for `/info` (available on workers too, unlike [`Backend::cluster`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalNodeInfo {
    /// This node's id once it has one.
    pub node_id: Option<Id>,
    /// The address this node advertises (host only, as Docker shows `NodeAddr`), or `""`.
    pub node_addr: String,
    /// Local state.
    pub state: LocalNodeState,
    /// Whether this node is a manager serving the control API (Docker's `ControlAvailable`).
    pub control_available: bool,
    /// The last error of the swarm component (`""` when none).
    pub error: String,
    /// Managers this node knows of: (node id, `host:port`). Empty means "unknown": on a manager
    /// the API then lists the managers of the store.
    pub remote_managers: Vec<(Id, String)>,
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
    /// `swarm leave` without `--force` on a manager whose departure loses the raft quorum:
    /// `remaining` reachable managers would be left out of `total`. [`leave_check`] decides it.
    #[error("You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves {remaining} managers out of {total}. Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.")]
    LeaveLosesQuorum {
        /// Reachable managers left after this one leaves.
        remaining: usize,
        /// Managers (reachable and unreachable) now.
        total: usize,
    },
    /// `swarm leave` without `--force` on any other manager (Docker refuses it too: demote first).
    #[error("You are attempting to leave the swarm on a node that is participating as a manager. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.")]
    LeaveManager,
    /// `swarm leave` without `--force` on a locked node.
    #[error("Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.")]
    LeaveLocked,
    /// A cluster read or write on a worker (Docker's 503).
    #[error("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.")]
    NotAManager,
    /// A request the API validated but this backend cannot do (e.g. `swarm join` on a backend
    /// without networking). 501.
    #[error("{0} is not supported by this backend")]
    Unsupported(&'static str),
    /// `swarm join` did not finish within the daemon's wait; the node keeps trying (503).
    #[error("Timeout was reached before node joined. The attempt to join the swarm will continue in the background. Use the \"docker info\" command to see the current swarm status of your node.")]
    JoinPending,
    /// The join was refused or failed (bad token, unreachable manager, CA mismatch): Docker
    /// answers these with the manager's message, status 500.
    #[error("{0}")]
    JoinFailed(String),
    /// The task is unknown to this node's runtime.
    #[error("task {0} has no logs on this node")]
    NoLogs(Id),
    /// The change was not committed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// `swarm init` could not bind its listen address (taken, or not an address of this host):
    /// the init failed and left no state behind. Docker's wording (SwarmKit's manager wraps the
    /// listener's error the same way), status 500.
    #[error("manager stopped: failed to listen on remote API address: {0}")]
    ListenFailed(String),
    /// The daemon failed (storage, runtime); the message says what to look at.
    #[error("{0}")]
    Internal(String),
}

/// Docker's rule for `swarm leave` without `--force` on an active manager, from the raft
/// membership: `reachable` and `unreachable` managers, `self_reachable` whether this node counts
/// among the reachable ones. The last manager gets [`BackendError::LeaveRefused`], a departure
/// that loses the quorum [`BackendError::LeaveLosesQuorum`], any other manager
/// [`BackendError::LeaveManager`] (Docker refuses a manager's leave without `--force` in every
/// case; demote it first). Never `Ok`: a worker's leave needs no check.
pub fn leave_check(reachable: usize, unreachable: usize, self_reachable: bool) -> BackendError {
    // moby: removingManagerCausesLossOfQuorum is `reachable-2 <= unreachable`.
    let loses_quorum = reachable < 2 || reachable - 2 <= unreachable;
    if self_reachable && loses_quorum {
        if reachable == 1 && unreachable == 0 {
            return BackendError::LeaveRefused;
        }
        return BackendError::LeaveLosesQuorum {
            remaining: reachable.saturating_sub(1),
            total: reachable + unreachable,
        };
    }
    BackendError::LeaveManager
}

/// What the API layer needs from the running daemon. See the module docs.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Current state; cheap.
    fn swarm_state(&self) -> SwarmState;
    /// Store and proposer, or [`BackendError::NotInSwarm`] / [`BackendError::Locked`], or on a
    /// worker [`BackendError::NotAManager`] (every cluster read and write answers it).
    fn cluster(&self) -> Result<ClusterAccess, BackendError>;
    /// `docker swarm init`: creates the cluster with this node as its only manager (and worker).
    /// Returns the node id.
    async fn init(&self, req: InitRequest) -> Result<Id, BackendError>;
    /// `docker swarm join`: joins the swarm the request's managers run, as a worker or a manager
    /// (the token decides). Returns once the node has its certificate and is serving (Docker
    /// returns after the node is active, or after a timeout with the node still pending). Errors:
    /// [`BackendError::AlreadyInSwarm`] when in a swarm (active or locked),
    /// [`BackendError::JoinFailed`] when the managers refuse or cannot be reached. Default:
    /// [`BackendError::Unsupported`].
    async fn join(&self, req: JoinRequest) -> Result<(), BackendError> {
        let _ = req;
        Err(BackendError::Unsupported("joining a swarm"))
    }
    /// `docker swarm unlock`: gives the unlock key after a restart with autolock on.
    async fn unlock(&self, key: &str) -> Result<(), BackendError>;
    /// `docker swarm leave`. Without `force`: a locked node answers
    /// [`BackendError::LeaveLocked`], a manager [`leave_check`]'s refusal; with `force` a node
    /// leaves whatever its role.
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
    /// This node's own view for `/info` (works on workers). Default: from [`Backend::swarm_state`]
    /// and [`Backend::info`], as a single-host daemon is: active means a manager with control
    /// available; no address, no remote managers (the API lists the store's managers).
    fn local_node(&self) -> LocalNodeInfo {
        let state = match self.swarm_state() {
            SwarmState::Inactive => LocalNodeState::Inactive,
            SwarmState::Locked => LocalNodeState::Locked,
            SwarmState::Active => LocalNodeState::Active,
        };
        LocalNodeInfo {
            node_id: self.info().node_id,
            node_addr: String::new(),
            state,
            control_available: state == LocalNodeState::Active,
            error: String::new(),
            remote_managers: Vec::new(),
        }
    }
    /// What the worker's runtime adapter shares with the host (the API shows a service of a
    /// host-network runtime on the host network). Default: an isolated runtime.
    fn runtime_capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_check_follows_moby() {
        assert_eq!(leave_check(1, 0, true), BackendError::LeaveRefused);
        assert_eq!(
            leave_check(2, 1, true),
            BackendError::LeaveLosesQuorum {
                remaining: 1,
                total: 3
            }
        );
        assert_eq!(
            leave_check(2, 0, true),
            BackendError::LeaveLosesQuorum {
                remaining: 1,
                total: 2
            }
        );
        // Five reachable: losing one keeps the quorum, Docker still refuses without --force.
        assert_eq!(leave_check(5, 0, true), BackendError::LeaveManager);
        // This node not counted among the reachable ones: the generic refusal.
        assert_eq!(leave_check(1, 2, false), BackendError::LeaveManager);
        assert!(BackendError::LeaveLosesQuorum {
            remaining: 1,
            total: 3
        }
        .to_string()
        .contains("Removing this node leaves 1 managers out of 3. Without a Raft quorum"));
    }

    #[test]
    fn join_request_debug_redacts_the_token() {
        let req = JoinRequest {
            join_token: zeroize::Zeroizing::new("SWMTKN-1-secret".into()),
            ..Default::default()
        };
        assert!(!format!("{req:?}").contains("secret"));
    }
}
