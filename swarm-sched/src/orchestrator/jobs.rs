//! Jobs: run to completion, replicated (`max_concurrent` at a time until `total_completions` tasks
//! completed, in slots 0..total) or global (once on every eligible node).
//!
//! Only tasks of the service's current job iteration count. Updating a job starts a new iteration
//! (see [`crate::update::apply_service_update`]); tasks of older iterations that still run get
//! desired state `remove`. Completed tasks count towards the total and are never restarted; failed
//! ones go to the restart supervisor. Ours: a slot (or node) whose latest task failed and may not be
//! restarted (condition `none`, attempts used up) stays taken, so the restart policy holds; SwarmKit
//! would start a fresh task there on the next reconciliation.
//!
//! Ours: job tasks are created with desired state `running`, like every other task, rather than
//! SwarmKit's `complete`; a job task that exits 0 reaches `complete` and stays there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use swarm_core::objects::node::{NodeAvailability, NodeState};
use swarm_core::{Node, Service, ServiceMode, Task, TaskState, Version};

use super::context::{constraints_of, creation_key, node_matches, node_unavailable, Ctx};
use crate::restart::{should_restart, RestartReason, RestartSupervisor};

fn iteration(service: &Service) -> Version {
    service
        .job_status
        .as_ref()
        .map(|j| j.job_iteration)
        .unwrap_or_default()
}

/// Sorts a job's tasks: old iterations to remove, failed current tasks to restart, and the current
/// tasks grouped by slot key (slot number or node).
struct JobTasks<K> {
    current: BTreeMap<K, Vec<Arc<Task>>>,
    restart: Vec<Arc<Task>>,
    remove: Vec<Arc<Task>>,
}

fn split<K: Ord>(
    service: &Service,
    tasks: Vec<Arc<Task>>,
    key: impl Fn(&Task) -> Option<K>,
) -> JobTasks<K> {
    let it = iteration(service);
    let mut out = JobTasks {
        current: BTreeMap::new(),
        restart: Vec::new(),
        remove: Vec::new(),
    };
    for t in tasks {
        match t.job_iteration {
            Some(i) if i == it => {
                if t.desired_state <= TaskState::Running && t.status.state > TaskState::Complete {
                    out.restart.push(t.clone());
                }
                if let Some(k) = key(&t) {
                    out.current.entry(k).or_default().push(t);
                }
            }
            Some(_)
                if t.desired_state <= TaskState::Running
                    && t.status.state <= TaskState::Running =>
            {
                out.remove.push(t);
            }
            Some(_) => {}
            None => {}
        }
    }
    out
}

/// Whether a slot's current-iteration tasks keep it taken: one is complete or still wanted, or the
/// newest failed for good.
fn taken(cx: &Ctx<'_, '_>, service: &Service, tasks: &[Arc<Task>]) -> (bool, bool) {
    let complete = tasks.iter().any(|t| t.status.state == TaskState::Complete);
    if complete {
        return (true, true);
    }
    if tasks.iter().any(|t| t.desired_state <= TaskState::Running) {
        return (true, false);
    }
    let dead_for_good = tasks
        .iter()
        .max_by_key(|t| creation_key(t))
        .is_some_and(|newest| !should_restart(cx, newest, service));
    (dead_for_good, false)
}

fn finish(
    cx: &mut Ctx<'_, '_>,
    restarts: &mut RestartSupervisor,
    service: &Service,
    jt_restart: Vec<Arc<Task>>,
    jt_remove: Vec<Arc<Task>>,
) {
    for t in jt_restart {
        restarts.restart(cx, service, &t, RestartReason::Exited);
    }
    for t in jt_remove {
        cx.set_desired(&t, TaskState::Remove);
    }
}

/// Reconciles a replicated job. Returns true when this tick's budget
/// ([`super::MAX_NEW_TASKS_PER_TICK`]) ran out and more tasks are wanted.
pub(crate) fn reconcile_replicated(
    cx: &mut Ctx<'_, '_>,
    restarts: &mut RestartSupervisor,
    service: &Service,
) -> bool {
    let ServiceMode::ReplicatedJob {
        max_concurrent,
        total_completions,
    } = service.spec.mode
    else {
        return false;
    };
    let total = if total_completions == 0 {
        max_concurrent
    } else {
        total_completions
    };
    let jt = split(service, cx.service_tasks(&service.id), |t| Some(t.slot));
    let mut occupied: BTreeSet<u64> = BTreeSet::new();
    let (mut running, mut complete) = (0u64, 0u64);
    for (slot, tasks) in &jt.current {
        let (is_taken, is_complete) = taken(cx, service, tasks);
        if is_taken {
            occupied.insert(*slot);
            if is_complete {
                complete += 1;
            } else {
                running += 1;
            }
        }
    }
    let wanted = max_concurrent
        .saturating_sub(running)
        .min(total.saturating_sub(complete).saturating_sub(running));
    let new = cx.take_new_task_budget(wanted);
    let mut made = 0u64;
    let mut slot = 0u64;
    while made < new && slot < total {
        if !occupied.contains(&slot) {
            cx.create_task(service, slot, None, TaskState::Running);
            made += 1;
        }
        slot += 1;
    }
    finish(cx, restarts, service, jt.restart, jt.remove);
    wanted > new
}

/// Reconciles a global job.
pub(crate) fn reconcile_global(
    cx: &mut Ctx<'_, '_>,
    restarts: &mut RestartSupervisor,
    service: &Service,
) {
    let jt = split(service, cx.service_tasks(&service.id), |t| t.node_id);
    let constraints = constraints_of(&service.spec.task);
    let nodes: Vec<Arc<Node>> = cx.store().iter::<Node>().cloned().collect();
    for node in &nodes {
        if !node_matches(&constraints, node) {
            continue;
        }
        let tasks = jt.current.get(&node.id).map(Vec::as_slice).unwrap_or(&[]);
        if node_unavailable(Some(node)) {
            for t in tasks {
                if t.desired_state <= TaskState::Running && t.status.state <= TaskState::Running {
                    cx.set_desired(t, TaskState::Shutdown);
                }
            }
            continue;
        }
        if node.spec.availability != NodeAvailability::Active
            || node.status.state != NodeState::Ready
        {
            continue;
        }
        if !taken(cx, service, tasks).0 {
            cx.create_task(service, 0, Some(node.id), TaskState::Running);
        }
    }
    let restart: Vec<Arc<Task>> = jt
        .restart
        .into_iter()
        .filter(|t| {
            t.node_id
                .and_then(|n| cx.node(&n))
                .is_some_and(|n| !node_unavailable(Some(&n)))
        })
        .collect();
    finish(cx, restarts, service, restart, jt.remove);
}
