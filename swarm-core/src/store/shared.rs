//! [`SharedStore`]: a [`Store`] behind a lock, for managers where many tasks read and one applies.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Store, StoreError, StoreSnapshot, Tx, WatchFilter, Watcher};
use crate::action::{Batch, StoreAction};

/// A cloneable handle to one store. Reads take a shared lock; [`SharedStore::apply`] takes the
/// exclusive lock for the duration of one batch.
#[derive(Clone, Default, Debug)]
pub struct SharedStore {
    inner: Arc<RwLock<Store>>,
}

impl SharedStore {
    /// Wraps a store.
    pub fn new(store: Store) -> SharedStore {
        SharedStore {
            inner: Arc::new(RwLock::new(store)),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Store> {
        // The store is never left half-written: apply rolls back before returning an error, so a
        // poisoned lock still guards a consistent store.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a consistent view of the store.
    pub fn view<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&self.read())
    }

    /// Runs `f` on a consistent view and subscribes to every later event, with no gap between the two.
    pub fn view_and_watch<R>(
        &self,
        filter: WatchFilter,
        f: impl FnOnce(&Store) -> R,
    ) -> (R, Watcher) {
        let mut store = self.write();
        let r = f(&store);
        let w = store.watch(filter);
        (r, w)
    }

    /// Subscribes to future events.
    pub fn watch(&self, filter: WatchFilter) -> Watcher {
        self.write().watch(filter)
    }

    /// Stages a transaction on a consistent view: `f` reads and records changes through the [`Tx`];
    /// returns its result and the actions to propose. The store itself is not changed.
    pub fn prepare<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<(R, Vec<StoreAction>), E> {
        let store = self.read();
        let mut tx = Tx::new(&store);
        let r = f(&mut tx)?;
        Ok((r, tx.into_actions()))
    }

    /// Applies a committed batch (see [`Store::apply`]).
    pub fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.write().apply(batch)
    }

    /// The current index.
    pub fn index(&self) -> u64 {
        self.read().index()
    }

    /// A snapshot of every object.
    pub fn snapshot(&self) -> StoreSnapshot {
        self.read().snapshot()
    }

    /// Replaces the contents with a snapshot.
    pub fn restore(&self, snap: StoreSnapshot) {
        self.write().restore(snap)
    }
}
