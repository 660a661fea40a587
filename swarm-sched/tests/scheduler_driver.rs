//! The scheduler as a state machine over time: retries, ranking by existing load, failure
//! penalties, pre-assigned (global) tasks, rejected proposals, resets. Each test drives the
//! `Scheduler` through a real `Store` on a virtual clock (`Harness`); nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::node::NodeAvailability;
use swarm_core::{Event, Id, Node, Object, Service, StoreAction, Task, TaskState};
use swarm_sched::scheduler::{ASSIGNED_MESSAGE, CONFIRMED_MESSAGE};
use swarm_sched::testing::{id, labeled_node, node, service, task, tasks, Harness};
use swarm_sched::Scheduler;

fn started(h: &mut Harness) -> Scheduler {
    let mut s = Scheduler::new();
    s.handle_reset(&h.store);
    h.events();
    s
}

fn update<T: Clone + Into<Object>>(h: &mut Harness, obj: &Arc<T>, f: impl FnOnce(&mut T)) {
    let mut o = (**obj).clone();
    f(&mut o);
    h.commit(vec![StoreAction::Update(o.into())])
        .unwrap_or_else(|(_, e)| panic!("update refused: {e}"));
}

fn get_task(h: &Harness, n: u128) -> Arc<Task> {
    h.task(&id(n)).expect("task exists")
}

fn get_node(h: &Harness, n: u128) -> Arc<Node> {
    h.store.get::<Node>(&id(n)).cloned().expect("node exists")
}

/// A task of `svc` already running on node `on`.
fn running(svc: &Service, n: u128, on: u128) -> Task {
    let mut t = task(svc, 1, n);
    t.node_id = Some(id(on));
    t.status.state = TaskState::Running;
    t
}

#[test]
fn unschedulable_tasks_wait_without_busy_looping() {
    let mut h = Harness::new();
    let svc = service(100, 1);
    h.create([svc.clone()]);
    let mut s = started(&mut h);
    h.create([task(&svc, 1, 1)]);
    assert_eq!(
        h.settle(&mut s),
        1,
        "one status write: new -> pending with a reason"
    );
    let t = get_task(&h, 1);
    assert_eq!(t.status.state, TaskState::Pending);
    assert_eq!(t.status.err, "no suitable node");
    let version = t.meta.version;

    // Time passes, polls happen: nothing is rewritten.
    for _ in 0..5 {
        h.advance(Duration::from_secs(60));
        assert!(!s.has_work());
        assert!(s.poll_actions(h.now).is_empty());
    }
    assert_eq!(get_task(&h, 1).meta.version, version);

    // A node appears: the task is placed at once.
    h.create([node(1)]);
    assert!(h.settle(&mut s) > 0);
    let t = get_task(&h, 1);
    assert_eq!(t.node_id, Some(id(1)));
    assert_eq!(t.status.state, TaskState::Assigned);
    assert_eq!(t.status.message, ASSIGNED_MESSAGE);
    assert_eq!(t.status.err, "");
}

#[test]
fn retried_when_a_task_leaves_its_node() {
    let mut h = Harness::new();
    let mut svc = service(100, 2);
    svc.spec.task.placement.max_replicas = 1;
    h.create([node(1)]);
    h.create([svc.clone()]);
    let mut s = started(&mut h);
    h.create(tasks(&svc, 1, 2));
    h.settle(&mut s);
    assert_eq!(get_task(&h, 1).node_id, Some(id(1)));
    assert_eq!(
        get_task(&h, 2).status.err,
        "no suitable node (max replicas per node limit exceed)"
    );

    let t1 = get_task(&h, 1);
    update(&mut h, &t1, |t| t.status.state = TaskState::Failed);
    h.settle(&mut s);
    assert_eq!(get_task(&h, 2).node_id, Some(id(1)));
}

#[test]
fn retried_when_a_node_becomes_active() {
    let mut h = Harness::new();
    let mut n = node(1);
    n.spec.availability = NodeAvailability::Drain;
    h.create([n]);
    let svc = service(100, 1);
    h.create([svc.clone()]);
    let mut s = started(&mut h);
    h.create([task(&svc, 1, 1)]);
    h.settle(&mut s);
    assert_eq!(
        get_task(&h, 1).status.err,
        "no suitable node (1 node not available for new tasks)"
    );
    let n = get_node(&h, 1);
    update(&mut h, &n, |n| {
        n.spec.availability = NodeAvailability::Active
    });
    h.settle(&mut s);
    assert_eq!(get_task(&h, 1).node_id, Some(id(1)));
}

#[test]
fn existing_load_steers_placement() {
    let mut h = Harness::new();
    h.create((1..=3).map(node));
    let other = service(200, 1);
    let svc = service(100, 1);
    h.create([other.clone(), svc.clone()]);
    // Node 1 runs two tasks of another service, node 2 one task of this service.
    h.create([
        running(&other, 50, 1),
        running(&other, 51, 1),
        running(&svc, 52, 2),
    ]);
    let mut s = started(&mut h);
    h.create(tasks(&svc, 1, 2));
    h.settle(&mut s);
    // Fewest tasks of this service first (1 and 3 have none), then fewest in total (3 has none).
    assert_eq!(get_task(&h, 1).node_id, Some(id(3)));
    assert_eq!(get_task(&h, 2).node_id, Some(id(1)));
}

#[test]
fn spread_counts_existing_tasks() {
    let mut h = Harness::new();
    h.create([
        labeled_node(1, &[("rack", "a")]),
        labeled_node(2, &[("rack", "b")]),
    ]);
    let mut svc = service(100, 4);
    svc.spec.task.placement.preferences = vec!["node.labels.rack".into()];
    h.create([svc.clone()]);
    h.create([running(&svc, 50, 1), running(&svc, 51, 1)]);
    let mut s = started(&mut h);
    h.create(tasks(&svc, 1, 2));
    h.settle(&mut s);
    assert_eq!(get_task(&h, 1).node_id, Some(id(2)));
    assert_eq!(get_task(&h, 2).node_id, Some(id(2)));
}

#[test]
fn a_node_where_the_service_keeps_failing_ranks_last() {
    let mut h = Harness::new();
    h.create([node(1), node(2)]);
    let other = service(200, 1);
    let svc = service(100, 1);
    h.create([other.clone(), svc.clone()]);
    // Node 2 is busier, so node 1 would normally win.
    h.create([running(&other, 50, 2)]);
    let mut s = started(&mut h);
    // Five tasks of this service version fail on node 1.
    for n in 60..65 {
        h.create([running(&svc, n, 1)]);
        let t = get_task(&h, n);
        update(&mut h, &t, |t| t.status.state = TaskState::Failed);
    }
    h.settle(&mut s);
    h.create([task(&svc, 1, 1)]);
    h.settle(&mut s);
    assert_eq!(get_task(&h, 1).node_id, Some(id(2)), "node 1 is penalised");

    // Five minutes later the failures have expired.
    h.advance(Duration::from_secs(301));
    h.create([task(&svc, 2, 2)]);
    h.settle(&mut s);
    assert_eq!(get_task(&h, 2).node_id, Some(id(1)));
}

#[test]
fn preassigned_tasks_are_checked_not_moved() {
    let mut h = Harness::new();
    let mut paused = node(2);
    paused.spec.availability = NodeAvailability::Pause;
    h.create([node(1), paused]);
    let mut svc = service(100, 0);
    svc.spec.mode = swarm_core::ServiceMode::Global;
    svc.spec.task.placement.preferences = vec!["node.labels.rack".into()];
    h.create([svc.clone()]);
    let mut s = started(&mut h);
    let mut a = task(&svc, 0, 1);
    a.node_id = Some(id(1));
    let mut b = task(&svc, 0, 2);
    b.node_id = Some(id(2));
    h.create([a, b]);
    h.settle(&mut s);
    let a = get_task(&h, 1);
    assert_eq!(
        (a.node_id, a.status.state),
        (Some(id(1)), TaskState::Assigned)
    );
    assert_eq!(a.status.message, CONFIRMED_MESSAGE);
    let b = get_task(&h, 2);
    assert_eq!(
        (b.node_id, b.status.state),
        (Some(id(2)), TaskState::Pending)
    );
    assert_eq!(
        b.status.err,
        "no suitable node (1 node not available for new tasks)"
    );
    assert!(
        s.poll_actions(h.now).is_empty(),
        "no rewrite while nothing changes"
    );

    let n2 = get_node(&h, 2);
    update(&mut h, &n2, |n| {
        n.spec.availability = NodeAvailability::Active
    });
    h.settle(&mut s);
    let b = get_task(&h, 2);
    assert_eq!(
        (b.node_id, b.status.state),
        (Some(id(2)), TaskState::Assigned)
    );
}

#[test]
fn a_rejected_proposal_is_retried_without_double_counting() {
    let mut h = Harness::new();
    let mut svc = service(100, 3);
    svc.spec.task.placement.max_replicas = 1;
    h.create([node(1), node(2), node(3)]);
    h.create([svc.clone()]);
    let mut s = started(&mut h);
    h.create(tasks(&svc, 1, 3));
    for e in h.events() {
        s.handle_event(&e);
    }
    let actions = s.poll_actions(h.now);
    assert_eq!(actions.len(), 3);
    // Someone else writes task 2 first: the scheduler's batch now conflicts.
    let t2 = get_task(&h, 2);
    update(&mut h, &t2, |t| t.status.message = "touched".into());
    let (rejected, _) = h.commit(actions).expect_err("version conflict");
    s.handle_rejected(&h.store, &rejected);
    h.settle(&mut s);
    let nodes: Vec<Option<Id>> = (1..=3).map(|n| get_task(&h, n).node_id).collect();
    assert!(nodes.iter().all(Option::is_some), "{nodes:?}");
    let load = h.load();
    assert_eq!(load.len(), 3, "one per node (max replicas 1): {load:?}");
}

#[test]
fn tasks_not_wanted_anymore_are_left_alone() {
    let mut h = Harness::new();
    h.create([node(1)]);
    let svc = service(100, 1);
    h.create([svc.clone()]);
    let mut s = started(&mut h);
    let mut t = task(&svc, 1, 1);
    t.desired_state = TaskState::Shutdown;
    h.create([t]);
    assert_eq!(h.settle(&mut s), 0);
    assert_eq!(get_task(&h, 1).node_id, None);
}

#[test]
fn reset_marker_stops_output_until_handle_reset() {
    let mut h = Harness::new();
    h.create([node(1)]);
    let svc = service(100, 1);
    h.create([svc.clone()]);
    let mut s = started(&mut h);
    h.create([task(&svc, 1, 1)]);
    for e in h.events() {
        s.handle_event(&e);
    }
    s.handle_event(&Event::Reset {
        index: h.store.index(),
    });
    assert!(s.needs_reset());
    assert!(s.poll_actions(h.now).is_empty());
    s.handle_reset(&h.store);
    assert!(!s.needs_reset());
    h.settle(&mut s);
    assert_eq!(get_task(&h, 1).node_id, Some(id(1)));
}

#[test]
fn a_reset_scheduler_decides_like_an_incremental_one() {
    // Build some history incrementally, then compare the next decisions of the long-lived
    // scheduler with those of one rebuilt from the store.
    let mut h = Harness::new();
    h.create((1..=5).map(node));
    let svcs: Vec<Service> = (0..3).map(|i| service(100 + i, 4)).collect();
    h.create(svcs.clone());
    let mut s = started(&mut h);
    for (i, svc) in svcs.iter().enumerate() {
        h.create(tasks(svc, 1000 * (i as u128 + 1), 3));
        h.settle(&mut s);
    }
    let t = get_task(&h, 1000);
    update(&mut h, &t, |t| t.status.state = TaskState::Complete);
    for e in h.events() {
        s.handle_event(&e);
    }
    let mut fresh = Scheduler::new();
    fresh.handle_reset(&h.store);
    h.create(tasks(&svcs[0], 9000, 4));
    let events = h.events();
    for e in &events {
        s.handle_event(e);
        fresh.handle_event(e);
    }
    let a = s.poll_actions(h.now);
    let b = fresh.poll_actions(h.now);
    assert_eq!(a.len(), 4);
    assert_eq!(a, b);
}

#[test]
fn a_node_can_leave_and_come_back() {
    let mut h = Harness::new();
    h.create([node(1), node(2)]);
    let mut svc = service(100, 2);
    svc.spec.task.placement.max_replicas = 1;
    h.create([svc.clone()]);
    let mut s = started(&mut h);
    h.create(tasks(&svc, 1, 1));
    h.settle(&mut s);
    assert_eq!(get_task(&h, 1).node_id, Some(id(1)));
    h.commit(vec![StoreAction::Remove(swarm_core::ObjectRef {
        kind: swarm_core::ObjectKind::Node,
        id: id(1),
    })])
    .unwrap_or_else(|(_, e)| panic!("{e}"));
    h.settle(&mut s);
    h.create([node(1)]);
    // Node 1 is back with its task: max replicas keeps the next task off it.
    h.create([task(&svc, 2, 2)]);
    h.settle(&mut s);
    assert_eq!(get_task(&h, 2).node_id, Some(id(2)));
    assert_eq!(s.stats().nodes, 2);
}
