//! The store: every object of the cluster, in memory, versioned, indexed, transactional and watchable.
//!
//! [`Store`] is a plain value: it changes only through [`Store::apply`] (a committed [`Batch`] of
//! [`StoreAction`]s) and [`Store::restore`] (a snapshot). Reads are methods on `&Store`.
//! [`SharedStore`] wraps it for concurrent use: `view` for consistent reads, `view_and_watch` for a
//! snapshot plus every later event with no gap, and [`SharedStore::prepare`] to stage a transaction
//! ([`Tx`]) whose actions a [`crate::Proposer`] then commits.

mod counts;
mod idmap;
mod shared;
pub(crate) mod tables;
mod tx;
mod watch;

pub use counts::TaskCounts;
pub use shared::SharedStore;
pub use tx::Tx;
pub use watch::{Event, WatchError, WatchFilter, Watcher, DEFAULT_WATCH_LIMIT};

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::action::{Batch, StoreAction};
use crate::id::Id;
use crate::meta::{Meta, Version};
use crate::object::{Object, ObjectKind, ObjectRef, StoreObject};
use crate::objects::cluster::{Cluster, DEFAULT_CLUSTER_NAME};
use crate::objects::network::Network;
use crate::objects::node::Node;
use crate::objects::secret::{Config, Secret};
use crate::objects::service::Service;
use crate::objects::task::{Task, TaskState};
use crate::time::Timestamp;
use tables::{name_key, Tables};
use watch::Subscription;

/// Why a store change was refused. A refused change leaves the store exactly as it was.
/// Serializable, so a refusal on a raft leader travels back to the replica that forwarded it.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum StoreError {
    /// An object with this id already exists.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// Kind.
        kind: ObjectKind,
        /// Id.
        id: Id,
    },
    /// Another object of this kind already has this name (names are unique, case-insensitively).
    #[error("{kind} {name} already exists: choose another name")]
    NameConflict {
        /// Kind.
        kind: ObjectKind,
        /// The name asked for.
        name: String,
    },
    /// No such object.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Kind.
        kind: ObjectKind,
        /// Id.
        id: Id,
    },
    /// The update was computed from an older version of the object (optimistic concurrency).
    /// The message ends with Docker's `update out of sequence`: clients retry when it does.
    #[error("{kind} {id} is at version {current} but the update was based on version {given} (read it again and retry): update out of sequence")]
    VersionConflict {
        /// Kind.
        kind: ObjectKind,
        /// Id.
        id: Id,
        /// The stored version.
        current: u64,
        /// The version the update carried.
        given: u64,
    },
    /// The object is referenced by services and cannot be removed.
    #[error("{kind} '{name}' is in use by the following {}: {}", if services.len() == 1 { "service" } else { "services" }, services.join(", "))]
    InUse {
        /// Kind (secret, config or network).
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// Names of the services using it.
        services: Vec<String>,
    },
    /// A task update would move its observed state backwards.
    #[error("task {id}: state cannot go from {from} back to {to}")]
    StateRegression {
        /// Task id.
        id: Id,
        /// Stored state.
        from: TaskState,
        /// Proposed state.
        to: TaskState,
    },
    /// A batch's index is not above the store's.
    #[error("batch index {given} is not above the store's index {current}")]
    StaleIndex {
        /// The store's index.
        current: u64,
        /// The batch's.
        given: u64,
    },
    /// Snapshot bytes could not be decoded.
    #[error("store snapshot is corrupt or of an unknown format: {0}")]
    Snapshot(String),
}

/// Format version of [`StoreSnapshot`]. 2: the objects carry the Docker API fields added for
/// issue 18 (container security and resolver options, ulimits, generic resources, cluster
/// network bootstrap, ...). bincode has a fixed layout, so a format-1 snapshot cannot be read
/// with format-2 types; [`StoreSnapshot::decode`] refuses it by name. 3: nodes carry their
/// certificate record and the cluster's root CA its key, rotation state and last forced rotation
/// (issue 15); format 2 is refused by name. 4: networks carry their allocated IPAM and service
/// endpoints their virtual IPs (issue 16); format 3 is refused by name.
pub const SNAPSHOT_FORMAT: u32 = 4;

/// Every object of a store at one index. Encoding it (bincode) is deterministic: equal stores give
/// equal bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreSnapshot {
    /// Format version ([`SNAPSHOT_FORMAT`]).
    pub format: u32,
    /// Index of the last applied batch.
    pub index: u64,
    /// Clusters, by id.
    pub clusters: Vec<Arc<Cluster>>,
    /// Nodes, by id.
    pub nodes: Vec<Arc<Node>>,
    /// Services, by id.
    pub services: Vec<Arc<Service>>,
    /// Tasks, by id.
    pub tasks: Vec<Arc<Task>>,
    /// Secrets, by id.
    pub secrets: Vec<Arc<Secret>>,
    /// Configs, by id.
    pub configs: Vec<Arc<Config>>,
    /// Networks, by id.
    pub networks: Vec<Arc<Network>>,
}

impl StoreSnapshot {
    /// Encodes with bincode.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).unwrap_or_default()
    }

    /// Decodes untrusted bytes, refusing to allocate more than `limit` bytes.
    pub fn decode(bytes: &[u8], limit: u64) -> Result<StoreSnapshot, StoreError> {
        use bincode::Options;
        // bincode 1.3 does not enforce `with_limit` when reading from a slice, so check here.
        if bytes.len() as u64 > limit {
            return Err(StoreError::Snapshot(format!(
                "{} bytes is over the {limit}-byte limit",
                bytes.len()
            )));
        }
        // The format is the first field (a fixed-width u32): check it before decoding the rest,
        // whose layout depends on it.
        match bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        {
            Some(SNAPSHOT_FORMAT) | None => {}
            Some(3) => {
                return Err(StoreError::Snapshot(
                    "format 3 (written before networks and services gained their allocated \
                     addresses) is no longer read; move the data directory away and rejoin this \
                     manager"
                        .into(),
                ))
            }
            Some(2) => {
                return Err(StoreError::Snapshot(
                    "format 2 (written before nodes and the root CA gained their certificate \
                     fields) is no longer read; move the data directory away and rejoin this manager"
                        .into(),
                ))
            }
            Some(1) => {
                return Err(StoreError::Snapshot(
                    "format 1 (written before the objects gained the full Docker API fields) is \
                     no longer read; move the data directory away and rejoin this manager"
                        .into(),
                ))
            }
            Some(other) => {
                return Err(StoreError::Snapshot(format!(
                    "format {other} is not supported (expected {SNAPSHOT_FORMAT})"
                )))
            }
        }
        let snap: StoreSnapshot = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .reject_trailing_bytes()
            .with_limit(limit)
            .deserialize(bytes)
            .map_err(|e| StoreError::Snapshot(e.to_string()))?;
        if snap.format != SNAPSHOT_FORMAT {
            return Err(StoreError::Snapshot(format!(
                "format {} is not supported (expected {SNAPSHOT_FORMAT})",
                snap.format
            )));
        }
        Ok(snap)
    }
}

/// How to take back one applied action, and how to give it back to the caller as it was proposed.
enum Undo {
    /// A create: delete the object; the caller had given it `meta`.
    Created(ObjectRef, Meta),
    /// An update: put `old` back; the caller had given the new object `given`.
    Replaced { old: Object, given: Meta },
    /// A remove: put `old` back.
    Removed(Object),
}

/// A batch the store refused: the error, and its actions given back as proposed (same objects,
/// same order), so that a caller need not keep a copy of what it proposes.
#[derive(Debug)]
pub struct Refused {
    /// Why the batch was refused.
    pub error: StoreError,
    /// The batch's actions, unchanged.
    pub actions: Vec<StoreAction>,
}

/// The in-memory store. See the module docs.
#[derive(Default)]
pub struct Store {
    tables: Tables,
    index: u64,
    subscriptions: Vec<Subscription>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("index", &self.index)
            .field("nodes", &self.tables.nodes.by_id.len())
            .field("services", &self.tables.services.by_id.len())
            .field("tasks", &self.tables.tasks.by_id.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store at index 0.
    pub fn new() -> Store {
        Store::default()
    }

    /// Index of the last applied batch (or restored snapshot).
    pub fn index(&self) -> u64 {
        self.index
    }

    // ---- reads --------------------------------------------------------------------------------

    /// The object of type `T` with this id.
    pub fn get<T: StoreObject>(&self, id: &Id) -> Option<&Arc<T>> {
        T::table(&self.tables).by_id.get(id)
    }

    /// Any object by kind and id.
    pub fn get_object(&self, r: ObjectRef) -> Option<Object> {
        self.tables.get_object(r.kind, &r.id)
    }

    /// All objects of type `T`, ordered by id. The order is made on the first such read after
    /// objects were created or removed (a sort of the changed ids and a merge); a caller that
    /// looks at every object in any order should use [`Store::scan`].
    pub fn iter<T: StoreObject>(&self) -> impl Iterator<Item = &Arc<T>> + '_ {
        T::table(&self.tables).by_id.iter_from(None)
    }

    /// All objects of type `T`, in no particular order (the same in every run for the same
    /// history of writes): the cheapest walk of a table.
    pub fn scan<T: StoreObject>(&self) -> impl Iterator<Item = &Arc<T>> + '_ {
        T::table(&self.tables).by_id.values()
    }

    /// Number of objects of type `T`.
    pub fn count<T: StoreObject>(&self) -> usize {
        T::table(&self.tables).by_id.len()
    }

    /// The object of a unique-name kind with this name (case-insensitive). Nodes and tasks: see
    /// [`Store::find_by_name_prefix`] and the task indexes.
    pub fn get_by_name<T: StoreObject>(&self, name: &str) -> Option<&Arc<T>> {
        let table = T::table(&self.tables);
        table
            .by_name
            .get(&name_key(name))
            .and_then(|id| table.by_id.get(id))
    }

    /// Objects whose id starts with `prefix`, ordered by id.
    pub fn find_by_id_prefix<'a, T: StoreObject>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a Arc<T>> + 'a {
        let table = T::table(&self.tables);
        // Ids are fixed-width; the smallest id with this prefix pads it with '0'.
        let start = pad_id(prefix);
        let iter = start
            .map(|s| table.by_id.iter_from(Some(&s)).entries())
            .into_iter()
            .flatten();
        iter.take_while(move |(id, _)| id.has_prefix(prefix))
            .map(|(_, o)| o)
    }

    /// Objects whose name starts with `prefix` (case-insensitive). For unique-name kinds this uses the
    /// name index; for nodes and tasks it scans.
    pub fn find_by_name_prefix<'a, T: StoreObject>(
        &'a self,
        prefix: &str,
    ) -> Box<dyn Iterator<Item = &'a Arc<T>> + 'a> {
        let table = T::table(&self.tables);
        let p = name_key(prefix);
        if T::KIND.has_unique_names() {
            Box::new(
                table
                    .by_name
                    .range(p.clone()..)
                    .take_while(move |(n, _)| n.starts_with(&p))
                    .filter_map(|(_, id)| table.by_id.get(id)),
            )
        } else {
            Box::new(
                table
                    .by_id
                    .iter_from(None)
                    .filter(move |o| name_key(o.index_name()).starts_with(&p)),
            )
        }
    }

    /// The cluster object (named `default`), if created.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.get_by_name::<Cluster>(DEFAULT_CLUSTER_NAME)
    }

    fn tasks_in<'a>(
        &'a self,
        ids: impl Iterator<Item = Id> + 'a,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        ids.filter_map(|id| self.tables.tasks.by_id.get(&id))
    }

    /// Tasks of a service, ordered by slot (the tasks of one slot in no particular order).
    pub fn tasks_by_service<'a>(
        &'a self,
        service: &Id,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        self.tasks_in(self.tables.task_idx.by_service.tasks(service))
    }

    /// How many tasks of `service` run, completed or are wanted on a node (see [`TaskCounts`]):
    /// of all its tasks (`iteration` `None`), or of those of job iteration `iteration`. Kept with
    /// every write: no task is read.
    pub fn task_counts(&self, service: &Id, iteration: Option<Version>) -> TaskCounts {
        self.tables.task_idx.counts.get(service, iteration)
    }

    /// Tasks assigned to a node, in no particular order (the same in every run for the same
    /// history of writes).
    pub fn tasks_by_node<'a>(&'a self, node: &Id) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        self.tasks_in(self.tables.task_idx.by_node.get(node))
    }

    /// Tasks of one slot of a service (global tasks all have slot 0), in no particular order.
    pub fn tasks_by_slot<'a>(
        &'a self,
        service: &Id,
        slot: u64,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        self.tasks_in(self.tables.task_idx.by_service.slot(service, slot))
    }

    /// Tasks with this desired state, in no particular order. Every state is indexed but
    /// `running` (the state of nearly every live task), which is listed by filtering all tasks.
    pub fn tasks_by_desired_state(
        &self,
        state: TaskState,
    ) -> impl Iterator<Item = &Arc<Task>> + '_ {
        let unindexed = state == tables::UNINDEXED_DESIRED;
        let indexed =
            (!unindexed).then(|| self.tasks_in(self.tables.task_idx.by_desired.get(&state)));
        let scanned = unindexed.then(|| {
            self.tables
                .tasks
                .by_id
                .values()
                .filter(move |t| t.desired_state == state)
        });
        indexed
            .into_iter()
            .flatten()
            .chain(scanned.into_iter().flatten())
    }

    fn services_in<'a>(
        &'a self,
        set: Option<&'a std::collections::BTreeSet<Id>>,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        set.into_iter()
            .flatten()
            .filter_map(|id| self.tables.services.by_id.get(id))
    }

    /// Services whose current spec references this secret.
    pub fn services_by_secret<'a>(
        &'a self,
        secret: &Id,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        self.services_in(self.tables.refs.by_secret.get(secret))
    }

    /// Services whose current spec references this config.
    pub fn services_by_config<'a>(
        &'a self,
        config: &Id,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        self.services_in(self.tables.refs.by_config.get(config))
    }

    /// Services whose current spec attaches to this network (by the id used in the attachment).
    pub fn services_by_network<'a>(
        &'a self,
        network: &str,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        self.services_in(self.tables.refs.by_network.get(network))
    }

    // ---- writes -------------------------------------------------------------------------------

    /// Applies a committed batch: all actions or none. On success every written object carries
    /// `version = batch.index`, the store's index becomes `batch.index`, and watchers receive one event
    /// per action followed by [`Event::Commit`]. On error nothing changed and nothing was published.
    pub fn apply(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.apply_or_give_back(batch).map_err(|r| r.error)
    }

    /// [`Store::apply`], giving the actions back when the batch is refused.
    ///
    /// The store writes `meta` into every object it applies; an object whose `Arc` the caller
    /// still shares must be copied first. A caller that keeps a clone of its proposal only to learn
    /// what was refused (a retry, a scheduler re-reading its tasks) can use this instead and hand
    /// its only reference over, so the objects are stored without a copy.
    pub fn apply_or_give_back(&mut self, batch: Batch) -> Result<(), Refused> {
        if batch.index <= self.index {
            return Err(Refused {
                error: StoreError::StaleIndex {
                    current: self.index,
                    given: batch.index,
                },
                actions: batch.actions,
            });
        }
        let publish = !self.subscriptions.is_empty();
        let mut undo: Vec<Undo> = Vec::with_capacity(batch.actions.len());
        let mut events: Vec<Event> = if publish {
            Vec::with_capacity(batch.actions.len() + 1)
        } else {
            Vec::new()
        };
        let mut actions = batch.actions.into_iter();
        while let Some(action) = actions.next() {
            if let Err((error, action)) = self.apply_one(
                action,
                batch.index,
                batch.timestamp,
                &mut undo,
                publish.then_some(&mut events),
            ) {
                // The events hold clones of the written objects: drop them so the rollback can
                // give the objects back without copying them.
                drop(events);
                let mut given = self.rollback(undo);
                given.push(action);
                given.extend(actions);
                return Err(Refused {
                    error,
                    actions: given,
                });
            }
        }
        self.index = batch.index;
        if publish {
            events.push(Event::Commit { index: batch.index });
            self.publish(events);
        }
        Ok(())
    }

    fn apply_one(
        &mut self,
        action: StoreAction,
        index: u64,
        ts: Timestamp,
        undo: &mut Vec<Undo>,
        events: Option<&mut Vec<Event>>,
    ) -> Result<(), (StoreError, StoreAction)> {
        match action {
            StoreAction::Create(obj) => {
                let (kind, id) = (obj.kind(), obj.id());
                let name_taken = self.name_taken(&obj);
                let given = obj.meta().clone();
                // One descent of the table: the existence check and the insertion share it.
                let written = self.tables.write(obj, |old| {
                    if old.is_some() {
                        return Err(StoreError::AlreadyExists { kind, id });
                    }
                    if let Some(e) = name_taken {
                        return Err(e);
                    }
                    Ok(Meta {
                        version: Version(index),
                        created_at: ts,
                        updated_at: ts,
                    })
                });
                match written {
                    Ok((obj, _)) => {
                        if let Some(ev) = events {
                            ev.push(Event::Created(obj));
                        }
                        undo.push(Undo::Created(ObjectRef { kind, id }, given));
                    }
                    Err((e, obj)) => return Err((e, StoreAction::Create(obj))),
                }
            }
            StoreAction::Update(obj) => {
                let (kind, id) = (obj.kind(), obj.id());
                let name_taken = self.name_taken(&obj);
                let given = obj.meta().clone();
                let state = match &obj {
                    Object::Task(t) => Some(t.status.state),
                    _ => None,
                };
                // One descent of the table: the checks against the stored object and the
                // replacement share it. The checks run in the order `Tx::update` runs them.
                let written = self.tables.write(obj, |old| {
                    let Some(old) = old else {
                        return Err(StoreError::NotFound { kind, id });
                    };
                    let current = old.meta().version.0;
                    if current != given.version.0 {
                        return Err(StoreError::VersionConflict {
                            kind,
                            id,
                            current,
                            given: given.version.0,
                        });
                    }
                    if let (Object::Task(o), Some(to)) = (old, state) {
                        if !o.status.state.can_transition_to(to) {
                            return Err(StoreError::StateRegression {
                                id,
                                from: o.status.state,
                                to,
                            });
                        }
                    }
                    if let Some(e) = name_taken {
                        return Err(e);
                    }
                    Ok(Meta {
                        version: Version(index),
                        created_at: old.meta().created_at,
                        updated_at: ts,
                    })
                });
                match written {
                    Ok((new, old)) => {
                        let Some(old) = old else {
                            // `write` hands back the replaced object of every update it accepts.
                            return Ok(());
                        };
                        if let Some(ev) = events {
                            ev.push(Event::Updated {
                                old: old.clone(),
                                new,
                            });
                        }
                        undo.push(Undo::Replaced { old, given });
                    }
                    Err((e, obj)) => return Err((e, StoreAction::Update(obj))),
                }
            }
            StoreAction::Remove(r) => {
                let Some(old) = self.tables.get_object(r.kind, &r.id) else {
                    let e = StoreError::NotFound {
                        kind: r.kind,
                        id: r.id,
                    };
                    return Err((e, StoreAction::Remove(r)));
                };
                if let Err(e) = self.check_not_in_use(&old) {
                    return Err((e, StoreAction::Remove(r)));
                }
                self.tables.delete(r.kind, &r.id);
                if let Some(ev) = events {
                    ev.push(Event::Removed(old.clone()));
                }
                undo.push(Undo::Removed(old));
            }
        }
        Ok(())
    }

    /// Takes back the applied actions (newest first) and returns them as they were proposed, in
    /// proposal order.
    fn rollback(&mut self, undo: Vec<Undo>) -> Vec<StoreAction> {
        let mut given = Vec::with_capacity(undo.len());
        for u in undo.into_iter().rev() {
            match u {
                Undo::Created(r, meta) => {
                    if let Some(o) = self.tables.delete(r.kind, &r.id) {
                        given.push(StoreAction::Create(o.with_meta(meta)));
                    }
                }
                Undo::Replaced { old, given: meta } => {
                    if let Some(o) = self.tables.put(old) {
                        given.push(StoreAction::Update(o.with_meta(meta)));
                    }
                }
                Undo::Removed(old) => {
                    let r = old.object_ref();
                    self.tables.put(old);
                    given.push(StoreAction::Remove(r));
                }
            }
        }
        given.reverse();
        given
    }

    /// The refusal to give if `obj` is written: its name is held by another object of its kind
    /// (an object's own name, held under its own id, does not count).
    fn name_taken(&self, obj: &Object) -> Option<StoreError> {
        let kind = obj.kind();
        if !kind.has_unique_names() {
            return None;
        }
        match self.tables.id_by_name(kind, obj.name()) {
            Some(holder) if holder != obj.id() => Some(StoreError::NameConflict {
                kind,
                name: obj.name().to_string(),
            }),
            _ => None,
        }
    }

    pub(crate) fn users_of(&self, obj: &Object) -> Vec<String> {
        let services: Vec<&Arc<Service>> = match obj {
            Object::Secret(s) => self.services_by_secret(&s.id).collect(),
            Object::Config(c) => self.services_by_config(&c.id).collect(),
            Object::Network(n) => self.services_by_network(n.id.as_str()).collect(),
            _ => Vec::new(),
        };
        let mut names: Vec<String> = services
            .into_iter()
            .map(|s| s.spec.annotations.name.clone())
            .collect();
        names.sort();
        names
    }

    fn check_not_in_use(&self, obj: &Object) -> Result<(), StoreError> {
        let users = self.users_of(obj);
        if users.is_empty() {
            Ok(())
        } else {
            Err(StoreError::InUse {
                kind: obj.kind(),
                name: obj.name().to_string(),
                services: users,
            })
        }
    }

    // ---- snapshots ----------------------------------------------------------------------------

    /// Every object at the current index. Cheap: it shares the objects (reference counts).
    pub fn snapshot(&self) -> StoreSnapshot {
        fn all<T: StoreObject>(s: &Store) -> Vec<Arc<T>> {
            s.iter::<T>().cloned().collect()
        }
        StoreSnapshot {
            format: SNAPSHOT_FORMAT,
            index: self.index,
            clusters: all(self),
            nodes: all(self),
            services: all(self),
            tasks: all(self),
            secrets: all(self),
            configs: all(self),
            networks: all(self),
        }
    }

    /// Replaces every object with the snapshot's and rebuilds the indexes. Watchers stay subscribed
    /// and receive [`Event::Reset`]: they must re-read the store.
    pub fn restore(&mut self, snap: StoreSnapshot) {
        let mut tables = Tables::default();
        let StoreSnapshot {
            clusters,
            nodes,
            services,
            tasks,
            secrets,
            configs,
            networks,
            index,
            ..
        } = snap;
        tables.restore_tasks(tasks);
        let objects = clusters
            .into_iter()
            .map(Object::Cluster)
            .chain(nodes.into_iter().map(Object::Node))
            .chain(services.into_iter().map(Object::Service))
            .chain(secrets.into_iter().map(Object::Secret))
            .chain(configs.into_iter().map(Object::Config))
            .chain(networks.into_iter().map(Object::Network));
        for o in objects {
            tables.put(o);
        }
        self.tables = tables;
        self.index = index;
        self.publish(vec![Event::Reset { index }]);
    }

    // ---- watches ------------------------------------------------------------------------------

    /// Subscribes to future events matching `filter`. To also read the current state with no gap,
    /// call this while holding the same borrow you read with (see [`SharedStore::view_and_watch`]).
    pub fn watch(&mut self, filter: WatchFilter) -> Watcher {
        let (sub, watcher) = watch::channel(filter);
        self.subscriptions.push(sub);
        watcher
    }

    /// Delivers `events` to every subscription: copies to all but the last, which takes them.
    fn publish(&mut self, events: Vec<Event>) {
        let last = self.subscriptions.len().saturating_sub(1);
        let mut events = Some(events);
        let mut i = 0;
        self.subscriptions.retain(|s| {
            let open = if i == last {
                s.deliver_owned(events.take().unwrap_or_default())
            } else {
                s.deliver(events.as_deref().unwrap_or_default())
            };
            i += 1;
            open
        });
    }
}

/// The smallest full id with this prefix, or `None` if the prefix is too long to be an id prefix.
fn pad_id(prefix: &str) -> Option<Id> {
    if prefix.len() > crate::id::ID_LEN {
        return None;
    }
    let mut s = String::with_capacity(crate::id::ID_LEN);
    s.push_str(prefix);
    while s.len() < crate::id::ID_LEN {
        s.push('0');
    }
    Id::parse(&s).ok()
}
