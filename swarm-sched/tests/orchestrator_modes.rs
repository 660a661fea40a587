//! Service modes: replicated scaling, global placement, replicated and global jobs, and service
//! removal, driven through the orchestrator, the scheduler and simulated agents.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::node::NodeAvailability;
use swarm_core::objects::service::JobStatus;
use swarm_core::{Id, ServiceMode, StoreAction, Task, TaskState, Version};
use swarm_sched::orchestrator::sim::Sim;
use swarm_sched::testing::{id, labeled_node, node, service};

const SVC: u128 = 100;

fn slots(sim: &Sim) -> Vec<u64> {
    let mut v: Vec<u64> = sim.live_tasks(&id(SVC)).iter().map(|t| t.slot).collect();
    v.sort();
    v
}

#[test]
fn replicated_scale_table() {
    // (start replicas, new replicas, live slots after)
    let rows: [(u64, u64, &[u64]); 5] = [
        (0, 3, &[1, 2, 3]),
        (3, 5, &[1, 2, 3, 4, 5]),
        (5, 2, &[1, 2]),
        (4, 0, &[]),
        (2, 2, &[1, 2]),
    ];
    for (from, to, want) in rows {
        let mut sim = Sim::new(1);
        sim.create((1..=3).map(node));
        sim.create([service(SVC, from)]);
        sim.update_spec(&id(SVC), |s| {
            s.mode = ServiceMode::Replicated { replicas: to }
        });
        assert_eq!(slots(&sim), want, "{from} -> {to}");
        assert_eq!(sim.running_tasks(&id(SVC)).len(), want.len());
        // Removed tasks are stopped, then deleted by the reaper.
        assert!(sim
            .tasks_of(&id(SVC))
            .iter()
            .all(|t| t.desired_state != TaskState::Remove));
    }
}

/// A running task of the service in `slot` on node `n`, written straight to the store.
fn placed(slot: u64, n: u128, running: bool, k: u128) -> Task {
    let svc = service(SVC, 0);
    let mut t = swarm_sched::testing::task(&svc, slot, 1000 + k);
    t.node_id = Some(id(n));
    t.status.state = if running {
        TaskState::Running
    } else {
        TaskState::Starting
    };
    t
}

#[test]
fn scale_down_removes_from_busiest_nodes_and_non_running_first() {
    let mut sim = Sim::new(2);
    sim.create((1..=3).map(node));
    sim.create([service(SVC, 6)].map(|mut s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 0 };
        s
    }));
    // Node 1 runs slots 1,2,3; node 2 runs 4 and a not-yet-running 5; node 3 runs 6.
    let tasks = [
        placed(1, 1, true, 1),
        placed(2, 1, true, 2),
        placed(3, 1, true, 3),
        placed(4, 2, true, 4),
        placed(5, 2, false, 5),
        placed(6, 3, true, 6),
    ];
    sim.h.create(tasks);
    sim.update_service(&id(SVC), |s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 6 }
    });
    sim.frozen.extend([id(1), id(2), id(3)]);
    sim.update_spec(&id(SVC), |s| {
        s.mode = ServiceMode::Replicated { replicas: 3 }
    });
    let kept: Vec<(u64, Option<Id>)> = {
        let mut v: Vec<_> = sim
            .live_tasks(&id(SVC))
            .iter()
            .map(|t| (t.slot, t.node_id))
            .collect();
        v.sort();
        v
    };
    // One per node survives: slot 1 on node 1, slot 4 (running) on node 2, slot 6 on node 3.
    assert_eq!(
        kept,
        vec![(1, Some(id(1))), (4, Some(id(2))), (6, Some(id(3)))]
    );
}

#[test]
fn replicated_tasks_share_one_spec_allocation() {
    let mut sim = Sim::new(3);
    sim.create((1..=2).map(node));
    sim.create([service(SVC, 5)]);
    let tasks = sim.tasks_of(&id(SVC));
    assert!(tasks
        .windows(2)
        .all(|w| Arc::ptr_eq(&w[0].spec, &w[1].spec) || w[0].spec == w[1].spec));
}

fn global_service() -> swarm_core::Service {
    let mut s = service(SVC, 0);
    s.spec.mode = ServiceMode::Global;
    s
}

fn per_node(sim: &Sim) -> BTreeMap<Id, usize> {
    let mut m = BTreeMap::new();
    for t in sim.live_tasks(&id(SVC)) {
        *m.entry(t.node_id.unwrap()).or_insert(0) += 1;
    }
    m
}

#[test]
fn global_one_task_per_eligible_node() {
    let mut sim = Sim::new(4);
    sim.create([
        labeled_node(1, &[("gpu", "yes")]),
        labeled_node(2, &[]),
        labeled_node(3, &[("gpu", "yes")]),
    ]);
    let mut s = global_service();
    s.spec.task.placement.constraints = vec!["node.labels.gpu==yes".into()];
    sim.create([s]);
    assert_eq!(per_node(&sim), BTreeMap::from([(id(1), 1), (id(3), 1)]));
    // A node joins.
    sim.create([labeled_node(4, &[("gpu", "yes")])]);
    assert_eq!(per_node(&sim).len(), 3);
    // A label is added: the node becomes eligible.
    sim.update_node(&id(2), |n| {
        n.spec.annotations.labels.insert("gpu".into(), "yes".into());
    });
    assert_eq!(per_node(&sim).len(), 4);
    // A label is removed: the constraint enforcer rejects the task, nothing replaces it there.
    sim.update_node(&id(4), |n| {
        n.spec.annotations.labels.clear();
    });
    assert_eq!(per_node(&sim).get(&id(4)), None);
    // Drain shuts down; active again brings a new task.
    sim.update_node(&id(1), |n| n.spec.availability = NodeAvailability::Drain);
    assert_eq!(per_node(&sim).get(&id(1)), None);
    sim.update_node(&id(1), |n| n.spec.availability = NodeAvailability::Active);
    assert_eq!(per_node(&sim).get(&id(1)), Some(&1));
    // Pause keeps the task; a new service gets nothing there.
    sim.update_node(&id(3), |n| n.spec.availability = NodeAvailability::Pause);
    assert_eq!(per_node(&sim).get(&id(3)), Some(&1));
    // Removal of a node shuts its task down.
    let gone: Vec<Task> = sim
        .live_tasks(&id(SVC))
        .into_iter()
        .filter(|t| t.node_id == Some(id(2)))
        .collect();
    sim.apply(vec![StoreAction::Remove(swarm_core::ObjectRef {
        kind: swarm_core::ObjectKind::Node,
        id: id(2),
    })]);
    assert_eq!(
        sim.h.task(&gone[0].id).unwrap().desired_state,
        TaskState::Shutdown
    );
}

#[test]
fn global_failed_task_restarts_on_its_node() {
    let mut sim = Sim::new(5);
    sim.create((1..=2).map(node));
    let mut s = global_service();
    s.spec.task.restart.delay = Duration::ZERO;
    sim.create([s]);
    let t = sim.running_tasks(&id(SVC))[0].clone();
    sim.set_task_state(&t.id, TaskState::Failed);
    let on_node: Vec<Task> = sim
        .running_tasks(&id(SVC))
        .into_iter()
        .filter(|x| x.node_id == t.node_id)
        .collect();
    assert_eq!(on_node.len(), 1);
    assert_ne!(on_node[0].id, t.id);
}

fn job(max_concurrent: u64, total: u64) -> swarm_core::Service {
    let mut s = service(SVC, 0);
    s.spec.mode = ServiceMode::ReplicatedJob {
        max_concurrent,
        total_completions: total,
    };
    s.spec.task.restart.delay = Duration::ZERO;
    s.job_status = Some(JobStatus::default());
    s
}

#[test]
fn replicated_job_table() {
    // (max concurrent, total completions (0 = default), completed tasks, slots used)
    let rows: [(u64, u64, usize, &[u64]); 4] = [
        (2, 5, 5, &[0, 1, 2, 3, 4]),
        (3, 0, 3, &[0, 1, 2]),
        (10, 4, 4, &[0, 1, 2, 3]),
        (1, 3, 3, &[0, 1, 2]),
    ];
    for (max, total, done, used) in rows {
        let mut sim = Sim::new(6);
        sim.create((1..=3).map(node));
        sim.on_start(|_| Some(TaskState::Complete));
        let peak = std::rc::Rc::new(std::cell::RefCell::new(0usize));
        let p = peak.clone();
        sim.after_commit(move |store| {
            let live = store
                .tasks_by_service(&id(SVC))
                .filter(|t| {
                    t.desired_state <= TaskState::Running && t.status.state < TaskState::Complete
                })
                .count();
            let mut p = p.borrow_mut();
            *p = (*p).max(live);
        });
        sim.create([job(max, total)]);
        let tasks = sim.tasks_of(&id(SVC));
        let complete: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Complete)
            .collect();
        assert_eq!(complete.len(), done, "max {max} total {total}");
        let mut s: Vec<u64> = complete.iter().map(|t| t.slot).collect();
        s.sort();
        assert_eq!(s, used);
        assert!(
            *peak.borrow() <= max as usize,
            "never more than max_concurrent at once"
        );
    }
}

#[test]
fn job_failures_restart_but_completions_do_not() {
    let mut sim = Sim::new(7);
    sim.create((1..=2).map(node));
    let fails = std::rc::Rc::new(std::cell::RefCell::new(2));
    let f = fails.clone();
    sim.on_start(move |_| {
        let mut f = f.borrow_mut();
        if *f > 0 {
            *f -= 1;
            Some(TaskState::Failed)
        } else {
            Some(TaskState::Complete)
        }
    });
    sim.create([job(1, 2)]);
    let tasks = sim.tasks_of(&id(SVC));
    assert_eq!(
        tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Failed)
            .count(),
        2
    );
    assert_eq!(
        tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Complete)
            .count(),
        2
    );
    sim.advance(Duration::from_secs(60));
    assert_eq!(
        sim.tasks_of(&id(SVC)).len(),
        4,
        "nothing more once complete"
    );
}

#[test]
fn job_update_starts_new_iteration_and_removes_old_running_tasks() {
    let mut sim = Sim::new(8);
    sim.create((1..=2).map(node));
    sim.create([job(2, 4)]);
    let old: Vec<Task> = sim.running_tasks(&id(SVC));
    assert_eq!(old.len(), 2);
    sim.update_spec(&id(SVC), |s| s.task.container.image = "v2".into());
    assert_eq!(
        sim.service(&id(SVC)).job_status.unwrap().job_iteration,
        Version(1)
    );
    for t in &old {
        assert!(sim
            .h
            .task(&t.id)
            .is_none_or(|t| t.desired_state == TaskState::Remove));
    }
    let new = sim.running_tasks(&id(SVC));
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|t| t.job_iteration == Some(Version(1))));
}

#[test]
fn global_job_runs_once_per_ready_node() {
    let mut sim = Sim::new(9);
    sim.create((1..=3).map(node));
    sim.on_start(|_| Some(TaskState::Complete));
    let mut s = job(0, 0);
    s.spec.mode = ServiceMode::GlobalJob;
    sim.create([s]);
    let done = |sim: &Sim| {
        sim.tasks_of(&id(SVC))
            .iter()
            .filter(|t| t.status.state == TaskState::Complete)
            .count()
    };
    assert_eq!(done(&sim), 3);
    sim.create([node(4)]);
    assert_eq!(done(&sim), 4);
    sim.advance(Duration::from_secs(30));
    assert_eq!(sim.tasks_of(&id(SVC)).len(), 4);
}

#[test]
fn removed_service_tasks_are_stopped_and_deleted() {
    let mut sim = Sim::new(10);
    sim.create((1..=2).map(node));
    sim.create([service(SVC, 4)]);
    assert_eq!(sim.running_tasks(&id(SVC)).len(), 4);
    sim.apply(vec![StoreAction::Remove(swarm_core::ObjectRef {
        kind: swarm_core::ObjectKind::Service,
        id: id(SVC),
    })]);
    assert!(sim.tasks_of(&id(SVC)).is_empty());
}

#[test]
fn huge_replica_count_is_created_over_several_ticks() {
    let mut h = swarm_sched::testing::Harness::new();
    h.create([node(1)]);
    h.create([service(SVC, 45_000)]);
    let mut orch = swarm_sched::Orchestrator::new();
    let mut rng = swarm_sched::orchestrator::sim::SimRng::new(1);
    let mut sizes = Vec::new();
    for _ in 0..5 {
        for e in h.events() {
            orch.handle_event(&e);
        }
        let actions = orch.tick(&h.store, h.now, &mut rng);
        sizes.push(actions.len());
        h.commit(actions).unwrap();
    }
    assert_eq!(sizes, vec![20_000, 20_000, 5_000, 0, 0]);
}
