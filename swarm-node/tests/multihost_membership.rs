//! Raft membership of several managers in one process (raft over swarm-raft's in-memory router;
//! the join itself through `net::membership::handle_join`, the leader side of the
//! `raft.v1.join` RPC): a manager joins with an empty log and receives the state, the leader's
//! loop keeps `manager_status` current, refuses bad joins, demotes and promotes by
//! `spec.desired_role`, and force-new-cluster keeps every object with one manager left; a leader
//! to be demoted hands its leadership over first and is then demoted by its successor.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::cluster::RootCa;
use swarm_core::objects::node::{
    NodeAvailability, NodeRole, NodeSpec, NodeState, NodeStatus, Reachability,
};
use swarm_core::{Id, Meta, Node, SharedStore, StoreAction};
use swarm_net::rpc::Code;
use swarm_node::backend::InitRequest;
use swarm_node::dispatcher::DispatcherOptions;
use swarm_node::manager::host::describe_host;
use swarm_node::manager::{Manager, ManagerConfig, NodeIdentity};
use swarm_node::net::membership::{handle_join, JoinRaftReply, JoinRaftRequest};
use swarm_secrets::KdfParams;

const TIMEOUT: Duration = Duration::from_secs(30);

fn config(dir: &Path) -> ManagerConfig {
    ManagerConfig {
        raft_dir: dir.join("raft"),
        raft: swarm_raft::RaftConfig::default(),
        kdf: KdfParams::new(64, 1, 1).expect("test KDF"),
        dispatcher: DispatcherOptions::default(),
        entropy: swarm_raft::entropy::os(),
        clock: swarm_core::SharedClock::new(swarm_raft::SystemClock),
    }
}

/// A node object as the CA's registration creates it.
fn node(id: Id, role: NodeRole) -> Node {
    Node {
        id,
        meta: Meta::default(),
        spec: NodeSpec {
            annotations: Default::default(),
            desired_role: role,
            availability: NodeAvailability::Active,
        },
        description: Some(describe_host(Some("joiner"))),
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: "10.0.0.9".into(),
        },
        manager_status: None,
        role,
        certificate: None,
    }
}

/// Polls `cond` on `store` until it holds, bounded by [`TIMEOUT`].
async fn wait_store(what: &str, store: &SharedStore, cond: impl Fn(&swarm_core::Store) -> bool) {
    let until = tokio::time::Instant::now() + TIMEOUT;
    while !store.view(&cond) {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_raft(what: &str, m: &Manager, cond: impl Fn(&swarm_raft::NodeStatus) -> bool) {
    let until = tokio::time::Instant::now() + TIMEOUT;
    while !cond(&m.raft().status()) {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_of(store: &SharedStore, id: Id) -> Option<swarm_core::objects::node::ManagerStatus> {
    store.view(|s| s.get::<Node>(&id).and_then(|n| n.manager_status.clone()))
}

struct Joiner {
    dir: tempfile::TempDir,
    identity: NodeIdentity,
}

/// Registers `node_id` (as the CA would) through `leader` and joins it as raft member `raft_id`.
async fn join(
    router: &swarm_raft::Router,
    leader: &Manager,
    cluster: Id,
    raft_id: u64,
) -> (Manager, Joiner) {
    let node_id = Id::generate(&mut rand_core::OsRng);
    leader
        .proposer()
        .propose(vec![StoreAction::Create(
            node(node_id, NodeRole::Manager).into(),
        )])
        .await
        .expect("node registered");
    let j = Joiner {
        dir: tempfile::tempdir().unwrap(),
        identity: NodeIdentity::new_manager(node_id, raft_id, cluster, format!("m{raft_id}:2377")),
    };
    let handle = leader.handle();
    let r = router.clone();
    let addr = j.identity.addr.clone();
    let m = Manager::join(
        &config(j.dir.path()),
        &j.identity,
        router.endpoint(raft_id),
        move |raft, _store| async move {
            r.register(raft);
            match handle_join(&handle, node_id, JoinRaftRequest { raft_id, addr }).await {
                Ok(JoinRaftReply::Joined { members }) => {
                    assert!(members
                        .iter()
                        .any(|p| p.raft_id == raft_id && p.node_id == node_id));
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("manager joined");
    (m, j)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_join_get_status_demote_promote_and_force_a_new_cluster() {
    let router = swarm_raft::Router::new();
    let dir_a = tempfile::tempdir().unwrap();
    let cluster = Id::generate(&mut rand_core::OsRng);
    let a_id = NodeIdentity::new_manager(
        Id::generate(&mut rand_core::OsRng),
        1,
        cluster,
        "m1:2377".into(),
    );
    let a = Manager::init(
        &config(dir_a.path()),
        &a_id,
        describe_host(Some("a")),
        &InitRequest::default(),
        RootCa::default(),
        None,
        router.endpoint(1),
    )
    .await
    .expect("init");
    router.register(a.raft().clone());

    // Two managers join with empty logs and receive the cluster.
    let (b, jb) = join(&router, &a, cluster, 2).await;
    let (c, jc) = join(&router, &a, cluster, 3).await;
    wait_raft("3 voters", &a, |s| s.voters.len() == 3).await;
    for m in [&b, &c] {
        let cid = m.store().view(|s| s.cluster().map(|c| c.id));
        assert_eq!(cid, Some(cluster), "the joiner has the cluster object");
    }
    // The leader's loop reports both as reachable, itself as leader.
    for id in [jb.identity.node_id, jc.identity.node_id] {
        wait_store("a reachable follower", a.store(), |s| {
            s.get::<Node>(&id)
                .and_then(|n| n.manager_status.clone())
                .is_some_and(|m| m.reachability == Reachability::Reachable && !m.leader)
        })
        .await;
    }
    assert!(status_of(a.store(), a_id.node_id).is_some_and(|m| m.leader));
    // A write on the leader reaches a follower's store.
    let worker_id = Id::generate(&mut rand_core::OsRng);
    a.proposer()
        .propose(vec![StoreAction::Create(
            node(worker_id, NodeRole::Worker).into(),
        )])
        .await
        .expect("write");
    wait_store("the write replicated", c.store(), |s| {
        s.get::<Node>(&worker_id).is_some()
    })
    .await;

    // Refusals: a follower redirects to the leader; an unknown node, a worker and a taken raft
    // id are refused.
    match handle_join(
        &b.handle(),
        worker_id,
        JoinRaftRequest {
            raft_id: 9,
            addr: "x:1".into(),
        },
    )
    .await
    {
        Ok(JoinRaftReply::NotLeader { leader: Some(l) }) => {
            assert_eq!((l.raft_id, l.node_id), (1, a_id.node_id))
        }
        other => panic!("a follower answered {other:?}"),
    }
    let unknown = Id::generate(&mut rand_core::OsRng);
    let e = handle_join(
        &a.handle(),
        unknown,
        JoinRaftRequest {
            raft_id: 9,
            addr: "x:1".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
    let e = handle_join(
        &a.handle(),
        worker_id,
        JoinRaftRequest {
            raft_id: 9,
            addr: "x:1".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, Code::PermissionDenied, "{e}");
    let other = Id::generate(&mut rand_core::OsRng);
    a.proposer()
        .propose(vec![StoreAction::Create(
            node(other, NodeRole::Manager).into(),
        )])
        .await
        .unwrap();
    let e = handle_join(
        &a.handle(),
        other,
        JoinRaftRequest {
            raft_id: 2,
            addr: "x:1".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, Code::AlreadyExists, "{e}");

    // Demote c: the leader takes it out of raft first, then makes it a worker.
    let set_role = |id: Id, role: NodeRole| {
        let a_store = a.store().clone();
        let p = a.proposer();
        async move {
            swarm_core::update(&a_store, p.as_ref(), |tx| {
                let mut n = (*tx.get::<Node>(&id).unwrap()).clone();
                n.spec.desired_role = role;
                tx.update(n)
            })
            .await
            .unwrap();
        }
    };
    set_role(jc.identity.node_id, NodeRole::Worker).await;
    wait_raft("c out of raft", &a, |s| {
        !s.voters.contains(&3) && !s.learners.contains(&3)
    })
    .await;
    let cid = jc.identity.node_id;
    wait_store("c demoted", a.store(), |s| {
        s.get::<Node>(&cid)
            .is_some_and(|n| n.role == NodeRole::Worker && n.manager_status.is_none())
    })
    .await;
    // Promote the worker: its role follows (its raft join comes when it restarts as a manager).
    set_role(worker_id, NodeRole::Manager).await;
    wait_store("worker promoted", a.store(), |s| {
        s.get::<Node>(&worker_id)
            .is_some_and(|n| n.role == NodeRole::Manager)
    })
    .await;

    // Lose b and c; a alone has no quorum (2 voters: a, b). Force a new cluster from a's state.
    let nodes_before = a.store().view(|s| s.count::<Node>());
    router.unregister(2);
    router.unregister(3);
    b.shutdown().await;
    c.shutdown().await;
    a.shutdown().await;
    router.unregister(1);
    let a = Manager::open(
        &config(dir_a.path()),
        &a_id,
        None,
        true,
        Arc::new(swarm_node::manager::NoPeers),
    )
    .await
    .expect("force-new-cluster");
    assert_eq!(a.raft().status().voters, vec![1]);
    assert!(a.raft().status().leads());
    let (count, cid, b_status, a_status) = a.store().view(|s| {
        (
            s.count::<Node>(),
            s.cluster().map(|c| c.id),
            s.get::<Node>(&jb.identity.node_id)
                .map(|n| (n.role, n.manager_status.clone())),
            s.get::<Node>(&a_id.node_id)
                .and_then(|n| n.manager_status.clone()),
        )
    });
    assert_eq!(
        (count, cid),
        (nodes_before, Some(cluster)),
        "every object kept"
    );
    assert_eq!(
        b_status,
        Some((NodeRole::Worker, None)),
        "the lost manager is demoted"
    );
    assert!(a_status.is_some_and(|m| m.leader && m.raft_id == 1));
    // Writes commit with one voter.
    a.proposer()
        .propose(vec![StoreAction::Create(
            node(Id::generate(&mut rand_core::OsRng), NodeRole::Worker).into(),
        )])
        .await
        .expect("a write after force-new-cluster");
    a.shutdown().await;
    drop((jb, jc));
}

/// Property: demoting the leader hands leadership to another manager through one election
/// started at once (raft's TimeoutNow: the term goes up by exactly one, so no election timeout
/// ran and no second round was needed), and the successor then takes the old leader out of raft
/// and makes it a worker; writes go on through any manager. Setup: 3 managers in one process
/// over the in-memory router; the leader's node gets `desired_role = worker` (what
/// `docker node demote` writes). Before the transfer existed the leader never demoted itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demoting_the_leader_hands_leadership_to_a_caught_up_manager_first() {
    let router = swarm_raft::Router::new();
    let dir_a = tempfile::tempdir().unwrap();
    let cluster = Id::generate(&mut rand_core::OsRng);
    let a_id = NodeIdentity::new_manager(
        Id::generate(&mut rand_core::OsRng),
        1,
        cluster,
        "m1:2377".into(),
    );
    let a = Manager::init(
        &config(dir_a.path()),
        &a_id,
        describe_host(Some("a")),
        &InitRequest::default(),
        RootCa::default(),
        None,
        router.endpoint(1),
    )
    .await
    .expect("init");
    router.register(a.raft().clone());
    let (b, jb) = join(&router, &a, cluster, 2).await;
    let (c, jc) = join(&router, &a, cluster, 3).await;
    wait_raft("3 voters", &a, |s| s.voters.len() == 3).await;
    assert!(a.raft().status().leads());
    let term = a.raft().status().term;

    swarm_core::update(a.store(), a.proposer().as_ref(), |tx| {
        let mut n = (*tx.get::<Node>(&a_id.node_id).unwrap()).clone();
        n.spec.desired_role = NodeRole::Worker;
        tx.update(n)
    })
    .await
    .unwrap();
    // Another manager leads, elected in the very next term.
    wait_raft("another leader", &b, |s| s.leader.is_some_and(|l| l != 1)).await;
    let st = b.raft().status();
    let successor = st.leader.unwrap();
    assert!([2, 3].contains(&successor), "{st:?}");
    assert_eq!(st.term, term + 1, "one election, started at once and won");
    // The successor demotes the old leader: out of raft, then a worker.
    let new = if successor == 2 { &b } else { &c };
    wait_raft("the old leader out of raft", new, |s| {
        s.voters.len() == 2 && !s.voters.contains(&1) && !s.learners.contains(&1)
    })
    .await;
    let aid = a_id.node_id;
    wait_store("the old leader demoted", new.store(), |s| {
        s.get::<Node>(&aid)
            .is_some_and(|n| n.role == NodeRole::Worker && n.manager_status.is_none())
    })
    .await;
    // Writes through either remaining manager commit.
    for m in [&b, &c] {
        m.proposer()
            .propose(vec![StoreAction::Create(
                node(Id::generate(&mut rand_core::OsRng), NodeRole::Worker).into(),
            )])
            .await
            .expect("a write after the demotion");
    }
    for (id, m) in [(1, a), (2, b), (3, c)] {
        router.unregister(id);
        m.shutdown().await;
    }
    drop((jb, jc));
}
