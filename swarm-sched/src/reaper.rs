//! The task reaper: deletes old tasks so each slot keeps a bounded history, and deletes tasks that
//! were told to go away (desired `remove`) once they have stopped.
//!
//! # Rules
//! - History per slot (replicated) or per node (global) is the cluster's
//!   `orchestration.task_history_retention_limit` (default 5, including the live task); negative
//!   means never prune, 0 keeps live tasks only. Jobs keep their history.
//! - When a service's restart policy sets `max_attempts`, at least `max_attempts + 1` tasks are kept
//!   per slot so the restart supervisor can count attempts from the store.
//! - Only stopped tasks are pruned (observed state past `running`, or never placed and no longer
//!   wanted), oldest first.
//! - A task with desired state `remove` (scale-down, service removal, old job iteration) is deleted
//!   once it has stopped or if it was never placed.
//!
//! # Driver contract
//! Inputs: [`TaskReaper::handle_event`] for every store event (it looks at task creations and
//! updates only); [`TaskReaper::handle_full_pass`] on becoming leader. Output: [`TaskReaper::tick`]
//! (or `tick_tx` inside a larger transaction) returns the deletions; call it after each commit
//! marker. It keeps no timers. [`crate::orchestrator::Orchestrator`] embeds one and drives it.

use std::collections::BTreeSet;
use std::sync::Arc;

use swarm_core::objects::cluster::OrchestrationConfig;
use swarm_core::{
    Event, Id, Object, ObjectKind, Service, ServiceMode, Store, StoreAction, Task, TaskState, Tx,
};

/// Where a task's history lives: its slot, or for global services its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SlotRef {
    service: Id,
    slot: u64,
    node: Option<Id>,
}

/// Prunes task history. See the module docs.
#[derive(Debug, Default)]
pub struct TaskReaper {
    dirty: BTreeSet<SlotRef>,
    cleanup: BTreeSet<Id>,
    full_pass: bool,
}

fn stopped_or_never_placed(t: &Task) -> bool {
    t.status.state < TaskState::Assigned || t.status.state >= TaskState::Complete
}

impl TaskReaper {
    /// An empty reaper.
    pub fn new() -> Self {
        Self::default()
    }

    /// Input: one store event.
    pub fn handle_event(&mut self, event: &Event) {
        match event {
            Event::Created(Object::Task(t)) => {
                self.dirty.insert(SlotRef {
                    service: t.service_id,
                    slot: t.slot,
                    node: t.node_id,
                });
            }
            Event::Updated {
                new: Object::Task(t),
                ..
            } if t.desired_state == TaskState::Remove && stopped_or_never_placed(t) => {
                self.cleanup.insert(t.id);
            }
            Event::Reset { .. } => self.full_pass = true,
            _ => {}
        }
    }

    /// Input: leadership gained (or the store was reset): look at every task once.
    pub fn handle_full_pass(&mut self) {
        self.full_pass = true;
    }

    /// Output: the deletions due, as actions against `store`.
    #[must_use]
    pub fn tick(&mut self, store: &Store) -> Vec<StoreAction> {
        let mut tx = Tx::new(store);
        self.tick_tx(&mut tx);
        tx.into_actions()
    }

    /// Output: records the deletions due in `tx`.
    pub fn tick_tx(&mut self, tx: &mut Tx<'_>) {
        let store = tx.committed();
        if std::mem::take(&mut self.full_pass) {
            self.cleanup.extend(
                store
                    .tasks_by_desired_state(TaskState::Remove)
                    .map(|t| t.id),
            );
            for t in store.scan::<Task>() {
                self.dirty.insert(SlotRef {
                    service: t.service_id,
                    slot: t.slot,
                    node: t.node_id,
                });
            }
        }
        let retention = store
            .cluster()
            .map(|c| c.spec.orchestration.task_history_retention_limit)
            .unwrap_or(OrchestrationConfig::default().task_history_retention_limit);

        let mut delete: BTreeSet<Id> = BTreeSet::new();
        for id in std::mem::take(&mut self.cleanup) {
            if let Some(t) = tx.get::<Task>(&id) {
                if t.desired_state == TaskState::Remove && stopped_or_never_placed(&t) {
                    delete.insert(id);
                }
            }
        }
        let dirty = std::mem::take(&mut self.dirty);
        for slot in dirty {
            let Some(service) = tx.get::<Service>(&slot.service) else {
                continue;
            };
            let Some(mut limit) = history_limit(&service, retention) else {
                continue;
            };
            let history: Vec<Arc<Task>> = match (service.spec.mode, slot.node) {
                (ServiceMode::Replicated { .. }, _) => store
                    .tasks_by_slot(&slot.service, slot.slot)
                    .filter_map(|t| tx.get::<Task>(&t.id))
                    .collect(),
                (ServiceMode::Global, Some(node)) => store
                    .tasks_by_node(&node)
                    .filter(|t| t.service_id == slot.service)
                    .filter_map(|t| tx.get::<Task>(&t.id))
                    .collect(),
                _ => continue,
            };
            if history.len() <= limit {
                continue;
            }
            let mut history = history;
            history.sort_by_key(|t| (t.status.timestamp, t.meta.created_at, t.id));
            let mut live = 0usize;
            for t in &history {
                let terminal = t.status.state > TaskState::Running;
                let never_runs =
                    t.status.state < TaskState::Assigned && t.desired_state > TaskState::Running;
                if terminal || never_runs {
                    delete.insert(t.id);
                    limit += 1;
                    if history.len() <= limit {
                        break;
                    }
                } else {
                    live += 1;
                }
            }
            if live > 1 {
                // Two tasks still run in this slot (start-first update): look again later.
                self.dirty.insert(slot);
            }
        }
        for id in delete {
            let _ = tx.remove(ObjectKind::Task, &id);
        }
    }
}

/// Tasks to keep per slot for `service`, or `None` to keep everything.
fn history_limit(service: &Service, retention: i64) -> Option<usize> {
    if retention < 0 || service.spec.mode.is_job() {
        return None;
    }
    let mut limit = usize::try_from(retention).unwrap_or(usize::MAX);
    let attempts = service.spec.task.restart.max_attempts;
    if attempts > 0 {
        limit = limit.max(usize::try_from(attempts.saturating_add(1)).unwrap_or(usize::MAX));
    }
    Some(limit)
}
