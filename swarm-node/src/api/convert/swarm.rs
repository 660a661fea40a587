//! The swarm (cluster object), `swarm init` requests, and the `/info` and `/version` documents.

use bollard::models;
use serde::Deserialize;
use swarm_core::objects::cluster::{ClusterSpec, ExternalCa, NetworkBootstrap};
use swarm_core::objects::node::{NodeAvailability, NodeRole};
use swarm_core::objects::secret::Driver;
use swarm_core::validate::{validate_cluster_spec, validate_network_bootstrap};
use swarm_core::{Cluster, Node};

use super::{duration, go_arch, labels_in, labels_out, nanos, ts, version, Result};
use crate::api::error::ApiError;
use crate::api::{API_VERSION, MIN_API_VERSION};
use crate::backend::{
    DaemonInfo, InitRequest, JoinRequest, LocalNodeInfo, LocalNodeState, RaftMember,
    DEFAULT_LISTEN_ADDR, DEFAULT_SWARM_PORT,
};

/// `POST /swarm/init`. bollard's model lacks `AutoLockManagers` and `Availability`, so this one is
/// ours; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct InitRequestJson {
    #[serde(rename = "ListenAddr", default)]
    listen_addr: Option<String>,
    #[serde(rename = "AdvertiseAddr", default)]
    advertise_addr: Option<String>,
    #[serde(rename = "ForceNewCluster", default)]
    force_new_cluster: Option<bool>,
    #[serde(rename = "Spec", default)]
    spec: Option<models::SwarmSpec>,
    #[serde(rename = "AutoLockManagers", default)]
    auto_lock_managers: Option<bool>,
    #[serde(rename = "Availability", default)]
    availability: Option<models::NodeSpecAvailabilityEnum>,
    #[serde(rename = "DataPathAddr", default)]
    data_path_addr: Option<String>,
    #[serde(rename = "DataPathPort", default)]
    data_path_port: Option<u32>,
    #[serde(rename = "DefaultAddrPool", default)]
    default_addr_pool: Option<Vec<String>>,
    #[serde(rename = "SubnetSize", default)]
    subnet_size: Option<u32>,
}

/// The daemon's view of a `swarm init` request: `Spec` merged over the defaults as Docker
/// does (zero values take the default), and the address pools, subnet size and data-path port,
/// all validated (400 naming the field).
pub(crate) fn init_request_in(r: InitRequestJson) -> Result<InitRequest> {
    let mut docker = r.spec.unwrap_or_default();
    // A new cluster has a new root CA: a rotation counter given at init is only recorded.
    let force_rotate = docker
        .ca_config
        .as_mut()
        .and_then(|ca| ca.force_rotate.take())
        .unwrap_or(0);
    let spec_autolock = docker
        .encryption_config
        .as_ref()
        .and_then(|e| e.auto_lock_managers)
        .unwrap_or(false);
    let mut spec = cluster_spec_merge(&ClusterSpec::default(), docker)?;
    spec.ca.force_rotate = force_rotate;
    let autolock = r.auto_lock_managers.unwrap_or(false) || spec_autolock;
    spec.encryption.auto_lock_managers = autolock;
    validate_cluster_spec(&spec).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let defaults = NetworkBootstrap::default();
    let network_bootstrap = NetworkBootstrap {
        default_addr_pool: r
            .default_addr_pool
            .filter(|p| !p.is_empty())
            .unwrap_or(defaults.default_addr_pool),
        subnet_size: r
            .subnet_size
            .filter(|n| *n != 0)
            .unwrap_or(defaults.subnet_size),
        data_path_port: r
            .data_path_port
            .filter(|n| *n != 0)
            .unwrap_or(defaults.data_path_port),
    };
    validate_network_bootstrap(&network_bootstrap)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let data_path_addr = data_path_addr_in(r.data_path_addr)?;
    let (listen_addr, advertise) =
        listen_and_advertise(r.listen_addr.as_deref(), r.advertise_addr.as_deref())?;
    Ok(InitRequest {
        autolock,
        force_new_cluster: r.force_new_cluster.unwrap_or(false),
        advertise_addr: advertise,
        listen_addr,
        spec,
        network_bootstrap,
        data_path_addr,
        availability: availability_in(r.availability),
    })
}

/// `ListenAddr` normalized over [`DEFAULT_LISTEN_ADDR`], and `AdvertiseAddr` with the listen port
/// added when it names only a host; without an advertise address, a listen address that is not a
/// wildcard is advertised (Docker's rule), otherwise `""` (the daemon picks).
fn listen_and_advertise(listen: Option<&str>, advertise: Option<&str>) -> Result<(String, String)> {
    let listen_addr = normalize_addr("ListenAddr", listen.unwrap_or(""), DEFAULT_LISTEN_ADDR)?;
    let (listen_host, listen_port) = split_host_port(&listen_addr)
        .ok_or_else(|| ApiError::bad_request(format!("invalid ListenAddr {listen_addr:?}")))?;
    let advertise = match advertise.filter(|a| !a.is_empty()) {
        Some(a) => normalize_addr("AdvertiseAddr", a, &format!("0.0.0.0:{listen_port}"))?,
        None if is_wildcard(&listen_host) => String::new(),
        None => listen_addr.clone(),
    };
    Ok((listen_addr, advertise))
}

fn is_wildcard(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_unspecified(),
        Err(_) => host.is_empty(),
    }
}

/// Splits `host:port` / `[v6]:port` into the host (brackets removed) and the port text (`""`
/// when absent). `None` when the text cannot be an address.
fn split_host_port(addr: &str) -> Option<(String, String)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => "",
            p => p.strip_prefix(':')?,
        };
        return Some((host.to_string(), port.to_string()));
    }
    match addr.matches(':').count() {
        0 => Some((addr.to_string(), String::new())),
        1 => addr
            .split_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string())),
        // A bare IPv6 address: no port.
        _ => addr
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|_| (addr.to_string(), String::new())),
    }
}

/// Docker's `ParseTCPAddr` over `default` (`host:port`): an optional `tcp://` prefix, a missing
/// host or port taken from `default`, the port a number in 1..=65535. Answers `host:port` (IPv6
/// in brackets). Errors name the field, in Docker's words (`Invalid bind address format: X`).
pub(crate) fn normalize_addr(field: &str, addr: &str, default: &str) -> Result<String> {
    let bad = |why: String| ApiError::bad_request(format!("invalid {field} {addr:?}: {why}"));
    let given = addr.trim();
    let given = given.strip_prefix("tcp://").unwrap_or(given);
    if given.is_empty() {
        return Ok(default.to_string());
    }
    if given.contains("://") {
        return Err(bad(format!("Invalid proto, expected tcp: {addr}")));
    }
    let format_err = || bad(format!("Invalid bind address format: {addr}"));
    let (mut host, mut port) = split_host_port(given).ok_or_else(format_err)?;
    let (default_host, default_port) = split_host_port(default)
        .unwrap_or_else(|| ("0.0.0.0".into(), DEFAULT_SWARM_PORT.to_string()));
    if host.is_empty() {
        host = default_host;
    }
    if port.is_empty() {
        port = default_port;
    }
    let host_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    if !host_ok || !port_ok {
        return Err(format_err());
    }
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// `POST /swarm/join` (`RemoteAddrs` and `JoinToken` besides what init has); unknown fields are
/// ignored.
#[derive(Default, Deserialize)]
pub(crate) struct JoinRequestJson {
    #[serde(rename = "ListenAddr", default)]
    listen_addr: Option<String>,
    #[serde(rename = "AdvertiseAddr", default)]
    advertise_addr: Option<String>,
    #[serde(rename = "DataPathAddr", default)]
    data_path_addr: Option<String>,
    #[serde(rename = "RemoteAddrs", default)]
    remote_addrs: Option<Vec<String>>,
    #[serde(rename = "JoinToken", default)]
    join_token: Option<String>,
    #[serde(rename = "Availability", default)]
    availability: Option<models::NodeSpecAvailabilityEnum>,
}

impl Drop for JoinRequestJson {
    fn drop(&mut self) {
        if let Some(t) = self.join_token.as_mut() {
            zeroize::Zeroize::zeroize(t);
        }
    }
}

fn availability_in(a: Option<models::NodeSpecAvailabilityEnum>) -> Option<NodeAvailability> {
    use models::NodeSpecAvailabilityEnum as A;
    match a {
        Some(A::ACTIVE) => Some(NodeAvailability::Active),
        Some(A::PAUSE) => Some(NodeAvailability::Pause),
        Some(A::DRAIN) => Some(NodeAvailability::Drain),
        Some(A::EMPTY) | None => None,
    }
}

fn data_path_addr_in(a: Option<String>) -> Result<Option<String>> {
    let a = a.filter(|a| !a.is_empty());
    if let Some(a) = &a {
        if a.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::bad_request(format!(
                "invalid DataPathAddr {a:?}: give an IP address"
            )));
        }
    }
    Ok(a)
}

/// The daemon's view of a `swarm join` request, validated as moby does
/// (`validateAndSanitizeJoinRequest`): every address normalized, at least one remote address,
/// a join token given.
pub(crate) fn join_request_in(mut r: JoinRequestJson) -> Result<JoinRequest> {
    let (listen_addr, advertise_addr) =
        listen_and_advertise(r.listen_addr.as_deref(), r.advertise_addr.as_deref())?;
    let remotes = r.remote_addrs.take().unwrap_or_default();
    if remotes.is_empty() {
        return Err(ApiError::bad_request(
            "at least 1 RemoteAddr is required to join",
        ));
    }
    let remote_addrs = remotes
        .iter()
        .map(|a| {
            if a.trim().is_empty() {
                return Err(ApiError::bad_request(format!(
                    "invalid remoteAddr {a:?}: invalid empty address"
                )));
            }
            normalize_addr("remoteAddr", a, DEFAULT_LISTEN_ADDR)
        })
        .collect::<Result<Vec<_>>>()?;
    let join_token = zeroize::Zeroizing::new(r.join_token.take().unwrap_or_default());
    if join_token.trim().is_empty() {
        return Err(ApiError::bad_request(
            "A valid join token is necessary to join this cluster",
        ));
    }
    Ok(JoinRequest {
        listen_addr,
        advertise_addr,
        data_path_addr: data_path_addr_in(r.data_path_addr.take())?,
        remote_addrs,
        join_token,
        availability: availability_in(r.availability.take()),
    })
}

/// Our cluster spec to Docker's `SwarmSpec`.
pub(crate) fn cluster_spec_out(s: &ClusterSpec) -> models::SwarmSpec {
    models::SwarmSpec {
        name: Some(s.annotations.name.clone()),
        labels: labels_out(&s.annotations.labels),
        orchestration: Some(models::SwarmSpecOrchestration {
            task_history_retention_limit: Some(s.orchestration.task_history_retention_limit),
        }),
        raft: Some(models::SwarmSpecRaft {
            snapshot_interval: Some(s.raft.snapshot_interval),
            keep_old_snapshots: Some(s.raft.keep_old_snapshots),
            log_entries_for_slow_followers: Some(s.raft.log_entries_for_slow_followers),
            election_tick: Some(i64::from(s.raft.election_tick)),
            heartbeat_tick: Some(i64::from(s.raft.heartbeat_tick)),
        }),
        dispatcher: Some(models::SwarmSpecDispatcher {
            heartbeat_period: Some(nanos(s.dispatcher.heartbeat_period)),
        }),
        ca_config: Some(models::SwarmSpecCaConfig {
            node_cert_expiry: Some(nanos(s.ca.node_cert_expiry)),
            external_cas: (!s.ca.external_cas.is_empty())
                .then(|| s.ca.external_cas.iter().map(external_ca_out).collect()),
            // Never shown, as in Docker: the signing key is a secret, the certificate becomes
            // the root (`TLSInfo.TrustRoot`).
            signing_ca_cert: None,
            signing_ca_key: None,
            force_rotate: (s.ca.force_rotate != 0).then_some(s.ca.force_rotate),
        }),
        encryption_config: Some(models::SwarmSpecEncryptionConfig {
            auto_lock_managers: Some(s.encryption.auto_lock_managers),
        }),
        task_defaults: Some(models::SwarmSpecTaskDefaults {
            log_driver: s.task_defaults.log_driver.as_ref().map(|d| {
                models::SwarmSpecTaskDefaultsLogDriver {
                    name: Some(d.name.clone()),
                    options: labels_out(&d.options),
                }
            }),
        }),
    }
}

fn external_ca_out(ca: &ExternalCa) -> models::SwarmSpecCaConfigExternalCas {
    models::SwarmSpecCaConfigExternalCas {
        protocol: Some(models::SwarmSpecCaConfigExternalCasProtocolEnum::CFSSL),
        url: Some(ca.url.clone()),
        options: labels_out(&ca.options),
        ca_cert: (!ca.ca_cert.is_empty()).then(|| ca.ca_cert.clone()),
    }
}

/// `POST /swarm/update` body merged over the current spec, as Docker merges it: zero values keep
/// the current setting. `ForceRotate` and `NodeCertExpiry` are recorded (the manager's CA loop
/// acts on them); a rotation to a given root (`SigningCACert`/`SigningCAKey`) is refused by name.
/// Ours: a missing `Labels` or `EncryptionConfig` also keeps it (Docker would clear labels and
/// turn autolock off).
pub(crate) fn cluster_spec_merge(cur: &ClusterSpec, s: models::SwarmSpec) -> Result<ClusterSpec> {
    let mut spec = cur.clone();
    if let Some(name) = s.name.filter(|n| !n.is_empty()) {
        spec.annotations.name = name;
    }
    if let Some(labels) = s.labels {
        spec.annotations.labels = labels.into_iter().collect();
    }
    if let Some(limit) = s.orchestration.and_then(|o| o.task_history_retention_limit) {
        spec.orchestration.task_history_retention_limit = limit;
    }
    if let Some(r) = s.raft {
        let tick = |what: &str, n: i64| {
            u32::try_from(n).map_err(|_| ApiError::bad_request(format!("invalid {what}: {n}")))
        };
        if let Some(n) = r.snapshot_interval.filter(|n| *n != 0) {
            spec.raft.snapshot_interval = n;
        }
        if let Some(n) = r.keep_old_snapshots {
            spec.raft.keep_old_snapshots = n;
        }
        if let Some(n) = r.log_entries_for_slow_followers.filter(|n| *n != 0) {
            spec.raft.log_entries_for_slow_followers = n;
        }
        if let Some(n) = r.heartbeat_tick.filter(|n| *n != 0) {
            spec.raft.heartbeat_tick = tick("HeartbeatTick", n)?;
        }
        if let Some(n) = r.election_tick.filter(|n| *n != 0) {
            spec.raft.election_tick = tick("ElectionTick", n)?;
        }
    }
    if let Some(n) = s
        .dispatcher
        .and_then(|d| d.heartbeat_period)
        .filter(|n| *n != 0)
    {
        spec.dispatcher.heartbeat_period = duration("heartbeat time period", n).map_err(|_| {
            ApiError::bad_request("heartbeat time period cannot be a negative duration")
        })?;
    }
    if let Some(ca) = s.ca_config {
        let signing = ca.signing_ca_cert.as_ref().is_some_and(|c| !c.is_empty())
            || ca.signing_ca_key.as_ref().is_some_and(|k| !k.is_empty());
        if signing {
            return Err(ApiError::bad_request(
                "CAConfig.SigningCACert/SigningCAKey: rotating to a given root CA is not supported by this daemon",
            ));
        }
        if let Some(n) = ca.node_cert_expiry.filter(|n| *n != 0) {
            spec.ca.node_cert_expiry = duration("CAConfig.NodeCertExpiry", n)?;
        }
        if let Some(cas) = ca.external_cas {
            spec.ca.external_cas = cas
                .into_iter()
                .map(|c| {
                    use models::SwarmSpecCaConfigExternalCasProtocolEnum as P;
                    match c.protocol {
                        Some(P::CFSSL) | Some(P::EMPTY) | None => Ok(ExternalCa {
                            protocol: "cfssl".into(),
                            url: c.url.unwrap_or_default(),
                            options: labels_in(c.options),
                            ca_cert: c.ca_cert.unwrap_or_default(),
                        }),
                    }
                })
                .collect::<Result<_>>()?;
        }
        // A changed counter asks for a root CA rotation now: recorded, and the manager's CA loop
        // reacts to it (new root, cross-signed, nodes reissued). A spec read and sent back keeps
        // the same value.
        if let Some(n) = ca.force_rotate {
            spec.ca.force_rotate = n;
        }
    }
    if let Some(t) = s.task_defaults {
        spec.task_defaults.log_driver = t
            .log_driver
            .filter(|d| d.name.as_ref().is_some_and(|n| !n.is_empty()))
            .map(|d| Driver {
                name: d.name.unwrap_or_default(),
                options: labels_in(d.options),
            });
    }
    if let Some(e) = s.encryption_config {
        spec.encryption.auto_lock_managers = e.auto_lock_managers.unwrap_or(false);
    }
    Ok(spec)
}

/// `GET /swarm`: the cluster with its join tokens (managers only: this API runs on managers).
pub(crate) fn swarm_out(c: &Cluster) -> models::Swarm {
    let info = cluster_info_out(c);
    models::Swarm {
        id: info.id,
        version: info.version,
        created_at: info.created_at,
        updated_at: info.updated_at,
        spec: info.spec,
        tls_info: info.tls_info,
        root_rotation_in_progress: info.root_rotation_in_progress,
        data_path_port: info.data_path_port,
        default_addr_pool: info.default_addr_pool,
        subnet_size: info.subnet_size,
        join_tokens: Some(models::JoinTokens {
            worker: Some(c.root_ca.join_tokens.worker.clone()),
            manager: Some(c.root_ca.join_tokens.manager.clone()),
        }),
    }
}

/// The cluster as `/info` shows it (no join tokens).
pub(crate) fn cluster_info_out(c: &Cluster) -> models::ClusterInfo {
    models::ClusterInfo {
        id: Some(c.id.to_string()),
        version: version(&c.meta),
        created_at: ts(c.meta.created_at),
        updated_at: ts(c.meta.updated_at),
        spec: Some(cluster_spec_out(&c.spec)),
        tls_info: Some(super::tls::tls_info_out(&c.root_ca.ca_cert_pem)),
        root_rotation_in_progress: Some(c.root_ca.root_rotation.is_some()),
        data_path_port: Some(c.network_bootstrap.data_path_port),
        default_addr_pool: Some(c.network_bootstrap.default_addr_pool.clone()),
        subnet_size: Some(c.network_bootstrap.subnet_size),
    }
}

/// Docker's name for a local node state.
pub(crate) fn local_state_out(s: LocalNodeState) -> models::LocalNodeState {
    match s {
        LocalNodeState::Inactive => models::LocalNodeState::INACTIVE,
        LocalNodeState::Pending => models::LocalNodeState::PENDING,
        LocalNodeState::Active => models::LocalNodeState::ACTIVE,
        LocalNodeState::Error => models::LocalNodeState::ERROR,
        LocalNodeState::Locked => models::LocalNodeState::LOCKED,
    }
}

/// What a manager adds to `/info`: the cluster, every node, and the raft members when known.
pub(crate) type ManagerView<'a> = (
    &'a Cluster,
    &'a [std::sync::Arc<Node>],
    Option<&'a [RaftMember]>,
);

/// The `Swarm` section of `/info` from this node's own view: `NodeID`, `NodeAddr`,
/// `LocalNodeState`, `ControlAvailable`, `Error`, `RemoteManagers` on every node in a swarm;
/// `Nodes`, `Managers` and `Cluster` only when `control` (a manager's store) gives them. A manager
/// whose backend names no remote managers lists the store's, with the raft view's addresses when
/// there is one; a missing `NodeAddr` comes from the store's node.
pub(crate) fn swarm_info_out(
    local: &LocalNodeInfo,
    control: Option<ManagerView<'_>>,
) -> models::SwarmInfo {
    let in_swarm = !matches!(
        local.state,
        LocalNodeState::Inactive | LocalNodeState::Locked
    );
    let mut info = models::SwarmInfo {
        node_id: Some(local.node_id.map(|n| n.to_string()).unwrap_or_default()),
        node_addr: Some(local.node_addr.clone()),
        local_node_state: Some(local_state_out(local.state)),
        control_available: Some(local.control_available),
        error: Some(local.error.clone()),
        remote_managers: (in_swarm && !local.remote_managers.is_empty()).then(|| {
            local
                .remote_managers
                .iter()
                .map(|(id, addr)| models::PeerNode {
                    node_id: Some(id.to_string()),
                    addr: Some(addr.clone()),
                })
                .collect()
        }),
        nodes: None,
        managers: None,
        cluster: None,
    };
    let Some((cluster, nodes, raft)) = control.filter(|_| local.control_available) else {
        return info;
    };
    let managers: Vec<_> = nodes
        .iter()
        .filter(|n| n.role == NodeRole::Manager)
        .collect();
    if local.node_addr.is_empty() {
        if let Some(me) = local.node_id {
            info.node_addr = nodes
                .iter()
                .find(|n| n.id == me)
                .map(|n| n.status.addr.clone());
        }
    }
    info.nodes = Some(i64::try_from(nodes.len()).unwrap_or(i64::MAX));
    info.managers = Some(i64::try_from(managers.len()).unwrap_or(i64::MAX));
    if info.remote_managers.is_none() {
        let peers = match raft {
            Some(members) => members
                .iter()
                .map(|m| models::PeerNode {
                    node_id: Some(m.node_id.map(|n| n.to_string()).unwrap_or_default()),
                    addr: Some(m.addr.clone()),
                })
                .collect(),
            None => managers
                .iter()
                .map(|n| models::PeerNode {
                    node_id: Some(n.id.to_string()),
                    addr: n.manager_status.as_ref().map(|m| m.addr.clone()),
                })
                .collect(),
        };
        info.remote_managers = Some(peers);
    }
    info.cluster = Some(cluster_info_out(cluster));
    info
}

/// `GET /info`.
pub(crate) fn info_out(d: &DaemonInfo, swarm: models::SwarmInfo) -> models::SystemInfo {
    models::SystemInfo {
        id: d.node_id.map(|n| n.to_string()),
        containers: Some(0),
        containers_running: Some(0),
        containers_paused: Some(0),
        containers_stopped: Some(0),
        images: Some(0),
        driver: Some(d.runtime.clone()),
        default_runtime: Some(d.runtime.clone()),
        docker_root_dir: Some(d.data_dir.clone()),
        name: Some(d.hostname.clone()),
        ncpu: Some(i64::try_from(d.ncpu).unwrap_or(i64::MAX)),
        mem_total: Some(i64::try_from(d.mem_total).unwrap_or(i64::MAX)),
        operating_system: Some(format!("swarm-node ({})", d.runtime)),
        os_type: Some(d.platform.os.clone()),
        architecture: Some(d.platform.architecture.clone()),
        server_version: Some(d.version.clone()),
        labels: Some(Vec::new()),
        experimental_build: Some(false),
        logging_driver: Some("json-file".into()),
        swarm: Some(swarm),
        warnings: Some(Vec::new()),
        ..Default::default()
    }
}

/// `GET /version`.
pub(crate) fn version_out(d: &DaemonInfo) -> models::SystemVersion {
    let details = [
        ("ApiVersion", API_VERSION),
        ("MinAPIVersion", MIN_API_VERSION),
        ("Os", d.platform.os.as_str()),
        ("Arch", &go_arch(&d.platform.architecture)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    models::SystemVersion {
        platform: Some(models::SystemVersionPlatform {
            name: "swarm-node".into(),
        }),
        components: Some(vec![models::SystemVersionComponents {
            name: "Engine".into(),
            version: d.version.clone(),
            details: Some(details),
        }]),
        version: Some(d.version.clone()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(String::new()),
        go_version: Some(String::new()),
        os: Some(d.platform.os.clone()),
        arch: Some(go_arch(&d.platform.architecture)),
        kernel_version: Some(String::new()),
        experimental: Some(false),
        build_time: Some(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalize_as_docker_parses_them() {
        let n = |a: &str| normalize_addr("ListenAddr", a, DEFAULT_LISTEN_ADDR);
        assert_eq!(n("").unwrap(), "0.0.0.0:2377");
        assert_eq!(n("10.0.0.1").unwrap(), "10.0.0.1:2377");
        assert_eq!(n("tcp://10.0.0.1:4000").unwrap(), "10.0.0.1:4000");
        assert_eq!(n(":4000").unwrap(), "0.0.0.0:4000");
        assert_eq!(n("eth0").unwrap(), "eth0:2377");
        assert_eq!(n("[::1]:4000").unwrap(), "[::1]:4000");
        assert_eq!(n("::1").unwrap(), "[::1]:2377");
        for bad in [
            "10.0.0.1:0",
            "10.0.0.1:65536",
            "10.0.0.1:x",
            "a b",
            "[::1",
            "udp://x",
        ] {
            let e = n(bad).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
            assert!(
                e.message
                    .starts_with(&format!("invalid ListenAddr {bad:?}: ")),
                "{e}"
            );
        }
        // Advertise: the listen port when only a host is given; a wildcard listen address is
        // not advertised.
        assert_eq!(
            listen_and_advertise(Some("0.0.0.0:4000"), Some("10.0.0.2")).unwrap(),
            ("0.0.0.0:4000".into(), "10.0.0.2:4000".into())
        );
        assert_eq!(
            listen_and_advertise(None, None).unwrap(),
            ("0.0.0.0:2377".into(), String::new())
        );
        assert_eq!(
            listen_and_advertise(Some("10.0.0.3"), None).unwrap(),
            ("10.0.0.3:2377".into(), "10.0.0.3:2377".into())
        );
    }
}
