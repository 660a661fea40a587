//! Tasks with a network namespace of their own (the docker runtime) plumbed into the node's
//! namespace when the node runs the VIP data plane (`--vip-dataplane`, root): a veth pair per
//! task, one address from its first swarm network's subnet, its resolver and the VIP proxy
//! reached through a per-task nftables table. ARCHITECTURE.md, "Docker tasks across hosts",
//! gives the design and why the engine's bridges are not used.
//!
//! Calling contract (from [`super::ResolverRuntime`]): [`RoutingMesh::expect_plumbing`] at
//! `prepare` (the task is created with network mode `none`), [`RoutingMesh::plumb`] once `start`
//! returned (the container's namespace exists only then), [`RoutingMesh::plumbed_address`] for
//! `inspect`, [`RoutingMesh::unplumb`] at `remove`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use swarm_core::objects::task::TaskAddress;
use swarm_core::{Id, Network};

use super::vip::{run, VipError};
use super::{RoutingMesh, Shared};

/// The node side's address on every task link: the container's gateway and DNS server.
pub(crate) const HOST_SIDE: Ipv4Addr = Ipv4Addr::new(169, 254, 7, 1);
/// The prefix of the per-task nftables tables.
pub(crate) const TABLE_PREFIX: &str = "swarm_t_";

/// Why a task could not be plumbed.
#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    /// The task was not announced at `prepare` (or was already removed).
    #[error("task {0} was not prepared for plumbing")]
    Unknown(Id),
    /// Its first network has no IPv4 subnet to take an address from.
    #[error("network {0} has no IPv4 subnet")]
    NoSubnet(String),
    /// Every address of the subnet is taken on this node.
    #[error("no free address left in network {0}'s subnet on this node")]
    Full(String),
    /// A command (`ip`, `nsenter`, `nft`) failed.
    #[error(transparent)]
    Command(#[from] VipError),
    /// A file (sysctl, the container's resolv.conf) could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One task, announced at `prepare`, plumbed at `start`.
#[derive(Debug, Clone)]
pub(crate) struct Plumbed {
    /// Its networks, in attachment order (the address comes from the first).
    networks: Vec<Arc<Network>>,
    /// Its resolver's port on 127.0.0.1 (0: none).
    resolver_port: u16,
    /// Its address, once plumbed.
    addr: Option<Ipv4Addr>,
}

impl Plumbed {
    fn scope(&self) -> Vec<Id> {
        self.networks.iter().map(|n| n.id).collect()
    }
}

/// The node-side link name of `task` (at most 15 bytes).
fn link_name(task: &Id) -> String {
    let id = task.as_str();
    format!("sw{}", &id[..id.len().min(12)])
}

/// The nftables table of `task`.
fn table_name(task: &Id) -> String {
    let id = task.as_str();
    format!("{TABLE_PREFIX}{}", &id[..id.len().min(12)])
}

/// The first IPv4 subnet of `n` (its allocated IPAM, else its spec's): network address, prefix
/// length and gateway.
fn subnet(n: &Network) -> Option<(u32, u32, Option<Ipv4Addr>)> {
    let ipam = n.ipam.as_ref().unwrap_or(&n.spec.ipam);
    ipam.configs.iter().find_map(|c| {
        let (ip, len) = c.subnet.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let len: u32 = len.parse().ok().filter(|l| *l <= 30)?;
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        Some((u32::from(ip) & mask, len, c.gateway.parse().ok()))
    })
}

/// The highest address of the subnet (`net`/`len`) that is not its broadcast, its network
/// address, its gateway (the first host when none is given), or in `used`.
pub(crate) fn allocate(
    net: u32,
    len: u32,
    gateway: Option<Ipv4Addr>,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let size = 1u64 << (32 - len);
    let gateway = gateway.unwrap_or(Ipv4Addr::from(net.wrapping_add(1)));
    (1..size.saturating_sub(1))
        .rev()
        .map(|i| Ipv4Addr::from(net.wrapping_add(i as u32)))
        .find(|a| *a != gateway && !used.contains(a))
}

/// The nftables script of a task's table: its DNS queries to `resolver` and every other TCP
/// connection to the VIP proxy on `vip` (0: none), both on 127.0.0.1.
pub(crate) fn nft_script(table: &str, link: &str, resolver: u16, vip: u16) -> String {
    let mut rules = String::new();
    if resolver != 0 {
        for proto in ["udp", "tcp"] {
            rules.push_str(&format!(
                "    iifname \"{link}\" ip daddr {HOST_SIDE} {proto} dport 53 dnat to 127.0.0.1:{resolver}\n"
            ));
        }
    }
    if vip != 0 {
        rules.push_str(&format!(
            "    iifname \"{link}\" ip daddr != {HOST_SIDE} meta l4proto tcp dnat to 127.0.0.1:{vip}\n"
        ));
    }
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n  chain pre {{\n    type nat hook prerouting priority -100; policy accept;\n{rules}  }}\n}}\n"
    )
}

fn write(path: String, text: &str) -> Result<(), PlumbError> {
    std::fs::write(&path, text).map_err(|source| PlumbError::Write { path, source })
}

/// Runs `ip args` inside the namespace of process `pid`.
async fn in_ns(pid: u32, args: &[&str]) -> Result<(), VipError> {
    let net = format!("--net=/proc/{pid}/ns/net");
    let mut all = vec![net.as_str(), "ip"];
    all.extend_from_slice(args);
    run("nsenter", &all, None).await
}

/// The plumbed address whose task is attached to the returned networks, if `ip` is one.
pub(crate) fn scope_of(shared: &Shared, ip: IpAddr) -> Option<Vec<Id>> {
    let plumbed = shared.lock_plumbed();
    plumbed
        .values()
        .find(|p| p.addr.map(IpAddr::V4) == Some(ip))
        .map(Plumbed::scope)
}

/// Deletes every per-task table (this daemon's, or those a crashed one left).
pub(crate) async fn cleanup_tables() {
    let out = tokio::process::Command::new("nft")
        .args(["list", "tables"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await;
    let Ok(out) = out else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(t) = line.strip_prefix("table ip ") {
            if t.starts_with(TABLE_PREFIX) {
                let _ = run("nft", &["delete", "table", "ip", t], None).await;
            }
        }
    }
}

impl Shared {
    fn lock_plumbed(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Id, Plumbed>> {
        // Only inserts, removes and field updates happen under this lock.
        self.plumbed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RoutingMesh {
    /// Whether this node plumbs the tasks of a runtime whose tasks have their own network
    /// namespace (`--vip-dataplane`, and the tasks do not share the node's network).
    pub fn plumbs_tasks(&self) -> bool {
        self.shared.config.vip_dataplane && !self.shared.config.shared_host_network
    }

    /// Announces `task`, attached to `networks`, whose resolver listens on 127.0.0.1 at
    /// `resolver_port` (0: none), to be plumbed after its start.
    pub fn expect_plumbing(&self, task: Id, networks: Vec<Arc<Network>>, resolver_port: u16) {
        self.shared.lock_plumbed().insert(
            task,
            Plumbed {
                networks,
                resolver_port,
                addr: None,
            },
        );
    }

    /// Whether `task` was announced by [`RoutingMesh::expect_plumbing`].
    pub fn expects_plumbing(&self, task: &Id) -> bool {
        self.shared.lock_plumbed().contains_key(task)
    }

    /// The address `task` was given, on its first network.
    pub fn plumbed_address(&self, task: &Id) -> Option<TaskAddress> {
        let plumbed = self.shared.lock_plumbed();
        let p = plumbed.get(task)?;
        Some(TaskAddress {
            network_id: p.networks.first().map(|n| n.id),
            addr: IpAddr::V4(p.addr?),
        })
    }

    /// Links the started `task`, whose main process is `pid`, to this node (see the module
    /// docs); its address.
    pub async fn plumb(&self, task: Id, pid: u32) -> Result<Ipv4Addr, PlumbError> {
        let (addr, resolver, first) = {
            let mut plumbed = self.shared.lock_plumbed();
            let mut used: BTreeSet<Ipv4Addr> = plumbed.values().filter_map(|p| p.addr).collect();
            let names = self.shared.names.borrow().clone();
            used.extend(
                names
                    .services
                    .values()
                    .flat_map(|s| s.vips.iter())
                    .filter_map(|(_, v)| match v {
                        IpAddr::V4(v) => Some(*v),
                        IpAddr::V6(_) => None,
                    }),
            );
            let p = plumbed.get_mut(&task).ok_or(PlumbError::Unknown(task))?;
            let first = p.networks.first().ok_or(PlumbError::Unknown(task))?.clone();
            let name = first.spec.annotations.name.clone();
            let (net, len, gateway) = subnet(&first).ok_or(PlumbError::NoSubnet(name.clone()))?;
            let addr = allocate(net, len, gateway, &used).ok_or(PlumbError::Full(name))?;
            p.addr = Some(addr);
            (addr, p.resolver_port, first)
        };
        let link = link_name(&task);
        let r = self.link(&task, pid, &link, addr, resolver).await;
        if let Err(e) = &r {
            tracing::warn!(%task, network = %first.spec.annotations.name, error = %e, "cannot link the task to this node");
            let _ = run("ip", &["link", "del", &link], None).await;
            if let Some(p) = self.shared.lock_plumbed().get_mut(&task) {
                p.addr = None;
            }
        }
        r.map(|()| addr)
    }

    async fn link(
        &self,
        task: &Id,
        pid: u32,
        link: &str,
        addr: Ipv4Addr,
        resolver: u16,
    ) -> Result<(), PlumbError> {
        let pid_s = pid.to_string();
        let host = format!("{HOST_SIDE}/32");
        let a = format!("{addr}/32");
        let gw = HOST_SIDE.to_string();
        run(
            "ip",
            &[
                "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", &pid_s,
            ],
            None,
        )
        .await?;
        write(
            format!("/proc/sys/net/ipv4/conf/{link}/route_localnet"),
            "1",
        )?;
        run("ip", &["addr", "add", &host, "dev", link], None).await?;
        run("ip", &["link", "set", link, "up"], None).await?;
        run("ip", &["route", "add", &a, "dev", link], None).await?;
        in_ns(pid, &["addr", "add", &a, "dev", "eth0"]).await?;
        in_ns(pid, &["link", "set", "eth0", "up"]).await?;
        in_ns(pid, &["route", "add", &gw, "dev", "eth0"]).await?;
        in_ns(pid, &["route", "add", "default", "via", &gw, "dev", "eth0"]).await?;
        write(
            format!("/proc/{pid}/root/etc/resolv.conf"),
            &format!("nameserver {HOST_SIDE}\noptions ndots:0\n"),
        )?;
        let vip = self.shared.vip_port.load(Ordering::Relaxed);
        let script = nft_script(&table_name(task), link, resolver, vip);
        run("nft", &["-f", "-"], Some(&script)).await?;
        Ok(())
    }

    /// Forgets `task` and removes its link and table.
    pub async fn unplumb(&self, task: &Id) {
        let had = self.shared.lock_plumbed().remove(task);
        if had.is_some_and(|p| p.addr.is_some()) {
            // The link goes with the container's namespace; it may still exist if the
            // container does.
            let _ = run("ip", &["link", "del", &link_name(task)], None).await;
            let _ = run("nft", &["delete", "table", "ip", &table_name(task)], None).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_the_top_of_the_subnet_skipping_what_is_taken() {
        let net = u32::from(Ipv4Addr::new(10, 0, 1, 0));
        let mut used = BTreeSet::new();
        let a = allocate(net, 24, None, &used).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 1, 254));
        used.insert(a);
        assert_eq!(
            allocate(net, 24, None, &used),
            Some(Ipv4Addr::new(10, 0, 1, 253))
        );
        // A /30 has two hosts: the gateway (first) and one address.
        let gw = None;
        assert_eq!(
            allocate(net, 30, gw, &BTreeSet::new()),
            Some(Ipv4Addr::new(10, 0, 1, 2))
        );
        let full = BTreeSet::from([Ipv4Addr::new(10, 0, 1, 2)]);
        assert_eq!(allocate(net, 30, gw, &full), None);
        // A given gateway is never handed out.
        let gw = Some(Ipv4Addr::new(10, 0, 1, 254));
        assert_eq!(
            allocate(net, 24, gw, &BTreeSet::new()),
            Some(Ipv4Addr::new(10, 0, 1, 253))
        );
    }

    #[test]
    fn a_task_table_sends_dns_to_its_resolver_and_tcp_to_the_vip_proxy() {
        let s = nft_script("swarm_t_abc", "swabc", 5353, 4000);
        assert!(s.starts_with("table ip swarm_t_abc\ndelete table ip swarm_t_abc\n"));
        assert!(s.contains(
            "iifname \"swabc\" ip daddr 169.254.7.1 udp dport 53 dnat to 127.0.0.1:5353"
        ));
        assert!(s.contains(
            "iifname \"swabc\" ip daddr 169.254.7.1 tcp dport 53 dnat to 127.0.0.1:5353"
        ));
        assert!(s.contains(
            "iifname \"swabc\" ip daddr != 169.254.7.1 meta l4proto tcp dnat to 127.0.0.1:4000"
        ));
        let none = nft_script("swarm_t_abc", "swabc", 0, 0);
        assert!(!none.contains("dnat"), "{none}");
    }
}
