//! Pre-vote (swarm-raft's `prevote`, issue 17's defect 1): a member cut off from the leader for
//! several election timeouts does not raise its term, so when its link heals it follows the
//! leader it had instead of deposing it. Before pre-vote it started an election every timeout,
//! ran its term up alone, and the leader stepped down on seeing that term in its next append's
//! answer (the cluster simulation's seed 2, `MuteOutgoing("m2")`).

use std::time::Duration;

use swarm_core::testing::secret;
use swarm_core::{Proposer, StoreAction};
use swarm_raft::testing::{fast_config, TestCluster};
use swarm_raft::NodeId;

const T: Duration = Duration::from_secs(10);

fn create(n: u128) -> Vec<StoreAction> {
    vec![StoreAction::Create(
        secret(n, &format!("secret-{n}"), b"x").into(),
    )]
}

/// The leader, a follower to cut off, and the other follower, once the cluster has committed a
/// first proposal; plus the leader's term.
async fn settled(c: &TestCluster) -> (NodeId, NodeId, NodeId, u64) {
    let leader = c.wait_leader(&c.ids(), T).await;
    let rest: Vec<NodeId> = c.ids().into_iter().filter(|i| *i != leader).collect();
    let index = c.node(leader).propose(create(1)).await.unwrap();
    c.wait_applied(&c.ids(), index, T).await;
    (leader, rest[0], rest[1], c.node(leader).status().term)
}

/// Lets several election timeouts pass under the fault, then checks that nobody's term moved,
/// the leader still leads, and the healthy pair still commits.
async fn hold_fault(c: &TestCluster, leader: NodeId, cut: NodeId, other: NodeId, term: u64) {
    // Five of the longest election timeouts: without pre-vote the cut-off member starts about
    // ten elections here.
    tokio::time::sleep(c.config.election_timeout_max * 5).await;
    let index = c.node(other).propose(create(2)).await.unwrap();
    c.wait_applied(&[leader, other], index, T).await;
    assert_eq!(
        c.node(cut).status().term,
        term,
        "the cut-off member raised its term alone"
    );
    let st = c.node(leader).status();
    assert!(st.leads(), "the leader stopped leading: {st:?}");
    assert_eq!(st.term, term);
}

/// After the heal: the cut-off member follows the same leader in the same term and catches up;
/// the leader never stepped down.
async fn rejoins(c: &TestCluster, leader: NodeId, cut: NodeId, term: u64) {
    let index = c.node(leader).propose(create(3)).await.unwrap();
    let st = c
        .node(cut)
        .wait_until(T, "the healed member follows the leader", |s| {
            s.leader == Some(leader) && s.last_applied.is_some_and(|a| a >= index)
        })
        .await
        .unwrap();
    assert_eq!(st.term, term);
    let st = c.node(leader).status();
    assert!(st.leads(), "the leader was deposed after the heal: {st:?}");
    assert_eq!(st.term, term, "the leader's term changed");
}

/// Property: a member that hears nothing from the leader (its appends are dropped, the member's
/// own messages still reach everyone) asks for pre-votes, is refused by the other follower (it
/// hears the leader) and by the leader, so it never raises its term; healed, it follows the same
/// leader in the same term. Fails without pre-vote: its term runs up, and the leader steps down
/// when it meets that term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_hear_the_leader_does_not_depose_it() {
    let c = TestCluster::new(3, fast_config()).await;
    let (leader, cut, other, term) = settled(&c).await;
    c.router.block(leader, cut);
    hold_fault(&c, leader, cut, other, term).await;
    c.router.heal();
    rejoins(&c, leader, cut, term).await;
    c.shutdown().await;
}

/// Property: a member whose messages are all dropped (the simulation's "cannot send": its QUIC
/// connections die, so nothing reaches it either, modelled here by cutting it off both ways)
/// gets no pre-vote answer, never raises its term, and rejoins under the same leader and term
/// when healed. Fails without pre-vote, as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_both_ways_rejoins_without_deposing_the_leader() {
    let c = TestCluster::new(3, fast_config()).await;
    let (leader, cut, other, term) = settled(&c).await;
    c.router.isolate(cut, &c.ids());
    hold_fault(&c, leader, cut, other, term).await;
    c.router.heal();
    rejoins(&c, leader, cut, term).await;
    c.shutdown().await;
}

/// Property: pre-vote does not stop a real failover: when the leader is gone, the two followers
/// grant each other's pre-vote and elect one of them, in a higher term, which then commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_followers_still_elect_when_the_leader_is_gone() {
    let mut c = TestCluster::new(3, fast_config()).await;
    let (leader, a, b, term) = settled(&c).await;
    c.stop(leader).await;
    let new = c.wait_leader(&[a, b], T).await;
    assert!(c.node(new).status().term > term);
    let index = c.node(new).propose(create(4)).await.unwrap();
    c.wait_applied(&[a, b], index, T).await;
    c.shutdown().await;
}
