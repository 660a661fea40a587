//! One service's rolling update (or rollback) as a step-by-step state machine.
//!
//! SwarmKit runs `parallelism` worker goroutines that each take a slot, replace its task, wait for
//! the replacement to run, sleep `delay`, and take the next slot; a watcher counts failures. Here the
//! workers are [`Lane`]s advanced on every tick, waiting is "look again next tick", sleeping is a
//! deadline, and failures arrive as task notes from store events.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::{
    FailureAction, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};
use swarm_core::{Id, Service, Task, TaskState, Timestamp};

use super::dirty::is_task_dirty;
use crate::orchestrator::context::{creation_key, later, Ctx};
use crate::restart::{updatable_in_slot, RestartSupervisor};

/// Message of an update in progress.
pub const MSG_UPDATING: &str = "update in progress";
/// Message of a finished update.
pub const MSG_COMPLETED: &str = "update completed";
/// Message of a finished rollback.
pub const MSG_ROLLBACK_COMPLETED: &str = "rollback completed";
/// Message of a rollback the operator asked for.
pub const MSG_MANUAL_ROLLBACK: &str = "manually requested rollback";

/// One "slot" of an update: a replica slot number, or a node for global services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SlotKey {
    /// Replica slot of a replicated service.
    Slot(u64),
    /// Node of a global service.
    Node(Id),
}

/// A worker of the update.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Lane {
    /// Ready to take the next slot.
    Idle,
    /// Waiting `delay` after its last slot.
    Sleeping(Timestamp),
    /// Waiting for an existing task's delayed start to happen.
    Starting(Id),
    /// Waiting for a new task to reach running (or fail).
    Running {
        task: Id,
        start_first: bool,
        old: Vec<Id>,
    },
}

/// How an update ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Still going.
    Continue,
    /// Finished (completed, paused or rolled back): drop the state machine.
    Finished,
}

/// The state machine of one service's update.
#[derive(Debug)]
pub(crate) struct Updater {
    /// The service version being rolled out.
    pub(crate) service: Arc<Service>,
    config: UpdateConfig,
    rollback: bool,
    total: usize,
    queue: VecDeque<SlotKey>,
    lanes: Vec<Lane>,
    /// Tasks this update created, with the time they were first seen running.
    updated: BTreeMap<Id, Option<Timestamp>>,
    failed: BTreeSet<Id>,
    noted: BTreeSet<Id>,
    monitor_until: Option<Timestamp>,
}

/// Current tasks of one slot the update works on (see [`updatable_in_slot`]), oldest first.
fn live_tasks(cx: &Ctx<'_, '_>, service: &Service, key: SlotKey) -> Vec<Arc<Task>> {
    let tasks = match key {
        SlotKey::Slot(n) => cx.slot_tasks(&service.id, n),
        SlotKey::Node(n) => cx.service_node_tasks(&service.id, &n),
    };
    let current = cx.service(&service.id);
    let mut tasks = updatable_in_slot(cx, &tasks, current.as_deref().unwrap_or(service));
    tasks.sort_by_key(|t| creation_key(t));
    tasks
}

fn dirty(cx: &Ctx<'_, '_>, service: &Service, t: &Task) -> bool {
    let node = t.node_id.and_then(|n| cx.node(&n));
    is_task_dirty(service, t, node.as_deref())
}

/// Whether a slot needs the update: several live tasks, or one that is dirty.
pub(crate) fn slot_dirty(cx: &Ctx<'_, '_>, service: &Service, tasks: &[Arc<Task>]) -> bool {
    tasks.len() > 1 || tasks.first().is_some_and(|t| dirty(cx, service, t))
}

/// Rewrites the service's update status with `f`, if the service still has the spec version the
/// update started from and an update status (a newer spec resets it: the update is stale).
pub(crate) fn write_status(
    cx: &mut Ctx<'_, '_>,
    target: &Service,
    f: impl FnOnce(&mut Service, Timestamp),
) {
    let Some(cur) = cx.service(&target.id) else {
        return;
    };
    if cur.spec_version != target.spec_version || cur.update_status.is_none() {
        return;
    }
    let mut s = (*cur).clone();
    f(&mut s, cx.now);
    cx.put_service(s);
}

fn complete(cx: &mut Ctx<'_, '_>, target: &Service) {
    write_status(cx, target, |s, now| {
        if let Some(u) = s.update_status.as_mut() {
            if u.state == UpdateState::RollbackStarted {
                u.state = UpdateState::RollbackCompleted;
                u.message = MSG_ROLLBACK_COMPLETED.into();
            } else {
                u.state = UpdateState::Completed;
                u.message = MSG_COMPLETED.into();
            }
            u.completed_at = Some(now);
        }
    });
}

fn pause(cx: &mut Ctx<'_, '_>, target: &Service, message: String) {
    write_status(cx, target, |s, _| {
        if let Some(u) = s.update_status.as_mut() {
            u.state = if u.state == UpdateState::RollbackStarted {
                UpdateState::RollbackPaused
            } else {
                UpdateState::Paused
            };
            u.message = message;
        }
    });
}

fn roll_back(cx: &mut Ctx<'_, '_>, target: &Service, task: &Id) {
    let no_previous = cx
        .service(&target.id)
        .is_none_or(|s| s.previous_spec.is_none());
    if no_previous {
        // Ours: SwarmKit fails the transaction and leaves the update "in progress" forever; pausing
        // tells the operator what happened.
        let msg = format!("update paused due to failure or early termination of task {task}");
        return pause(cx, target, msg);
    }
    write_status(cx, target, |s, _| {
        if let Some(prev) = s.previous_spec.take() {
            s.spec = prev;
            s.spec_version = s.previous_spec_version.take().unwrap_or(s.meta.version);
        }
        if let Some(u) = s.update_status.as_mut() {
            u.state = UpdateState::RollbackStarted;
            u.message =
                format!("update rolled back due to failure or early termination of task {task}");
        }
    });
}

/// A paused update replaces no task, but a slot whose clean task runs keeps only that one: the
/// slot's other live tasks are told to shut down. A start-first slot holds its old task until the
/// replacement runs; when the replacement fails and pauses the update, the restart supervisor
/// starts another replacement of the current spec in the slot, and without this the old task kept
/// running beside it until the next service update (defect 12 of the simulation: replicas + 1
/// tasks running). Ours: SwarmKit's paused updater does nothing at all and leaves both running.
fn drop_surplus(cx: &mut Ctx<'_, '_>, service: &Service, slots: &[(SlotKey, Vec<Arc<Task>>)]) {
    for (_, tasks) in slots.iter().filter(|(_, tasks)| tasks.len() > 1) {
        let keep = tasks.iter().find(|t| {
            t.desired_state == TaskState::Running
                && t.status.state == TaskState::Running
                && !dirty(cx, service, t)
        });
        let Some(keep) = keep.cloned() else { continue };
        for t in tasks.iter().filter(|t| t.id != keep.id) {
            if t.desired_state <= TaskState::Running {
                cx.set_desired(t, TaskState::Shutdown);
            }
        }
    }
}

impl Updater {
    /// Starts updating `service`, whose live slots are `slots`. Returns `None` when there is nothing
    /// to do (update paused, or every slot clean, in which case an update in progress is completed).
    /// A paused update still shuts down the surplus tasks of slots whose clean task runs
    /// ([`drop_surplus`]).
    pub(crate) fn start(
        cx: &mut Ctx<'_, '_>,
        service: Arc<Service>,
        slots: Vec<(SlotKey, Vec<Arc<Task>>)>,
    ) -> Option<Updater> {
        let state = service.update_status.as_ref().map(|u| u.state);
        if matches!(
            state,
            Some(UpdateState::Paused | UpdateState::RollbackPaused)
        ) {
            drop_surplus(cx, &service, &slots);
            return None;
        }
        let queue: VecDeque<SlotKey> = slots
            .iter()
            .filter(|(_, tasks)| slot_dirty(cx, &service, tasks))
            .map(|(k, _)| *k)
            .collect();
        if queue.is_empty() {
            if matches!(
                state,
                Some(UpdateState::Updating | UpdateState::RollbackStarted)
            ) {
                complete(cx, &service);
            }
            return None;
        }
        if state.is_none() {
            if let Some(cur) = cx.service(&service.id) {
                if cur.update_status.is_none() && cur.spec_version == service.spec_version {
                    let mut s = (*cur).clone();
                    s.update_status = Some(UpdateStatus {
                        state: UpdateState::Updating,
                        started_at: cx.now,
                        completed_at: None,
                        message: MSG_UPDATING.into(),
                    });
                    cx.put_service(s);
                }
            }
        }
        let rollback = state == Some(UpdateState::RollbackStarted);
        let config = if rollback {
            service.spec.rollback
        } else {
            service.spec.update
        };
        let total = queue.len();
        let lanes = match usize::try_from(config.parallelism) {
            Ok(0) | Err(_) => total,
            Ok(n) => n.min(total),
        };
        Some(Updater {
            service,
            config,
            rollback,
            total,
            queue,
            lanes: vec![Lane::Idle; lanes],
            updated: BTreeMap::new(),
            failed: BTreeSet::new(),
            noted: BTreeSet::new(),
            monitor_until: None,
        })
    }

    /// Input: a task of this service changed.
    pub(crate) fn note(&mut self, task: &Id) {
        if self.updated.contains_key(task) {
            self.noted.insert(*task);
        }
    }

    /// Slots left to start, and slots being worked on.
    pub(crate) fn progress(&self) -> (usize, usize, usize) {
        let busy = self
            .lanes
            .iter()
            .filter(|l| matches!(l, Lane::Starting(_) | Lane::Running { .. }))
            .count();
        (self.total, self.queue.len(), busy)
    }

    /// When this update next needs a tick without any event.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        let sleeping = self.lanes.iter().filter_map(|l| match l {
            Lane::Sleeping(t) => Some(*t),
            _ => None,
        });
        sleeping.chain(self.monitor_until).min()
    }

    fn monitor(&self) -> Duration {
        if self.config.delay >= self.config.monitor {
            self.config.delay + Duration::from_secs(1)
        } else {
            self.config.monitor
        }
    }

    /// Looks at noted tasks: records when they reached running and counts failures. Returns true if
    /// the failure action stopped the update.
    fn check_failures(&mut self, cx: &mut Ctx<'_, '_>) -> bool {
        for id in std::mem::take(&mut self.noted) {
            let Some(t) = cx.task(&id) else { continue };
            let Some(since) = self.updated.get(&id).copied() else {
                continue;
            };
            let st = t.status.state;
            if st > TaskState::Running && self.config.failure_action != FailureAction::Continue {
                let in_window = since.is_none_or(|s| cx.now.since(s) <= self.config.monitor);
                if in_window && self.failed.insert(id) && self.failure_triggers(cx, &id) {
                    return true;
                }
            }
            if st >= TaskState::Running && since.is_none() {
                self.updated.insert(id, Some(cx.now));
            }
        }
        false
    }

    fn failure_triggers(&mut self, cx: &mut Ctx<'_, '_>, task: &Id) -> bool {
        let ratio = self.failed.len() as f64 / self.total.max(1) as f64;
        if ratio <= self.config.max_failure_ratio {
            return false;
        }
        match self.config.failure_action {
            FailureAction::Continue => false,
            FailureAction::Pause => {
                let msg =
                    format!("update paused due to failure or early termination of task {task}");
                pause(cx, &self.service, msg);
                true
            }
            FailureAction::Rollback if self.rollback => {
                let msg =
                    format!("rollback paused due to failure or early termination of task {task}");
                pause(cx, &self.service, msg);
                true
            }
            FailureAction::Rollback => {
                roll_back(cx, &self.service, task);
                true
            }
        }
    }

    /// Advances the update as far as the store allows at `cx.now`.
    pub(crate) fn advance(
        &mut self,
        cx: &mut Ctx<'_, '_>,
        restarts: &mut RestartSupervisor,
    ) -> Outcome {
        if self.check_failures(cx) {
            return Outcome::Finished;
        }
        loop {
            let mut progressed = false;
            for i in 0..self.lanes.len() {
                let lane = self.lanes[i].clone();
                let next = match lane {
                    Lane::Sleeping(until) if until <= cx.now => Some(Lane::Idle),
                    Lane::Sleeping(_) => None,
                    Lane::Idle => self
                        .queue
                        .pop_front()
                        .map(|key| self.start_slot(cx, restarts, key)),
                    Lane::Starting(id) => {
                        let started = cx
                            .task(&id)
                            .is_none_or(|t| t.desired_state >= TaskState::Running);
                        started.then(|| self.after_slot(cx))
                    }
                    Lane::Running {
                        task,
                        start_first,
                        ref old,
                    } => self.check_running(cx, task, start_first, old),
                };
                if let Some(next) = next {
                    progressed |= next != self.lanes[i] || matches!(next, Lane::Idle);
                    self.lanes[i] = next;
                }
            }
            if !progressed || self.queue.is_empty() && self.lanes.iter().all(|l| *l == Lane::Idle) {
                break;
            }
        }
        if !self.queue.is_empty() || self.lanes.iter().any(|l| *l != Lane::Idle) {
            self.monitor_until = None;
            return Outcome::Continue;
        }
        let until = *self
            .monitor_until
            .get_or_insert(later(cx.now, self.monitor()));
        if cx.now >= until {
            complete(cx, &self.service);
            return Outcome::Finished;
        }
        Outcome::Continue
    }

    /// The lane after a slot is done: asleep for `delay`, or idle.
    fn after_slot(&self, cx: &Ctx<'_, '_>) -> Lane {
        if self.config.delay.is_zero() {
            Lane::Idle
        } else {
            Lane::Sleeping(later(cx.now, self.config.delay))
        }
    }

    fn check_running(
        &mut self,
        cx: &mut Ctx<'_, '_>,
        id: Id,
        start_first: bool,
        old: &[Id],
    ) -> Option<Lane> {
        let Some(t) = cx.task(&id) else {
            return Some(self.after_slot(cx));
        };
        if t.status.state < TaskState::Running {
            if t.desired_state > TaskState::Running {
                // Shut down before it ran (scaled down, service removed): nothing to wait for.
                return Some(self.after_slot(cx));
            }
            return None;
        }
        if let Some(since) = self.updated.get_mut(&id) {
            since.get_or_insert(cx.now);
        }
        if start_first && t.status.state == TaskState::Running {
            for o in old {
                if let Some(ot) = cx.task(o) {
                    if ot.desired_state <= TaskState::Running {
                        cx.set_desired(&ot, TaskState::Shutdown);
                    }
                }
            }
        }
        Some(self.after_slot(cx))
    }

    /// Takes one slot: reuse a clean task if the slot has one, otherwise create the replacement.
    fn start_slot(
        &mut self,
        cx: &mut Ctx<'_, '_>,
        restarts: &mut RestartSupervisor,
        key: SlotKey,
    ) -> Lane {
        let tasks = live_tasks(cx, &self.service, key);
        if tasks.is_empty() {
            return Lane::Idle;
        }
        let clean_running = tasks
            .iter()
            .find(|t| t.desired_state == TaskState::Running && !dirty(cx, &self.service, t));
        let clean_waiting = tasks
            .iter()
            .rev()
            .find(|t| t.desired_state < TaskState::Running && !dirty(cx, &self.service, t));
        if let Some(keep) = clean_running.or(clean_waiting).cloned() {
            let mut stopped = None;
            for t in tasks.iter().filter(|t| t.id != keep.id) {
                cx.set_desired(t, TaskState::Shutdown);
                stopped = Some(t.id);
            }
            if keep.desired_state == TaskState::Running {
                return self.after_slot(cx);
            }
            restarts.delay_start(keep.id, stopped, Duration::ZERO, cx.now);
            return Lane::Starting(keep.id);
        }
        let (slot, node) = match key {
            SlotKey::Slot(n) => (n, None),
            SlotKey::Node(n) => (0, Some(n)),
        };
        // Start-first keeps the old task serving until its replacement runs; when no old task has
        // reached a node yet (all pending: nothing to place them on), there is nothing to keep up,
        // and starting first would only pile a second pending task into the slot.
        let start_first = self.config.order == UpdateOrder::StartFirst
            && tasks.iter().any(|t| t.status.state >= TaskState::Assigned);
        let desired = if start_first {
            TaskState::Running
        } else {
            TaskState::Ready
        };
        let new_id = cx.create_task(&self.service, slot, node, desired);
        self.updated.insert(new_id, None);
        let old: Vec<Id> = tasks.iter().map(|t| t.id).collect();
        if !start_first {
            for t in &tasks {
                cx.set_desired(t, TaskState::Shutdown);
            }
            restarts.delay_start(new_id, old.last().copied(), Duration::ZERO, cx.now);
        }
        Lane::Running {
            task: new_id,
            start_first,
            old,
        }
    }
}
