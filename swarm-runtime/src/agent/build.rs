//! Turning an assigned [`Task`] into the [`TaskConfig`] a runtime runs: templates expanded, secret
//! and config references resolved against what the dispatcher sent, file targets validated.
//! Every error here rejects only the one task, with a message saying why.

use std::collections::HashMap;

use swarm_core::objects::node::NodeDescription;
use swarm_core::objects::service::FileTarget;
use swarm_core::objects::task::NetworkAttachment;
use swarm_core::{Config, Id, Secret, SecretData, Task};

use crate::files::resolve_target;
use crate::health::HealthTest;
use crate::runtime::{FileKind, TaskConfig, TaskFile};
use crate::template::{expand, TemplateContext};

/// The template context of `task` on the node `node_id` described by `node`.
pub fn template_context(task: &Task, node_id: Id, node: &NodeDescription) -> TemplateContext {
    TemplateContext {
        service_id: task.service_id.to_string(),
        service_name: task.service_annotations.name.clone(),
        service_labels: task.service_annotations.labels.clone(),
        node_id: node_id.to_string(),
        node_hostname: node.hostname.clone(),
        node_os: node.platform.os.clone(),
        node_arch: node.platform.architecture.clone(),
        task_id: task.id.to_string(),
        task_name: task.name(),
        task_slot: if task.slot == 0 {
            task.node_id.map(|n| n.to_string()).unwrap_or_default()
        } else {
            task.slot.to_string()
        },
    }
}

fn owner(kind: &str, name: &str, what: &str, value: &str) -> Result<u32, String> {
    if value.is_empty() {
        return Ok(0);
    }
    value.parse::<u32>().map_err(|_| {
        format!("{kind} {name:?}: {what} {value:?} is not a number (files take numeric ids)")
    })
}

fn file(
    kind: FileKind,
    id: Id,
    name: &str,
    target: &FileTarget,
    data: SecretData,
) -> Result<TaskFile, String> {
    let k = crate::files::kind_name(kind);
    let path = resolve_target(kind, &target.name).map_err(|e| e.to_string())?;
    Ok(TaskFile {
        kind,
        id,
        name: name.to_string(),
        target: path,
        uid: owner(k, name, "uid", &target.uid)?,
        gid: owner(k, name, "gid", &target.gid)?,
        mode: if target.mode == 0 {
            0o444
        } else {
            target.mode & 0o7777
        },
        data,
    })
}

/// Builds the runtime config of `task`, or the reason to reject it.
pub(crate) fn task_config(
    task: &Task,
    node_id: Id,
    node: &NodeDescription,
    secrets: &HashMap<Id, Secret>,
    configs: &HashMap<Id, Config>,
) -> Result<TaskConfig, String> {
    let ctx = template_context(task, node_id, node);
    let mut container = task.spec.container.clone();
    container.hostname =
        expand(&container.hostname, "hostname", &ctx).map_err(|e| e.to_string())?;
    for e in &mut container.env {
        *e = expand(e, "env", &ctx).map_err(|e| e.to_string())?;
    }
    for m in &mut container.mounts {
        m.source = expand(&m.source, "mount source", &ctx).map_err(|e| e.to_string())?;
        m.target = expand(&m.target, "mount target", &ctx).map_err(|e| e.to_string())?;
    }
    if let Some(h) = &container.healthcheck {
        HealthTest::parse(&h.test).map_err(|e| e.to_string())?;
    }
    let mut files = Vec::new();
    for r in &container.secrets {
        let s = secrets.get(&r.secret_id).ok_or_else(|| {
            format!(
                "secret {:?} ({}) was not sent to this node with the task; the dispatcher must \
                 send every secret a task references",
                r.secret_name, r.secret_id
            )
        })?;
        if s.spec.templating.is_some() {
            return Err(format!(
                "secret {:?} uses a templating driver, which this node does not support",
                r.secret_name
            ));
        }
        files.push(file(
            FileKind::Secret,
            r.secret_id,
            &r.secret_name,
            &r.target,
            s.spec.data.clone(),
        )?);
    }
    for r in &container.configs {
        let c = configs.get(&r.config_id).ok_or_else(|| {
            format!(
                "config {:?} ({}) was not sent to this node with the task; the dispatcher must \
                 send every config a task references",
                r.config_name, r.config_id
            )
        })?;
        if c.spec.templating.is_some() {
            return Err(format!(
                "config {:?} uses a templating driver, which this node does not support",
                r.config_name
            ));
        }
        files.push(file(
            FileKind::Config,
            r.config_id,
            &r.config_name,
            &r.target,
            SecretData::new(c.spec.data.clone()),
        )?);
    }
    Ok(TaskConfig {
        task_id: task.id,
        task_name: task.name(),
        service_id: task.service_id,
        service_name: task.service_annotations.name.clone(),
        node_id,
        container,
        resources: task.spec.resources.clone(),
        files,
        networks: task
            .networks
            .iter()
            .map(|att| NetworkAttachment {
                network: att.network.clone(),
                aliases: task_aliases(task, &att.aliases),
            })
            .collect(),
        ports: task.ports.clone(),
    })
}

/// Every DNS name `task` answers to on a network: the service name (DNS round-robin over the
/// service's tasks), `tasks.<service>` (the same, as Docker spells it), the task's own name, then
/// the service's extra aliases for that network; duplicates dropped.
fn task_aliases(task: &Task, extra: &[String]) -> Vec<String> {
    let service = &task.service_annotations.name;
    let mut out = vec![service.clone(), format!("tasks.{service}"), task.name()];
    for a in extra {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}
