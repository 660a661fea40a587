//! The orchestrators' window on one transaction: reads that see this tick's own writes, task
//! creation with shared specs, and the node facts placement constraints look at.
//!
//! Every orchestration step of a tick works through one [`Ctx`]. Reads go to the committed store's
//! indexes (by slot, by node, by service) and are then passed through the [`Tx`], so an object
//! written earlier in the same tick is seen in its new state; tasks created in this tick are tracked
//! here because the committed indexes do not know them yet. This keeps every read proportional to
//! the slot, node or service asked about, never to the size of the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand_core::RngCore;
use swarm_core::constraint::{parse_constraints, Constraint};
use swarm_core::objects::node::{NodeAvailability, NodeState};
use swarm_core::objects::service::TaskSpec;
use swarm_core::objects::task::NetworkAttachment;
use swarm_core::{
    Id, Network, Node, ObjectKind, Service, Task, TaskState, TaskStatus, Timestamp, Tx, Version,
};

/// Most tasks the replicated and job orchestrators create in one tick, all services together. A
/// service asking for more (a huge-but-allowed count, or many services scaled at once) gets them
/// over several ticks, so one tick never builds an unbounded transaction or allocation; the
/// driver then proposes each tick's actions in batches of at most 200 actions and 1.5 MiB
/// (`swarm_core::action::split_into_batches`). Global services are not counted: they create at
/// most one task per node.
pub const MAX_NEW_TASKS_PER_TICK: u64 = 20_000;

/// Message of a task an orchestrator creates (it waits for the scheduler).
pub(crate) const PENDING_MESSAGE: &str = "pending task scheduling";

/// One shared copy of each service's current task spec, so that every task created from one service
/// version holds the same `Arc<TaskSpec>`.
#[derive(Debug, Default)]
pub(crate) struct SpecCache {
    by_service: BTreeMap<Id, (Version, Arc<TaskSpec>)>,
}

impl SpecCache {
    /// The shared spec of `service`'s current version.
    pub(crate) fn get(&mut self, service: &Service) -> Arc<TaskSpec> {
        if let Some((v, spec)) = self.by_service.get(&service.id) {
            if *v == service.spec_version && **spec == service.spec.task {
                return spec.clone();
            }
        }
        let spec = Arc::new(service.spec.task.clone());
        self.by_service
            .insert(service.id, (service.spec_version, spec.clone()));
        spec
    }

    /// Forgets a removed service.
    pub(crate) fn forget(&mut self, service: &Id) {
        self.by_service.remove(service);
    }
}

/// A tick's context: the transaction, the time, the caller's randomness and the spec cache.
pub(crate) struct Ctx<'t, 'a> {
    pub(crate) tx: &'t mut Tx<'a>,
    pub(crate) now: Timestamp,
    rng: &'t mut dyn RngCore,
    specs: &'t mut SpecCache,
    created_by_slot: BTreeMap<(Id, u64), Vec<Id>>,
    created_by_node: BTreeMap<Id, Vec<Id>>,
    created_by_service: BTreeMap<Id, Vec<Id>>,
    /// New tasks the replicated and job orchestrators may still create this tick.
    new_task_budget: u64,
}

impl<'t, 'a> Ctx<'t, 'a> {
    pub(crate) fn new(
        tx: &'t mut Tx<'a>,
        now: Timestamp,
        rng: &'t mut dyn RngCore,
        specs: &'t mut SpecCache,
    ) -> Self {
        Ctx {
            tx,
            now,
            rng,
            specs,
            created_by_slot: BTreeMap::new(),
            created_by_node: BTreeMap::new(),
            created_by_service: BTreeMap::new(),
            new_task_budget: MAX_NEW_TASKS_PER_TICK,
        }
    }

    /// Takes up to `wanted` new tasks from this tick's budget ([`MAX_NEW_TASKS_PER_TICK`]);
    /// returns how many the caller may create.
    pub(crate) fn take_new_task_budget(&mut self, wanted: u64) -> u64 {
        let granted = wanted.min(self.new_task_budget);
        self.new_task_budget -= granted;
        granted
    }

    /// The committed store under the transaction.
    pub(crate) fn store(&self) -> &'a swarm_core::Store {
        self.tx.committed()
    }

    pub(crate) fn task(&self, id: &Id) -> Option<Arc<Task>> {
        self.tx.get::<Task>(id)
    }

    pub(crate) fn service(&self, id: &Id) -> Option<Arc<Service>> {
        self.tx.get::<Service>(id)
    }

    pub(crate) fn node(&self, id: &Id) -> Option<Arc<Node>> {
        self.tx.get::<Node>(id)
    }

    fn resolve(
        &self,
        committed: impl Iterator<Item = Id>,
        created: Option<&Vec<Id>>,
    ) -> Vec<Arc<Task>> {
        committed
            .chain(created.into_iter().flatten().copied())
            .filter_map(|id| self.task(&id))
            .collect()
    }

    /// Tasks of one replica slot of a service.
    pub(crate) fn slot_tasks(&self, service: &Id, slot: u64) -> Vec<Arc<Task>> {
        let committed = self.store().tasks_by_slot(service, slot).map(|t| t.id);
        self.resolve(committed, self.created_by_slot.get(&(*service, slot)))
            .into_iter()
            .filter(|t| t.slot == slot && t.service_id == *service)
            .collect()
    }

    /// Tasks assigned to a node (any service).
    pub(crate) fn node_tasks(&self, node: &Id) -> Vec<Arc<Task>> {
        let committed = self.store().tasks_by_node(node).map(|t| t.id);
        self.resolve(committed, self.created_by_node.get(node))
            .into_iter()
            .filter(|t| t.node_id == Some(*node))
            .collect()
    }

    /// Tasks of one service on one node (a global service's "slot").
    pub(crate) fn service_node_tasks(&self, service: &Id, node: &Id) -> Vec<Arc<Task>> {
        let mut out = self.node_tasks(node);
        out.retain(|t| t.service_id == *service);
        out
    }

    /// Every task of a service.
    pub(crate) fn service_tasks(&self, service: &Id) -> Vec<Arc<Task>> {
        let committed = self.store().tasks_by_service(service).map(|t| t.id);
        self.resolve(committed, self.created_by_service.get(service))
            .into_iter()
            .filter(|t| t.service_id == *service)
            .collect()
    }

    /// Records a changed task. The task was read through this context, so its version is the one the
    /// transaction holds and the write cannot conflict; a refused write (impossible by construction)
    /// is dropped rather than allowed to panic.
    pub(crate) fn put_task(&mut self, task: Task) {
        let _ = self.tx.update(task);
    }

    /// Records a changed service (read through this context).
    pub(crate) fn put_service(&mut self, service: Service) {
        let _ = self.tx.update(service);
    }

    /// Moves a task's desired state forward to `state`; never backwards.
    pub(crate) fn set_desired(&mut self, task: &Task, state: TaskState) {
        let Some(cur) = self.task(&task.id) else {
            return;
        };
        if cur.desired_state >= state {
            return;
        }
        let mut t = (*cur).clone();
        t.desired_state = state;
        self.put_task(t);
    }

    /// Deletes a task.
    pub(crate) fn remove_task(&mut self, id: &Id) {
        let _ = self.tx.remove(ObjectKind::Task, id);
    }

    /// The network attachments of a new task of `service`: each network of the spec, looked up
    /// by id. A network that no longer exists is skipped (the store refuses to remove a network a
    /// service uses, so this only happens to a service written around that rule).
    fn attachments(&self, service: &Service) -> Vec<NetworkAttachment> {
        service
            .spec
            .task
            .networks
            .iter()
            .filter_map(|att| {
                let id = Id::parse(&att.target).ok()?;
                let network: Arc<Network> = self.tx.get::<Network>(&id)?;
                Some(NetworkAttachment {
                    network,
                    aliases: att.aliases.clone(),
                })
            })
            .collect()
    }

    /// Creates a task of `service`'s current spec in `slot` (or on `node`, for global services), in
    /// state pending, with the given desired state. Returns its id.
    pub(crate) fn create_task(
        &mut self,
        service: &Service,
        slot: u64,
        node: Option<Id>,
        desired: TaskState,
    ) -> Id {
        let id = Id::generate(&mut *self.rng);
        let job_iteration = service.spec.mode.is_job().then(|| {
            service
                .job_status
                .as_ref()
                .map(|j| j.job_iteration)
                .unwrap_or_default()
        });
        let task = Task {
            id,
            meta: Default::default(),
            service_id: service.id,
            service_annotations: service.spec.annotations.clone(),
            slot,
            node_id: node,
            spec: self.specs.get(service),
            spec_version: service.spec_version,
            status: TaskStatus {
                timestamp: self.now,
                state: TaskState::Pending,
                message: PENDING_MESSAGE.to_string(),
                ..Default::default()
            },
            desired_state: desired,
            job_iteration,
            assigned_secrets: Vec::new(),
            assigned_configs: Vec::new(),
            networks: self.attachments(service),
            ports: service_ports(service).to_vec(),
        };
        if self.tx.create(task).is_ok() {
            self.created_by_slot
                .entry((service.id, slot))
                .or_default()
                .push(id);
            self.created_by_service
                .entry(service.id)
                .or_default()
                .push(id);
            if let Some(n) = node {
                self.created_by_node.entry(n).or_default().push(id);
            }
        }
        id
    }
}

/// The published ports a new task of `service` records: the allocated endpoint's, or the spec's
/// while nothing has been allocated.
pub(crate) fn service_ports(service: &Service) -> &[swarm_core::objects::service::PortConfig] {
    if service.endpoint.ports.is_empty() {
        &service.spec.endpoint.ports
    } else {
        &service.endpoint.ports
    }
}

/// Ordering key for "which task came first": creation time, then version, then id. Tasks created in
/// the current (uncommitted) tick sort last.
pub(crate) fn creation_key(t: &Task) -> (u64, u64, Id) {
    if t.meta.version == Version(0) {
        (u64::MAX, u64::MAX, t.id)
    } else {
        (t.meta.created_at.as_nanos(), t.meta.version.0, t.id)
    }
}

/// When a task was created; `now` for a task created in this tick.
pub(crate) fn created_at(t: &Task, now: Timestamp) -> Timestamp {
    if t.meta.version == Version(0) {
        now
    } else {
        t.meta.created_at
    }
}

/// Whether tasks on this node must move or stop: the node is gone, down or drained.
pub(crate) fn node_unavailable(node: Option<&Node>) -> bool {
    match node {
        None => true,
        Some(n) => {
            n.status.state == NodeState::Down || n.spec.availability == NodeAvailability::Drain
        }
    }
}

/// Whether the node is gone or down (its tasks are not going to report anything).
pub(crate) fn node_gone(node: Option<&Node>) -> bool {
    node.is_none_or(|n| n.status.state == NodeState::Down)
}

/// The parsed placement constraints of a spec. Specs are validated when written; an expression that
/// still fails to parse is ignored, as SwarmKit's orchestrators do.
pub(crate) fn constraints_of(spec: &TaskSpec) -> Vec<Constraint> {
    parse_constraints(&spec.placement.constraints).unwrap_or_default()
}

/// Whether `node` satisfies every constraint.
pub(crate) fn node_matches(constraints: &[Constraint], node: &Node) -> bool {
    node.satisfies(constraints)
}

/// `t` moved forward by `d`, saturating at the far future.
pub(crate) fn later(t: Timestamp, d: std::time::Duration) -> Timestamp {
    Timestamp(
        t.as_nanos()
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    )
}
