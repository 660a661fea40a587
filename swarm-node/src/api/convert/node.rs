//! Nodes (out) and node specs (in, merged over the current spec).

use bollard::models;
use swarm_core::objects::node::{NodeAvailability, NodeRole, NodeSpec, NodeState, Reachability};
use swarm_core::{Annotations, Node};

use super::{labels_in, labels_out, non_empty, ts, version, Result};
use crate::backend::RaftMember;

/// Docker's role name.
pub(crate) fn role_out(r: NodeRole) -> models::NodeSpecRoleEnum {
    match r {
        NodeRole::Worker => models::NodeSpecRoleEnum::WORKER,
        NodeRole::Manager => models::NodeSpecRoleEnum::MANAGER,
    }
}

fn availability_out(a: NodeAvailability) -> models::NodeSpecAvailabilityEnum {
    match a {
        NodeAvailability::Active => models::NodeSpecAvailabilityEnum::ACTIVE,
        NodeAvailability::Pause => models::NodeSpecAvailabilityEnum::PAUSE,
        NodeAvailability::Drain => models::NodeSpecAvailabilityEnum::DRAIN,
    }
}

/// `POST /nodes/{id}/update` body over `current`: a missing role or availability keeps the
/// current one (Docker would refuse an empty role).
pub(crate) fn node_spec_in(s: models::NodeSpec, current: &NodeSpec) -> Result<NodeSpec> {
    use models::NodeSpecAvailabilityEnum as A;
    use models::NodeSpecRoleEnum as R;
    Ok(NodeSpec {
        annotations: Annotations {
            name: s.name.unwrap_or_default(),
            labels: labels_in(s.labels),
        },
        desired_role: match s.role {
            Some(R::MANAGER) => NodeRole::Manager,
            Some(R::WORKER) => NodeRole::Worker,
            Some(R::EMPTY) | None => current.desired_role,
        },
        availability: match s.availability {
            Some(A::ACTIVE) => NodeAvailability::Active,
            Some(A::PAUSE) => NodeAvailability::Pause,
            Some(A::DRAIN) => NodeAvailability::Drain,
            Some(A::EMPTY) | None => current.availability,
        },
    })
}

/// What a node's answer needs besides the node: the raft membership when the daemon has a
/// [`crate::backend::RaftView`] (it decides `ManagerStatus`; otherwise the store's
/// `manager_status` is shown) and the cluster's `TLSInfo` (the issuer of every node certificate).
#[derive(Default)]
pub(crate) struct NodeContext {
    /// Raft members, when known.
    pub(crate) raft: Option<Vec<RaftMember>>,
    /// The root CA as `TLSInfo`.
    pub(crate) tls: Option<models::TlsInfo>,
}

fn reachability_out(r: Reachability) -> models::Reachability {
    match r {
        Reachability::Unknown => models::Reachability::UNKNOWN,
        Reachability::Unreachable => models::Reachability::UNREACHABLE,
        Reachability::Reachable => models::Reachability::REACHABLE,
    }
}

fn manager_status_out(n: &Node, ctx: &NodeContext) -> Option<models::ManagerStatus> {
    let from_store = || {
        n.manager_status.as_ref().map(|m| models::ManagerStatus {
            leader: m.leader.then_some(true),
            reachability: Some(reachability_out(m.reachability)),
            addr: Some(m.addr.clone()),
        })
    };
    let Some(members) = &ctx.raft else {
        return from_store();
    };
    members
        .iter()
        .find(|m| m.node_id == Some(n.id))
        .map(|m| models::ManagerStatus {
            leader: m.leader.then_some(true),
            reachability: Some(if m.reachable {
                models::Reachability::REACHABLE
            } else {
                models::Reachability::UNREACHABLE
            }),
            addr: Some(m.addr.clone()),
        })
}

/// A node as `docker node inspect` shows it.
pub(crate) fn node_out(n: &Node, ctx: &NodeContext) -> models::Node {
    models::Node {
        id: Some(n.id.to_string()),
        version: version(&n.meta),
        created_at: ts(n.meta.created_at),
        updated_at: ts(n.meta.updated_at),
        spec: Some(models::NodeSpec {
            name: non_empty(n.spec.annotations.name.clone()),
            labels: labels_out(&n.spec.annotations.labels),
            role: Some(role_out(n.spec.desired_role)),
            availability: Some(availability_out(n.spec.availability)),
        }),
        description: n.description.as_ref().map(|d| models::NodeDescription {
            hostname: Some(d.hostname.clone()),
            platform: Some(models::Platform {
                architecture: Some(d.platform.architecture.clone()),
                os: Some(d.platform.os.clone()),
            }),
            resources: Some(models::ResourceObject {
                nano_cpus: Some(d.resources.nano_cpus),
                memory_bytes: Some(d.resources.memory_bytes),
                generic_resources: None,
            }),
            engine: Some(models::EngineDescription {
                engine_version: Some(d.engine.engine_version.clone()),
                labels: labels_out(&d.engine.labels),
                plugins: None,
            }),
            tls_info: ctx.tls.clone(),
        }),
        status: Some(models::NodeStatus {
            state: Some(match n.status.state {
                NodeState::Unknown => models::NodeState::UNKNOWN,
                NodeState::Down => models::NodeState::DOWN,
                NodeState::Ready => models::NodeState::READY,
                NodeState::Disconnected => models::NodeState::DISCONNECTED,
            }),
            message: non_empty(n.status.message.clone()),
            addr: Some(n.status.addr.clone()),
        }),
        manager_status: manager_status_out(n, ctx),
    }
}
