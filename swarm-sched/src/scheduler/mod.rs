//! The scheduler: assigns pending tasks to nodes.
//!
//! # Layout
//! - `mod.rs` (this file): [`Scheduler`], its driver contract and its inputs (`handle_*`).
//! - `tick.rs`: its output, [`Scheduler::poll_actions`]: pre-assigned tasks, then batches.
//! - `filter.rs`: the filter pipeline and SwarmKit's explanation texts.
//! - `nodes.rs`: per-node state (resources left, active tasks, host ports), updated incrementally.
//! - `index.rs`: cached eligibility indexes (static filters -> nodes by load).
//! - `place.rs`: placing one batch: ranking, the lazy flat walk, the spread tree.
//! - `failures.rs`: recent failures per service version and node.
//! - `hash.rs`: the fast deterministic hasher used for id-keyed maps.

mod failures;
mod filter;
mod hash;
mod index;
mod nodes;
mod place;
mod tick;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use swarm_core::{Event, Id, Object, Service, Task, TaskState, Version};

use crate::read::ClusterRead;

pub use failures::{FAILURE_WINDOW, MAX_FAILURES};

use failures::Failures;
use filter::{service_host_ports, HostPort};
use hash::{FxMap, FxSet, IdKey};
use nodes::{NodeSet, Occupant, Queued};

/// Status message of a task the scheduler placed.
pub const ASSIGNED_MESSAGE: &str = "scheduler assigned task to node";
/// Status message of a pre-assigned task (global services) the scheduler confirmed.
pub const CONFIRMED_MESSAGE: &str = "scheduler confirmed task can run on preassigned node";

/// Tasks of one service at one spec version: identical for every filter, placed together.
type BatchKey = (IdKey, Version);

/// Tasks of one batch by id, in id order. Most batches hold one task (a single-replica service, a
/// replacement): that one is held inline (no allocation); a few live in a small sorted vector, so
/// queueing a task does not allocate a B-tree leaf; batches that grow past [`TaskSet::SMALL`]
/// move to a B-tree.
#[derive(Debug)]
enum TaskSet {
    One(Id, Arc<Task>),
    Small(Vec<(Id, Arc<Task>)>),
    Large(BTreeMap<Id, Arc<Task>>),
}

impl Default for TaskSet {
    fn default() -> Self {
        TaskSet::Small(Vec::new())
    }
}

impl TaskSet {
    /// Largest size kept in the sorted vector.
    const SMALL: usize = 16;

    fn insert(&mut self, id: Id, t: Arc<Task>) {
        match self {
            TaskSet::One(x, cur) if *x == id => *cur = t,
            TaskSet::One(..) => {
                if let TaskSet::One(x, cur) = std::mem::take(self) {
                    let v = if x < id {
                        vec![(x, cur), (id, t)]
                    } else {
                        vec![(id, t), (x, cur)]
                    };
                    *self = TaskSet::Small(v);
                }
            }
            TaskSet::Small(v) if v.is_empty() => *self = TaskSet::One(id, t),
            TaskSet::Small(v) => match v.binary_search_by(|(k, _)| k.cmp(&id)) {
                Ok(i) => v[i].1 = t,
                Err(i) if v.len() < Self::SMALL => v.insert(i, (id, t)),
                Err(_) => {
                    let mut m: BTreeMap<Id, Arc<Task>> = std::mem::take(v).into_iter().collect();
                    m.insert(id, t);
                    *self = TaskSet::Large(m);
                }
            },
            TaskSet::Large(m) => {
                m.insert(id, t);
            }
        }
    }

    fn remove(&mut self, id: &Id) {
        match self {
            TaskSet::One(x, _) => {
                if x == id {
                    *self = TaskSet::default();
                }
            }
            TaskSet::Small(v) => {
                if let Ok(i) = v.binary_search_by(|(k, _)| k.cmp(id)) {
                    v.remove(i);
                }
            }
            TaskSet::Large(m) => {
                m.remove(id);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        match self {
            TaskSet::One(..) => 1,
            TaskSet::Small(v) => v.len(),
            TaskSet::Large(m) => m.len(),
        }
    }

    fn values(&self) -> impl Iterator<Item = &Arc<Task>> {
        let (one, small, large) = match self {
            TaskSet::One(_, t) => (Some(t), None, None),
            TaskSet::Small(v) => (None, Some(v), None),
            TaskSet::Large(m) => (None, None, Some(m)),
        };
        let small = small.into_iter().flat_map(|v| v.iter().map(|(_, t)| t));
        one.into_iter()
            .chain(small)
            .chain(large.into_iter().flat_map(|m| m.values()))
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Arc<Task>> {
        let (one, small, large) = match self {
            TaskSet::One(_, t) => (Some(t), None, None),
            TaskSet::Small(v) => (None, Some(v), None),
            TaskSet::Large(m) => (None, None, Some(m)),
        };
        let small = small.into_iter().flat_map(|v| v.iter_mut().map(|(_, t)| t));
        one.into_iter()
            .chain(small)
            .chain(large.into_iter().flat_map(|m| m.values_mut()))
    }
}

/// Unassigned tasks of one batch waiting for a node.
#[derive(Debug, Default)]
struct Pending {
    tasks: TaskSet,
    /// Set when no node could take the batch's tasks: the capacity generation and the error.
    blocked: Option<(u64, String)>,
    /// New tasks joined since the last poll (the batch's key is then in `Scheduler::dirty`).
    dirty: bool,
}

/// A task the global orchestrator already put on a node, waiting for the scheduler's check.
#[derive(Debug)]
struct Preassigned {
    task: Arc<Task>,
    /// Capacity generation at which the check last failed.
    checked: Option<u64>,
}

/// Figures about the scheduler's state, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Nodes known.
    pub nodes: usize,
    /// Unassigned tasks waiting (including unschedulable ones).
    pub unassigned: usize,
    /// Batches (service + spec version) that no node can currently take.
    pub blocked_batches: usize,
    /// Pre-assigned tasks waiting for their node to fit them.
    pub preassigned: usize,
    /// Live eligibility indexes.
    pub indexes: usize,
}

/// Assigns pending tasks to nodes: a pure state machine (no I/O, no clock, no randomness).
///
/// # What it does
/// A task is scheduled when its observed state is `new` or `pending`, its desired state is at most
/// `complete` (running, ready or complete), and it has no node. The scheduler picks a node that
/// passes every filter (see the crate docs for the pipeline and ranking) and writes the task back
/// with `node_id` set and status `assigned` / [`ASSIGNED_MESSAGE`]. A task that no node can take
/// stays (or becomes) `pending` with `status.err = "no suitable node (<reasons>)"` and is retried
/// only when capacity may have grown (a node changed, a task left a node) — never in a busy loop,
/// and its status is rewritten only when the reason changes.
///
/// `new` is treated as `pending`: this design has no network allocator to move tasks from `new`
/// to `pending` (SwarmKit's allocator does), so the scheduler does it, directly to `assigned` when
/// it can place the task, or to `pending` with the reason when it cannot.
///
/// A task that already has a node while `new`/`pending` was pre-assigned by the global
/// orchestrator: the scheduler only checks that node against the filters, then writes `assigned` /
/// [`CONFIRMED_MESSAGE`] — or leaves it pending with the reason. Global tasks ignore spread
/// preferences.
///
/// # Driver contract
/// The scheduler runs on the raft leader. Inputs are the `handle_*` methods, the output is
/// [`Scheduler::poll_actions`]:
///
/// 1. On becoming leader: `let mut s = Scheduler::new();` then, under one consistent view of the
///    store that is also the start of the watch (`SharedStore::view_and_watch`),
///    [`Scheduler::handle_reset`]. Then poll once (the full pass).
/// 2. For every store event, in order: [`Scheduler::handle_event`]. Events only update state and
///    mark work; they never produce output.
/// 3. On [`Event::Commit`] (or after draining whatever the watch queue holds):
///    `let actions = s.poll_actions(now);` and propose them (in chunks of at most
///    `swarm_core::action::MAX_ACTIONS_PER_BATCH`). `now` stamps the task statuses and dates the
///    failure window. An empty vector means there is nothing to do.
/// 4. Feed the events of the committed proposal back through `handle_event` before the next poll
///    (the scheduler's own writes come back as no-ops). If a proposal is rejected (a task changed
///    in between: version conflict), call [`Scheduler::handle_rejected`] with the current store
///    and the rejected actions: those tasks are re-read and retried at the next poll.
/// 5. On [`Event::Reset`] (snapshot installed) or a lagged watcher, call `handle_reset` again with
///    a fresh view ([`Scheduler::needs_reset`] tells; `poll_actions` returns nothing until then).
///    Events queued after that view may be replayed safely: every handler is an idempotent upsert.
///
/// Nothing panics or loops forever on any store contents: an impossible placement is a pending
/// task with a reason, not an error.
#[derive(Debug, Default)]
pub struct Scheduler {
    nodes: NodeSet,
    /// Host-mode ports of every service that publishes any.
    host_ports: FxMap<Id, Arc<[HostPort]>>,
    failures: Failures,
    /// Waiting tasks by batch. A task is in batch `k` exactly when the node set tracks it as
    /// `Tracked::Queued(k)`.
    queue: BTreeMap<BatchKey, Pending>,
    /// Keys of the batches marked dirty since the last poll, in marking order. A key may be stale
    /// (its batch emptied since) or repeated (emptied and dirty again): the poll sorts, dedups
    /// and skips batches that are not dirty. A vector, not a set: marking a batch costs a push
    /// instead of a B-tree insertion (in SwarmKit's benchmark shapes every task is a batch).
    dirty: Vec<BatchKey>,
    /// Number of batches in `queue` whose `dirty` flag is set.
    dirty_batches: usize,
    /// Capacity generation at the last poll: when it moved, blocked batches are retried.
    polled_generation: u64,
    preassigned: BTreeMap<Id, Preassigned>,
    /// Tasks seen pre-assigned: their failures do not count against their node.
    preassigned_ids: FxSet<Id>,
    needs_reset: bool,
    /// Shared empty port list (most services publish no host-mode port).
    no_ports: Arc<[HostPort]>,
    /// The writes of the last poll, in proposal order, as their events should come back (see
    /// [`Echo`]).
    echoes: VecDeque<Echo>,
}

/// One write of the last poll, as its event should come back. The driver proposes a poll's
/// actions in order and feeds their events back in order, so while the events are exactly the
/// poll's own writes, each one is the front of this queue: an assignment then needs no look-up
/// (the placement recorded it already), where [`nodes::NodeSet::occupies`] would probe the task
/// map, a cache miss per task once a cluster holds many. The first task event that is not the
/// front (another writer's, or a rejected proposal's gap) empties the queue and every event from
/// there is handled in full, so a skipped event is always one the node set already holds.
#[derive(Debug)]
struct Echo {
    task: Id,
    /// For an assignment: the node and service the node set recorded it on (active).
    placed: Option<(Id, Id)>,
}

/// How the scheduler sees a task.
enum Class {
    /// Occupies a node (observed assigned..running).
    OnNode { node: Id, active: bool },
    /// Waiting for a node.
    Unassigned,
    /// Waiting for the check of the node the global orchestrator chose.
    Preassigned,
    /// Nothing to do with it: finished, or no longer wanted before it was placed.
    Gone,
}

fn classify(t: &Task) -> Class {
    let state = t.status.state;
    if state > TaskState::Running {
        return Class::Gone;
    }
    if state >= TaskState::Assigned {
        return match t.node_id {
            Some(node) => Class::OnNode {
                node,
                active: t.desired_state <= TaskState::Complete,
            },
            None => Class::Gone,
        };
    }
    if t.desired_state > TaskState::Complete {
        return Class::Gone;
    }
    match t.node_id {
        None => Class::Unassigned,
        Some(_) => Class::Preassigned,
    }
}

impl Scheduler {
    /// An empty scheduler. Call [`Scheduler::handle_reset`] before the first poll.
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    /// Input: rebuilds every piece of state from `store` (becoming leader, after [`Event::Reset`],
    /// after a lagged watch). Every waiting task is considered at the next poll. Failure history
    /// (keyed by node and service version) is kept.
    ///
    /// `store` is any [`ClusterRead`] view: a [`swarm_core::Store`], or an embedder's own lists.
    pub fn handle_reset<R: ClusterRead + ?Sized>(&mut self, store: &R) {
        let mut fresh = Scheduler {
            failures: std::mem::take(&mut self.failures),
            ..Scheduler::default()
        };
        for s in store.services() {
            fresh.upsert_service(s);
        }
        for n in store.nodes() {
            fresh.nodes.upsert_node(n.clone());
        }
        for t in store.tasks() {
            fresh.track_task(t);
        }
        fresh.nodes.bump_generation();
        *self = fresh;
    }

    /// Input: one store event, in commit order. Updates per-node state and marks work; produces
    /// nothing (see [`Scheduler::poll_actions`]).
    pub fn handle_event(&mut self, event: &Event) {
        match event {
            Event::Created(o) => self.upsert(o, None),
            Event::Updated { old, new } => self.upsert(new, Some(old)),
            Event::Removed(o) => self.remove(o),
            Event::Commit { .. } => {}
            Event::Reset { .. } => self.needs_reset = true,
        }
    }

    /// Input: a proposal of this scheduler's actions was rejected (e.g. a version conflict). The
    /// tasks it touched are re-read from `store` (the committed state) and retried at the next poll.
    pub fn handle_rejected<R: ClusterRead + ?Sized>(
        &mut self,
        store: &R,
        actions: &[swarm_core::StoreAction],
    ) {
        self.echoes.clear();
        for a in actions {
            if let swarm_core::StoreAction::Update(Object::Task(t)) = a {
                match store.task(&t.id) {
                    Some(current) => {
                        // Forget the optimistic placement before re-reading the committed task.
                        self.untrack(&t.id);
                        self.track_task(current);
                    }
                    None => self.forget_task(&t.id),
                }
            }
        }
        self.nodes.bump_generation();
    }

    /// Whether [`Scheduler::handle_reset`] must be called before polling again.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset
    }

    /// Whether the next poll may produce actions (new tasks, or capacity changed while tasks wait).
    pub fn has_work(&self) -> bool {
        !self.needs_reset
            && (self.dirty_batches > 0
                || (self.nodes.generation() != self.polled_generation
                    && (!self.queue.is_empty() || !self.preassigned.is_empty()))
                || self.preassigned.values().any(|p| p.checked.is_none()))
    }

    /// Figures about the current state.
    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            nodes: self.nodes.len(),
            unassigned: self.queue.values().map(|p| p.tasks.len()).sum(),
            blocked_batches: self.queue.values().filter(|p| p.blocked.is_some()).count(),
            preassigned: self.preassigned.len(),
            indexes: self.nodes.indexes().len(),
        }
    }

    fn upsert(&mut self, obj: &Object, old: Option<&Object>) {
        match obj {
            Object::Task(t) => {
                if self.echo(t) {
                    return;
                }
                if let Some(Object::Task(old)) = old {
                    self.note_failure(old, t);
                }
                self.track_task(t);
            }
            Object::Node(n) => self.nodes.upsert_node(n.clone()),
            Object::Service(s) => self.upsert_service(s),
            _ => {}
        }
    }

    fn remove(&mut self, obj: &Object) {
        match obj {
            Object::Task(t) => {
                self.echo(t);
                self.forget_task(&t.id);
            }
            Object::Node(n) => self.nodes.remove_node(&n.id),
            Object::Service(s) => {
                self.host_ports.remove(&s.id);
            }
            _ => {}
        }
    }

    /// Whether the event writing `t` is the echo of an assignment of the last poll, which changes
    /// nothing (see [`Echo`]); consumes the front of the queue, or empties it when `t` is not the
    /// front.
    fn echo(&mut self, t: &Task) -> bool {
        let Some(front) = self.echoes.front() else {
            return false;
        };
        if front.task != t.id {
            self.echoes.clear();
            return false;
        }
        let placed = front.placed;
        self.echoes.pop_front();
        match (placed, classify(t)) {
            (
                Some((node, service)),
                Class::OnNode {
                    node: n,
                    active: true,
                },
            ) => node == n && service == t.service_id,
            _ => false,
        }
    }

    /// Queues the echoes of a poll's writes `out` (see [`Echo`]); the poll emptied the queue
    /// when it began.
    fn expect_echoes(&mut self, out: &[swarm_core::StoreAction]) {
        for a in out {
            if let swarm_core::StoreAction::Update(Object::Task(t)) = a {
                let placed = match (t.status.state, t.node_id) {
                    (TaskState::Assigned, Some(node)) => Some((node, t.service_id)),
                    _ => None,
                };
                self.echoes.push_back(Echo { task: t.id, placed });
            } else {
                // The scheduler writes nothing else; anything else ends the fast path here.
                break;
            }
        }
    }

    fn upsert_service(&mut self, s: &Service) {
        let ports = service_host_ports(s);
        if ports.is_empty() {
            self.host_ports.remove(&s.id);
        } else {
            self.host_ports.insert(s.id, ports.into());
        }
    }

    fn ports_of(&self, service: &Id) -> Arc<[HostPort]> {
        self.host_ports
            .get(service)
            .unwrap_or(&self.no_ports)
            .clone()
    }

    /// Counts a failure when a task the scheduler placed turns failed or rejected.
    fn note_failure(&mut self, old: &Task, new: &Task) {
        let failed = matches!(new.status.state, TaskState::Failed | TaskState::Rejected);
        if !failed || old.status.state == new.status.state {
            return;
        }
        if let Some(node) = new.node_id {
            if !self.preassigned_ids.contains(&new.id) {
                let at = new.meta.updated_at;
                self.failures
                    .record(new.service_id, new.spec_version, node, at);
            }
        }
    }

    fn track_task(&mut self, t: &Arc<Task>) {
        match classify(t) {
            Class::OnNode { node, active } => {
                self.preassigned.remove(&t.id);
                if self.nodes.occupies(&t.id, &node, &t.service_id, active) {
                    // Typically our own assignment coming back: nothing changes.
                    return;
                }
                let occ = Occupant {
                    node,
                    service: t.service_id,
                    reservations: t.spec.resources.reservations,
                    ports: self.ports_of(&t.service_id),
                    active,
                };
                if let Some(key) = self.nodes.occupy(t.id, occ) {
                    self.leave_batch(key, &t.id);
                }
            }
            Class::Unassigned => {
                self.preassigned.remove(&t.id);
                self.enqueue(t);
            }
            Class::Preassigned => {
                self.untrack(&t.id);
                self.preassigned_ids.insert(t.id);
                match self.preassigned.get_mut(&t.id) {
                    Some(p) => p.task = t.clone(),
                    None => {
                        self.preassigned.insert(
                            t.id,
                            Preassigned {
                                task: t.clone(),
                                checked: None,
                            },
                        );
                    }
                }
            }
            Class::Gone => self.forget_task(&t.id),
        }
    }

    fn forget_task(&mut self, id: &Id) {
        self.untrack(id);
        self.preassigned.remove(id);
        self.preassigned_ids.remove(id);
    }

    /// Stops following task `id` as queued or occupying (it leaves its batch or its node).
    fn untrack(&mut self, id: &Id) {
        if let Some(key) = self.nodes.untrack(id) {
            self.leave_batch(key, id);
        }
    }

    fn enqueue(&mut self, t: &Arc<Task>) {
        let key = (IdKey::of(&t.service_id), t.spec_version);
        match self.nodes.queue(t.id, key) {
            Queued::Same => {
                // Already waiting (typically our own status write coming back): refresh the copy
                // so the next write carries the current version, without marking work.
                if let Some(p) = self.queue.get_mut(&key) {
                    p.tasks.insert(t.id, t.clone());
                }
                return;
            }
            Queued::Moved(old) => self.leave_batch(old, &t.id),
            Queued::Fresh => {}
        }
        let p = self.queue.entry(key).or_default();
        p.tasks.insert(t.id, t.clone());
        if !p.dirty {
            p.dirty = true;
            self.dirty.push(key);
            self.dirty_batches += 1;
        }
    }

    /// Takes task `id` out of batch `key` (the node set no longer tracks it as queued there).
    fn leave_batch(&mut self, key: BatchKey, id: &Id) {
        if let Some(p) = self.queue.get_mut(&key) {
            p.tasks.remove(id);
            if p.tasks.is_empty() {
                if p.dirty {
                    self.dirty_batches -= 1;
                }
                // Its key may stay in `dirty`: the poll skips keys without a dirty batch.
                self.queue.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use swarm_core::{Event, Id, Object, Task, TaskState, Version};

    use super::nodes::Tracked;
    use super::{BatchKey, Scheduler};
    use crate::testing::{node, service, task};

    /// The one task-keyed map and the batches agree: a task waits in batch `k` exactly when it is
    /// tracked as `Queued(k)`; a task tracked on a node is in that node's task list.
    fn check(s: &Scheduler) {
        let mut queued: BTreeMap<Id, BatchKey> = BTreeMap::new();
        for (id, t) in s.nodes.tracked() {
            match t {
                Tracked::Queued(k) => {
                    queued.insert(*id, *k);
                }
                Tracked::OnNode(o) => {
                    assert!(s.nodes.tasks_on(&o.node).contains(id), "{id} on {}", o.node)
                }
            }
        }
        let mut in_batches = BTreeMap::new();
        for (k, p) in &s.queue {
            assert!(!p.tasks.is_empty(), "no empty batch kept");
            for t in p.tasks.values() {
                in_batches.insert(t.id, *k);
            }
        }
        assert_eq!(queued, in_batches);
        let dirty: Vec<&BatchKey> = s
            .queue
            .iter()
            .filter(|(_, p)| p.dirty)
            .map(|e| e.0)
            .collect();
        assert_eq!(s.dirty_batches, dirty.len());
        assert!(
            dirty.iter().all(|k| s.dirty.contains(k)),
            "every dirty batch listed"
        );
        assert_eq!(s.stats().unassigned, queued.len());
    }

    fn created(t: &Task) -> Event {
        Event::Created(Object::Task(Arc::new(t.clone())))
    }

    fn updated(old: &Task, new: &Task) -> Event {
        Event::Updated {
            old: Object::Task(Arc::new(old.clone())),
            new: Object::Task(Arc::new(new.clone())),
        }
    }

    /// A batch's task set keeps id order and every task through its three forms (one inline, a
    /// sorted vector, a B-tree) and back.
    #[test]
    fn task_set_keeps_order_through_its_forms() {
        use super::TaskSet;
        let svc = service(1, 40);
        let mut set = TaskSet::default();
        let mut model: BTreeMap<Id, u64> = BTreeMap::new();
        // Ids inserted out of order, one of them twice (a refreshed copy).
        let order: Vec<u128> = (0..40).map(|i| (i * 17) % 40).chain([5]).collect();
        for (k, &n) in order.iter().enumerate() {
            let t = Arc::new(task(&svc, k as u64, 1000 + n));
            model.insert(t.id, k as u64);
            set.insert(t.id, t);
            let got: Vec<(Id, u64)> = set.values().map(|t| (t.id, t.slot)).collect();
            let want: Vec<(Id, u64)> = model.iter().map(|(i, s)| (*i, *s)).collect();
            assert_eq!(got, want);
            assert_eq!(set.len(), model.len());
        }
        for n in (0..40).rev() {
            let id = crate::testing::id(1000 + n);
            set.remove(&id);
            model.remove(&id);
            let got: Vec<Id> = set.values().map(|t| t.id).collect();
            assert_eq!(got, model.keys().copied().collect::<Vec<_>>());
            assert_eq!(set.is_empty(), model.is_empty());
        }
        // An emptied set is dropped with its batch; a fresh one holds its first task inline.
        let mut set = TaskSet::default();
        let one = Arc::new(task(&svc, 1, 7));
        set.insert(one.id, one.clone());
        assert!(matches!(set, TaskSet::One(..)));
        assert_eq!(set.values_mut().count(), 1);
        set.remove(&one.id);
        assert!(set.is_empty());
    }

    /// A poll that places only the dirty batches (others wait, blocked) skips a key left behind
    /// by a batch that emptied after it was marked, and rewrites none of the blocked tasks.
    #[test]
    fn poll_places_only_dirty_batches_and_skips_stale_keys() {
        let mut s = Scheduler::new();
        s.handle_event(&Event::Created(Object::Node(Arc::new(node(1)))));
        let mut nowhere = service(10, 1);
        nowhere.spec.task.placement.constraints = vec!["node.labels.zone==nowhere".into()];
        let blocked = task(&nowhere, 1, 100);
        s.handle_event(&created(&blocked));
        let first = s.poll_actions(swarm_core::Timestamp::from_secs(1));
        let [swarm_core::StoreAction::Update(Object::Task(pending))] = first.as_slice() else {
            panic!("expected the pending write, got {first:?}");
        };
        assert_eq!(pending.status.state, TaskState::Pending);
        // Its own write coming back does not make its batch dirty again.
        s.handle_event(&updated(&blocked, pending));
        check(&s);
        assert!(!s.has_work());

        let placeable = task(&service(20, 1), 1, 200);
        let gone = task(&service(30, 1), 1, 300);
        s.handle_event(&created(&placeable));
        s.handle_event(&created(&gone));
        s.handle_event(&Event::Removed(Object::Task(Arc::new(gone.clone()))));
        check(&s);
        assert_eq!(s.dirty.len(), 2, "the removed task's key stays listed");
        assert!(s.has_work());

        let second = s.poll_actions(swarm_core::Timestamp::from_secs(2));
        let ids: Vec<Id> = second.iter().map(|a| a.target().id).collect();
        assert_eq!(ids, vec![placeable.id], "only the dirty batch is placed");
        check(&s);
        assert_eq!(s.stats().unassigned, 1);
        assert!(s.dirty.is_empty() && !s.has_work());
    }

    /// A poll's own assignments coming back in order are skipped without a look-up; an event
    /// that is not the next one expected (another writer's, a changed copy of the expected task)
    /// is handled in full and ends the skipping for the rest of that poll's writes.
    #[test]
    fn only_the_polls_own_writes_are_skipped() {
        let mut s = Scheduler::new();
        for n in 1..=2 {
            s.handle_event(&Event::Created(Object::Node(Arc::new(node(n)))));
        }
        let tasks: Vec<Task> = (1..=4)
            .map(|i| task(&service(10 + i, 1), 1, 100 + i))
            .collect();
        for t in &tasks {
            s.handle_event(&created(t));
        }
        let placed: Vec<Task> = s
            .poll_actions(swarm_core::Timestamp::from_secs(1))
            .iter()
            .map(|a| match a {
                swarm_core::StoreAction::Update(Object::Task(t)) => (**t).clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(placed.len(), 4);
        assert_eq!(s.echoes.len(), 4);
        let on = |s: &Scheduler, t: &Task| {
            s.nodes
                .tracked()
                .find(|(id, _)| **id == t.id)
                .map(|(_, tr)| tr.clone())
        };

        // The first placement comes back as proposed: skipped, nothing changes.
        let before = on(&s, &placed[0]);
        s.handle_event(&updated(&tasks[0], &placed[0]));
        assert_eq!(s.echoes.len(), 3);
        assert_eq!(on(&s, &placed[0]), before);

        // The second comes back changed (told to shut down before it ran): handled in full.
        let mut stopping = placed[1].clone();
        stopping.desired_state = TaskState::Shutdown;
        s.handle_event(&updated(&placed[1], &stopping));
        assert_eq!(s.echoes.len(), 2);
        assert!(matches!(on(&s, &stopping), Some(Tracked::OnNode(o)) if !o.active));

        // Another writer moves the fourth task before the third's echo: the queue is dropped and
        // every later event is handled in full.
        let other_node = if placed[3].node_id == Some(crate::testing::id(1)) {
            2
        } else {
            1
        };
        let mut moved = placed[3].clone();
        moved.node_id = Some(crate::testing::id(other_node));
        s.handle_event(&updated(&placed[3], &moved));
        assert!(s.echoes.is_empty());
        assert!(
            matches!(on(&s, &moved), Some(Tracked::OnNode(o)) if o.node == crate::testing::id(other_node))
        );
        assert!(!s
            .nodes
            .tasks_on(&placed[3].node_id.unwrap())
            .contains(&moved.id));
        s.handle_event(&updated(&tasks[2], &placed[2]));
        check(&s);
        assert!(!s.has_work());
    }

    /// Every move between the task-keyed states, one event at a time: created (queued), moved
    /// to another batch (new spec version), placed (on a node), its placement coming back, put
    /// back in the queue, moved to another node, pre-assigned, removed, and a node removed.
    #[test]
    fn one_task_map_stays_in_step_with_the_batches() {
        let mut s = Scheduler::new();
        for n in 1..=2 {
            s.handle_event(&Event::Created(Object::Node(Arc::new(node(n)))));
        }
        let svc = service(10, 3);
        let tasks: Vec<Task> = (1..=3).map(|i| task(&svc, i as u64, 100 + i)).collect();
        for t in &tasks {
            s.handle_event(&created(t));
            check(&s);
        }
        assert_eq!(s.stats().unassigned, 3);

        // A new spec version moves the task to another batch.
        let mut v2 = tasks[0].clone();
        v2.spec_version = Version(2);
        s.handle_event(&updated(&tasks[0], &v2));
        check(&s);
        assert_eq!(s.queue.len(), 2);

        // Placing takes every task out of its batch and onto a node.
        let actions = s.poll_actions(swarm_core::Timestamp::from_secs(1));
        assert_eq!(actions.len(), 3);
        check(&s);
        assert_eq!(s.stats().unassigned, 0);
        let placed: Vec<Task> = actions
            .iter()
            .map(|a| match a {
                swarm_core::StoreAction::Update(Object::Task(t)) => (**t).clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // The placements coming back change nothing.
        for t in &placed {
            s.handle_event(&created(t));
            check(&s);
        }

        // Back to the queue (a task without a node again), then onto another node.
        let mut back = placed[1].clone();
        back.node_id = None;
        back.status.state = TaskState::Pending;
        s.handle_event(&updated(&placed[1], &back));
        check(&s);
        assert_eq!(s.stats().unassigned, 1);
        let mut moved = placed[1].clone();
        let other = if placed[1].node_id == Some(node(1).id) {
            2
        } else {
            1
        };
        moved.node_id = Some(node(other).id);
        s.handle_event(&updated(&back, &moved));
        check(&s);
        assert!(s.nodes.tasks_on(&node(other).id).contains(&moved.id));

        // Pre-assigned (node set while new): no longer queued nor on a node.
        let mut pre = tasks[2].clone();
        pre.id = crate::testing::id(200);
        pre.node_id = Some(node(1).id);
        s.handle_event(&created(&pre));
        check(&s);
        assert_eq!(s.stats().preassigned, 1);

        // Removed tasks and a removed node leave nothing behind.
        for t in placed.iter().chain([&moved, &pre]) {
            s.handle_event(&Event::Removed(Object::Task(Arc::new(t.clone()))));
            check(&s);
        }
        s.handle_event(&Event::Removed(Object::Node(Arc::new(node(1)))));
        check(&s);
        assert_eq!(s.nodes.tracked().count(), 0);
    }
}
