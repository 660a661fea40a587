//! The restart supervisor: replaces tasks that stopped, honouring the service's restart policy, and
//! starts replacements only after their delay and after the task they replace has stopped.
//!
//! # Rules (SEMANTICS.md, "Restart policy")
//! - Condition `none`: never restart; `on-failure`: unless the task completed; `any`: always, except
//!   that a completed *job* task is done, not restarted.
//! - `max_attempts` (0 = unlimited) counts restarts of one slot (replicated) or one node (global)
//!   within `window` (0 = ever). Only tasks of the failed task's spec version count: a new spec
//!   version starts the count again.
//! - The replacement takes the same slot (or node, for global services). It is created with desired
//!   state `ready` (the scheduler may place it and the agent prepare it) and moved to `running` once
//!   the restart delay (default 5 s) has passed **and** the old task has stopped; the wait for the old
//!   task is capped at [`OLD_TASK_TIMEOUT`] and skipped when the old task's node is down or gone.
//! - A task on a drained, down or removed node is replaced elsewhere with no delay. Ours: such a
//!   still-running task is moved whatever its restart condition and attempt count, because it did not
//!   exit by itself (SwarmKit would leave a `--restart-condition none` replica behind on drain).
//!
//! # Restart history comes from the store
//! SwarmKit keeps restart counts in memory and rebuilds them on leader change. Here the count is read
//! from the tasks of the slot each time: every task of the same spec version after the first one is
//! a restart, counted by its creation time. The task reaper keeps `max_attempts + 1` tasks per slot so
//! the count stays right. Nothing is lost when leadership moves, and a refused commit cannot leave the
//! history out of step with the store.
//!
//! # Driver contract
//! The supervisor is driven by [`crate::orchestrator::Orchestrator`], which owns it: restarts are
//! decided inside its `tick`, and [`RestartSupervisor::next_deadline`] feeds the orchestrator's own.
//! Its only state is the set of delayed starts (replacement id -> when it may start and which task
//! it waits for); after a leader change the orchestrator's full pass rebuilds it from tasks whose
//! desired state is still `ready`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::{RestartCondition, UpdateState};
use swarm_core::{Id, Service, ServiceMode, Task, TaskState, Timestamp};

use crate::orchestrator::context::{
    created_at, creation_key, later, node_gone, node_unavailable, Ctx,
};

/// How long a replacement waits for the task it replaces to stop before starting anyway (1 min).
pub const OLD_TASK_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a task is being replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestartReason {
    /// The task stopped (complete, failed, rejected, shut down, orphaned).
    Exited,
    /// The task's node was drained, went down or was removed.
    NodeUnavailable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct DelayedStart {
    /// Earliest start (restart delay elapsed).
    not_before: Timestamp,
    /// The task being replaced, if the start waits for it to stop.
    wait_for: Option<Id>,
    /// When waiting for `wait_for` is given up.
    give_up_at: Timestamp,
    /// The task itself failed during its delay: restart it once the delay is over.
    restart_when_due: bool,
}

/// Decides restarts and holds delayed starts. See the module docs for the rules and the contract.
#[derive(Debug, Default)]
pub struct RestartSupervisor {
    delayed: BTreeMap<Id, DelayedStart>,
    last_now: Timestamp,
}

impl RestartSupervisor {
    /// An empty supervisor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of replacements waiting to start.
    pub fn pending_starts(&self) -> usize {
        self.delayed.len()
    }

    /// Whether task `id` is waiting for a delayed start.
    pub fn is_delayed(&self, id: &Id) -> bool {
        self.delayed.contains_key(id)
    }

    /// The earliest time a delayed start may become due without any event: a delay ending or a wait
    /// for an old task reaching [`OLD_TASK_TIMEOUT`].
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.delayed
            .values()
            .map(|d| {
                if d.not_before > self.last_now || d.wait_for.is_none() {
                    d.not_before
                } else {
                    d.give_up_at
                }
            })
            .min()
    }

    /// Drops every delayed start (leadership lost; the next leader rebuilds them).
    pub(crate) fn clear(&mut self) {
        self.delayed.clear();
    }

    /// Forgets a deleted task.
    pub(crate) fn forget(&mut self, task: &Id) {
        self.delayed.remove(task);
    }

    /// Replaces `task` (whose desired state is still `running` or earlier) if the policy says so:
    /// the old task is told to shut down, a replacement is created in the same slot or on the same
    /// node, and its start is delayed. Returns the replacement's id.
    pub(crate) fn restart(
        &mut self,
        cx: &mut Ctx<'_, '_>,
        service: &Service,
        task: &Task,
        reason: RestartReason,
    ) -> Option<Id> {
        if let Some(d) = self.delayed.get_mut(&task.id) {
            if d.not_before > cx.now {
                // Still inside its own restart delay: avoid a tight restart loop.
                d.restart_when_due = true;
                return None;
            }
            self.delayed.remove(&task.id);
        }
        let current = cx.task(&task.id)?;
        if current.desired_state > TaskState::Running {
            return None;
        }
        cx.set_desired(&current, TaskState::Shutdown);

        let node = current.node_id.and_then(|n| cx.node(&n));
        let on_node = current.node_id.is_some();
        let moved =
            reason == RestartReason::NodeUnavailable && current.status.state <= TaskState::Running;
        if !moved && !should_restart(cx, &current, service) {
            return None;
        }
        let (slot, node_id) = match service.spec.mode {
            ServiceMode::Global | ServiceMode::GlobalJob => (0, current.node_id),
            ServiceMode::Replicated { .. } | ServiceMode::ReplicatedJob { .. } => {
                (current.slot, None)
            }
        };
        if matches!(service.spec.mode, ServiceMode::Replicated { .. })
            && slot_has_current_task(cx, service, &current)
        {
            // The slot already holds a live task of the current spec (a start-first update's
            // replacement, or an earlier restart's): a second one would run the slot twice.
            return None;
        }
        let new_id = cx.create_task(service, slot, node_id, TaskState::Ready);
        let delay = if on_node && node_unavailable(node.as_deref()) {
            Duration::ZERO
        } else {
            current.spec.restart.delay
        };
        let wait =
            !(on_node && node_gone(node.as_deref())) && current.status.state <= TaskState::Running;
        self.delay_start(new_id, wait.then_some(current.id), delay, cx.now);
        Some(new_id)
    }

    /// Registers a delayed start: task `id` moves to desired `running` once `delay` has passed and
    /// (if `wait_for` is set) that task has stopped or [`OLD_TASK_TIMEOUT`] has passed.
    pub(crate) fn delay_start(
        &mut self,
        id: Id,
        wait_for: Option<Id>,
        delay: Duration,
        now: Timestamp,
    ) {
        self.delayed.insert(
            id,
            DelayedStart {
                not_before: later(now, delay),
                wait_for,
                give_up_at: later(now, OLD_TASK_TIMEOUT),
                restart_when_due: false,
            },
        );
    }

    /// Starts every delayed task that is due. Called once per tick, after the orchestrators.
    pub(crate) fn poll(&mut self, cx: &mut Ctx<'_, '_>) {
        let now = cx.now;
        self.last_now = now;
        let due: Vec<(Id, DelayedStart)> = self
            .delayed
            .iter()
            .filter(|(_, d)| d.not_before <= now)
            .map(|(id, d)| (*id, d.clone()))
            .collect();
        for (id, d) in due {
            let Some(task) = cx.task(&id) else {
                self.delayed.remove(&id);
                continue;
            };
            if task.desired_state >= TaskState::Running {
                self.delayed.remove(&id);
                continue;
            }
            if d.restart_when_due {
                self.delayed.remove(&id);
                if let Some(service) = cx.service(&task.service_id) {
                    self.restart(cx, &service, &task, RestartReason::Exited);
                }
                continue;
            }
            if let Some(old) = d.wait_for {
                if now < d.give_up_at && !old_task_stopped(cx, &old) {
                    continue;
                }
            }
            self.delayed.remove(&id);
            cx.set_desired(&task, TaskState::Running);
        }
    }

    /// Rebuilds delayed starts after a leader change: every task still desired `ready` gets the rest
    /// of its restart delay (counted from its creation) and waits for any old task of its slot that
    /// is still running.
    pub(crate) fn recover(&mut self, cx: &mut Ctx<'_, '_>) {
        let ready: Vec<Id> = cx
            .store()
            .tasks_by_desired_state(TaskState::Ready)
            .map(|t| t.id)
            .collect();
        for id in ready {
            if self.delayed.contains_key(&id) {
                continue;
            }
            let Some(task) = cx.task(&id) else { continue };
            if task.desired_state != TaskState::Ready || task.status.state > TaskState::Complete {
                continue;
            }
            let end = later(created_at(&task, cx.now), task.spec.restart.delay);
            let remaining = end.since(cx.now);
            let Some(service) = cx.service(&task.service_id) else {
                continue;
            };
            let peers = peers_of(cx, &service, &task);
            let old = peers
                .iter()
                .find(|t| {
                    t.id != task.id
                        && t.desired_state > TaskState::Running
                        && (TaskState::Assigned..=TaskState::Running).contains(&t.status.state)
                })
                .map(|t| t.id);
            self.delay_start(id, old, remaining, cx.now);
        }
    }
}

/// Whether the task a replacement waits for has stopped: gone, past running, never placed, or on a
/// node that is down or gone.
fn old_task_stopped(cx: &Ctx<'_, '_>, old: &Id) -> bool {
    let Some(t) = cx.task(old) else { return true };
    if t.status.state > TaskState::Running || t.status.state < TaskState::Assigned {
        return true;
    }
    match t.node_id {
        Some(n) => node_gone(cx.node(&n).as_deref()),
        None => true,
    }
}

/// The tasks that share `task`'s slot: the same slot number, or the same node for global services.
pub(crate) fn peers_of(cx: &Ctx<'_, '_>, service: &Service, task: &Task) -> Vec<Arc<Task>> {
    match (service.spec.mode.is_global(), task.node_id) {
        (true, Some(n)) => cx.service_node_tasks(&task.service_id, &n),
        _ => cx.slot_tasks(&task.service_id, task.slot),
    }
}

/// Whether the restart policy of `task` allows replacing it (see the module docs).
pub(crate) fn should_restart(cx: &Ctx<'_, '_>, task: &Task, service: &Service) -> bool {
    let policy = task.spec.restart;
    let completed = task.status.state == TaskState::Complete;
    match policy.condition {
        RestartCondition::None => return false,
        RestartCondition::OnFailure if completed => return false,
        RestartCondition::Any if completed && service.spec.mode.is_job() => return false,
        _ => {}
    }
    if policy.max_attempts == 0 {
        return true;
    }
    let mut history = peers_of(cx, service, task);
    history.sort_by_key(|t| creation_key(t));
    let Some(idx) = history.iter().position(|t| t.id == task.id) else {
        return true;
    };
    let mut start = idx;
    while start > 0 && history[start - 1].spec_version == task.spec_version {
        start -= 1;
    }
    let restarts = history.get(start + 1..=idx).unwrap_or(&[]);
    let count = if policy.window.is_zero() {
        restarts.len()
    } else {
        let at = if task.status.timestamp == Timestamp::ZERO {
            cx.now
        } else {
            task.status.timestamp
        };
        let lookback = Timestamp(at.as_nanos().saturating_sub(duration_nanos(policy.window)));
        restarts
            .iter()
            .filter(|t| created_at(t, cx.now) > lookback)
            .count()
    };
    (count as u64) < policy.max_attempts
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether `task`'s slot holds another task of `service`'s current spec version that is still
/// meant to run (desired `running` or earlier: a delayed start counts).
fn slot_has_current_task(cx: &Ctx<'_, '_>, service: &Service, task: &Task) -> bool {
    cx.slot_tasks(&service.id, task.slot).iter().any(|t| {
        t.id != task.id
            && t.desired_state <= TaskState::Running
            && t.spec_version == service.spec_version
    })
}

/// The tasks of one slot (or node) that the orchestrator and updater work with: those still desired
/// to run; or, if none, the newest task when it stopped and must not be restarted (so its slot stays
/// taken and a later spec change still updates it). During a rollback such slots are given up so the
/// rollback converges.
pub(crate) fn updatable_in_slot(
    cx: &Ctx<'_, '_>,
    slot: &[Arc<Task>],
    service: &Service,
) -> Vec<Arc<Task>> {
    let live: Vec<Arc<Task>> = slot
        .iter()
        .filter(|t| t.desired_state <= TaskState::Running)
        .cloned()
        .collect();
    if !live.is_empty() {
        return live;
    }
    if service
        .update_status
        .as_ref()
        .is_some_and(|u| u.state == UpdateState::RollbackStarted)
    {
        return Vec::new();
    }
    match slot.iter().max_by_key(|t| creation_key(t)) {
        Some(newest) if !should_restart(cx, newest, service) => vec![newest.clone()],
        _ => Vec::new(),
    }
}
