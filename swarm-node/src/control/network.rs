//! Swarm-scoped networks: objects and their address allocation (subnets here, service virtual IPs
//! in `service.rs`), enough for services and `docker stack`; the data plane is the runtime's.

use std::net::IpAddr;

use swarm_core::ipam::{self, UsedSubnet};
use swarm_core::objects::network::{Ipam, NetworkSpec};
use swarm_core::validate::validate_network_spec;
use swarm_core::{Cluster, Id, Meta, Network, ObjectKind, Service, Tx};

use super::resolve::resolve;
use super::{Control, ControlError};

/// Driver of swarm-scoped networks.
pub(crate) const OVERLAY: &str = "overlay";

impl Control {
    /// `docker network create --driver overlay`: validates and stores the network.
    pub async fn create_network(&self, mut spec: NetworkSpec) -> Result<Id, ControlError> {
        if spec.driver.name.is_empty() {
            spec.driver.name = OVERLAY.to_string();
        }
        if spec.driver.name != OVERLAY {
            return Err(ControlError::InvalidArgument(format!(
                "network driver {:?} is not supported: this daemon only creates swarm-scoped {OVERLAY} networks",
                spec.driver.name
            )));
        }
        validate_network_spec(&spec)?;
        if spec.ingress && spec.attachable {
            return Err(ControlError::InvalidArgument(
                "ingress network cannot be attachable".into(),
            ));
        }
        for c in &spec.ipam.configs {
            validate_pool(&c.subnet, &c.range, &c.gateway)?;
        }
        let id = self.new_id();
        self.commit(|tx| {
            if spec.ingress {
                if let Some(n) = tx.list::<Network>().into_iter().find(|n| n.spec.ingress) {
                    return Err(ControlError::AlreadyExists(format!(
                        "ingress network ({}) is already present",
                        n.id
                    )));
                }
            }
            if tx.get_by_name::<Network>(&spec.annotations.name).is_some() {
                // Docker's own check, before it reaches SwarmKit.
                return Err(ControlError::Conflict(format!(
                    "network with name {} already exists",
                    spec.annotations.name
                )));
            }
            let ipam = allocate_ipam(tx, &spec)?;
            tx.create(Network {
                id,
                meta: Meta::default(),
                spec,
                ipam: Some(ipam),
            })?;
            Ok(id)
        })
        .await
    }

    /// `docker network rm`: refused while a service is attached.
    pub async fn remove_network(&self, input: &str) -> Result<(), ControlError> {
        self.commit(|tx| {
            let cur = resolve::<Network>(tx.committed(), input)?;
            let target = cur.id.to_string();
            if let Some(svc) = tx
                .list::<Service>()
                .into_iter()
                .find(|s| s.spec.task.networks.iter().any(|n| n.target == target))
            {
                // SwarmKit's wording and code (ids, not names).
                return Err(ControlError::FailedPrecondition(format!(
                    "network {} is in use by service {}",
                    cur.id, svc.id
                )));
            }
            tx.remove(ObjectKind::Network, &cur.id)?;
            Ok(())
        })
        .await
    }
}

/// The network's IPAM ([`swarm_core::ipam::allocate_network`]): its own pools, which may not
/// overlap another network's subnets, or a subnet from the cluster's default address pool.
fn allocate_ipam(tx: &Tx<'_>, spec: &NetworkSpec) -> Result<Ipam, ControlError> {
    let networks = tx.list::<Network>();
    let used: Vec<UsedSubnet> = networks
        .iter()
        .flat_map(|n| {
            let ipam = n.ipam.as_ref().unwrap_or(&n.spec.ipam);
            ipam.configs.iter().filter_map(|c| {
                Some(UsedSubnet {
                    subnet: c.subnet.parse().ok()?,
                    network: n.spec.annotations.name.clone(),
                })
            })
        })
        .collect();
    let bootstrap = tx
        .list::<Cluster>()
        .first()
        .map(|c| c.network_bootstrap.clone())
        .unwrap_or_default();
    ipam::allocate_network(
        &spec.ipam,
        &bootstrap.default_addr_pool,
        bootstrap.subnet_size,
        &used,
    )
    .map_err(|e| match e {
        ipam::IpamError::Overlap { .. } | ipam::IpamError::InvalidCidr(_) => {
            ControlError::InvalidArgument(format!("ipam configuration: {e}"))
        }
        _ => ControlError::FailedPrecondition(format!("cannot allocate the network's subnet: {e}")),
    })
}

/// Checks one IPAM pool as SwarmKit does: a CIDR subnet, and a range and gateway inside it.
fn validate_pool(subnet: &str, range: &str, gateway: &str) -> Result<(), ControlError> {
    let bad = |m: String| ControlError::InvalidArgument(format!("ipam configuration: {m}"));
    if subnet.is_empty() {
        return Err(bad("cannot be empty".into()));
    }
    let net = parse_cidr(subnet).ok_or_else(|| bad(format!("invalid subnet {subnet}")))?;
    if !range.is_empty() {
        let r = parse_cidr(range).ok_or_else(|| bad(format!("invalid range {range}")))?;
        if !(contains(net, r.0) && r.1 >= net.1) {
            return Err(bad(format!(
                "subnet {subnet} does not contain range {range}"
            )));
        }
    }
    if !gateway.is_empty() {
        let g: IpAddr = gateway
            .parse()
            .map_err(|_| bad(format!("invalid gateway {gateway}")))?;
        if !contains(net, g) {
            return Err(bad(format!(
                "subnet {subnet} does not contain gateway {gateway}"
            )));
        }
    }
    Ok(())
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn contains((net, len): (IpAddr, u8), ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools() {
        assert!(validate_pool("10.0.0.0/24", "", "10.0.0.1").is_ok());
        assert!(validate_pool("10.0.0.0/24", "10.0.0.128/25", "").is_ok());
        assert!(validate_pool("10.0.0.0/24", "10.0.1.0/25", "").is_err());
        assert!(validate_pool("10.0.0.0/24", "", "10.0.1.1").is_err());
        assert!(validate_pool("10.0.0.0", "", "").is_err());
        assert!(validate_pool("10.0.0.0/33", "", "").is_err());
        assert!(validate_pool("", "", "").is_err());
        assert!(validate_pool("fd00::/64", "", "fd00::1").is_ok());
    }
}
