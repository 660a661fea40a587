//! Node-driven orchestration: tasks on drained, down or removed nodes, tasks orphaned after a node
//! stays down for 24 h, and the constraint enforcer.
//!
//! - Drained, down or removed node: replicated (and replicated-job) tasks still wanted there are
//!   replaced elsewhere at once, with no restart delay; global tasks are shut down.
//! - Paused node: nothing moves; the scheduler places nothing new there.
//! - Down for [`ORPHAN_AFTER`]: tasks that may still have been running there (assigned..running) are
//!   marked `orphaned`: nobody knows what they are doing. The clock starts when this leader first
//!   sees the node down (as SwarmKit's dispatcher does after a leader change).
//! - Constraint enforcer: on an active node whose labels, role or resources changed, a task still
//!   wanted there whose service's constraints no longer match, or whose reservations no longer fit
//!   (older tasks keep their share first), is marked `rejected` ("assigned node no longer meets
//!   constraints"); the restart supervisor then replaces it as usual.

use std::collections::BTreeMap;
use std::time::Duration;

use swarm_core::constraint::Constraint;
use swarm_core::objects::node::{NodeAvailability, NodeState, Resources};
use swarm_core::{Id, Node, ServiceMode, TaskState, Timestamp};

use super::context::{constraints_of, creation_key, later, node_matches, node_unavailable, Ctx};
use crate::restart::{RestartReason, RestartSupervisor};

/// How long a node stays down before its tasks are orphaned (24 h).
pub const ORPHAN_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Message of a task the constraint enforcer rejected.
pub const ENFORCER_MESSAGE: &str = "task rejected by constraint enforcer";
/// Error of a task the constraint enforcer rejected.
pub const ENFORCER_ERR: &str = "assigned node no longer meets constraints";

/// When each down node was first seen down, and whether its tasks were orphaned already.
#[derive(Debug, Default)]
pub(crate) struct DownNodes {
    since: BTreeMap<Id, (Timestamp, bool)>,
}

impl DownNodes {
    pub(crate) fn clear(&mut self) {
        self.since.clear();
    }

    /// Notes a node's current state at `now`.
    pub(crate) fn observe(&mut self, id: &Id, node: Option<&Node>, now: Timestamp) {
        match node {
            Some(n) if n.status.state == NodeState::Down => {
                self.since.entry(*id).or_insert((now, false));
            }
            _ => {
                self.since.remove(id);
            }
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.since
            .values()
            .filter(|(_, done)| !done)
            .map(|(t, _)| later(*t, ORPHAN_AFTER))
            .min()
    }

    /// Orphans the tasks of nodes down for 24 h.
    pub(crate) fn poll(&mut self, cx: &mut Ctx<'_, '_>) {
        for (node, (since, done)) in self.since.iter_mut() {
            if *done || later(*since, ORPHAN_AFTER) > cx.now {
                continue;
            }
            *done = true;
            for t in cx.node_tasks(node) {
                if (TaskState::Assigned..=TaskState::Running).contains(&t.status.state) {
                    let mut t = (*t).clone();
                    t.status.state = TaskState::Orphaned;
                    t.status.timestamp = cx.now;
                    cx.put_task(t);
                }
            }
        }
    }
}

/// Moves or stops the tasks of a drained, down or removed node.
pub(crate) fn evacuate(cx: &mut Ctx<'_, '_>, restarts: &mut RestartSupervisor, node: &Id) {
    for t in cx.node_tasks(node) {
        if t.desired_state > TaskState::Running {
            continue;
        }
        let Some(service) = cx.service(&t.service_id) else {
            continue;
        };
        match service.spec.mode {
            ServiceMode::Replicated { .. } | ServiceMode::ReplicatedJob { .. } => {
                if t.status.state == TaskState::Complete && service.spec.mode.is_job() {
                    continue;
                }
                restarts.restart(cx, &service, &t, RestartReason::NodeUnavailable);
            }
            ServiceMode::Global | ServiceMode::GlobalJob => cx.set_desired(&t, TaskState::Shutdown),
        }
    }
}

/// Whether a node change may matter to the constraint enforcer.
pub(crate) fn enforcer_relevant(old: &Node, new: &Node) -> bool {
    old.spec.annotations.labels != new.spec.annotations.labels
        || old.spec.availability != new.spec.availability
        || old.role != new.role
        || old.description != new.description
        || old.status.addr != new.status.addr
}

/// Rejects tasks that no longer fit an active node (see the module docs).
pub(crate) fn enforce_constraints(cx: &mut Ctx<'_, '_>, node_id: &Id) {
    let Some(node) = cx.node(node_id) else { return };
    if node.spec.availability != NodeAvailability::Active || node_unavailable(Some(&node)) {
        return;
    }
    let mut available: Resources = node
        .description
        .as_ref()
        .map(|d| d.resources)
        .unwrap_or_default();
    let mut tasks = cx.node_tasks(node_id);
    tasks.sort_by_key(|t| creation_key(t));
    let mut constraints: BTreeMap<Id, Vec<Constraint>> = BTreeMap::new();
    for t in tasks {
        if t.desired_state < TaskState::Assigned
            || t.desired_state > TaskState::Running
            || t.status.state >= TaskState::Complete
        {
            continue;
        }
        let cons =
            constraints
                .entry(t.service_id)
                .or_insert_with(|| match cx.service(&t.service_id) {
                    // The service's current constraints: a placement-only update leaves older task specs.
                    Some(s) => constraints_of(&s.spec.task),
                    None => constraints_of(&t.spec),
                });
        let r = t.spec.resources.reservations;
        let fits = node_matches(cons, &node)
            && r.memory_bytes <= available.memory_bytes
            && r.nano_cpus <= available.nano_cpus;
        if fits {
            available.memory_bytes = available.memory_bytes.saturating_sub(r.memory_bytes.max(0));
            available.nano_cpus = available.nano_cpus.saturating_sub(r.nano_cpus.max(0));
            continue;
        }
        let mut t = (*t).clone();
        t.status.state = TaskState::Rejected;
        t.status.message = ENFORCER_MESSAGE.into();
        t.status.err = ENFORCER_ERR.into();
        t.status.timestamp = cx.now;
        cx.put_task(t);
    }
}
