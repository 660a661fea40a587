//! Task templates (`TaskSpec`, both ways) and tasks (out).
//!
//! Every field of Docker's `TaskSpec` (API 1.44) is kept, except `Mounts[].Consistency` (Docker
//! drops it too) and `Resources.SwapBytes`/`MemorySwappiness` (newer than 1.44). Output follows
//! Docker 20.10's shape: `Healthcheck` (not the swagger's `HealthCheck`), `Isolation` always
//! present, `RestartPolicy`, `Resources` and `Placement` left out unless given or
//! `insertDefaults=true`.

use bollard::models;
use serde::Serialize;
use swarm_core::objects::node::{Platform, Resources};
use swarm_core::objects::secret::Driver;
use swarm_core::objects::service::{
    AppArmorMode, BindOptions, ContainerSpec, CredentialSpec, DnsConfig, FileTarget,
    GenericResource, HealthConfig, Isolation, Mount, MountKind, NetworkAttachmentConfig, Placement,
    Privileges, Propagation, ResourceRequirements, RestartCondition, RestartPolicy, SeLinuxContext,
    SeccompMode, SeccompOpts, TmpfsOptions, Ulimit, VolumeOptions,
};
use swarm_core::{Task, TaskSpec, TaskState};

use super::{count, labels_in, labels_out, nanos, non_empty, opt_duration, ts};
use super::{version, Result};
use crate::api::error::ApiError;
use crate::control::FileRef;

/// Default file mode of a mounted secret or config.
const DEFAULT_FILE_MODE: u32 = 0o444;

/// A task template from Docker's JSON, with its secret and config references still unresolved.
#[derive(Debug)]
pub(crate) struct TaskSpecIn {
    pub(crate) spec: TaskSpec,
    pub(crate) secrets: Vec<FileRef>,
    pub(crate) configs: Vec<FileRef>,
    /// The client gave a `RestartPolicy`.
    pub(crate) restart_given: bool,
}

/// Docker's `TaskTemplate` to ours.
pub(crate) fn task_spec_in(t: models::TaskSpec) -> Result<TaskSpecIn> {
    if t.plugin_spec.is_some() || t.network_attachment_spec.is_some() {
        return Err(ApiError::bad_request(
            "only container tasks are supported: PluginSpec and NetworkAttachmentSpec are not",
        ));
    }
    if let Some(rt) = t.runtime.as_deref() {
        if !rt.is_empty() && rt != "container" {
            return Err(ApiError::bad_request(format!(
                "unsupported runtime type: {rt:?}"
            )));
        }
    }
    let c = t.container_spec.unwrap_or_default();
    let file = |f: Option<models::TaskSpecContainerSpecFile>| {
        let f = f.unwrap_or_default();
        FileTarget {
            name: f.name.unwrap_or_default(),
            uid: f.uid.unwrap_or_else(|| "0".into()),
            gid: f.gid.unwrap_or_else(|| "0".into()),
            mode: f.mode.unwrap_or(DEFAULT_FILE_MODE),
        }
    };
    let secrets = c
        .secrets
        .unwrap_or_default()
        .into_iter()
        .map(|s| FileRef {
            id: s.secret_id.unwrap_or_default(),
            name: s.secret_name.unwrap_or_default(),
            target: file(s.file),
        })
        .collect();
    let configs = c
        .configs
        .unwrap_or_default()
        .into_iter()
        .map(|s| FileRef {
            id: s.config_id.unwrap_or_default(),
            name: s.config_name.unwrap_or_default(),
            target: file(s.file.map(|f| models::TaskSpecContainerSpecFile {
                name: f.name,
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
            })),
        })
        .collect();
    let container = ContainerSpec {
        image: c.image.unwrap_or_default(),
        labels: labels_in(c.labels),
        command: c.command.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        hostname: c.hostname.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        dir: c.dir.unwrap_or_default(),
        user: c.user.unwrap_or_default(),
        groups: c.groups.unwrap_or_default(),
        tty: c.tty.unwrap_or(false),
        read_only: c.read_only.unwrap_or(false),
        mounts: c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(mount_in)
            .collect::<Result<_>>()?,
        stop_signal: c.stop_signal.unwrap_or_default(),
        stop_grace_period: opt_duration("ContainerSpec: StopGracePeriod", c.stop_grace_period)?,
        healthcheck: c.health_check.map(health_in).transpose()?,
        hosts: c.hosts.unwrap_or_default(),
        secrets: Vec::new(),
        configs: Vec::new(),
        init: c.init,
        privileges: c.privileges.map(privileges_in).transpose()?,
        open_stdin: c.open_stdin.unwrap_or(false),
        dns_config: c.dns_config.map(|d| DnsConfig {
            nameservers: d.nameservers.unwrap_or_default(),
            search: d.search.unwrap_or_default(),
            options: d.options.unwrap_or_default(),
        }),
        isolation: isolation_in(c.isolation),
        sysctls: labels_in(c.sysctls),
        capability_add: c.capability_add.unwrap_or_default(),
        capability_drop: c.capability_drop.unwrap_or_default(),
        ulimits: c
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|u| Ulimit {
                name: u.name.unwrap_or_default(),
                soft: u.soft.unwrap_or(0),
                hard: u.hard.unwrap_or(0),
            })
            .collect(),
        oom_score_adj: c.oom_score_adj.unwrap_or(0),
    };
    let r = t.resources.unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let reservations = r.reservations.unwrap_or_default();
    let restart = t.restart_policy.map(restart_in).transpose()?;
    let restart_given = restart.is_some();
    let p = t.placement.unwrap_or_default();
    let spec = TaskSpec {
        container,
        resources: ResourceRequirements {
            limits: Resources {
                nano_cpus: limits.nano_cpus.unwrap_or(0),
                memory_bytes: limits.memory_bytes.unwrap_or(0),
            },
            reservations: Resources {
                nano_cpus: reservations.nano_cpus.unwrap_or(0),
                memory_bytes: reservations.memory_bytes.unwrap_or(0),
            },
            pids_limit: limits.pids.unwrap_or(0),
            generic_reservations: reservations
                .generic_resources
                .unwrap_or_default()
                .into_iter()
                .map(generic_in)
                .collect::<Result<_>>()?,
        },
        restart: restart.unwrap_or_default(),
        placement: Placement {
            constraints: p.constraints.unwrap_or_default(),
            preferences: p
                .preferences
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.spread.and_then(|s| s.spread_descriptor))
                .collect(),
            max_replicas: count("Placement: MaxReplicas", p.max_replicas.unwrap_or(0))?,
            platforms: p
                .platforms
                .unwrap_or_default()
                .into_iter()
                .map(|p| Platform {
                    architecture: p.architecture.unwrap_or_default(),
                    os: p.os.unwrap_or_default(),
                })
                .collect(),
        },
        networks: networks_in(t.networks),
        force_update: t.force_update.unwrap_or(0),
        log_driver: t.log_driver.map(|d| Driver {
            name: d.name.unwrap_or_default(),
            options: labels_in(d.options),
        }),
    };
    Ok(TaskSpecIn {
        spec,
        secrets,
        configs,
        restart_given,
    })
}

/// Network attachments (targets still as the client named them).
pub(crate) fn networks_in(
    n: Option<Vec<models::NetworkAttachmentConfig>>,
) -> Vec<NetworkAttachmentConfig> {
    n.unwrap_or_default()
        .into_iter()
        .map(|n| NetworkAttachmentConfig {
            target: n.target.unwrap_or_default(),
            aliases: n.aliases.unwrap_or_default(),
            driver_opts: labels_in(n.driver_opts),
        })
        .collect()
}

fn generic_in(g: models::GenericResourcesInner) -> Result<GenericResource> {
    match (g.named_resource_spec, g.discrete_resource_spec) {
        (Some(n), None) => Ok(GenericResource::Named {
            kind: n.kind.unwrap_or_default(),
            value: n.value.unwrap_or_default(),
        }),
        (None, Some(d)) => Ok(GenericResource::Discrete {
            kind: d.kind.unwrap_or_default(),
            value: d.value.unwrap_or(0),
        }),
        _ => Err(ApiError::bad_request(
            "GenericResources: each entry needs exactly one of NamedResourceSpec and DiscreteResourceSpec",
        )),
    }
}

fn generic_out(g: &GenericResource) -> models::GenericResourcesInner {
    match g {
        GenericResource::Named { kind, value } => models::GenericResourcesInner {
            named_resource_spec: Some(models::GenericResourcesInnerNamedResourceSpec {
                kind: Some(kind.clone()),
                value: Some(value.clone()),
            }),
            discrete_resource_spec: None,
        },
        GenericResource::Discrete { kind, value } => models::GenericResourcesInner {
            named_resource_spec: None,
            discrete_resource_spec: Some(models::GenericResourcesInnerDiscreteResourceSpec {
                kind: Some(kind.clone()),
                value: Some(*value),
            }),
        },
    }
}

fn isolation_in(i: Option<models::TaskSpecContainerSpecIsolationEnum>) -> Isolation {
    use models::TaskSpecContainerSpecIsolationEnum as I;
    match i {
        Some(I::PROCESS) => Isolation::Process,
        Some(I::HYPERV) => Isolation::Hyperv,
        Some(I::DEFAULT) | Some(I::EMPTY) | None => Isolation::Default,
    }
}

fn isolation_out(i: Isolation) -> models::TaskSpecContainerSpecIsolationEnum {
    use models::TaskSpecContainerSpecIsolationEnum as I;
    match i {
        Isolation::Default => I::DEFAULT,
        Isolation::Process => I::PROCESS,
        Isolation::Hyperv => I::HYPERV,
    }
}

fn privileges_in(p: models::TaskSpecContainerSpecPrivileges) -> Result<Privileges> {
    use models::TaskSpecContainerSpecPrivilegesAppArmorModeEnum as A;
    use models::TaskSpecContainerSpecPrivilegesSeccompModeEnum as S;
    let credential_spec = match p.credential_spec {
        None => None,
        Some(c) => {
            let given: Vec<CredentialSpec> = [
                c.config
                    .filter(|v| !v.is_empty())
                    .map(CredentialSpec::Config),
                c.file.filter(|v| !v.is_empty()).map(CredentialSpec::File),
                c.registry
                    .filter(|v| !v.is_empty())
                    .map(CredentialSpec::Registry),
            ]
            .into_iter()
            .flatten()
            .collect();
            if given.len() > 1 {
                return Err(ApiError::bad_request(
                    "invalid CredentialSpec: only one of Config, File or Registry may be set",
                ));
            }
            given.into_iter().next()
        }
    };
    Ok(Privileges {
        credential_spec,
        selinux_context: p.se_linux_context.map(|s| SeLinuxContext {
            disable: s.disable.unwrap_or(false),
            user: s.user.unwrap_or_default(),
            role: s.role.unwrap_or_default(),
            type_: s.typ.unwrap_or_default(),
            level: s.level.unwrap_or_default(),
        }),
        seccomp: match p.seccomp {
            None => None,
            Some(sc) => {
                let mode = match sc.mode {
                    Some(S::UNCONFINED) => SeccompMode::Unconfined,
                    Some(S::CUSTOM) => SeccompMode::Custom,
                    Some(S::DEFAULT) | Some(S::EMPTY) | None => SeccompMode::Default,
                };
                let profile = sc.profile.unwrap_or_default();
                if (mode == SeccompMode::Custom) == profile.is_empty() {
                    return Err(ApiError::bad_request(
                        "invalid Seccomp: a Profile is required with mode custom, and only then",
                    ));
                }
                Some(SeccompOpts { mode, profile })
            }
        },
        app_armor: p.app_armor.map(|a| match a.mode {
            Some(A::DISABLED) => AppArmorMode::Disabled,
            Some(A::DEFAULT) | Some(A::EMPTY) | None => AppArmorMode::Default,
        }),
        no_new_privileges: p.no_new_privileges.unwrap_or(false),
    })
}

fn privileges_out(p: &Privileges) -> models::TaskSpecContainerSpecPrivileges {
    use models::TaskSpecContainerSpecPrivilegesAppArmorModeEnum as A;
    use models::TaskSpecContainerSpecPrivilegesSeccompModeEnum as S;
    models::TaskSpecContainerSpecPrivileges {
        credential_spec: p.credential_spec.as_ref().map(|c| {
            let mut out = models::TaskSpecContainerSpecPrivilegesCredentialSpec::default();
            match c {
                CredentialSpec::Config(v) => out.config = Some(v.clone()),
                CredentialSpec::File(v) => out.file = Some(v.clone()),
                CredentialSpec::Registry(v) => out.registry = Some(v.clone()),
            }
            out
        }),
        se_linux_context: p.selinux_context.as_ref().map(|s| {
            models::TaskSpecContainerSpecPrivilegesSeLinuxContext {
                disable: Some(s.disable),
                user: Some(s.user.clone()),
                role: Some(s.role.clone()),
                typ: Some(s.type_.clone()),
                level: Some(s.level.clone()),
            }
        }),
        seccomp: p
            .seccomp
            .as_ref()
            .map(|s| models::TaskSpecContainerSpecPrivilegesSeccomp {
                mode: Some(match s.mode {
                    SeccompMode::Default => S::DEFAULT,
                    SeccompMode::Unconfined => S::UNCONFINED,
                    SeccompMode::Custom => S::CUSTOM,
                }),
                profile: non_empty(s.profile.clone()),
            }),
        app_armor: p
            .app_armor
            .map(|a| models::TaskSpecContainerSpecPrivilegesAppArmor {
                mode: Some(match a {
                    AppArmorMode::Default => A::DEFAULT,
                    AppArmorMode::Disabled => A::DISABLED,
                }),
            }),
        no_new_privileges: p.no_new_privileges.then_some(true),
    }
}

fn restart_in(r: models::TaskSpecRestartPolicy) -> Result<RestartPolicy> {
    use models::TaskSpecRestartPolicyConditionEnum as C;
    let d = RestartPolicy::default();
    Ok(RestartPolicy {
        condition: match r.condition {
            Some(C::NONE) => RestartCondition::None,
            Some(C::ON_FAILURE) => RestartCondition::OnFailure,
            Some(C::ANY) | Some(C::EMPTY) | None => RestartCondition::Any,
        },
        delay: opt_duration("TaskSpec: restart-delay", r.delay)?.unwrap_or(d.delay),
        max_attempts: count(
            "TaskSpec: restart-max-attempts",
            r.max_attempts.unwrap_or(0),
        )?,
        window: opt_duration("TaskSpec: restart-window", r.window)?.unwrap_or(d.window),
    })
}

fn health_in(h: models::HealthConfig) -> Result<HealthConfig> {
    let nonzero = |what: &str, n: Option<i64>| {
        opt_duration(&format!("ContainerSpec: {what} in HealthConfig"), n)
            .map(|d| d.filter(|d| !d.is_zero()))
    };
    Ok(HealthConfig {
        test: h.test.unwrap_or_default(),
        interval: nonzero("Interval", h.interval)?,
        timeout: nonzero("Timeout", h.timeout)?,
        retries: u32::try_from(h.retries.unwrap_or(0)).map_err(|_| {
            ApiError::bad_request("ContainerSpec: Retries in HealthConfig cannot be negative")
        })?,
        start_period: nonzero("StartPeriod", h.start_period)?,
    })
}

fn mount_in(m: models::Mount) -> Result<Mount> {
    use models::MountType as T;
    let kind = match m.typ {
        Some(T::BIND) => MountKind::Bind,
        Some(T::TMPFS) => MountKind::Tmpfs,
        Some(T::VOLUME) | None => MountKind::Volume,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mount type {other:?} is not supported: use bind, volume or tmpfs"
            )))
        }
    };
    let bind = match m.bind_options {
        None => None,
        Some(b) => Some(BindOptions {
            propagation: match b.propagation {
                None | Some(models::MountBindOptionsPropagationEnum::EMPTY) => {
                    Propagation::default()
                }
                Some(p) => Propagation::parse(p.as_ref()).ok_or_else(|| {
                    ApiError::bad_request(format!("invalid mount propagation {p}"))
                })?,
            },
            non_recursive: b.non_recursive.unwrap_or(false),
            create_mountpoint: b.create_mountpoint.unwrap_or(false),
            read_only_non_recursive: b.read_only_non_recursive.unwrap_or(false),
            read_only_force_recursive: b.read_only_force_recursive.unwrap_or(false),
        }),
    };
    Ok(Mount {
        kind,
        bind,
        source: m.source.unwrap_or_default(),
        target: m.target.unwrap_or_default(),
        read_only: m.read_only.unwrap_or(false),
        volume: m.volume_options.map(|v| VolumeOptions {
            no_copy: v.no_copy.unwrap_or(false),
            labels: labels_in(v.labels),
            driver: v.driver_config.map(|d| Driver {
                name: d.name.unwrap_or_default(),
                options: labels_in(d.options),
            }),
        }),
        tmpfs: m
            .tmpfs_options
            .map(|t| -> Result<TmpfsOptions> {
                Ok(TmpfsOptions {
                    size_bytes: t.size_bytes.unwrap_or(0),
                    mode: u32::try_from(t.mode.unwrap_or(0))
                        .map_err(|_| ApiError::bad_request("TmpfsOptions.Mode is out of range"))?,
                })
            })
            .transpose()?,
    })
}

/// A task template as Docker writes it: bollard's model, with the container spec in
/// [`ContainerSpecJson`] so the health check is spelled `Healthcheck`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TaskSpecJson {
    #[serde(flatten)]
    pub(crate) spec: models::TaskSpec,
    #[serde(rename = "ContainerSpec", skip_serializing_if = "Option::is_none")]
    pub(crate) container: Option<ContainerSpecJson>,
}

/// A container spec as Docker writes it: `Healthcheck` (Go's field name; the swagger file and
/// bollard say `HealthCheck`, which Docker never writes).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ContainerSpecJson {
    #[serde(flatten)]
    pub(crate) spec: models::TaskSpecContainerSpec,
    #[serde(rename = "Healthcheck", skip_serializing_if = "Option::is_none")]
    pub(crate) healthcheck: Option<models::HealthConfig>,
}

impl TaskSpecJson {
    /// Back to bollard's model (tests and round trips decode it again).
    #[cfg(test)]
    pub(crate) fn into_model(self) -> models::TaskSpec {
        models::TaskSpec {
            container_spec: self.container.map(|c| models::TaskSpecContainerSpec {
                health_check: c.healthcheck,
                ..c.spec
            }),
            ..self.spec
        }
    }
}

/// Our task template to Docker's. `insert_defaults` spells out the stop grace period, the
/// restart policy and empty `Resources`/`Placement`/`DNSConfig`, as Docker's
/// `insertDefaults=true`; `restart_given` says the client gave a `RestartPolicy` (shown
/// either way when true).
pub(crate) fn task_spec_out(
    t: &TaskSpec,
    insert_defaults: bool,
    restart_given: bool,
) -> TaskSpecJson {
    let c = &t.container;
    let file = |f: &FileTarget| models::TaskSpecContainerSpecFile {
        name: Some(f.name.clone()),
        uid: Some(f.uid.clone()),
        gid: Some(f.gid.clone()),
        mode: Some(f.mode),
    };
    let grace = match (c.stop_grace_period, insert_defaults) {
        (Some(d), _) => Some(nanos(d)),
        (None, true) => Some(nanos(c.effective_stop_grace_period())),
        (None, false) => None,
    };
    let dns_config = match (&c.dns_config, insert_defaults) {
        (Some(d), _) => Some(models::TaskSpecContainerSpecDnsConfig {
            nameservers: non_empty(d.nameservers.clone()),
            search: non_empty(d.search.clone()),
            options: non_empty(d.options.clone()),
        }),
        (None, true) => Some(Default::default()),
        (None, false) => None,
    };
    let container = models::TaskSpecContainerSpec {
        image: Some(c.image.clone()),
        labels: non_empty(c.labels.clone()).and_then(|l| labels_out(&l)),
        command: non_empty(c.command.clone()),
        args: non_empty(c.args.clone()),
        hostname: non_empty(c.hostname.clone()),
        env: non_empty(c.env.clone()),
        dir: non_empty(c.dir.clone()),
        user: non_empty(c.user.clone()),
        groups: non_empty(c.groups.clone()),
        privileges: c.privileges.as_ref().map(privileges_out),
        tty: c.tty.then_some(true),
        open_stdin: c.open_stdin.then_some(true),
        read_only: c.read_only.then_some(true),
        mounts: non_empty(c.mounts.iter().map(mount_out).collect()),
        stop_signal: non_empty(c.stop_signal.clone()),
        stop_grace_period: grace,
        health_check: None,
        hosts: non_empty(c.hosts.clone()),
        dns_config,
        secrets: non_empty(
            c.secrets
                .iter()
                .map(|s| models::TaskSpecContainerSpecSecrets {
                    file: Some(file(&s.target)),
                    secret_id: Some(s.secret_id.to_string()),
                    secret_name: Some(s.secret_name.clone()),
                })
                .collect(),
        ),
        oom_score_adj: non_empty(c.oom_score_adj),
        configs: non_empty(
            c.configs
                .iter()
                .map(|s| {
                    let f = file(&s.target);
                    models::TaskSpecContainerSpecConfigs {
                        file: Some(models::TaskSpecContainerSpecFile1 {
                            name: f.name,
                            uid: f.uid,
                            gid: f.gid,
                            mode: f.mode,
                        }),
                        runtime: None,
                        config_id: Some(s.config_id.to_string()),
                        config_name: Some(s.config_name.clone()),
                    }
                })
                .collect(),
        ),
        isolation: Some(isolation_out(c.isolation)),
        init: c.init,
        sysctls: non_empty(c.sysctls.clone()).and_then(|l| labels_out(&l)),
        capability_add: non_empty(c.capability_add.clone()),
        capability_drop: non_empty(c.capability_drop.clone()),
        ulimits: non_empty(
            c.ulimits
                .iter()
                .map(|u| models::ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect(),
        ),
    };
    let healthcheck = c.healthcheck.as_ref().map(|h| models::HealthConfig {
        test: non_empty(h.test.clone()),
        interval: h.interval.map(nanos),
        timeout: h.timeout.map(nanos),
        retries: (h.retries != 0).then_some(i64::from(h.retries)),
        start_period: h.start_period.map(nanos),
        start_interval: None,
    });
    let r = &t.resources;
    let p = &t.placement;
    let restart = &t.restart;
    let resources = models::TaskSpecResources {
        limits: (r.limits != Resources::default() || r.pids_limit != 0).then(|| models::Limit {
            nano_cpus: non_empty(r.limits.nano_cpus),
            memory_bytes: non_empty(r.limits.memory_bytes),
            pids: non_empty(r.pids_limit),
        }),
        reservations: (r.reservations != Resources::default()
            || !r.generic_reservations.is_empty())
        .then(|| models::ResourceObject {
            nano_cpus: non_empty(r.reservations.nano_cpus),
            memory_bytes: non_empty(r.reservations.memory_bytes),
            generic_resources: non_empty(r.generic_reservations.iter().map(generic_out).collect()),
        }),
        ..Default::default()
    };
    let placement = models::TaskSpecPlacement {
        constraints: non_empty(p.constraints.clone()),
        preferences: non_empty(
            p.preferences
                .iter()
                .map(|d| models::TaskSpecPlacementPreferences {
                    spread: Some(models::TaskSpecPlacementSpread {
                        spread_descriptor: Some(d.clone()),
                    }),
                })
                .collect(),
        ),
        max_replicas: non_empty(i64::try_from(p.max_replicas).unwrap_or(i64::MAX)),
        platforms: non_empty(
            p.platforms
                .iter()
                .map(|p| models::Platform {
                    architecture: Some(p.architecture.clone()),
                    os: Some(p.os.clone()),
                })
                .collect(),
        ),
    };
    let spec = models::TaskSpec {
        container_spec: None,
        resources: (insert_defaults || resources != Default::default()).then_some(resources),
        restart_policy: (insert_defaults || restart_given).then(|| models::TaskSpecRestartPolicy {
            condition: Some(match restart.condition {
                RestartCondition::None => models::TaskSpecRestartPolicyConditionEnum::NONE,
                RestartCondition::OnFailure => {
                    models::TaskSpecRestartPolicyConditionEnum::ON_FAILURE
                }
                RestartCondition::Any => models::TaskSpecRestartPolicyConditionEnum::ANY,
            }),
            delay: Some(nanos(restart.delay)),
            max_attempts: Some(i64::try_from(restart.max_attempts).unwrap_or(i64::MAX)),
            // Docker leaves an unbounded window out.
            window: non_empty(nanos(restart.window)),
        }),
        placement: (insert_defaults || placement != Default::default()).then_some(placement),
        force_update: Some(t.force_update),
        runtime: Some("container".into()),
        networks: non_empty(
            t.networks
                .iter()
                .map(|n| models::NetworkAttachmentConfig {
                    target: Some(n.target.clone()),
                    aliases: non_empty(n.aliases.clone()),
                    driver_opts: non_empty(n.driver_opts.clone()).and_then(|o| labels_out(&o)),
                })
                .collect(),
        ),
        log_driver: t.log_driver.as_ref().map(|d| models::TaskSpecLogDriver {
            name: Some(d.name.clone()),
            options: labels_out(&d.options),
        }),
        ..Default::default()
    };
    TaskSpecJson {
        spec,
        container: Some(ContainerSpecJson {
            spec: container,
            healthcheck,
        }),
    }
}

fn mount_out(m: &Mount) -> models::Mount {
    models::Mount {
        target: Some(m.target.clone()),
        source: non_empty(m.source.clone()),
        typ: Some(match m.kind {
            MountKind::Bind => models::MountType::BIND,
            MountKind::Volume => models::MountType::VOLUME,
            MountKind::Tmpfs => models::MountType::TMPFS,
        }),
        read_only: m.read_only.then_some(true),
        volume_options: m.volume.as_ref().map(|v| models::MountVolumeOptions {
            no_copy: v.no_copy.then_some(true),
            labels: non_empty(v.labels.clone()).and_then(|l| labels_out(&l)),
            driver_config: v
                .driver
                .as_ref()
                .map(|d| models::MountVolumeOptionsDriverConfig {
                    name: Some(d.name.clone()),
                    options: labels_out(&d.options),
                }),
            subpath: None,
        }),
        tmpfs_options: m.tmpfs.as_ref().map(|t| models::MountTmpfsOptions {
            size_bytes: non_empty(t.size_bytes),
            mode: non_empty(i64::from(t.mode)),
            options: None,
        }),
        bind_options: m.bind.map(|b| models::MountBindOptions {
            propagation: (b.propagation != Propagation::default())
                .then(|| b.propagation.as_str().parse().ok())
                .flatten(),
            non_recursive: b.non_recursive.then_some(true),
            create_mountpoint: b.create_mountpoint.then_some(true),
            read_only_non_recursive: b.read_only_non_recursive.then_some(true),
            read_only_force_recursive: b.read_only_force_recursive.then_some(true),
        }),
        ..Default::default()
    }
}

/// Our task state to Docker's.
pub(crate) fn state_out(s: TaskState) -> models::TaskState {
    use models::TaskState as D;
    match s {
        TaskState::New => D::NEW,
        TaskState::Pending => D::PENDING,
        TaskState::Assigned => D::ASSIGNED,
        TaskState::Accepted => D::ACCEPTED,
        TaskState::Preparing => D::PREPARING,
        TaskState::Ready => D::READY,
        TaskState::Starting => D::STARTING,
        TaskState::Running => D::RUNNING,
        TaskState::Complete => D::COMPLETE,
        TaskState::Shutdown => D::SHUTDOWN,
        TaskState::Failed => D::FAILED,
        TaskState::Rejected => D::REJECTED,
        TaskState::Remove => D::REMOVE,
        TaskState::Orphaned => D::ORPHANED,
    }
}

/// A task as Docker shows it: bollard's model plus `NetworksAttachments`, which that model lacks.
#[derive(Debug, serde::Serialize)]
pub(crate) struct TaskJson {
    #[serde(flatten)]
    task: models::Task,
    #[serde(rename = "Spec")]
    spec: TaskSpecJson,
    #[serde(rename = "NetworksAttachments", skip_serializing_if = "Vec::is_empty")]
    networks: Vec<serde_json::Value>,
}

/// A task as `docker inspect` / `docker service ps` read it. `Name` is left out so the CLI prints
/// `<service>.<slot>`, as it does against Docker. Each network attachment lists the addresses the
/// task's runtime reported on that network.
pub(crate) fn task_out(t: &Task) -> TaskJson {
    let networks = t
        .networks
        .iter()
        .map(|att| {
            let n = &att.network;
            let addresses: Vec<String> = t
                .status
                .addresses
                .iter()
                .filter(|a| a.network_id == Some(n.id))
                .map(|a| a.addr.to_string())
                .collect();
            serde_json::json!({
                "Network": {
                    "ID": n.id.to_string(),
                    "Version": version(&n.meta),
                    "Spec": {
                        "Name": n.spec.annotations.name,
                        "Labels": n.spec.annotations.labels,
                        "DriverConfiguration": {"Name": n.spec.driver.name},
                        "Internal": n.spec.internal,
                        "Attachable": n.spec.attachable,
                    },
                },
                "Addresses": addresses,
                "Aliases": att.aliases,
            })
        })
        .collect();
    TaskJson {
        task: task_model(t),
        // A task does not record which optional parts its service's client gave: show the
        // restart policy, which every task follows.
        spec: task_spec_out(&t.spec, false, true),
        networks,
    }
}

fn task_model(t: &Task) -> models::Task {
    let st = &t.status;
    models::Task {
        id: Some(t.id.to_string()),
        version: version(&t.meta),
        created_at: ts(t.meta.created_at),
        updated_at: ts(t.meta.updated_at),
        name: None,
        labels: Some(Default::default()),
        spec: None,
        service_id: Some(t.service_id.to_string()),
        slot: (t.slot != 0).then(|| i64::try_from(t.slot).unwrap_or(i64::MAX)),
        node_id: t.node_id.map(|n| n.to_string()),
        assigned_generic_resources: None,
        status: Some(models::TaskStatus {
            timestamp: ts(st.timestamp),
            state: Some(state_out(st.state)),
            message: Some(st.message.clone()),
            err: non_empty(st.err.clone()),
            container_status: Some(models::ContainerStatus {
                container_id: non_empty(st.container_id.clone()),
                pid: Some(st.pid),
                exit_code: Some(st.exit_code.unwrap_or(0)),
            }),
            port_status: Some(models::PortStatus {
                ports: (!st.port_status.is_empty()).then(|| {
                    st.port_status
                        .iter()
                        .map(super::service::port_out)
                        .collect()
                }),
            }),
        }),
        desired_state: Some(state_out(t.desired_state)),
        job_iteration: t
            .job_iteration
            .map(|v| models::ObjectVersion { index: Some(v.0) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::testing;

    #[test]
    fn task_spec_round_trips() {
        let t = testing::typical_task(1, testing::id(2), None);
        let docker = task_spec_out(&t.spec, false, true).into_model();
        let back = task_spec_in(docker).expect("converts back");
        let mut want = (*t.spec).clone();
        want.container.secrets.clear();
        want.container.configs.clear();
        assert_eq!(back.spec, want);
        assert_eq!(back.secrets.len(), t.spec.container.secrets.len());
    }
}
