//! Spec validation: one typed error per rule, with messages a Docker user recognises.
//!
//! The control API validates every spec before staging a change; the store then only checks
//! integrity (ids, names, versions, references). Validation is pure and never panics.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

use crate::constraint::{parse_constraints, ConstraintError};
use crate::objects::cluster::{ClusterSpec, NetworkBootstrap};
use crate::objects::network::NetworkSpec;
use crate::objects::secret::{ConfigSpec, SecretSpec, MAX_CONFIG_SIZE, MAX_SECRET_SIZE};
use crate::objects::service::{
    ContainerSpec, GenericResource, HealthConfig, Mount, MountKind, ServiceMode, ServiceSpec,
    UpdateConfig,
};
use crate::placement::PlacementError;

/// Smallest CPU reservation or limit when set: 0.001 CPU.
pub const MIN_NANO_CPUS: i64 = 1_000_000;
/// Smallest memory reservation or limit when set: 4 MiB.
pub const MIN_MEMORY_BYTES: i64 = 4 * 1024 * 1024;
/// Smallest node certificate lifetime: 1 hour.
pub const MIN_NODE_CERT_EXPIRY: Duration = Duration::from_secs(3600);
/// Default cap on the tasks one service may ask for ([`ServiceLimits::max_replicas`]).
pub const DEFAULT_MAX_REPLICAS: u64 = 100_000;

/// Limits the manager that receives a request applies to service specs. They are the receiving
/// daemon's settings (`swarm-node run --max-replicas`), not replicated cluster state, like dockerd's
/// own flags: an operator sets them alike on every manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Most tasks one service may ask for: `Replicas` of a replicated service, `MaxConcurrent` and
    /// `TotalCompletions` of a replicated job. Docker has no such cap; without one a typo such as
    /// `Replicas: 9223372036854775807` makes the orchestrators create tasks until memory runs out.
    pub max_replicas: u64,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_replicas: DEFAULT_MAX_REPLICAS,
        }
    }
}

/// A spec broke a rule. Each message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SpecError {
    /// Empty name.
    #[error("{kind} name must not be empty")]
    EmptyName {
        /// What was being named.
        kind: &'static str,
    },
    /// Name with characters outside the allowed set, or too long.
    #[error("invalid name {name:?}: {kind} names may only contain [a-zA-Z0-9-_.], start and end with a letter or digit, and be at most {max} characters")]
    InvalidName {
        /// What was being named.
        kind: &'static str,
        /// The name.
        name: String,
        /// Length limit.
        max: usize,
    },
    /// No image given.
    #[error("ContainerSpec: image reference must be provided")]
    MissingImage,
    /// Secret payload size out of range.
    #[error(
        "secret data must be larger than 0 and less than {} bytes (500 KiB); got {size} bytes",
        MAX_SECRET_SIZE
    )]
    SecretSize {
        /// Size given.
        size: usize,
    },
    /// Config payload size out of range.
    #[error(
        "config data must be larger than 0 and less than {} bytes (1000 KiB); got {size} bytes",
        MAX_CONFIG_SIZE
    )]
    ConfigSize {
        /// Size given.
        size: usize,
    },
    /// Two secret (or config) references write the same file.
    #[error("{kind} references '{first}' and '{second}' have a conflicting target: '{target}'")]
    DuplicateTarget {
        /// `secret` or `config`.
        kind: &'static str,
        /// First reference's name.
        first: String,
        /// Second reference's name.
        second: String,
        /// The shared target.
        target: String,
    },
    /// A secret or config reference without a target file name.
    #[error("{kind} reference '{name}': target file name must not be empty")]
    EmptyTarget {
        /// `secret` or `config`.
        kind: &'static str,
        /// The reference's name.
        name: String,
    },
    /// Replicas given for a global service.
    #[error("replicas can only be used with replicated or replicated-job mode")]
    ReplicasOnGlobal,
    /// A task count above [`ServiceLimits::max_replicas`].
    #[error("invalid {field} value {value}: a service may ask for at most {max} tasks (the manager's --max-replicas)")]
    TooManyReplicas {
        /// `Replicas`, `MaxConcurrent` or `TotalCompletions`.
        field: &'static str,
        /// The count given.
        value: u64,
        /// The cap in force.
        max: u64,
    },
    /// Max replicas per node on a global service.
    #[error("max replicas per node can only be used with replicated or replicated-job mode")]
    MaxReplicasOnGlobal,
    /// Update tried to change the mode.
    #[error("service mode change is not allowed (from {from} to {to})")]
    ModeChange {
        /// Old mode.
        from: &'static str,
        /// New mode.
        to: &'static str,
    },
    /// Update tried to rename.
    #[error("renaming services is not supported (from {from:?} to {to:?})")]
    Rename {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// A job with an update or rollback config.
    #[error("jobs may not have an update config or a rollback config")]
    JobUpdateConfig,
    /// CPU below 0.001 or negative.
    #[error("invalid cpu value {value} in {field}: must be at least 0.001 (or 0 for none)")]
    Cpu {
        /// `Resources.Limits` or `Resources.Reservations`.
        field: &'static str,
        /// CPUs given.
        value: f64,
    },
    /// Memory below 4 MiB or negative.
    #[error("invalid memory value {value} in {field}: must be at least 4MiB (or 0 for none)")]
    Memory {
        /// `Resources.Limits` or `Resources.Reservations`.
        field: &'static str,
        /// Bytes given.
        value: i64,
    },
    /// Failure ratio outside 0..=1.
    #[error("{field}.MaxFailureRatio must be between 0 and 1, got {value}")]
    FailureRatio {
        /// `UpdateConfig` or `RollbackConfig`.
        field: &'static str,
        /// Value given.
        value: f64,
    },
    /// A constraint does not parse.
    #[error("invalid placement constraint: {0}")]
    Constraint(#[from] ConstraintError),
    /// A preference does not parse.
    #[error("invalid placement preference: {0}")]
    Preference(#[from] PlacementError),
    /// Health-check field out of range.
    #[error("Healthcheck: {0}")]
    Health(String),
    /// Bad mount.
    #[error("invalid mount config for type \"{kind}\": {reason}")]
    Mount {
        /// bind, volume or tmpfs.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Bad port.
    #[error("invalid port {field}: {reason}")]
    Port {
        /// Which port.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A container field out of range (ulimits, capabilities, sysctls, OOM score).
    #[error("ContainerSpec: invalid {field}: {reason}")]
    Container {
        /// Which field (`Ulimits`, `CapabilityAdd`, ...).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A resource field out of range (pids limit, generic resources).
    #[error("invalid {field}: {reason}")]
    Resource {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Bad cluster setting.
    #[error("invalid cluster setting {field}: {reason}")]
    Cluster {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Checks a name against SwarmKit's rule for secrets, configs and services: letters, digits and
/// `-_.`, starting and ending with a letter or digit.
pub fn validate_name(kind: &'static str, name: &str, max: usize) -> Result<(), SpecError> {
    if name.is_empty() {
        return Err(SpecError::EmptyName { kind });
    }
    let b = name.as_bytes();
    let ok_mid = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    let ok = b.len() <= max
        && b.iter().all(ok_mid)
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(SpecError::InvalidName {
            kind,
            name: name.chars().take(128).collect(),
            max,
        })
    }
}

/// Validates a secret spec (name up to 64 characters, payload 1 byte .. < 500 KiB).
pub fn validate_secret_spec(spec: &SecretSpec) -> Result<(), SpecError> {
    validate_name("secret", &spec.annotations.name, 64)?;
    let size = spec.data.len();
    if size == 0 || size >= MAX_SECRET_SIZE {
        return Err(SpecError::SecretSize { size });
    }
    Ok(())
}

/// Validates a config spec (name up to 64 characters, payload 1 byte .. < 1000 KiB).
pub fn validate_config_spec(spec: &ConfigSpec) -> Result<(), SpecError> {
    validate_name("config", &spec.annotations.name, 64)?;
    let size = spec.data.len();
    if size == 0 || size >= MAX_CONFIG_SIZE {
        return Err(SpecError::ConfigSize { size });
    }
    Ok(())
}

/// Validates a network spec.
pub fn validate_network_spec(spec: &NetworkSpec) -> Result<(), SpecError> {
    validate_name("network", &spec.annotations.name, 64)
}

/// Validates a cluster spec.
pub fn validate_cluster_spec(spec: &ClusterSpec) -> Result<(), SpecError> {
    if spec.ca.node_cert_expiry < MIN_NODE_CERT_EXPIRY {
        return Err(SpecError::Cluster {
            field: "CAConfig.NodeCertExpiry",
            reason: "minimum certificate expiry time is 1h".into(),
        });
    }
    if spec.raft.snapshot_interval == 0 {
        return Err(SpecError::Cluster {
            field: "Raft.SnapshotInterval",
            reason: "must be greater than 0".into(),
        });
    }
    if spec.dispatcher.heartbeat_period.is_zero() {
        return Err(SpecError::Cluster {
            field: "Dispatcher.HeartbeatPeriod",
            reason: "must be greater than 0".into(),
        });
    }
    for ca in &spec.ca.external_cas {
        if !ca.protocol.eq_ignore_ascii_case("cfssl") {
            return Err(SpecError::Cluster {
                field: "CAConfig.ExternalCAs",
                reason: format!(
                    "unknown protocol {:?}: only cfssl is supported",
                    ca.protocol
                ),
            });
        }
        if ca.url.is_empty() {
            return Err(SpecError::Cluster {
                field: "CAConfig.ExternalCAs",
                reason: "URL must not be empty".into(),
            });
        }
    }
    Ok(())
}

/// Smallest data-path port Docker accepts.
pub const MIN_DATA_PATH_PORT: u32 = 1024;
/// Largest data-path port Docker accepts.
pub const MAX_DATA_PATH_PORT: u32 = 49151;

/// Validates what `swarm init` fixes for the cluster's life: every pool a CIDR, the subnet size
/// no shorter than any pool's prefix and at most /29 (IPv4) or /125 (IPv6), the data-path port in
/// 1024..=49151.
pub fn validate_network_bootstrap(n: &NetworkBootstrap) -> Result<(), SpecError> {
    let err = |field: &'static str, reason: String| SpecError::Cluster { field, reason };
    if !(MIN_DATA_PATH_PORT..=MAX_DATA_PATH_PORT).contains(&n.data_path_port) {
        return Err(err(
            "DataPathPort",
            format!(
                "{} is out of range: it must be within {MIN_DATA_PATH_PORT}-{MAX_DATA_PATH_PORT}",
                n.data_path_port
            ),
        ));
    }
    if n.default_addr_pool.is_empty() {
        return Err(err("DefaultAddrPool", "must not be empty".into()));
    }
    for pool in &n.default_addr_pool {
        let bad = || {
            err(
                "DefaultAddrPool",
                format!("{pool:?} is not a CIDR (e.g. 10.20.0.0/16)"),
            )
        };
        let (ip, prefix) = pool.split_once('/').ok_or_else(bad)?;
        let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u32 = prefix.parse().map_err(|_| bad())?;
        let (bits, max_subnet) = if ip.is_ipv4() { (32, 29) } else { (128, 125) };
        if prefix > bits {
            return Err(bad());
        }
        if n.subnet_size < prefix || n.subnet_size > max_subnet {
            return Err(err(
                "SubnetSize",
                format!(
                    "{} does not fit pool {pool}: it must be between the pool's prefix /{prefix} and /{max_subnet}",
                    n.subnet_size
                ),
            ));
        }
    }
    Ok(())
}

/// Builds a service mode from the API's loose shape (a global flag plus optional replicas), refusing
/// replicas on a global service.
pub fn service_mode(global: bool, replicas: Option<u64>) -> Result<ServiceMode, SpecError> {
    match (global, replicas) {
        (true, Some(_)) => Err(SpecError::ReplicasOnGlobal),
        (true, None) => Ok(ServiceMode::Global),
        (false, r) => Ok(ServiceMode::Replicated {
            replicas: r.unwrap_or(1),
        }),
    }
}

/// Validates a service spec for creation or update (the new spec), with the receiving manager's
/// `limits`.
pub fn validate_service_spec(spec: &ServiceSpec, limits: &ServiceLimits) -> Result<(), SpecError> {
    validate_name("service", &spec.annotations.name, 63)?;
    validate_task_counts(&spec.mode, limits)?;
    let task = &spec.task;
    validate_container(&task.container)?;
    for (field, r) in [
        ("Resources.Limits", &task.resources.limits),
        ("Resources.Reservations", &task.resources.reservations),
    ] {
        if r.nano_cpus < 0 || (r.nano_cpus > 0 && r.nano_cpus < MIN_NANO_CPUS) {
            return Err(SpecError::Cpu {
                field,
                value: r.nano_cpus as f64 / 1e9,
            });
        }
        if r.memory_bytes < 0 || (r.memory_bytes > 0 && r.memory_bytes < MIN_MEMORY_BYTES) {
            return Err(SpecError::Memory {
                field,
                value: r.memory_bytes,
            });
        }
    }
    if task.resources.pids_limit < 0 {
        return Err(SpecError::Resource {
            field: "Resources.Limits.Pids",
            reason: format!("{} is negative (0 = unlimited)", task.resources.pids_limit),
        });
    }
    for g in &task.resources.generic_reservations {
        validate_generic_resource(g)?;
    }
    parse_constraints(&task.placement.constraints)?;
    // Spread descriptors are stored as given, as Docker does: one that names no node or engine
    // label puts every node in the same ("missing") branch, so it does not change placement.
    if spec.mode.is_global() && task.placement.max_replicas > 0 {
        return Err(SpecError::MaxReplicasOnGlobal);
    }
    if spec.mode.is_job() {
        if spec.update != UpdateConfig::default() || spec.rollback != UpdateConfig::default() {
            return Err(SpecError::JobUpdateConfig);
        }
    } else {
        validate_update_config("UpdateConfig", &spec.update)?;
        validate_update_config("RollbackConfig", &spec.rollback)?;
    }
    validate_ports(spec)?;
    Ok(())
}

/// Validates an update of a service from `old` to `new` (after [`validate_service_spec`] on `new`).
pub fn validate_service_update(old: &ServiceSpec, new: &ServiceSpec) -> Result<(), SpecError> {
    if old.annotations.name != new.annotations.name {
        return Err(SpecError::Rename {
            from: old.annotations.name.clone(),
            to: new.annotations.name.clone(),
        });
    }
    if std::mem::discriminant(&old.mode) != std::mem::discriminant(&new.mode) {
        return Err(SpecError::ModeChange {
            from: old.mode.name(),
            to: new.mode.name(),
        });
    }
    Ok(())
}

/// Refuses task counts above the cap, whatever the mode asks for. Part of
/// [`validate_service_spec`]; also for specs that come back without a full validation (a
/// rollback to the previous spec, accepted under the cap of its day).
pub fn validate_task_counts(mode: &ServiceMode, limits: &ServiceLimits) -> Result<(), SpecError> {
    let counts: &[(&'static str, u64)] = match *mode {
        ServiceMode::Replicated { replicas } => &[("Replicas", replicas)],
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => &[
            ("MaxConcurrent", max_concurrent),
            ("TotalCompletions", total_completions),
        ],
        ServiceMode::Global | ServiceMode::GlobalJob => &[],
    };
    match counts.iter().find(|(_, n)| *n > limits.max_replicas) {
        Some(&(field, value)) => Err(SpecError::TooManyReplicas {
            field,
            value,
            max: limits.max_replicas,
        }),
        None => Ok(()),
    }
}

fn validate_update_config(field: &'static str, u: &UpdateConfig) -> Result<(), SpecError> {
    if !(0.0..=1.0).contains(&u.max_failure_ratio) {
        return Err(SpecError::FailureRatio {
            field,
            value: u.max_failure_ratio,
        });
    }
    Ok(())
}

fn validate_container(c: &ContainerSpec) -> Result<(), SpecError> {
    if c.image.trim().is_empty() {
        return Err(SpecError::MissingImage);
    }
    check_targets(
        "secret",
        c.secrets
            .iter()
            .map(|r| (r.secret_name.as_str(), r.target.name.as_str())),
    )?;
    check_targets(
        "config",
        c.configs
            .iter()
            .map(|r| (r.config_name.as_str(), r.target.name.as_str())),
    )?;
    if let Some(h) = &c.healthcheck {
        validate_health(h)?;
    }
    for m in &c.mounts {
        validate_mount(m)?;
    }
    validate_container_options(c)
}

/// Ulimits, capabilities, sysctls and the OOM score: the checks the engine would make at container
/// creation, made before the spec is stored so that a task never fails for them.
fn validate_container_options(c: &ContainerSpec) -> Result<(), SpecError> {
    let err = |field: &'static str, reason: String| SpecError::Container { field, reason };
    let mut names = std::collections::BTreeSet::new();
    for u in &c.ulimits {
        if u.name.is_empty() {
            return Err(err("Ulimits", "a ulimit has no Name".into()));
        }
        if !names.insert(u.name.as_str()) {
            return Err(err("Ulimits", format!("{:?} is given twice", u.name)));
        }
        if u.soft > u.hard {
            return Err(err(
                "Ulimits",
                format!(
                    "{}: soft limit {} is above hard limit {}",
                    u.name, u.soft, u.hard
                ),
            ));
        }
    }
    for (field, caps) in [
        ("CapabilityAdd", &c.capability_add),
        ("CapabilityDrop", &c.capability_drop),
    ] {
        if let Some(bad) = caps
            .iter()
            .find(|c| c.is_empty() || c.chars().any(|ch| ch.is_whitespace()))
        {
            return Err(err(field, format!("{bad:?} is not a capability name")));
        }
    }
    if let Some(k) = c
        .sysctls
        .keys()
        .find(|k| k.is_empty() || k.chars().any(|ch| ch.is_whitespace() || ch == '='))
    {
        return Err(err(
            "Sysctls",
            format!("{k:?} is not a kernel parameter name"),
        ));
    }
    if !(-1000..=1000).contains(&c.oom_score_adj) {
        return Err(err(
            "OomScoreAdj",
            format!("{} is out of range -1000..1000", c.oom_score_adj),
        ));
    }
    Ok(())
}

fn validate_generic_resource(g: &GenericResource) -> Result<(), SpecError> {
    let field = "Resources.Reservations.GenericResources";
    let (kind, bad_value) = match g {
        GenericResource::Named { kind, value } => (kind, value.is_empty()),
        GenericResource::Discrete { kind, value } => (kind, *value < 0),
    };
    if kind.is_empty() {
        return Err(SpecError::Resource {
            field,
            reason: "a resource has no Kind".into(),
        });
    }
    if bad_value {
        return Err(SpecError::Resource {
            field,
            reason: format!("resource {kind:?} has an empty or negative Value"),
        });
    }
    Ok(())
}

fn check_targets<'a>(
    kind: &'static str,
    refs: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), SpecError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, target) in refs {
        if target.is_empty() {
            return Err(SpecError::EmptyTarget {
                kind,
                name: name.to_string(),
            });
        }
        if let Some(first) = seen.insert(target, name) {
            return Err(SpecError::DuplicateTarget {
                kind,
                first: first.to_string(),
                second: name.to_string(),
                target: target.to_string(),
            });
        }
    }
    Ok(())
}

fn validate_health(h: &HealthConfig) -> Result<(), SpecError> {
    let min = Duration::from_millis(1);
    for (field, d) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
    ] {
        if let Some(d) = d {
            if !d.is_zero() && d < min {
                return Err(SpecError::Health(format!(
                    "{field} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
    }
    match h.test.first().map(String::as_str) {
        None | Some("NONE") => Ok(()),
        Some("CMD") | Some("CMD-SHELL") if h.test.len() >= 2 => Ok(()),
        Some("CMD") | Some("CMD-SHELL") => Err(SpecError::Health(
            "test command must not be empty".to_string(),
        )),
        Some(other) => Err(SpecError::Health(format!(
            "unknown test type {other:?}: use NONE, CMD or CMD-SHELL"
        ))),
    }
}

fn validate_mount(m: &Mount) -> Result<(), SpecError> {
    let kind = match m.kind {
        MountKind::Bind => "bind",
        MountKind::Volume => "volume",
        MountKind::Tmpfs => "tmpfs",
    };
    let err = |reason: &str| SpecError::Mount {
        kind,
        reason: reason.to_string(),
    };
    if m.target.is_empty() {
        return Err(err("field Target must not be empty"));
    }
    if !m.target.starts_with('/') && !m.target.starts_with("{{") {
        return Err(err(&format!(
            "field Target must be an absolute path (got {:?})",
            m.target
        )));
    }
    match m.kind {
        MountKind::Bind => {
            if m.source.is_empty() {
                return Err(err("field Source must not be empty"));
            }
            if !m.source.starts_with('/') && !m.source.starts_with("{{") {
                return Err(err(&format!(
                    "field Source must be an absolute path (got {:?})",
                    m.source
                )));
            }
            if m.volume.is_some() || m.tmpfs.is_some() {
                return Err(err("VolumeOptions and TmpfsOptions must not be specified"));
            }
        }
        MountKind::Volume => {
            if m.tmpfs.is_some() {
                return Err(err("TmpfsOptions must not be specified"));
            }
        }
        MountKind::Tmpfs => {
            if !m.source.is_empty() {
                return Err(err("field Source must not be specified"));
            }
            if m.volume.is_some() {
                return Err(err("VolumeOptions must not be specified"));
            }
            if m.tmpfs.as_ref().is_some_and(|t| t.size_bytes < 0) {
                return Err(err("TmpfsOptions.SizeBytes must not be negative"));
            }
        }
    }
    Ok(())
}

fn validate_ports(spec: &ServiceSpec) -> Result<(), SpecError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in spec.endpoint.ports.iter().enumerate() {
        let field = format!("Ports[{i}]");
        if p.target_port == 0 || p.target_port > 65535 {
            return Err(SpecError::Port {
                field,
                reason: format!("target port {} is out of range 1-65535", p.target_port),
            });
        }
        if p.published_port > 65535 {
            return Err(SpecError::Port {
                field,
                reason: format!(
                    "published port {} is out of range 0-65535",
                    p.published_port
                ),
            });
        }
        if p.published_port != 0 && !seen.insert((p.published_port, p.protocol)) {
            return Err(SpecError::Port {
                field,
                reason: format!(
                    "duplicate published port {}/{}",
                    p.published_port,
                    p.protocol.as_str()
                ),
            });
        }
    }
    Ok(())
}
