//! The store's tables and secondary indexes. Every write goes through [`Tables::put`] and
//! [`Tables::delete`], which keep all indexes in step; nothing else mutates a table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::id::Id;
use crate::object::{Object, ObjectKind, StoreObject};
use crate::objects::cluster::Cluster;
use crate::objects::network::Network;
use crate::objects::node::Node;
use crate::objects::secret::{Config, Secret};
use crate::objects::service::Service;
use crate::objects::task::{Task, TaskState};

/// One kind's objects, ordered by id (so iteration and encoding are deterministic), plus the unique
/// lowercase-name index for kinds that have one.
#[derive(Clone, Debug)]
#[allow(unreachable_pub)]
pub struct Table<T> {
    pub(crate) by_id: BTreeMap<Id, Arc<T>>,
    pub(crate) by_name: BTreeMap<String, Id>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            by_id: BTreeMap::new(),
            by_name: BTreeMap::new(),
        }
    }
}

/// Name index key: names are unique case-insensitively, as in SwarmKit.
pub(crate) fn name_key(name: &str) -> String {
    name.to_lowercase()
}

type Set = BTreeSet<Id>;

/// The smallest id (all zeros): the lower end of every index range.
static MIN_ID: std::sync::LazyLock<Id> = std::sync::LazyLock::new(|| Id::from_u128(0));

/// Task indexes. Each is one ordered set of `(key, task id)` pairs rather than a map from key to
/// a set of ids: an index entry then costs one B-tree slot (no map entry and no set allocation
/// per key; most slots and many services and nodes hold one task or a few), inserting tasks in id
/// order appends, and the tasks of one key are a range, already in id order.
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskIndexes {
    pub(crate) by_service: BTreeSet<(Id, Id)>,
    pub(crate) by_node: BTreeSet<(Id, Id)>,
    pub(crate) by_slot: BTreeSet<(Id, u64, Id)>,
    pub(crate) by_desired: BTreeSet<(TaskState, Id)>,
}

impl TaskIndexes {
    /// Tasks of `service`, in id order.
    pub(crate) fn service(&self, service: Id) -> impl Iterator<Item = Id> + '_ {
        self.by_service
            .range((service, *MIN_ID)..)
            .take_while(move |(s, _)| *s == service)
            .map(|&(_, t)| t)
    }

    /// Tasks assigned to `node`, in id order.
    pub(crate) fn node(&self, node: Id) -> impl Iterator<Item = Id> + '_ {
        self.by_node
            .range((node, *MIN_ID)..)
            .take_while(move |(n, _)| *n == node)
            .map(|&(_, t)| t)
    }

    /// Tasks of slot `slot` of `service`, in id order.
    pub(crate) fn slot(&self, service: Id, slot: u64) -> impl Iterator<Item = Id> + '_ {
        self.by_slot
            .range((service, slot, *MIN_ID)..)
            .take_while(move |(s, n, _)| *s == service && *n == slot)
            .map(|&(_, _, t)| t)
    }

    /// Tasks with desired state `state`, in id order.
    pub(crate) fn desired(&self, state: TaskState) -> impl Iterator<Item = Id> + '_ {
        self.by_desired
            .range((state, *MIN_ID)..)
            .take_while(move |(d, _)| *d == state)
            .map(|&(_, t)| t)
    }
}

/// Reverse references from services to the secrets, configs and networks they use.
#[derive(Clone, Debug, Default)]
pub(crate) struct RefIndexes {
    pub(crate) by_secret: HashMap<Id, Set>,
    pub(crate) by_config: HashMap<Id, Set>,
    pub(crate) by_network: HashMap<String, Set>,
}

/// All tables and indexes.
#[derive(Clone, Debug, Default)]
#[allow(unreachable_pub)]
pub struct Tables {
    pub(crate) clusters: Table<Cluster>,
    pub(crate) nodes: Table<Node>,
    pub(crate) services: Table<Service>,
    pub(crate) tasks: Table<Task>,
    pub(crate) secrets: Table<Secret>,
    pub(crate) configs: Table<Config>,
    pub(crate) networks: Table<Network>,
    pub(crate) task_idx: TaskIndexes,
    pub(crate) refs: RefIndexes,
}

/// Ties a stored type to its table. Public only so that [`StoreObject`] can require it (a sealed
/// trait): this module is private, so nothing outside the crate can implement or call it.
#[allow(unreachable_pub)]
pub trait Tabled: Sized {
    /// The table of this kind.
    fn table(t: &Tables) -> &Table<Self>;
    /// The table of this kind, mutably.
    fn table_mut(t: &mut Tables) -> &mut Table<Self>;
}

macro_rules! tabled {
    ($ty:ty, $field:ident) => {
        impl Tabled for $ty {
            fn table(t: &Tables) -> &Table<Self> {
                &t.$field
            }
            fn table_mut(t: &mut Tables) -> &mut Table<Self> {
                &mut t.$field
            }
        }
    };
}

tabled!(Cluster, clusters);
tabled!(Node, nodes);
tabled!(Service, services);
tabled!(Task, tasks);
tabled!(Secret, secrets);
tabled!(Config, configs);
tabled!(Network, networks);

fn set_add<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Set>, k: K, id: Id) {
    m.entry(k).or_default().insert(id);
}

fn set_del<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Set>, k: &K, id: &Id) {
    if let Some(s) = m.get_mut(k) {
        s.remove(id);
        if s.is_empty() {
            m.remove(k);
        }
    }
}

impl Tables {
    /// Looks an object up by kind and id.
    pub(crate) fn get_object(&self, kind: ObjectKind, id: &Id) -> Option<Object> {
        fn g<T: StoreObject>(t: &Tables, id: &Id) -> Option<Object> {
            T::table(t).by_id.get(id).map(|o| o.clone().into_object())
        }
        match kind {
            ObjectKind::Cluster => g::<Cluster>(self, id),
            ObjectKind::Node => g::<Node>(self, id),
            ObjectKind::Service => g::<Service>(self, id),
            ObjectKind::Task => g::<Task>(self, id),
            ObjectKind::Secret => g::<Secret>(self, id),
            ObjectKind::Config => g::<Config>(self, id),
            ObjectKind::Network => g::<Network>(self, id),
        }
    }

    /// Id of the object of `kind` holding `name` (unique-name kinds only).
    pub(crate) fn id_by_name(&self, kind: ObjectKind, name: &str) -> Option<Id> {
        fn g<T: StoreObject>(t: &Tables, name: &str) -> Option<Id> {
            T::table(t).by_name.get(&name_key(name)).copied()
        }
        match kind {
            ObjectKind::Cluster => g::<Cluster>(self, name),
            ObjectKind::Service => g::<Service>(self, name),
            ObjectKind::Secret => g::<Secret>(self, name),
            ObjectKind::Config => g::<Config>(self, name),
            ObjectKind::Network => g::<Network>(self, name),
            ObjectKind::Node | ObjectKind::Task => None,
        }
    }

    /// Inserts or replaces `obj`, keeping every index in step. Returns the previous object.
    /// Callers have already checked uniqueness and versions.
    pub(crate) fn put(&mut self, obj: Object) -> Option<Object> {
        fn put_in<T: StoreObject>(t: &mut Tables, o: Arc<T>) -> Option<Arc<T>> {
            let table = T::table_mut(t);
            let old = table.by_id.insert(o.id(), o.clone());
            if T::KIND.has_unique_names() {
                if let Some(old) = &old {
                    if old.index_name() != o.index_name() {
                        table.by_name.remove(&name_key(old.index_name()));
                    }
                }
                table.by_name.insert(name_key(o.index_name()), o.id());
            }
            old
        }
        match obj {
            Object::Task(t) => {
                let old = put_in(self, t.clone());
                self.reindex_task(old.as_deref(), Some(&t));
                old.map(Object::Task)
            }
            Object::Service(s) => {
                let old = put_in(self, s.clone());
                self.reindex_service(old.as_deref(), Some(&s));
                old.map(Object::Service)
            }
            Object::Cluster(o) => put_in(self, o).map(Object::Cluster),
            Object::Node(o) => put_in(self, o).map(Object::Node),
            Object::Secret(o) => put_in(self, o).map(Object::Secret),
            Object::Config(o) => put_in(self, o).map(Object::Config),
            Object::Network(o) => put_in(self, o).map(Object::Network),
        }
    }

    /// Fills an empty task table and its indexes from `tasks` at once (a snapshot restore):
    /// the same result as `put` of each task, built in bulk (sorted collection instead of one
    /// B-tree insertion per task and index), which is what keeps restoring 100 000 tasks fast.
    pub(crate) fn restore_tasks(&mut self, mut tasks: Vec<Arc<Task>>) {
        debug_assert!(self.tasks.by_id.is_empty() && !ObjectKind::Task.has_unique_names());
        if !tasks.windows(2).all(|w| w[0].id < w[1].id) {
            // Not from our own encoder: order by id and keep the last of each id, as `put` would.
            tasks.sort_by_key(|t| t.id);
            tasks.reverse();
            tasks.dedup_by_key(|t| t.id);
            tasks.reverse();
        }
        // Every index is built from a sorted vector (a B-tree built from sorted input is a linear
        // bulk load). Tasks come in id order, so grouping by key with a stable sort keeps each
        // key's ids in order; the keys themselves are few or nearly sorted in practice.
        let mut by_service: Vec<(Id, Id)> = tasks.iter().map(|t| (t.service_id, t.id)).collect();
        let mut by_node: Vec<(Id, Id)> = tasks
            .iter()
            .filter_map(|t| Some((t.node_id?, t.id)))
            .collect();
        let mut by_slot: Vec<(Id, u64, Id)> =
            tasks.iter().map(|t| (t.service_id, t.slot, t.id)).collect();
        let mut by_desired: Vec<(TaskState, Id)> =
            tasks.iter().map(|t| (t.desired_state, t.id)).collect();
        by_service.sort();
        by_node.sort();
        by_slot.sort();
        by_desired.sort();
        self.tasks.by_id = tasks.into_iter().map(|t| (t.id, t)).collect();
        let ix = &mut self.task_idx;
        ix.by_service = by_service.into_iter().collect();
        ix.by_node = by_node.into_iter().collect();
        ix.by_slot = by_slot.into_iter().collect();
        ix.by_desired = by_desired.into_iter().collect();
    }

    /// Deletes an object, keeping every index in step. Returns it.
    pub(crate) fn delete(&mut self, kind: ObjectKind, id: &Id) -> Option<Object> {
        fn del<T: StoreObject>(t: &mut Tables, id: &Id) -> Option<Arc<T>> {
            let table = T::table_mut(t);
            let old = table.by_id.remove(id)?;
            if T::KIND.has_unique_names() {
                table.by_name.remove(&name_key(old.index_name()));
            }
            Some(old)
        }
        match kind {
            ObjectKind::Task => {
                let old = del::<Task>(self, id)?;
                self.reindex_task(Some(&old), None);
                Some(Object::Task(old))
            }
            ObjectKind::Service => {
                let old = del::<Service>(self, id)?;
                self.reindex_service(Some(&old), None);
                Some(Object::Service(old))
            }
            ObjectKind::Cluster => del::<Cluster>(self, id).map(Object::Cluster),
            ObjectKind::Node => del::<Node>(self, id).map(Object::Node),
            ObjectKind::Secret => del::<Secret>(self, id).map(Object::Secret),
            ObjectKind::Config => del::<Config>(self, id).map(Object::Config),
            ObjectKind::Network => del::<Network>(self, id).map(Object::Network),
        }
    }

    /// Updates task indexes from `old` to `new`, touching only the keys that changed (a status update
    /// changes none of them, which keeps the hottest write cheap).
    fn reindex_task(&mut self, old: Option<&Task>, new: Option<&Task>) {
        fn step<K: Ord>(set: &mut BTreeSet<K>, old: Option<K>, new: Option<K>) {
            if old != new {
                if let Some(k) = old {
                    set.remove(&k);
                }
                if let Some(k) = new {
                    set.insert(k);
                }
            }
        }
        let ix = &mut self.task_idx;
        let Some(id) = old.or(new).map(|t| t.id) else {
            return;
        };
        step(
            &mut ix.by_service,
            old.map(|t| (t.service_id, id)),
            new.map(|t| (t.service_id, id)),
        );
        step(
            &mut ix.by_node,
            old.and_then(|t| Some((t.node_id?, id))),
            new.and_then(|t| Some((t.node_id?, id))),
        );
        step(
            &mut ix.by_slot,
            old.map(|t| (t.service_id, t.slot, id)),
            new.map(|t| (t.service_id, t.slot, id)),
        );
        step(
            &mut ix.by_desired,
            old.map(|t| (t.desired_state, id)),
            new.map(|t| (t.desired_state, id)),
        );
    }

    fn reindex_service(&mut self, old: Option<&Service>, new: Option<&Service>) {
        let refs = |s: Option<&Service>| -> (Set, Set, BTreeSet<String>) {
            let mut a = Set::new();
            let mut b = Set::new();
            let mut c = BTreeSet::new();
            if let Some(s) = s {
                // Only the current spec counts, as in SwarmKit: after `--secret-rm` the old secret
                // may be removed even though `previous_spec` still names it.
                let spec = &s.spec;
                a.extend(spec.task.container.secrets.iter().map(|r| r.secret_id));
                b.extend(spec.task.container.configs.iter().map(|r| r.config_id));
                c.extend(spec.task.networks.iter().map(|n| n.target.clone()));
            }
            (a, b, c)
        };
        let Some(id) = old.or(new).map(|s| s.id) else {
            return;
        };
        let (os, oc, on) = refs(old);
        let (ns, nc, nn) = refs(new);
        let r = &mut self.refs;
        for k in os.difference(&ns) {
            set_del(&mut r.by_secret, k, &id);
        }
        for k in ns.difference(&os) {
            set_add(&mut r.by_secret, *k, id);
        }
        for k in oc.difference(&nc) {
            set_del(&mut r.by_config, k, &id);
        }
        for k in nc.difference(&oc) {
            set_add(&mut r.by_config, *k, id);
        }
        for k in on.difference(&nn) {
            set_del(&mut r.by_network, k, &id);
        }
        for k in nn.difference(&on) {
            set_add(&mut r.by_network, k.clone(), id);
        }
    }
}
