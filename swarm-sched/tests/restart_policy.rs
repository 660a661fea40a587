//! Restart policy and task history, as SEMANTICS.md "Restart policy" states them, each rule driven
//! through the orchestrator, the scheduler and simulated agents on a virtual clock.

use std::time::Duration;

use swarm_core::objects::cluster::ClusterSpec;
use swarm_core::objects::node::{NodeAvailability, NodeState};
use swarm_core::objects::service::{RestartCondition, RestartPolicy};
use swarm_core::{Cluster, Id, Meta, Task, TaskState};
use swarm_sched::orchestrator::sim::Sim;
use swarm_sched::testing::{id, node, service};

const SVC: u128 = 100;

/// A cluster of `nodes` nodes and one service with 1 replica and `policy`.
fn one_replica(nodes: u128, policy: RestartPolicy) -> Sim {
    let mut sim = Sim::new(7);
    sim.create((1..=nodes).map(node));
    let mut s = service(SVC, 1);
    s.spec.task.restart = policy;
    sim.create([s]);
    sim
}

fn the_running(sim: &Sim) -> Task {
    let r = sim.running_tasks(&id(SVC));
    assert_eq!(r.len(), 1, "one running task expected, got {r:?}");
    r[0].clone()
}

fn slot_tasks(sim: &Sim) -> Vec<Task> {
    let mut v = sim.tasks_of(&id(SVC));
    v.sort_by_key(|t| (t.meta.created_at, t.meta.version));
    v
}

fn policy(
    condition: RestartCondition,
    delay: u64,
    max_attempts: u64,
    window: u64,
) -> RestartPolicy {
    RestartPolicy {
        condition,
        delay: Duration::from_secs(delay),
        max_attempts,
        window: Duration::from_secs(window),
    }
}

#[test]
fn condition_table() {
    use RestartCondition::*;
    use TaskState::*;
    // (condition, how the task ended, restarted?)
    let rows = [
        (Any, Failed, true),
        (Any, Complete, true),
        (Any, Rejected, true),
        (Any, Shutdown, true),
        (OnFailure, Failed, true),
        (OnFailure, Rejected, true),
        (OnFailure, Complete, false),
        (None, Failed, false),
        (None, Complete, false),
    ];
    for (condition, end, restarted) in rows {
        let mut sim = one_replica(2, policy(condition, 0, 0, 0));
        let old = the_running(&sim);
        sim.set_task_state(&old.id, end);
        let old_now = sim.h.task(&old.id).unwrap();
        assert_eq!(
            old_now.desired_state, Shutdown,
            "{condition:?}/{end:?}: old task told to stop"
        );
        let replacements = slot_tasks(&sim)
            .into_iter()
            .filter(|t| t.id != old.id)
            .count();
        assert_eq!(replacements == 1, restarted, "{condition:?}/{end:?}");
        if restarted {
            let new = the_running(&sim);
            assert_eq!(new.slot, old.slot, "same slot");
        }
    }
}

#[test]
fn delay_table() {
    // (restart delay s, still waiting just before it, running just after)
    for delay in [0u64, 1, 5, 30] {
        let mut sim = one_replica(1, policy(RestartCondition::Any, delay, 0, 0));
        let old = the_running(&sim);
        sim.set_task_state(&old.id, TaskState::Failed);
        let new = slot_tasks(&sim)
            .into_iter()
            .find(|t| t.id != old.id)
            .unwrap();
        if delay > 0 {
            assert_eq!(new.desired_state, TaskState::Ready, "delay {delay}: waits");
            sim.advance(Duration::from_secs(delay) - Duration::from_millis(1));
            assert_eq!(sim.h.task(&new.id).unwrap().desired_state, TaskState::Ready);
            sim.advance(Duration::from_millis(1));
        }
        let t = sim.h.task(&new.id).unwrap();
        assert_eq!(
            t.desired_state,
            TaskState::Running,
            "delay {delay}: started"
        );
        assert_eq!(t.status.state, TaskState::Running);
    }
}

#[test]
fn default_delay_is_five_seconds() {
    let mut sim = one_replica(1, RestartPolicy::default());
    let old = the_running(&sim);
    sim.set_task_state(&old.id, TaskState::Failed);
    assert_eq!(
        sim.orch.next_deadline(),
        Some(sim.now() + Duration::from_secs(5))
    );
    sim.advance(Duration::from_secs(5));
    assert_ne!(the_running(&sim).id, old.id);
}

#[test]
fn max_attempts_table() {
    // (max_attempts, window s, seconds between failures, failures, restarts expected)
    let rows = [
        (0u64, 0u64, 1u64, 6usize, 6usize),
        (2, 0, 1, 5, 2),
        (3, 0, 1, 5, 3),
        (2, 10, 1, 5, 2),
        (2, 10, 20, 5, 5),
    ];
    for (max, window, gap, failures, expected) in rows {
        let mut sim = one_replica(1, policy(RestartCondition::Any, 0, max, window));
        let mut restarts = 0;
        for _ in 0..failures {
            let Some(t) = sim.running_tasks(&id(SVC)).first().cloned() else {
                break;
            };
            sim.advance(Duration::from_secs(gap));
            sim.set_task_state(&t.id, TaskState::Failed);
            if !sim.running_tasks(&id(SVC)).is_empty() {
                restarts += 1;
            }
        }
        assert_eq!(restarts, expected, "max {max} window {window} gap {gap}");
    }
}

#[test]
fn new_spec_version_resets_attempts() {
    let mut sim = one_replica(1, policy(RestartCondition::Any, 0, 1, 0));
    let t = the_running(&sim);
    sim.set_task_state(&t.id, TaskState::Failed);
    let t = the_running(&sim);
    sim.set_task_state(&t.id, TaskState::Failed);
    assert!(sim.running_tasks(&id(SVC)).is_empty(), "attempts used up");
    sim.update_spec(&id(SVC), |s| s.task.container.image = "v2".into());
    sim.advance(Duration::from_secs(10));
    let t = the_running(&sim);
    assert_eq!(t.spec.container.image, "v2");
    sim.set_task_state(&t.id, TaskState::Failed);
    assert_eq!(
        the_running(&sim).spec.container.image,
        "v2",
        "the new version may restart again"
    );
}

#[test]
fn drained_node_restarts_elsewhere_without_delay() {
    let mut sim = one_replica(2, RestartPolicy::default());
    let old = the_running(&sim);
    let from = old.node_id.unwrap();
    sim.update_node(&from, |n| n.spec.availability = NodeAvailability::Drain);
    let new = the_running(&sim);
    assert_ne!(new.node_id, Some(from));
    assert_eq!(
        sim.h.task(&old.id).unwrap().status.state,
        TaskState::Shutdown
    );
}

#[test]
fn replacement_waits_for_old_task_at_most_one_minute() {
    let mut sim = one_replica(2, RestartPolicy::default());
    let old = the_running(&sim);
    let from = old.node_id.unwrap();
    sim.frozen.insert(from);
    sim.update_node(&from, |n| n.spec.availability = NodeAvailability::Drain);
    let new = slot_tasks(&sim)
        .into_iter()
        .find(|t| t.id != old.id)
        .unwrap();
    assert_eq!(
        new.desired_state,
        TaskState::Ready,
        "old task still running: wait"
    );
    sim.advance(Duration::from_secs(59));
    assert_eq!(sim.h.task(&new.id).unwrap().desired_state, TaskState::Ready);
    sim.advance(Duration::from_secs(1));
    assert_eq!(
        sim.h.task(&new.id).unwrap().status.state,
        TaskState::Running,
        "gave up waiting"
    );
}

#[test]
fn replacement_starts_when_old_task_stops() {
    let mut sim = one_replica(2, RestartPolicy::default());
    let old = the_running(&sim);
    let from = old.node_id.unwrap();
    sim.frozen.insert(from);
    sim.update_node(&from, |n| n.spec.availability = NodeAvailability::Drain);
    sim.advance(Duration::from_secs(3));
    sim.unfreeze(&from);
    assert_eq!(
        sim.h.task(&old.id).unwrap().status.state,
        TaskState::Shutdown
    );
    assert_ne!(the_running(&sim).id, old.id);
}

#[test]
fn down_node_restarts_at_once() {
    let mut sim = one_replica(2, RestartPolicy::default());
    let old = the_running(&sim);
    sim.update_node(&old.node_id.unwrap(), |n| n.status.state = NodeState::Down);
    let new = the_running(&sim);
    assert_ne!(new.node_id, old.node_id);
    assert_eq!(
        sim.h.task(&old.id).unwrap().status.state,
        TaskState::Running,
        "nobody heard from it"
    );
}

fn with_retention(limit: i64, policy: RestartPolicy) -> Sim {
    let mut sim = Sim::new(3);
    let mut spec = ClusterSpec::default();
    spec.orchestration.task_history_retention_limit = limit;
    sim.create([Cluster {
        id: id(9),
        meta: Meta::default(),
        spec,
        root_ca: Default::default(),
        unlock_keys: Vec::new(),
        network_bootstrap: Default::default(),
    }]);
    sim.create([node(1)]);
    let mut s = service(SVC, 1);
    s.spec.task.restart = policy;
    sim.create([s]);
    sim
}

#[test]
fn history_retention_table() {
    // (retention limit, max_attempts, failures, tasks left in the slot)
    let rows = [
        (5i64, 0u64, 10usize, 5usize),
        (2, 0, 10, 2),
        (0, 0, 10, 1),
        (-1, 0, 10, 11),
        (1, 3, 2, 3),
        (1, 3, 10, 4),
    ];
    for (limit, max, failures, left) in rows {
        let mut sim = with_retention(limit, policy(RestartCondition::Any, 0, max, 0));
        for _ in 0..failures {
            let Some(t) = sim.running_tasks(&id(SVC)).first().cloned() else {
                break;
            };
            sim.advance(Duration::from_secs(1));
            sim.set_task_state(&t.id, TaskState::Failed);
        }
        sim.advance(Duration::from_secs(1));
        assert_eq!(
            sim.tasks_of(&id(SVC)).len(),
            left,
            "retention {limit}, max_attempts {max}"
        );
    }
}

#[test]
fn removed_task_ids_are_not_reused() {
    let mut sim = one_replica(1, policy(RestartCondition::Any, 0, 0, 0));
    let mut seen: Vec<Id> = Vec::new();
    for _ in 0..8 {
        let t = the_running(&sim);
        assert!(!seen.contains(&t.id));
        seen.push(t.id);
        sim.set_task_state(&t.id, TaskState::Failed);
    }
}
