//! Properties of the network allocator (`swarm_core::ipam`) over random sequences of network
//! creations (given pools or the default pool) and virtual-IP allocations and releases.

use std::collections::BTreeSet;
use std::net::IpAddr;

use proptest::prelude::*;
use swarm_core::ipam::{allocate_network, Cidr, IpamError, Pool, UsedSubnet};
use swarm_core::objects::network::{Ipam, IpamConfig};

#[derive(Clone, Debug)]
enum Op {
    /// A network with no pool of its own (the default pool, /size).
    Default,
    /// A network giving `10.<a>.<b>.0/<len>`.
    Given { a: u8, b: u8, len: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Default),
        1 => (0u8..4, 0u8..8, 22u8..27).prop_map(|(a, b, len)| Op::Given { a, b, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Subnets never overlap, default ones have the configured size and lie in the pool, and the
    /// default pool is only reported exhausted when no subnet of that size is free in it.
    #[test]
    fn subnets_never_overlap(ops in proptest::collection::vec(op(), 1..40), size in 20u32..26) {
        let pools = vec!["10.0.0.0/16".to_string()];
        let pool: Cidr = pools[0].parse().unwrap();
        let mut used: Vec<UsedSubnet> = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            let spec = match o {
                Op::Default => Ipam::default(),
                Op::Given { a, b, len } => Ipam {
                    configs: vec![IpamConfig {
                        subnet: format!("10.{a}.{b}.0/{len}"),
                        ..IpamConfig::default()
                    }],
                    ..Ipam::default()
                },
            };
            match allocate_network(&spec, &pools, size, &used) {
                Ok(got) => {
                    let subnet: Cidr = got.configs[0].subnet.parse().unwrap();
                    for u in &used {
                        prop_assert!(!u.subnet.overlaps(&subnet), "{subnet} overlaps {}", u.subnet);
                    }
                    if matches!(o, Op::Default) {
                        prop_assert_eq!(u32::from(subnet.prefix()), size);
                        prop_assert!(pool.contains(subnet.network()));
                    }
                    let gw: IpAddr = got.configs[0].gateway.parse().unwrap();
                    prop_assert!(subnet.contains(gw));
                    used.push(UsedSubnet { subnet, network: format!("n{i}") });
                }
                Err(IpamError::Overlap { .. }) => {
                    let given = matches!(o, Op::Given { .. });
                    prop_assert!(given, "an overlap for a default-pool network");
                }
                Err(IpamError::PoolsExhausted { .. }) => {
                    // Check by brute force that every /size subnet of the pool is taken.
                    let step = 1u32 << (32 - size);
                    let base = match pool.network() { IpAddr::V4(a) => u32::from(a), _ => unreachable!() };
                    let mut n = 0u32;
                    while n < 1 << 16 {
                        let c = Cidr::new(IpAddr::V4((base + n).into()), size as u8).unwrap();
                        prop_assert!(used.iter().any(|u| u.subnet.overlaps(&c)), "{c} was free");
                        n += step;
                    }
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    /// Addresses are unique, inside the range, never the network, gateway or broadcast address,
    /// always the lowest free one, and a full pool is reported only when it is full.
    #[test]
    fn addresses_are_unique_and_lowest_free(
        steps in proptest::collection::vec(any::<Option<prop::sample::Index>>(), 1..80),
        len in 26u8..30,
        ranged in any::<bool>(),
    ) {
        let pool = Pool::parse(&IpamConfig {
            subnet: format!("10.1.2.0/{len}"),
            range: if ranged { format!("10.1.2.0/{}", len + 1) } else { String::new() },
            gateway: String::new(),
        })
        .unwrap();
        let mut used: BTreeSet<IpAddr> = BTreeSet::new();
        for s in steps {
            match s {
                // Release one.
                Some(i) if !used.is_empty() => {
                    let a = *i.get(&used.iter().copied().collect::<Vec<_>>());
                    used.remove(&a);
                }
                _ => match pool.allocate(&used) {
                    Ok(a) => {
                        prop_assert!(pool.range.contains(a));
                        prop_assert!(a != pool.gateway && a != pool.subnet.network() && a != pool.subnet.last());
                        prop_assert!(!used.contains(&a));
                        // Lowest free: nothing below it in the range is free.
                        let lo = match pool.range.network() { IpAddr::V4(x) => u32::from(x), _ => unreachable!() };
                        let hi = match a { IpAddr::V4(x) => u32::from(x), _ => unreachable!() };
                        for n in lo..hi {
                            let b = IpAddr::V4(n.into());
                            prop_assert!(used.contains(&b) || b == pool.gateway || b == pool.subnet.network(), "{b} was free below {a}");
                        }
                        used.insert(a);
                    }
                    Err(IpamError::PoolFull { .. }) => {
                        let lo = match pool.range.network() { IpAddr::V4(x) => u32::from(x), _ => unreachable!() };
                        let hi = match pool.range.last() { IpAddr::V4(x) => u32::from(x), _ => unreachable!() };
                        for n in lo..=hi {
                            let b = IpAddr::V4(n.into());
                            prop_assert!(used.contains(&b) || b == pool.gateway || b == pool.subnet.network() || b == pool.subnet.last(), "{b} was free");
                        }
                    }
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                },
            }
        }
    }
}
