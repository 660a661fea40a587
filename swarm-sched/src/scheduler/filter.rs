//! The filter pipeline: which nodes may take a task, and why the others may not.
//!
//! The filters run in SwarmKit's order and the first one that fails explains the node:
//!
//! | # | filter       | passes when                                                              | explanation (`N` nodes)                       |
//! |---|--------------|--------------------------------------------------------------------------|-----------------------------------------------|
//! | 1 | ready        | node state ready **and** availability active                             | `N nodes not available for new tasks`         |
//! | 2 | resources    | reserved CPU and memory fit in what the node has left (only if reserved) | `insufficient resources on N nodes`           |
//! | – | plugins      | *skipped*: nodes do not report plugins in this model                     | –                                             |
//! | 3 | constraints  | every placement constraint matches the node's facts                      | `scheduling constraints not satisfied on N nodes` |
//! | 4 | platform     | one of the service's platforms matches (`x86_64`=`amd64`, `aarch64`=`arm64`) | `unsupported platform on N nodes`         |
//! | 5 | host port    | no task on the node publishes the same host-mode port and protocol       | `host-mode port already in use on N nodes`    |
//! | 6 | max replicas | fewer than `max_replicas` active tasks of the service on the node        | `max replicas per node limit exceed`          |
//!
//! Filters 1, 3 and 4 depend only on the node object and the task spec: they are *static* for the
//! duration of a scheduling pass and are what [`super::index`] caches. Filters 2, 5 and 6 depend on
//! what is already placed on the node: they are *dynamic* and re-checked after every placement.
//! The texts are SwarmKit's (`manager/scheduler/filter.go`), so operators see familiar messages.

use std::sync::Arc;

use swarm_core::constraint::{parse_constraints, Constraint};
use swarm_core::objects::node::{Node, Platform, Resources};
use swarm_core::objects::service::{Protocol, PublishMode, Service};
use swarm_core::{Id, Task};

use super::nodes::NodeInfo;

/// A host-mode published port: taken on the node that runs the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct HostPort {
    /// Transport protocol.
    pub(crate) protocol: Protocol,
    /// Published port on the node.
    pub(crate) port: u32,
}

/// The host-mode ports a service's tasks publish: the allocated endpoint if any, else the spec's.
pub(crate) fn service_host_ports(service: &Service) -> Vec<HostPort> {
    let ports = if service.endpoint.ports.is_empty() {
        &service.spec.endpoint.ports
    } else {
        &service.endpoint.ports
    };
    let mut out: Vec<HostPort> = ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
        .map(|p| HostPort {
            protocol: p.protocol,
            port: p.published_port,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One filter of the pipeline, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Check {
    /// Node ready and active.
    Ready = 0,
    /// Reserved resources fit.
    Resources = 1,
    /// Placement constraints hold.
    Constraints = 2,
    /// Platform supported.
    Platform = 3,
    /// Host-mode ports free.
    HostPort = 4,
    /// Below the per-node replica limit.
    MaxReplicas = 5,
}

/// Number of filters that can fail.
pub(crate) const CHECKS: usize = 6;

const ALL_CHECKS: [Check; CHECKS] = [
    Check::Ready,
    Check::Resources,
    Check::Constraints,
    Check::Platform,
    Check::HostPort,
    Check::MaxReplicas,
];

impl Check {
    /// SwarmKit's explanation for this filter failing on `nodes` nodes.
    pub(crate) fn explain(self, nodes: usize) -> String {
        let plural = |one: &str, many: &str| {
            if nodes == 1 {
                one.to_owned()
            } else {
                many.replace("{}", &nodes.to_string())
            }
        };
        match self {
            Check::Ready => plural(
                "1 node not available for new tasks",
                "{} nodes not available for new tasks",
            ),
            Check::Resources => plural(
                "insufficient resources on 1 node",
                "insufficient resources on {} nodes",
            ),
            Check::Constraints => plural(
                "scheduling constraints not satisfied on 1 node",
                "scheduling constraints not satisfied on {} nodes",
            ),
            Check::Platform => plural(
                "unsupported platform on 1 node",
                "unsupported platform on {} nodes",
            ),
            Check::HostPort => plural(
                "host-mode port already in use on 1 node",
                "host-mode port already in use on {} nodes",
            ),
            Check::MaxReplicas => "max replicas per node limit exceed".to_owned(),
        }
    }
}

/// The task error for a task no node can take, from per-filter failure counts: reasons with the most
/// failures first (ties in pipeline order), e.g. `no suitable node (scheduling constraints not
/// satisfied on 3 nodes; insufficient resources on 1 node)`.
pub(crate) fn no_suitable_node(counts: &[usize; CHECKS]) -> String {
    let mut reasons: Vec<(usize, Check)> = ALL_CHECKS
        .iter()
        .map(|&c| (counts[c as usize], c))
        .filter(|&(n, _)| n > 0)
        .collect();
    // Stable sort keeps pipeline order among equal counts.
    reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
    if reasons.is_empty() {
        return "no suitable node".to_owned();
    }
    let text: Vec<String> = reasons.iter().map(|&(n, c)| c.explain(n)).collect();
    format!("no suitable node ({})", text.join("; "))
}

/// Normalises an architecture name as Docker does: `x86_64` is `amd64`, `aarch64` is `arm64`.
fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A normalised platform the service supports; empty fields match anything.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PlatformReq {
    os: String,
    arch: String,
}

/// The filters that depend only on the node object: ready, constraints, platform. Equal filters
/// have equal keys (the converse need not hold: order and duplicates differ).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StaticFilter {
    constraints: Vec<Constraint>,
    platforms: Vec<PlatformReq>,
}

/// Identifies a [`StaticFilter`]: equal keys accept exactly the same nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StaticKey {
    constraints: Vec<String>,
    platforms: Vec<PlatformReq>,
}

impl StaticFilter {
    /// The cache key: canonical constraint texts and platforms, sorted (ANDed, so order is moot).
    pub(crate) fn key(&self) -> StaticKey {
        let mut constraints: Vec<String> = self.constraints.iter().map(|c| c.to_string()).collect();
        constraints.sort();
        constraints.dedup();
        let mut platforms = self.platforms.clone();
        platforms.sort();
        platforms.dedup();
        StaticKey {
            constraints,
            platforms,
        }
    }

    /// The first static filter `node` fails, if any (in pipeline order: ready, constraints, platform).
    pub(crate) fn first_failure(&self, node: &Node) -> Option<Check> {
        if !node.is_schedulable() {
            Some(Check::Ready)
        } else if !self.constraints_ok(node) {
            Some(Check::Constraints)
        } else if !self.platform_ok(node) {
            Some(Check::Platform)
        } else {
            None
        }
    }

    /// Whether `node` passes every static filter.
    pub(crate) fn passes(&self, node: &Node) -> bool {
        self.first_failure(node).is_none()
    }

    fn constraints_ok(&self, node: &Node) -> bool {
        node.satisfies(&self.constraints)
    }

    fn platform_ok(&self, node: &Node) -> bool {
        if self.platforms.is_empty() {
            return true;
        }
        let Some(desc) = node.description.as_ref() else {
            return false;
        };
        let arch = normalize_arch(&desc.platform.architecture);
        self.platforms.iter().any(|p| {
            (p.arch.is_empty() || p.arch == arch) && (p.os.is_empty() || p.os == desc.platform.os)
        })
    }
}

/// Every filter, compiled once for a batch of tasks sharing a service and spec version.
#[derive(Clone, Debug)]
pub(crate) struct TaskFilter {
    /// The service whose tasks these are.
    pub(crate) service: Id,
    /// The node-only filters.
    pub(crate) statics: StaticFilter,
    /// Reserved resources (the resource filter is off when both are zero).
    pub(crate) reservations: Resources,
    /// Host-mode ports each task takes on its node.
    pub(crate) host_ports: Arc<[HostPort]>,
    max_replicas: u64,
}

impl TaskFilter {
    /// Compiles the filters of `task`'s spec. `host_ports` are its service's host-mode ports. An
    /// invalid constraint (which spec validation should have refused) is an error text for the task.
    pub(crate) fn compile(task: &Task, host_ports: Arc<[HostPort]>) -> Result<TaskFilter, String> {
        let placement = &task.spec.placement;
        let constraints = parse_constraints(&placement.constraints)
            .map_err(|e| format!("invalid placement constraints: {e}"))?;
        let platforms = placement
            .platforms
            .iter()
            .map(|p: &Platform| PlatformReq {
                os: p.os.clone(),
                arch: normalize_arch(&p.architecture).to_owned(),
            })
            .collect();
        Ok(TaskFilter {
            service: task.service_id,
            statics: StaticFilter {
                constraints,
                platforms,
            },
            reservations: task.spec.resources.reservations,
            host_ports,
            max_replicas: placement.max_replicas,
        })
    }

    fn resources_ok(&self, info: &NodeInfo) -> bool {
        let r = self.reservations;
        if r.nano_cpus <= 0 && r.memory_bytes <= 0 {
            return true;
        }
        info.available.fits(r)
    }

    fn ports_ok(&self, info: &NodeInfo) -> bool {
        self.host_ports.iter().all(|p| !info.port_in_use(*p))
    }

    fn replicas_ok(&self, service_tasks: u32) -> bool {
        self.max_replicas == 0 || u64::from(service_tasks) < self.max_replicas
    }

    /// Whether the dynamic filters (resources, host ports, max replicas) pass on a node that has
    /// `service_tasks` active tasks of this service.
    pub(crate) fn dynamic_ok(&self, info: &NodeInfo, service_tasks: u32) -> bool {
        self.resources_ok(info) && self.ports_ok(info) && self.replicas_ok(service_tasks)
    }

    /// The first filter the node fails, in pipeline order, or `None` if it can take the task.
    pub(crate) fn first_failure(&self, info: &NodeInfo, service_tasks: u32) -> Option<Check> {
        let node = &info.node;
        if !node.is_schedulable() {
            return Some(Check::Ready);
        }
        if !self.resources_ok(info) {
            return Some(Check::Resources);
        }
        if !self.statics.constraints_ok(node) {
            return Some(Check::Constraints);
        }
        if !self.statics.platform_ok(node) {
            return Some(Check::Platform);
        }
        if !self.ports_ok(info) {
            return Some(Check::HostPort);
        }
        if !self.replicas_ok(service_tasks) {
            return Some(Check::MaxReplicas);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_orders_by_count_then_pipeline() {
        let mut c = [0; CHECKS];
        c[Check::Resources as usize] = 1;
        c[Check::Constraints as usize] = 3;
        assert_eq!(
            no_suitable_node(&c),
            "no suitable node (scheduling constraints not satisfied on 3 nodes; insufficient resources on 1 node)"
        );
        let mut c = [0; CHECKS];
        c[Check::Ready as usize] = 2;
        c[Check::MaxReplicas as usize] = 2;
        assert_eq!(
            no_suitable_node(&c),
            "no suitable node (2 nodes not available for new tasks; max replicas per node limit exceed)"
        );
        assert_eq!(no_suitable_node(&[0; CHECKS]), "no suitable node");
    }

    #[test]
    fn arch_aliases() {
        assert_eq!(normalize_arch("x86_64"), "amd64");
        assert_eq!(normalize_arch("aarch64"), "arm64");
        assert_eq!(normalize_arch("s390x"), "s390x");
    }
}
