//! Node availability, node failure and the constraint enforcer, as SEMANTICS.md "Nodes" states them.

use std::time::Duration;

use swarm_core::objects::node::{NodeAvailability, NodeState};
use swarm_core::{Id, Task, TaskState};
use swarm_sched::orchestrator::sim::Sim;
use swarm_sched::orchestrator::{ENFORCER_ERR, ENFORCER_MESSAGE, ORPHAN_AFTER};
use swarm_sched::testing::{id, labeled_node, node, service, GIB};

const SVC: u128 = 100;

fn on(sim: &Sim, n: u128) -> Vec<Task> {
    sim.live_tasks(&id(SVC))
        .into_iter()
        .filter(|t| t.node_id == Some(id(n)))
        .collect()
}

fn cluster(nodes: u128, replicas: u64) -> Sim {
    let mut sim = Sim::new(21);
    sim.create((1..=nodes).map(node));
    sim.create([service(SVC, replicas)]);
    sim
}

#[test]
fn availability_table() {
    // (availability of node 1, tasks left on node 1 out of 2, live tasks in total)
    let rows = [
        (NodeAvailability::Active, 2, 6),
        (NodeAvailability::Pause, 2, 6),
        (NodeAvailability::Drain, 0, 6),
    ];
    for (availability, left, total) in rows {
        let mut sim = cluster(3, 6);
        assert_eq!(on(&sim, 1).len(), 2);
        sim.update_node(&id(1), |n| n.spec.availability = availability);
        assert_eq!(on(&sim, 1).len(), left, "{availability:?}");
        assert_eq!(
            sim.running_tasks(&id(SVC)).len(),
            total,
            "{availability:?}: no delay"
        );
    }
}

#[test]
fn paused_node_gets_no_new_tasks() {
    let mut sim = cluster(2, 2);
    sim.update_node(&id(1), |n| n.spec.availability = NodeAvailability::Pause);
    sim.update_spec(&id(SVC), |s| {
        s.mode = swarm_core::ServiceMode::Replicated { replicas: 6 }
    });
    assert_eq!(on(&sim, 1).len(), 1);
    assert_eq!(on(&sim, 2).len(), 5);
}

#[test]
fn down_node_tasks_rescheduled_at_once_and_orphaned_after_a_day() {
    let mut sim = cluster(3, 6);
    let doomed: Vec<Id> = on(&sim, 1).iter().map(|t| t.id).collect();
    sim.update_node(&id(1), |n| n.status.state = NodeState::Down);
    assert_eq!(
        sim.running_tasks(&id(SVC)).len(),
        6,
        "replacements run elsewhere at once"
    );
    for t in &doomed {
        let t = sim.h.task(t).unwrap();
        assert_eq!(
            (t.desired_state, t.status.state),
            (TaskState::Shutdown, TaskState::Running)
        );
    }
    sim.advance(ORPHAN_AFTER - Duration::from_secs(1));
    assert_eq!(
        sim.h.task(&doomed[0]).unwrap().status.state,
        TaskState::Running
    );
    sim.advance(Duration::from_secs(1));
    for t in &doomed {
        assert_eq!(
            sim.h.task(t).map(|t| t.status.state),
            Some(TaskState::Orphaned)
        );
    }
}

#[test]
fn node_back_before_a_day_is_not_orphaned() {
    let mut sim = cluster(2, 2);
    let t = on(&sim, 1)[0].id;
    sim.update_node(&id(1), |n| n.status.state = NodeState::Down);
    sim.advance(Duration::from_secs(3600));
    sim.update_node(&id(1), |n| n.status.state = NodeState::Ready);
    sim.advance(ORPHAN_AFTER);
    assert_eq!(
        sim.h.task(&t).map(|t| t.status.state),
        Some(TaskState::Shutdown)
    );
}

#[test]
fn enforcer_rejects_tasks_whose_node_no_longer_matches() {
    let mut sim = Sim::new(22);
    sim.create([
        labeled_node(1, &[("disk", "ssd")]),
        labeled_node(2, &[("disk", "ssd")]),
    ]);
    let mut s = service(SVC, 2);
    s.spec.task.placement.constraints = vec!["node.labels.disk==ssd".into()];
    s.spec.task.restart.delay = Duration::ZERO;
    sim.create([s]);
    let victims: Vec<Task> = on(&sim, 1);
    assert_eq!(victims.len(), 1);
    sim.update_node(&id(1), |n| {
        n.spec.annotations.labels.clear();
    });
    let v = sim.h.task(&victims[0].id).unwrap();
    assert_eq!(v.status.state, TaskState::Rejected);
    assert_eq!(
        (v.status.message.as_str(), v.status.err.as_str()),
        (ENFORCER_MESSAGE, ENFORCER_ERR)
    );
    assert_eq!(
        on(&sim, 2).len(),
        2,
        "replaced on the node that still matches"
    );
}

#[test]
fn enforcer_rejects_newest_tasks_when_resources_shrink() {
    let mut sim = Sim::new(23);
    sim.create([node(1)]);
    let mut s = service(SVC, 3);
    s.spec.task.resources.reservations.memory_bytes = 2 * GIB;
    sim.create([s]);
    let mut tasks = on(&sim, 1);
    assert_eq!(tasks.len(), 3);
    tasks.sort_by_key(|t| (t.meta.created_at, t.meta.version, t.id));
    sim.update_node(&id(1), |n| {
        if let Some(d) = n.description.as_mut() {
            d.resources.memory_bytes = 5 * GIB;
        }
    });
    let rejected: Vec<Id> = sim
        .tasks_of(&id(SVC))
        .into_iter()
        .filter(|t| t.status.state == TaskState::Rejected)
        .map(|t| t.id)
        .collect();
    assert_eq!(rejected, vec![tasks[2].id]);
}

#[test]
fn paused_node_is_not_enforced() {
    let mut sim = Sim::new(24);
    sim.create([labeled_node(1, &[("disk", "ssd")])]);
    let mut s = service(SVC, 1);
    s.spec.task.placement.constraints = vec!["node.labels.disk==ssd".into()];
    sim.create([s]);
    sim.update_node(&id(1), |n| {
        n.spec.availability = NodeAvailability::Pause;
        n.spec.annotations.labels.clear();
    });
    assert_eq!(sim.running_tasks(&id(SVC)).len(), 1);
}

#[test]
fn removed_node_tasks_are_rescheduled() {
    let mut sim = cluster(2, 4);
    sim.apply(vec![swarm_core::StoreAction::Remove(
        swarm_core::ObjectRef {
            kind: swarm_core::ObjectKind::Node,
            id: id(1),
        },
    )]);
    assert_eq!(on(&sim, 2).len(), 4);
}

#[test]
fn becoming_leader_again_finishes_interrupted_work() {
    let mut sim = cluster(2, 3);
    let t = sim.running_tasks(&id(SVC))[0].clone();
    // Restart delay 5 s: the replacement waits, desired ready.
    sim.set_task_state(&t.id, TaskState::Failed);
    sim.orch = swarm_sched::Orchestrator::new();
    sim.settle();
    sim.advance(Duration::from_secs(5));
    assert_eq!(
        sim.running_tasks(&id(SVC)).len(),
        3,
        "the new leader starts the delayed task"
    );
}
