//! Translating a [`TaskConfig`] into the Docker Engine's container-create body, and engine answers
//! (addresses, bound ports, errors) back into our types.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig as DockerHealth, HostConfig, Mount,
    MountBindOptions, MountTmpfsOptions, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, NetworkSettings, NetworkingConfig, PortBinding,
    ResourcesUlimits,
};
use swarm_core::objects::service::{
    AppArmorMode, ContainerSpec, HealthConfig, MountKind, PortConfig, Privileges, Protocol,
    PublishMode, SeccompMode,
};
use swarm_core::objects::task::TaskAddress;
use swarm_core::Id;

use crate::error::RuntimeError;
use crate::files::Staged;
use crate::runtime::TaskConfig;
use crate::signal::signal_name;

/// Labels every task container carries, as SwarmKit sets them.
pub(crate) const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";

/// Where a new container is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attach {
    /// The engine's default (`None`) or the network mode of runtime option
    /// `swarm.runtime.docker.network`.
    Mode(Option<String>),
    /// The engine network (by id) of the task's first swarm network, with the task's aliases
    /// there. The other swarm networks are connected after create: an API 1.41 engine takes one
    /// endpoint at create.
    Swarm {
        /// Engine network id.
        network: String,
        /// DNS aliases on it.
        aliases: Vec<String>,
    },
}

/// The create body for `config` with its staged files bind-mounted read-only one by one.
pub(crate) fn create_body(
    config: &TaskConfig,
    staged: &Staged,
    stop_signal: i32,
    attach: Attach,
) -> ContainerCreateBody {
    let spec = &config.container;
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_TASK_ID.into(), config.task_id.to_string());
    labels.insert(
        "com.docker.swarm.task.name".into(),
        config.task_name.clone(),
    );
    labels.insert(
        "com.docker.swarm.service.id".into(),
        config.service_id.to_string(),
    );
    labels.insert(
        "com.docker.swarm.service.name".into(),
        config.service_name.clone(),
    );
    labels.insert(
        "com.docker.swarm.node.id".into(),
        config.node_id.to_string(),
    );
    let binds: Vec<String> = staged
        .files
        .iter()
        .map(|f| format!("{}:{}:ro", f.host.display(), f.target))
        .collect();
    let mounts: Vec<Mount> =
        spec.mounts
            .iter()
            .map(|m| Mount {
                target: Some(m.target.clone()),
                source: (!m.source.is_empty()).then(|| m.source.clone()),
                typ: Some(match m.kind {
                    MountKind::Bind => MountType::BIND,
                    MountKind::Volume => MountType::VOLUME,
                    MountKind::Tmpfs => MountType::TMPFS,
                }),
                read_only: Some(m.read_only),
                volume_options: (m.kind == MountKind::Volume).then(|| {
                    let v = m.volume.clone().unwrap_or_default();
                    let driver = v.driver.unwrap_or_default();
                    MountVolumeOptions {
                        no_copy: Some(v.no_copy),
                        labels: (!v.labels.is_empty()).then(|| v.labels.into_iter().collect()),
                        driver_config: Some(MountVolumeOptionsDriverConfig {
                            name: Some(if driver.name.is_empty() {
                                "local".into()
                            } else {
                                driver.name
                            }),
                            options: (!driver.options.is_empty())
                                .then(|| driver.options.into_iter().collect()),
                        }),
                        ..MountVolumeOptions::default()
                    }
                }),
                tmpfs_options: m.tmpfs.as_ref().map(|t| MountTmpfsOptions {
                    size_bytes: (t.size_bytes > 0).then_some(t.size_bytes),
                    mode: (t.mode != 0).then_some(i64::from(t.mode)),
                    ..MountTmpfsOptions::default()
                }),
                bind_options: m.bind.filter(|_| m.kind == MountKind::Bind).map(|b| {
                    MountBindOptions {
                        propagation: b.propagation.as_str().parse().ok(),
                        non_recursive: b.non_recursive.then_some(true),
                        create_mountpoint: b.create_mountpoint.then_some(true),
                        read_only_non_recursive: b.read_only_non_recursive.then_some(true),
                        read_only_force_recursive: b.read_only_force_recursive.then_some(true),
                    }
                }),
                ..Mount::default()
            })
            .collect();
    let (network_mode, networking_config) = match attach {
        Attach::Mode(mode) => (mode, None),
        Attach::Swarm { network, aliases } => (
            Some(network.clone()),
            Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network,
                    EndpointSettings {
                        aliases: Some(aliases),
                        ..EndpointSettings::default()
                    },
                )])),
            }),
        ),
    };
    let host_ports: Vec<&PortConfig> = config
        .ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host)
        .collect();
    let mut exposed: Vec<String> = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &host_ports {
        let key = port_key(p.target_port, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(String::new()),
                host_port: Some(if p.published_port == 0 {
                    String::new()
                } else {
                    p.published_port.to_string()
                }),
            });
    }
    let limits = config.resources.limits;
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(spec.env.clone()),
        hostname: nonempty(&spec.hostname),
        working_dir: nonempty(&spec.dir),
        user: nonempty(&spec.user),
        tty: Some(spec.tty),
        open_stdin: spec.open_stdin.then_some(true),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        labels: Some(labels),
        stop_signal: Some(signal_name(stop_signal)),
        stop_timeout: Some(
            i64::try_from(spec.effective_stop_grace_period().as_secs()).unwrap_or(i64::MAX),
        ),
        // The agent runs health checks itself (through exec), for every runtime alike.
        healthcheck: Some(DockerHealth {
            test: Some(vec!["NONE".into()]),
            ..DockerHealth::default()
        }),
        host_config: Some(HostConfig {
            binds: Some(binds),
            mounts: (!mounts.is_empty()).then_some(mounts),
            readonly_rootfs: Some(spec.read_only),
            init: spec.init,
            extra_hosts: (!spec.hosts.is_empty()).then(|| extra_hosts(&spec.hosts)),
            group_add: (!spec.groups.is_empty()).then(|| spec.groups.clone()),
            nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
            memory: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
            pids_limit: (config.resources.pids_limit > 0).then_some(config.resources.pids_limit),
            cap_add: (!spec.capability_add.is_empty()).then(|| spec.capability_add.clone()),
            cap_drop: (!spec.capability_drop.is_empty()).then(|| spec.capability_drop.clone()),
            sysctls: (!spec.sysctls.is_empty()).then(|| {
                spec.sysctls
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            dns: dns(spec, |d| &d.nameservers),
            dns_search: dns(spec, |d| &d.search),
            dns_options: dns(spec, |d| &d.options),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|u| ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            oom_score_adj: (spec.oom_score_adj != 0).then_some(spec.oom_score_adj),
            security_opt: spec
                .privileges
                .as_ref()
                .map(security_opts)
                .filter(|o| !o.is_empty()),
            network_mode,
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            ..HostConfig::default()
        }),
        networking_config,
        ..ContainerCreateBody::default()
    }
}

/// One resolver list of the spec's `DNSConfig`, when it has entries.
fn dns(
    spec: &ContainerSpec,
    list: fn(&swarm_core::objects::service::DnsConfig) -> &Vec<String>,
) -> Option<Vec<String>> {
    spec.dns_config
        .as_ref()
        .map(list)
        .filter(|l| !l.is_empty())
        .cloned()
}

/// The service's `Hosts` (`/etc/hosts` lines: `IP name [alias...]`) as the engine's
/// `ExtraHosts` (`name:IP`, one per name), as Docker's swarm executor converts them. An entry
/// already in `name:IP` form (no whitespace) is passed on unchanged.
pub(crate) fn extra_hosts(hosts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for line in hosts {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.clone().next()) {
            (Some(ip), Some(_)) => out.extend(fields.map(|name| format!("{name}:{ip}"))),
            (Some(single), None) => out.push(single.to_string()),
            (None, _) => {}
        }
    }
    out
}

/// `Privileges` as the engine's `SecurityOpt` entries, as Docker's swarm executor maps them.
/// The Windows credential spec has no Linux form and is left out.
pub(crate) fn security_opts(p: &Privileges) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(se) = &p.selinux_context {
        if se.disable {
            out.push("label=disable".to_string());
        } else {
            for (key, value) in [
                ("user", &se.user),
                ("role", &se.role),
                ("type", &se.type_),
                ("level", &se.level),
            ] {
                if !value.is_empty() {
                    out.push(format!("label={key}:{value}"));
                }
            }
        }
    }
    if let Some(sc) = &p.seccomp {
        match sc.mode {
            SeccompMode::Default => {}
            SeccompMode::Unconfined => out.push("seccomp=unconfined".to_string()),
            SeccompMode::Custom => out.push(format!("seccomp={}", sc.profile)),
        }
    }
    if p.app_armor == Some(AppArmorMode::Disabled) {
        out.push("apparmor=unconfined".to_string());
    }
    if p.no_new_privileges {
        out.push("no-new-privileges=true".to_string());
    }
    out
}

/// Docker's key of a container port: `80/tcp`.
pub(crate) fn port_key(target: u32, protocol: Protocol) -> String {
    format!("{target}/{}", protocol.as_str())
}

fn parse_port_key(key: &str) -> Option<(u32, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    Some((port.parse().ok()?, protocol))
}

/// Rejects a bind mount whose absolute source does not exist on this host, in the engine's own
/// words, before anything is created (the engine is local: it is reached over a Unix socket).
/// Relative or empty sources are left to the engine, which refuses them at create.
pub(crate) fn check_bind_sources(config: &TaskConfig) -> Result<(), RuntimeError> {
    for m in &config.container.mounts {
        if m.kind != MountKind::Bind || !m.source.starts_with('/') {
            continue;
        }
        if let Err(e) = std::fs::metadata(Path::new(&m.source)) {
            if e.kind() == std::io::ErrorKind::NotFound {
                return Err(RuntimeError::invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    m.source
                )));
            }
        }
    }
    Ok(())
}

/// The addresses of a running container, one per address per network: `network_id` is the swarm
/// network whose engine network (by engine id, in `swarm_nets`) the endpoint is on, `None` for
/// any other engine network. Swarm networks come first in `swarm_nets` order, then the others by
/// name.
pub(crate) fn addresses(
    settings: Option<&NetworkSettings>,
    swarm_nets: &[(String, Id)],
) -> Vec<TaskAddress> {
    let Some(nets) = settings.and_then(|s| s.networks.as_ref()) else {
        return Vec::new();
    };
    let mut eps: Vec<(usize, &String, &EndpointSettings, Option<Id>)> = nets
        .iter()
        .map(|(name, ep)| {
            let engine_id = ep.network_id.as_deref().unwrap_or_default();
            match swarm_nets.iter().position(|(e, _)| e == engine_id) {
                Some(i) => (i, name, ep, Some(swarm_nets[i].1)),
                None => (usize::MAX, name, ep, None),
            }
        })
        .collect();
    eps.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut out = Vec::new();
    for (_, _, ep, network_id) in eps {
        for a in [&ep.ip_address, &ep.global_ipv6_address] {
            if let Some(addr) = a.as_deref().and_then(|a| a.parse::<IpAddr>().ok()) {
                out.push(TaskAddress { network_id, addr });
            }
        }
    }
    out
}

/// The host-mode ports bound for a container, from its `NetworkSettings.Ports`: one per
/// target/protocol with the host port actually bound, in the order of the config's ports.
pub(crate) fn bound_ports(
    settings: Option<&NetworkSettings>,
    wanted: &[PortConfig],
) -> Vec<PortConfig> {
    let Some(ports) = settings.and_then(|s| s.ports.as_ref()) else {
        return Vec::new();
    };
    let mut out: Vec<PortConfig> = Vec::new();
    let mut bound: Vec<(u32, Protocol, u32)> = ports
        .iter()
        .filter_map(|(key, b)| {
            let (target, protocol) = parse_port_key(key)?;
            let host = b
                .as_ref()?
                .iter()
                .find_map(|b| b.host_port.as_deref()?.parse::<u32>().ok())?;
            Some((target, protocol, host))
        })
        .collect();
    bound.sort_unstable();
    for p in wanted
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host)
    {
        let Some(&(_, _, host)) = bound
            .iter()
            .find(|(t, proto, _)| *t == p.target_port && *proto == p.protocol)
        else {
            continue;
        };
        if out
            .iter()
            .any(|o| o.target_port == p.target_port && o.protocol == p.protocol)
        {
            continue;
        }
        out.push(PortConfig {
            published_port: host,
            publish_mode: PublishMode::Host,
            ..p.clone()
        });
    }
    out
}

/// The reason of a failed start, naming the host-mode port when the engine could not bind one.
pub(crate) fn start_failure(reason: String, ports: &[PortConfig]) -> String {
    let host: Vec<&PortConfig> = ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host)
        .collect();
    let about_ports = [
        "port is already allocated",
        "address already in use",
        "userland proxy",
    ]
    .iter()
    .any(|m| reason.contains(m))
        || reason.contains("programming external connectivity");
    if host.is_empty() || !about_ports {
        return reason;
    }
    // The engine names the host port (`0.0.0.0:8080`); find which of ours it is.
    let named = host.iter().find(|p| {
        p.published_port != 0 && {
            let needle = format!(":{}", p.published_port);
            reason
                .match_indices(&needle)
                .any(|(i, _)| !reason[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
        }
    });
    match named.or((host.len() == 1).then(|| &host[0])) {
        Some(p) => format!(
            "host-mode port {}/{}: {reason}",
            p.published_port,
            p.protocol.as_str()
        ),
        None => format!("host-mode ports: {reason}"),
    }
}

fn nanos(n: Option<i64>) -> Option<Duration> {
    n.filter(|&n| n > 0)
        .map(|n| Duration::from_nanos(u64::try_from(n).unwrap_or(0)))
}

/// An image's health check in our terms (`None` when it has none).
pub(crate) fn image_health(h: Option<DockerHealth>) -> Option<HealthConfig> {
    let h = h?;
    let test = h.test.unwrap_or_default();
    if test.is_empty() {
        return None;
    }
    Some(HealthConfig {
        test,
        interval: nanos(h.interval),
        timeout: nanos(h.timeout),
        retries: h.retries.and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
        start_period: nanos(h.start_period),
    })
}

/// The HTTP status of an engine error, if it has one.
pub(crate) fn status_code(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's message (without bollard's wrapping).
pub(crate) fn message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn engine(op: &'static str, e: BollardError) -> RuntimeError {
    RuntimeError::Engine {
        op,
        message: message(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::StagedFile;
    use swarm_core::objects::service::ContainerSpec;
    use swarm_core::Id;

    /// Every container option the engine supports reaches the create body in the engine's
    /// form (Docker's swarm executor's mapping).
    #[test]
    fn container_options_reach_the_engine() {
        use swarm_core::objects::service::{
            BindOptions, DnsConfig, Mount as SwarmMount, Propagation, SeLinuxContext, SeccompOpts,
            Ulimit,
        };
        let spec = ContainerSpec {
            image: "busybox".into(),
            hostname: "h1".into(),
            read_only: true,
            init: Some(true),
            open_stdin: true,
            groups: vec!["audio".into()],
            hosts: vec!["10.0.0.1 a.example a".into(), "b.example:10.0.0.2".into()],
            capability_add: vec!["CAP_NET_ADMIN".into()],
            capability_drop: vec!["CAP_MKNOD".into()],
            sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
            dns_config: Some(DnsConfig {
                nameservers: vec!["10.0.0.53".into()],
                search: vec!["example.com".into()],
                options: vec!["ndots:2".into()],
            }),
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048,
            }],
            oom_score_adj: 100,
            privileges: Some(Privileges {
                selinux_context: Some(SeLinuxContext {
                    user: "system_u".into(),
                    type_: "container_t".into(),
                    ..SeLinuxContext::default()
                }),
                seccomp: Some(SeccompOpts {
                    mode: SeccompMode::Unconfined,
                    profile: String::new(),
                }),
                app_armor: Some(AppArmorMode::Disabled),
                no_new_privileges: true,
                credential_spec: None,
            }),
            mounts: vec![SwarmMount {
                kind: MountKind::Bind,
                source: "/srv".into(),
                target: "/srv".into(),
                bind: Some(BindOptions {
                    propagation: Propagation::RSlave,
                    non_recursive: true,
                    ..BindOptions::default()
                }),
                ..SwarmMount::default()
            }],
            ..ContainerSpec::default()
        };
        let mut c = TaskConfig::new(Id::from_u128(1), "web", spec);
        c.resources.pids_limit = 100;
        let b = create_body(&c, &Staged::default(), libc::SIGINT, Attach::Mode(None));
        assert_eq!(b.hostname.as_deref(), Some("h1"));
        assert_eq!(b.open_stdin, Some(true));
        assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
        let h = b.host_config.expect("host config");
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.init, Some(true));
        assert_eq!(h.group_add, Some(vec!["audio".to_string()]));
        assert_eq!(
            h.extra_hosts,
            Some(vec![
                "a.example:10.0.0.1".to_string(),
                "a:10.0.0.1".to_string(),
                "b.example:10.0.0.2".to_string()
            ])
        );
        assert_eq!(h.cap_add, Some(vec!["CAP_NET_ADMIN".to_string()]));
        assert_eq!(h.cap_drop, Some(vec!["CAP_MKNOD".to_string()]));
        assert_eq!(
            h.sysctls.as_ref().and_then(|s| s.get("net.core.somaxconn")),
            Some(&"1024".to_string())
        );
        assert_eq!(h.dns, Some(vec!["10.0.0.53".to_string()]));
        assert_eq!(h.dns_search, Some(vec!["example.com".to_string()]));
        assert_eq!(h.dns_options, Some(vec!["ndots:2".to_string()]));
        let u = &h.ulimits.as_ref().expect("ulimits")[0];
        assert_eq!(
            (u.name.as_deref(), u.soft, u.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        assert_eq!(h.oom_score_adj, Some(100));
        assert_eq!(h.pids_limit, Some(100));
        assert_eq!(
            h.security_opt,
            Some(vec![
                "label=user:system_u".to_string(),
                "label=type:container_t".to_string(),
                "seccomp=unconfined".to_string(),
                "apparmor=unconfined".to_string(),
                "no-new-privileges=true".to_string(),
            ])
        );
        let bind = h.mounts.expect("mounts")[0]
            .bind_options
            .clone()
            .expect("bind options");
        assert_eq!(
            bind.propagation.map(|p| p.to_string()).as_deref(),
            Some("rslave")
        );
        assert_eq!(bind.non_recursive, Some(true));
    }

    /// Options left at their defaults add nothing to the create body (the engine's defaults
    /// apply), and a disabled SELinux context is `label=disable` alone.
    #[test]
    fn default_options_add_nothing() {
        let c = TaskConfig::new(Id::from_u128(1), "web", ContainerSpec::default());
        let h = create_body(&c, &Staged::default(), libc::SIGTERM, Attach::Mode(None))
            .host_config
            .expect("host config");
        assert_eq!(
            (h.cap_add, h.cap_drop, h.sysctls, h.dns, h.ulimits),
            (None, None, None, None, None)
        );
        assert_eq!(
            (h.oom_score_adj, h.pids_limit, h.security_opt),
            (None, None, None)
        );
        let p = Privileges {
            selinux_context: Some(swarm_core::objects::service::SeLinuxContext {
                disable: true,
                user: "ignored".into(),
                ..Default::default()
            }),
            seccomp: Some(swarm_core::objects::service::SeccompOpts {
                mode: SeccompMode::Custom,
                profile: "{}".into(),
            }),
            ..Privileges::default()
        };
        assert_eq!(security_opts(&p), ["label=disable", "seccomp={}"]);
        assert_eq!(extra_hosts(&["".into(), "  ".into()]), Vec::<String>::new());
    }

    #[test]
    fn create_body_labels_binds_and_disables_engine_healthchecks() {
        let mut c = TaskConfig::new(
            Id::from_u128(7),
            "web",
            ContainerSpec {
                image: "img".into(),
                command: vec!["sh".into()],
                ..ContainerSpec::default()
            },
        );
        c.container.stop_grace_period = Some(Duration::from_millis(1500));
        let staged = Staged {
            files: vec![StagedFile {
                host: "/dev/shm/x/secrets/pw".into(),
                target: "/run/secrets/pw".into(),
                in_secrets_dir: true,
            }],
            ..Staged::default()
        };
        let b = create_body(&c, &staged, libc::SIGINT, Attach::Mode(None));
        let labels = b.labels.unwrap();
        assert_eq!(labels[LABEL_TASK_ID], c.task_id.to_string());
        assert_eq!(labels["com.docker.swarm.service.name"], "web");
        assert_eq!(
            b.host_config.unwrap().binds.unwrap(),
            vec!["/dev/shm/x/secrets/pw:/run/secrets/pw:ro".to_string()]
        );
        assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(
            b.healthcheck.unwrap().test.unwrap(),
            vec!["NONE".to_string()]
        );
        assert!(b.cmd.is_none());
    }

    #[test]
    fn image_healthchecks_convert() {
        let h = image_health(Some(DockerHealth {
            test: Some(vec!["CMD-SHELL".into(), "true".into()]),
            interval: Some(2_000_000_000),
            retries: Some(5),
            ..DockerHealth::default()
        }))
        .unwrap();
        assert_eq!(h.interval, Some(Duration::from_secs(2)));
        assert_eq!(h.retries, 5);
        assert!(image_health(None).is_none());
    }
    fn port(target: u32, published: u32, protocol: Protocol, mode: PublishMode) -> PortConfig {
        PortConfig {
            name: String::new(),
            protocol,
            target_port: target,
            published_port: published,
            publish_mode: mode,
        }
    }

    #[test]
    fn only_host_mode_ports_are_bound() {
        let mut c = TaskConfig::new(Id::from_u128(1), "web", ContainerSpec::default());
        c.ports = vec![
            port(80, 8080, Protocol::Tcp, PublishMode::Host),
            port(53, 0, Protocol::Udp, PublishMode::Host),
            port(9, 0, Protocol::Sctp, PublishMode::Host),
            port(443, 30443, Protocol::Tcp, PublishMode::Ingress),
        ];
        let b = create_body(&c, &Staged::default(), libc::SIGTERM, Attach::Mode(None));
        let mut exposed = b.exposed_ports.unwrap();
        exposed.sort();
        assert_eq!(exposed, vec!["53/udp", "80/tcp", "9/sctp"]);
        let bindings = b.host_config.unwrap().port_bindings.unwrap();
        assert_eq!(bindings.len(), 3);
        let host = |k: &str| bindings[k].as_ref().unwrap()[0].host_port.clone().unwrap();
        assert_eq!(host("80/tcp"), "8080");
        assert_eq!(host("53/udp"), "", "published 0 lets the engine pick");
        assert_eq!(host("9/sctp"), "");
    }

    #[test]
    fn first_swarm_network_is_the_mode_with_its_aliases() {
        let c = TaskConfig::new(Id::from_u128(1), "web", ContainerSpec::default());
        let aliases = vec!["web".to_string(), "tasks.web".to_string()];
        let b = create_body(
            &c,
            &Staged::default(),
            libc::SIGTERM,
            Attach::Swarm {
                network: "abc123".into(),
                aliases: aliases.clone(),
            },
        );
        assert_eq!(
            b.host_config.unwrap().network_mode.as_deref(),
            Some("abc123")
        );
        let eps = b.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(eps["abc123"].aliases.as_ref(), Some(&aliases));
    }

    #[test]
    fn volume_mounts_carry_options_and_default_driver() {
        use swarm_core::objects::secret::Driver;
        use swarm_core::objects::service::{Mount as SwarmMount, VolumeOptions};
        let mut c = TaskConfig::new(Id::from_u128(1), "web", ContainerSpec::default());
        c.container.mounts = vec![
            SwarmMount {
                kind: MountKind::Volume,
                source: "data".into(),
                target: "/data".into(),
                read_only: true,
                volume: Some(VolumeOptions {
                    no_copy: true,
                    labels: [("a".to_string(), "b".to_string())].into(),
                    driver: Some(Driver {
                        name: "local".into(),
                        options: [("type".to_string(), "tmpfs".to_string())].into(),
                    }),
                }),
                tmpfs: None,
                bind: None,
            },
            SwarmMount {
                kind: MountKind::Volume,
                source: "plain".into(),
                target: "/plain".into(),
                ..SwarmMount::default()
            },
            SwarmMount {
                kind: MountKind::Bind,
                source: "/srv".into(),
                target: "/srv".into(),
                read_only: true,
                ..SwarmMount::default()
            },
        ];
        let b = create_body(&c, &Staged::default(), libc::SIGTERM, Attach::Mode(None));
        let mounts = b.host_config.unwrap().mounts.unwrap();
        let v = mounts[0].volume_options.as_ref().unwrap();
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(v.no_copy, Some(true));
        assert_eq!(v.labels.as_ref().unwrap()["a"], "b");
        let d = v.driver_config.as_ref().unwrap();
        assert_eq!(d.options.as_ref().unwrap()["type"], "tmpfs");
        let plain = mounts[1].volume_options.as_ref().unwrap();
        assert_eq!(
            plain.driver_config.as_ref().unwrap().name.as_deref(),
            Some("local")
        );
        assert!(
            mounts[2].volume_options.is_none(),
            "the engine refuses them on binds"
        );
        assert_eq!(mounts[2].read_only, Some(true));
    }

    #[test]
    fn missing_bind_source_is_rejected_in_dockers_words() {
        let mut c = TaskConfig::new(Id::from_u128(1), "web", ContainerSpec::default());
        c.container.mounts = vec![swarm_core::objects::service::Mount {
            kind: MountKind::Bind,
            source: "/no/such/dir/for/swarm".into(),
            target: "/x".into(),
            ..Default::default()
        }];
        let e = check_bind_sources(&c).unwrap_err();
        assert!(e.is_rejection());
        assert!(
            e.to_string().contains(
                "invalid mount config for type \"bind\": bind source path does not exist: \
                 /no/such/dir/for/swarm"
            ),
            "{e}"
        );
        c.container.mounts[0].source = "/".into();
        assert!(check_bind_sources(&c).is_ok());
    }

    #[test]
    fn addresses_map_engine_networks_to_swarm_ids() {
        let settings = NetworkSettings {
            networks: Some(HashMap::from([
                (
                    "bridge".to_string(),
                    EndpointSettings {
                        network_id: Some("e0".into()),
                        ip_address: Some("172.17.0.2".into()),
                        ..EndpointSettings::default()
                    },
                ),
                (
                    "swarm-b-x".to_string(),
                    EndpointSettings {
                        network_id: Some("e2".into()),
                        ip_address: Some("10.0.2.5".into()),
                        global_ipv6_address: Some("fd00::5".into()),
                        ..EndpointSettings::default()
                    },
                ),
                (
                    "swarm-a-x".to_string(),
                    EndpointSettings {
                        network_id: Some("e1".into()),
                        ip_address: Some("10.0.1.5".into()),
                        global_ipv6_address: Some(String::new()),
                        ..EndpointSettings::default()
                    },
                ),
            ])),
            ..NetworkSettings::default()
        };
        let a = Id::from_u128(1);
        let b = Id::from_u128(2);
        let got = addresses(Some(&settings), &[("e1".into(), a), ("e2".into(), b)]);
        let want = [
            (Some(a), "10.0.1.5"),
            (Some(b), "10.0.2.5"),
            (Some(b), "fd00::5"),
            (None, "172.17.0.2"),
        ];
        let want: Vec<TaskAddress> = want
            .iter()
            .map(|(n, ip)| TaskAddress {
                network_id: *n,
                addr: ip.parse().unwrap(),
            })
            .collect();
        assert_eq!(got, want);
        assert!(addresses(None, &[]).is_empty());
    }

    #[test]
    fn bound_ports_report_the_real_host_port_once() {
        let binding = |p: &str| PortBinding {
            host_ip: Some("0.0.0.0".into()),
            host_port: Some(p.into()),
        };
        let settings = NetworkSettings {
            ports: Some(HashMap::from([
                (
                    "80/tcp".to_string(),
                    Some(vec![binding("49153"), binding("49153")]),
                ),
                ("53/udp".to_string(), Some(vec![binding("5353")])),
                ("8080/tcp".to_string(), None),
            ])),
            ..NetworkSettings::default()
        };
        let wanted = [
            port(80, 0, Protocol::Tcp, PublishMode::Host),
            port(53, 5353, Protocol::Udp, PublishMode::Host),
            port(8080, 30000, Protocol::Tcp, PublishMode::Ingress),
        ];
        let got = bound_ports(Some(&settings), &wanted);
        assert_eq!(
            got,
            vec![
                port(80, 49153, Protocol::Tcp, PublishMode::Host),
                port(53, 5353, Protocol::Udp, PublishMode::Host),
            ]
        );
    }

    #[test]
    fn start_failures_name_the_host_port() {
        let ports = [
            port(80, 18080, Protocol::Tcp, PublishMode::Host),
            port(81, 1808, Protocol::Tcp, PublishMode::Host),
        ];
        let msg = "driver failed programming external connectivity on endpoint x (y): Error \
                   starting userland proxy: listen tcp4 0.0.0.0:1808: bind: address already in use";
        assert_eq!(
            start_failure(msg.into(), &ports),
            format!("host-mode port 1808/tcp: {msg}")
        );
        let other = "OCI runtime create failed: exec: \"nope\": not found";
        assert_eq!(start_failure(other.into(), &ports), other);
    }
}
