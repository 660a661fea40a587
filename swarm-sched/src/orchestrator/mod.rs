//! Orchestration: turn services into tasks and keep them there.
//!
//! [`Orchestrator`] is the leader-only loop that owns everything between a service spec and the
//! scheduler: the replicated, global and job orchestrators, node-down and drain handling, the
//! constraint enforcer, the restart supervisor, the rolling updater and the task reaper. It is a
//! pure state machine: it reads the store, remembers what store events made dirty, and returns
//! [`StoreAction`]s; it never sleeps, never reads a clock and takes task ids from the caller's RNG.
//!
//! # Driver contract (call order)
//! 1. On becoming leader: [`Orchestrator::handle_became_leader`] (forgets in-memory progress and
//!    schedules one full pass over the store), then `tick`.
//! 2. Inputs: every store event, in order, to [`Orchestrator::handle_event`] (a watch with no gap:
//!    `SharedStore::view_and_watch`). Events only mark work dirty; they are cheap.
//! 3. Output: after each [`Event::Commit`] marker, and whenever `now >= `
//!    [`Orchestrator::next_deadline`], call [`Orchestrator::tick`] with the committed store, the time
//!    and an RNG, and propose the returned actions (the driver may split them into batches of 200).
//!    `tick` is cheap when nothing is dirty or due. Apply the actions before the next `tick` (the
//!    next tick reads the store they produced).
//! 4. If a proposal is refused (a version conflict with a concurrent writer), call
//!    [`Orchestrator::handle_commit_failed`]: the next tick re-derives everything from the store.
//!
//! Timers are outputs: [`Orchestrator::next_deadline`] is the earliest restart delay, old-task wait,
//! update delay or monitor window, or 24 h down-node deadline that needs a tick without an event.
//!
//! # Layout
//! - `context` (crate-private): the tick's transaction view and node facts.
//! - `replicated`, `global`, `jobs`: one reconciler per service mode.
//! - `nodes`: drained/down nodes, orphaning after 24 h, the constraint enforcer.
//! - `sim` (feature `testing`): a virtual-clock harness that drives the loop with simulated agents.

pub(crate) mod context;
mod global;
mod jobs;
mod nodes;
mod replicated;
#[cfg(feature = "testing")]
pub mod sim;

use std::collections::{BTreeMap, BTreeSet};

use rand_core::RngCore;
use swarm_core::{
    Event, Id, Node, Object, Service, ServiceMode, Store, StoreAction, Task, TaskState, Timestamp,
    Tx,
};

pub use context::MAX_NEW_TASKS_PER_TICK;
pub use nodes::{ENFORCER_ERR, ENFORCER_MESSAGE, ORPHAN_AFTER};

use crate::reaper::TaskReaper;
use crate::restart::{RestartReason, RestartSupervisor};
use crate::update::UpdateSupervisor;
use context::{node_unavailable, Ctx, SpecCache};
use nodes::DownNodes;

/// What a node event asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct NodeWork {
    /// Run the constraint enforcer on it.
    enforce: bool,
    /// Reconcile global services on it.
    global: bool,
}

/// The orchestration loop. See the module docs for the driver contract.
#[derive(Debug)]
pub struct Orchestrator {
    full_pass: bool,
    services: BTreeSet<Id>,
    tasks: BTreeSet<Id>,
    /// Tasks that reached `running`: their service is reconciled if their slot holds another live
    /// task (a start-first slot's old task, see [`started_beside_others`]). A vector: a task
    /// enters `running` once, and a push costs nothing where an ordered set would take a cold
    /// descent per task start at a million tasks.
    started: Vec<Id>,
    nodes: BTreeMap<Id, NodeWork>,
    restarts: RestartSupervisor,
    updates: UpdateSupervisor,
    reaper: TaskReaper,
    down: DownNodes,
    specs: SpecCache,
}

impl Default for Orchestrator {
    fn default() -> Self {
        Self::new()
    }
}

impl Orchestrator {
    /// A new loop; its first tick is a full pass.
    pub fn new() -> Self {
        Orchestrator {
            full_pass: true,
            services: BTreeSet::new(),
            tasks: BTreeSet::new(),
            started: Vec::new(),
            nodes: BTreeMap::new(),
            restarts: RestartSupervisor::new(),
            updates: UpdateSupervisor::new(),
            reaper: TaskReaper::new(),
            down: DownNodes::default(),
            specs: SpecCache::default(),
        }
    }

    /// The restart supervisor (read-only, for inspection).
    pub fn restarts(&self) -> &RestartSupervisor {
        &self.restarts
    }

    /// The running rolling updates (read-only, for inspection).
    pub fn updates(&self) -> &UpdateSupervisor {
        &self.updates
    }

    /// Whether events left work for the next tick.
    pub fn has_work(&self) -> bool {
        self.full_pass
            || !self.services.is_empty()
            || !self.tasks.is_empty()
            || !self.started.is_empty()
            || !self.nodes.is_empty()
    }

    /// Input: this node became leader. In-memory progress from an earlier term is dropped and the
    /// next tick looks at the whole store.
    pub fn handle_became_leader(&mut self) {
        self.restarts.clear();
        self.updates.clear();
        self.down.clear();
        self.full_pass = true;
    }

    /// Input: the actions of the last tick were not committed. The next tick re-derives its work
    /// from the store.
    pub fn handle_commit_failed(&mut self) {
        self.full_pass = true;
    }

    /// Input: a batch of store events, in order.
    pub fn handle_events<'e>(&mut self, events: impl IntoIterator<Item = &'e Event>) {
        for e in events {
            self.handle_event(e);
        }
    }

    /// Input: one store event.
    pub fn handle_event(&mut self, event: &Event) {
        self.reaper.handle_event(event);
        match event {
            Event::Created(Object::Service(s))
            | Event::Updated {
                new: Object::Service(s),
                ..
            } => {
                self.services.insert(s.id);
            }
            Event::Removed(Object::Service(s)) => {
                self.services.insert(s.id);
                self.updates.cancel(&s.id);
                self.specs.forget(&s.id);
            }
            Event::Updated {
                old: Object::Task(o),
                new: Object::Task(n),
            } => {
                if n.desired_state <= TaskState::Running && n.status.state > TaskState::Running {
                    self.tasks.insert(n.id);
                }
                if o.status.state != n.status.state {
                    self.updates.note_task(n);
                    if n.status.state == TaskState::Running && n.desired_state == TaskState::Running
                    {
                        self.started.push(n.id);
                    }
                }
            }
            Event::Removed(Object::Task(t)) => {
                if t.desired_state <= TaskState::Running {
                    self.services.insert(t.service_id);
                }
                self.restarts.forget(&t.id);
            }
            Event::Created(Object::Node(n)) | Event::Removed(Object::Node(n)) => {
                self.nodes.insert(
                    n.id,
                    NodeWork {
                        enforce: true,
                        global: true,
                    },
                );
            }
            Event::Updated {
                old: Object::Node(o),
                new: Object::Node(n),
            } => {
                let enforce = nodes::enforcer_relevant(o, n);
                if enforce || o.status.state != n.status.state {
                    let w = self.nodes.entry(n.id).or_default();
                    w.enforce |= enforce;
                    w.global = true;
                }
            }
            Event::Reset { .. } => self.full_pass = true,
            _ => {}
        }
    }

    /// The earliest time a tick is needed even if no event arrives.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        [
            self.restarts.next_deadline(),
            self.updates.next_deadline(),
            self.down.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Output: the actions that bring the store closer to what its services ask for, at `now`.
    #[must_use]
    pub fn tick(
        &mut self,
        store: &Store,
        now: Timestamp,
        rng: &mut impl RngCore,
    ) -> Vec<StoreAction> {
        let mut tx = Tx::new(store);
        self.tick_tx(&mut tx, now, rng);
        tx.into_actions()
    }

    /// Output: like [`Orchestrator::tick`], recording the actions in a caller's transaction.
    pub fn tick_tx(&mut self, tx: &mut Tx<'_>, now: Timestamp, rng: &mut dyn RngCore) {
        let Orchestrator {
            full_pass,
            services,
            tasks,
            started,
            nodes: node_work,
            restarts,
            updates,
            reaper,
            down,
            specs,
        } = self;
        {
            let mut cx = Ctx::new(tx, now, rng, specs);
            if std::mem::take(full_pass) {
                mark_everything(&cx, services, tasks, node_work);
                reaper.handle_full_pass();
                restarts.recover(&mut cx);
            }
            let node_work = std::mem::take(node_work);
            if !node_work.is_empty() {
                let globals: Vec<_> = cx
                    .store()
                    .iter::<Service>()
                    .filter(|s| s.spec.mode == ServiceMode::Global)
                    .map(|s| s.id)
                    .filter_map(|id| cx.service(&id))
                    .collect();
                for (id, work) in &node_work {
                    let node = cx.node(id);
                    down.observe(id, node.as_deref(), now);
                    if node_unavailable(node.as_deref()) {
                        nodes::evacuate(&mut cx, restarts, id);
                    } else if work.enforce {
                        nodes::enforce_constraints(&mut cx, id);
                    }
                    if work.global {
                        global::reconcile_node(&mut cx, &globals, id);
                    }
                }
                services.extend(
                    cx.store()
                        .iter::<Service>()
                        .filter(|s| s.spec.mode == ServiceMode::GlobalJob)
                        .map(|s| s.id),
                );
            }
            down.poll(&mut cx);
            for id in std::mem::take(tasks) {
                task_stopped(&mut cx, restarts, services, &id);
            }
            for id in std::mem::take(started) {
                if let Some(service) = started_beside_others(&cx, &id) {
                    services.insert(service);
                }
            }
            let mut again = BTreeSet::new();
            for id in std::mem::take(services) {
                if reconcile_service(&mut cx, restarts, updates, &id) {
                    again.insert(id);
                }
            }
            // Services that hit the per-tick creation cap continue at the next tick.
            services.extend(again);
            updates.advance(&mut cx, restarts);
            restarts.poll(&mut cx);
        }
        reaper.tick_tx(tx);
    }
}

/// The service of task `id` if the task runs, is meant to and shares its slot (its node, for a
/// global service) with another task still meant to run: a start-first slot whose old task still
/// runs beside it. Its reconciliation lets the updater (or, for a paused update, the surplus
/// check) shut the old task down: no other event would (defect 12 of the simulation).
fn started_beside_others(cx: &Ctx<'_, '_>, id: &Id) -> Option<Id> {
    let t = cx.task(id)?;
    if t.status.state != TaskState::Running || t.desired_state != TaskState::Running {
        return None;
    }
    let service = cx.service(&t.service_id)?;
    if !matches!(
        service.spec.mode,
        ServiceMode::Replicated { .. } | ServiceMode::Global
    ) {
        return None;
    }
    crate::restart::peers_of(cx, &service, &t)
        .iter()
        .any(|p| p.id != t.id && p.desired_state <= TaskState::Running)
        .then_some(service.id)
}

/// A task stopped while still desired running: restart it, shut it down, or let its job reconcile.
fn task_stopped(
    cx: &mut Ctx<'_, '_>,
    restarts: &mut RestartSupervisor,
    services: &mut BTreeSet<Id>,
    id: &Id,
) {
    let Some(t) = cx.task(id) else { return };
    if t.desired_state > TaskState::Running || t.status.state <= TaskState::Running {
        return;
    }
    let Some(service) = cx.service(&t.service_id) else {
        return;
    };
    match service.spec.mode {
        ServiceMode::Replicated { .. } => {
            restarts.restart(cx, &service, &t, RestartReason::Exited);
        }
        ServiceMode::Global => {
            if global::task_wants_restart(cx, &service, &t) {
                restarts.restart(cx, &service, &t, RestartReason::Exited);
            } else {
                cx.set_desired(&t, TaskState::Shutdown);
            }
        }
        ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob => {
            // The services pass that follows (same tick) restarts it within its job.
            services.insert(service.id);
        }
    }
}

fn reconcile_service(
    cx: &mut Ctx<'_, '_>,
    restarts: &mut RestartSupervisor,
    updates: &mut UpdateSupervisor,
    id: &Id,
) -> bool {
    let Some(service) = cx.service(id) else {
        // Removed: every task is to go; the agents stop them and the reaper deletes them.
        for t in cx.service_tasks(id) {
            cx.set_desired(&t, TaskState::Remove);
        }
        updates.cancel(id);
        return false;
    };
    match service.spec.mode {
        ServiceMode::Replicated { .. } => replicated::reconcile(cx, updates, &service),
        ServiceMode::Global => {
            global::reconcile(cx, updates, &service);
            false
        }
        ServiceMode::ReplicatedJob { .. } => jobs::reconcile_replicated(cx, restarts, &service),
        ServiceMode::GlobalJob => {
            jobs::reconcile_global(cx, restarts, &service);
            false
        }
    }
}

/// A full pass: every service, every stopped task and every node with a problem is looked at.
fn mark_everything(
    cx: &Ctx<'_, '_>,
    services: &mut BTreeSet<Id>,
    tasks: &mut BTreeSet<Id>,
    nodes: &mut BTreeMap<Id, NodeWork>,
) {
    let store = cx.store();
    services.extend(store.iter::<Service>().map(|s| s.id));
    for n in store.iter::<Node>() {
        if node_unavailable(Some(n)) || n.status.state == swarm_core::objects::node::NodeState::Down
        {
            nodes.entry(n.id).or_default();
        }
    }
    // Collected into ordered sets: the table's own order does not matter (`scan`).
    for t in store.scan::<Task>() {
        services.insert(t.service_id);
        if t.desired_state <= TaskState::Running {
            if t.status.state > TaskState::Running {
                tasks.insert(t.id);
            }
            if let Some(n) = t.node_id {
                if store.get::<Node>(&n).is_none() {
                    nodes.entry(n).or_default();
                }
            }
        }
    }
}
