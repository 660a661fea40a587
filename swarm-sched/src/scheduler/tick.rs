//! The scheduler's output: [`Scheduler::poll_actions`].
//!
//! One poll first checks pre-assigned tasks (global services should start before anything else
//! takes their node's resources, as in SwarmKit), then places every batch that has new tasks or
//! that was blocked before capacity last changed, in (service id, spec version) order so the
//! result is deterministic.

use std::collections::btree_map::Entry;
use std::sync::Arc;

use swarm_core::placement::SpreadPreference;
use swarm_core::{Id, Object, StoreAction, Task, TaskState, TaskStatus, Timestamp};

use super::filter::{no_suitable_node, TaskFilter, CHECKS};
use super::hash::FxMap;
use super::nodes::{NodeIdx, Occupant};
use super::place::{place, Batch};
use super::{BatchKey, Pending, Scheduler, TaskSet, ASSIGNED_MESSAGE, CONFIRMED_MESSAGE};

/// `t` placed on `node`.
fn assigned(t: &Task, node: Id, now: Timestamp, message: &str) -> StoreAction {
    let mut nt = t.clone();
    nt.node_id = Some(node);
    nt.status = TaskStatus {
        timestamp: now,
        state: TaskState::Assigned,
        message: message.to_owned(),
        ..TaskStatus::default()
    };
    StoreAction::Update(Object::Task(Arc::new(nt)))
}

/// `t` left pending with `err`, unless it already says so.
fn still_pending(t: &Task, err: &str, now: Timestamp) -> Option<Arc<Task>> {
    if t.status.state == TaskState::Pending && t.status.err == err {
        return None;
    }
    let mut nt = t.clone();
    nt.status.state = TaskState::Pending;
    nt.status.err = err.to_owned();
    nt.status.timestamp = now;
    Some(Arc::new(nt))
}

impl Scheduler {
    /// Output: the task updates for every placement decided since the last poll. Propose them, then
    /// feed the resulting events back (see the driver contract on [`Scheduler`]). Returns nothing
    /// while [`Scheduler::needs_reset`] is set.
    #[must_use = "the actions must be proposed, or the placements are lost"]
    pub fn poll_actions(&mut self, now: Timestamp) -> Vec<StoreAction> {
        let mut out = Vec::new();
        self.echoes.clear();
        if self.needs_reset {
            return out;
        }
        self.failures.purge(now);
        let generation = self.nodes.generation();
        let moved = generation != self.polled_generation;
        self.polled_generation = generation;
        self.poll_preassigned(moved, now, &mut out);
        // Take the batches out of the queue while working on them; leftovers go back.
        // Every batch when capacity moved, or when every batch is dirty anyway (the whole map
        // at once, instead of one B-tree removal per batch); else the dirty ones, in key order.
        let everything = moved || self.dirty_batches == self.queue.len();
        let mut keys = std::mem::take(&mut self.dirty);
        self.dirty_batches = 0;
        let work: Vec<(BatchKey, Pending)> = if everything {
            std::mem::take(&mut self.queue).into_iter().collect()
        } else {
            keys.sort_unstable();
            keys.dedup();
            keys.into_iter()
                .filter_map(|k| match self.queue.entry(k) {
                    Entry::Occupied(e) if e.get().dirty => Some(e.remove_entry()),
                    _ => None,
                })
                .collect()
        };
        for (key, pending) in work {
            if let Some(mut rest) = self.schedule_batch(pending, now, &mut out) {
                rest.dirty = false;
                self.queue.insert(key, rest);
            }
        }
        self.expect_echoes(&out);
        out
    }

    fn poll_preassigned(&mut self, moved: bool, now: Timestamp, out: &mut Vec<StoreAction>) {
        let generation = self.nodes.generation();
        let ids: Vec<Id> = self
            .preassigned
            .iter()
            .filter(|(_, p)| p.checked.is_none() || (moved && p.checked != Some(generation)))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(task) = self.preassigned.get(&id).map(|p| p.task.clone()) else {
                continue;
            };
            let Some(node) = task.node_id else {
                continue;
            };
            let verdict = match (
                self.nodes.idx_of(&node),
                TaskFilter::compile(&task, self.ports_of(&task.service_id)),
            ) {
                // The node is gone (or not known yet): wait for node events.
                (None, _) => None,
                (Some(_), Err(e)) => Some(Err(e)),
                (Some(idx), Ok(f)) => self.nodes.get(idx).map(|info| {
                    let service_tasks = self.nodes.service_count(&f.service, idx);
                    match f.first_failure(info, service_tasks) {
                        None => Ok(f),
                        Some(check) => {
                            let mut counts = [0; CHECKS];
                            counts[check as usize] = 1;
                            Err(no_suitable_node(&counts))
                        }
                    }
                }),
            };
            match verdict {
                Some(Ok(f)) => {
                    self.preassigned.remove(&id);
                    // Pre-assigned tasks are not queued: nothing to take out of a batch.
                    let _ = self.nodes.occupy(
                        id,
                        Occupant {
                            node,
                            service: f.service,
                            reservations: f.reservations,
                            ports: f.host_ports.clone(),
                            active: true,
                        },
                    );
                    out.push(assigned(&task, node, now, CONFIRMED_MESSAGE));
                }
                Some(Err(err)) => {
                    let update = still_pending(&task, &err, now);
                    if let Some(p) = self.preassigned.get_mut(&id) {
                        p.checked = Some(generation);
                        if let Some(nt) = update {
                            p.task = nt.clone();
                            out.push(StoreAction::Update(Object::Task(nt)));
                        }
                    }
                }
                None => {
                    if let Some(p) = self.preassigned.get_mut(&id) {
                        p.checked = Some(generation);
                    }
                }
            }
        }
    }

    /// Places what it can of one batch; returns the batch if tasks are left waiting.
    fn schedule_batch(
        &mut self,
        mut pending: Pending,
        now: Timestamp,
        out: &mut Vec<StoreAction>,
    ) -> Option<Pending> {
        let generation = self.nodes.generation();
        if let Some((g, err)) = &pending.blocked {
            if *g == generation {
                // Nothing changed since no node could take this batch: new tasks get the reason.
                let err = err.clone();
                write_pending(&mut pending, &err, now, out);
                return Some(pending);
            }
        }
        let first = pending.tasks.values().next()?.clone();
        let filter = match TaskFilter::compile(&first, self.ports_of(&first.service_id)) {
            Ok(f) => f,
            Err(err) => {
                block(&mut pending, generation, err, now, out);
                return Some(pending);
            }
        };
        // Invalid descriptors were refused by spec validation; SwarmKit skips them, so do we.
        let prefs: Vec<_> = first
            .spec
            .placement
            .preferences
            .iter()
            .filter_map(|d| SpreadPreference::parse_descriptor(d).ok())
            .map(|p| p.over)
            .collect();
        let penalized: FxMap<NodeIdx, u32> = self
            .failures
            .penalized(first.service_id, first.spec_version, now)
            .into_iter()
            .filter_map(|(node, n)| Some((self.nodes.idx_of(&node)?, n)))
            .collect();
        // A one-task batch (every batch in SwarmKit's benchmark shapes) lends its id instead of
        // a vector of one.
        let (one, many): (Option<Id>, Vec<Id>) = match &pending.tasks {
            TaskSet::One(id, _) => (Some(*id), Vec::new()),
            tasks => (None, tasks.values().map(|t| t.id).collect()),
        };
        let ids: &[Id] = match &one {
            Some(id) => std::slice::from_ref(id),
            None => &many,
        };
        let batch = Batch {
            filter: &filter,
            prefs: &prefs,
            penalized: &penalized,
            tasks: ids,
        };
        let chosen = place(&mut self.nodes, &batch);
        // `ids` and the batch's tasks are in the same (id) order.
        for (t, &idx) in pending.tasks.values().zip(&chosen) {
            if let Some(node) = self.nodes.get(idx).map(|i| i.node.id) {
                out.push(assigned(t, node, now, ASSIGNED_MESSAGE));
            }
        }
        if chosen.len() == ids.len() {
            return None;
        }
        for id in &ids[..chosen.len()] {
            pending.tasks.remove(id);
        }
        let err = self.explain(&filter);
        block(&mut pending, generation, err, now, out);
        Some(pending)
    }

    /// Why no node can take tasks with filter `f`: every node through the pipeline in order.
    fn explain(&self, f: &TaskFilter) -> String {
        let mut counts = [0usize; CHECKS];
        for (idx, slot) in self.nodes.slots().iter().enumerate() {
            if let Some(info) = slot {
                let service_tasks = self.nodes.service_count(&f.service, idx as NodeIdx);
                if let Some(check) = f.first_failure(info, service_tasks) {
                    counts[check as usize] += 1;
                }
            }
        }
        no_suitable_node(&counts)
    }
}

/// Marks the batch blocked at `generation` with `err` and leaves its tasks pending.
fn block(
    pending: &mut Pending,
    generation: u64,
    err: String,
    now: Timestamp,
    out: &mut Vec<StoreAction>,
) {
    write_pending(pending, &err, now, out);
    pending.blocked = Some((generation, err));
}

/// Leaves the batch's tasks pending with `err`, writing only those that do not say so yet.
fn write_pending(pending: &mut Pending, err: &str, now: Timestamp, out: &mut Vec<StoreAction>) {
    for t in pending.tasks.values_mut() {
        if let Some(nt) = still_pending(t, err, now) {
            *t = nt.clone();
            out.push(StoreAction::Update(Object::Task(nt)));
        }
    }
}
