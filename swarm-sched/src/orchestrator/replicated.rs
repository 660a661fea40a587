//! Replicated services: keep one live task in each of the slots 1..=replicas.
//!
//! - Scale up fills the lowest missing slot numbers.
//! - Scale down keeps the slots that leave the service best spread: each slot's task is counted as
//!   the 1st, 2nd, ... copy of the service on its node, running tasks counted before the others and
//!   lower slots before higher ones, and the slots with the highest counts (the busiest nodes), then
//!   the unplaced and multi-task slots, get desired state `remove`. The agent stops them and the task
//!   reaper deletes them.
//! - Slots whose tasks have all stopped and may be restarted are dead: their tasks are deleted and the
//!   slot is filled again.
//! - The live slots are handed to the updater on every reconciliation.

use std::collections::BTreeMap;
use std::sync::Arc;

use swarm_core::{Id, Service, ServiceMode, Task, TaskState};

use super::context::Ctx;
use crate::restart::updatable_in_slot;
use crate::update::{SlotKey, UpdateSupervisor};

/// Reconciles one replicated service. Returns true when this tick's budget
/// ([`super::MAX_NEW_TASKS_PER_TICK`]) ran out and more tasks are needed: the caller reconciles
/// it again at the next tick.
pub(crate) fn reconcile(
    cx: &mut Ctx<'_, '_>,
    updates: &mut UpdateSupervisor,
    service: &Arc<Service>,
) -> bool {
    let ServiceMode::Replicated { replicas } = service.spec.mode else {
        return false;
    };
    let mut by_slot: BTreeMap<u64, Vec<Arc<Task>>> = BTreeMap::new();
    for t in cx.service_tasks(&service.id) {
        by_slot.entry(t.slot).or_default().push(t);
    }
    let mut live: BTreeMap<u64, Vec<Arc<Task>>> = BTreeMap::new();
    let mut dead: BTreeMap<u64, Vec<Arc<Task>>> = BTreeMap::new();
    for (slot, tasks) in by_slot {
        let up = updatable_in_slot(cx, &tasks, service);
        if up.is_empty() {
            dead.insert(slot, tasks);
        } else {
            live.insert(slot, up);
        }
    }
    let have = live.len() as u64;
    let keys = |slots: &[(u64, Vec<Arc<Task>>)]| -> Vec<(SlotKey, Vec<Arc<Task>>)> {
        slots
            .iter()
            .map(|(s, t)| (SlotKey::Slot(*s), t.clone()))
            .collect()
    };
    if replicas >= have {
        let all: Vec<(u64, Vec<Arc<Task>>)> = live.iter().map(|(s, t)| (*s, t.clone())).collect();
        updates.update(cx, service, keys(&all));
        let wanted = replicas - have;
        let mut missing = cx.take_new_task_budget(wanted);
        let more = wanted > missing;
        let mut slot = 0u64;
        while missing > 0 {
            slot += 1;
            if live.contains_key(&slot) {
                continue;
            }
            dead.remove(&slot);
            cx.create_task(service, slot, None, TaskState::Running);
            missing -= 1;
        }
        delete_dead(cx, dead);
        return more;
    }
    let ordered = scale_down_order(live);
    let keep = usize::try_from(replicas)
        .unwrap_or(usize::MAX)
        .min(ordered.len());
    updates.update(cx, service, keys(&ordered[..keep]));
    delete_dead(cx, dead);
    for (_, tasks) in &ordered[keep..] {
        for t in tasks {
            cx.set_desired(t, TaskState::Remove);
        }
    }
    false
}

fn delete_dead(cx: &mut Ctx<'_, '_>, dead: BTreeMap<u64, Vec<Arc<Task>>>) {
    for t in dead.into_values().flatten() {
        cx.remove_task(&t.id);
    }
}

/// A slot number and its live tasks.
type Slot = (u64, Vec<Arc<Task>>);

/// Live slots ordered from "keep first" to "remove first" (see the module docs).
fn scale_down_order(live: BTreeMap<u64, Vec<Arc<Task>>>) -> Vec<(u64, Vec<Arc<Task>>)> {
    let mut slots: Vec<(u64, Vec<Arc<Task>>)> = live.into_iter().collect();
    let running = |tasks: &[Arc<Task>]| tasks.iter().any(|t| t.status.state == TaskState::Running);
    // Running slots first, then by slot number: the first copies on each node are the ones kept.
    slots.sort_by_key(|(slot, tasks)| (!running(tasks), *slot));
    let mut per_node: BTreeMap<Id, usize> = BTreeMap::new();
    let mut indexed: Vec<(usize, Slot)> = slots
        .into_iter()
        .map(|(slot, tasks)| {
            let index = match (tasks.len(), tasks.first().and_then(|t| t.node_id)) {
                (1, Some(node)) => {
                    let n = per_node.entry(node).or_insert(0);
                    *n += 1;
                    *n
                }
                _ => usize::MAX,
            };
            (index, (slot, tasks))
        })
        .collect();
    indexed.sort_by_key(|(index, _)| *index);
    indexed.into_iter().map(|(_, s)| s).collect()
}
