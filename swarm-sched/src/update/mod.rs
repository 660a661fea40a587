//! Rolling updates and rollbacks.
//!
//! # Rules (SEMANTICS.md, "Rolling update")
//! - A slot is dirty if its task's spec differs from the service's (a changed `force_update`
//!   counter included) or it holds more than one live task. A change of placement alone leaves a
//!   task whose node still satisfies the new constraints in place ([`is_task_dirty`]).
//! - `parallelism` slots at a time (0 = all), `delay` after each slot; `stop-first` shuts the old task
//!   down and starts the new one once the old one stopped (wait capped at 1 min); `start-first`
//!   starts the new task and shuts the old one down once the new one runs.
//! - A new task that stops before running, or within `monitor` after it started running, is a
//!   failure. When failures / dirty slots exceeds `max_failure_ratio`, `failure_action` applies:
//!   `pause` (status `paused`, resumed only by the next service update), `continue`, or `rollback`
//!   (spec := previous spec, previous spec cleared, status `rollback_started`, and the rollback runs
//!   with the rollback config). A failing rollback pauses (`rollback_paused`); it never rolls back.
//! - After the last slot the update watches `monitor` more (or `delay` + 1 s if the delay is longer),
//!   then the status becomes `completed` (`rollback_completed`).
//! - A new spec cancels the update in progress; the next reconciliation starts one for the new spec.
//!
//! Status messages are SwarmKit's, as `docker service inspect` shows them: `update in progress`,
//! `update completed`, `update paused due to failure or early termination of task <id>`,
//! `update rolled back due to failure or early termination of task <id>`,
//! `rollback paused due to failure or early termination of task <id>`,
//! `manually requested rollback`, `rollback completed`.
//!
//! # Service transitions for the control API
//! [`apply_service_update`] and [`rollback_service`] compute the new service object a control API
//! writes for `docker service update` and `docker service rollback` (as SwarmKit's control API does);
//! the updater then reacts to the written service.
//!
//! # Driver contract
//! [`UpdateSupervisor`] is owned and driven by [`crate::orchestrator::Orchestrator`]: the
//! orchestrators hand it each service's live slots on every reconciliation, task events are noted,
//! and every tick advances each update; [`UpdateSupervisor::next_deadline`] (a delay ending, a
//! monitor window closing) feeds the orchestrator's own deadline. In-memory state is only the
//! progress of running updates; after a leader change the orchestrator's full pass restarts them
//! from the store (the update status says an update is in progress; clean slots are skipped).

mod dirty;
mod updater;

use std::collections::BTreeMap;
use std::sync::Arc;

use swarm_core::objects::service::{JobStatus, UpdateState, UpdateStatus};
use swarm_core::{Id, Service, ServiceSpec, Task, Timestamp};
use thiserror::Error;

pub use dirty::is_task_dirty;
pub(crate) use updater::SlotKey;
pub use updater::{MSG_COMPLETED, MSG_MANUAL_ROLLBACK, MSG_ROLLBACK_COMPLETED, MSG_UPDATING};

use crate::orchestrator::context::Ctx;
use crate::restart::RestartSupervisor;
use updater::{Outcome, Updater};

/// Why a rollback was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RollbackError {
    /// The service was never updated, or its previous spec was already used by a rollback.
    #[error("service {service} does not have a previous spec: there is nothing to roll back to; update the service instead")]
    NoPreviousSpec {
        /// The service's name.
        service: String,
    },
}

/// The service after `docker service update` with `new_spec`, as SwarmKit's control API writes it:
/// the current spec becomes the previous one, `spec_version` becomes the service's current version
/// (so every task made before is recognisably older), the update status is reset so the updater starts
/// afresh, and a job starts a new iteration. Validation (name and mode unchanged, spec rules) is the
/// caller's: see `swarm_core::validate::validate_service_update`.
pub fn apply_service_update(service: &Service, new_spec: ServiceSpec, now: Timestamp) -> Service {
    let mut s = service.clone();
    s.previous_spec = Some(std::mem::replace(&mut s.spec, new_spec));
    s.previous_spec_version = Some(s.spec_version);
    s.spec_version = s.meta.version;
    s.update_status = None;
    if s.spec.mode.is_job() {
        let mut job = s.job_status.take().unwrap_or_default();
        job.job_iteration.0 = job.job_iteration.0.saturating_add(1);
        job.last_execution = now;
        s.job_status = Some(JobStatus { ..job });
    }
    s
}

/// The service after `docker service rollback`, as SwarmKit's control API writes it: the previous
/// spec becomes current and the current one becomes previous (so a second rollback undoes the
/// first), with status `rollback_started`, "manually requested rollback". The updater then rolls
/// the tasks back with the rollback config.
pub fn rollback_service(service: &Service, now: Timestamp) -> Result<Service, RollbackError> {
    let Some(prev) = service.previous_spec.clone() else {
        return Err(RollbackError::NoPreviousSpec {
            service: service.spec.annotations.name.clone(),
        });
    };
    let mut s = service.clone();
    let cur_version = s.spec_version;
    s.previous_spec = Some(std::mem::replace(&mut s.spec, prev));
    s.spec_version = s.previous_spec_version.unwrap_or(s.meta.version);
    s.previous_spec_version = Some(cur_version);
    s.update_status = Some(UpdateStatus {
        state: UpdateState::RollbackStarted,
        started_at: now,
        completed_at: None,
        message: MSG_MANUAL_ROLLBACK.into(),
    });
    Ok(s)
}

/// A running update, as [`UpdateSupervisor::updates`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateProgress {
    /// Dirty slots when the update started.
    pub total: usize,
    /// Slots not yet started.
    pub queued: usize,
    /// Slots being replaced right now.
    pub in_flight: usize,
}

/// All running updates, one per service. See the module docs for the rules and the contract.
#[derive(Debug, Default)]
pub struct UpdateSupervisor {
    updates: BTreeMap<Id, Updater>,
}

impl UpdateSupervisor {
    /// No updates.
    pub fn new() -> Self {
        Self::default()
    }

    /// The running updates and how far each has got.
    pub fn updates(&self) -> impl Iterator<Item = (Id, UpdateProgress)> + '_ {
        self.updates.iter().map(|(id, u)| {
            let (total, queued, in_flight) = u.progress();
            (
                *id,
                UpdateProgress {
                    total,
                    queued,
                    in_flight,
                },
            )
        })
    }

    /// Whether `service` has an update running.
    pub fn is_updating(&self, service: &Id) -> bool {
        self.updates.contains_key(service)
    }

    /// The earliest time an update needs a tick without any event.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.updates
            .values()
            .filter_map(Updater::next_deadline)
            .min()
    }

    /// Cancels the update of a service.
    pub(crate) fn cancel(&mut self, service: &Id) {
        self.updates.remove(service);
    }

    /// Drops every update (leadership lost).
    pub(crate) fn clear(&mut self) {
        self.updates.clear();
    }

    /// Input: a task changed; failures of tasks an update created count against it.
    pub(crate) fn note_task(&mut self, task: &Task) {
        if let Some(u) = self.updates.get_mut(&task.service_id) {
            u.note(&task.id);
        }
    }

    /// Called by the orchestrators on every reconciliation with the service's live slots. Keeps an
    /// update already working towards this spec; otherwise cancels it and starts a new one.
    pub(crate) fn update(
        &mut self,
        cx: &mut Ctx<'_, '_>,
        service: &Arc<Service>,
        slots: Vec<(SlotKey, Vec<Arc<Task>>)>,
    ) {
        if let Some(u) = self.updates.get(&service.id) {
            if u.service.spec_version == service.spec_version && u.service.spec == service.spec {
                return;
            }
            self.updates.remove(&service.id);
        }
        if let Some(u) = Updater::start(cx, service.clone(), slots) {
            self.updates.insert(service.id, u);
        }
    }

    /// Advances every running update.
    pub(crate) fn advance(&mut self, cx: &mut Ctx<'_, '_>, restarts: &mut RestartSupervisor) {
        let ids: Vec<Id> = self.updates.keys().copied().collect();
        for id in ids {
            let Some(u) = self.updates.get_mut(&id) else {
                continue;
            };
            if cx.service(&id).is_none() || u.advance(cx, restarts) == Outcome::Finished {
                self.updates.remove(&id);
            }
        }
    }
}
