//! The store's tables and secondary indexes. Every write goes through [`Tables::put`] and
//! [`Tables::delete`], which keep all indexes in step; nothing else mutates a table.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
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

/// Hasher of the task index keys (ids, slots, states). Ids are random bits minted by the
/// managers, never chosen by a client, so a multiply-rotate fold over the key's words spreads them
/// well; SipHash's resistance to chosen keys would only cost time on the store's hottest writes.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHasher(u64);

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl KeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Fold the high bits, which the multiplications filled best, into the low bits that
        // pick the bucket.
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(MULTIPLIER) ^ (h >> 32)
    }
}

/// The task ids under one index key: held inline while there is one (most slots, and services
/// or nodes with a single task), a set beyond.
#[derive(Clone, Debug)]
pub(crate) enum Ids {
    One(Id),
    Many(Set),
}

impl Ids {
    /// The ids, in order.
    fn iter(&self) -> impl Iterator<Item = Id> + '_ {
        let (one, many) = match self {
            Ids::One(id) => (Some(*id), None),
            Ids::Many(set) => (None, Some(set)),
        };
        one.into_iter().chain(many.into_iter().flatten().copied())
    }
}

/// One task index: key -> the ids of the tasks with that key, in id order.
#[derive(Clone, Debug)]
pub(crate) struct Index<K> {
    map: HashMap<K, Ids, BuildHasherDefault<KeyHasher>>,
}

impl<K> Default for Index<K> {
    fn default() -> Self {
        Index {
            map: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq> Index<K> {
    /// The tasks under `key`, in id order.
    pub(crate) fn get(&self, key: &K) -> impl Iterator<Item = Id> + '_ {
        self.map.get(key).into_iter().flat_map(Ids::iter)
    }

    fn insert(&mut self, key: K, id: Id) {
        match self.map.entry(key) {
            Entry::Vacant(e) => {
                e.insert(Ids::One(id));
            }
            Entry::Occupied(mut e) => {
                let ids = e.get_mut();
                match ids {
                    Ids::One(x) if *x == id => {}
                    Ids::One(x) => *ids = Ids::Many(Set::from([*x, id])),
                    Ids::Many(set) => {
                        set.insert(id);
                    }
                }
            }
        }
    }

    fn remove(&mut self, key: &K, id: &Id) {
        let Some(ids) = self.map.get_mut(key) else {
            return;
        };
        let empty = match ids {
            Ids::One(x) => x == id,
            Ids::Many(set) => {
                set.remove(id);
                if set.len() == 1 {
                    if let Some(&last) = set.first() {
                        *ids = Ids::One(last);
                    }
                }
                set_is_empty(ids)
            }
        };
        if empty {
            self.map.remove(key);
        }
    }

    /// An index of `pairs`, which come in task id order: keys holding one task inline, the sets
    /// of the others built in bulk from their (already ordered) ids.
    fn from_ordered(pairs: impl Iterator<Item = (K, Id)>) -> Index<K> {
        let mut grouped: HashMap<K, Vec<Id>, BuildHasherDefault<KeyHasher>> = HashMap::default();
        for (k, id) in pairs {
            grouped.entry(k).or_default().push(id);
        }
        let map = grouped
            .into_iter()
            .map(|(k, ids)| {
                let v = match ids.as_slice() {
                    [one] => Ids::One(*one),
                    _ => Ids::Many(ids.into_iter().collect()),
                };
                (k, v)
            })
            .collect();
        Index { map }
    }
}

fn set_is_empty(ids: &Ids) -> bool {
    matches!(ids, Ids::Many(set) if set.is_empty())
}

/// Task indexes. A key holding a single task costs one map entry and no allocation (a slot holds
/// one task or a few; in SwarmKit's benchmark shapes every service has one task); hashing is
/// [`KeyHasher`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskIndexes {
    pub(crate) by_service: Index<Id>,
    pub(crate) by_node: Index<Id>,
    pub(crate) by_slot: Index<(Id, u64)>,
    pub(crate) by_desired: Index<TaskState>,
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
        let ix = &mut self.task_idx;
        ix.by_service = Index::from_ordered(tasks.iter().map(|t| (t.service_id, t.id)));
        ix.by_node = Index::from_ordered(tasks.iter().filter_map(|t| Some((t.node_id?, t.id))));
        ix.by_desired = Index::from_ordered(tasks.iter().map(|t| (t.desired_state, t.id)));
        // Slots hold one task or a few: insert directly (grouping would allocate a vector each).
        let mut by_slot = Index::default();
        by_slot.map.reserve(tasks.len());
        for t in &tasks {
            by_slot.insert((t.service_id, t.slot), t.id);
        }
        ix.by_slot = by_slot;
        self.tasks.by_id = tasks.into_iter().map(|t| (t.id, t)).collect();
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
        step(
            &mut ix.by_service,
            id,
            old.map(|t| t.service_id),
            new.map(|t| t.service_id),
        );
        step(
            &mut ix.by_node,
            id,
            old.and_then(|t| t.node_id),
            new.and_then(|t| t.node_id),
        );
        step(
            &mut ix.by_slot,
            id,
            old.map(|t| (t.service_id, t.slot)),
            new.map(|t| (t.service_id, t.slot)),
        );
        step(
            &mut ix.by_desired,
            id,
            old.map(|t| t.desired_state),
            new.map(|t| t.desired_state),
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
