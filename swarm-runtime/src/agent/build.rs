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

/// What the agent needs of a secret or a config to materialise it, so one path serves both.
trait Payload {
    /// The kind of file it becomes.
    const KIND: FileKind;
    /// Whether it asks for a templating driver (not supported on this node).
    fn templated(&self) -> bool;
    /// The payload (a config's is copied into a zeroizing buffer like a secret's).
    fn payload(&self) -> SecretData;
}

impl Payload for Secret {
    const KIND: FileKind = FileKind::Secret;
    fn templated(&self) -> bool {
        self.spec.templating.is_some()
    }
    fn payload(&self) -> SecretData {
        self.spec.data.clone()
    }
}

impl Payload for Config {
    const KIND: FileKind = FileKind::Config;
    fn templated(&self) -> bool {
        self.spec.templating.is_some()
    }
    fn payload(&self) -> SecretData {
        SecretData::new(self.spec.data.clone())
    }
}

/// The file for a task's reference to the secret or config `id` named `name`: it must have
/// been sent with the task and use no templating driver.
fn referenced<T: Payload>(
    sent: &HashMap<Id, T>,
    id: Id,
    name: &str,
    target: &FileTarget,
) -> Result<TaskFile, String> {
    let k = crate::files::kind_name(T::KIND);
    let o = sent.get(&id).ok_or_else(|| {
        format!(
            "{k} {name:?} ({id}) was not sent to this node with the task; the dispatcher must \
             send every {k} a task references"
        )
    })?;
    if o.templated() {
        return Err(format!(
            "{k} {name:?} uses a templating driver, which this node does not support"
        ));
    }
    file(T::KIND, id, name, target, o.payload())
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
        files.push(referenced(secrets, r.secret_id, &r.secret_name, &r.target)?);
    }
    for r in &container.configs {
        files.push(referenced(configs, r.config_id, &r.config_name, &r.target)?);
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

#[cfg(test)]
mod tests {
    use swarm_core::objects::secret::{ConfigSpec, Driver, SecretSpec};
    use swarm_core::{Annotations, Meta};

    use super::*;

    fn named(name: &str) -> Annotations {
        Annotations {
            name: name.into(),
            labels: Default::default(),
        }
    }

    fn config(n: u128, templated: bool) -> (Id, Config) {
        let id = Id::from_u128(n);
        let spec = ConfigSpec {
            annotations: named("app.conf"),
            data: b"x=1".to_vec(),
            templating: templated.then(Driver::default),
        };
        let meta = Meta::default();
        (id, Config { id, meta, spec })
    }

    fn secret(n: u128) -> (Id, Secret) {
        let id = Id::from_u128(n);
        let spec = SecretSpec {
            annotations: named("db_pw"),
            data: SecretData::new(b"pw".to_vec()),
            templating: None,
        };
        let meta = Meta::default();
        (id, Secret { id, meta, spec })
    }

    /// Secrets and configs go through one path: each kind keeps its target rules and its
    /// word in the messages.
    #[test]
    fn secrets_and_configs_share_one_path_with_their_own_words() {
        let target = |name: &str| FileTarget {
            name: name.into(),
            ..FileTarget::default()
        };
        let (cid, c) = config(1, false);
        let (tid, templated) = config(2, true);
        let configs = HashMap::from([(cid, c), (tid, templated)]);
        let f = referenced(&configs, cid, "app.conf", &target("app.conf")).unwrap();
        assert_eq!((f.kind, f.target.as_str()), (FileKind::Config, "/app.conf"));
        assert_eq!((f.data.expose(), f.mode), (&b"x=1"[..], 0o444));
        let e = referenced(&configs, tid, "app.conf", &target("a")).unwrap_err();
        assert!(
            e.starts_with("config \"app.conf\" uses a templating driver"),
            "{e}"
        );
        let missing = Id::from_u128(3);
        let e = referenced(&configs, missing, "gone", &target("a")).unwrap_err();
        assert!(
            e.contains("must send every config a task references"),
            "{e}"
        );

        let (sid, s) = secret(4);
        let secrets = HashMap::from([(sid, s)]);
        let f = referenced(&secrets, sid, "db_pw", &target("db_pw")).unwrap();
        assert_eq!(
            (f.kind, f.target.as_str()),
            (FileKind::Secret, "/run/secrets/db_pw")
        );
        assert_eq!(f.data.expose(), b"pw");
        let e = referenced(&secrets, missing, "gone", &target("a")).unwrap_err();
        assert!(e.starts_with("secret \"gone\""), "{e}");
        assert!(
            e.contains("must send every secret a task references"),
            "{e}"
        );
    }
}
