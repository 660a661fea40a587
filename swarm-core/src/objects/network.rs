//! Networks: swarm-scoped networks that services attach to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::meta::{Annotations, Meta};
use crate::objects::secret::Driver;

/// A swarm network object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Object id.
    pub id: Id,
    /// Store bookkeeping.
    pub meta: Meta,
    /// What the operator asked for.
    pub spec: NetworkSpec,
    /// Its address management as allocated ([`crate::ipam`]): the spec's pools with their
    /// gateways, or a subnet from the cluster's default address pool. `None` only for a network
    /// stored without going through allocation (fixtures).
    pub ipam: Option<Ipam>,
}

/// What an operator gives to create a network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Name and labels.
    pub annotations: Annotations,
    /// Driver (`overlay` by default) and its options.
    pub driver: Driver,
    /// Whether IPv6 is enabled.
    pub ipv6_enabled: bool,
    /// Whether the network is cut off from outside traffic.
    pub internal: bool,
    /// Whether standalone containers may attach.
    pub attachable: bool,
    /// Whether this is the routing-mesh ingress network.
    pub ingress: bool,
    /// Address management.
    pub ipam: Ipam,
}

/// IP address management settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    /// IPAM driver name (`default`).
    pub driver: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Address pools.
    pub configs: Vec<IpamConfig>,
}

/// One address pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamConfig {
    /// Subnet in CIDR form.
    pub subnet: String,
    /// Sub-range to allocate from.
    pub range: String,
    /// Gateway address.
    pub gateway: String,
}
