//! Rolling updates and rollbacks, as SEMANTICS.md "Rolling update" states them, driven through the
//! orchestrator, the scheduler and simulated agents on a virtual clock.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use swarm_core::objects::service::{
    FailureAction, RestartCondition, UpdateConfig, UpdateOrder, UpdateState,
};
use swarm_core::{Service, Store, Task, TaskState};
use swarm_sched::orchestrator::sim::Sim;
use swarm_sched::testing::{id, node, service};
use swarm_sched::RollbackError;

const SVC: u128 = 100;

fn cluster(nodes: u128, replicas: u64, update: UpdateConfig) -> Sim {
    let mut sim = Sim::new(11);
    sim.create((1..=nodes).map(node));
    let mut s = service(SVC, replicas);
    s.spec.task.container.image = "v1".into();
    s.spec.update = update;
    s.spec.task.restart.delay = Duration::ZERO;
    sim.create([s]);
    sim
}

fn image_counts(sim: &Sim) -> (usize, usize) {
    let live = sim.running_tasks(&id(SVC));
    let v1 = live
        .iter()
        .filter(|t| t.spec.container.image == "v1")
        .count();
    (v1, live.len() - v1)
}

fn status(sim: &Sim) -> Option<(UpdateState, String)> {
    sim.service(&id(SVC))
        .update_status
        .map(|u| (u.state, u.message))
}

fn to_v2(sim: &mut Sim) {
    sim.update_spec(&id(SVC), |s| s.task.container.image = "v2".into());
}

fn cfg(parallelism: u64, delay: u64, monitor: u64) -> UpdateConfig {
    UpdateConfig {
        parallelism,
        delay: Duration::from_secs(delay),
        monitor: Duration::from_secs(monitor),
        ..UpdateConfig::default()
    }
}

#[test]
fn parallelism_and_delay_table() {
    // (replicas, parallelism, delay s, v2 tasks after each `delay` step until done)
    let rows: [(u64, u64, u64, &[usize]); 5] = [
        (4, 1, 10, &[1, 2, 3, 4]),
        (4, 2, 10, &[2, 4]),
        (5, 2, 10, &[2, 4, 5]),
        (6, 0, 10, &[6]),
        (3, 5, 10, &[3]),
    ];
    for (replicas, parallelism, delay, steps) in rows {
        let mut sim = cluster(3, replicas, cfg(parallelism, delay, 5));
        to_v2(&mut sim);
        for (i, want) in steps.iter().enumerate() {
            assert_eq!(image_counts(&sim).1, *want, "p={parallelism} step {i}");
            assert_eq!(
                image_counts(&sim).0 + image_counts(&sim).1,
                replicas as usize
            );
            sim.advance(Duration::from_secs(delay));
        }
        assert_eq!(image_counts(&sim), (0, replicas as usize));
    }
}

#[test]
fn status_moves_updating_then_completed_after_monitor() {
    let mut sim = cluster(2, 2, cfg(1, 0, 5));
    assert_eq!(status(&sim), None);
    to_v2(&mut sim);
    assert_eq!(image_counts(&sim), (0, 2));
    let (state, msg) = status(&sim).unwrap();
    assert_eq!(
        (state, msg.as_str()),
        (UpdateState::Updating, "update in progress")
    );
    sim.advance(Duration::from_millis(4999));
    assert_eq!(
        status(&sim).unwrap().0,
        UpdateState::Updating,
        "still monitoring"
    );
    sim.advance(Duration::from_millis(1));
    let s = sim.service(&id(SVC)).update_status.unwrap();
    assert_eq!(
        (s.state, s.message.as_str()),
        (UpdateState::Completed, "update completed")
    );
    assert_eq!(s.completed_at, Some(sim.now()));
}

#[test]
fn delay_longer_than_monitor_extends_monitoring() {
    let mut sim = cluster(1, 1, cfg(1, 10, 5));
    to_v2(&mut sim);
    // The lane sleeps 10 s after the slot, then monitors delay + 1 s.
    sim.advance(Duration::from_secs(20));
    assert_eq!(status(&sim).unwrap().0, UpdateState::Updating);
    sim.advance(Duration::from_secs(1));
    assert_eq!(status(&sim).unwrap().0, UpdateState::Completed);
}

/// Records the most live tasks of the service ever seen after any commit.
fn watch_live(sim: &mut Sim) -> Rc<RefCell<usize>> {
    let max = Rc::new(RefCell::new(0));
    let m = max.clone();
    sim.after_commit(move |store: &Store| {
        let live = store
            .tasks_by_service(&id(SVC))
            .filter(|t| {
                t.desired_state <= TaskState::Running && t.status.state <= TaskState::Running
            })
            .count();
        let mut m = m.borrow_mut();
        *m = (*m).max(live);
    });
    max
}

#[test]
fn order_table() {
    // (order, parallelism, most live tasks allowed with 4 replicas)
    let rows = [
        (UpdateOrder::StopFirst, 1, 4),
        (UpdateOrder::StopFirst, 2, 4),
        (UpdateOrder::StartFirst, 1, 5),
        (UpdateOrder::StartFirst, 2, 6),
    ];
    for (order, parallelism, bound) in rows {
        let mut c = cfg(parallelism, 0, 0);
        c.order = order;
        let mut sim = cluster(4, 4, c);
        let max = watch_live(&mut sim);
        to_v2(&mut sim);
        assert_eq!(image_counts(&sim), (0, 4), "{order:?}");
        assert!(
            *max.borrow() <= bound,
            "{order:?} p{parallelism}: {} live",
            max.borrow()
        );
        if order == UpdateOrder::StartFirst {
            assert!(*max.borrow() > 4, "start-first overlaps old and new");
        }
    }
}

#[test]
fn start_first_replaces_tasks_that_never_reached_a_node_outright() {
    let mut c = cfg(2, 0, 0);
    c.order = UpdateOrder::StartFirst;
    // No node can take a task: the three replicas wait pending.
    let mut sim = Sim::new(11);
    sim.create((1..=2).map(|n| {
        let mut n = node(n);
        n.spec.availability = swarm_core::objects::node::NodeAvailability::Pause;
        n
    }));
    let mut s = service(SVC, 3);
    s.spec.task.container.image = "v1".into();
    s.spec.update = c;
    sim.create([s]);
    let live = |sim: &Sim| {
        let live = sim.live_tasks(&id(SVC));
        let v2 = live
            .iter()
            .filter(|t| t.spec.container.image == "v2")
            .count();
        (live.len(), v2)
    };
    sim.advance(Duration::from_secs(5));
    assert_eq!(live(&sim), (3, 0));
    to_v2(&mut sim);
    sim.advance(Duration::from_secs(30));
    // Nothing was serving, so nothing is kept up: the two lanes each replaced a pending task
    // (and wait, as SwarmKit's workers do, for their v2 task to run); no slot holds old and new.
    assert_eq!(live(&sim), (3, 2));
}

#[test]
fn start_first_keeps_a_running_task_while_its_replacement_cannot_be_placed() {
    let mut c = cfg(2, 0, 0);
    c.order = UpdateOrder::StartFirst;
    let mut sim = cluster(2, 3, c);
    for n in 1..=2 {
        sim.update_node(&id(n), |n| {
            n.spec.availability = swarm_core::objects::node::NodeAvailability::Pause
        });
    }
    to_v2(&mut sim);
    sim.advance(Duration::from_secs(30));
    // Two lanes each started a v2 task that waits for a node; the v1 tasks keep running.
    assert_eq!(image_counts(&sim), (3, 0));
    assert_eq!(sim.live_tasks(&id(SVC)).len(), 5);
}

/// The cluster simulation's seed 7 (docs/SIMULATION.md, session 11): while a start-first
/// update's replacement waits, the slot's old task fails; its restart must not add a second task
/// of the new spec to the slot (both would run once placed).
#[test]
fn an_old_task_failing_during_a_start_first_update_is_not_replaced_twice() {
    let mut c = cfg(1, 0, 0);
    c.order = UpdateOrder::StartFirst;
    let mut sim = cluster(2, 1, c);
    let pause = |sim: &mut Sim, availability| {
        for n in 1..=2 {
            sim.update_node(&id(n), |n| n.spec.availability = availability);
        }
    };
    pause(&mut sim, swarm_core::objects::node::NodeAvailability::Pause);
    to_v2(&mut sim);
    sim.advance(Duration::from_secs(5));
    assert_eq!(sim.live_tasks(&id(SVC)).len(), 2, "v1 runs, v2 waits");
    let old = sim.running_tasks(&id(SVC))[0].id;
    sim.set_task_state(&old, TaskState::Failed);
    sim.advance(Duration::from_secs(30));
    let v2_meant_to_run = |sim: &Sim| {
        sim.live_tasks(&id(SVC))
            .iter()
            .filter(|t| t.spec.container.image == "v2" && t.slot == 1)
            .count()
    };
    assert_eq!(v2_meant_to_run(&sim), 1, "{:?}", sim.live_tasks(&id(SVC)));
    pause(
        &mut sim,
        swarm_core::objects::node::NodeAvailability::Active,
    );
    sim.advance(Duration::from_secs(30));
    assert_eq!(image_counts(&sim), (0, 1));
    assert_eq!(v2_meant_to_run(&sim), 1);
}

/// Defect 12 of the simulation, step by step: a start-first update's replacement fails, which
/// pauses the update while the slot's old task keeps serving; the restart supervisor replaces the
/// failed task from the current spec and that replacement runs. The slot then holds the old task
/// and the new one, both running: the old one must be shut down although the update is paused
/// (SwarmKit leaves both running until the next service update).
#[test]
fn a_paused_start_first_update_does_not_keep_the_old_task_beside_a_restarted_replacement() {
    let mut c = cfg(1, 0, 5);
    c.order = UpdateOrder::StartFirst;
    let mut sim = cluster(2, 2, c);
    sim.update_service(&id(SVC), |s| {
        s.spec.task.restart.delay = Duration::from_secs(5)
    });
    // The first v2 task fails as it starts; every later one runs.
    let failed = Rc::new(RefCell::new(false));
    let seen = failed.clone();
    sim.on_start(move |t: &Task| {
        let first = t.spec.container.image == "v2" && !seen.replace(true);
        first.then_some(TaskState::Failed)
    });
    to_v2(&mut sim);
    sim.advance(Duration::from_secs(1));
    assert!(*failed.borrow(), "the first v2 task failed");
    assert_eq!(status(&sim).map(|s| s.0), Some(UpdateState::Paused));
    // Step: the restart's replacement is created and waits for its delay; v1 keeps both slots.
    assert_eq!(image_counts(&sim), (2, 0));
    // Step: the delay passes, the replacement runs, and its slot keeps only it.
    sim.advance(Duration::from_secs(10));
    assert_eq!(status(&sim).map(|s| s.0), Some(UpdateState::Paused));
    assert_eq!(image_counts(&sim), (1, 1), "{:?}", sim.live_tasks(&id(SVC)));
    assert_eq!(
        sim.live_tasks(&id(SVC)).len(),
        2,
        "one task meant to run per slot"
    );
    // The other slot is left as the paused update found it: no new task.
    sim.advance(Duration::from_secs(60));
    assert_eq!(image_counts(&sim), (1, 1));
    assert_eq!(status(&sim).map(|s| s.0), Some(UpdateState::Paused));
}

fn failing_v2(sim: &mut Sim) {
    sim.on_start(|t: &Task| (t.spec.container.image == "v2").then_some(TaskState::Failed));
}

#[test]
fn failure_action_table() {
    // (failure action, max failure ratio, final state, v1 tasks left running)
    let rows = [
        (FailureAction::Pause, 0.0, Some(UpdateState::Paused), 3),
        (
            FailureAction::Continue,
            0.0,
            Some(UpdateState::Completed),
            0,
        ),
        (
            FailureAction::Rollback,
            0.0,
            Some(UpdateState::RollbackCompleted),
            4,
        ),
        (FailureAction::Pause, 0.5, Some(UpdateState::Paused), 1),
    ];
    for (action, ratio, want, v1_left) in rows {
        let mut c = cfg(1, 0, 5);
        c.failure_action = action;
        c.max_failure_ratio = ratio;
        let mut sim = cluster(2, 4, c);
        sim.update_service(&id(SVC), |s| {
            s.spec.task.restart.condition = RestartCondition::None
        });
        failing_v2(&mut sim);
        to_v2(&mut sim);
        sim.advance(Duration::from_secs(30));
        assert_eq!(status(&sim).map(|s| s.0), want, "{action:?} ratio {ratio}");
        assert_eq!(image_counts(&sim).0, v1_left, "{action:?} ratio {ratio}");
    }
}

#[test]
fn pause_message_names_the_task_and_waits_for_next_update() {
    let mut sim = cluster(2, 3, cfg(1, 0, 5));
    sim.update_service(&id(SVC), |s| {
        s.spec.task.restart.delay = Duration::from_secs(5)
    });
    failing_v2(&mut sim);
    to_v2(&mut sim);
    let (state, msg) = status(&sim).unwrap();
    assert_eq!(state, UpdateState::Paused);
    let failed: Vec<Task> = sim
        .tasks_of(&id(SVC))
        .into_iter()
        .filter(|t| t.status.state == TaskState::Failed)
        .collect();
    assert_eq!(
        msg,
        format!(
            "update paused due to failure or early termination of task {}",
            failed[0].id
        )
    );
    sim.advance(Duration::from_secs(120));
    assert_eq!(
        status(&sim).unwrap().0,
        UpdateState::Paused,
        "resumes only with the next update"
    );
    assert_eq!(image_counts(&sim).0, 2);
    sim.on_start(|_| None);
    sim.update_spec(&id(SVC), |s| s.task.container.image = "v3".into());
    sim.advance(Duration::from_secs(10));
    assert_eq!(status(&sim).unwrap().0, UpdateState::Completed);
    assert!(sim
        .running_tasks(&id(SVC))
        .iter()
        .all(|t| t.spec.container.image == "v3"));
}

#[test]
fn automatic_rollback_restores_previous_spec() {
    let mut c = cfg(1, 0, 5);
    c.failure_action = FailureAction::Rollback;
    let mut sim = cluster(2, 3, c);
    failing_v2(&mut sim);
    to_v2(&mut sim);
    let s = sim.service(&id(SVC));
    let u = s.update_status.clone().unwrap();
    assert_eq!(u.state, UpdateState::RollbackStarted);
    assert!(u
        .message
        .starts_with("update rolled back due to failure or early termination of task "));
    assert_eq!(s.spec.task.container.image, "v1");
    assert_eq!(s.previous_spec, None, "previous spec cleared");
    sim.advance(Duration::from_secs(10));
    let (state, msg) = status(&sim).unwrap();
    assert_eq!(
        (state, msg.as_str()),
        (UpdateState::RollbackCompleted, "rollback completed")
    );
    assert_eq!(image_counts(&sim), (3, 0));
}

#[test]
fn failing_rollback_pauses_and_never_rolls_back_again() {
    // (rollback config's failure action, message prefix)
    let rows = [
        (
            FailureAction::Pause,
            "update paused due to failure or early termination of task ",
        ),
        (
            FailureAction::Rollback,
            "rollback paused due to failure or early termination of task ",
        ),
    ];
    for (rb_action, prefix) in rows {
        let mut c = cfg(1, 0, 5);
        c.failure_action = FailureAction::Rollback;
        c.max_failure_ratio = 0.4;
        let mut sim = cluster(2, 3, c);
        sim.update_service(&id(SVC), |s| {
            s.spec.rollback.failure_action = rb_action;
            s.spec.task.restart.condition = RestartCondition::None;
        });
        sim.advance(Duration::from_secs(1));
        let started = sim.now();
        // The first v2 task runs, later ones fail; v1 tasks made after the update began fail too.
        let v2_starts = Rc::new(RefCell::new(0));
        let n = v2_starts.clone();
        sim.on_start(move |t: &Task| match t.spec.container.image.as_str() {
            "v2" => {
                *n.borrow_mut() += 1;
                (*n.borrow() > 1).then_some(TaskState::Failed)
            }
            _ => (t.meta.created_at >= started).then_some(TaskState::Failed),
        });
        to_v2(&mut sim);
        sim.advance(Duration::from_secs(30));
        let (state, msg) = status(&sim).unwrap();
        assert_eq!(state, UpdateState::RollbackPaused, "{rb_action:?}: {msg}");
        assert!(msg.starts_with(prefix), "{rb_action:?}: {msg}");
        assert_eq!(sim.service(&id(SVC)).spec.task.container.image, "v1");
    }
}

#[test]
fn manual_rollback_swaps_specs() {
    let mut sim = cluster(2, 2, cfg(0, 0, 1));
    assert!(matches!(
        sim.rollback(&id(SVC)),
        Err(RollbackError::NoPreviousSpec { .. })
    ));
    to_v2(&mut sim);
    sim.advance(Duration::from_secs(2));
    sim.rollback(&id(SVC)).unwrap();
    let s: Service = sim.service(&id(SVC));
    let u = s.update_status.clone().unwrap();
    assert_eq!(
        (u.state, u.message.as_str()),
        (UpdateState::RollbackStarted, "manually requested rollback")
    );
    assert_eq!(s.previous_spec.as_ref().unwrap().task.container.image, "v2");
    sim.advance(Duration::from_secs(5));
    assert_eq!(
        status(&sim).unwrap().0,
        UpdateState::RollbackCompleted,
        "rollback config: monitor 5 s"
    );
    assert_eq!(image_counts(&sim), (2, 0));
}

#[test]
fn new_spec_cancels_update_in_progress() {
    let mut sim = cluster(2, 4, cfg(1, 10, 1));
    to_v2(&mut sim);
    assert_eq!(image_counts(&sim), (3, 1));
    sim.update_spec(&id(SVC), |s| s.task.container.image = "v3".into());
    sim.advance(Duration::from_secs(60));
    let live = sim.running_tasks(&id(SVC));
    assert_eq!(live.len(), 4);
    assert!(
        live.iter().all(|t| t.spec.container.image == "v3"),
        "{live:?}"
    );
    assert_eq!(status(&sim).unwrap().0, UpdateState::Completed);
}

#[test]
fn dirty_rules_table() {
    use swarm_core::ServiceSpec;
    type Change = fn(&mut ServiceSpec);
    // (change, tasks replaced out of 4 spread over 2 nodes labelled a/b)
    let rows: [(&str, Change, usize); 5] = [
        ("no change", |_| {}, 0),
        ("force update", |s| s.task.force_update += 1, 4),
        ("image", |s| s.task.container.image = "v2".into(), 4),
        (
            "placement matching every node",
            |s| s.task.placement.constraints = vec!["node.labels.zone!=c".into()],
            0,
        ),
        (
            "placement matching one node",
            |s| s.task.placement.constraints = vec!["node.labels.zone==a".into()],
            2,
        ),
    ];
    for (name, change, replaced) in rows {
        let mut sim = Sim::new(5);
        sim.create([
            swarm_sched::testing::labeled_node(1, &[("zone", "a")]),
            swarm_sched::testing::labeled_node(2, &[("zone", "b")]),
        ]);
        let mut s = service(SVC, 4);
        s.spec.update = cfg(0, 0, 1);
        sim.create([s]);
        let before: Vec<_> = sim
            .running_tasks(&id(SVC))
            .into_iter()
            .map(|t| t.id)
            .collect();
        sim.update_spec(&id(SVC), change);
        sim.advance(Duration::from_secs(5));
        let after = sim.running_tasks(&id(SVC));
        assert_eq!(after.len(), 4, "{name}");
        let kept = after.iter().filter(|t| before.contains(&t.id)).count();
        assert_eq!(4 - kept, replaced, "{name}");
    }
}

#[test]
fn failure_after_monitor_window_does_not_count() {
    let mut sim = cluster(2, 2, cfg(1, 30, 5));
    to_v2(&mut sim);
    let first = sim
        .running_tasks(&id(SVC))
        .into_iter()
        .find(|t| t.spec.container.image == "v2")
        .unwrap();
    sim.advance(Duration::from_secs(6));
    sim.set_task_state(&first.id, TaskState::Failed);
    assert_eq!(
        status(&sim).unwrap().0,
        UpdateState::Updating,
        "outside the monitor window"
    );
    sim.advance(Duration::from_secs(120));
    assert_eq!(status(&sim).unwrap().0, UpdateState::Completed);
}

#[test]
fn failure_inside_monitor_window_counts() {
    let mut sim = cluster(2, 2, cfg(1, 30, 5));
    to_v2(&mut sim);
    let first = sim
        .running_tasks(&id(SVC))
        .into_iter()
        .find(|t| t.spec.container.image == "v2")
        .unwrap();
    sim.advance(Duration::from_secs(4));
    sim.set_task_state(&first.id, TaskState::Failed);
    assert_eq!(status(&sim).unwrap().0, UpdateState::Paused);
}

#[test]
fn global_service_rolls_node_by_node() {
    let mut sim = Sim::new(9);
    sim.create((1..=3).map(node));
    let mut s = service(SVC, 0);
    s.spec.mode = swarm_core::ServiceMode::Global;
    s.spec.task.container.image = "v1".into();
    s.spec.update = cfg(1, 10, 1);
    sim.create([s]);
    assert_eq!(sim.running_tasks(&id(SVC)).len(), 3);
    to_v2(&mut sim);
    assert_eq!(image_counts(&sim), (2, 1));
    sim.advance(Duration::from_secs(10));
    assert_eq!(image_counts(&sim), (1, 2));
    sim.advance(Duration::from_secs(10));
    assert_eq!(image_counts(&sim), (0, 3));
    // Last slot at +20 s, its lane sleeps until +30 s, then monitors delay + 1 s.
    sim.advance(Duration::from_secs(21));
    assert_eq!(status(&sim).unwrap().0, UpdateState::Completed);
}
