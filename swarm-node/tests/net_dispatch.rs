//! The dispatcher over QUIC (`swarm_node::net::dispatch`), in process on 127.0.0.1: a store with a
//! `LocalProposer`, a `StoreDispatcher` served by a swarm-net `Server` with TestPki credentials,
//! and agents calling it with `NetDispatcher` or with raw RPC calls (to decode exactly what
//! crossed the wire).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use swarm_core::dispatch::{AssignmentSet, NodeRegistration, TaskStatusUpdate};
use swarm_core::objects::node::{NodeDescription, NodeState};
use swarm_core::objects::service::{ConfigReference, FileTarget};
use swarm_core::{
    Config, Id, LocalProposer, ManualClock, Node, Object, ObjectKind, ObjectRef, Proposer, Secret,
    SharedStore, StoreAction, Task, TaskState, TaskStatus, Timestamp,
};
use swarm_net::pki::testing::TestPki;
use swarm_net::pki::DEFAULT_NODE_CERT_VALIDITY;
use swarm_net::rpc::{
    Client, Code, Peer, Router, RpcConfig, RpcError, Server, ServerOptions, Streaming, TlsState,
};
use swarm_net::{NodeIdentity, Role};
use swarm_node::dispatcher::{DispatcherOptions, StoreDispatcher};
use swarm_node::net::dispatch::{
    dispatcher_routes, ClusterView, DispatcherTarget, Leadership, NetDispatcher,
    NetDispatcherOptions, SessionMessage, SessionRequest, StatusRequest, WeightedManager,
    HEARTBEAT, SESSION, UPDATE_STATUS,
};
use swarm_runtime::testing::dispatch::{
    assigned_task, fresh_secret, run_all, DispatcherFixture, WAIT,
};
use swarm_runtime::testing::unique_number;
use swarm_runtime::{DispatchError, Dispatcher, Session};
use tokio::sync::watch;

const T: Duration = Duration::from_secs(10);

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The cluster side: a store, a CA, and managers serving the dispatcher.
struct Cluster {
    store: SharedStore,
    proposer: Arc<dyn Proposer>,
    pki: Mutex<TestPki>,
}

/// One manager's endpoint.
struct Manager {
    id: Id,
    server: Server,
    dispatcher: StoreDispatcher,
    leadership: watch::Sender<Leadership>,
    view: watch::Sender<ClusterView>,
}

impl Manager {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr().expect("bound")
    }
    fn weighted(&self) -> WeightedManager {
        WeightedManager {
            addr: self.addr(),
            node_id: Some(self.id),
            weight: 1,
        }
    }
}

impl Cluster {
    fn new() -> Cluster {
        let store = SharedStore::default();
        let proposer: Arc<dyn Proposer> = Arc::new(LocalProposer::new(
            store.clone(),
            Arc::new(ManualClock::new(Default::default())),
        ));
        Cluster {
            store,
            proposer,
            pki: Mutex::new(TestPki::new(unique_number() as u64, now())),
        }
    }

    fn creds(&self, node_id: Id, role: Role) -> Arc<TlsState> {
        let mut pki = self.pki.lock().unwrap();
        let identity = NodeIdentity {
            node_id,
            role,
            cluster_id: pki.cluster_id(),
        };
        let m = pki.node_as(identity, DEFAULT_NODE_CERT_VALIDITY, now());
        TlsState::new(&m).expect("TLS state")
    }

    fn dispatcher(&self, options: DispatcherOptions) -> StoreDispatcher {
        StoreDispatcher::new(self.store.clone(), self.proposer.clone(), options)
    }

    /// A manager serving `dispatcher` as leader (or as a follower if `None`).
    fn manager(&self, dispatcher: StoreDispatcher, lead: bool) -> Manager {
        let id = Id::from_u128(unique_number());
        let leadership = if lead {
            Leadership::Leader(dispatcher.clone())
        } else {
            Leadership::Follower { leader: None }
        };
        let (lead_tx, lead_rx) = watch::channel(leadership);
        let (view_tx, view_rx) = watch::channel(ClusterView::default());
        let router = dispatcher_routes(Router::new(), DispatcherTarget::new(lead_rx, view_rx));
        let server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            self.creds(id, Role::Manager),
            &RpcConfig::default(),
            router,
            ServerOptions::default(),
        )
        .expect("server binds");
        Manager {
            id,
            server,
            dispatcher,
            leadership: lead_tx,
            view: view_tx,
        }
    }

    async fn propose(&self, actions: Vec<StoreAction>) {
        self.proposer
            .propose(actions)
            .await
            .unwrap_or_else(|e| panic!("fixture change refused: {e}"));
    }

    /// A member node (its store object) and an RPC client holding its certificate.
    async fn node(&self) -> (NodeRegistration, Arc<Client>) {
        let node = swarm_core::testing::node(unique_number());
        let reg = NodeRegistration {
            node_id: node.id,
            description: node.description.clone().unwrap_or_default(),
        };
        self.propose(vec![StoreAction::Create(Object::from(node))])
            .await;
        let client = Client::bind(
            "127.0.0.1:0".parse().unwrap(),
            self.creds(reg.node_id, Role::Worker),
            RpcConfig::default(),
        )
        .expect("client binds");
        (reg, Arc::new(client))
    }

    /// Commits `task` with its service and the given secrets and configs.
    async fn assign(&self, task: Task, secrets: Vec<Secret>, configs: Vec<Config>) {
        let service = swarm_core::testing::service(0, &task.service_annotations.name, 1);
        let service = swarm_core::Service {
            id: task.service_id,
            ..service
        };
        let mut actions = vec![StoreAction::Create(Object::from(service))];
        actions.extend(secrets.into_iter().map(|s| StoreAction::Create(s.into())));
        actions.extend(configs.into_iter().map(|c| StoreAction::Create(c.into())));
        actions.push(StoreAction::Create(Object::from(task)));
        self.propose(actions).await;
    }

    fn task(&self, id: Id) -> Option<Task> {
        self.store
            .view(|s| s.get::<Task>(&id).map(|t| (**t).clone()))
    }

    fn node_state(&self, id: Id) -> Option<(NodeState, String)> {
        self.store.view(|s| {
            s.get::<Node>(&id)
                .map(|n| (n.status.state, n.status.message.clone()))
        })
    }

    /// Waits (generously) until `pred` holds over the store.
    async fn wait_for(&self, what: &str, mut pred: impl FnMut(&Cluster) -> bool) {
        let deadline = tokio::time::Instant::now() + T * 3;
        while !pred(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn seeds(m: &Manager) -> Vec<WeightedManager> {
    vec![m.weighted()]
}

fn peer(m: &Manager) -> Peer {
    Peer {
        addr: m.addr(),
        role: Role::Manager,
        node_id: Some(m.id),
    }
}

fn fast() -> DispatcherOptions {
    DispatcherOptions {
        batch_interval: Duration::from_millis(10),
        ..DispatcherOptions::default()
    }
}

// ---- the conformance suite over QUIC ----

struct NetFixture {
    cluster: Cluster,
    manager: Manager,
    clients: Arc<Mutex<HashMap<Id, NetDispatcher>>>,
}

/// Routes each registration to the `NetDispatcher` holding that node's certificate (over QUIC
/// the node id is the certificate's, so every node has its own client).
struct ByNode(Arc<Mutex<HashMap<Id, NetDispatcher>>>);

#[async_trait]
impl Dispatcher for ByNode {
    async fn open_session(
        &self,
        registration: NodeRegistration,
    ) -> Result<Arc<dyn Session>, DispatchError> {
        let d = self
            .0
            .lock()
            .unwrap()
            .get(&registration.node_id)
            .cloned()
            .expect("the fixture made this node");
        d.open_session(registration).await
    }
}

#[async_trait]
impl DispatcherFixture for NetFixture {
    fn dispatcher(&self) -> Arc<dyn Dispatcher> {
        Arc::new(ByNode(self.clients.clone()))
    }
    async fn node(&self) -> NodeRegistration {
        let (reg, client) = self.cluster.node().await;
        let d = NetDispatcher::new(
            client,
            seeds(&self.manager),
            NetDispatcherOptions::default(),
        );
        self.clients.lock().unwrap().insert(reg.node_id, d);
        reg
    }
    async fn assign(&self, _node: Id, task: Task, secrets: Vec<Secret>) {
        self.cluster.assign(task, secrets, Vec::new()).await;
    }
    async fn unassign(&self, _node: Id, task: Id) {
        self.cluster
            .propose(vec![StoreAction::Remove(ObjectRef {
                kind: ObjectKind::Task,
                id: task,
            })])
            .await;
    }
    async fn end_session(&self, node: Id) {
        // A newer (in-process) session of the same node ends the networked one.
        let reg = NodeRegistration {
            node_id: node,
            description: NodeDescription::default(),
        };
        self.manager
            .dispatcher
            .open_session(reg)
            .await
            .unwrap_or_else(|e| panic!("a member's newer session was refused: {e}"));
    }
    async fn recorded_status(&self, task: Id) -> Option<TaskStatus> {
        self.manager.dispatcher.flush().await;
        self.cluster.task(task).map(|t| t.status)
    }
}

/// Property: NetDispatcher over QUIC keeps every clause of the Dispatcher contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net_dispatcher_conforms() {
    let cluster = Cluster::new();
    let manager = cluster.manager(cluster.dispatcher(fast()), true);
    let fixture = NetFixture {
        cluster,
        manager,
        clients: Arc::new(Mutex::new(HashMap::new())),
    };
    run_all(&fixture).await;
    fixture.manager.dispatcher.close().await;
}

// ---- what crosses the wire ----

async fn open_raw(client: &Client, m: &Manager) -> (Streaming<SessionMessage>, u64, Id) {
    let mut stream = client
        .server_streaming(&peer(m), &SESSION, &SessionRequest::default(), None)
        .await
        .expect("session call");
    match tokio::time::timeout(T, stream.next()).await {
        Ok(Some(Ok(SessionMessage::Info(info)))) => (stream, info.session_id, info.node_id),
        other => panic!("expected session info first, got {other:?}"),
    }
}

async fn next_set(stream: &mut Streaming<SessionMessage>) -> AssignmentSet {
    loop {
        match tokio::time::timeout(T, stream.next()).await {
            Ok(Some(Ok(SessionMessage::Assignments(set)))) => return set,
            Ok(Some(Ok(SessionMessage::Info(_)))) => continue,
            other => panic!("expected an assignment set, got {other:?}"),
        }
    }
}

fn with_config(mut task: Task, config: &Config) -> Task {
    let mut spec = (*task.spec).clone();
    spec.container.configs.push(ConfigReference {
        config_id: config.id,
        config_name: config.spec.annotations.name.clone(),
        target: FileTarget {
            name: "cfg".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        },
    });
    task.spec = Arc::new(spec);
    task
}

fn fresh_config() -> Config {
    let n = unique_number();
    swarm_core::testing::config(n, &format!("wire-{n}"), b"cfg")
}

/// Property: on the wire, a worker receives only its own tasks and exactly the secrets and
/// configs they reference, never another node's; its node id is its certificate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_carries_only_the_nodes_tasks_and_their_secrets() {
    let cluster = Cluster::new();
    let m = cluster.manager(cluster.dispatcher(fast()), true);
    let (a, client_a) = cluster.node().await;
    let (b, _client_b) = cluster.node().await;
    // Each node has a task with its own secret and config; one unused secret exists too.
    let (sa, sb, unused) = (fresh_secret(), fresh_secret(), fresh_secret());
    let (ca, cb) = (fresh_config(), fresh_config());
    let ta = with_config(assigned_task(a.node_id, &sa), &ca);
    let tb = with_config(assigned_task(b.node_id, &sb), &cb);
    cluster
        .assign(
            ta.clone(),
            vec![sa.clone(), unused.clone()],
            vec![ca.clone()],
        )
        .await;
    cluster
        .assign(tb.clone(), vec![sb.clone()], vec![cb.clone()])
        .await;

    let (mut stream, _session, me) = open_raw(&client_a, &m).await;
    assert_eq!(me, a.node_id, "the session names the certificate's node");
    let full = next_set(&mut stream).await;
    assert!(full.full);
    let ids = |set: &AssignmentSet| -> (BTreeSet<Id>, BTreeSet<Id>, BTreeSet<Id>) {
        (
            set.tasks.iter().map(|t| t.id).collect(),
            set.secrets.iter().map(|s| s.id).collect(),
            set.configs.iter().map(|c| c.id).collect(),
        )
    };
    assert_eq!(
        ids(&full),
        (
            BTreeSet::from([ta.id]),
            BTreeSet::from([sa.id]),
            BTreeSet::from([ca.id])
        ),
        "the full set must hold exactly A's task, its secret and its config"
    );

    // Later changes on both nodes: A's stream carries only A's.
    let (sa2, sb2) = (fresh_secret(), fresh_secret());
    let tb2 = assigned_task(b.node_id, &sb2);
    let ta2 = assigned_task(a.node_id, &sa2);
    cluster.assign(tb2.clone(), vec![sb2.clone()], vec![]).await;
    cluster.assign(ta2.clone(), vec![sa2.clone()], vec![]).await;
    let foreign: BTreeSet<Id> = [tb.id, tb2.id, sb.id, sb2.id, cb.id, unused.id].into();
    let mut secrets_seen: BTreeSet<Id> = full.secrets.iter().map(|s| s.id).collect();
    loop {
        let set = next_set(&mut stream).await;
        let (t, s, c) = ids(&set);
        for id in t.iter().chain(&s).chain(&c) {
            assert!(
                !foreign.contains(id),
                "{id} of another node crossed the wire to A"
            );
        }
        secrets_seen.extend(s);
        if t.contains(&ta2.id) {
            break;
        }
    }
    assert_eq!(secrets_seen, BTreeSet::from([sa.id, sa2.id]));
    m.dispatcher.close().await;
}

/// Property: a status update for a task assigned to another node is refused (its id returned)
/// and not committed, while the caller's own update in the same call is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_for_another_nodes_task_is_refused() {
    let cluster = Cluster::new();
    let m = cluster.manager(cluster.dispatcher(fast()), true);
    let (a, client_a) = cluster.node().await;
    let (b, _client_b) = cluster.node().await;
    let (sa, sb) = (fresh_secret(), fresh_secret());
    let ta = assigned_task(a.node_id, &sa);
    let tb = assigned_task(b.node_id, &sb);
    cluster.assign(ta.clone(), vec![sa], vec![]).await;
    cluster.assign(tb.clone(), vec![sb], vec![]).await;
    let (_stream, session, _) = open_raw(&client_a, &m).await;
    let running = |t: &Task| TaskStatusUpdate {
        task_id: t.id,
        status: TaskStatus {
            state: TaskState::Running,
            message: "started".into(),
            ..t.status.clone()
        },
    };
    let answer = client_a
        .unary(
            &peer(&m),
            &UPDATE_STATUS,
            &StatusRequest {
                session_id: session,
                updates: vec![running(&ta), running(&tb)],
            },
            T,
        )
        .await
        .expect("status call");
    assert_eq!(answer.refused, vec![tb.id]);
    m.dispatcher.flush().await;
    assert_eq!(
        cluster.task(ta.id).unwrap().status.state,
        TaskState::Running
    );
    assert_eq!(
        cluster.task(tb.id).unwrap().status.state,
        TaskState::Assigned,
        "B's task was changed by A's report"
    );
    // More than 1,024 updates in one call are refused whole.
    let many = StatusRequest {
        session_id: session,
        updates: vec![running(&ta); 1025],
    };
    match client_a.unary(&peer(&m), &UPDATE_STATUS, &many, T).await {
        Err(RpcError::Status(s)) => assert_eq!(s.code, Code::InvalidArgument),
        other => panic!("1,025 updates were taken: {other:?}"),
    }
    m.dispatcher.close().await;
}

/// Property: a node whose heartbeats stop (its session stream still open) is marked down with
/// "heartbeat failure" (not before the grace) and its session ended, while a heartbeating
/// NetDispatcher node stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_marked_down() {
    let cluster = Cluster::new();
    let options = DispatcherOptions {
        heartbeat_period: Duration::from_millis(50),
        down_after: Duration::from_secs(1),
        ..fast()
    };
    let m = cluster.manager(cluster.dispatcher(options), true);
    let (silent, client_s) = cluster.node().await;
    let (alive, client_a) = cluster.node().await;
    let net = NetDispatcher::new(client_a, seeds(&m), NetDispatcherOptions::default());
    let session = net.open_session(alive.clone()).await.expect("session");
    let opened = std::time::Instant::now();
    let (mut stream, _, _) = open_raw(&client_s, &m).await;
    let first = next_set(&mut stream).await;
    assert!(first.full);
    // Never heartbeat; keep the stream open.
    cluster
        .wait_for("the silent node marked down", |c| {
            c.node_state(silent.node_id) == Some((NodeState::Down, "heartbeat failure".into()))
        })
        .await;
    // Not before the grace: a lower bound, which load can only lengthen.
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "marked down {:?} after its session opened, before the 1 s grace",
        opened.elapsed()
    );
    match tokio::time::timeout(T, stream.next()).await {
        Ok(Some(Err(_)) | None) => {}
        other => panic!("the expired session was not ended: {other:?}"),
    }
    assert_eq!(
        cluster.node_state(alive.node_id).map(|s| s.0),
        Some(NodeState::Ready),
        "the heartbeating node was marked down too"
    );
    assert!(m.dispatcher.is_connected(alive.node_id));
    // The manager's heartbeat answers a period around the configured one.
    drop(session);
    m.dispatcher.close().await;
}

/// Property: more than 3 registrations of one node within 8 s are refused as Unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_flood_is_refused() {
    let cluster = Cluster::new();
    let m = cluster.manager(cluster.dispatcher(fast()), true);
    let (_n, client) = cluster.node().await;
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(open_raw(&client, &m).await);
    }
    let mut fourth = client
        .server_streaming(&peer(&m), &SESSION, &SessionRequest::default(), None)
        .await
        .expect("call starts");
    match tokio::time::timeout(T, fourth.next()).await {
        Ok(Some(Err(RpcError::Status(s)))) => assert_eq!(s.code, Code::Unavailable, "{s}"),
        other => panic!("a 4th registration within 8 s was not refused: {other:?}"),
    }
    // A heartbeat quoting no live session is refused too.
    let hb = client
        .unary(
            &peer(&m),
            &HEARTBEAT,
            &swarm_node::net::dispatch::HeartbeatRequest { session_id: 999 },
            T,
        )
        .await;
    assert!(matches!(hb, Err(RpcError::Status(ref s)) if s.code == Code::FailedPrecondition));
    m.dispatcher.close().await;
}

/// Property: a client seeded with a follower follows it to the leader; when the leader's
/// endpoint shuts down and the other manager takes over, the next session opens there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_leader_and_fails_over() {
    let cluster = Cluster::new();
    let m1 = cluster.manager(cluster.dispatcher(fast()), true);
    let m2 = cluster.manager(cluster.dispatcher(fast()), false);
    m2.leadership.send_replace(Leadership::Follower {
        leader: Some(m1.weighted()),
    });
    let view = ClusterView {
        managers: vec![m1.weighted(), m2.weighted()],
        root_ca: vec![1, 2, 3],
    };
    m1.view.send_replace(view.clone());
    m2.view.send_replace(view.clone());
    let (n, client) = cluster.node().await;
    let options = NetDispatcherOptions {
        rpc_timeout: Duration::from_secs(2),
        ..NetDispatcherOptions::default()
    };
    let net = NetDispatcher::new(client, seeds(&m2), options);
    let info = net.session_info();
    let s1 = net.open_session(n.clone()).await.expect("first session");
    assert!(
        m1.dispatcher.is_connected(n.node_id),
        "not served by the leader"
    );
    assert_eq!(
        info.borrow()
            .as_ref()
            .map(|i| (i.managers.clone(), i.root_ca.clone())),
        Some((view.managers.clone(), view.root_ca.clone()))
    );
    // A view change reaches the client.
    let mut info_rx = net.session_info();
    info_rx.borrow_and_update();
    let newer = ClusterView {
        root_ca: vec![4, 5, 6],
        ..view.clone()
    };
    m1.view.send_replace(newer);
    tokio::spawn({
        let s1 = s1.clone();
        async move {
            let _ = s1.next_assignments().await;
            let _ = s1.next_assignments().await;
        }
    });
    tokio::time::timeout(
        T,
        info_rx.wait_for(|i| i.as_ref().is_some_and(|i| i.root_ca == [4, 5, 6])),
    )
    .await
    .expect("the new root CA did not reach the client")
    .expect("watch open");

    // The leader goes away; m2 leads.
    let Manager {
        server, dispatcher, ..
    } = m1;
    server.shutdown(Duration::from_millis(100)).await;
    dispatcher.close().await;
    m2.leadership
        .send_replace(Leadership::Leader(m2.dispatcher.clone()));
    match tokio::time::timeout(WAIT, s1.next_assignments()).await {
        Ok(Err(_)) => {}
        other => panic!("the session on the dead manager did not end: {other:?}"),
    }
    let deadline = tokio::time::Instant::now() + T * 3;
    let s2 = loop {
        match net.open_session(n.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "no failover: {e}");
            }
        }
    };
    assert!(
        m2.dispatcher.is_connected(n.node_id),
        "not served by the new leader"
    );
    let set = tokio::time::timeout(WAIT, s2.next_assignments())
        .await
        .expect("a set")
        .expect("a live session");
    assert!(set.full);
    m2.dispatcher.close().await;
}

// ---- StoreDispatcher behaviour behind the wire ----

/// Property: after a leader change every node without a session is UNKNOWN, then DOWN after
/// twice the grace (not before) unless it registers; one that registers is READY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_unknown_after_a_leader_change() {
    let cluster = Cluster::new();
    let options = DispatcherOptions {
        heartbeat_period: Duration::from_millis(50),
        down_after: Duration::from_millis(600),
        ..fast()
    };
    let m = cluster.manager(cluster.dispatcher(options), true);
    let (quiet, _c1) = cluster.node().await;
    let (back, client) = cluster.node().await;
    let led = std::time::Instant::now();
    assert_eq!(m.dispatcher.mark_nodes_unknown(None).await, 2);
    assert_eq!(
        cluster.node_state(quiet.node_id).map(|s| s.0),
        Some(NodeState::Unknown)
    );
    let net = NetDispatcher::new(client, seeds(&m), NetDispatcherOptions::default());
    let _session = net.open_session(back.clone()).await.expect("session");
    cluster
        .wait_for("the silent node down", |c| {
            c.node_state(quiet.node_id) == Some((NodeState::Down, "heartbeat failure".into()))
        })
        .await;
    // Twice the grace, not once: a lower bound, which load can only lengthen.
    assert!(
        led.elapsed() >= Duration::from_millis(1200),
        "marked down {:?} after the leader change, before twice the 600 ms grace",
        led.elapsed()
    );
    assert_eq!(
        cluster.node_state(back.node_id).map(|s| s.0),
        Some(NodeState::Ready),
        "a node that registered was marked down"
    );
    m.dispatcher.close().await;
}

/// Property: incremental sets are batched: with an endless quiet period, 5 separate commits are
/// sent together once the 5-change limit is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_are_batched_up_to_the_change_limit() {
    let cluster = Cluster::new();
    let options = DispatcherOptions {
        assignment_quiet: Duration::from_secs(3600),
        assignment_max_changes: 5,
        ..fast()
    };
    let m = cluster.manager(cluster.dispatcher(options), true);
    let (n, client) = cluster.node().await;
    let (mut stream, _, _) = open_raw(&client, &m).await;
    assert!(next_set(&mut stream).await.full);
    let mut ids = BTreeSet::new();
    for _ in 0..5 {
        let s = fresh_secret();
        let t = assigned_task(n.node_id, &s);
        ids.insert(t.id);
        cluster.assign(t, vec![s], vec![]).await;
    }
    let set = next_set(&mut stream).await;
    let got: BTreeSet<Id> = set.tasks.iter().map(|t| t.id).collect();
    assert_eq!(
        got, ids,
        "the first incremental set must carry the whole batch"
    );
    m.dispatcher.close().await;
}
