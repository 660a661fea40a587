//! The store's tables and secondary indexes. Every write goes through [`Tables::put`],
//! [`Tables::write`] and [`Tables::delete`], which keep all indexes in step; nothing else
//! mutates a table.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use super::counts::CountIndex;
use super::idmap::{IdMap, Ids, KeyMap};
use super::StoreError;
use crate::id::Id;
use crate::meta::{Meta, Version};
use crate::object::{Object, ObjectKind, StoreObject};
use crate::objects::cluster::Cluster;
use crate::objects::network::Network;
use crate::objects::node::Node;
use crate::objects::secret::{Config, Secret};
use crate::objects::service::Service;
use crate::objects::task::{Task, TaskState};

/// One kind's objects by id (hash-addressed, the id order made on demand: listings and the
/// encoding are in id order), plus the unique lowercase-name index for kinds that have one.
#[derive(Clone, Debug)]
#[allow(unreachable_pub)]
pub struct Table<T> {
    pub(crate) by_id: IdMap<Arc<T>>,
    pub(crate) by_name: BTreeMap<String, Id>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            by_id: IdMap::default(),
            by_name: BTreeMap::new(),
        }
    }
}

impl<T: StoreObject> Table<T> {
    /// Keeps the name index in step after `new` replaced `old` in `by_id` (kinds with unique
    /// names only).
    fn rename(&mut self, old: Option<&T>, new: &T) {
        if T::KIND.has_unique_names() {
            if let Some(old) = old {
                if old.index_name() != new.index_name() {
                    self.by_name.remove(&name_key(old.index_name()));
                }
            }
            self.by_name.insert(name_key(new.index_name()), new.id());
        }
    }
}

/// Name index key: names are unique case-insensitively, as in SwarmKit.
pub(crate) fn name_key(name: &str) -> String {
    name.to_lowercase()
}

type Set = BTreeSet<Id>;

/// One task index: key -> the ids of the tasks with that key.
#[derive(Clone, Debug)]
pub(crate) struct Index<K> {
    map: KeyMap<K, Ids>,
}

impl<K> Default for Index<K> {
    fn default() -> Self {
        Index {
            map: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq> Index<K> {
    /// The tasks under `key`, in no particular order.
    pub(crate) fn get(&self, key: &K) -> impl Iterator<Item = Id> + '_ {
        self.map.get(key).into_iter().flat_map(Ids::iter)
    }

    fn insert(&mut self, key: K, id: Id) {
        match self.map.entry(key) {
            Entry::Vacant(e) => {
                e.insert(Ids::One(id));
            }
            Entry::Occupied(mut e) => e.get_mut().add(id),
        }
    }

    fn remove(&mut self, key: &K, id: &Id) {
        let Some(ids) = self.map.get_mut(key) else {
            return;
        };
        if ids.del(id) {
            self.map.remove(key);
        }
    }

    /// An index of `pairs` built in bulk: keys holding one task inline, the sets of the others
    /// sized for their ids up front.
    fn from_pairs(pairs: impl Iterator<Item = (K, Id)>) -> Index<K> {
        let mut grouped: KeyMap<K, Vec<Id>> = KeyMap::default();
        for (k, id) in pairs {
            grouped.entry(k).or_default().push(id);
        }
        let map = grouped
            .into_iter()
            .filter_map(|(k, ids)| Some((k, Ids::from_vec(ids)?)))
            .collect();
        Index { map }
    }
}

/// The tasks of one service, by slot.
#[derive(Clone, Debug)]
pub(crate) enum ServiceTasks {
    /// A single task (every single-replica service): inline, no allocation.
    One {
        /// Its slot.
        slot: u64,
        /// Its id.
        id: Id,
    },
    /// Two tasks or more.
    Many {
        /// How many.
        len: usize,
        /// The tasks by slot. Slots are small numbers handed out in increasing order by the
        /// orchestrator, so an insertion goes to the tree's right edge, which stays in cache; a
        /// tree of every task id instead would take a cold descent per task at a million.
        slots: BTreeMap<u64, Ids>,
    },
}

/// The service and slot indexes in one: service -> its tasks by slot. One hash probe per task
/// write, and a service's slots stay together (a slot's lookup goes through its service, whose
/// slots are ordered).
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceIndex {
    map: KeyMap<Id, ServiceTasks>,
}

impl ServiceIndex {
    /// The tasks of `service`, ordered by slot (a slot's tasks in no particular order).
    pub(crate) fn tasks(&self, service: &Id) -> impl Iterator<Item = Id> + '_ {
        let (one, many) = match self.map.get(service) {
            Some(ServiceTasks::One { id, .. }) => (Some(*id), None),
            Some(ServiceTasks::Many { slots, .. }) => (None, Some(slots)),
            None => (None, None),
        };
        one.into_iter().chain(
            many.into_iter()
                .flat_map(|m| m.values().flat_map(Ids::iter)),
        )
    }

    /// The tasks of `slot` of `service`, in no particular order.
    pub(crate) fn slot(&self, service: &Id, slot: u64) -> impl Iterator<Item = Id> + '_ {
        let (one, many) = match self.map.get(service) {
            Some(ServiceTasks::One { slot: s, id }) if *s == slot => (Some(*id), None),
            Some(ServiceTasks::Many { slots, .. }) => (None, slots.get(&slot)),
            _ => (None, None),
        };
        one.into_iter().chain(many.into_iter().flat_map(Ids::iter))
    }

    fn insert(&mut self, service: Id, slot: u64, id: Id) {
        let tasks = match self.map.entry(service) {
            Entry::Vacant(e) => {
                e.insert(ServiceTasks::One { slot, id });
                return;
            }
            Entry::Occupied(e) => e.into_mut(),
        };
        if let ServiceTasks::One { slot: s, id: x } = *tasks {
            if (s, x) == (slot, id) {
                return;
            }
            let mut slots = BTreeMap::new();
            slots.insert(s, Ids::One(x));
            *tasks = ServiceTasks::Many { len: 1, slots };
        }
        if let ServiceTasks::Many { len, slots } = tasks {
            match slots.entry(slot) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Ids::One(id));
                    *len += 1;
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    let before = e.get().len();
                    e.get_mut().add(id);
                    *len += e.get().len() - before;
                }
            }
        }
    }

    fn remove(&mut self, service: &Id, slot: u64, id: &Id) {
        let Some(tasks) = self.map.get_mut(service) else {
            return;
        };
        let (empty, collapse) = match tasks {
            ServiceTasks::One { slot: s, id: x } => (*s == slot && x == id, None),
            ServiceTasks::Many { len, slots } => {
                if let Some(in_slot) = slots.get_mut(&slot) {
                    let before = in_slot.len();
                    if in_slot.del(id) {
                        slots.remove(&slot);
                        *len -= before;
                    } else {
                        *len -= before - in_slot.len();
                    }
                }
                // Back to one task: inline again.
                let last = match slots.iter().next() {
                    Some((s, Ids::One(x))) if *len == 1 => Some((*s, *x)),
                    _ => None,
                };
                (*len == 0, last)
            }
        };
        if let Some((slot, id)) = collapse {
            *tasks = ServiceTasks::One { slot, id };
        }
        if empty {
            self.map.remove(service);
        }
    }

    /// The index of `tasks` (service, slot, id) built in bulk: one sort by service and slot,
    /// each service's slot tree built from its sorted run, and the map sized for its services up
    /// front (no rehash).
    fn from_triples(tasks: impl Iterator<Item = (Id, u64, Id)>) -> ServiceIndex {
        let mut order: Vec<(Id, u64, Id)> = tasks.collect();
        order.sort_unstable_by_key(|r| (r.0, r.1));
        let services = order.chunk_by(|a, b| a.0 == b.0).count();
        let mut map = KeyMap::with_capacity_and_hasher(services, Default::default());
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            let tasks = match run {
                [(_, slot, id)] => ServiceTasks::One {
                    slot: *slot,
                    id: *id,
                },
                _ => {
                    let slots = run
                        .chunk_by(|a, b| a.1 == b.1)
                        .filter_map(|s| {
                            Some((s[0].1, Ids::from_vec(s.iter().map(|p| p.2).collect())?))
                        })
                        .collect();
                    ServiceTasks::Many {
                        len: run.len(),
                        slots,
                    }
                }
            };
            map.insert(run[0].0, tasks);
        }
        ServiceIndex { map }
    }

    /// Checks the counts agree with the slots (tests).
    #[cfg(test)]
    fn consistent(&self) -> bool {
        self.map.values().all(|t| match t {
            ServiceTasks::One { .. } => true,
            ServiceTasks::Many { len, slots } => {
                *len >= 2
                    && slots.values().map(Ids::len).sum::<usize>() == *len
                    && slots
                        .values()
                        .all(|v| !matches!(v, Ids::Many(s) if s.len() < 2))
            }
        })
    }
}

/// Task indexes. A key holding a single task costs one map entry and no allocation (a slot holds
/// one task or a few; in SwarmKit's benchmark shapes every service has one task); hashing is
/// [`KeyHasher`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskIndexes {
    /// By service, and by (service, slot).
    pub(crate) by_service: ServiceIndex,
    pub(crate) by_node: Index<Id>,
    /// By desired state, every state but [`UNINDEXED_DESIRED`].
    pub(crate) by_desired: Index<TaskState>,
    /// Running, completed and wanted tasks per service (and job iteration).
    pub(crate) counts: CountIndex,
}

/// The desired state the task indexes leave out: `running`, the state of nearly every live task.
/// Its set would hold about as many ids as the task table and cost a B-tree insertion (the
/// largest set's) per task created and a removal per task stopped; listing it filters the table
/// instead, which costs about as much as walking such a set would. No component lists it (the
/// restart supervisor lists `ready`, the reaper `remove`).
pub(crate) const UNINDEXED_DESIRED: TaskState = TaskState::Running;

/// The index key of desired state `state` (`None` for [`UNINDEXED_DESIRED`]).
fn desired_key(state: TaskState) -> Option<TaskState> {
    (state != UNINDEXED_DESIRED).then_some(state)
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
            table.rename(old.as_deref(), &o);
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

    /// Writes `obj` (a create or an update) with one descent of its table's `by_id`:
    /// `decide` sees the stored object with that id, if any, and returns the meta to stamp on
    /// `obj`, or refuses (then nothing changed and `obj` comes back as given). Returns the object
    /// as written and the one it replaced; every index is kept in step, as by [`Tables::put`].
    /// The caller has already checked that the name is free (`decide` reports it in its turn).
    pub(crate) fn write(
        &mut self,
        obj: Object,
        decide: impl FnOnce(Option<&Object>) -> Result<Meta, StoreError>,
    ) -> Result<(Object, Option<Object>), (StoreError, Object)> {
        type Written<T> = Result<(Arc<T>, Option<Arc<T>>), (StoreError, Arc<T>)>;
        fn write_in<T: StoreObject>(
            t: &mut Tables,
            mut o: Arc<T>,
            decide: impl FnOnce(Option<&Object>) -> Result<Meta, StoreError>,
        ) -> Written<T> {
            let table = T::table_mut(t);
            let (o, old) = table.by_id.write(o.id(), |old| {
                let old = old.map(|o| o.clone().into_object());
                match decide(old.as_ref()) {
                    Ok(meta) => {
                        *Arc::make_mut(&mut o).meta_mut() = meta;
                        Ok(o)
                    }
                    Err(err) => Err((err, o)),
                }
            })?;
            let o = o.clone();
            table.rename(old.as_deref(), &o);
            Ok((o, old))
        }
        macro_rules! plain {
            ($kind:ident, $o:expr) => {
                match write_in(self, $o, decide) {
                    Ok((new, old)) => Ok((Object::$kind(new), old.map(Object::$kind))),
                    Err((e, o)) => Err((e, Object::$kind(o))),
                }
            };
        }
        match obj {
            Object::Task(t) => match write_in(self, t, decide) {
                Ok((new, old)) => {
                    self.reindex_task(old.as_deref(), Some(&new));
                    Ok((Object::Task(new), old.map(Object::Task)))
                }
                Err((e, t)) => Err((e, Object::Task(t))),
            },
            Object::Service(s) => match write_in(self, s, decide) {
                Ok((new, old)) => {
                    self.reindex_service(old.as_deref(), Some(&new));
                    Ok((Object::Service(new), old.map(Object::Service)))
                }
                Err((e, s)) => Err((e, Object::Service(s))),
            },
            Object::Cluster(o) => plain!(Cluster, o),
            Object::Node(o) => plain!(Node, o),
            Object::Secret(o) => plain!(Secret, o),
            Object::Config(o) => plain!(Config, o),
            Object::Network(o) => plain!(Network, o),
        }
    }

    /// Fills an empty task table and its indexes from `tasks` at once (a snapshot restore):
    /// the same result as `put` of each task, built in bulk (every table sized up front, the id
    /// order taken from the snapshot's), which is what keeps restoring a million tasks linear.
    pub(crate) fn restore_tasks(&mut self, mut tasks: Vec<Arc<Task>>) {
        debug_assert!(self.tasks.by_id.is_empty() && !ObjectKind::Task.has_unique_names());
        if !tasks.windows(2).all(|w| w[0].id < w[1].id) {
            // Not from our own encoder: order by id and keep the last of each id, as `put` would.
            tasks.sort_by_key(|t| t.id);
            tasks.reverse();
            tasks.dedup_by_key(|t| t.id);
            tasks.reverse();
        }
        // Every index key read in one pass: each task is touched once (at 1M tasks they are
        // far outside the caches), the indexes are then built from this compact copy.
        type Keys = (
            Id,
            u64,
            Id,
            Option<Id>,
            TaskState,
            Option<Version>,
            TaskState,
        );
        let keys: Vec<Keys> = tasks
            .iter()
            .map(|t| {
                (
                    t.service_id,
                    t.slot,
                    t.id,
                    t.node_id,
                    t.desired_state,
                    t.job_iteration,
                    t.status.state,
                )
            })
            .collect();
        let ix = &mut self.task_idx;
        ix.by_service = ServiceIndex::from_triples(keys.iter().map(|k| (k.0, k.1, k.2)));
        ix.by_node = Index::from_pairs(keys.iter().filter_map(|k| Some((k.3?, k.2))));
        ix.by_desired =
            Index::from_pairs(keys.iter().filter_map(|k| Some((desired_key(k.4)?, k.2))));
        ix.counts = CountIndex::from_states(keys.iter().map(|k| (k.0, k.5, k.6)));
        drop(keys);
        self.tasks.by_id = IdMap::from_sorted(tasks.into_iter().map(|t| (t.id, t)).collect());
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
        fn step<K: Hash + Eq>(ix: &mut Index<K>, id: Id, old: Option<K>, new: Option<K>) {
            if old != new {
                if let Some(k) = old {
                    ix.remove(&k, &id);
                }
                if let Some(k) = new {
                    ix.insert(k, id);
                }
            }
        }
        let ix = &mut self.task_idx;
        let Some(id) = old.or(new).map(|t| t.id) else {
            return;
        };
        ix.counts.reindex(old, new);
        let (old_slot, new_slot) = (
            old.map(|t| (t.service_id, t.slot)),
            new.map(|t| (t.service_id, t.slot)),
        );
        if old_slot != new_slot {
            if let Some((service, slot)) = old_slot {
                ix.by_service.remove(&service, slot, &id);
            }
            if let Some((service, slot)) = new_slot {
                ix.by_service.insert(service, slot, id);
            }
        }
        step(
            &mut ix.by_node,
            id,
            old.and_then(|t| t.node_id),
            new.and_then(|t| t.node_id),
        );
        step(
            &mut ix.by_desired,
            id,
            old.and_then(|t| desired_key(t.desired_state)),
            new.and_then(|t| desired_key(t.desired_state)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{id, typical_task};

    /// The model: (service, slot, id) triples.
    fn expected(model: &BTreeSet<(Id, u64, Id)>, service: &Id, slot: Option<u64>) -> Vec<Id> {
        let mut v: Vec<Id> = model
            .iter()
            .filter(|(s, sl, _)| s == service && slot.is_none_or(|x| x == *sl))
            .map(|r| r.2)
            .collect();
        v.sort();
        v
    }

    fn check(ix: &ServiceIndex, model: &BTreeSet<(Id, u64, Id)>) {
        assert!(ix.consistent());
        let sorted = |it: &mut dyn Iterator<Item = Id>| {
            let mut v: Vec<Id> = it.collect();
            v.sort();
            v
        };
        for s in 0..4u128 {
            let service = id(s);
            assert_eq!(
                sorted(&mut ix.tasks(&service)),
                expected(model, &service, None)
            );
            let slots: Vec<u64> = ix
                .tasks(&service)
                .map(|t| model.iter().find(|r| r.2 == t).map_or(u64::MAX, |r| r.1))
                .collect();
            assert!(slots.windows(2).all(|w| w[0] <= w[1]), "by slot: {slots:?}");
            for slot in 0..5 {
                assert_eq!(
                    sorted(&mut ix.slot(&service, slot)),
                    expected(model, &service, Some(slot))
                );
            }
        }
        let services: BTreeSet<Id> = model.iter().map(|r| r.0).collect();
        assert_eq!(ix.map.len(), services.len(), "no empty service kept");
    }

    /// Inserts and removes in a fixed pseudo-random order, checking the index against a model
    /// after each step (one task, many, collapse back to one, empty), and that the bulk build
    /// from the same tasks gives the same answers.
    #[test]
    fn service_index_matches_a_model() {
        let mut ix = ServiceIndex::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let service = id(u128::from(x % 4));
            let slot = (x >> 8) % 5;
            let task = id(100 + u128::from((x >> 16) % 12));
            // A task belongs to one (service, slot) at a time, as the store guarantees.
            let current = model.iter().find(|r: &&(Id, u64, Id)| r.2 == task).copied();
            match current {
                Some(r) => {
                    ix.remove(&r.0, r.1, &r.2);
                    model.remove(&r);
                }
                None => {
                    ix.insert(service, slot, task);
                    model.insert((service, slot, task));
                }
            }
            check(&ix, &model);
            let tasks: Vec<Arc<Task>> = {
                let mut v: Vec<Arc<Task>> = model
                    .iter()
                    .map(|&(s, sl, t)| {
                        let mut task = typical_task(0, s, None);
                        task.id = t;
                        task.slot = sl;
                        Arc::new(task)
                    })
                    .collect();
                v.sort_by_key(|t| t.id);
                v
            };
            check(
                &ServiceIndex::from_triples(tasks.iter().map(|t| (t.service_id, t.slot, t.id))),
                &model,
            );
        }
    }
}
