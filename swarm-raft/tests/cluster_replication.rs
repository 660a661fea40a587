//! Replication, forwarding, rejection, linearizable reads, failures and restarts of 3- and
//! 5-manager clusters over the in-memory router with real WALs.

use std::time::Duration;

use swarm_core::testing::secret;
use swarm_core::{CommitError, Proposer, Secret, StoreAction};
use swarm_raft::testing::{fast_config, TestCluster};
use swarm_raft::StartOptions;

const T: Duration = Duration::from_secs(10);

fn create(n: u128) -> Vec<StoreAction> {
    vec![StoreAction::Create(
        secret(n, &format!("secret-{n}"), b"x").into(),
    )]
}

fn count(c: &TestCluster, id: u64) -> usize {
    c.node(id).store().view(|s| s.count::<Secret>())
}

/// Property: a proposal made on a follower is forwarded to the leader, stamped once, committed,
/// applied on every replica at the same index; a batch the store refuses is refused with
/// `Rejected` and leaves every replica identical; a read after `read_barrier` on a follower sees
/// every committed write. Setup: 3 managers, proposals through a follower, then a duplicate create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_proposals_are_forwarded_and_rejections_are_identical() {
    let c = TestCluster::new(3, fast_config()).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let follower = c.ids().into_iter().find(|id| *id != leader).unwrap();
    let index = c.node(follower).propose(create(1)).await.unwrap();
    // The proposer's own store already applied it (Proposer contract).
    assert_eq!(count(&c, follower), 1);
    c.wait_applied(&c.ids(), index, T).await;
    let stamps: Vec<_> = c
        .ids()
        .iter()
        .map(|id| {
            c.node(*id)
                .store()
                .view(|s| s.iter::<Secret>().next().map(|x| x.meta.clone()))
        })
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] == w[1]),
        "replicas differ: {stamps:?}"
    );
    assert_eq!(stamps[0].as_ref().unwrap().version.0, index);

    let dup = c.node(follower).propose(create(1)).await;
    assert!(matches!(dup, Err(CommitError::Rejected(_))), "{dup:?}");
    let next = c.node(leader).propose(create(2)).await.unwrap();
    c.wait_applied(&c.ids(), next, T).await;
    for id in c.ids() {
        assert_eq!(count(&c, id), 2);
        assert_eq!(c.node(id).store().index(), next);
    }
    let read = c.node(follower).read_barrier().await.unwrap();
    assert!(read >= next);
    c.shutdown().await;
}

/// Property: a committed write survives the loss of any minority and a restart of every member.
/// Setup: 5 managers; write, stop two (a minority, including the leader), write again through the
/// majority, restart everyone, and check every member holds both writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_survive_minority_failure_and_full_restart() {
    let mut c = TestCluster::new(5, fast_config()).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let i1 = c.node(leader).propose(create(1)).await.unwrap();
    let other = c.ids().into_iter().find(|id| *id != leader).unwrap();
    c.stop(leader).await;
    c.stop(other).await;
    let rest = c.ids();
    let new_leader = c.wait_leader(&rest, T).await;
    let i2 = c.node(new_leader).propose(create(2)).await.unwrap();
    assert!(i2 > i1);
    for id in 1..=5 {
        c.stop(id).await;
    }
    for id in 1..=5 {
        c.start(id, StartOptions::default()).await.unwrap();
    }
    let l = c.wait_leader(&c.ids(), T).await;
    // A new write commits only after the earlier ones; once everyone applied it, all are there.
    let i3 = c.node(l).propose(create(3)).await.unwrap();
    c.wait_applied(&c.ids(), i3, T).await;
    for id in c.ids() {
        assert_eq!(count(&c, id), 3, "node {id}");
    }
    c.shutdown().await;
}

/// Property: a minority cannot commit, and the majority side keeps committing. Setup: 5 managers,
/// the leader and one follower cut off from the other three; a proposal on the minority side fails
/// with `NoQuorum` (or `NotLeader` once it stepped down) and is not applied anywhere; the majority
/// elects a leader and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition_cannot_commit() {
    let c = TestCluster::new(5, fast_config()).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let ids = c.ids();
    let minority: Vec<u64> = std::iter::once(leader)
        .chain(ids.iter().copied().filter(|i| *i != leader).take(1))
        .collect();
    let majority: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|i| !minority.contains(i))
        .collect();
    c.router.partition(&minority, &majority);
    let r = c.node(leader).propose(create(9)).await;
    assert!(
        matches!(
            r,
            Err(CommitError::NoQuorum { .. }) | Err(CommitError::NotLeader { .. })
        ),
        "{r:?}"
    );
    let new_leader = c.wait_leader(&majority, T).await;
    let i = c.node(new_leader).propose(create(1)).await.unwrap();
    c.wait_applied(&majority, i, T).await;
    for id in &majority {
        assert_eq!(count(&c, *id), 1);
        assert!(c.node(*id).store().view(|s| s
            .iter::<Secret>()
            .all(|x| x.spec.annotations.name != "secret-9")));
    }
    // Heal: the minority catches up and never applies the uncommitted proposal.
    c.router.heal();
    let i2 = c
        .node(c.wait_leader(&ids, T).await)
        .propose(create(2))
        .await
        .unwrap();
    c.wait_applied(&ids, i2, T).await;
    for id in ids {
        assert_eq!(count(&c, id), 2, "node {id}");
    }
    c.shutdown().await;
}

/// Property: an isolated leader steps down (stops being leader in openraft's own state and
/// refuses proposals), and a new leader is elected by the others. Setup: 3 managers, cut the leader
/// off both ways, wait for its state to leave `Leader` (bounded wait), then check the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_steps_down() {
    let c = TestCluster::new(3, fast_config()).await;
    let old = c.wait_leader(&c.ids(), T).await;
    c.router.isolate(old, &c.ids());
    c.node(old)
        .raft()
        .wait(Some(T))
        .metrics(
            |m| m.state != openraft::ServerState::Leader,
            "old leader steps down",
        )
        .await
        .unwrap();
    assert!(!c.node(old).is_leader());
    let others: Vec<u64> = c.ids().into_iter().filter(|i| *i != old).collect();
    let new = c.wait_leader(&others, T).await;
    assert_ne!(new, old);
    assert!(c.node(old).propose(create(1)).await.is_err());
    c.shutdown().await;
}

/// Property: a follower that is far behind is brought up to date with a snapshot (sent in chunks
/// through the network), and a newly added manager too. Setup: snapshot every 20 entries, one
/// follower stopped while 60 entries commit, then restarted; then a fourth manager is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_new_managers_catch_up_by_snapshot() {
    let mut cfg = fast_config();
    cfg.snapshot_every = 20;
    cfg.keep_logs_after_snapshot = 5;
    cfg.snapshot_chunk_bytes = 1024;
    let mut c = TestCluster::new(3, cfg).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let lag = c.ids().into_iter().find(|i| *i != leader).unwrap();
    c.stop(lag).await;
    let mut last = 0;
    for n in 0..60 {
        last = c.node(leader).propose(create(100 + n)).await.unwrap();
    }
    c.node(leader)
        .raft()
        .wait(Some(T))
        .metrics(|m| m.purged.is_some(), "leader purged its log")
        .await
        .unwrap();
    c.start(lag, Default::default()).await.unwrap();
    c.wait_applied(&[lag], last, T).await;
    assert_eq!(count(&c, lag), 60);
    c.start(4, Default::default()).await.unwrap();
    c.node(leader).add_manager(4, "node-4").await.unwrap();
    c.wait_applied(&[4], last, T).await;
    assert_eq!(count(&c, 4), 60);
    assert!(c.node(4).status().voters.contains(&4));
    c.shutdown().await;
}
