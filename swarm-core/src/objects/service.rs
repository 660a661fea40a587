//! Services: the desired state operators declare, and the task template every task copies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::meta::{Annotations, Meta, Version};
use crate::objects::node::{Platform, Resources};
use crate::objects::secret::Driver;
use crate::time::Timestamp;

/// A service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Object id.
    pub id: Id,
    /// Store bookkeeping.
    pub meta: Meta,
    /// The current desired spec.
    pub spec: ServiceSpec,
    /// Version of the service at which `spec` was last changed; tasks record it to detect stale specs.
    pub spec_version: Version,
    /// The spec before the last update, kept for rollback.
    pub previous_spec: Option<ServiceSpec>,
    /// `spec_version` of `previous_spec`.
    pub previous_spec_version: Option<Version>,
    /// Published ports as allocated (mirrors `spec.endpoint.ports` once allocated).
    pub endpoint: Endpoint,
    /// Progress of the current or last rolling update.
    pub update_status: Option<UpdateStatus>,
    /// For jobs: which iteration is running.
    pub job_status: Option<JobStatus>,
}

/// The service spec: everything `docker service create` and `update` set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Name (unique) and labels.
    pub annotations: Annotations,
    /// What each task runs.
    pub task: TaskSpec,
    /// Replicated, global or a job.
    pub mode: ServiceMode,
    /// Rolling-update settings.
    pub update: UpdateConfig,
    /// Rollback settings (same defaults as `update`).
    pub rollback: UpdateConfig,
    /// Published ports and endpoint mode.
    pub endpoint: EndpointSpec,
    /// Which optional parts the client gave. Docker leaves the parts never set out of
    /// `GET /services/{id}` (unless `insertDefaults=true`); the values above are the effective
    /// ones either way.
    #[serde(default)]
    pub given: GivenParts,
}

/// Which optional parts of a service spec a client gave (see [`ServiceSpec::given`]). A
/// part not given reads as its default everywhere; only Docker's inspect output differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenParts {
    /// `UpdateConfig` was given.
    pub update: bool,
    /// `RollbackConfig` was given.
    pub rollback: bool,
    /// `EndpointSpec` was given.
    pub endpoint: bool,
    /// `TaskTemplate.RestartPolicy` was given.
    pub restart: bool,
}

/// What each task of a service runs and how it is placed. Tasks keep their own copy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The container (or process) to run.
    pub container: ContainerSpec,
    /// Limits and reservations.
    pub resources: ResourceRequirements,
    /// When to restart tasks.
    pub restart: RestartPolicy,
    /// Where tasks may run.
    pub placement: Placement,
    /// Networks to attach to.
    pub networks: Vec<NetworkAttachmentConfig>,
    /// Changed by `docker service update --force` to replace tasks with an unchanged spec.
    pub force_update: u64,
    /// Log driver; `None` uses the cluster default.
    pub log_driver: Option<Driver>,
}

/// Security options of a container (Docker's `Privileges`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges {
    /// Windows credential spec (stored, never applied on Linux).
    pub credential_spec: Option<CredentialSpec>,
    /// SELinux labels.
    pub selinux_context: Option<SeLinuxContext>,
    /// Seccomp profile choice.
    pub seccomp: Option<SeccompOpts>,
    /// AppArmor profile choice.
    pub app_armor: Option<AppArmorMode>,
    /// Set `no_new_privileges` on the process.
    pub no_new_privileges: bool,
}

/// A Windows credential spec: exactly one source is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialSpec {
    /// A swarm config holding the spec (its id).
    Config(String),
    /// A file under the engine's credential spec directory.
    File(String),
    /// A registry value name.
    Registry(String),
}

/// SELinux labels of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeLinuxContext {
    /// Disable SELinux labelling.
    pub disable: bool,
    /// User label.
    pub user: String,
    /// Role label.
    pub role: String,
    /// Type label.
    pub type_: String,
    /// Level label.
    pub level: String,
}

/// Seccomp settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompOpts {
    /// Which profile.
    pub mode: SeccompMode,
    /// The JSON profile, for [`SeccompMode::Custom`].
    pub profile: String,
}

/// Which seccomp profile a container gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompMode {
    /// The engine's default profile.
    #[default]
    Default,
    /// No seccomp filtering.
    Unconfined,
    /// The profile in [`SeccompOpts::profile`].
    Custom,
}

/// Which AppArmor profile a container gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppArmorMode {
    /// The engine's default profile.
    #[default]
    Default,
    /// Unconfined.
    Disabled,
}

/// Resolver settings of a container (`/etc/resolv.conf`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// Name server addresses.
    pub nameservers: Vec<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// Resolver options (`ndots:2`).
    pub options: Vec<String>,
}

/// Isolation technology of a container (Windows only; `Default` elsewhere).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    /// The engine's default.
    #[default]
    Default,
    /// Process isolation.
    Process,
    /// Hyper-V isolation.
    Hyperv,
}

impl Isolation {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Default => "default",
            Isolation::Process => "process",
            Isolation::Hyperv => "hyperv",
        }
    }
}

/// A resource limit of the container's processes (`ulimit`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Limit name without the `RLIMIT_` prefix, lower case (`nofile`).
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// A user-defined resource a node advertises and a task may reserve (`GenericResources`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenericResource {
    /// A named instance (`gpu=gpu-0`).
    Named {
        /// Resource kind.
        kind: String,
        /// Instance name.
        value: String,
    },
    /// A count (`ssd=2`).
    Discrete {
        /// Resource kind.
        kind: String,
        /// How many.
        value: i64,
    },
}

/// The container spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Image reference.
    pub image: String,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Entrypoint override.
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Hostname (templates allowed).
    pub hostname: String,
    /// Environment, `KEY=value` (templates allowed).
    pub env: Vec<String>,
    /// Working directory.
    pub dir: String,
    /// User (`uid`, `uid:gid` or a name).
    pub user: String,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Allocate a TTY.
    pub tty: bool,
    /// Read-only root filesystem.
    pub read_only: bool,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Signal sent to stop the task (`SIGTERM` when empty).
    pub stop_signal: String,
    /// Time between the stop signal and SIGKILL; `None` = 10 s.
    pub stop_grace_period: Option<Duration>,
    /// Health check; `None` = the image's (none for processes).
    pub healthcheck: Option<HealthConfig>,
    /// Extra `/etc/hosts` entries.
    pub hosts: Vec<String>,
    /// Secrets to mount.
    pub secrets: Vec<SecretReference>,
    /// Configs to mount.
    pub configs: Vec<ConfigReference>,
    /// Run an init process inside the container.
    pub init: Option<bool>,
    /// Security options.
    #[serde(default)]
    pub privileges: Option<Privileges>,
    /// Keep stdin open.
    #[serde(default)]
    pub open_stdin: bool,
    /// Resolver settings; `None` = the engine's.
    #[serde(default)]
    pub dns_config: Option<DnsConfig>,
    /// Isolation technology.
    #[serde(default)]
    pub isolation: Isolation,
    /// Namespaced kernel parameters.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Capabilities added to the default set (`CAP_NET_ADMIN`).
    #[serde(default)]
    pub capability_add: Vec<String>,
    /// Capabilities dropped from the default set.
    #[serde(default)]
    pub capability_drop: Vec<String>,
    /// Process resource limits.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// OOM killer score adjustment (-1000..=1000; 0 = unchanged).
    #[serde(default)]
    pub oom_score_adj: i64,
}

/// Default stop grace period (10 s).
pub const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);

impl ContainerSpec {
    /// The stop grace period, defaulted.
    pub fn effective_stop_grace_period(&self) -> Duration {
        self.stop_grace_period.unwrap_or(DEFAULT_STOP_GRACE_PERIOD)
    }
}

/// A mount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// bind, volume, tmpfs.
    pub kind: MountKind,
    /// Host path (bind) or volume name (volume); templates allowed.
    pub source: String,
    /// Path inside the task; templates allowed.
    pub target: String,
    /// Mount read-only.
    pub read_only: bool,
    /// Volume options (volume mounts).
    pub volume: Option<VolumeOptions>,
    /// Tmpfs options (tmpfs mounts).
    pub tmpfs: Option<TmpfsOptions>,
    /// Bind options (bind mounts).
    #[serde(default)]
    pub bind: Option<BindOptions>,
}

/// Mount propagation of a bind mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    /// `rprivate` (the default).
    #[default]
    RPrivate,
    /// `private`.
    Private,
    /// `rshared`.
    RShared,
    /// `shared`.
    Shared,
    /// `rslave`.
    RSlave,
    /// `slave`.
    Slave,
}

impl Propagation {
    /// Every value, for parsing.
    pub const ALL: [Propagation; 6] = [
        Propagation::RPrivate,
        Propagation::Private,
        Propagation::RShared,
        Propagation::Shared,
        Propagation::RSlave,
        Propagation::Slave,
    ];

    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::RPrivate => "rprivate",
            Propagation::Private => "private",
            Propagation::RShared => "rshared",
            Propagation::Shared => "shared",
            Propagation::RSlave => "rslave",
            Propagation::Slave => "slave",
        }
    }

    /// Parses Docker's spelling.
    pub fn parse(s: &str) -> Option<Propagation> {
        Propagation::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Bind mount options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindOptions {
    /// Propagation mode.
    pub propagation: Propagation,
    /// Do not bind submounts.
    pub non_recursive: bool,
    /// Create the source path when missing.
    pub create_mountpoint: bool,
    /// Make only the top mount read-only (submounts stay writable).
    pub read_only_non_recursive: bool,
    /// Fail unless every submount can be made read-only.
    pub read_only_force_recursive: bool,
}

/// Kind of mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named volume.
    #[default]
    Volume,
    /// A tmpfs.
    Tmpfs,
}

/// Volume mount options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeOptions {
    /// Do not copy image content into a new volume.
    pub no_copy: bool,
    /// Labels of the volume.
    pub labels: BTreeMap<String, String>,
    /// Volume driver (`local` when `None`).
    pub driver: Option<Driver>,
}

/// Tmpfs mount options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsOptions {
    /// Size limit in bytes (0 = unlimited).
    pub size_bytes: i64,
    /// File mode of the mount point (0 = 01777).
    pub mode: u32,
}

/// Health check of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args...]`, `["CMD-SHELL", command]`; empty inherits.
    pub test: Vec<String>,
    /// Between checks; `None` = 30 s.
    pub interval: Option<Duration>,
    /// Per-check timeout; `None` = 30 s.
    pub timeout: Option<Duration>,
    /// Consecutive failures before unhealthy; 0 = 3.
    pub retries: u32,
    /// Grace period during which failures do not count; `None` = 0 s.
    pub start_period: Option<Duration>,
}

impl HealthConfig {
    /// Interval, defaulted (30 s).
    pub fn effective_interval(&self) -> Duration {
        self.interval.unwrap_or(Duration::from_secs(30))
    }
    /// Timeout, defaulted (30 s).
    pub fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(30))
    }
    /// Retries, defaulted (3).
    pub fn effective_retries(&self) -> u32 {
        if self.retries == 0 {
            3
        } else {
            self.retries
        }
    }
    /// Start period, defaulted (0 s).
    pub fn effective_start_period(&self) -> Duration {
        self.start_period.unwrap_or(Duration::ZERO)
    }
}

/// Where and how a secret or config file appears in the task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTarget {
    /// File name (secrets: under /run/secrets unless absolute) or path (configs).
    pub name: String,
    /// Owner uid.
    pub uid: String,
    /// Owner gid.
    pub gid: String,
    /// File mode (0o444 by default).
    pub mode: u32,
}

/// A service's reference to a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretReference {
    /// The secret's id.
    pub secret_id: Id,
    /// The secret's name (for display; the id is authoritative).
    pub secret_name: String,
    /// The file to create.
    pub target: FileTarget,
}

/// A service's reference to a config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReference {
    /// The config's id.
    pub config_id: Id,
    /// The config's name.
    pub config_name: String,
    /// The file to create.
    pub target: FileTarget,
}

/// Limits and reservations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    /// Hard limits (enforced by the runtime).
    pub limits: Resources,
    /// Reservations (used by the scheduler).
    pub reservations: Resources,
    /// Most processes the task may have (0 = unlimited).
    #[serde(default)]
    pub pids_limit: i64,
    /// User-defined resources reserved (`Reservations.GenericResources`).
    #[serde(default)]
    pub generic_reservations: Vec<GenericResource>,
}

/// When a task's exit triggers a replacement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartCondition {
    /// Never restart.
    None,
    /// Restart unless the task completed successfully.
    OnFailure,
    /// Always restart (a completed job task is not restarted).
    #[default]
    Any,
}

impl RestartCondition {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartCondition::None => "none",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::Any => "any",
        }
    }
}

/// Restart policy (defaults: any, 5 s, unlimited attempts, unbounded window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// When to restart.
    pub condition: RestartCondition,
    /// Delay before the replacement starts.
    pub delay: Duration,
    /// Restarts allowed per slot within `window` (0 = unlimited).
    pub max_attempts: u64,
    /// Window over which attempts are counted (0 = unbounded).
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay: Duration::from_secs(5),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

/// Placement rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Constraint expressions (`node.labels.rack==a`), ANDed. Kept as text, as Docker does;
    /// validated with [`crate::constraint::parse_constraints`].
    pub constraints: Vec<String>,
    /// Spread preferences as descriptors (`node.labels.rack`), applied in order.
    pub preferences: Vec<String>,
    /// Maximum tasks of this service per node (0 = unlimited).
    pub max_replicas: u64,
    /// Platforms the image supports (empty = any).
    pub platforms: Vec<Platform>,
}

/// Attachment of a service to a network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentConfig {
    /// Network id.
    pub target: String,
    /// Extra DNS aliases.
    pub aliases: Vec<String>,
    /// Options for the network driver, for this attachment.
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
}

/// Service mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceMode {
    /// N replicas in slots 1..=N.
    Replicated {
        /// Desired replica count.
        replicas: u64,
    },
    /// One task on every eligible node.
    Global,
    /// Run to completion `total_completions` times, `max_concurrent` at a time.
    ReplicatedJob {
        /// Tasks running at once.
        max_concurrent: u64,
        /// Successful completions wanted.
        total_completions: u64,
    },
    /// Run to completion once on every eligible node.
    GlobalJob,
}

impl Default for ServiceMode {
    fn default() -> Self {
        ServiceMode::Replicated { replicas: 1 }
    }
}

impl ServiceMode {
    /// Whether this is a job mode.
    pub fn is_job(&self) -> bool {
        matches!(
            self,
            ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
        )
    }
    /// Whether this is a global mode (one task per node).
    pub fn is_global(&self) -> bool {
        matches!(self, ServiceMode::Global | ServiceMode::GlobalJob)
    }
    /// A short name for messages: `replicated`, `global`, `replicated-job`, `global-job`.
    pub fn name(&self) -> &'static str {
        match self {
            ServiceMode::Replicated { .. } => "replicated",
            ServiceMode::Global => "global",
            ServiceMode::ReplicatedJob { .. } => "replicated-job",
            ServiceMode::GlobalJob => "global-job",
        }
    }
}

/// What to do when an update fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureAction {
    /// Pause the update.
    #[default]
    Pause,
    /// Ignore failures.
    Continue,
    /// Roll back to the previous spec.
    Rollback,
}

/// Order of stopping old and starting new tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateOrder {
    /// Stop the old task, then start the new one.
    #[default]
    StopFirst,
    /// Start the new task; stop the old once the new one runs.
    StartFirst,
}

/// Rolling update (or rollback) settings; defaults as Docker's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Slots updated at once (0 = all).
    pub parallelism: u64,
    /// Wait after each slot.
    pub delay: Duration,
    /// What to do on failure.
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure after it starts running.
    pub monitor: Duration,
    /// Failures tolerated, as a fraction of updated slots (0..=1). An `f64`, as Docker's
    /// JSON number, so `0.4` reads back as `0.4`.
    pub max_failure_ratio: f64,
    /// Stop-first or start-first.
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: Duration::from_secs(5),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// Endpoint mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointMode {
    /// A virtual IP load-balances to the tasks.
    #[default]
    Vip,
    /// DNS round-robin.
    Dnsrr,
}

/// Published ports and endpoint mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// VIP or DNS round-robin.
    pub mode: EndpointMode,
    /// Ports to publish.
    pub ports: Vec<PortConfig>,
}

/// Transport protocol of a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// How a port is published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PublishMode {
    /// Routing mesh on every node.
    #[default]
    Ingress,
    /// Bound directly on the node running the task.
    Host,
}

/// A published port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    /// Optional name.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Port inside the task.
    pub target_port: u32,
    /// Port on the node (0 = pick one).
    pub published_port: u32,
    /// Ingress or host.
    pub publish_mode: PublishMode,
}

/// The allocated endpoint of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The spec it was allocated from.
    pub spec: EndpointSpec,
    /// Ports with published ports assigned.
    pub ports: Vec<PortConfig>,
    /// The service's virtual IP on each network it is attached to (endpoint mode `vip`), kept
    /// across updates while it stays attached.
    pub virtual_ips: Vec<VirtualIp>,
}

/// A service's virtual IP on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    /// The network.
    pub network_id: Id,
    /// The address with the network's prefix length, as Docker writes it (`10.0.1.2/24`).
    pub addr: String,
}

/// State of a rolling update or rollback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateState {
    /// Updating.
    Updating,
    /// Paused after failures.
    Paused,
    /// Finished.
    Completed,
    /// Rolling back.
    RollbackStarted,
    /// Rollback paused after failures.
    RollbackPaused,
    /// Rollback finished.
    RollbackCompleted,
}

impl UpdateState {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }
}

/// Progress of an update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// State.
    pub state: UpdateState,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished (completed states only).
    pub completed_at: Option<Timestamp>,
    /// Human-readable progress or failure message.
    pub message: String,
}

/// Job progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Iteration: bumped on every update of the job's spec.
    pub job_iteration: Version,
    /// When the current iteration started.
    pub last_execution: Timestamp,
}
