//! The control layer on a raft follower (issue 17's defect 2): a read a client may feed back as a
//! version (inspect, list) and the read inside an update first make the follower's store current
//! with the leader's read index (`Control::sync_reads`), so inspect-then-update through a lagging
//! follower sees what the leader committed, as SwarmKit's leader-served control API does.
//! Three managers in one process over swarm-raft's in-memory router, real WALs.

use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::{ContainerSpec, ServiceSpec, TaskSpec};
use swarm_core::{Annotations, Service, ServiceMode};
use swarm_node::backend::ClusterAccess;
use swarm_node::control::{Control, ServiceRequest, SystemClock};
use swarm_raft::testing::{fast_config, TestCluster};
use swarm_raft::NodeId;

const T: Duration = Duration::from_secs(10);

fn control(c: &TestCluster, id: NodeId) -> Control {
    let node = c.node(id).clone();
    let access = ClusterAccess {
        store: node.store().clone(),
        proposer: Arc::new(node),
        node_id: swarm_core::testing::id(u128::from(id)),
        ports: None,
        raft: None,
        entropy: swarm_raft::entropy::os(),
    };
    Control::new(access, Arc::new(SystemClock))
}

fn request(replicas: u64) -> ServiceRequest {
    ServiceRequest {
        spec: ServiceSpec {
            annotations: Annotations::named("web"),
            task: TaskSpec {
                container: ContainerSpec {
                    image: "nginx".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            mode: ServiceMode::Replicated { replicas },
            ..Default::default()
        },
        secrets: Vec::new(),
        configs: Vec::new(),
    }
}

fn replicas(s: &Service) -> u64 {
    match s.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        _ => panic!("not replicated"),
    }
}

/// Property: inspect then update through a follower that has not applied the leader's last
/// write succeeds, and the update lands on the latest version. Setup: the leader's appends to
/// the follower are dropped (every other message passes) while the leader updates the service,
/// so the follower's store holds an older version; they flow again shortly after the follower's
/// inspect began. Without the read index the follower's inspect returns the old version and the
/// update is refused at the leader ("update out of sequence").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_then_update_through_a_lagging_follower_succeeds() {
    let c = TestCluster::new(3, fast_config()).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let (on_leader, on_follower) = (control(&c, leader), control(&c, follower));
    on_leader.create_service(request(1), None).await.unwrap();
    let applied = c.node(leader).status().last_applied.unwrap();
    c.wait_applied(&[follower], applied, T).await;

    // The follower stops receiving entries; the leader moves the service on.
    c.router.block_appends(leader, follower);
    let cur = on_leader.get::<Service>("web").unwrap();
    on_leader
        .update_service("web", cur.meta.version.0, request(2), false)
        .await
        .unwrap();
    let stale = c
        .node(follower)
        .store()
        .view(|s| s.get_by_name::<Service>("web").cloned())
        .unwrap();
    assert_eq!(replicas(&stale), 1, "the follower should lag here");

    // Inspect then update through the follower, as `docker service update` does.
    let through_follower = tokio::spawn(async move {
        on_follower.sync_reads().await?;
        let cur = on_follower.get::<Service>("web")?;
        let seen = replicas(&cur);
        on_follower
            .update_service("web", cur.meta.version.0, request(3), false)
            .await?;
        Ok::<u64, swarm_node::control::ControlError>(seen)
    });
    // Entries flow again once the follower is waiting for the read index to apply (if it has
    // not started yet, it finds its store current at once: the same outcome).
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.router.unblock_appends(leader, follower);
    let seen = through_follower.await.unwrap().unwrap();
    assert_eq!(
        seen, 2,
        "the follower's inspect showed the leader's latest version"
    );
    let now = on_leader.get::<Service>("web").unwrap();
    assert_eq!(replicas(&now), 3);
    c.shutdown().await;
}

/// Property: with no leader reachable, a follower's read fails with a typed `Unavailable` error
/// after the bounded wait instead of answering from its possibly stale store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_a_follower_without_a_leader_is_unavailable() {
    let mut c = TestCluster::new(3, fast_config()).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let rest: Vec<NodeId> = c.ids().into_iter().filter(|i| *i != leader).collect();
    // The two followers cannot reach each other, and the leader is gone: no quorum anywhere.
    c.router.partition(&[rest[0]], &[rest[1]]);
    c.stop(leader).await;
    let err = control(&c, rest[0]).sync_reads().await.unwrap_err();
    assert!(
        matches!(err, swarm_node::control::ControlError::Unavailable(_)),
        "{err:?}"
    );
    c.router.heal();
    c.shutdown().await;
}
