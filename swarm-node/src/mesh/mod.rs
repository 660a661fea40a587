//! The routing mesh: Docker's ingress publishing, as a userspace TCP/UDP proxy on every node,
//! across hosts over the node-to-node QUIC connections.
//!
//! # What it does
//! For every port a service publishes in ingress mode (`--publish 8080:80`), the mesh of every
//! node listens on `<mesh addr>:8080` ([`MeshConfig::addr`], `--mesh-addr`, default `0.0.0.0`)
//! and forwards each connection (TCP) or client flow (UDP) to one of the service's tasks on its
//! target port (80): a task on this node directly, a task on another node through a
//! `mesh.v1.connect` stream to that node ([`crate::net::mesh`]), which connects to its task.
//!
//! Where the view comes from ([`MeshSource`]): a manager (and a single host) watches its store:
//! a listener opens when a service starts publishing a port and closes when none does; the
//! backends behind it follow task, service and node events as they are committed. A worker has
//! no store: it subscribes to one manager's view (`mesh.v1.routes`, the full view then the
//! changed ports, [`ViewUpdate`]), moving to the next manager its dispatcher knows when the
//! stream breaks; while none answers, its last view keeps serving.
//!
//! # Policy
//! - **Backends** of a service: its tasks with desired state running (or earlier), observed
//!   state running, health absent or healthy (a task still `starting` its health checks, or
//!   unhealthy, gets no traffic), and an address. The address is the task's first one on a
//!   swarm network it is attached to, else its first one ([`backend_addr`]). A task leaves the
//!   set as soon as its desired state moves past running is committed, before it is stopped:
//!   the agent waits `mesh_drain` between the two, so no new connection reaches a stopping task,
//!   on any node (the change reaches the workers' views within the drain).
//! - Each [`Backend`] names its node and where that node's swarm listener is reached (the
//!   node's [`MESH_ADDR_LABEL`] engine label, which workers report; a manager's raft address).
//! - **TCP**: round robin over all current backends, local and remote alike (no preference for
//!   local tasks: every node spreads evenly); a backend that refuses or does not answer within
//!   [`MeshConfig::connect_timeout`] is skipped and the next one tried, each at most once. For
//!   a remote backend "refuses" includes its node refusing the stream: the receiving node
//!   accepts only a task that is, in its own view, a running backend of that port on itself
//!   (so a connection racing a task's drain moves on to another task). If none answers the
//!   client connection is closed. Then bytes are copied both ways with half-close passed on and
//!   `TCP_NODELAY` on both sides. A backend that dies ends only its own connections; a node
//!   lost mid-connection (its QUIC connection closes, at most the RPC idle timeout later) ends
//!   only the connections through it. Existing connections survive backend-set changes (they
//!   end with their task) and the closing of their listener; they are closed when the mesh
//!   stops. At most [`MeshConfig::max_connections`] connections per port at once: beyond that,
//!   new ones wait in the listen backlog; at most [`crate::net::mesh::DEFAULT_MAX_STREAMS`]
//!   streams to one peer node at once. Accept errors (EMFILE...) never end a listener: it
//!   backs off briefly.
//! - **UDP**: per client address a session to a backend chosen round robin among all current
//!   backends, local and remote alike: a socket connected to a task on this node, or one
//!   `mesh.v1.connect` stream per flow to the task's node, each datagram a frame (`datagram.rs`);
//!   datagrams arriving while that stream opens are queued (at most 256, beyond dropped), and a
//!   stream that cannot be opened loses them (the next datagram tries the next backend). Both
//!   ends relay datagrams both ways; a session expires after
//!   [`MeshConfig::udp_idle_timeout`] idle, when its backend leaves the set or answers "port
//!   unreachable". At most [`MeshConfig::max_udp_sessions`] per port; datagrams of new clients
//!   beyond that are dropped. Replies leave from the published socket: with a wildcard mesh
//!   address on a multi-homed host the kernel picks their source address.
//! - **Kernel path** (`kernel.rs`, [`MeshConfig::kernel_ingress`], `--kernel-ingress`, root):
//!   the kernel DNATs a TCP port's connections to this node's tasks (nftables `numgen` over all
//!   backends: the local tasks' slots DNATed, the remote tasks' slots falling through to the
//!   listener, which then tries remote backends first), so the local share of ingress costs no
//!   userspace hop. The rules follow the view (task state and health) and are replaced
//!   atomically; removed at stop, stale ones at start. Not root or no `nft`: the userspace
//!   proxy carries everything.
//! - **SCTP** ingress ports are not served (a warning is logged once per port).
//! - A port that cannot be bound when it is published (another program took it after the
//!   check) is logged and retried every [`MeshConfig::rebind_interval`].
//! - **Port check**: [`RoutingMesh`] implements [`PortCheck`]: before a service starts publishing
//!   a port the control layer asks whether this node can serve it; the mesh tries to bind it (see
//!   [`RoutingMesh::check`](PortCheck::check)).
//!
//! # Service names and VIPs (issue 16, deliverable 2)
//! Every node also knows every service's name, endpoint mode, networks, virtual IPs (allocated
//! in the store, `Endpoint.virtual_ips`) and running tasks: the [`NameView`], which a manager
//! rebuilds from its store after each batch of events and sends whole to the workers on the same
//! `mesh.v1.routes` stream ([`ViewUpdate::Names`]).
//! - **Resolver** (DNS over UDP and TCP, `dns.rs`, `resolver.rs`): what Docker's embedded DNS
//!   answers, for a task attached to some networks: `<service>` and `<service>.<network>` give
//!   the service's VIP on the first of the task's networks the service is on (endpoint mode
//!   `vip`, the default; TTL 600 s) or, with `--endpoint-mode dnsrr`, its running tasks'
//!   addresses (TTL 0); `tasks.<service>` gives every running task's address. A task's address
//!   is the one its runtime reported on that network; a process-runtime task shares its node's
//!   network and is given as its node's address. A service on none of the querier's networks
//!   is NXDOMAIN (isolation), as is any unknown single-label, `tasks.` or `.<network>` name;
//!   every other name is REFUSED (not forwarded: list the host's resolver after this one).
//!   The process runtime's tasks share the node's network, so the resolver cannot tell who asks
//!   by address: each task gets its own resolver port on 127.0.0.1 (UDP and TCP), named in its
//!   environment as [`RESOLVER_ENV`]` = 127.0.0.1:<port>` ([`ResolverRuntime`]), answering for
//!   that task's networks; it closes when the task is removed. (Tasks adopted after a daemon
//!   restart keep a port that no longer answers.) The docker runtime's containers keep the
//!   engine's own DNS and aliases.
//! - **VIP data plane** (`vip.rs`, `--vip-dataplane`, root): connections from this node to a
//!   VIP reach a running task of its service on the same port, anywhere: the VIPs of the
//!   networks this node's tasks are attached to are added to `lo` and an nftables table
//!   redirects TCP to them into one proxy listener, which reads the original destination and
//!   connects to a task (round robin; local directly, remote through a `mesh.v1.connect` stream
//!   naming the service, which the receiving node accepts only for a running task of that
//!   service on itself). UDP to the VIPs goes to a transparent socket (`tproxy`, `vip_udp.rs`)
//!   that relays each flow to a task the same way, answering from the VIP. Rules are removed at
//!   stop, and stale ones at start.
//!
//! # What it does not do
//! - Without [`MeshConfig::kernel_ingress`] (default off: one daemon per network namespace may
//!   use it), every byte of ingress goes through this process, also locally; with it, still
//!   every byte to a task on another node, every UDP datagram, and connections from other hosts
//!   to a task reached on loopback (the process runtime's). No overlay network: process-runtime tasks share their
//!   node's network, so networks isolate names and which VIPs a node serves, not packets.
//! - VIPs carry IPv4 only, and only traffic from the node itself (the process runtime; bridged
//!   containers' TCP would need a PREROUTING redirect).
//! - The names view travels whole on every change, not as diffs (about 80 bytes per running
//!   process-runtime task: some 200,000 tasks fit one 16 MiB `mesh.v1.routes` item; beyond
//!   that the workers' stream fails and they keep their last view), and a manager rebuilds it
//!   whole (at most every 200 ms, after events that may change it).
//! - No preference for local tasks, no weighting by node load.
//! - Client source addresses are not preserved (backends see the mesh's address, or the task's
//!   node's for remote connections), as with Docker's ingress SNAT.
//!
//! # Layout
//! - `table.rs`: the route table, a state machine without I/O (store events in, listener changes
//!   out);
//! - `view.rs`: the view other nodes receive ([`Backend`], [`ViewUpdate`]; full view and diffs);
//! - `driver.rs`: the task feeding it (from the store, or from a manager's view stream) and
//!   opening/closing listeners;
//! - `route.rs`: one published port's live backend list, shared with its listener;
//! - `tcp.rs`, `udp.rs`: the proxies (`tcp::pipe`: a TCP connection over a mesh stream);
//!   `datagram.rs`: a UDP flow over a mesh stream;
//! - `names.rs`: the [`NameView`] and name lookup (pure); `dns.rs`: DNS messages (pure,
//!   `hickory-proto`); `resolver.rs`: the per-task resolver sockets; `runtime.rs`:
//!   [`ResolverRuntime`], which puts a task's resolver address in its environment;
//! - `vip.rs`, `vip_udp.rs`: the VIP data plane (TCP, UDP); `kernel.rs`: the kernel path for local ingress.

mod datagram;
mod dns;
mod driver;
mod kernel;
mod names;
mod plumb;
mod resolver;
mod route;
mod runtime;
mod table;
mod tcp;
mod udp;
mod view;
pub mod vip;
mod vip_udp;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use swarm_core::objects::service::{PortConfig, Protocol, PublishMode};
use swarm_core::{Id, SharedStore};
use swarm_net::rpc::{Client, ItemSender, Peer, RecvStream, SendStream, Status};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::PortCheck;
use crate::net::mesh::MeshPeers;
pub use dns::{answer as answer_dns, DnsError, Transport as DnsTransport};
pub use names::{Lookup, NameView, NamedNode, NamedService, NamedTask};
pub use plumb::PlumbError;
use route::Route;
pub use runtime::ResolverRuntime;
pub use table::backend_addr;
pub(crate) use udp::connected as connect_udp;
pub use view::{Backend, MeshView, ViewUpdate, MESH_ADDR_LABEL};

/// The environment variable naming a task's resolver (`127.0.0.1:<port>`, UDP and TCP), set for
/// every task of a runtime whose tasks share the node's network (the process runtime).
pub const RESOLVER_ENV: &str = "SWARM_RESOLVER";

/// A published port: its number and protocol.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PortKey {
    /// The published port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl std::fmt::Display for PortKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

/// How the mesh listens and forwards. See the module docs for the policy each field tunes.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// The address published ports are bound on (default `0.0.0.0`; tests use `127.0.0.1`).
    pub addr: IpAddr,
    /// Tasks share the node's network (the `process` runtime): an ingress port whose published
    /// port equals its target port would collide with the task itself, so the port check
    /// refuses it.
    pub shared_host_network: bool,
    /// How long a TCP connect to one backend may take before the next is tried (default 2 s).
    pub connect_timeout: Duration,
    /// Concurrent TCP connections per published port (default 65 536).
    pub max_connections: usize,
    /// Per-direction copy buffer of a TCP connection, in bytes (default 16 KiB).
    pub copy_buffer: usize,
    /// A UDP session without a datagram either way for this long ends (default 30 s).
    pub udp_idle_timeout: Duration,
    /// UDP sessions per published port (default 4 096).
    pub max_udp_sessions: usize,
    /// How often a port that could not be bound is tried again (default 3 s).
    pub rebind_interval: Duration,
    /// Carry connections to service VIPs (root, Linux: `lo` addresses and an nftables
    /// redirect, see `vip.rs`; default off).
    pub vip_dataplane: bool,
    /// Let the kernel carry connections to published TCP ports that go to a task on this node
    /// (root, Linux: nftables DNAT, see `kernel.rs`; default off: one daemon per network
    /// namespace may use it).
    pub kernel_ingress: bool,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            shared_host_network: false,
            connect_timeout: Duration::from_secs(2),
            max_connections: 65_536,
            copy_buffer: 16 * 1024,
            udp_idle_timeout: Duration::from_secs(30),
            max_udp_sessions: 4096,
            rebind_interval: Duration::from_secs(3),
            vip_dataplane: false,
            kernel_ingress: false,
        }
    }
}

/// Where a node's mesh learns the published ports and their backends.
pub enum MeshSource {
    /// A store (a manager's, or a single host's): the mesh computes the view itself, and serves
    /// it to the other nodes (`mesh.v1.routes`).
    Store(SharedStore),
    /// The managers (a worker): the mesh subscribes to one of them at a time, failing over to
    /// the next when the stream breaks.
    Managers {
        /// The client the subscription uses.
        client: Arc<Client>,
        /// The managers known now.
        managers: Arc<dyn Fn() -> Vec<Peer> + Send + Sync>,
    },
}

impl std::fmt::Debug for MeshSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeshSource::Store(_) => f.write_str("MeshSource::Store"),
            MeshSource::Managers { .. } => f.write_str("MeshSource::Managers"),
        }
    }
}

/// A node of a multi-host swarm: who it is and how it reaches the other nodes' tasks.
#[derive(Debug, Clone)]
pub struct MeshNode {
    /// This node's id: backends on other nodes are reached through `peers`.
    pub id: Id,
    /// Streams to the other nodes.
    pub peers: Arc<MeshPeers>,
}

/// What the driver, the listeners and the mesh handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    config: MeshConfig,
    routes: Mutex<BTreeMap<PortKey, Arc<Route>>>,
    /// Set once: the driver closes every listener, every proxied connection ends.
    stop: watch::Sender<bool>,
    /// This node (None: a single host, every backend is local).
    node: Option<Id>,
    /// Streams to the other nodes' tasks.
    peers: Option<Arc<MeshPeers>>,
    /// The view the listeners route by, as the driver last applied it.
    view: watch::Sender<Arc<MeshView>>,
    /// Whether the view comes from a store (only then is it served to other nodes).
    from_store: bool,
    /// The services' names, VIPs and tasks, as the driver last applied them.
    names: watch::Sender<Arc<NameView>>,
    /// The resolvers of this node's tasks, by task.
    resolvers: Mutex<HashMap<Id, resolver::TaskResolver>>,
    /// The ports whose local share the kernel carries now, and through which hooks.
    kernel: Mutex<BTreeMap<PortKey, kernel::Carried>>,
    /// This node's tasks linked to its namespace (`plumb.rs`), by task.
    plumbed: Mutex<HashMap<Id, plumb::Plumbed>>,
    /// The VIP proxy's port on 127.0.0.1 once it listens (0 before).
    vip_port: std::sync::atomic::AtomicU16,
}

/// Whether `backend` runs on `node` (a single host, `None`, has only local backends).
pub(crate) fn is_local(node: Option<Id>, backend: &Backend) -> bool {
    node.is_none() || backend.node.is_none() || backend.node == node
}

impl Shared {
    fn lock_routes(&self) -> MutexGuard<'_, BTreeMap<PortKey, Arc<Route>>> {
        // Only inserts, removes and lookups happen under this lock: a panic cannot leave it
        // inconsistent.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_kernel(&self) -> MutexGuard<'_, BTreeMap<PortKey, kernel::Carried>> {
        self.kernel.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the kernel already sent this connection's share of local tasks elsewhere: it
    /// carries `key`'s local share for connections arriving the way this one did (opened on this
    /// node: `output`; from another host: `prerouting`), so it should go to a remote task.
    pub(crate) fn kernel_carried(&self, key: PortKey, client: &TcpStream) -> bool {
        let Some(c) = self.lock_kernel().get(&key).copied() else {
            return false;
        };
        let local_origin = match (client.peer_addr(), client.local_addr()) {
            (Ok(p), Ok(l)) => p.ip().is_loopback() || p.ip() == l.ip(),
            _ => false,
        };
        if local_origin {
            c.output
        } else {
            c.prerouting
        }
    }
}

/// The routing mesh of one node. See the module docs.
///
/// Start it with [`RoutingMesh::start`] inside a tokio runtime (its listeners and connections
/// run on that runtime); [`RoutingMesh::stop`] closes every listener and connection. Dropping it
/// without `stop` also closes them, asynchronously.
#[derive(Debug)]
pub struct RoutingMesh {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
    /// The VIP data plane, when configured.
    vip: Mutex<Option<JoinHandle<()>>>,
    /// The kernel ingress rules' keeper, when configured.
    kernel: Mutex<Option<JoinHandle<()>>>,
}

impl RoutingMesh {
    /// Starts watching `store` and publishing its services' ingress ports, every backend
    /// local (a single host). Panics outside a tokio runtime.
    pub fn start(store: SharedStore, config: MeshConfig) -> Arc<RoutingMesh> {
        RoutingMesh::start_node(MeshSource::Store(store), config, None)
    }

    /// Starts the mesh of a node fed from `source`; with `node`, backends on other nodes are
    /// reached through streams to them. Panics outside a tokio runtime.
    pub fn start_node(
        source: MeshSource,
        config: MeshConfig,
        node: Option<MeshNode>,
    ) -> Arc<RoutingMesh> {
        let shared = Arc::new(Shared {
            config,
            routes: Mutex::new(BTreeMap::new()),
            stop: watch::channel(false).0,
            node: node.as_ref().map(|n| n.id),
            peers: node.map(|n| n.peers),
            view: watch::channel(Arc::new(MeshView::new())).0,
            from_store: matches!(source, MeshSource::Store(_)),
            names: watch::channel(Arc::new(NameView::default())).0,
            resolvers: Mutex::new(HashMap::new()),
            kernel: Mutex::new(BTreeMap::new()),
            plumbed: Mutex::new(HashMap::new()),
            vip_port: std::sync::atomic::AtomicU16::new(0),
        });
        let kernel = shared
            .config
            .kernel_ingress
            .then(|| tokio::spawn(kernel::serve(shared.clone())));
        let vip = shared
            .config
            .vip_dataplane
            .then(|| tokio::spawn(vip::serve(shared.clone())));
        let driver = match source {
            MeshSource::Store(store) => tokio::spawn(driver::run(shared.clone(), store)),
            MeshSource::Managers { client, managers } => {
                tokio::spawn(driver::run_remote(shared.clone(), client, managers))
            }
        };
        Arc::new(RoutingMesh {
            shared,
            driver: Mutex::new(Some(driver)),
            vip: Mutex::new(vip),
            kernel: Mutex::new(kernel),
        })
    }

    /// The view the listeners route by now, and its changes.
    pub fn view(&self) -> watch::Receiver<Arc<MeshView>> {
        self.shared.view.subscribe()
    }

    /// Sends this node's view to a subscriber (`mesh.v1.routes`): the full view, then every
    /// change, until the subscriber leaves or the mesh stops. Only a mesh fed from a store
    /// serves its view (a worker's is second-hand).
    pub async fn serve_view(&self, mut out: ItemSender<ViewUpdate>) -> Result<(), Status> {
        use swarm_net::rpc::Code;
        if !self.shared.from_store {
            return Err(Status::new(
                Code::Unavailable,
                "this node is no manager: its mesh view is not served",
            ));
        }
        let mut stop = self.shared.stop.subscribe();
        let mut rx = self.shared.view.subscribe();
        let mut names = self.shared.names.subscribe();
        let mut last = rx.borrow_and_update().clone();
        out.send(&view::full(&last)).await?;
        let mut last_names = names.borrow_and_update().clone();
        out.send(&ViewUpdate::Names((*last_names).clone())).await?;
        loop {
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                r = names.changed() => if r.is_err() { break },
                _ = stop.wait_for(|s| *s) => break,
            }
            let new = rx.borrow_and_update().clone();
            if let Some(update) = view::diff(&last, &new) {
                out.send(&update).await?;
            }
            last = new;
            let new_names = names.borrow_and_update().clone();
            if !Arc::ptr_eq(&new_names, &last_names) && new_names != last_names {
                out.send(&ViewUpdate::Names((*new_names).clone())).await?;
            }
            last_names = new_names;
        }
        Err(Status::new(Code::Unavailable, "the routing mesh stopped"))
    }

    /// The backend of `task` behind `key` if it runs on this node, for a stream from another
    /// node; else why not.
    pub fn local_backend(&self, key: PortKey, task: &Id) -> Result<Backend, String> {
        let route = self
            .shared
            .lock_routes()
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("port {key} is not published here"))?;
        let b = route
            .backend_of(task)
            .ok_or_else(|| format!("task {task} is no running backend of port {key}"))?;
        if self.shared.node.is_some() && b.node != self.shared.node {
            return Err(format!("task {task} does not run on this node"));
        }
        Ok(b)
    }

    /// The names view the resolvers and the VIP proxy answer from now, and its changes.
    pub fn names(&self) -> watch::Receiver<Arc<NameView>> {
        self.shared.names.subscribe()
    }

    /// Copies bytes between a local task's connection and a mesh stream until both sides are
    /// done, an error, or the mesh stops.
    pub async fn pipe_stream(&self, task: TcpStream, send: SendStream, recv: RecvStream) {
        let mut stop = self.shared.stop.subscribe();
        tokio::select! {
            r = tcp::pipe(task, send, recv, self.shared.config.copy_buffer) => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, "routing mesh: stream ended");
                }
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// Relays datagrams between a local task (`task`, a socket connected to it) and a mesh
    /// stream carrying one client flow from another node, until the flow idles out, either side
    /// ends, or the mesh stops.
    pub async fn pipe_datagrams(&self, task: UdpSocket, send: SendStream, recv: RecvStream) {
        let mut stop = self.shared.stop.subscribe();
        tokio::select! {
            () = datagram::task_side(task, send, recv, self.shared.config.udp_idle_timeout) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// Closes every listener and every proxied connection; returns once the listeners' sockets
    /// are closed. Idempotent.
    pub async fn stop(&self) {
        self.shared.stop.send_replace(true);
        let driver = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(d) = driver {
            let _ = d.await;
        }
        let vip = self.vip.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(v) = vip {
            let _ = v.await;
        }
        let kernel = self.kernel.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(k) = kernel {
            let _ = k.await;
        }
        self.shared
            .resolvers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &MeshConfig {
        &self.shared.config
    }

    /// The ports published now, with whether each is bound (`false`: the bind failed and is
    /// being retried).
    pub fn published(&self) -> Vec<(PortKey, bool)> {
        self.shared
            .lock_routes()
            .values()
            .map(|r| (r.key, r.is_bound()))
            .collect()
    }

    /// Whether `key` is published and its listener bound.
    pub fn is_listening(&self, key: PortKey) -> bool {
        self.shared
            .lock_routes()
            .get(&key)
            .is_some_and(|r| r.is_bound())
    }

    /// Whether the kernel carries `key`'s local share now, for connections opened on this
    /// node and for those from other hosts ([`MeshConfig::kernel_ingress`]).
    pub fn kernel_carries(&self, key: PortKey) -> (bool, bool) {
        self.shared
            .lock_kernel()
            .get(&key)
            .map_or((false, false), |c| (c.output, c.prerouting))
    }

    /// The addresses of the backends `key` forwards to now (`None` if it is not published),
    /// as their own nodes reach them.
    pub fn backends(&self, key: PortKey) -> Option<Vec<SocketAddr>> {
        self.shared
            .lock_routes()
            .get(&key)
            .map(|r| r.backends().iter().map(|b| b.addr).collect())
    }
}

impl Drop for RoutingMesh {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

impl PortCheck for RoutingMesh {
    /// - An ingress port: refused if tasks share the host network and it equals its target
    ///   port; accepted if the mesh already listens on it; otherwise accepted if it can be bound
    ///   on the mesh address right now (the socket is closed at once).
    /// - A host-mode port: accepted if it can be bound on `0.0.0.0` (the task will need it).
    /// - Published port 0 (host mode: the node picks one) and SCTP (not checked): accepted.
    fn check(&self, port: &PortConfig) -> Result<(), String> {
        if port.published_port == 0 {
            return Ok(());
        }
        let Ok(published) = u16::try_from(port.published_port) else {
            return Err(format!("{} is not a port number", port.published_port));
        };
        let addr = match port.publish_mode {
            PublishMode::Ingress => {
                if self.shared.config.shared_host_network && port.published_port == port.target_port
                {
                    return Err(format!(
                        "with the process runtime tasks share the node's network, so an ingress port must differ from its target port (published {}, target {})",
                        port.published_port, port.target_port
                    ));
                }
                let key = PortKey {
                    port: published,
                    protocol: port.protocol,
                };
                if self.is_listening(key) {
                    return Ok(());
                }
                self.shared.config.addr
            }
            PublishMode::Host => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let addr = SocketAddr::new(addr, published);
        let r = match port.protocol {
            Protocol::Tcp => std::net::TcpListener::bind(addr).map(drop),
            Protocol::Udp => std::net::UdpSocket::bind(addr).map(drop),
            Protocol::Sctp => Ok(()),
        };
        r.map_err(|e| bind_reason(&e))
    }
}

/// Why a bind failed, in words for `port N/tcp cannot be published on this node: <reason>`.
fn bind_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_string(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".to_string()
        }
        io::ErrorKind::AddrNotAvailable => {
            "the mesh address is not an address of this node".to_string()
        }
        _ => e.to_string(),
    }
}

/// Calls `bind` until it succeeds, every `interval`, logging the first failure (and every 20th);
/// marks `route` bound.
async fn bind_retrying<T>(
    route: &Route,
    interval: Duration,
    mut bind: impl FnMut() -> io::Result<T>,
) -> T {
    let mut failures = 0u32;
    loop {
        match bind() {
            Ok(t) => {
                if failures > 0 {
                    tracing::info!(
                        "routing mesh: port {} bound after {failures} failed attempts",
                        route.key
                    );
                }
                route.set_bound(true);
                return t;
            }
            Err(e) => {
                if failures.is_multiple_of(20) {
                    tracing::warn!(
                        "routing mesh: cannot listen on port {}: {}; retrying every {interval:?}",
                        route.key,
                        bind_reason(&e)
                    );
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(interval).await;
            }
        }
    }
}
