//! Raft between managers over swarm-net QUIC (net/raft.rs): three managers in one process, each
//! with its own TestPki certificate, QUIC server on its own 127.0.0.x address and QuicTransport.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::testing::secret;
use swarm_core::{Proposer, Secret, SharedStore, StoreAction};
use swarm_net::pki::testing::{system_now, TestPki};
use swarm_net::pki::TlsMaterial;
use swarm_net::rpc::{Client, Peer, Router, RpcConfig, RpcError, Server, ServerOptions, TlsState};
use swarm_net::Role;
use swarm_node::net::raft::{
    alpn_protocol, raft_routes, MemberMap, QuicTransport, RaftTarget, PRE_VOTE, READ_INDEX, VOTE,
};
use swarm_raft::testing::{fast_config, test_kdf};
use swarm_raft::types::ManagerNode;
use swarm_raft::{
    NodeConfig, RaftConfig, RaftNode, RaftReply, RaftRpc, StartOptions, Transport, TransportError,
};

const T: Duration = Duration::from_secs(20);

fn create(n: u128, bytes: usize) -> Vec<StoreAction> {
    vec![StoreAction::Create(
        secret(n, &format!("secret-{n}"), &vec![b'x'; bytes]).into(),
    )]
}

fn rpc_config() -> RpcConfig {
    RpcConfig {
        alpn_protocol: alpn_protocol(),
        ..RpcConfig::default()
    }
}

/// Entries of the catch-up test: 100 KiB secrets.
const LARGE_ENTRY: usize = 100 * 1024;

/// The QUIC transport, with an optional slow link to one member (`slow`: raft id, bytes per
/// second): an append to it waits the time its entries (counted as [`LARGE_ENTRY`] bytes each)
/// take at that rate before it is sent.
struct SlowLink {
    quic: Arc<QuicTransport>,
    slow: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
}

#[async_trait::async_trait]
impl Transport for SlowLink {
    async fn call(
        &self,
        target: u64,
        node: &ManagerNode,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        let slow = *self.slow.lock().unwrap();
        if let (RaftRpc::AppendEntries(req), Some((to, bytes_per_sec))) = (&rpc, slow) {
            if to == target {
                let bytes = (req.entries.len() * LARGE_ENTRY) as u64;
                tokio::time::sleep(Duration::from_micros(bytes * 1_000_000 / bytes_per_sec)).await;
            }
        }
        self.quic.call(target, node, rpc).await
    }
}

struct Manager {
    material: TlsMaterial,
    addr: SocketAddr,
    server: Option<Server>,
    transport: Arc<QuicTransport>,
    target: RaftTarget,
    node: Option<RaftNode>,
}

struct Net {
    pki: TestPki,
    members: Arc<MemberMap>,
    managers: BTreeMap<u64, Manager>,
    cfg: RaftConfig,
    dir: tempfile::TempDir,
    /// Appends to this raft member cross a [`SlowLink`] of this many bytes per second.
    slow_link: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
}

impl Net {
    async fn new(n: u64, cfg: RaftConfig) -> Net {
        let mut net = Net {
            pki: TestPki::new(7, system_now()),
            members: Arc::new(MemberMap::new()),
            managers: BTreeMap::new(),
            cfg,
            dir: tempfile::tempdir().unwrap(),
            slow_link: Arc::default(),
        };
        for id in 1..=n {
            net.listen(id);
        }
        net.start(1).await;
        net.node(1).bootstrap().await.unwrap();
        net.wait_leader(&[1]).await;
        for id in 2..=n {
            net.start(id).await;
            let addr = net.managers[&id].addr.to_string();
            let leader = net.wait_leader(&net.ids()).await;
            net.node(leader).add_manager(id, addr).await.unwrap();
        }
        net
    }

    /// Certificate, server (no raft yet) and transport of manager `id` on 127.0.0.(10 + id).
    fn listen(&mut self, id: u64) {
        let material = self.pki.node(Role::Manager);
        self.members.insert(id, material.identity().node_id);
        let tls = TlsState::new(&material).unwrap();
        let target = RaftTarget::new(self.members.clone());
        let ip = format!("127.0.0.{}:0", 10 + id).parse().unwrap();
        let server = Server::bind(
            ip,
            tls.clone(),
            &rpc_config(),
            raft_routes(Router::new(), target.clone()),
            ServerOptions::default(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let client = Client::on(server.endpoint().clone(), tls, rpc_config()).unwrap();
        let transport = Arc::new(QuicTransport::new(Arc::new(client), self.members.clone()));
        self.managers.insert(
            id,
            Manager {
                material,
                addr,
                server: Some(server),
                transport,
                target,
                node: None,
            },
        );
    }

    /// Starts (or restarts) raft on manager `id` from its data directory.
    async fn start(&mut self, id: u64) {
        let m = self.managers.get_mut(&id).unwrap();
        let mut config =
            NodeConfig::new(id, m.addr.to_string(), self.dir.path().join(id.to_string()));
        config.raft = self.cfg.clone();
        config.kdf = test_kdf();
        let transport = Arc::new(SlowLink {
            quic: m.transport.clone(),
            slow: self.slow_link.clone(),
        });
        let node = RaftNode::start(
            config,
            SharedStore::default(),
            transport,
            StartOptions::default(),
        )
        .await
        .unwrap();
        m.target.set(Some(node.clone()));
        m.node = Some(node);
    }

    async fn stop_raft(&mut self, id: u64) {
        let m = self.managers.get_mut(&id).unwrap();
        m.target.set(None);
        if let Some(n) = m.node.take() {
            n.shutdown().await;
        }
    }

    fn node(&self, id: u64) -> &RaftNode {
        self.managers[&id].node.as_ref().unwrap()
    }

    fn ids(&self) -> Vec<u64> {
        self.managers
            .iter()
            .filter(|(_, m)| m.node.is_some() && m.server.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn count(&self, id: u64) -> usize {
        self.node(id).store().view(|s| s.count::<Secret>())
    }

    async fn wait_leader(&self, among: &[u64]) -> u64 {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            for &id in among {
                if let Some(n) = &self.managers[&id].node {
                    if n.status().leads() && n.is_leader() {
                        return id;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader among {among:?}"
            );
            // Polls several nodes' metrics until the deadline.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_applied(&self, ids: &[u64], index: u64) {
        for &id in ids {
            self.node(id)
                .raft()
                .wait(Some(T))
                .applied_index_at_least(Some(index), "applied")
                .await
                .unwrap();
        }
    }

    /// A client with a fresh certificate of this cluster (`role`), optionally recorded as raft
    /// member `as_member`, speaking protocol `alpn`.
    fn stranger(&mut self, role: Role, alpn: Vec<u8>) -> (Client, TlsMaterial) {
        let material = self.pki.node(role);
        let config = RpcConfig {
            alpn_protocol: alpn,
            ..RpcConfig::default()
        };
        let client = Client::bind(
            "127.0.0.99:0".parse().unwrap(),
            TlsState::new(&material).unwrap(),
            config,
        )
        .unwrap();
        (client, material)
    }

    fn peer(&self, id: u64) -> Peer {
        let m = &self.managers[&id];
        Peer {
            addr: m.addr,
            role: Role::Manager,
            node_id: Some(m.material.identity().node_id),
        }
    }

    async fn shutdown(mut self) {
        for id in self.managers.keys().copied().collect::<Vec<_>>() {
            self.stop_raft(id).await;
            if let Some(s) = self.managers.get_mut(&id).unwrap().server.take() {
                s.shutdown(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Property: three managers over QUIC elect a leader and replicate; a proposal made on a follower
/// is forwarded to the leader and committed everywhere; a read barrier on a follower works (read
/// index forwarded); when the leader's server goes away, the two others elect a new leader and
/// writes continue there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_replicate_forward_and_fail_over() {
    let mut net = Net::new(3, fast_config()).await;
    let leader = net.wait_leader(&net.ids()).await;
    let follower = net.ids().into_iter().find(|i| *i != leader).unwrap();
    let mut last = 0;
    for n in 0..10 {
        last = net.node(leader).propose(create(n, 16)).await.unwrap();
    }
    let fwd = net.node(follower).propose(create(100, 16)).await.unwrap();
    assert!(fwd > last);
    net.wait_applied(&[1, 2, 3], fwd).await;
    for id in [1, 2, 3] {
        assert_eq!(net.count(id), 11, "manager {id}");
    }
    assert!(net.node(follower).read_barrier().await.unwrap() >= fwd);

    // The leader's listener (and its client, which shares the endpoint) goes away.
    let server = net
        .managers
        .get_mut(&leader)
        .unwrap()
        .server
        .take()
        .unwrap();
    server.shutdown(Duration::from_millis(200)).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    let new_leader = net.wait_leader(&rest).await;
    let index = net.node(new_leader).propose(create(200, 16)).await.unwrap();
    net.wait_applied(&rest, index).await;
    let other = rest.iter().copied().find(|i| *i != new_leader).unwrap();
    // Through the follower too (forwarded to the new leader).
    let index = net.node(other).propose(create(201, 16)).await.unwrap();
    net.wait_applied(&rest, index).await;
    for id in &rest {
        assert_eq!(net.count(*id), 13, "manager {id}");
    }
    net.shutdown().await;
}

/// Property: only raft members may call raft methods: a worker certificate is refused by the
/// access table, a manager certificate of this cluster whose node id is not a member (unknown, or
/// recorded for a raft id outside the membership, as after a removal) is refused by the raft
/// server, both with PermissionDenied; a member's certificate passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_are_refused() {
    let mut net = Net::new(3, fast_config()).await;
    let peer = net.peer(1);
    let (worker, _) = net.stranger(Role::Worker, alpn_protocol());
    let err = worker
        .unary(&peer, &READ_INDEX, &RaftRpc::ReadIndex, T)
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::PermissionDenied(_)), "{err}");

    let (outsider, material) = net.stranger(Role::Manager, alpn_protocol());
    let err = outsider
        .unary(&peer, &READ_INDEX, &RaftRpc::ReadIndex, T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::PermissionDenied(m) if m.contains("not a raft member")),
        "{err}"
    );
    // Recorded as raft member 42, which is not in the membership (a removed manager).
    net.members.insert(42, material.identity().node_id);
    let err = outsider
        .unary(&peer, &READ_INDEX, &RaftRpc::ReadIndex, T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::PermissionDenied(m) if m.contains("not in the membership")),
        "{err}"
    );

    // A member may: manager 2 asks manager 1 for a read index with its own certificate.
    let (member, _) = {
        let m = &net.managers[&2];
        let client = Client::bind(
            "127.0.0.98:0".parse().unwrap(),
            TlsState::new(&m.material).unwrap(),
            rpc_config(),
        )
        .unwrap();
        (client, ())
    };
    let leader = net.wait_leader(&net.ids()).await;
    let reply = member
        .unary(&net.peer(leader), &READ_INDEX, &RaftRpc::ReadIndex, T)
        .await
        .unwrap();
    assert!(
        matches!(reply, swarm_raft::RaftReply::ReadIndex(Ok(_))),
        "{reply:?}"
    );
    // A pre-vote travels on its own method and is answered (no: this candidate's log is empty
    // and the leader leads); a member cannot ask in another member's name.
    let ask = |candidate| {
        RaftRpc::PreVote(swarm_raft::PreVote {
            candidate,
            term: 1_000,
            last_log_id: None,
        })
    };
    let reply = member
        .unary(&net.peer(leader), &PRE_VOTE, &ask(2), T)
        .await
        .unwrap();
    assert!(
        matches!(&reply, swarm_raft::RaftReply::PreVote(r) if !r.granted && r.last_log_id.is_some()),
        "{reply:?}"
    );
    let err = member
        .unary(&net.peer(leader), &PRE_VOTE, &ask(3), T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::PermissionDenied(m) if m.contains("sent a message as")),
        "{err}"
    );
    // A message on the wrong method is refused before raft sees it.
    let err = member
        .unary(&net.peer(leader), &VOTE, &RaftRpc::ReadIndex, T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::Status(s) if s.code == swarm_net::rpc::Code::InvalidArgument),
        "{err}"
    );
    net.shutdown().await;
}

/// Property: a manager speaking another protocol version (another store or raft encoding) is
/// refused at the handshake with an error saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_protocol_version_is_refused() {
    let mut net = Net::new(1, fast_config()).await;
    let peer = net.peer(1);
    let (old, _) = net.stranger(Role::Manager, b"swarm/1-store1-raft1".to_vec());
    let err = old
        .unary(&peer, &READ_INDEX, &RaftRpc::ReadIndex, T)
        .await
        .unwrap_err();
    match &err {
        RpcError::ProtocolVersion { ours } => assert_eq!(ours, "swarm/1-store1-raft1"),
        other => panic!("expected a protocol version refusal, got {other}"),
    }
    assert_ne!(alpn_protocol(), b"swarm/1-store1-raft1".to_vec());
    net.shutdown().await;
}

/// Property: a follower that fell behind a purged log is brought up to date with a snapshot sent
/// in several chunks over QUIC. Setup: 200 secrets of 2 KiB (400 KB of data: more than 4 chunks
/// of 64 KiB), a snapshot every 50 entries keeping 5, the follower's raft stopped meanwhile.
/// (Chunks of the default 3 MiB are not used here: see the module docs of net/raft.rs on append
/// timing in unoptimised builds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_receives_a_multi_chunk_snapshot() {
    let mut cfg = fast_config();
    cfg.snapshot_every = 50;
    cfg.keep_logs_after_snapshot = 5;
    cfg.snapshot_chunk_bytes = 64 * 1024;
    let mut net = Net::new(3, cfg).await;
    let leader = net.wait_leader(&net.ids()).await;
    let lag = net.ids().into_iter().find(|i| *i != leader).unwrap();
    net.stop_raft(lag).await;
    const SECRETS: u128 = 200;
    const BYTES: usize = 2 * 1024;
    assert!(SECRETS as usize * BYTES > 4 * net.cfg.snapshot_chunk_bytes as usize);
    let mut last = 0;
    for n in 0..SECRETS {
        last = net
            .node(leader)
            .propose(create(n, BYTES))
            .await
            .unwrap_or_else(|e| panic!("proposal {n}: {e}"));
    }
    net.node(leader)
        .raft()
        .wait(Some(T))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > 100),
            "leader purged its log",
        )
        .await
        .unwrap();
    net.start(lag).await;
    net.wait_applied(&[lag], last).await;
    assert_eq!(net.count(lag), SECRETS as usize);
    let m = net.node(lag).raft().metrics().borrow().clone();
    assert!(
        m.snapshot.is_some(),
        "the follower caught up without a snapshot"
    );
    net.shutdown().await;
}

/// Property: a follower catching up on large entries over QUIC, while the leader depends on it
/// for its quorum, catches up without the leader stepping down (its term never changes) and a
/// proposal made meanwhile commits. Setup: 50 secrets of 100 KiB (5 MB) committed while one
/// follower is stopped; then the other is stopped and the first restarted, the leader reaching
/// it over a 2 MB/s link ([`SlowLink`], real QUIC behind it). Heartbeat 1 s (so openraft gives each append 1 s; the
/// long heartbeat keeps unoptimised builds on a loaded machine well inside it for one entry), a
/// leader without a quorum ack for 11 s steps down. A 3 MiB batch (`MAX_APPEND_BYTES`, 31
/// entries) takes 1.5 s on that link, so without swarm-raft's byte budget per append (network.rs)
/// every catch-up append times out and the follower never catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_on_large_entries_without_the_leader_stepping_down() {
    let cfg = RaftConfig {
        heartbeat: Duration::from_secs(1),
        election_timeout_min: Duration::from_secs(5),
        election_timeout_max: Duration::from_secs(10),
        step_down_after: Duration::from_secs(11),
        propose_timeout: Duration::from_secs(60),
        snapshot_every: 100_000, // catch up by appends, not by a snapshot
        ..RaftConfig::default()
    };
    let mut net = Net::new(3, cfg).await;
    let leader = net.wait_leader(&net.ids()).await;
    let mut followers = net.ids().into_iter().filter(|i| *i != leader);
    let (helper, lagger) = (followers.next().unwrap(), followers.next().unwrap());
    net.stop_raft(lagger).await;
    const SECRETS: u128 = 50;
    for n in 0..SECRETS {
        net.node(leader)
            .propose(create(n, LARGE_ENTRY))
            .await
            .unwrap_or_else(|e| panic!("proposal {n}: {e}"));
    }
    let term = net.node(leader).raft().metrics().borrow().current_term;
    net.stop_raft(helper).await;
    *net.slow_link.lock().unwrap() = Some((lagger, 2_000_000));
    net.start(lagger).await;
    // Commits only once the restarted follower holds every entry before it.
    let index = net
        .node(leader)
        .propose(create(1000, 16))
        .await
        .expect("a proposal while the follower catches up");
    net.wait_applied(&[lagger], index).await;
    assert_eq!(net.count(lagger), SECRETS as usize + 1);
    let now = net.node(leader).raft().metrics().borrow().current_term;
    assert_eq!(
        now, term,
        "the leader stepped down (or an election happened) during the catch-up"
    );
    assert!(net.node(leader).status().leads());
    net.shutdown().await;
}
