//! Whether a task must be replaced to match its service: the "dirty" test of rolling updates.

use std::sync::Arc;

use swarm_core::objects::service::TaskSpec;
use swarm_core::{Node, Service, Task};

use swarm_core::objects::service::{PortConfig, PublishMode};

use crate::orchestrator::context::{constraints_of, node_matches, service_ports};

/// The host-mode ports among `ports`: the only ones bound by the task itself (ingress ports are
/// served by the routing mesh from the service's endpoint, so changing them replaces no task).
fn host_ports(ports: &[PortConfig]) -> Vec<&PortConfig> {
    ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host)
        .collect()
}

/// Whether `task` no longer matches `service` and must be replaced by a rolling update.
///
/// - Same spec version: clean (the service's spec has not changed since the task was made).
/// - Otherwise dirty if the task spec differs from the service's, which includes a changed
///   `force_update` counter, or if the service's host-mode published ports changed (the task
///   binds those itself).
/// - Except when only the placement changed and the task's node (`node`) still satisfies the new
///   constraints: such a task keeps running.
pub fn is_task_dirty(service: &Service, task: &Task, node: Option<&Node>) -> bool {
    if task.spec_version == service.spec_version {
        return false;
    }
    let want = &service.spec.task;
    if host_ports(&task.ports) != host_ports(service_ports(service)) {
        return true;
    }
    if *task.spec == *want {
        return false;
    }
    if placement_only_change(want, &task.spec) {
        if let Some(node) = node {
            return !node_matches(&constraints_of(want), node);
        }
    }
    true
}

/// Whether `want` and `have` differ only in their placement.
fn placement_only_change(want: &TaskSpec, have: &Arc<TaskSpec>) -> bool {
    if want.placement == have.placement {
        return false;
    }
    let mut same_placement = want.clone();
    same_placement.placement = have.placement.clone();
    same_placement == **have
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{service, task};
    use swarm_core::Version;

    fn port(published: u32, mode: PublishMode) -> PortConfig {
        PortConfig {
            target_port: 80,
            published_port: published,
            publish_mode: mode,
            ..PortConfig::default()
        }
    }

    /// Only host-mode port changes replace tasks: ingress ports are the routing mesh's.
    #[test]
    fn host_mode_port_changes_make_tasks_dirty_ingress_ones_do_not() {
        let mut svc = service(1, 1);
        svc.spec.endpoint.ports = vec![port(8080, PublishMode::Ingress)];
        let mut t = task(&svc, 1, 2);
        t.ports = service_ports(&svc).to_vec();
        svc.spec_version = Version(svc.spec_version.0 + 1);
        assert!(!is_task_dirty(&svc, &t, None), "same spec, same ports");

        let mut ingress = svc.clone();
        ingress.spec.endpoint.ports = vec![port(9090, PublishMode::Ingress)];
        assert!(!is_task_dirty(&ingress, &t, None), "ingress port moved");

        let mut host = svc.clone();
        host.spec.endpoint.ports.push(port(8081, PublishMode::Host));
        assert!(is_task_dirty(&host, &t, None), "host-mode port added");
    }
}
