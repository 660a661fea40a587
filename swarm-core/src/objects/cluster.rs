//! The cluster object: cluster-wide settings (raft, dispatcher, CA, encryption, orchestration).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::meta::{Annotations, Meta};
use crate::objects::secret::{Driver, SecretData};

/// Name of the one cluster object.
pub const DEFAULT_CLUSTER_NAME: &str = "default";

/// The cluster (there is exactly one, named `default`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// Cluster id (the O of every node certificate).
    pub id: Id,
    /// Store bookkeeping.
    pub meta: Meta,
    /// Settings.
    pub spec: ClusterSpec,
    /// Root CA certificate and join tokens.
    pub root_ca: RootCa,
    /// Key-encryption keys for autolock (the current unlock key first). Readable by managers only.
    pub unlock_keys: Vec<EncryptionKey>,
    /// Address pools and data-path port chosen at `swarm init`; fixed for the cluster's life.
    #[serde(default)]
    pub network_bootstrap: NetworkBootstrap,
}

/// What `swarm init` fixes for the life of the cluster: where overlay subnets come from and the
/// data-path (VXLAN) port. Defaults as Docker's: `10.0.0.0/8`, /24 subnets, port 4789.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkBootstrap {
    /// Address pools (CIDR) overlay subnets are taken from.
    pub default_addr_pool: Vec<String>,
    /// Prefix length of each subnet taken from the pools.
    pub subnet_size: u32,
    /// UDP port of the data path.
    pub data_path_port: u32,
}

/// Docker's default address pool.
pub const DEFAULT_ADDR_POOL: &str = "10.0.0.0/8";
/// Docker's default subnet size.
pub const DEFAULT_SUBNET_SIZE: u32 = 24;
/// Docker's default data-path port (VXLAN).
pub const DEFAULT_DATA_PATH_PORT: u32 = 4789;

impl Default for NetworkBootstrap {
    fn default() -> Self {
        NetworkBootstrap {
            default_addr_pool: vec![DEFAULT_ADDR_POOL.to_string()],
            subnet_size: DEFAULT_SUBNET_SIZE,
            data_path_port: DEFAULT_DATA_PATH_PORT,
        }
    }
}

/// Cluster settings (`docker swarm update`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Always named `default`.
    pub annotations: Annotations,
    /// Orchestration settings.
    pub orchestration: OrchestrationConfig,
    /// Raft settings.
    pub raft: RaftConfig,
    /// Dispatcher settings.
    pub dispatcher: DispatcherConfig,
    /// CA settings.
    pub ca: CaConfig,
    /// Encryption settings.
    pub encryption: EncryptionConfig,
    /// Defaults for every task.
    #[serde(default)]
    pub task_defaults: TaskDefaults,
}

/// Defaults applied to every task of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDefaults {
    /// Log driver of tasks whose spec names none.
    pub log_driver: Option<Driver>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            annotations: Annotations::named(DEFAULT_CLUSTER_NAME),
            orchestration: OrchestrationConfig::default(),
            raft: RaftConfig::default(),
            dispatcher: DispatcherConfig::default(),
            ca: CaConfig::default(),
            encryption: EncryptionConfig::default(),
            task_defaults: TaskDefaults::default(),
        }
    }
}

/// Orchestration settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrchestrationConfig {
    /// Tasks kept per slot, including the live one: default 5; negative = never prune; 0 = live only.
    pub task_history_retention_limit: i64,
}

impl Default for OrchestrationConfig {
    fn default() -> Self {
        OrchestrationConfig {
            task_history_retention_limit: 5,
        }
    }
}

/// Raft settings as Docker shows them (SwarmKit's defaults). swarm-raft's own timers are finer-grained
/// (100 ms heartbeat, 600-1200 ms election timeout) and configured there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfig {
    /// Entries between snapshots (10 000).
    pub snapshot_interval: u64,
    /// Old snapshots kept (0).
    pub keep_old_snapshots: u64,
    /// Entries kept after a snapshot for slow followers (500).
    pub log_entries_for_slow_followers: u64,
    /// Ticks between heartbeats (1).
    pub heartbeat_tick: u32,
    /// Ticks before an election (10).
    pub election_tick: u32,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            snapshot_interval: 10_000,
            keep_old_snapshots: 0,
            log_entries_for_slow_followers: 500,
            heartbeat_tick: 1,
            election_tick: 10,
        }
    }
}

/// Dispatcher settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatcherConfig {
    /// Node heartbeat period (5 s).
    pub heartbeat_period: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            heartbeat_period: Duration::from_secs(5),
        }
    }
}

/// CA settings.
///
/// A signing CA certificate and key given with `swarm update` (Docker's `SigningCACert` /
/// `SigningCAKey`) are not part of the spec: they start a root rotation and are never read back,
/// as in Docker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaConfig {
    /// Lifetime of node certificates (90 days; at least 1 hour).
    pub node_cert_expiry: Duration,
    /// External CAs that sign node certificates (stored and shown).
    #[serde(default)]
    pub external_cas: Vec<ExternalCa>,
    /// A counter: changing it asks for a root CA rotation.
    #[serde(default)]
    pub force_rotate: u64,
}

/// An external certificate authority.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalCa {
    /// Protocol spoken to it; `cfssl` is the only one Docker knows.
    pub protocol: String,
    /// Where it is.
    pub url: String,
    /// Protocol-specific options.
    pub options: std::collections::BTreeMap<String, String>,
    /// Root CA certificate (PEM) it signs under; empty = the cluster's current root.
    pub ca_cert: String,
}

/// Default node certificate lifetime: 90 days.
pub const DEFAULT_NODE_CERT_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            node_cert_expiry: DEFAULT_NODE_CERT_EXPIRY,
            external_cas: Vec::new(),
            force_rotate: 0,
        }
    }
}

/// Encryption settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionConfig {
    /// Whether managers require the unlock key after a restart.
    pub auto_lock_managers: bool,
}

/// The root CA and join tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCa {
    /// Root certificate, PEM.
    pub ca_cert_pem: String,
    /// SHA-256 digest of the PEM (what join tokens pin).
    pub ca_cert_digest: String,
    /// Join tokens.
    pub join_tokens: JoinTokens,
    /// The root's signing key (PKCS#8 DER). It lives only in the raft log and snapshots, which are
    /// sealed on disk; `None` when this cluster's CA cannot sign (an external CA).
    #[serde(default)]
    pub ca_key: Option<SecretData>,
    /// A root rotation in progress (`docker swarm ca --rotate`).
    #[serde(default)]
    pub root_rotation: Option<RootRotation>,
    /// The `spec.ca.force_rotate` value the last rotation was started for.
    #[serde(default)]
    pub last_forced_rotation: u64,
}

/// A root CA rotation in progress: the new root, its key, and the new root cross-signed by the old
/// one (the intermediate of every chain issued until the rotation ends).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotation {
    /// The new root certificate, PEM.
    pub ca_cert_pem: String,
    /// The new root's key (PKCS#8 DER).
    pub ca_key: SecretData,
    /// The new root certificate signed by the old root, PEM.
    pub cross_signed_ca_cert_pem: String,
}

/// Join tokens. Not secret data in the sense of [`SecretData`], but shown to managers only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokens {
    /// Token a worker joins with.
    pub worker: String,
    /// Token a manager joins with.
    pub manager: String,
}

/// A cluster-wide key, e.g. the autolock unlock key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionKey {
    /// Which subsystem uses it (`manager` for the unlock key).
    pub subsystem: String,
    /// The key bytes (redacted in Debug, zeroized on drop).
    pub key: SecretData,
    /// Logical clock: higher is newer.
    pub lamport_time: u64,
}
