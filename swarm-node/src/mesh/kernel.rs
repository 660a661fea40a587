//! The kernel path for local ingress (root, Linux, nftables; [`super::MeshConfig::kernel_ingress`]):
//! connections to a published TCP port that should go to a task on this node are DNATed by the
//! kernel to the task, as Docker's ingress does with iptables and IPVS; only those that must go
//! to another node reach the userspace listener.
//!
//! - One nftables table, `ip swarm_ingress`, replaced whole (`nft -f`, one atomic transaction)
//!   whenever the view changes what it should hold. Per published TCP port with `T` backends of
//!   which `L` run here: `tcp dport P dnat to numgen inc mod T map { 0 : task0 . port0, ...,
//!   L-1 : ... }`. A new connection draws a number: below `L` it goes to that local task in the
//!   kernel (round robin, as `numgen inc` counts); from `L` to `T-1` the map has no entry, the
//!   rule does not apply and the connection reaches the mesh's listener, which then tries the
//!   remote backends first (local ones only if none answers). So every backend, local or not,
//!   gets its share, as without the kernel path. A port with no local backend has no rule.
//! - Two chains: `output` (connections opened on this node, matched on the mesh address, or on
//!   any local address when it is the wildcard) and `prerouting` (connections from other hosts).
//!   A task reached on a loopback address (the process runtime's tasks) can only be a target in
//!   `output`: the kernel drops packets from outside routed to loopback (`route_localnet` is left
//!   alone), so such backends are left to the userspace proxy for connections from other hosts.
//! - Backends follow the mesh view (running, healthy tasks; a task leaves as soon as its stop is
//!   committed, before the drain), so the rules follow task state and health on every node.
//!   Connections already set up keep their task (conntrack), as proxied ones do.
//! - The table is removed when the mesh stops, and a stale one (a crashed daemon's) at start:
//!   one daemon per network namespace may use it. Not root, `nft` missing or failing: a warning,
//!   and the userspace proxy carries everything.
//!
//! Not done: UDP ports (the userspace proxy carries them: its sessions end when their task
//! leaves, a conntrack entry would not), IPv6.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use swarm_core::objects::service::Protocol;
use swarm_core::Id;

use super::view::{Backend, MeshView};
use super::vip::{run, VipError};
use super::{is_local, PortKey, Shared};

/// The nftables table holding the ingress DNAT rules.
pub(crate) const INGRESS_TABLE: &str = "swarm_ingress";

/// Which hooks carry a port's local share in the kernel: the userspace proxy then sends the
/// connections it gets through that hook to remote backends first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Carried {
    /// Connections opened on this node (`output`).
    pub(crate) output: bool,
    /// Connections from other hosts (`prerouting`).
    pub(crate) prerouting: bool,
}

/// One port's rule: the local targets per hook, out of `total` backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortRule {
    port: u16,
    total: usize,
    output: Vec<SocketAddr>,
    prerouting: Vec<SocketAddr>,
}

impl PortRule {
    fn carried(&self) -> Carried {
        Carried {
            output: !self.output.is_empty(),
            // Prerouting carries the local share only when it reaches every local task.
            prerouting: !self.prerouting.is_empty() && self.prerouting.len() == self.output.len(),
        }
    }
}

/// The rules `view` calls for on `node` (pure): TCP ports with at least one local IPv4 backend.
pub(crate) fn rules(view: &MeshView, node: Option<Id>) -> Vec<PortRule> {
    view.iter()
        .filter(|(k, _)| k.protocol == Protocol::Tcp)
        .filter_map(|(k, backends)| {
            let local: Vec<SocketAddr> = backends
                .iter()
                .filter(|b| is_local(node, b))
                .map(|b: &Backend| b.addr)
                .filter(SocketAddr::is_ipv4)
                .collect();
            (!local.is_empty()).then(|| PortRule {
                port: k.port,
                total: backends.len(),
                prerouting: local
                    .iter()
                    .copied()
                    .filter(|a| !a.ip().is_loopback())
                    .collect(),
                output: local,
            })
        })
        .collect()
}

/// What `rules` carry, by port.
pub(crate) fn carried(rules: &[PortRule]) -> BTreeMap<PortKey, Carried> {
    rules
        .iter()
        .map(|r| {
            let key = PortKey {
                port: r.port,
                protocol: Protocol::Tcp,
            };
            (key, r.carried())
        })
        .collect()
}

/// The nftables script replacing the table with `rules` for a mesh listening on `addr` (the
/// table emptied first; no rule: no table). `None` for an IPv6 mesh address (not supported).
pub(crate) fn script(rules: &[PortRule], addr: IpAddr) -> Option<String> {
    let (daddr, external) = match addr {
        IpAddr::V4(a) if a.is_unspecified() => ("fib daddr type local".to_string(), true),
        IpAddr::V4(a) => (format!("ip daddr {a}"), !a.is_loopback()),
        IpAddr::V6(_) => return None,
    };
    let mut s = format!("table ip {INGRESS_TABLE}\ndelete table ip {INGRESS_TABLE}\n");
    if rules.is_empty() {
        return Some(s);
    }
    let chain = |name: &str, hook: &str, pick: fn(&PortRule) -> &Vec<SocketAddr>| {
        let mut c =
            format!("  chain {name} {{\n    type nat hook {hook} priority -100; policy accept;\n");
        for r in rules.iter().filter(|r| !pick(r).is_empty()) {
            let map: Vec<String> = pick(r)
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{i} : {} . {}", a.ip(), a.port()))
                .collect();
            c.push_str(&format!(
                "    {daddr} tcp dport {} dnat ip to numgen inc mod {} map {{ {} }}\n",
                r.port,
                r.total,
                map.join(", ")
            ));
        }
        c.push_str("  }\n");
        c
    };
    s.push_str(&format!("table ip {INGRESS_TABLE} {{\n"));
    s.push_str(&chain("output", "output", |r| &r.output));
    if external {
        s.push_str(&chain("prerouting", "prerouting", |r| &r.prerouting));
    }
    s.push_str("}\n");
    Some(s)
}

/// Removes the table (this daemon's, or a crashed one's).
pub(crate) async fn cleanup() -> Result<(), VipError> {
    let empty = script(&[], IpAddr::V4(Ipv4Addr::UNSPECIFIED)).unwrap_or_default();
    run("nft", &["-f", "-"], Some(&empty)).await
}

/// Keeps the table in step with the mesh view until the mesh stops, then removes it.
pub(crate) async fn serve(shared: Arc<Shared>) {
    if !rustix::process::geteuid().is_root() {
        tracing::warn!("routing mesh: not root, so the kernel does not carry local ingress; the userspace proxy does");
        return;
    }
    if let Err(e) = cleanup().await {
        tracing::debug!(error = %e, "routing mesh: no stale ingress table to remove");
    }
    let mut stop = shared.stop.subscribe();
    let mut view = shared.view.subscribe();
    let mut installed: Option<Vec<PortRule>> = None;
    loop {
        let now = view.borrow_and_update().clone();
        let want = rules(&now, shared.node);
        if installed.as_ref() != Some(&want) {
            let Some(text) = script(&want, shared.config.addr) else {
                tracing::warn!("routing mesh: the kernel path serves IPv4 only; the userspace proxy carries ingress");
                return;
            };
            match run("nft", &["-f", "-"], Some(&text)).await {
                Ok(()) => {
                    tracing::debug!(
                        ports = want.len(),
                        "routing mesh: kernel ingress rules updated"
                    );
                    *shared.lock_kernel() = carried(&want);
                    installed = Some(want);
                }
                Err(e) => {
                    // The old table (if any) is still in place, and still described by the
                    // carried map: both stay consistent.
                    tracing::warn!(error = %e, "routing mesh: cannot install the kernel ingress rules; the userspace proxy carries what they would");
                }
            }
        }
        tokio::select! {
            r = view.changed() => if r.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    shared.lock_kernel().clear();
    if installed.is_some() {
        if let Err(e) = cleanup().await {
            tracing::warn!(error = %e, "routing mesh: cannot remove the kernel ingress rules");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(n: u128, node: u128, ip: [u8; 4]) -> Backend {
        Backend {
            task: Id::from_u128(n),
            node: Some(Id::from_u128(node)),
            addr: SocketAddr::from((ip, 80)),
            node_addr: None,
            node_manager: false,
        }
    }

    fn view() -> MeshView {
        let tcp = |port| PortKey {
            port,
            protocol: Protocol::Tcp,
        };
        let mut v = MeshView::new();
        // Port 8080: two tasks here on bridge addresses, one elsewhere.
        v.insert(
            tcp(8080),
            vec![
                backend(1, 7, [10, 0, 0, 2]),
                backend(2, 8, [10, 0, 1, 2]),
                backend(3, 7, [10, 0, 0, 3]),
            ]
            .into(),
        );
        // Port 9090: one process task here (loopback), one elsewhere.
        v.insert(
            tcp(9090),
            vec![backend(4, 7, [127, 0, 0, 1]), backend(5, 8, [127, 0, 0, 1])].into(),
        );
        // Port 7070: only remote tasks; 53/udp: never in the kernel.
        v.insert(tcp(7070), vec![backend(6, 8, [10, 0, 1, 3])].into());
        v.insert(
            PortKey {
                port: 53,
                protocol: Protocol::Udp,
            },
            vec![backend(7, 7, [10, 0, 0, 4])].into(),
        );
        v
    }

    #[test]
    fn local_tasks_get_their_numgen_slots_and_the_rest_falls_through() {
        let r = rules(&view(), Some(Id::from_u128(7)));
        let s = script(&r, IpAddr::V4(Ipv4Addr::UNSPECIFIED)).unwrap();
        assert!(s.starts_with("table ip swarm_ingress\ndelete table ip swarm_ingress\n"));
        let want = "fib daddr type local tcp dport 8080 dnat ip to numgen inc mod 3 map { 0 : 10.0.0.2 . 80, 1 : 10.0.0.3 . 80 }";
        assert_eq!(s.matches(want).count(), 2, "in output and prerouting: {s}");
        let lo = "fib daddr type local tcp dport 9090 dnat ip to numgen inc mod 2 map { 0 : 127.0.0.1 . 80 }";
        assert_eq!(
            s.matches(lo).count(),
            1,
            "loopback targets only in output: {s}"
        );
        assert!(!s.contains("7070") && !s.contains("dport 53"), "{s}");
        let c = carried(&r);
        let tcp = |port| PortKey {
            port,
            protocol: Protocol::Tcp,
        };
        assert_eq!(
            c[&tcp(8080)],
            Carried {
                output: true,
                prerouting: true
            }
        );
        assert_eq!(
            c[&tcp(9090)],
            Carried {
                output: true,
                prerouting: false
            }
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_specific_mesh_address_is_matched_and_loopback_has_no_prerouting() {
        let r = rules(&view(), Some(Id::from_u128(7)));
        let s = script(&r, IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        assert!(s.contains("ip daddr 127.0.0.1 tcp dport 8080"), "{s}");
        assert!(!s.contains("prerouting"), "{s}");
        let s = script(&r, "192.168.5.1".parse().unwrap()).unwrap();
        assert!(s.contains("chain prerouting"), "{s}");
        assert!(script(&r, "::1".parse().unwrap()).is_none());
        // Nothing local: the table is only deleted.
        let none = rules(&view(), Some(Id::from_u128(9)));
        assert!(none.is_empty());
        assert_eq!(
            script(&none, IpAddr::V4(Ipv4Addr::UNSPECIFIED)).unwrap(),
            "table ip swarm_ingress\ndelete table ip swarm_ingress\n"
        );
    }
}
