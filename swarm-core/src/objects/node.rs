//! Nodes: the machines of the cluster, their desired role and availability, and what they report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::constraint::{Constraint, ConstraintKey};
use crate::id::Id;
use crate::meta::{Annotations, Meta};

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The node id (also the CN of its certificate).
    pub id: Id,
    /// Store bookkeeping.
    pub meta: Meta,
    /// What the operator asked for.
    pub spec: NodeSpec,
    /// What the node reported about itself when it registered; `None` before it first reports.
    pub description: Option<NodeDescription>,
    /// Liveness as seen by the dispatcher.
    pub status: NodeStatus,
    /// Raft membership details, for managers.
    pub manager_status: Option<ManagerStatus>,
    /// The role the node currently holds (it lags `spec.desired_role` during promotion/demotion).
    pub role: NodeRole,
    /// The node's TLS certificate as the cluster CA tracks it (SwarmKit's `Node.Certificate`);
    /// `None` for a node the CA has no record of.
    #[serde(default)]
    pub certificate: Option<NodeCertificate>,
}

/// A node's certificate record: the CSR the CA signs, where issuance is, and the chain issued.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    /// The role the certificate states (its OU).
    pub role: NodeRole,
    /// The certificate signing request (DER) the next certificate is issued for.
    pub csr: Vec<u8>,
    /// Where issuance is.
    pub state: IssuanceState,
    /// Why signing failed, while [`IssuanceState::Failed`]; empty otherwise.
    pub error: String,
    /// The last chain issued (DER, leaf first; the cross-signed root follows during a rotation).
    pub chain: Vec<Vec<u8>>,
    /// The certificate's common name: the node id.
    pub cn: String,
}

/// Where a node certificate's issuance is (SwarmKit's `IssuanceState`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IssuanceState {
    /// A joiner's CSR waits for the signer.
    #[default]
    Pending,
    /// A renewal CSR waits for the signer.
    Renew,
    /// The chain is issued.
    Issued,
    /// Signing failed; the signer retries.
    Failed,
    /// A root rotation asked the node to renew now.
    Rotate,
}

impl IssuanceState {
    /// Docker's spelling (`pending`, `renew`, `issued`, `failed`, `rotate`).
    pub fn as_str(self) -> &'static str {
        match self {
            IssuanceState::Pending => "pending",
            IssuanceState::Renew => "renew",
            IssuanceState::Issued => "issued",
            IssuanceState::Failed => "failed",
            IssuanceState::Rotate => "rotate",
        }
    }
}

/// Operator-controlled node settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Name (optional; `docker node ls` shows the hostname) and node labels (`node.labels.*`).
    pub annotations: Annotations,
    /// The role the operator wants.
    pub desired_role: NodeRole,
    /// Whether the scheduler may place tasks here.
    pub availability: NodeAvailability,
}

/// Manager or worker.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum NodeRole {
    /// Runs tasks only.
    #[default]
    Worker,
    /// Takes part in raft and may run tasks.
    Manager,
}

impl NodeRole {
    /// The lowercase name Docker uses (`worker`, `manager`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Worker => "worker",
            NodeRole::Manager => "manager",
        }
    }
}

/// Scheduling availability of a node.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum NodeAvailability {
    /// New tasks may be placed here.
    #[default]
    Active,
    /// No new tasks; existing tasks keep running.
    Pause,
    /// No tasks: replicated tasks are moved elsewhere, global tasks are shut down.
    Drain,
}

impl NodeAvailability {
    /// The lowercase name Docker uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAvailability::Active => "active",
            NodeAvailability::Pause => "pause",
            NodeAvailability::Drain => "drain",
        }
    }
}

/// What a node reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    /// The machine's hostname.
    pub hostname: String,
    /// OS and architecture.
    pub platform: Platform,
    /// Total resources the node offers to tasks.
    pub resources: Resources,
    /// The engine (runtime) it runs.
    pub engine: EngineDescription,
}

/// An OS/architecture pair. Empty fields match anything in placement.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, e.g. `x86_64` or `amd64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
}

/// Compute resources: CPU in billionths of a CPU and memory in bytes, as in Docker's API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in units of 1e-9 CPUs.
    pub nano_cpus: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
}

/// The runtime engine on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineDescription {
    /// Engine version string.
    pub engine_version: String,
    /// Engine labels (`engine.labels.*` in constraints).
    pub labels: BTreeMap<String, String>,
}

/// Liveness state of a node.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum NodeState {
    /// Not heard from yet.
    #[default]
    Unknown,
    /// Missed its heartbeats.
    Down,
    /// Heartbeating and able to take tasks.
    Ready,
    /// Connection lost; within the grace period before being declared down.
    Disconnected,
}

impl NodeState {
    /// The lowercase name Docker uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Down => "down",
            NodeState::Ready => "ready",
            NodeState::Disconnected => "disconnected",
        }
    }
}

/// A node's status as maintained by the dispatcher.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Liveness.
    pub state: NodeState,
    /// Human-readable detail.
    pub message: String,
    /// The address the node connected from (`node.ip` in constraints).
    pub addr: String,
}

/// Raft reachability of a manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reachability {
    /// Not known yet.
    #[default]
    Unknown,
    /// Not answering raft messages.
    Unreachable,
    /// Answering raft messages.
    Reachable,
}

/// Raft details of a manager node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    /// The raft member id.
    pub raft_id: u64,
    /// The address other managers reach it on.
    pub addr: String,
    /// Whether it is the current leader.
    pub leader: bool,
    /// Whether it answers raft messages.
    pub reachability: Reachability,
}

impl Node {
    /// Whether the scheduler may place new tasks here: ready and active.
    pub fn is_schedulable(&self) -> bool {
        self.status.state == NodeState::Ready && self.spec.availability == NodeAvailability::Active
    }

    /// The hostname from the description, or "" before the node reported.
    pub fn hostname(&self) -> &str {
        self.description
            .as_ref()
            .map(|d| d.hostname.as_str())
            .unwrap_or("")
    }

    /// What this node says for a constraint key (`node.labels.rack`, `node.role`, ...); `None` when
    /// it has no such fact, which constraints treat as `""` (so `==` fails and `!=` passes).
    pub fn constraint_fact(&self, key: &ConstraintKey) -> Option<&str> {
        let desc = self.description.as_ref();
        match key {
            ConstraintKey::NodeId => Some(self.id.as_str()),
            ConstraintKey::NodeHostname => desc.map(|d| d.hostname.as_str()),
            ConstraintKey::NodeIp => Some(self.status.addr.as_str()).filter(|a| !a.is_empty()),
            ConstraintKey::NodeRole => Some(self.role.as_str()),
            ConstraintKey::NodePlatformOs => desc.map(|d| d.platform.os.as_str()),
            ConstraintKey::NodePlatformArch => desc.map(|d| d.platform.architecture.as_str()),
            ConstraintKey::NodeLabel(k) => self.spec.annotations.labels.get(k).map(String::as_str),
            ConstraintKey::EngineLabel(k) => desc
                .and_then(|d| d.engine.labels.get(k))
                .map(String::as_str),
            ConstraintKey::Unknown(_) => None,
        }
    }

    /// Whether this node satisfies every constraint (they are ANDed).
    pub fn satisfies(&self, constraints: &[Constraint]) -> bool {
        constraints
            .iter()
            .all(|c| c.matches(self.constraint_fact(&c.key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constraint::parse_constraints;

    #[test]
    fn constraint_facts_table() {
        let mut n = Node {
            id: Id::from_u128(1),
            meta: Meta::default(),
            spec: NodeSpec::default(),
            description: Some(NodeDescription {
                hostname: "h1".into(),
                platform: Platform {
                    architecture: "x86_64".into(),
                    os: "linux".into(),
                },
                ..Default::default()
            }),
            status: NodeStatus {
                addr: "10.1.2.3".into(),
                ..Default::default()
            },
            manager_status: None,
            role: NodeRole::Manager,
            certificate: None,
        };
        n.spec.annotations.labels.insert("rack".into(), "A".into());
        let cases = [
            ("node.labels.rack==a", true),
            ("node.labels.rack!=a", false),
            ("node.labels.zone==x", false),
            ("node.labels.zone!=x", true),
            ("node.role==manager", true),
            ("node.hostname==H1", true),
            ("node.platform.os==linux", true),
            ("node.ip==10.1.0.0/16", true),
            ("node.ip!=10.1.2.3", false),
            ("engine.labels.x==y", false),
            ("node.unknown==x", false),
        ];
        for (expr, want) in cases {
            let c = parse_constraints(&[expr]).unwrap();
            assert_eq!(n.satisfies(&c), want, "{expr}");
        }
        n.status.addr.clear();
        assert!(!n.satisfies(&parse_constraints(&["node.ip==10.1.2.3"]).unwrap()));
        assert!(n.satisfies(&parse_constraints(&["node.ip!=10.1.2.3"]).unwrap()));
    }
}
