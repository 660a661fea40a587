//! Eligibility indexes: for a set of static filters (ready, constraints, platform), the nodes that pass,
//! ordered by how many active tasks they run, then by node id.
//!
//! This is what makes one-task batches cheap. Without it, every batch (in SwarmKit's benchmark every
//! task is its own service, so every task is a batch) would evaluate every node: tasks x nodes work.
//! With it, the best node for a task of a service with no tasks yet is the first member of the index
//! that passes the dynamic filters, found in O(log nodes).
//!
//! Indexes are built on first use (O(nodes)), kept current incrementally (a node change re-evaluates
//! that node against every index; a change in a node's active task count moves it within every index
//! it belongs to), and evicted least-recently-used beyond [`MAX_INDEXES`].

use std::collections::BTreeSet;
use std::ops::Bound;

use super::filter::{StaticFilter, StaticKey};
use super::hash::IdKey;
use super::nodes::{NodeIdx, NodeInfo};

/// How many distinct static filter sets keep an index. Each costs one bit per node plus an ordered
/// entry per eligible node, and every active-count change touches each index the node belongs to.
pub(crate) const MAX_INDEXES: usize = 32;

/// A position in an index: active task count, node id (the tie-break), slot.
pub(crate) type Entry = (u32, IdKey, NodeIdx);

#[derive(Debug)]
struct Eligible {
    key: StaticKey,
    filter: StaticFilter,
    member: Vec<bool>,
    order: BTreeSet<Entry>,
    used: u64,
}

/// Every live index. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    sets: Vec<Eligible>,
    clock: u64,
}

impl Indexes {
    /// The position of the index for `filter`, building it from `slots` if needed. Positions stay
    /// valid until the next call of this method.
    pub(crate) fn find_or_build(
        &mut self,
        filter: &StaticFilter,
        slots: &[Option<NodeInfo>],
    ) -> usize {
        self.clock += 1;
        // The same filter (the common case: every batch of a shape asks for one index) is
        // found without building its canonical key (which formats every constraint).
        let same = |s: &Eligible| s.filter == *filter;
        if let Some(pos) = self.sets.iter().position(same) {
            self.sets[pos].used = self.clock;
            return pos;
        }
        let key = filter.key();
        if let Some(pos) = self.sets.iter().position(|s| s.key == key) {
            self.sets[pos].used = self.clock;
            return pos;
        }
        if self.sets.len() >= MAX_INDEXES {
            if let Some(lru) = (0..self.sets.len()).min_by_key(|&i| self.sets[i].used) {
                self.sets.swap_remove(lru);
            }
        }
        let mut set = Eligible {
            key,
            filter: filter.clone(),
            member: vec![false; slots.len()],
            order: BTreeSet::new(),
            used: self.clock,
        };
        for (idx, info) in slots.iter().enumerate() {
            if let Some(info) = info {
                if set.filter.passes(&info.node) {
                    set.member[idx] = true;
                    set.order.insert((info.active, info.key, idx as NodeIdx));
                }
            }
        }
        self.sets.push(set);
        self.sets.len() - 1
    }

    /// A node was added at `idx` (or replaced: call [`Indexes::node_removed`] with the old state first).
    pub(crate) fn node_added(&mut self, idx: NodeIdx, info: &NodeInfo) {
        for set in &mut self.sets {
            let i = idx as usize;
            if set.member.len() <= i {
                set.member.resize(i + 1, false);
            }
            if set.filter.passes(&info.node) {
                set.member[i] = true;
                set.order.insert((info.active, info.key, idx));
            }
        }
    }

    /// The node at `idx`, in state `info`, is going away (or about to be replaced).
    pub(crate) fn node_removed(&mut self, idx: NodeIdx, info: &NodeInfo) {
        for set in &mut self.sets {
            if let Some(m) = set.member.get_mut(idx as usize) {
                if *m {
                    *m = false;
                    set.order.remove(&(info.active, info.key, idx));
                }
            }
        }
    }

    /// The node's active task count changed from `old` to `new`.
    pub(crate) fn active_changed(&mut self, idx: NodeIdx, id: IdKey, old: u32, new: u32) {
        for set in &mut self.sets {
            if set.member.get(idx as usize).copied().unwrap_or(false) {
                set.order.remove(&(old, id, idx));
                set.order.insert((new, id, idx));
            }
        }
    }

    /// Whether node `idx` is in index `pos`.
    pub(crate) fn is_member(&self, pos: usize, idx: NodeIdx) -> bool {
        self.sets
            .get(pos)
            .and_then(|s| s.member.get(idx as usize).copied())
            .unwrap_or(false)
    }

    /// The first entry of index `pos` strictly after `cursor` (from the start when `None`).
    pub(crate) fn next_after(&self, pos: usize, cursor: Option<Entry>) -> Option<Entry> {
        let set = self.sets.get(pos)?;
        match cursor {
            None => set.order.iter().next().copied(),
            Some(c) => set
                .order
                .range((Bound::Excluded(c), Bound::Unbounded))
                .next()
                .copied(),
        }
    }

    /// Every member of index `pos`, best (fewest active tasks, then lowest id) first.
    pub(crate) fn members(&self, pos: usize) -> impl Iterator<Item = NodeIdx> + '_ {
        self.sets
            .get(pos)
            .into_iter()
            .flat_map(|s| s.order.iter().map(|e| e.2))
    }

    /// Number of live indexes.
    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }
}
