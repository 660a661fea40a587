//! [`RouteTable`]: which ports the mesh publishes and the backends behind each, kept from store
//! events. No I/O, no clock: the driver ([`super::driver`]) feeds it and acts on its output.
//!
//! # Calling contract
//! 1. [`RouteTable::handle_reset`] with a consistent view of the store (the one `view_and_watch`
//!    subscribed under), at the start and after every `Reset` or lagged watch;
//! 2. [`RouteTable::handle_event`] for every later event, in order;
//! 3. [`RouteTable::poll_changes`] after each group of events: the routes whose port set or
//!    backend list changed since the last poll, as deltas against what it returned before.
//!
//! Work per event is proportional to the event (one service's ports, one task); a poll
//! recomputes the backend list of each changed port only (proportional to the tasks of the
//! services publishing it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use swarm_core::objects::node::NodeRole;
use swarm_core::objects::service::{Protocol, PublishMode};
use swarm_core::objects::task::{Health, TaskState};
use swarm_core::{Event, Id, Node, Object, Service, Store, Task};

use super::view::{Backend, MESH_ADDR_LABEL};
use super::PortKey;

/// What the listeners must become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RouteChange {
    /// Listen on `key` (if not yet) and route to `backends` (which may be empty).
    Publish {
        /// Port and protocol.
        key: PortKey,
        /// Where connections go, in a stable order (services, then task ids).
        backends: Vec<Backend>,
    },
    /// No service publishes `key` any more: close its listener.
    Unpublish {
        /// Port and protocol.
        key: PortKey,
    },
}

/// One ingress port of a service: where it listens and which port the tasks serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    key: PortKey,
    target_port: u16,
}

/// What the table knows of a node: where its swarm listener is reached and its role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeRoute {
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) manager: bool,
}

impl NodeRoute {
    /// The address the node reports under [`MESH_ADDR_LABEL`], else its raft address.
    pub(crate) fn of(n: &Node) -> NodeRoute {
        let label = n
            .description
            .as_ref()
            .and_then(|d| d.engine.labels.get(MESH_ADDR_LABEL))
            .and_then(|a| a.parse().ok());
        let raft = n.manager_status.as_ref().and_then(|m| m.addr.parse().ok());
        NodeRoute {
            addr: label.or(raft),
            manager: n.role == NodeRole::Manager,
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    /// Ingress routes of each service that has some.
    routes: HashMap<Id, Vec<Route>>,
    /// Every task that is a backend now: its service, address and node.
    backends: HashMap<Id, (Id, IpAddr, Option<Id>)>,
    /// The same, by service (ordered by task id, so backend lists are stable).
    by_service: HashMap<Id, BTreeMap<Id, (IpAddr, Option<Id>)>>,
    /// Each node's swarm address and whether it is a manager.
    nodes: HashMap<Id, NodeRoute>,
    /// Services publishing each port.
    ports: BTreeMap<PortKey, BTreeSet<Id>>,
    /// Ports returned by the last polls as published.
    published: BTreeSet<PortKey>,
    /// Ports to recompute at the next poll.
    dirty: BTreeSet<PortKey>,
    /// SCTP ingress ports seen (warned about once each).
    sctp_warned: BTreeSet<u32>,
}

/// The address a task serves the mesh on, if it is a backend now: desired state running (or
/// earlier), observed state running, health absent or healthy, and an address. The address is
/// the first one on a swarm network the task is attached to, else its first one.
pub fn backend_addr(task: &Task) -> Option<IpAddr> {
    if task.desired_state > TaskState::Running || task.status.state != TaskState::Running {
        return None;
    }
    if matches!(
        task.status.health,
        Some(Health::Starting) | Some(Health::Unhealthy)
    ) {
        return None;
    }
    let addrs = &task.status.addresses;
    addrs
        .iter()
        .find(|a| {
            a.network_id
                .is_some_and(|n| task.networks.iter().any(|att| att.network.id == n))
        })
        .or_else(|| addrs.first())
        .map(|a| a.addr)
}

impl RouteTable {
    /// An empty table.
    pub(crate) fn new() -> RouteTable {
        RouteTable::default()
    }

    /// Forgets everything and re-reads `store` (input). Ports published before and not now are
    /// unpublished at the next poll.
    pub(crate) fn handle_reset(&mut self, store: &Store) {
        self.routes.clear();
        self.backends.clear();
        self.by_service.clear();
        self.nodes.clear();
        self.ports.clear();
        self.dirty.extend(self.published.iter().copied());
        for n in store.iter::<Node>() {
            self.nodes.insert(n.id, NodeRoute::of(n));
        }
        for s in store.iter::<Service>() {
            self.upsert_service(s);
        }
        for t in store.iter::<Task>() {
            self.upsert_task(t);
        }
    }

    /// One store event (input). Markers are ignored: the driver resubscribes on `Reset`.
    pub(crate) fn handle_event(&mut self, event: &Event) {
        match event {
            Event::Created(o) | Event::Updated { new: o, .. } => match o {
                Object::Service(s) => self.upsert_service(s),
                Object::Task(t) => self.upsert_task(t),
                Object::Node(n) => self.upsert_node(n.id, Some(NodeRoute::of(n))),
                _ => {}
            },
            Event::Removed(o) => match o {
                Object::Service(s) => self.remove_service(&s.id),
                Object::Task(t) => self.remove_task(&t.id),
                Object::Node(n) => self.upsert_node(n.id, None),
                _ => {}
            },
            Event::Commit { .. } | Event::Reset { .. } => {}
        }
    }

    /// The routes that changed since the last poll (output).
    #[must_use]
    pub(crate) fn poll_changes(&mut self) -> Vec<RouteChange> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut out = Vec::with_capacity(dirty.len());
        for key in dirty {
            match self.ports.get(&key) {
                Some(services) if !services.is_empty() => {
                    let mut backends = Vec::new();
                    for svc in services {
                        let Some(route) = self
                            .routes
                            .get(svc)
                            .and_then(|rs| rs.iter().find(|r| r.key == key))
                        else {
                            continue;
                        };
                        if let Some(tasks) = self.by_service.get(svc) {
                            backends.extend(tasks.iter().map(|(task, (ip, node))| {
                                let n = node
                                    .and_then(|n| self.nodes.get(&n).copied())
                                    .unwrap_or_default();
                                Backend {
                                    task: *task,
                                    node: *node,
                                    addr: SocketAddr::new(*ip, route.target_port),
                                    node_addr: n.addr,
                                    node_manager: n.manager,
                                }
                            }));
                        }
                    }
                    self.published.insert(key);
                    out.push(RouteChange::Publish { key, backends });
                }
                _ => {
                    if self.published.remove(&key) {
                        out.push(RouteChange::Unpublish { key });
                    }
                }
            }
        }
        out
    }

    fn ingress_routes(&mut self, s: &Service) -> Vec<Route> {
        let mut out = Vec::new();
        for p in &s.endpoint.ports {
            if p.publish_mode != PublishMode::Ingress || p.published_port == 0 {
                continue;
            }
            if p.protocol == Protocol::Sctp {
                if self.sctp_warned.insert(p.published_port) {
                    tracing::warn!(
                        service = %s.spec.annotations.name,
                        port = p.published_port,
                        "the routing mesh does not serve sctp ports; port {}/sctp is not published",
                        p.published_port
                    );
                }
                continue;
            }
            let (Ok(port), Ok(target_port)) = (
                u16::try_from(p.published_port),
                u16::try_from(p.target_port),
            ) else {
                continue;
            };
            let key = PortKey {
                port,
                protocol: p.protocol,
            };
            if !out.iter().any(|r: &Route| r.key == key) {
                out.push(Route { key, target_port });
            }
        }
        out
    }

    fn upsert_service(&mut self, s: &Service) {
        let new = self.ingress_routes(s);
        let old = self.routes.get(&s.id).cloned().unwrap_or_default();
        if new == old {
            return;
        }
        for r in &old {
            if let Some(set) = self.ports.get_mut(&r.key) {
                set.remove(&s.id);
                if set.is_empty() {
                    self.ports.remove(&r.key);
                }
            }
            self.dirty.insert(r.key);
        }
        for r in &new {
            self.ports.entry(r.key).or_default().insert(s.id);
            self.dirty.insert(r.key);
        }
        if new.is_empty() {
            self.routes.remove(&s.id);
        } else {
            self.routes.insert(s.id, new);
        }
    }

    fn remove_service(&mut self, id: &Id) {
        if let Some(old) = self.routes.remove(id) {
            for r in old {
                if let Some(set) = self.ports.get_mut(&r.key) {
                    set.remove(id);
                    if set.is_empty() {
                        self.ports.remove(&r.key);
                    }
                }
                self.dirty.insert(r.key);
            }
        }
    }

    fn mark_service(&mut self, service: &Id) {
        if let Some(routes) = self.routes.get(service) {
            self.dirty.extend(routes.iter().map(|r| r.key));
        }
    }

    fn upsert_task(&mut self, t: &Task) {
        let node = t.node_id;
        let new = backend_addr(t);
        let old = self.backends.get(&t.id).copied();
        if old == new.map(|ip| (t.service_id, ip, node)) {
            return;
        }
        if old.is_some() {
            self.remove_task(&t.id);
        }
        if let Some(ip) = new {
            self.backends.insert(t.id, (t.service_id, ip, node));
            self.by_service
                .entry(t.service_id)
                .or_default()
                .insert(t.id, (ip, node));
            self.mark_service(&t.service_id);
        }
    }

    /// A node's address or role changed (or it left, `None`): the ports with its tasks change.
    fn upsert_node(&mut self, id: Id, route: Option<NodeRoute>) {
        let old = match route {
            Some(r) => self.nodes.insert(id, r),
            None => self.nodes.remove(&id),
        };
        if old == route {
            return;
        }
        let services: BTreeSet<Id> = self
            .backends
            .values()
            .filter(|(_, _, n)| *n == Some(id))
            .map(|(s, _, _)| *s)
            .collect();
        for s in services {
            self.mark_service(&s);
        }
    }

    fn remove_task(&mut self, id: &Id) {
        let Some((service, _, _)) = self.backends.remove(id) else {
            return;
        };
        if let Some(tasks) = self.by_service.get_mut(&service) {
            tasks.remove(id);
            if tasks.is_empty() {
                self.by_service.remove(&service);
            }
        }
        self.mark_service(&service);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use swarm_core::objects::service::PortConfig;
    use swarm_core::objects::task::TaskAddress;
    use swarm_core::testing::{service, task};

    use super::*;

    fn web(ports: &[(u32, u32, Protocol)]) -> Service {
        let mut s = service(1, "web", 3);
        s.endpoint.ports = ports
            .iter()
            .map(|&(published_port, target_port, protocol)| PortConfig {
                protocol,
                target_port,
                published_port,
                ..Default::default()
            })
            .collect();
        s
    }

    fn running(n: u128, s: &Service, last_octet: u8) -> Task {
        let mut t = task(n, s, n as u64);
        t.node_id = Some(node_id());
        t.status.state = TaskState::Running;
        t.status.addresses = vec![TaskAddress {
            network_id: None,
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)),
        }];
        t
    }

    fn created(o: Object) -> Event {
        Event::Created(o)
    }

    fn tcp(port: u16) -> PortKey {
        PortKey {
            port,
            protocol: Protocol::Tcp,
        }
    }

    /// The node every test task runs on.
    fn node_id() -> Id {
        swarm_core::testing::id(100)
    }

    /// Task `n` (address 10.0.0.n) as a backend on `port`, on a node with no known address.
    fn addr(n: u8, port: u16) -> Backend {
        Backend {
            task: swarm_core::testing::id(u128::from(n)),
            node: Some(node_id()),
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), port),
            node_addr: None,
            node_manager: false,
        }
    }

    /// A node's address (label, else raft address) and role reach its tasks' backends.
    #[test]
    fn backends_carry_their_node_address_and_role() {
        let s = web(&[(8080, 80, Protocol::Tcp)]);
        let mut table = RouteTable::new();
        table.handle_event(&created(Object::Service(Arc::new(s.clone()))));
        table.handle_event(&created(Object::Task(Arc::new(running(1, &s, 1)))));
        assert_eq!(
            table.poll_changes(),
            vec![RouteChange::Publish {
                key: tcp(8080),
                backends: vec![addr(1, 80)]
            }]
        );
        let mut node = swarm_core::testing::node(100);
        node.role = NodeRole::Manager;
        node.manager_status = Some(swarm_core::objects::node::ManagerStatus {
            raft_id: 1,
            addr: "10.1.0.1:2377".into(),
            ..Default::default()
        });
        table.handle_event(&created(Object::Node(Arc::new(node.clone()))));
        let want = |a: &str| {
            vec![RouteChange::Publish {
                key: tcp(8080),
                backends: vec![Backend {
                    node_addr: Some(a.parse().unwrap()),
                    node_manager: true,
                    ..addr(1, 80)
                }],
            }]
        };
        assert_eq!(table.poll_changes(), want("10.1.0.1:2377"));
        let mut labelled = node.clone();
        labelled
            .description
            .get_or_insert_with(Default::default)
            .engine
            .labels
            .insert(MESH_ADDR_LABEL.into(), "10.2.0.1:4000".into());
        table.handle_event(&Event::Updated {
            old: Object::Node(Arc::new(node)),
            new: Object::Node(Arc::new(labelled.clone())),
        });
        assert_eq!(table.poll_changes(), want("10.2.0.1:4000"));
        // The same node again: nothing to do.
        table.handle_event(&Event::Updated {
            old: Object::Node(Arc::new(labelled.clone())),
            new: Object::Node(Arc::new(labelled.clone())),
        });
        assert_eq!(table.poll_changes(), vec![]);
        table.handle_event(&Event::Removed(Object::Node(Arc::new(labelled))));
        assert_eq!(
            table.poll_changes(),
            vec![RouteChange::Publish {
                key: tcp(8080),
                backends: vec![addr(1, 80)]
            }]
        );
    }

    #[test]
    fn backends_follow_task_events() {
        let s = web(&[(8080, 80, Protocol::Tcp)]);
        let mut table = RouteTable::new();
        table.handle_event(&created(Object::Service(Arc::new(s.clone()))));
        assert_eq!(
            table.poll_changes(),
            vec![RouteChange::Publish {
                key: tcp(8080),
                backends: vec![]
            }]
        );
        let t1 = running(1, &s, 1);
        let t2 = running(2, &s, 2);
        table.handle_event(&created(Object::Task(Arc::new(t1.clone()))));
        table.handle_event(&created(Object::Task(Arc::new(t2))));
        assert_eq!(
            table.poll_changes(),
            vec![RouteChange::Publish {
                key: tcp(8080),
                backends: vec![addr(1, 80), addr(2, 80)]
            }]
        );
        // Nothing changed: nothing to do.
        table.handle_event(&Event::Commit { index: 3 });
        assert_eq!(table.poll_changes(), vec![]);
        // Desired shutdown removes the backend at once, before the task stops.
        let mut t1b = t1.clone();
        t1b.desired_state = TaskState::Shutdown;
        table.handle_event(&Event::Updated {
            old: Object::Task(Arc::new(t1)),
            new: Object::Task(Arc::new(t1b)),
        });
        assert_eq!(
            table.poll_changes(),
            vec![RouteChange::Publish {
                key: tcp(8080),
                backends: vec![addr(2, 80)]
            }]
        );
        table.handle_event(&Event::Removed(Object::Service(Arc::new(s))));
        assert_eq!(
            table.poll_changes(),
            vec![RouteChange::Unpublish { key: tcp(8080) }]
        );
    }

    #[test]
    fn eligibility() {
        let s = web(&[]);
        let base = running(1, &s, 1);
        type Edit = Box<dyn Fn(&mut Task)>;
        let cases: Vec<(&str, Edit, bool)> = vec![
            ("running", Box::new(|_| {}), true),
            (
                "healthy",
                Box::new(|t| t.status.health = Some(Health::Healthy)),
                true,
            ),
            (
                "starting health",
                Box::new(|t| t.status.health = Some(Health::Starting)),
                false,
            ),
            (
                "unhealthy",
                Box::new(|t| t.status.health = Some(Health::Unhealthy)),
                false,
            ),
            (
                "not running yet",
                Box::new(|t| t.status.state = TaskState::Starting),
                false,
            ),
            (
                "desired shutdown",
                Box::new(|t| t.desired_state = TaskState::Shutdown),
                false,
            ),
            (
                "no address",
                Box::new(|t| t.status.addresses.clear()),
                false,
            ),
        ];
        for (name, edit, expect) in cases {
            let mut t = base.clone();
            edit(&mut t);
            assert_eq!(backend_addr(&t).is_some(), expect, "{name}");
        }
    }

    #[test]
    fn prefers_an_address_on_an_attached_network() {
        let s = web(&[]);
        let mut t = running(1, &s, 1);
        let net = swarm_core::Network {
            id: swarm_core::testing::id(77),
            meta: Default::default(),
            spec: Default::default(),
            ipam: None,
        };
        t.networks = vec![swarm_core::objects::task::NetworkAttachment {
            network: Arc::new(net),
            aliases: vec![],
        }];
        t.status.addresses.push(TaskAddress {
            network_id: Some(swarm_core::testing::id(77)),
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 9, 9)),
        });
        assert_eq!(
            backend_addr(&t),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 9, 9)))
        );
    }

    #[test]
    fn port_changes_move_the_listener_and_reset_unpublishes_what_is_gone() {
        let s = web(&[(8080, 80, Protocol::Tcp), (9000, 90, Protocol::Sctp)]);
        let mut table = RouteTable::new();
        table.handle_event(&created(Object::Service(Arc::new(s.clone()))));
        table.handle_event(&created(Object::Task(Arc::new(running(1, &s, 1)))));
        let _ = table.poll_changes();
        let moved = web(&[(8081, 80, Protocol::Tcp)]);
        table.handle_event(&Event::Updated {
            old: Object::Service(Arc::new(s)),
            new: Object::Service(Arc::new(moved)),
        });
        assert_eq!(
            table.poll_changes(),
            vec![
                RouteChange::Unpublish { key: tcp(8080) },
                RouteChange::Publish {
                    key: tcp(8081),
                    backends: vec![addr(1, 80)]
                },
            ]
        );
        table.handle_reset(&Store::new());
        assert_eq!(
            table.poll_changes(),
            vec![RouteChange::Unpublish { key: tcp(8081) }]
        );
    }
}
