//! What one node has been told: its tasks and the secrets and configs they reference, and the
//! change to send next. A pure structure fed with store events; the dispatcher's session streamer
//! drives it.
//!
//! Rules (SwarmKit's dispatcher):
//! - A node's tasks are the tasks with `node_id` = the node and an observed state of `assigned` or
//!   later (below that the scheduler has not confirmed the node, so its secrets must not leak).
//! - A task update that changes only what the agent itself reported (status past `assigned`) is
//!   not echoed back.
//! - A secret or config is sent while at least one of the node's tasks in `assigned..=running`
//!   references it, and withdrawn when none does any more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use swarm_core::dispatch::AssignmentSet;
use swarm_core::{Config, Event, Id, Object, Secret, Store, Task, TaskState};

/// One node's assignment state. See the module docs.
#[derive(Debug)]
pub struct NodeAssignments {
    node: Id,
    tasks: HashMap<Id, Arc<Task>>,
    /// Secrets and configs each task holds a reference on.
    deps: HashMap<Id, (Vec<Id>, Vec<Id>)>,
    secret_refs: BTreeMap<Id, usize>,
    config_refs: BTreeMap<Id, usize>,
    // The change not sent yet.
    upserts: BTreeMap<Id, Arc<Task>>,
    removed: BTreeSet<Id>,
    secrets_added: BTreeSet<Id>,
    secrets_removed: BTreeSet<Id>,
    configs_added: BTreeSet<Id>,
    configs_removed: BTreeSet<Id>,
}

/// Whether two versions of a task differ only in what the agent reported.
fn stable_eq(a: &Task, b: &Task) -> bool {
    a.desired_state == b.desired_state
        && a.node_id == b.node_id
        && a.slot == b.slot
        && a.spec_version == b.spec_version
        && (Arc::ptr_eq(&a.spec, &b.spec) || a.spec == b.spec)
        && a.service_annotations == b.service_annotations
}

fn task_deps(t: &Task) -> (Vec<Id>, Vec<Id>) {
    if !t.status.state.is_active_on_node() {
        return (Vec::new(), Vec::new());
    }
    let c = &t.spec.container;
    let mut s: Vec<Id> = c.secrets.iter().map(|r| r.secret_id).collect();
    let mut k: Vec<Id> = c.configs.iter().map(|r| r.config_id).collect();
    s.sort();
    s.dedup();
    k.sort();
    k.dedup();
    (s, k)
}

fn acquire(
    refs: &mut BTreeMap<Id, usize>,
    id: Id,
    added: &mut BTreeSet<Id>,
    removed: &mut BTreeSet<Id>,
) {
    let n = refs.entry(id).or_insert(0);
    *n += 1;
    if *n == 1 && !removed.remove(&id) {
        added.insert(id);
    }
}

fn release(
    refs: &mut BTreeMap<Id, usize>,
    id: Id,
    added: &mut BTreeSet<Id>,
    removed: &mut BTreeSet<Id>,
) {
    let Some(n) = refs.get_mut(&id) else { return };
    *n -= 1;
    if *n == 0 {
        refs.remove(&id);
        if !added.remove(&id) {
            removed.insert(id);
        }
    }
}

impl NodeAssignments {
    /// Nothing assigned yet.
    pub fn new(node: Id) -> NodeAssignments {
        NodeAssignments {
            node,
            tasks: HashMap::new(),
            deps: HashMap::new(),
            secret_refs: BTreeMap::new(),
            config_refs: BTreeMap::new(),
            upserts: BTreeMap::new(),
            removed: BTreeSet::new(),
            secrets_added: BTreeSet::new(),
            secrets_removed: BTreeSet::new(),
            configs_added: BTreeSet::new(),
            configs_removed: BTreeSet::new(),
        }
    }

    /// Rebuilds from the store (a new session, or after a lagged watch) and returns the full set.
    pub fn full(&mut self, store: &Store, sequence: u64) -> AssignmentSet {
        *self = NodeAssignments::new(self.node);
        for t in store.tasks_by_node(&self.node) {
            self.handle_task(t);
        }
        let set = AssignmentSet {
            sequence,
            full: true,
            tasks: self.upserts.values().cloned().collect(),
            secrets: self.secrets(store, self.secret_refs.keys()),
            configs: self.configs(store, self.config_refs.keys()),
            ..AssignmentSet::default()
        };
        self.clear_delta();
        set
    }

    /// Input: one store event (other nodes' tasks are ignored).
    pub fn handle_event(&mut self, event: &Event) {
        match event {
            Event::Created(Object::Task(t))
            | Event::Updated {
                new: Object::Task(t),
                ..
            } => self.handle_task(t),
            Event::Removed(Object::Task(t)) => self.forget(&t.id),
            // Secrets and configs change only in their labels, which agents do not use.
            _ => {}
        }
    }

    /// Tasks changed (created, updated or removed) since the last set: what the dispatcher's
    /// batching limit counts.
    pub fn pending_tasks(&self) -> usize {
        self.upserts.len() + self.removed.len()
    }

    /// Output: the change since the last set, or `None` if there is none.
    pub fn take_delta(&mut self, store: &Store, sequence: u64) -> Option<AssignmentSet> {
        if self.upserts.is_empty()
            && self.removed.is_empty()
            && self.secrets_added.is_empty()
            && self.secrets_removed.is_empty()
            && self.configs_added.is_empty()
            && self.configs_removed.is_empty()
        {
            return None;
        }
        let set = AssignmentSet {
            sequence,
            full: false,
            tasks: self.upserts.values().cloned().collect(),
            removed_tasks: self.removed.iter().copied().collect(),
            secrets: self.secrets(store, self.secrets_added.iter()),
            removed_secrets: self.secrets_removed.iter().copied().collect(),
            configs: self.configs(store, self.configs_added.iter()),
            removed_configs: self.configs_removed.iter().copied().collect(),
        };
        self.clear_delta();
        Some(set)
    }

    /// Tasks the node has been told about.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Secrets the node currently holds.
    pub fn secret_ids(&self) -> Vec<Id> {
        self.secret_refs.keys().copied().collect()
    }

    fn clear_delta(&mut self) {
        self.upserts.clear();
        self.removed.clear();
        self.secrets_added.clear();
        self.secrets_removed.clear();
        self.configs_added.clear();
        self.configs_removed.clear();
    }

    fn secrets<'a>(&self, store: &Store, ids: impl Iterator<Item = &'a Id>) -> Vec<Secret> {
        ids.filter_map(|id| store.get::<Secret>(id).map(|s| (**s).clone()))
            .collect()
    }

    fn configs<'a>(&self, store: &Store, ids: impl Iterator<Item = &'a Id>) -> Vec<Config> {
        ids.filter_map(|id| store.get::<Config>(id).map(|c| (**c).clone()))
            .collect()
    }

    fn handle_task(&mut self, t: &Arc<Task>) {
        if t.node_id != Some(self.node) || t.status.state < TaskState::Assigned {
            self.forget(&t.id);
            return;
        }
        self.set_deps(t.id, task_deps(t));
        let echo = self
            .tasks
            .get(&t.id)
            .is_some_and(|old| stable_eq(old, t) && t.status.state > TaskState::Assigned);
        self.tasks.insert(t.id, t.clone());
        self.removed.remove(&t.id);
        if echo {
            // Nothing the agent needs; keep a pending upsert current if there is one.
            if let Some(u) = self.upserts.get_mut(&t.id) {
                *u = t.clone();
            }
        } else {
            self.upserts.insert(t.id, t.clone());
        }
    }

    fn forget(&mut self, id: &Id) {
        if self.tasks.remove(id).is_some() {
            self.set_deps(*id, (Vec::new(), Vec::new()));
            self.deps.remove(id);
            self.upserts.remove(id);
            self.removed.insert(*id);
        }
    }

    fn set_deps(&mut self, task: Id, new: (Vec<Id>, Vec<Id>)) {
        let old = self.deps.remove(&task).unwrap_or_default();
        if old == new {
            if !new.0.is_empty() || !new.1.is_empty() {
                self.deps.insert(task, new);
            }
            return;
        }
        for s in &new.0 {
            acquire(
                &mut self.secret_refs,
                *s,
                &mut self.secrets_added,
                &mut self.secrets_removed,
            );
        }
        for c in &new.1 {
            acquire(
                &mut self.config_refs,
                *c,
                &mut self.configs_added,
                &mut self.configs_removed,
            );
        }
        for s in &old.0 {
            release(
                &mut self.secret_refs,
                *s,
                &mut self.secrets_added,
                &mut self.secrets_removed,
            );
        }
        for c in &old.1 {
            release(
                &mut self.config_refs,
                *c,
                &mut self.configs_added,
                &mut self.configs_removed,
            );
        }
        if !new.0.is_empty() || !new.1.is_empty() {
            self.deps.insert(task, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::objects::service::SecretReference;
    use swarm_core::{Object, StoreAction};

    fn task(n: u128, node: u128, state: TaskState, secret: Option<u128>) -> Arc<Task> {
        let mut t = Task {
            id: Id::from_u128(n),
            meta: Default::default(),
            service_id: Id::from_u128(1),
            service_annotations: Default::default(),
            slot: n as u64,
            node_id: Some(Id::from_u128(node)),
            spec: Default::default(),
            spec_version: Default::default(),
            status: Default::default(),
            desired_state: TaskState::Running,
            job_iteration: None,
            assigned_secrets: Vec::new(),
            assigned_configs: Vec::new(),
            networks: Vec::new(),
            ports: Vec::new(),
        };
        t.status.state = state;
        if let Some(s) = secret {
            let mut spec = (*t.spec).clone();
            spec.container.secrets = vec![SecretReference {
                secret_id: Id::from_u128(s),
                secret_name: "s".into(),
                target: Default::default(),
            }];
            t.spec = Arc::new(spec);
        }
        Arc::new(t)
    }

    fn store_with(secrets: &[u128]) -> Store {
        let mut s = Store::new();
        let actions = secrets
            .iter()
            .map(|n| {
                let mut x = swarm_core::testing::secret(*n, &format!("s{n}"), b"x");
                x.id = Id::from_u128(*n);
                StoreAction::Create(Object::from(x))
            })
            .collect();
        s.apply(swarm_core::Batch {
            index: 1,
            timestamp: Default::default(),
            actions,
        })
        .unwrap();
        s
    }

    fn updated(old: &Arc<Task>, new: &Arc<Task>) -> Event {
        Event::Updated {
            old: Object::Task(old.clone()),
            new: Object::Task(new.clone()),
        }
    }

    #[test]
    fn agent_status_echoes_are_not_sent_but_desired_changes_are() {
        let store = store_with(&[]);
        let mut a = NodeAssignments::new(Id::from_u128(7));
        let _ = a.full(&store, 1);
        let t0 = task(1, 7, TaskState::Assigned, None);
        a.handle_event(&Event::Created(Object::Task(t0.clone())));
        assert_eq!(a.take_delta(&store, 2).unwrap().tasks.len(), 1);
        let t1 = task(1, 7, TaskState::Running, None);
        a.handle_event(&updated(&t0, &t1));
        assert!(a.take_delta(&store, 3).is_none(), "status echo suppressed");
        let mut t2 = (*t1).clone();
        t2.desired_state = TaskState::Shutdown;
        let t2 = Arc::new(t2);
        a.handle_event(&updated(&t1, &t2));
        let d = a.take_delta(&store, 3).unwrap();
        assert_eq!(d.tasks[0].desired_state, TaskState::Shutdown);
        assert_eq!(a.task_count(), 1);
    }

    #[test]
    fn a_shared_secret_stays_until_its_last_task_is_done() {
        let store = store_with(&[50]);
        let mut a = NodeAssignments::new(Id::from_u128(7));
        let _ = a.full(&store, 1);
        let t1 = task(1, 7, TaskState::Assigned, Some(50));
        let t2 = task(2, 7, TaskState::Running, Some(50));
        a.handle_event(&Event::Created(Object::Task(t1.clone())));
        a.handle_event(&Event::Created(Object::Task(t2.clone())));
        let d = a.take_delta(&store, 2).unwrap();
        assert_eq!(d.secrets.len(), 1, "sent once for two tasks");
        let t1done = task(1, 7, TaskState::Complete, Some(50));
        a.handle_event(&updated(&t1, &t1done));
        assert!(a.take_delta(&store, 3).is_none(), "task 2 still needs it");
        a.handle_event(&Event::Removed(Object::Task(t2)));
        let d = a.take_delta(&store, 3).unwrap();
        assert_eq!(d.removed_secrets, vec![Id::from_u128(50)]);
        assert_eq!(d.removed_tasks, vec![Id::from_u128(2)]);
        assert!(a.secret_ids().is_empty());
        // A task moved to another node is withdrawn.
        let moved = task(1, 8, TaskState::Assigned, None);
        a.handle_event(&updated(&t1done, &moved));
        assert_eq!(
            a.take_delta(&store, 4).unwrap().removed_tasks,
            vec![Id::from_u128(1)]
        );
    }
}
