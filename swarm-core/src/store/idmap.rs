//! The store's id-keyed map and id sets: hash-addressed, so a lookup, an insertion or a removal
//! costs one probe whatever the size, and the id order is kept lazily for the readers that ask
//! for it.
//!
//! Why not a B-tree: task ids are random, so at a million tasks each insertion into an ordered
//! tree walks several levels of nodes that are no longer in any cache (measured: the per-task
//! cost of filling the store grew 3-4x from 10,000 to 1,000,000 tasks with scattered ids, nearly
//! all of it in B-tree insertions). A hash table touches one place per write. The id order,
//! which listings, prefix lookups and the snapshot encoding need, is a sorted array of the ids
//! made when first asked for and then kept up to date from the ids whose presence changed since
//! (a sort of those few and one merge), so writes never pay for it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use crate::id::Id;

/// Hasher of the store's keys (ids, slots, states). Ids are random bits minted by the managers,
/// never chosen by a client, so a multiply-rotate fold over the key's words spreads them well;
/// SipHash's resistance to chosen keys would only cost time on the store's hottest writes. It
/// has no random state: the iteration order of a map depends only on its history, the same in
/// every run (simulations replay).
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

/// A hash map with [`KeyHasher`].
pub(crate) type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;
/// A hash set with [`KeyHasher`].
pub(crate) type KeySet<K> = HashSet<K, BuildHasherDefault<KeyHasher>>;

/// The id order of an [`IdMap`], kept lazily.
#[derive(Clone, Debug, Default)]
struct Order {
    /// The map's ids in order, as of the last time someone asked (when `valid`).
    sorted: Arc<[Id]>,
    /// Ids inserted or removed since `sorted` was made, in no order, possibly repeated.
    touched: Vec<Id>,
    /// Whether `sorted` plus `touched` describe the map. False at first and after `touched` grew
    /// past the map's size (then the next reader sorts every id again).
    valid: bool,
}

/// Records in `order` that `id` was inserted or removed (the map now holds `len` entries).
fn touch(order: &mut Mutex<Order>, len: usize, id: Id) {
    let order = order.get_mut().unwrap_or_else(PoisonError::into_inner);
    if !order.valid {
        return;
    }
    order.touched.push(id);
    // Beyond the map's size, sorting every id again is cheaper than keeping the changes.
    if order.touched.len() > len.max(1024) {
        *order = Order::default();
    }
}

/// Number of hash tables an [`IdMap`] spreads its entries over (a power of two).
const SHARDS: usize = 64;

/// The entries of an [`IdMap`]: [`SHARDS`] hash tables, an id going to the one its hash picks.
/// A table grows by doubling and re-inserting every entry at a random place of the new one; in
/// one table of a million entries that is a million cache misses at each doubling (two per
/// insertion on average), in a shard a sixty-fourth of that, in memory that stays in cache.
#[derive(Clone)]
pub(crate) struct Sharded<V> {
    shards: Vec<KeyMap<Id, V>>,
    len: usize,
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| KeyMap::default()).collect(),
            len: 0,
        }
    }
}

impl<V> Sharded<V> {
    /// The shard of `id`: bits of its hash that the shard's own table does not use to place it
    /// (low bits pick the bucket, the top seven are the control byte).
    #[inline]
    fn shard(&self, id: &Id) -> usize {
        let mut h = KeyHasher::default();
        std::hash::Hash::hash(id, &mut h);
        (h.finish() >> 40) as usize & (SHARDS - 1)
    }

    #[inline]
    fn get(&self, id: &Id) -> Option<&V> {
        self.shards[self.shard(id)].get(id)
    }

    #[inline]
    fn contains_key(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn insert(&mut self, id: Id, value: V) -> Option<V> {
        let i = self.shard(&id);
        let old = self.shards[i].insert(id, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    fn remove(&mut self, id: &Id) -> Option<V> {
        let i = self.shard(id);
        let old = self.shards[i].remove(id)?;
        self.len -= 1;
        Some(old)
    }

    fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.shards.iter().flat_map(|s| s.values())
    }

    fn keys(&self) -> impl Iterator<Item = &Id> + '_ {
        self.shards.iter().flat_map(|s| s.keys())
    }
}

/// A map from [`Id`]s: hash-addressed, with the id order made on demand ([`IdMap::ordered`]).
pub(crate) struct IdMap<V> {
    map: Sharded<V>,
    order: Mutex<Order>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap {
            map: Sharded::default(),
            order: Mutex::new(Order::default()),
        }
    }
}

impl<V: Clone> Clone for IdMap<V> {
    fn clone(&self) -> Self {
        IdMap {
            map: self.map.clone(),
            order: Mutex::new(self.order_guard().clone()),
        }
    }
}

impl<V> std::fmt::Debug for IdMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMap")
            .field("len", &self.map.len())
            .finish()
    }
}

impl<V> IdMap<V> {
    fn order_guard(&self) -> std::sync::MutexGuard<'_, Order> {
        // The order is rebuilt from the map whatever state a panicking reader left it in.
        self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `id` was inserted or removed.
    fn touch(&mut self, id: Id) {
        touch(&mut self.order, self.map.len(), id);
    }

    /// A map of `entries`, which are in id order without repeats (a snapshot restore).
    pub(crate) fn from_sorted(entries: Vec<(Id, V)>) -> IdMap<V> {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        let sorted: Arc<[Id]> = entries.iter().map(|e| e.0).collect();
        // Grouped by shard first, then each shard filled at once: its table (a sixty-fourth of
        // the whole) stays in cache while it fills, where inserting in id order would touch a
        // random shard, and a random place of it, per entry.
        let mut map = Sharded::<V>::default();
        let mut groups: Vec<Vec<(Id, V)>> = (0..SHARDS).map(|_| Vec::new()).collect();
        for (id, v) in entries {
            groups[map.shard(&id)].push((id, v));
        }
        for (shard, group) in map.shards.iter_mut().zip(groups) {
            shard.reserve(group.len());
            shard.extend(group);
        }
        map.len = sorted.len();
        IdMap {
            map,
            order: Mutex::new(Order {
                sorted,
                touched: Vec::new(),
                valid: true,
            }),
        }
    }

    /// The value under `id`.
    #[inline]
    pub(crate) fn get(&self, id: &Id) -> Option<&V> {
        self.map.get(id)
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Inserts or replaces; returns the replaced value.
    pub(crate) fn insert(&mut self, id: Id, value: V) -> Option<V> {
        let old = self.map.insert(id, value);
        if old.is_none() {
            self.touch(id);
        }
        old
    }

    /// Writes the value `make` returns under `id` with one probe: `make` sees the value stored
    /// there, if any, and may refuse (then nothing changes). Returns the value as stored and the
    /// one it replaced.
    pub(crate) fn write<E>(
        &mut self,
        id: Id,
        make: impl FnOnce(Option<&V>) -> Result<V, E>,
    ) -> Result<(&V, Option<V>), E> {
        let len = self.map.len;
        let shard = self.map.shard(&id);
        match self.map.shards[shard].entry(id) {
            Entry::Vacant(e) => {
                let value = make(None)?;
                touch(&mut self.order, len + 1, id);
                self.map.len += 1;
                Ok((e.insert(value), None))
            }
            Entry::Occupied(mut e) => {
                let new = make(Some(e.get()))?;
                let old = e.insert(new);
                Ok((e.into_mut(), Some(old)))
            }
        }
    }

    /// Removes `id`; returns its value.
    pub(crate) fn remove(&mut self, id: &Id) -> Option<V> {
        let old = self.map.remove(id)?;
        self.touch(*id);
        Some(old)
    }

    /// Every value, in no particular order (the same for the same history of writes).
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.map.values()
    }

    /// Every id in order: made now if no reader asked since the ids changed (one sort of the
    /// changed ids and one merge; a full sort the first time).
    pub(crate) fn ordered(&self) -> Arc<[Id]> {
        let mut order = self.order_guard();
        if !order.valid {
            let mut ids: Vec<Id> = self.map.keys().copied().collect();
            ids.sort_unstable();
            *order = Order {
                sorted: ids.into(),
                touched: Vec::new(),
                valid: true,
            };
        } else if !order.touched.is_empty() {
            let mut touched = std::mem::take(&mut order.touched);
            order.sorted = merge(&order.sorted, &mut touched, |id| self.map.contains_key(id));
        }
        order.sorted.clone()
    }

    /// The values in id order, from the first id not below `start` (all of them for `None`).
    pub(crate) fn iter_from(&self, start: Option<&Id>) -> Ordered<'_, V> {
        let ids = self.ordered();
        let pos = start.map_or(0, |s| ids.partition_point(|id| id < s));
        Ordered {
            ids,
            pos,
            map: &self.map,
        }
    }
}

/// `sorted` with the changes of `touched` (ids inserted or removed since), in order: an id of
/// `touched` is in the result exactly when `present` says so.
fn merge(sorted: &[Id], touched: &mut Vec<Id>, present: impl Fn(&Id) -> bool) -> Arc<[Id]> {
    touched.sort_unstable();
    touched.dedup();
    let keep: Vec<Id> = touched.iter().copied().filter(|id| present(id)).collect();
    let mut out = Vec::with_capacity(sorted.len() + keep.len());
    let (mut t, mut k) = (0, 0);
    for id in sorted {
        while t < touched.len() && touched[t] < *id {
            t += 1;
        }
        if t < touched.len() && touched[t] == *id {
            // Decided by `keep`.
            continue;
        }
        while k < keep.len() && keep[k] < *id {
            out.push(keep[k]);
            k += 1;
        }
        out.push(*id);
    }
    out.extend_from_slice(&keep[k..]);
    out.into()
}

/// The values of an [`IdMap`] in id order.
pub(crate) struct Ordered<'a, V> {
    ids: Arc<[Id]>,
    pos: usize,
    map: &'a Sharded<V>,
}

impl<'a, V> Ordered<'a, V> {
    /// The entries, id and value.
    pub(crate) fn entries(self) -> impl Iterator<Item = (Id, &'a V)> + 'a {
        let Ordered { ids, pos, map } = self;
        (pos..ids.len()).filter_map(move |i| map.get(&ids[i]).map(|v| (ids[i], v)))
    }
}

impl<'a, V> Iterator for Ordered<'a, V> {
    type Item = &'a V;

    fn next(&mut self) -> Option<&'a V> {
        while let Some(id) = self.ids.get(self.pos) {
            self.pos += 1;
            // The order is made from the map under the same borrow: every id is present.
            if let Some(v) = self.map.get(id) {
                return Some(v);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.ids.len() - self.pos;
        (left, Some(left))
    }
}

/// The task ids under one index key: held inline while there is one (most slots, and services
/// or nodes with a single task), a hash set beyond. Iteration is in no particular order.
#[derive(Clone, Debug)]
pub(crate) enum Ids {
    One(Id),
    Many(KeySet<Id>),
}

impl Ids {
    /// Adds `id`.
    pub(crate) fn add(&mut self, id: Id) {
        match self {
            Ids::One(x) if *x == id => {}
            Ids::One(x) => {
                let mut set = KeySet::with_capacity_and_hasher(4, Default::default());
                set.insert(*x);
                set.insert(id);
                *self = Ids::Many(set);
            }
            Ids::Many(set) => {
                set.insert(id);
            }
        }
    }

    /// Removes `id`; returns whether none is left.
    pub(crate) fn del(&mut self, id: &Id) -> bool {
        match self {
            Ids::One(x) => x == id,
            Ids::Many(set) => {
                set.remove(id);
                if set.len() == 1 {
                    if let Some(&last) = set.iter().next() {
                        *self = Ids::One(last);
                        return false;
                    }
                }
                set.is_empty()
            }
        }
    }

    /// The ids of `ids` as one value (`One` for a single id).
    pub(crate) fn from_vec(ids: Vec<Id>) -> Option<Ids> {
        match ids.as_slice() {
            [] => None,
            [one] => Some(Ids::One(*one)),
            _ => {
                let mut set = KeySet::with_capacity_and_hasher(ids.len(), Default::default());
                set.extend(ids);
                Some(Ids::Many(set))
            }
        }
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        match self {
            Ids::One(_) => 1,
            Ids::Many(set) => set.len(),
        }
    }

    /// The ids, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Id> + '_ {
        let (one, many) = match self {
            Ids::One(id) => (Some(*id), None),
            Ids::Many(set) => (None, Some(set)),
        };
        one.into_iter().chain(many.into_iter().flatten().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::id;
    use std::collections::BTreeMap;

    /// Random inserts, replacements and removals with ordered reads in between (sometimes
    /// after many changes, sometimes after none), checked against a `BTreeMap` model.
    #[test]
    fn matches_an_ordered_model() {
        let mut m: IdMap<u64> = IdMap::default();
        let mut model: BTreeMap<Id, u64> = BTreeMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = id(u128::from(x % 700));
            match (x >> 20) % 3 {
                0 | 1 => assert_eq!(m.insert(key, step), model.insert(key, step)),
                _ => assert_eq!(m.remove(&key), model.remove(&key)),
            }
            if (x >> 30).is_multiple_of(97) || step.is_multiple_of(5_000) {
                let got: Vec<(Id, u64)> =
                    m.iter_from(None).entries().map(|(k, v)| (k, *v)).collect();
                let want: Vec<(Id, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(got, want, "step {step}");
                let start = id(u128::from(x % 700));
                let got: Vec<u64> = m.iter_from(Some(&start)).copied().collect();
                let want: Vec<u64> = model.range(start..).map(|(_, v)| *v).collect();
                assert_eq!(got, want, "range at step {step}");
            }
            assert_eq!(m.len(), model.len());
        }
        let clone = m.clone();
        assert_eq!(
            clone.iter_from(None).copied().collect::<Vec<_>>(),
            model.values().copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_write_that_refuses_changes_nothing() {
        let mut m: IdMap<u64> = IdMap::default();
        m.insert(id(1), 1);
        let _ = m.ordered();
        assert_eq!(m.write(id(2), |_| Err::<u64, ()>(())), Err(()));
        assert_eq!(
            m.write(id(1), |old| Err::<u64, u64>(old.map_or(0, |v| *v))),
            Err(1)
        );
        assert_eq!(&*m.ordered(), &[id(1)]);
        let w = m.write(id(2), |old| Ok::<u64, ()>(old.map_or(7, |v| *v)));
        assert_eq!(w, Ok((&7, None)));
        let w = m.write(id(2), |old| Ok::<u64, ()>(old.map_or(0, |v| *v + 1)));
        assert_eq!(w, Ok((&8, Some(7))));
        assert_eq!(&*m.ordered(), &[id(1), id(2)]);
        assert_eq!(m.get(&id(2)), Some(&8));
    }

    #[test]
    fn restored_maps_are_ordered_and_writable() {
        let mut m = IdMap::from_sorted((1..=5u128).map(|n| (id(n), n)).collect());
        assert_eq!(
            m.iter_from(Some(&id(3))).copied().collect::<Vec<_>>(),
            [3, 4, 5]
        );
        m.remove(&id(3));
        m.insert(id(0), 0);
        assert_eq!(
            m.iter_from(None).copied().collect::<Vec<_>>(),
            [0, 1, 2, 4, 5]
        );
    }

    #[test]
    fn id_sets_collapse_to_one_and_empty() {
        let mut s = Ids::One(id(1));
        s.add(id(2));
        s.add(id(3));
        assert_eq!(s.len(), 3);
        assert!(!s.del(&id(1)));
        assert!(!s.del(&id(2)));
        assert!(matches!(s, Ids::One(x) if x == id(3)));
        assert!(s.del(&id(3)));
        assert!(Ids::from_vec(Vec::new()).is_none());
    }
}
