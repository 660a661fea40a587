//! Leader failover and leadership transfer over the in-memory router, with real data
//! directories: a proposal forwarded to a leader that went silent is re-routed to the next leader,
//! a leader hands its leadership to a caught-up voter (raft's TimeoutNow) and is then demoted by
//! its successor, and a node whose clock was replaced still elects.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use swarm_core::testing::secret;
use swarm_core::{CommitError, ManualClock, Proposer, Secret, SharedStore, StoreAction, Timestamp};
use swarm_raft::testing::{fast_config, TestCluster};
use swarm_raft::{MembershipError, NodeId, RaftNode, StartOptions};

const T: Duration = Duration::from_secs(10);

fn create(n: u128) -> Vec<StoreAction> {
    vec![StoreAction::Create(
        secret(n, &format!("secret-{n}"), b"x").into(),
    )]
}

fn others(c: &TestCluster, but: NodeId) -> Vec<NodeId> {
    c.ids().into_iter().filter(|i| *i != but).collect()
}

/// Property: a follower's proposal forwarded to a leader that stopped answering (a killed
/// process keeps no connection open to refuse it: the call just hangs) is given up as soon as
/// raft elects another leader, and commits there.
/// Setup: the leader's messages to the followers are dropped (so they elect a new leader) and the
/// follower's calls to it are delayed by an hour (so the forwarded call never answers). Before
/// the fix, the proposal waited for the whole propose timeout and failed with `NoQuorum`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_forwarded_to_a_silent_leader_commits_at_the_next_leader() {
    let c = TestCluster::new(3, fast_config()).await;
    let old = c.wait_leader(&c.ids(), T).await;
    let rest = others(&c, old);
    let (f, g) = (rest[0], rest[1]);
    c.node(f).propose(create(1)).await.unwrap();
    // The leader goes silent: nothing it sends arrives; what is sent to it never answers.
    for &o in &rest {
        c.router.block(old, o);
        c.router.set_delay(o, old, Duration::from_secs(3600));
    }
    let index = c.node(f).propose(create(2)).await.unwrap();
    let new = c.wait_leader(&rest, T).await;
    assert_ne!(new, old);
    assert!(c.node(f).store().view(|s| s.count::<Secret>()) >= 2);
    c.wait_applied(&[f, g], index, T).await;
    c.router.heal();
    c.shutdown().await;
}

/// Property: `transfer_leadership` hands leadership to a caught-up voter through one ordinary
/// election (the term goes up by exactly one: the successor won the first election it started,
/// no election timeout ran), the old leader follows it, writes go on, and the successor can then
/// demote the old leader. Setup: 3 voters; writes before and after; the successor is chosen
/// by the leader (most of the log, reachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_hands_over_to_a_caught_up_voter_which_then_demotes_it() {
    let c = TestCluster::new(3, fast_config()).await;
    let old = c.wait_leader(&c.ids(), T).await;
    c.node(old).propose(create(1)).await.unwrap();
    let term = c.node(old).status().term;
    let to = c.node(old).transfer_leadership(None).await.unwrap();
    assert_ne!(to, old);
    assert_eq!(c.wait_leader(&c.ids(), T).await, to);
    let st = c.node(to).status();
    assert!(st.leads(), "{st:?}");
    assert_eq!(st.term, term + 1, "one election, won at once");
    let st_old = c.node(old).status();
    assert_eq!(st_old.state, ServerState::Follower, "{st_old:?}");
    // A write through the old leader goes to the new one.
    let index = c.node(old).propose(create(2)).await.unwrap();
    c.wait_applied(&c.ids(), index, T).await;
    // The successor demotes the old leader (what `docker node demote` does next).
    c.node(to).demote_manager(old).await.unwrap();
    c.node(to).remove_manager(old).await.unwrap();
    let st = c.node(to).status();
    assert!(
        !st.voters.contains(&old) && !st.learners.contains(&old),
        "{st:?}"
    );
    c.node(to).propose(create(3)).await.unwrap();
    c.shutdown().await;
}

/// Property: with five voters the other followers still hold the old leader's lease when the
/// successor first asks for votes; the successor keeps asking until they grant, and no other
/// voter takes over. Also: a transfer to a named voter goes to that voter, and the refusals
/// (not the leader, not a voter) are typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_named_voter_among_five() {
    let c = TestCluster::new(5, fast_config()).await;
    let old = c.wait_leader(&c.ids(), T).await;
    c.node(old).propose(create(1)).await.unwrap();
    let rest = others(&c, old);
    let to = *rest.last().unwrap();
    let r = c.node(rest[0]).transfer_leadership(Some(to)).await;
    assert!(
        matches!(r, Err(MembershipError::NotLeader { leader: Some(l) }) if l == old),
        "{r:?}"
    );
    let r = c.node(old).transfer_leadership(Some(99)).await;
    assert_eq!(r, Err(MembershipError::NotMember(99)));
    assert_eq!(c.node(old).transfer_leadership(Some(to)).await, Ok(to));
    assert_eq!(c.wait_leader(&c.ids(), T).await, to);
    let index = c.node(rest[0]).propose(create(2)).await.unwrap();
    c.wait_applied(&c.ids(), index, T).await;
    c.shutdown().await;
}

/// Property: a node whose proposal clock was replaced (`with_clock`) stamps entries with that
/// clock and still runs its watchdog, which times elections (openraft's own timer is off): when
/// the leader stops, the others elect a new one. Setup: every node gets a manual clock right
/// after it starts and before anything else holds a handle to it (the case that used to rebuild
/// the node's state and orphan its watchdog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_clock_stamps_entries_and_elections_still_run() {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let mut c = TestCluster::empty(fast_config());
    for id in 1..=3 {
        let node = RaftNode::start(
            c.node_config(id),
            SharedStore::default(),
            c.router.endpoint(id),
            StartOptions::default(),
        )
        .await
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
        c.router.register(node.clone());
        c.nodes.insert(id, node);
        if id == 1 {
            c.node(1).bootstrap().await.unwrap();
        } else {
            let leader = c.wait_leader(&c.ids(), T).await;
            c.node(leader)
                .add_manager(id, format!("node-{id}"))
                .await
                .unwrap();
        }
    }
    let old = c.wait_leader(&c.ids(), T).await;
    c.node(old).propose(create(1)).await.unwrap();
    let stamped = c.node(old).store().view(|s| {
        s.iter::<Secret>()
            .map(|x| x.meta.created_at)
            .collect::<Vec<_>>()
    });
    assert_eq!(stamped, vec![Timestamp::from_secs(1_000_000)]);
    c.stop(old).await;
    let rest = c.ids();
    let new = c.wait_leader(&rest, T).await;
    assert_ne!(new, old);
    match c.node(new).propose(create(2)).await {
        Ok(_) => {}
        Err(e @ CommitError::NoQuorum { .. }) => panic!("no quorum after the election: {e}"),
        Err(e) => panic!("{e}"),
    }
    c.shutdown().await;
}

/// Property: a leader restarted after the others elected a new one is restored as leader by
/// openraft (its persisted vote is its own), so raft's local view (`leads()`) says it leads, but
/// `confirm_leadership` says no: no quorum confirms it. Work only a leader may start (swarm-node's
/// marking of nodes after a leadership change, SIMULATION.md defect 7) waits for that
/// confirmation. Setup: 3 voters; the leader stops; the others elect and commit; nothing sent to
/// the old leader arrives while it restarts, so it keeps its restored view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_ex_leader_cannot_confirm_its_leadership() {
    let mut c = TestCluster::new(3, fast_config()).await;
    let old = c.wait_leader(&c.ids(), T).await;
    c.node(old).propose(create(1)).await.unwrap();
    c.stop(old).await;
    let rest = others(&c, old);
    let new = c.wait_leader(&rest, T).await;
    c.node(new).propose(create(2)).await.unwrap();
    for &o in &rest {
        c.router.block(o, old);
    }
    let n = c.restart(old).await;
    n.wait_until(T, "restored as leader", |s| s.leads())
        .await
        .unwrap();
    assert!(!n.confirm_leadership().await);
    assert!(c.node(new).confirm_leadership().await);
    c.router.heal();
    c.shutdown().await;
}
