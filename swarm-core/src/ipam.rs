//! Address management for swarm networks: the subnet each network gets and the virtual IP each
//! service gets on it.
//!
//! # Policy (Docker's, where it can be observed)
//! - **Subnets.** A network whose spec gives IPAM pools keeps them: each pool's gateway is the
//!   given one or the subnet's first host address. A network that gives none gets one subnet of
//!   the cluster's `subnet_size` (24 by default) from its `default_addr_pool` (`10.0.0.0/8`): the
//!   lowest one that overlaps no other network's subnet. Two networks never overlap
//!   ([`IpamError::Overlap`] for a given pool that would).
//! - **Addresses** (virtual IPs): the lowest free address of the pool's range, or of the subnet
//!   when the pool gives no range, never the subnet's network address, its gateway or (IPv4) its
//!   broadcast address. Docker's serial allocation does the same, so the first service on
//!   `10.0.1.0/24` gets `10.0.1.2`.
//! - Everything here is a pure function of its arguments: what is already used is passed in,
//!   read from the store by the caller in the same transaction that records the result.
//!
//! # What it does not do
//! It keeps no state of its own (the store is the state) and allocates no task addresses: a
//! task's address comes from the node that runs it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::objects::network::{Ipam, IpamConfig};

/// Why an address or a subnet could not be allocated, or a pool was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// A CIDR string did not parse.
    #[error("invalid CIDR {0:?}: expected an address and a prefix length, like 10.0.1.0/24")]
    InvalidCidr(String),
    /// An address string did not parse.
    #[error("invalid IP address {0:?}")]
    InvalidAddress(String),
    /// The cluster's subnet size does not fit its default address pool.
    #[error("subnet size /{size} does not fit the default address pool {pool}")]
    SubnetSize {
        /// The pool.
        pool: String,
        /// The configured prefix length.
        size: u32,
    },
    /// Every subnet of the default address pools is taken.
    #[error("no free subnet of size /{size} is left in the default address pools ({pools})")]
    PoolsExhausted {
        /// The pools, comma-separated.
        pools: String,
        /// The subnet size asked for.
        size: u32,
    },
    /// A pool given for a new network overlaps an existing network's subnet.
    #[error(
        "invalid pool request: pool {subnet} overlaps with the subnet {other} of network {network}"
    )]
    Overlap {
        /// The pool asked for.
        subnet: String,
        /// The overlapping subnet.
        other: String,
        /// The network holding it (name).
        network: String,
    },
    /// Every address of a pool is taken.
    #[error("no free address is left in {pool}")]
    PoolFull {
        /// The pool (its range, or its subnet).
        pool: String,
    },
}

/// An IP network in CIDR form, held with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network `addr/prefix` (host bits of `addr` cleared), or `None` if `prefix` is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        if u32::from(prefix) > bits(addr) {
            return None;
        }
        let net = from_u128(addr, to_u128(addr) & mask(addr, prefix));
        Some(Cidr { addr: net, prefix })
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The last address of the network (IPv4: the broadcast address).
    pub fn last(&self) -> IpAddr {
        let host = !mask(self.addr, self.prefix) & all_ones(self.addr);
        from_u128(self.addr, to_u128(self.addr) | host)
    }

    /// Whether `ip` belongs to this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && to_u128(ip) & mask(ip, self.prefix) == to_u128(self.addr)
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// `addr` with this network's prefix length, as Docker writes a virtual IP (`10.0.1.2/24`).
    pub fn with_host(&self, addr: IpAddr) -> String {
        format!("{addr}/{}", self.prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = IpamError;

    /// Parses `addr/prefix`; host bits may be set (`10.0.1.7/24` is `10.0.1.0/24`).
    fn from_str(s: &str) -> Result<Cidr, IpamError> {
        let bad = || IpamError::InvalidCidr(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Cidr::new(addr, len).ok_or_else(bad)
    }
}

fn bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn all_ones(ip: IpAddr) -> u128 {
    if ip.is_ipv4() {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    }
}

fn mask(ip: IpAddr, prefix: u8) -> u128 {
    let host_bits = bits(ip) - u32::from(prefix);
    all_ones(ip) & all_ones(ip).checked_shl(host_bits).unwrap_or(0)
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of `like`'s family holding `v` (truncated to 32 bits for IPv4).
fn from_u128(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// One pool ready to allocate from: its subnet, the range addresses come from, its gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// The subnet.
    pub subnet: Cidr,
    /// Where addresses are taken from (the subnet when the pool gives no range).
    pub range: Cidr,
    /// The gateway (never allocated).
    pub gateway: IpAddr,
}

impl Pool {
    /// Reads an allocated pool (subnet, optional range, gateway) from its strings.
    pub fn parse(c: &IpamConfig) -> Result<Pool, IpamError> {
        let subnet: Cidr = c.subnet.parse()?;
        let range = if c.range.is_empty() {
            subnet
        } else {
            c.range.parse()?
        };
        let gateway = if c.gateway.is_empty() {
            first_host(&subnet)
        } else {
            c.gateway
                .parse()
                .map_err(|_| IpamError::InvalidAddress(c.gateway.clone()))?
        };
        Ok(Pool {
            subnet,
            range,
            gateway,
        })
    }

    /// The lowest address of the range that is not the subnet's network address, its last
    /// address (IPv4 broadcast), the gateway, or in `used`.
    pub fn allocate(&self, used: &BTreeSet<IpAddr>) -> Result<IpAddr, IpamError> {
        let lo = to_u128(self.range.network());
        let hi = to_u128(self.range.last());
        let reserved = [
            self.subnet.network(),
            self.gateway,
            if self.subnet.network().is_ipv4() {
                self.subnet.last()
            } else {
                // IPv6 has no broadcast address.
                self.gateway
            },
        ];
        // Walk the used addresses of the range in order instead of probing every address: the
        // first gap is the answer, in O(used) whatever the range's size.
        let mut taken: BTreeSet<u128> = used
            .iter()
            .filter(|a| self.range.contains(**a))
            .map(|a| to_u128(*a))
            .collect();
        taken.extend(
            reserved
                .iter()
                .filter(|a| self.range.contains(**a))
                .map(|a| to_u128(*a)),
        );
        let mut next = lo;
        for t in taken.range(lo..=hi) {
            if *t != next {
                break;
            }
            if next == hi {
                return Err(IpamError::PoolFull {
                    pool: self.range.to_string(),
                });
            }
            next += 1;
        }
        Ok(from_u128(self.range.network(), next))
    }
}

/// The subnet's first host address (`.1`), the default gateway.
pub fn first_host(subnet: &Cidr) -> IpAddr {
    let n = to_u128(subnet.network());
    if subnet.network() == subnet.last() {
        subnet.network()
    } else {
        from_u128(subnet.network(), n + 1)
    }
}

/// An existing network's subnets, named for error messages.
#[derive(Clone, Debug)]
pub struct UsedSubnet {
    /// The subnet.
    pub subnet: Cidr,
    /// The network's name.
    pub network: String,
}

/// The IPAM a new network gets (see the module docs): the spec's pools with gateways filled in,
/// or one subnet from `default_pools`. `used` holds every existing network's subnets.
pub fn allocate_network(
    spec: &Ipam,
    default_pools: &[String],
    subnet_size: u32,
    used: &[UsedSubnet],
) -> Result<Ipam, IpamError> {
    let mut out = Ipam {
        driver: spec.driver.clone(),
        options: spec.options.clone(),
        configs: Vec::with_capacity(spec.configs.len().max(1)),
    };
    if !spec.configs.is_empty() {
        for c in &spec.configs {
            let pool = Pool::parse(c)?;
            if let Some(u) = used.iter().find(|u| u.subnet.overlaps(&pool.subnet)) {
                return Err(IpamError::Overlap {
                    subnet: pool.subnet.to_string(),
                    other: u.subnet.to_string(),
                    network: u.network.clone(),
                });
            }
            out.configs.push(IpamConfig {
                subnet: pool.subnet.to_string(),
                range: c.range.clone(),
                gateway: pool.gateway.to_string(),
            });
        }
        return Ok(out);
    }
    let subnet = allocate_subnet(default_pools, subnet_size, used)?;
    out.configs.push(IpamConfig {
        subnet: subnet.to_string(),
        range: String::new(),
        gateway: first_host(&subnet).to_string(),
    });
    Ok(out)
}

/// The lowest subnet of `/size` inside one of `pools` (in order) that overlaps nothing in `used`.
pub fn allocate_subnet(
    pools: &[String],
    size: u32,
    used: &[UsedSubnet],
) -> Result<Cidr, IpamError> {
    for p in pools {
        let pool: Cidr = p.parse()?;
        let prefix = u8::try_from(size)
            .ok()
            .filter(|s| *s >= pool.prefix() && u32::from(*s) <= bits(pool.network()))
            .ok_or_else(|| IpamError::SubnetSize {
                pool: p.clone(),
                size,
            })?;
        let step = 1u128 << (bits(pool.network()) - u32::from(prefix));
        let end = to_u128(pool.last());
        // Candidates in order; skip past whatever a used subnet covers instead of stepping one
        // subnet at a time, so a crowded pool costs O(used), not O(pool).
        let mut at = to_u128(pool.network());
        'candidates: loop {
            let cand = Cidr::new(from_u128(pool.network(), at), prefix)
                .expect("prefix checked against the family");
            for u in used {
                if u.subnet.overlaps(&cand) {
                    let past = to_u128(u.subnet.last()).max(to_u128(cand.last()));
                    // Round up to the next subnet boundary after the overlap.
                    let next = (past / step + 1).checked_mul(step);
                    match next {
                        Some(n) if n <= end && n > at => {
                            at = n;
                            continue 'candidates;
                        }
                        _ => break 'candidates,
                    }
                }
            }
            return Ok(cand);
        }
    }
    Err(IpamError::PoolsExhausted {
        pools: pools.join(", "),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(list: &[&str]) -> Vec<UsedSubnet> {
        list.iter()
            .map(|s| UsedSubnet {
                subnet: s.parse().unwrap(),
                network: format!("net-{s}"),
            })
            .collect()
    }

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parses_clears_host_bits_and_refuses_garbage() {
        let c: Cidr = "10.0.1.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.1.0/24");
        assert_eq!(c.last().to_string(), "10.0.1.255");
        for bad in ["10.0.1.0", "10.0.1.0/33", "x/24", "10.0.1.0/-1", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let v6: Cidr = "fd00::1/64".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00::/64");
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn subnets_come_from_the_default_pool_in_order_skipping_used_ones() {
        let pools = vec!["10.0.0.0/8".to_string()];
        assert_eq!(
            allocate_subnet(&pools, 24, &[]).unwrap().to_string(),
            "10.0.0.0/24"
        );
        let u = used(&["10.0.0.0/24", "10.0.1.0/24", "10.0.3.0/24"]);
        assert_eq!(
            allocate_subnet(&pools, 24, &u).unwrap().to_string(),
            "10.0.2.0/24"
        );
        // A wide user pool is skipped whole, in one step.
        let u = used(&["10.0.0.0/16"]);
        assert_eq!(
            allocate_subnet(&pools, 24, &u).unwrap().to_string(),
            "10.1.0.0/24"
        );
        // Pools are tried in order.
        let pools = vec!["10.9.0.0/24".to_string(), "172.30.0.0/16".to_string()];
        let u = used(&["10.9.0.0/24"]);
        assert_eq!(
            allocate_subnet(&pools, 24, &u).unwrap().to_string(),
            "172.30.0.0/24"
        );
    }

    #[test]
    fn an_exhausted_pool_and_a_bad_size_are_typed_errors() {
        let pools = vec!["10.9.0.0/23".to_string()];
        let u = used(&["10.9.0.0/24", "10.9.1.0/24"]);
        assert!(matches!(
            allocate_subnet(&pools, 24, &u),
            Err(IpamError::PoolsExhausted { size: 24, .. })
        ));
        assert!(matches!(
            allocate_subnet(&pools, 16, &[]),
            Err(IpamError::SubnetSize { size: 16, .. })
        ));
        assert!(matches!(
            allocate_subnet(&pools, 99, &[]),
            Err(IpamError::SubnetSize { .. })
        ));
    }

    #[test]
    fn given_pools_are_kept_with_a_default_gateway_and_may_not_overlap() {
        let spec = Ipam {
            configs: vec![IpamConfig {
                subnet: "10.240.10.0/24".into(),
                range: "10.240.10.128/25".into(),
                gateway: String::new(),
            }],
            ..Ipam::default()
        };
        let got = allocate_network(&spec, &["10.0.0.0/8".into()], 24, &[]).unwrap();
        assert_eq!(got.configs[0].gateway, "10.240.10.1");
        assert_eq!(got.configs[0].range, "10.240.10.128/25");
        let err = allocate_network(&spec, &[], 24, &used(&["10.240.0.0/16"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("overlaps with the subnet 10.240.0.0/16"),
            "{err}"
        );
        let empty = allocate_network(&Ipam::default(), &["10.0.0.0/8".into()], 24, &[]).unwrap();
        assert_eq!(empty.configs[0].subnet, "10.0.0.0/24");
        assert_eq!(empty.configs[0].gateway, "10.0.0.1");
    }

    #[test]
    fn addresses_are_the_lowest_free_ones_of_the_range() {
        let p = Pool::parse(&IpamConfig {
            subnet: "10.0.1.0/24".into(),
            range: String::new(),
            gateway: String::new(),
        })
        .unwrap();
        assert_eq!(p.allocate(&ips(&[])).unwrap().to_string(), "10.0.1.2");
        assert_eq!(
            p.allocate(&ips(&["10.0.1.2", "10.0.1.3", "10.0.1.5"]))
                .unwrap()
                .to_string(),
            "10.0.1.4"
        );
        // Docker's fixture: a range's first address is used, the gateway is not in it.
        let r = Pool::parse(&IpamConfig {
            subnet: "10.240.10.0/24".into(),
            range: "10.240.10.128/25".into(),
            gateway: "10.240.10.1".into(),
        })
        .unwrap();
        assert_eq!(r.allocate(&ips(&[])).unwrap().to_string(), "10.240.10.128");
    }

    #[test]
    fn a_full_pool_is_a_typed_error_and_the_broadcast_is_never_given() {
        let p = Pool::parse(&IpamConfig {
            subnet: "10.0.1.0/30".into(),
            range: String::new(),
            gateway: String::new(),
        })
        .unwrap();
        // .0 network, .1 gateway, .2 free, .3 broadcast.
        assert_eq!(p.allocate(&ips(&[])).unwrap().to_string(), "10.0.1.2");
        assert_eq!(
            p.allocate(&ips(&["10.0.1.2"])),
            Err(IpamError::PoolFull {
                pool: "10.0.1.0/30".into()
            })
        );
        let v6 = Pool::parse(&IpamConfig {
            subnet: "fd00::/126".into(),
            range: String::new(),
            gateway: String::new(),
        })
        .unwrap();
        // IPv6: no broadcast, so the last address is given too.
        assert_eq!(
            v6.allocate(&ips(&["fd00::2"])).unwrap().to_string(),
            "fd00::3"
        );
    }
}
