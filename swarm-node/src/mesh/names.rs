//! The name view: what a node's resolver and VIP proxy need to know of every service (its name,
//! endpoint mode, networks, virtual IPs and running tasks), and how a name is looked up in it
//! from a task attached to some networks. Pure: no I/O.
//!
//! A manager builds it from its store ([`NameView::build`]) and sends it whole to the workers on
//! `mesh.v1.routes` ([`super::ViewUpdate::Names`]) whenever it changes; every node answers from
//! the copy it holds.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use swarm_core::objects::service::{EndpointMode, Protocol};
use swarm_core::{Event, Id, Network, Node, Object, Service, Store, Task};

use super::table::{backend_addr, NodeRoute};

/// Every service's names, addresses and running tasks. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameView {
    /// Swarm networks: id and name.
    pub networks: BTreeMap<Id, String>,
    /// Services by id.
    pub services: BTreeMap<Id, NamedService>,
    /// The nodes running tasks: where each one's swarm listener is reached, and its role.
    pub nodes: BTreeMap<Id, NamedNode>,
}

/// A node running tasks, as the VIP proxy reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedNode {
    /// Where its swarm listener is reached (None: it reported none).
    pub addr: Option<SocketAddr>,
    /// Whether it is a manager (the role its certificate must name).
    pub manager: bool,
}

/// One service as the resolver and the VIP proxy see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedService {
    /// The service's name.
    pub name: String,
    /// `vip` (the name resolves to the VIP) or `dnsrr` (to the tasks).
    pub mode: EndpointMode,
    /// The networks it is attached to, in its spec's order.
    pub networks: Vec<Id>,
    /// Its virtual IP on each network (endpoint mode `vip`).
    pub vips: Vec<(Id, IpAddr)>,
    /// Its ports (target, published, protocol), for `network inspect`.
    pub ports: Vec<(u32, u32, Protocol)>,
    /// Its tasks that are backends now (running, healthy, desired running), by task id.
    pub tasks: Vec<NamedTask>,
}

/// A running task of a service. Kept small: the view travels whole (a 16 MiB item of
/// `mesh.v1.routes` holds about 200,000 process-runtime tasks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedTask {
    /// The task.
    pub task: Id,
    /// The node running it ([`NameView::nodes`]).
    pub node: Option<Id>,
    /// The address its own node connects to (the mesh's backend address).
    pub addr: IpAddr,
    /// Every address its runtime reported, with its swarm network (None: the runtime's own
    /// network, the node's for the process runtime).
    pub addrs: Vec<(Option<Id>, IpAddr)>,
}

impl NamedTask {
    /// The address a task on `network` reaches this task at: its address on that network; else,
    /// when its runtime reported no swarm-network address (the process runtime: tasks share
    /// their node's network), its node's address (from `nodes`); else its first address.
    pub fn addr_on(&self, network: &Id, nodes: &BTreeMap<Id, NamedNode>) -> Option<IpAddr> {
        if let Some((_, a)) = self.addrs.iter().find(|(n, _)| n.as_ref() == Some(network)) {
            return Some(*a);
        }
        if self.addrs.iter().all(|(n, _)| n.is_none()) {
            let node = self.node.and_then(|n| nodes.get(&n)).and_then(|n| n.addr);
            if let Some(node) = node {
                return Some(node.ip());
            }
        }
        self.addrs.first().map(|(_, a)| *a)
    }
}

/// What a name means to a querier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The name is a service's VIP on a shared network.
    Vip(IpAddr),
    /// The name is a `dnsrr` service or `tasks.<service>`: these task addresses (possibly none).
    Tasks(Vec<IpAddr>),
    /// A swarm-shaped name (one label, `tasks.<x>`, or `<x>.<network>`) that names nothing the
    /// querier may see.
    NxDomain,
    /// Not a swarm name: this resolver does not answer it.
    Refused,
}

impl NameView {
    /// Builds the view from a store: every network, every service with its VIPs and its tasks
    /// that are mesh backends now ([`backend_addr`]).
    pub fn build(store: &Store) -> NameView {
        let networks = store
            .iter::<Network>()
            .map(|n| (n.id, n.spec.annotations.name.clone()))
            .collect();
        let mut nodes: BTreeMap<Id, NamedNode> = BTreeMap::new();
        let mut services: BTreeMap<Id, NamedService> = store
            .iter::<Service>()
            .map(|s| (s.id, named_service(s)))
            .collect();
        for t in store.iter::<Task>() {
            let Some(addr) = backend_addr(t) else {
                continue;
            };
            let Some(s) = services.get_mut(&t.service_id) else {
                continue;
            };
            if let Some(id) = t.node_id {
                nodes.entry(id).or_insert_with(|| {
                    let r = store
                        .get::<Node>(&id)
                        .map(|n| NodeRoute::of(n))
                        .unwrap_or_default();
                    NamedNode {
                        addr: r.addr,
                        manager: r.manager,
                    }
                });
            }
            s.tasks.push(NamedTask {
                task: t.id,
                node: t.node_id,
                addr,
                addrs: t
                    .status
                    .addresses
                    .iter()
                    .map(|a| (a.network_id, a.addr))
                    .collect(),
            });
        }
        NameView {
            networks,
            services,
            nodes,
        }
    }

    /// The service whose VIP is `ip`, with the network it is on.
    pub fn service_by_vip(&self, ip: IpAddr) -> Option<(&Id, &NamedService)> {
        self.services
            .iter()
            .find(|(_, s)| s.vips.iter().any(|(_, v)| *v == ip))
    }

    /// Every VIP of a service attached to one of `networks`.
    pub fn vips_on(&self, networks: &[Id]) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .services
            .values()
            .flat_map(|s| s.vips.iter())
            .filter(|(n, _)| networks.contains(n))
            .map(|(_, ip)| *ip)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Looks `name` up for a task attached to `scope` (its networks, in attachment order), as
    /// Docker's embedded resolver does: `<service>` and `<service>.<network>` give the VIP on
    /// the first network of `scope` the service is attached to (or its task addresses with
    /// `dnsrr`), `tasks.<service>` every running task's address; a service on no network of
    /// `scope` is not found. Case-insensitive; a trailing dot is ignored. Swarm-shaped names
    /// (one label, `tasks.<x>`, or ending in a network's name) that resolve to nothing are
    /// NXDOMAIN; other names are not this resolver's (REFUSED).
    pub fn lookup(&self, name: &str, scope: &[Id]) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Lookup::Refused;
        }
        // As Docker's resolver: `a.b.c` is tried as a name on every network of the querier's,
        // then as `a.b` on network `c`, then as `a` on network `b.c`.
        let mut candidates: Vec<(&str, Vec<Id>)> = vec![(name.as_str(), scope.to_vec())];
        let mut swarm_shaped = !name.contains('.') || name.starts_with("tasks.");
        for (i, _) in name.rmatch_indices('.') {
            let (head, net) = (&name[..i], &name[i + 1..]);
            let named: Vec<Id> = self
                .networks
                .iter()
                .filter(|(_, n)| n.eq_ignore_ascii_case(net))
                .map(|(id, _)| *id)
                .collect();
            if named.is_empty() {
                continue;
            }
            swarm_shaped = true;
            let on: Vec<Id> = scope
                .iter()
                .copied()
                .filter(|n| named.contains(n))
                .collect();
            candidates.push((head, on));
        }
        for (rest, networks) in candidates {
            if let Some(found) = self.lookup_on(rest, &networks) {
                return found;
            }
        }
        if swarm_shaped {
            Lookup::NxDomain
        } else {
            Lookup::Refused
        }
    }

    /// `rest` (`<service>` or `tasks.<service>`) on the first of `networks` it is on.
    fn lookup_on(&self, rest: &str, networks: &[Id]) -> Option<Lookup> {
        let (tasks, service) = match rest.strip_prefix("tasks.") {
            Some(s) => (true, s),
            None => (false, rest),
        };
        let (net, s) = networks.iter().find_map(|net| {
            self.services
                .values()
                .find(|s| s.name.eq_ignore_ascii_case(service) && s.networks.contains(net))
                .map(|s| (net, s))
        })?;
        if !tasks && s.mode == EndpointMode::Vip {
            return Some(match s.vips.iter().find(|(n, _)| n == net) {
                Some((_, ip)) => Lookup::Vip(*ip),
                // Not allocated (yet): nothing to answer with.
                None => Lookup::Tasks(Vec::new()),
            });
        }
        let mut addrs: Vec<IpAddr> = s
            .tasks
            .iter()
            .filter_map(|t| t.addr_on(net, &self.nodes))
            .collect();
        addrs.sort();
        addrs.dedup();
        Some(Lookup::Tasks(addrs))
    }
}

/// Whether `event` may change the [`NameView`]: any service, network or node change, and a task
/// change that moves it into or out of the backends, or changes its addresses or node.
pub(crate) fn affects(event: &Event) -> bool {
    let task_view = |t: &Task| backend_addr(t).map(|a| (a, t.node_id, t.status.addresses.clone()));
    match event {
        Event::Created(o) | Event::Removed(o) => match o {
            Object::Task(t) => backend_addr(t).is_some(),
            Object::Service(_) | Object::Network(_) | Object::Node(_) => true,
            _ => false,
        },
        Event::Updated { old, new } => match (old, new) {
            (Object::Task(a), Object::Task(b)) => task_view(a) != task_view(b),
            (Object::Service(_), _) | (Object::Network(_), _) | (Object::Node(_), _) => true,
            _ => false,
        },
        Event::Commit { .. } => false,
        Event::Reset { .. } => true,
    }
}

fn named_service(s: &Service) -> NamedService {
    let mut networks: Vec<Id> = s
        .spec
        .task
        .networks
        .iter()
        .filter_map(|a| a.target.parse().ok())
        .collect();
    let vips: Vec<(Id, IpAddr)> = s
        .endpoint
        .virtual_ips
        .iter()
        .filter_map(|v| {
            let ip = v.addr.split('/').next()?.parse().ok()?;
            Some((v.network_id, ip))
        })
        .collect();
    for (n, _) in &vips {
        if !networks.contains(n) {
            networks.push(*n);
        }
    }
    NamedService {
        name: s.spec.annotations.name.clone(),
        mode: s.spec.endpoint.mode,
        networks,
        vips,
        ports: s
            .endpoint
            .ports
            .iter()
            .map(|p| (p.target_port, p.published_port, p.protocol))
            .collect(),
        tasks: Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    pub(crate) fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, last))
    }

    fn id(n: u128) -> Id {
        Id::from_u128(n)
    }

    fn task(n: u128, addrs: Vec<(Option<Id>, IpAddr)>) -> NamedTask {
        NamedTask {
            task: id(n),
            node: Some(id(50)),
            addr: addrs[0].1,
            addrs,
        }
    }

    /// Networks 1 (`front`) and 2 (`back`); `web` (vip) on 1 and 2, `db` (vip) on 2, `rr`
    /// (dnsrr) on 1 with two tasks, `host` (vip) on 1 with a task on the host network.
    pub(crate) fn sample() -> NameView {
        let svc = |name: &str, mode, nets: &[u128], vips: &[(u128, u8)], tasks| NamedService {
            name: name.into(),
            mode,
            networks: nets.iter().map(|n| id(*n)).collect(),
            vips: vips.iter().map(|(n, l)| (id(*n), ip(*l))).collect(),
            ports: vec![],
            tasks,
        };
        let mut v = NameView::default();
        v.nodes.insert(
            id(50),
            NamedNode {
                addr: Some("10.213.0.1:2377".parse().unwrap()),
                manager: true,
            },
        );
        v.networks.insert(id(1), "front".into());
        v.networks.insert(id(2), "back".into());
        v.services.insert(
            id(10),
            svc(
                "web",
                EndpointMode::Vip,
                &[1, 2],
                &[(1, 2), (2, 3)],
                vec![task(
                    100,
                    vec![(Some(id(1)), ip(20)), (Some(id(2)), ip(21))],
                )],
            ),
        );
        v.services.insert(
            id(11),
            svc("db", EndpointMode::Vip, &[2], &[(2, 4)], vec![]),
        );
        v.services.insert(
            id(12),
            svc(
                "rr",
                EndpointMode::Dnsrr,
                &[1],
                &[],
                vec![
                    task(101, vec![(Some(id(1)), ip(31))]),
                    task(102, vec![(Some(id(1)), ip(30))]),
                ],
            ),
        );
        v.services.insert(
            id(13),
            svc(
                "host",
                EndpointMode::Vip,
                &[1],
                &[(1, 5)],
                vec![task(103, vec![(None, IpAddr::V4(Ipv4Addr::LOCALHOST))])],
            ),
        );
        v
    }

    /// Task events matter only when they move a task into or out of the backends (or change
    /// its addresses); other kinds' events always.
    #[test]
    fn only_relevant_events_rebuild_the_view() {
        use std::sync::Arc;
        use swarm_core::objects::task::{TaskAddress, TaskState};
        let s = swarm_core::testing::service(1, "web", 1);
        let pending = swarm_core::testing::task(2, &s, 1);
        let mut running = pending.clone();
        running.status.state = TaskState::Running;
        running.status.addresses = vec![TaskAddress {
            network_id: None,
            addr: ip(9),
        }];
        let t = |t: &Task| Object::Task(Arc::new(t.clone()));
        assert!(!affects(&Event::Created(t(&pending))));
        assert!(affects(&Event::Updated {
            old: t(&pending),
            new: t(&running)
        }));
        assert!(!affects(&Event::Updated {
            old: t(&running),
            new: t(&running)
        }));
        assert!(affects(&Event::Removed(t(&running))));
        assert!(affects(&Event::Created(Object::Service(Arc::new(s)))));
        assert!(!affects(&Event::Commit { index: 1 }));
    }

    #[test]
    fn names_resolve_within_the_querier_networks_only() {
        let v = sample();
        let front = [id(1)];
        let both = [id(2), id(1)];
        assert_eq!(v.lookup("web", &front), Lookup::Vip(ip(2)));
        assert_eq!(v.lookup("WEB.", &front), Lookup::Vip(ip(2)));
        // The first network of the querier's that the service is on.
        assert_eq!(v.lookup("web", &both), Lookup::Vip(ip(3)));
        assert_eq!(v.lookup("web.front", &both), Lookup::Vip(ip(2)));
        // Isolation: `db` is on `back` only.
        assert_eq!(v.lookup("db", &front), Lookup::NxDomain);
        assert_eq!(v.lookup("db.back", &front), Lookup::NxDomain);
        assert_eq!(v.lookup("tasks.db", &front), Lookup::NxDomain);
        assert_eq!(v.lookup("db", &both), Lookup::Vip(ip(4)));
        // dnsrr and tasks.<service>: task addresses on that network, sorted.
        assert_eq!(v.lookup("rr", &front), Lookup::Tasks(vec![ip(30), ip(31)]));
        assert_eq!(v.lookup("tasks.web", &front), Lookup::Tasks(vec![ip(20)]));
        assert_eq!(
            v.lookup("tasks.web.back", &both),
            Lookup::Tasks(vec![ip(21)])
        );
        assert_eq!(v.lookup("tasks.db", &both), Lookup::Tasks(vec![]));
        // A host-network task is reached at its node's address.
        assert_eq!(
            v.lookup("tasks.host", &front),
            Lookup::Tasks(vec!["10.213.0.1".parse().unwrap()])
        );
        // Unknown: NXDOMAIN when swarm-shaped, else not ours.
        assert_eq!(v.lookup("nothing", &front), Lookup::NxDomain);
        assert_eq!(v.lookup("example.com", &front), Lookup::Refused);
        assert_eq!(v.lookup("", &front), Lookup::Refused);
        // No networks at all: nothing resolves.
        assert_eq!(v.lookup("web", &[]), Lookup::NxDomain);
        assert_eq!(v.vips_on(&front), vec![ip(2), ip(5)]);
        assert_eq!(v.service_by_vip(ip(4)).map(|(i, _)| *i), Some(id(11)));
    }
}
