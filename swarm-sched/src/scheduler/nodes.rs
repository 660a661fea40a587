//! Per-node scheduling state, kept current incrementally from store events.
//!
//! For every node: what is left of its resources, its active task count, its host ports in use, and
//! (per service) how many active tasks of that service it runs. A task *occupies* its node while its
//! observed state is assigned..running; while it occupies it reserves its resources and host ports,
//! and it is *active* (counts for spread, ranking and max-replicas) while its desired state is at most
//! `complete` (SwarmKit's rule: a task being shut down still holds its resources until it stops but
//! no longer counts as one of the service's replicas).
//!
//! Occupants are remembered per node id even for nodes not (or no longer) in the set, so that a node
//! created after its tasks (as can happen when events are replayed) is accounted correctly.
//!
//! Every task the scheduler follows has one entry in one task-keyed map ([`Tracked`]): waiting in
//! a batch, or occupying a node. A task moves between the two with one hash probe (queued ->
//! placed -> its own assignment coming back as an event), instead of one probe per map.

use std::collections::hash_map::Entry;

use std::sync::Arc;

use swarm_core::objects::node::{Node, Resources};
use swarm_core::Id;

use super::filter::{HostPort, StaticFilter};
use super::hash::{FxMap, FxSet, IdKey};
use super::index::Indexes;
use super::BatchKey;

/// Slot of a node in the set; stable while the node exists.
pub(crate) type NodeIdx = u32;

/// What the scheduler knows about one node.
#[derive(Debug)]
pub(crate) struct NodeInfo {
    /// The node as last seen.
    pub(crate) node: Arc<Node>,
    /// Its id as an ordering key.
    pub(crate) key: IdKey,
    /// Description resources minus the reservations of the tasks occupying it (may go negative if
    /// the node shrank under its tasks).
    pub(crate) available: Avail,
    /// Active tasks on the node (all services).
    pub(crate) active: u32,
    /// Host ports in use, with how many occupants use each.
    ports: Vec<(HostPort, u32)>,
    /// Marks the node as already considered by the batch being placed.
    pub(crate) epoch: u64,
}

impl NodeInfo {
    fn new(node: Arc<Node>) -> NodeInfo {
        let available = Avail::of(&node);
        NodeInfo {
            key: IdKey::of(&node.id),
            node,
            available,
            active: 0,
            ports: Vec::new(),
            epoch: 0,
        }
    }

    /// Whether a task on this node already publishes `port`.
    pub(crate) fn port_in_use(&self, port: HostPort) -> bool {
        self.ports.iter().any(|(p, _)| *p == port)
    }
}

/// A task occupying a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Occupant {
    /// The node.
    pub(crate) node: Id,
    /// The task's service.
    pub(crate) service: Id,
    /// Its reservations.
    pub(crate) reservations: Resources,
    /// Host ports it holds.
    pub(crate) ports: Arc<[HostPort]>,
    /// Whether it counts as an active task (desired state at most complete).
    pub(crate) active: bool,
}

/// What the scheduler knows of a task it follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tracked {
    /// Waiting for a node in the batch with this key.
    Queued(BatchKey),
    /// Occupying a node.
    OnNode(Occupant),
}

/// How [`NodeSet::queue`] found the task.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Already waiting in the same batch.
    Same,
    /// It was waiting in another batch (spec version changed): take it out of that one.
    Moved(BatchKey),
    /// Not waiting before (unknown, or occupying a node, which it no longer does).
    Fresh,
}

/// Every node and every occupant. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct NodeSet {
    slots: Vec<Option<NodeInfo>>,
    free: Vec<NodeIdx>,
    by_id: FxMap<Id, NodeIdx>,
    /// Every task followed: queued or occupying (see [`Tracked`]).
    tasks: FxMap<Id, Tracked>,
    node_tasks: FxMap<Id, FxSet<Id>>,
    service_nodes: FxMap<Id, NodeCounts>,
    indexes: Indexes,
    /// Bumped whenever capacity may have grown (a node changed or appeared, a task left a node or
    /// stopped counting): unschedulable tasks are retried only after it moves.
    generation: u64,
    epoch: u64,
}

impl NodeSet {
    /// The capacity generation (see the field docs).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Forces a retry of every unschedulable task.
    pub(crate) fn bump_generation(&mut self) {
        self.generation += 1;
    }

    /// A fresh batch stamp for [`NodeInfo::epoch`].
    pub(crate) fn next_epoch(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    /// Every slot (empty ones are `None`).
    pub(crate) fn slots(&self) -> &[Option<NodeInfo>] {
        &self.slots
    }

    /// The node in `idx`, if the slot is live.
    pub(crate) fn get(&self, idx: NodeIdx) -> Option<&NodeInfo> {
        self.slots.get(idx as usize).and_then(Option::as_ref)
    }

    /// Mutable access to the node in `idx`.
    pub(crate) fn get_mut(&mut self, idx: NodeIdx) -> Option<&mut NodeInfo> {
        self.slots.get_mut(idx as usize).and_then(Option::as_mut)
    }

    /// The slot of node `id`.
    pub(crate) fn idx_of(&self, id: &Id) -> Option<NodeIdx> {
        self.by_id.get(id).copied()
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Active tasks of `service` on node `idx`.
    pub(crate) fn service_count(&self, service: &Id, idx: NodeIdx) -> u32 {
        self.service_nodes.get(service).map_or(0, |m| m.get(idx))
    }

    /// Nodes running active tasks of `service`, with their counts.
    pub(crate) fn service_nodes(&self, service: &Id) -> Option<&NodeCounts> {
        self.service_nodes.get(service)
    }

    /// The eligibility indexes.
    pub(crate) fn indexes(&self) -> &Indexes {
        &self.indexes
    }

    /// The index position for `filter`, built if needed.
    pub(crate) fn eligible(&mut self, filter: &StaticFilter) -> usize {
        self.indexes.find_or_build(filter, &self.slots)
    }

    /// Adds a node or replaces its object (labels, availability, status, description...).
    pub(crate) fn upsert_node(&mut self, node: Arc<Node>) {
        self.generation += 1;
        if let Some(idx) = self.idx_of(&node.id) {
            let Some(info) = self.slots[idx as usize].as_mut() else {
                return;
            };
            self.indexes.node_removed(idx, info);
            let mut available = Avail::of(&node);
            for t in self.node_tasks.get(&node.id).into_iter().flatten() {
                if let Some(Tracked::OnNode(o)) = self.tasks.get(t) {
                    available.take(o.reservations, true);
                }
            }
            info.available = available;
            info.node = node;
            self.indexes.node_added(idx, info);
            return;
        }
        let id = node.id;
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as NodeIdx
            }
        };
        self.slots[idx as usize] = Some(NodeInfo::new(node));
        self.by_id.insert(id, idx);
        let tasks: Vec<Id> = self
            .node_tasks
            .get(&id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for t in tasks {
            if let Some(Tracked::OnNode(o)) = self.tasks.get(&t).cloned() {
                self.account(idx, &o, true);
            }
        }
        if let Some(info) = self.slots[idx as usize].as_ref() {
            self.indexes.node_added(idx, info);
        }
    }

    /// Forgets a node. Its occupants stay remembered (by node id) until their tasks move or go.
    pub(crate) fn remove_node(&mut self, id: &Id) {
        let Some(idx) = self.by_id.remove(id) else {
            return;
        };
        if let Some(info) = self.slots[idx as usize].take() {
            self.indexes.node_removed(idx, &info);
        }
        for t in self.node_tasks.get(id).into_iter().flatten() {
            if let Some(Tracked::OnNode(o)) = self.tasks.get(t) {
                if let Some(m) = self.service_nodes.get_mut(&o.service) {
                    if m.remove(idx) {
                        self.service_nodes.remove(&o.service);
                    }
                }
            }
        }
        self.free.push(idx);
    }

    /// Records that task `task` occupies `occ.node` (replacing any earlier record). A repeat of the
    /// current record is a no-op, so the scheduler's own assignments coming back as events cost
    /// nothing. Returns the batch the task was waiting in, if it was (the caller takes it out).
    pub(crate) fn occupy(&mut self, task: Id, occ: Occupant) -> Option<BatchKey> {
        // What the accounting below needs, copied out so that `occ` moves into the map without
        // touching its port list's reference count (a locked instruction on the hottest path).
        let (node, service, reservations, active) =
            (occ.node, occ.service, occ.reservations, occ.active);
        let ports = (!occ.ports.is_empty()).then(|| occ.ports.clone());
        let previous = match self.tasks.entry(task) {
            Entry::Vacant(v) => {
                v.insert(Tracked::OnNode(occ));
                None
            }
            Entry::Occupied(mut o) => match o.get_mut() {
                Tracked::OnNode(cur) if cur.node == node && cur.service == service => {
                    if cur.active == active {
                        return None;
                    }
                    cur.active = active;
                    if let Some(idx) = self.by_id.get(&node).copied() {
                        self.shift_active(idx, &service, active);
                    }
                    if !active {
                        self.generation += 1;
                    }
                    return None;
                }
                other => Some(std::mem::replace(other, Tracked::OnNode(occ))),
            },
        };
        let queued = match previous {
            Some(Tracked::OnNode(cur)) => {
                self.vacate(&task, &cur);
                None
            }
            Some(Tracked::Queued(k)) => Some(k),
            None => None,
        };
        if let Some(idx) = self.idx_of(&node) {
            let ports = ports.as_deref().unwrap_or(&[]);
            self.account_parts(idx, &service, reservations, ports, active, true);
        }
        self.node_tasks.entry(node).or_default().insert(task);
        queued
    }

    /// Whether task `task` is recorded on `node` for `service` with this `active` flag already
    /// (then [`NodeSet::occupy`] with the same facts would change nothing).
    pub(crate) fn occupies(&self, task: &Id, node: &Id, service: &Id, active: bool) -> bool {
        matches!(
            self.tasks.get(task),
            Some(Tracked::OnNode(cur))
                if cur.node == *node && cur.service == *service && cur.active == active
        )
    }

    /// Records that task `task` waits in batch `key` (no longer occupying any node).
    pub(crate) fn queue(&mut self, task: Id, key: BatchKey) -> Queued {
        let previous = match self.tasks.entry(task) {
            Entry::Vacant(v) => {
                v.insert(Tracked::Queued(key));
                return Queued::Fresh;
            }
            Entry::Occupied(mut o) => match o.get_mut() {
                Tracked::Queued(k) if *k == key => return Queued::Same,
                other => std::mem::replace(other, Tracked::Queued(key)),
            },
        };
        match previous {
            Tracked::Queued(k) => Queued::Moved(k),
            Tracked::OnNode(cur) => {
                self.vacate(&task, &cur);
                Queued::Fresh
            }
        }
    }

    /// Stops following task `task`: it no longer occupies any node. Returns the batch it was
    /// waiting in, if it was (the caller takes it out).
    pub(crate) fn untrack(&mut self, task: &Id) -> Option<BatchKey> {
        match self.tasks.remove(task)? {
            Tracked::Queued(k) => Some(k),
            Tracked::OnNode(cur) => {
                self.vacate(task, &cur);
                None
            }
        }
    }

    /// Every task followed (tests).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> impl Iterator<Item = (&Id, &Tracked)> {
        self.tasks.iter()
    }

    /// The tasks recorded on node `node` (tests).
    #[cfg(test)]
    pub(crate) fn tasks_on(&self, node: &Id) -> Vec<Id> {
        self.node_tasks
            .get(node)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Removes the footprint of `task`, which occupied `occ.node` as `occ` (its entry is already
    /// replaced or removed).
    fn vacate(&mut self, task: &Id, occ: &Occupant) {
        if let Some(set) = self.node_tasks.get_mut(&occ.node) {
            set.remove(task);
            if set.is_empty() {
                self.node_tasks.remove(&occ.node);
            }
        }
        if let Some(idx) = self.idx_of(&occ.node) {
            self.account(idx, occ, false);
            self.generation += 1;
        }
    }

    /// Adds (`add`) or removes an occupant's footprint on node `idx`.
    fn account(&mut self, idx: NodeIdx, occ: &Occupant, add: bool) {
        self.account_parts(
            idx,
            &occ.service,
            occ.reservations,
            &occ.ports,
            occ.active,
            add,
        );
    }

    /// [`NodeSet::account`] from the occupant's parts.
    fn account_parts(
        &mut self,
        idx: NodeIdx,
        service: &Id,
        reservations: Resources,
        ports: &[HostPort],
        active: bool,
        add: bool,
    ) {
        let Some(info) = self.slots.get_mut(idx as usize).and_then(Option::as_mut) else {
            return;
        };
        info.available.take(reservations, add);
        for &p in ports {
            match info.ports.iter().position(|(q, _)| *q == p) {
                Some(i) if add => info.ports[i].1 = info.ports[i].1.saturating_add(1),
                Some(i) => {
                    info.ports[i].1 -= 1;
                    if info.ports[i].1 == 0 {
                        info.ports.swap_remove(i);
                    }
                }
                None if add => info.ports.push((p, 1)),
                None => {}
            }
        }
        if active {
            self.shift_active(idx, service, add);
        }
    }

    /// One more (`up`) or one fewer active task of `service` on node `idx`.
    fn shift_active(&mut self, idx: NodeIdx, service: &Id, up: bool) {
        let Some(info) = self.slots.get_mut(idx as usize).and_then(Option::as_mut) else {
            return;
        };
        let old = info.active;
        let new = if up {
            old.saturating_add(1)
        } else {
            old.saturating_sub(1)
        };
        info.active = new;
        let key = info.key;
        self.indexes.active_changed(idx, key, old, new);
        let emptied = match self.service_nodes.get_mut(service) {
            Some(m) => m.shift(idx, up),
            None if up => {
                self.service_nodes.insert(*service, NodeCounts::One(idx, 1));
                false
            }
            None => false,
        };
        if emptied {
            self.service_nodes.remove(service);
        }
    }
}

/// Active tasks of one service per node. Most services run on one node (single-replica services,
/// one-task batches): those keep their count inline instead of in a map of their own.
#[derive(Clone, Debug)]
pub(crate) enum NodeCounts {
    /// One node with a positive count.
    One(NodeIdx, u32),
    /// Any number of nodes, each with a positive count.
    Many(FxMap<NodeIdx, u32>),
}

impl NodeCounts {
    /// The count on node `idx` (0 if none).
    pub(crate) fn get(&self, idx: NodeIdx) -> u32 {
        match self {
            NodeCounts::One(i, c) => {
                if *i == idx {
                    *c
                } else {
                    0
                }
            }
            NodeCounts::Many(m) => m.get(&idx).copied().unwrap_or(0),
        }
    }

    /// The counts as a map (for a batch to keep current while it places).
    pub(crate) fn to_map(&self) -> FxMap<NodeIdx, u32> {
        match self {
            NodeCounts::One(i, c) => {
                let mut m = FxMap::default();
                m.insert(*i, *c);
                m
            }
            NodeCounts::Many(m) => m.clone(),
        }
    }

    /// One more (`up`) or one fewer on node `idx`; returns whether no node has any left.
    fn shift(&mut self, idx: NodeIdx, up: bool) -> bool {
        match self {
            NodeCounts::One(i, c) if *i == idx => {
                *c = if up {
                    c.saturating_add(1)
                } else {
                    c.saturating_sub(1)
                };
                *c == 0
            }
            NodeCounts::One(i, c) => {
                if up {
                    let mut m = FxMap::default();
                    m.insert(*i, *c);
                    m.insert(idx, 1);
                    *self = NodeCounts::Many(m);
                }
                false
            }
            NodeCounts::Many(m) => {
                if up {
                    let c = m.entry(idx).or_insert(0);
                    *c = c.saturating_add(1);
                } else if let Some(c) = m.get_mut(&idx) {
                    *c = c.saturating_sub(1);
                    if *c == 0 {
                        m.remove(&idx);
                    }
                }
                m.is_empty()
            }
        }
    }

    /// Forgets node `idx`; returns whether no node has any left.
    fn remove(&mut self, idx: NodeIdx) -> bool {
        match self {
            NodeCounts::One(i, _) => *i == idx,
            NodeCounts::Many(m) => {
                m.remove(&idx);
                m.is_empty()
            }
        }
    }
}

/// Resources left on a node. Wide integers so that adding and removing any number of `i64`
/// reservations is exact and reversible (no overflow, no saturation drift).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Avail {
    /// CPU in 1e-9 CPUs.
    pub(crate) nano_cpus: i128,
    /// Memory in bytes.
    pub(crate) memory_bytes: i128,
}

impl Avail {
    /// What a node offers before any task: its description's resources (nothing without one).
    fn of(node: &Node) -> Avail {
        let r = node
            .description
            .as_ref()
            .map(|d| d.resources)
            .unwrap_or_default();
        Avail {
            nano_cpus: i128::from(r.nano_cpus),
            memory_bytes: i128::from(r.memory_bytes),
        }
    }

    /// Takes (`take`) or gives back reservations `r`.
    fn take(&mut self, r: Resources, take: bool) {
        let (c, m) = (i128::from(r.nano_cpus), i128::from(r.memory_bytes));
        if take {
            self.nano_cpus -= c;
            self.memory_bytes -= m;
        } else {
            self.nano_cpus += c;
            self.memory_bytes += m;
        }
    }

    /// Whether reservations `r` fit.
    pub(crate) fn fits(&self, r: Resources) -> bool {
        i128::from(r.nano_cpus) <= self.nano_cpus && i128::from(r.memory_bytes) <= self.memory_bytes
    }
}
