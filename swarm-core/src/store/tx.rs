//! [`Tx`]: a staged transaction. Reads see the committed store plus the transaction's own writes;
//! writes are checked as [`super::Store::apply`] will check them, and recorded as [`StoreAction`]s.
//!
//! Several writes to one object inside a transaction are merged into one action, so the batch applies
//! cleanly (a create followed by updates stays one create carrying the final state).

use std::collections::HashMap;
use std::sync::Arc;

use super::tables::name_key;
use super::{Store, StoreError};
use crate::action::StoreAction;
use crate::id::Id;
use crate::object::{Object, ObjectKind, ObjectRef, StoreObject};
use crate::objects::service::Service;
use crate::objects::task::Task;

/// A transaction under construction. Obtain one from [`super::SharedStore::prepare`] or
/// [`Tx::new`]; turn it into actions with [`Tx::into_actions`].
pub struct Tx<'a> {
    store: &'a Store,
    actions: Vec<StoreAction>,
    /// Latest state of each touched object (`None` = removed) and the position of its last action.
    touched: HashMap<ObjectRef, (Option<Object>, usize)>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("actions", &self.actions.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Tx<'a> {
    /// A transaction over `store`.
    pub fn new(store: &'a Store) -> Tx<'a> {
        Tx {
            store,
            actions: Vec::new(),
            touched: HashMap::new(),
        }
    }

    /// The committed store under this transaction (without the transaction's writes).
    pub fn committed(&self) -> &'a Store {
        self.store
    }

    /// The actions recorded so far.
    pub fn into_actions(self) -> Vec<StoreAction> {
        self.actions
    }

    /// Number of actions recorded so far.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    fn current(&self, r: ObjectRef) -> Option<Object> {
        match self.touched.get(&r) {
            Some((o, _)) => o.clone(),
            None => self.store.get_object(r),
        }
    }

    /// The object of type `T` with this id, as this transaction sees it.
    pub fn get<T: StoreObject>(&self, id: &Id) -> Option<Arc<T>> {
        let r = ObjectRef {
            kind: T::KIND,
            id: *id,
        };
        match self.touched.get(&r) {
            Some((o, _)) => o.as_ref().and_then(T::from_object).cloned(),
            None => self.store.get::<T>(id).cloned(),
        }
    }

    /// The object of a unique-name kind with this name, as this transaction sees it.
    pub fn get_by_name<T: StoreObject>(&self, name: &str) -> Option<Arc<T>> {
        let key = name_key(name);
        for (r, (o, _)) in &self.touched {
            if r.kind == T::KIND {
                if let Some(o) = o.as_ref().and_then(T::from_object) {
                    if name_key(o.index_name()) == key {
                        return Some(o.clone());
                    }
                }
            }
        }
        let o = self.store.get_by_name::<T>(name)?;
        // Committed holder may have been renamed or removed in this transaction.
        self.get::<T>(&o.id())
            .filter(|o| name_key(o.index_name()) == key)
    }

    /// All objects of type `T` as this transaction sees them, ordered by id.
    pub fn list<T: StoreObject>(&self) -> Vec<Arc<T>> {
        // `overlay` sorts: the committed objects can come in any order.
        self.overlay(self.store.scan::<T>(), |_| true)
    }

    /// Tasks of a service as this transaction sees them, ordered by id.
    pub fn tasks_by_service(&self, service: &Id) -> Vec<Arc<Task>> {
        let s = *service;
        self.overlay(self.store.tasks_by_service(service), move |t: &Task| {
            t.service_id == s
        })
    }

    /// Tasks on a node as this transaction sees them, ordered by id.
    pub fn tasks_by_node(&self, node: &Id) -> Vec<Arc<Task>> {
        let n = *node;
        self.overlay(self.store.tasks_by_node(node), move |t: &Task| {
            t.node_id == Some(n)
        })
    }

    /// Committed objects from `base`, with this transaction's writes applied and its new objects that
    /// satisfy `pred` added; ordered by id.
    fn overlay<'s, T: StoreObject>(
        &self,
        base: impl Iterator<Item = &'s Arc<T>>,
        pred: impl Fn(&T) -> bool,
    ) -> Vec<Arc<T>> {
        let mut out: Vec<Arc<T>> = base
            .filter(|o| {
                !self.touched.contains_key(&ObjectRef {
                    kind: T::KIND,
                    id: o.id(),
                })
            })
            .cloned()
            .collect();
        for (r, (o, _)) in &self.touched {
            if r.kind == T::KIND {
                if let Some(o) = o.as_ref().and_then(T::from_object) {
                    if pred(o) {
                        out.push(o.clone());
                    }
                }
            }
        }
        out.sort_by_key(|o| o.id());
        out
    }

    fn name_holder(&self, kind: ObjectKind, name: &str) -> Option<Id> {
        let key = name_key(name);
        for (r, (o, _)) in &self.touched {
            if r.kind == kind {
                if let Some(o) = o {
                    if name_key(o.name()) == key {
                        return Some(r.id);
                    }
                }
            }
        }
        let id = self.store.tables.id_by_name(kind, name)?;
        match self.touched.get(&ObjectRef { kind, id }) {
            Some((Some(o), _)) if name_key(o.name()) == key => Some(id),
            Some(_) => None,
            None => Some(id),
        }
    }

    fn check_name(&self, obj: &Object) -> Result<(), StoreError> {
        let kind = obj.kind();
        if !kind.has_unique_names() {
            return Ok(());
        }
        match self.name_holder(kind, obj.name()) {
            Some(holder) if holder != obj.id() => Err(StoreError::NameConflict {
                kind,
                name: obj.name().to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Records the creation of `obj` (its `meta` is ignored; the store sets it on apply).
    pub fn create(&mut self, obj: impl Into<Object>) -> Result<(), StoreError> {
        let obj = obj.into();
        let r = obj.object_ref();
        if self.current(r).is_some() {
            return Err(StoreError::AlreadyExists {
                kind: r.kind,
                id: r.id,
            });
        }
        self.check_name(&obj)?;
        self.actions.push(StoreAction::Create(obj.clone()));
        self.touched.insert(r, (Some(obj), self.actions.len() - 1));
        Ok(())
    }

    /// Records an update. `obj.meta.version` must be the version this transaction sees.
    pub fn update(&mut self, obj: impl Into<Object>) -> Result<(), StoreError> {
        let obj = obj.into();
        let r = obj.object_ref();
        let Some(cur) = self.current(r) else {
            return Err(StoreError::NotFound {
                kind: r.kind,
                id: r.id,
            });
        };
        if cur.meta().version != obj.meta().version {
            return Err(StoreError::VersionConflict {
                kind: r.kind,
                id: r.id,
                current: cur.meta().version.0,
                given: obj.meta().version.0,
            });
        }
        if let (Object::Task(o), Object::Task(n)) = (&cur, &obj) {
            if !o.status.state.can_transition_to(n.status.state) {
                return Err(StoreError::StateRegression {
                    id: r.id,
                    from: o.status.state,
                    to: n.status.state,
                });
            }
        }
        self.check_name(&obj)?;
        match self.touched.get(&r) {
            // Merge into this transaction's earlier create or update of the same object.
            Some((Some(_), pos)) => {
                let pos = *pos;
                match &mut self.actions[pos] {
                    StoreAction::Create(o) | StoreAction::Update(o) => *o = obj.clone(),
                    StoreAction::Remove(_) => unreachable_remove(),
                }
                self.touched.insert(r, (Some(obj), pos));
            }
            _ => {
                self.actions.push(StoreAction::Update(obj.clone()));
                self.touched.insert(r, (Some(obj), self.actions.len() - 1));
            }
        }
        Ok(())
    }

    /// Records a removal. Secrets, configs and networks still used by a service are refused with
    /// Docker's "in use" message.
    pub fn remove(&mut self, kind: ObjectKind, id: &Id) -> Result<(), StoreError> {
        let r = ObjectRef { kind, id: *id };
        let Some(cur) = self.current(r) else {
            return Err(StoreError::NotFound { kind, id: *id });
        };
        let users = self.users_of(&cur);
        if !users.is_empty() {
            return Err(StoreError::InUse {
                kind,
                name: cur.name().to_string(),
                services: users,
            });
        }
        match self.touched.get(&r) {
            // Created in this transaction: creating and removing cancel out.
            Some((Some(_), pos)) if matches!(self.actions[*pos], StoreAction::Create(_)) => {
                let pos = *pos;
                self.actions.remove(pos);
                self.touched.remove(&r);
                for (_, p) in self.touched.values_mut() {
                    if *p > pos {
                        *p -= 1;
                    }
                }
            }
            Some((Some(_), pos)) => {
                let pos = *pos;
                self.actions[pos] = StoreAction::Remove(r);
                self.touched.insert(r, (None, pos));
            }
            _ => {
                self.actions.push(StoreAction::Remove(r));
                self.touched.insert(r, (None, self.actions.len() - 1));
            }
        }
        Ok(())
    }

    fn users_of(&self, obj: &Object) -> Vec<String> {
        let uses = |s: &Service| match obj {
            Object::Secret(x) => s
                .spec
                .task
                .container
                .secrets
                .iter()
                .any(|r| r.secret_id == x.id),
            Object::Config(x) => s
                .spec
                .task
                .container
                .configs
                .iter()
                .any(|r| r.config_id == x.id),
            Object::Network(x) => s
                .spec
                .task
                .networks
                .iter()
                .any(|n| n.target == x.id.as_str()),
            _ => false,
        };
        let committed: Vec<Arc<Service>> = match obj {
            Object::Secret(s) => self.store.services_by_secret(&s.id).cloned().collect(),
            Object::Config(c) => self.store.services_by_config(&c.id).cloned().collect(),
            Object::Network(n) => self
                .store
                .services_by_network(n.id.as_str())
                .cloned()
                .collect(),
            _ => return Vec::new(),
        };
        let mut names: Vec<String> = self
            .overlay(committed.iter(), |_| true)
            .into_iter()
            .filter(|s| uses(s))
            .map(|s| s.spec.annotations.name.clone())
            .collect();
        names.sort();
        names
    }
}

fn unreachable_remove() {
    // `touched` maps an object to its last action; a live (Some) entry never points at a Remove.
    debug_assert!(false, "live object mapped to a remove action");
}
