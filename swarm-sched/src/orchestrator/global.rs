//! Global services: one live task on every eligible node.
//!
//! A node is eligible when it exists, is not drained, is not down and satisfies the service's
//! placement constraints. On an eligible node without a live task of the service, a task is created
//! with its node set (the scheduler only validates it). A paused node keeps the task it has and gets
//! no new one. Tasks on nodes that are drained, down, gone or no longer match are shut down. A node
//! that comes back gets a task again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use swarm_core::objects::node::NodeAvailability;
use swarm_core::{Id, Node, Service, Task, TaskState};

use super::context::{constraints_of, node_matches, node_unavailable, Ctx};
use crate::restart::updatable_in_slot;
use crate::update::{is_task_dirty, SlotKey, UpdateSupervisor};

/// Reconciles one global service against every node.
pub(crate) fn reconcile(
    cx: &mut Ctx<'_, '_>,
    updates: &mut UpdateSupervisor,
    service: &Arc<Service>,
) {
    let mut by_node: BTreeMap<Id, Vec<Arc<Task>>> = BTreeMap::new();
    for t in cx.service_tasks(&service.id) {
        if let Some(n) = t.node_id {
            by_node.entry(n).or_default().push(t);
        }
    }
    let constraints = constraints_of(&service.spec.task);
    let nodes: Vec<Arc<Node>> = cx.store().iter::<Node>().cloned().collect();
    let mut seen: BTreeSet<Id> = BTreeSet::new();
    let mut slots: Vec<(SlotKey, Vec<Arc<Task>>)> = Vec::new();
    for node in &nodes {
        seen.insert(node.id);
        let tasks = by_node.remove(&node.id).unwrap_or_default();
        let live = updatable_in_slot(cx, &tasks, service);
        if node_unavailable(Some(node)) || !node_matches(&constraints, node) {
            shutdown(cx, &live);
            continue;
        }
        if node.spec.availability == NodeAvailability::Pause {
            continue;
        }
        if live.is_empty() {
            cx.create_task(service, 0, Some(node.id), TaskState::Running);
        } else {
            slots.push((SlotKey::Node(node.id), live));
        }
    }
    // Tasks on nodes that no longer exist.
    for (node, tasks) in by_node {
        if !seen.contains(&node) {
            let live = updatable_in_slot(cx, &tasks, service);
            shutdown(cx, &live);
        }
    }
    updates.update(cx, service, slots);
}

/// Reconciles every global service on one node after the node changed. Out-of-date tasks there are
/// replaced at once, not by a rolling update: the node was away while the service changed.
pub(crate) fn reconcile_node(cx: &mut Ctx<'_, '_>, services: &[Arc<Service>], node_id: &Id) {
    let node = cx.node(node_id);
    for service in services {
        let tasks = cx.service_node_tasks(&service.id, node_id);
        let live = updatable_in_slot(cx, &tasks, service);
        let Some(node) = node.as_deref() else {
            shutdown(cx, &live);
            continue;
        };
        if node_unavailable(Some(node)) || !node_matches(&constraints_of(&service.spec.task), node)
        {
            // As the full reconciliation does: a node that no longer matches loses the task, even
            // when paused.
            shutdown(cx, &live);
            continue;
        }
        if node.spec.availability == NodeAvailability::Pause {
            continue;
        }
        let (dirty, clean): (Vec<Arc<Task>>, Vec<Arc<Task>>) = live
            .into_iter()
            .partition(|t| is_task_dirty(service, t, Some(node)));
        if clean.is_empty() {
            cx.create_task(service, 0, Some(node.id), TaskState::Running);
        }
        shutdown(cx, &dirty);
        shutdown(cx, clean.get(1..).unwrap_or(&[]));
    }
}

/// Handles a global task that stopped: restart it on its node if the node still wants it, otherwise
/// just shut it down.
pub(crate) fn task_wants_restart(cx: &Ctx<'_, '_>, service: &Service, task: &Task) -> bool {
    let Some(node) = task.node_id.and_then(|n| cx.node(&n)) else {
        return false;
    };
    !node_unavailable(Some(&node))
        && node.spec.availability != NodeAvailability::Pause
        && node_matches(&constraints_of(&service.spec.task), &node)
}

fn shutdown(cx: &mut Ctx<'_, '_>, tasks: &[Arc<Task>]) {
    for t in tasks {
        if t.desired_state <= TaskState::Running {
            cx.set_desired(t, TaskState::Shutdown);
        }
    }
}
