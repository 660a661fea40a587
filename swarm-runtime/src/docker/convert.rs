//! Translating a [`TaskConfig`] into the Docker Engine's container-create body, and engine answers
//! back into our types and errors.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HealthConfig as DockerHealth, HostConfig, Mount, MountTmpfsOptions,
    MountType,
};
use swarm_core::objects::service::{HealthConfig, MountKind};

use crate::error::RuntimeError;
use crate::files::Staged;
use crate::runtime::TaskConfig;
use crate::signal::signal_name;

/// Labels every task container carries, as SwarmKit sets them.
pub(crate) const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";

/// The create body for `config` with its staged files bind-mounted read-only one by one.
pub(crate) fn create_body(
    config: &TaskConfig,
    staged: &Staged,
    stop_signal: i32,
    network: Option<String>,
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
    let mounts: Vec<Mount> = spec
        .mounts
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
            tmpfs_options: m.tmpfs.as_ref().map(|t| MountTmpfsOptions {
                size_bytes: (t.size_bytes > 0).then_some(t.size_bytes),
                mode: (t.mode != 0).then_some(i64::from(t.mode)),
                ..MountTmpfsOptions::default()
            }),
            ..Mount::default()
        })
        .collect();
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
            extra_hosts: (!spec.hosts.is_empty()).then(|| spec.hosts.clone()),
            group_add: (!spec.groups.is_empty()).then(|| spec.groups.clone()),
            nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
            memory: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
            network_mode: network,
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
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
        let b = create_body(&c, &staged, libc::SIGINT, None);
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
}
