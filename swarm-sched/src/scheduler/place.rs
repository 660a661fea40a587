//! Placing one batch: tasks of one service and spec version, identical for every filter.
//!
//! Nodes are ranked, best first, by: (1) fewer recent failures, counted only when a node has at
//! least [`super::failures::MAX_FAILURES`] (so such nodes rank last), (2) fewer active tasks of the
//! service, (3) fewer active tasks in total, (4) lower node id. Each task goes to the best node that
//! passes every filter; that node's counts go up and it is re-ranked.
//!
//! **Without spread preferences** the candidates come from two sources merged on the fly: a heap of
//! the few "special" nodes (those already running tasks of the service, or penalised for failures),
//! and a lazy walk of the eligibility index (see [`super::index`]), whose other members all rank as
//! `(0, 0, active, id)` — exactly the index's order. A batch of `k` tasks costs
//! O((k + special + skipped) log nodes), where `skipped` are index members failing a dynamic filter.
//!
//! **With spread preferences** the eligible nodes are grouped into a tree, one level per preference,
//! branches keyed by label value (a missing label is the `""` branch, an equal peer sorted last).
//! At each level the tasks are water-filled: every branch is brought up to an equal share of the
//! service's active tasks (existing + new), the remainder one each in branch order (fewest tasks,
//! then label value). A branch that cannot take its share is full; the rest is shared again among
//! the others. Leaves hold a heap of their nodes by rank. Cost O(eligible + k log nodes) per batch.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use swarm_core::placement::SpreadOver;
use swarm_core::Id;

use super::filter::TaskFilter;
use super::hash::{FxMap, IdKey};
use super::nodes::{NodeIdx, NodeSet, Occupant};

/// One batch to place.
pub(crate) struct Batch<'a> {
    /// The compiled filters.
    pub(crate) filter: &'a TaskFilter,
    /// Spread preferences, outermost first (empty: none).
    pub(crate) prefs: &'a [SpreadOver],
    /// Nodes with too many recent failures of this service version, with their failure counts.
    pub(crate) penalized: &'a FxMap<NodeIdx, u32>,
    /// The tasks; the k-th placement goes to `tasks[k]`.
    pub(crate) tasks: &'a [Id],
}

/// Places as many of the batch's tasks as possible, recording each placement in `nodes`. Returns
/// the chosen node of `tasks[0]`, `tasks[1]`, ... (shorter than `tasks` when nodes ran out).
pub(crate) fn place(nodes: &mut NodeSet, batch: &Batch<'_>) -> Vec<NodeIdx> {
    if batch.tasks.is_empty() {
        return Vec::new();
    }
    // A copy (a flat memcpy for this map of integers) that the batch keeps current as it places.
    let counts = nodes
        .service_nodes(&batch.filter.service)
        .map(|c| c.to_map())
        .unwrap_or_default();
    let mut p = Placer {
        nodes,
        batch,
        out: Vec::with_capacity(batch.tasks.len()),
        counts,
    };
    let pos = p.nodes.eligible(&batch.filter.statics);
    if batch.prefs.is_empty() {
        p.flat(pos);
    } else {
        p.spread(pos);
    }
    p.out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    failures: u32,
    service: u32,
    total: u32,
    id: IdKey,
}

type Heap = BinaryHeap<Reverse<(Rank, NodeIdx)>>;

struct Placer<'a, 'b> {
    nodes: &'a mut NodeSet,
    batch: &'b Batch<'b>,
    out: Vec<NodeIdx>,
    /// Active tasks of the service per node, kept current as the batch places tasks (one lookup
    /// instead of two in the node set's per-service map).
    counts: FxMap<NodeIdx, u32>,
}

impl Placer<'_, '_> {
    fn done(&self) -> bool {
        self.out.len() >= self.batch.tasks.len()
    }

    fn count(&self, idx: NodeIdx) -> u32 {
        self.counts.get(&idx).copied().unwrap_or(0)
    }

    /// The node's rank if the dynamic filters pass on it now.
    fn ranked_if_fits(&self, idx: NodeIdx) -> Option<Reverse<(Rank, NodeIdx)>> {
        self.ranked_with(idx, self.count(idx))
    }

    /// [`Placer::ranked_if_fits`] for a node known to run `service` tasks of the service.
    fn ranked_with(&self, idx: NodeIdx, service: u32) -> Option<Reverse<(Rank, NodeIdx)>> {
        let info = self.nodes.get(idx)?;
        if !self.batch.filter.dynamic_ok(info, service) {
            return None;
        }
        let rank = Rank {
            failures: self.batch.penalized.get(&idx).copied().unwrap_or(0),
            service,
            total: info.active,
            id: info.key,
        };
        Some(Reverse((rank, idx)))
    }

    /// Whether the dynamic filters pass on node `idx` now.
    fn fits(&self, idx: NodeIdx) -> bool {
        self.nodes
            .get(idx)
            .is_some_and(|info| self.batch.filter.dynamic_ok(info, self.count(idx)))
    }

    fn push_if_fits(&self, heap: &mut Heap, idx: NodeIdx) {
        if let Some(e) = self.ranked_if_fits(idx) {
            heap.push(e);
        }
    }

    /// Places the next task on node `idx`.
    fn assign(&mut self, idx: NodeIdx) {
        let Some(&task) = self.batch.tasks.get(self.out.len()) else {
            return;
        };
        let Some(node) = self.nodes.get(idx).map(|i| i.node.id) else {
            return;
        };
        let f = self.batch.filter;
        // The task leaves its batch: the caller (placing that very batch) accounts for it.
        let _ = self.nodes.occupy(
            task,
            Occupant {
                node,
                service: f.service,
                reservations: f.reservations,
                ports: f.host_ports.clone(),
                active: true,
            },
        );
        self.out.push(idx);
        if self.done() {
            // Nothing reads the batch's counts after its last task (and a one-task batch, every
            // task in SwarmKit's benchmark shapes, then never fills its map).
            return;
        }
        let c = self.counts.entry(idx).or_insert(0);
        *c = c.saturating_add(1);
    }

    fn flat(&mut self, pos: usize) {
        let epoch = self.nodes.next_epoch();
        // Nodes that do not rank as (0, 0, active, id): they come from a heap, not the index walk.
        let special: Vec<(NodeIdx, u32)> = self
            .counts
            .iter()
            .map(|(&i, &c)| (i, c))
            .chain(
                self.batch
                    .penalized
                    .keys()
                    .filter(|i| !self.counts.contains_key(i))
                    .map(|&i| (i, 0)),
            )
            .collect();
        let mut ranked = Vec::with_capacity(special.len());
        for (idx, count) in special {
            if !self.nodes.indexes().is_member(pos, idx) {
                continue;
            }
            if let Some(info) = self.nodes.get_mut(idx) {
                info.epoch = epoch;
            }
            ranked.extend(self.ranked_with(idx, count));
        }
        let mut heap = Heap::from(ranked);

        let mut cursor = None;
        let mut head = None;
        let mut need_head = true;
        while !self.done() {
            if need_head {
                head = self.next_unmarked(pos, cursor, epoch);
                need_head = false;
            }
            let stream_first = match (heap.peek(), head) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(Reverse((best, _))), Some((total, id, _))) => {
                    Rank {
                        failures: 0,
                        service: 0,
                        total,
                        id,
                    } < *best
                }
            };
            let idx = match (stream_first, head) {
                (true, Some(entry)) => {
                    cursor = Some(entry);
                    need_head = true;
                    let idx = entry.2;
                    if let Some(info) = self.nodes.get_mut(idx) {
                        info.epoch = epoch;
                    }
                    if !self.fits(idx) {
                        continue;
                    }
                    idx
                }
                _ => match heap.pop() {
                    Some(Reverse((_, idx))) => idx,
                    None => break,
                },
            };
            self.assign(idx);
            if !self.done() {
                self.push_if_fits(&mut heap, idx);
            }
        }
    }

    /// The first index entry after `cursor` whose node this batch has not considered yet.
    fn next_unmarked(
        &self,
        pos: usize,
        mut cursor: Option<super::index::Entry>,
        epoch: u64,
    ) -> Option<super::index::Entry> {
        loop {
            let e = self.nodes.indexes().next_after(pos, cursor)?;
            match self.nodes.get(e.2) {
                Some(info) if info.epoch != epoch => return Some(e),
                _ => cursor = Some(e),
            }
        }
    }

    fn spread(&mut self, pos: usize) {
        let mut root = Branch::default();
        let members: Vec<NodeIdx> = self.nodes.indexes().members(pos).collect();
        for idx in members {
            let path = self.path(idx);
            let mut b = &mut root;
            for key in path {
                b = b.children.entry(key).or_default();
            }
            self.push_if_fits(&mut b.heap, idx);
        }
        let counts: Vec<(NodeIdx, u32)> = self.counts.iter().map(|(&i, &c)| (i, c)).collect();
        for (idx, count) in counts {
            let mut b = &mut root;
            for key in self.path(idx) {
                match b.children.get_mut(&key) {
                    Some(next) => b = next,
                    None => break,
                }
                b.tasks += u64::from(count);
            }
        }
        let want = self.batch.tasks.len();
        self.place_in(&mut root, want);
    }

    /// The branch keys of node `idx`, one per preference: `(missing, value)`.
    fn path(&self, idx: NodeIdx) -> Vec<(bool, String)> {
        let Some(info) = self.nodes.get(idx) else {
            return Vec::new();
        };
        let node = &info.node;
        self.batch
            .prefs
            .iter()
            .map(|p| {
                let v = match p {
                    SpreadOver::NodeLabel(k) => node.spec.annotations.labels.get(k),
                    SpreadOver::EngineLabel(k) => node
                        .description
                        .as_ref()
                        .and_then(|d| d.engine.labels.get(k)),
                };
                let v = v.map(String::as_str).unwrap_or("");
                (v.is_empty(), v.to_owned())
            })
            .collect()
    }

    /// Places up to `want` tasks in `branch`; returns how many it placed.
    fn place_in(&mut self, branch: &mut Branch, want: usize) -> usize {
        if branch.children.is_empty() {
            let mut placed = 0;
            while placed < want && !self.done() {
                let Some(Reverse((_, idx))) = branch.heap.pop() else {
                    break;
                };
                self.assign(idx);
                placed += 1;
                if !self.done() {
                    self.push_if_fits(&mut branch.heap, idx);
                }
            }
            return placed;
        }
        let mut placed = 0;
        while placed < want && !self.done() {
            let usable: Vec<(bool, String)> = branch
                .children
                .iter()
                .filter(|(_, c)| !c.full)
                .map(|(k, _)| k.clone())
                .collect();
            if usable.is_empty() {
                break;
            }
            let counts: Vec<u64> = usable
                .iter()
                .map(|k| branch.children.get(k).map_or(0, |c| c.tasks))
                .collect();
            let shares = water_fill(&counts, (want - placed) as u64);
            for (key, share) in usable.iter().zip(shares) {
                if share == 0 {
                    continue;
                }
                let Some(child) = branch.children.get_mut(key) else {
                    continue;
                };
                let share = share as usize;
                let got = self.place_in(child, share);
                child.tasks += got as u64;
                placed += got;
                if got < share {
                    child.full = true;
                }
            }
        }
        placed
    }
}

/// One branch of the spread tree.
#[derive(Default)]
struct Branch {
    /// Active tasks of the service under this branch.
    tasks: u64,
    /// Next level, by `(label missing, value)`: named values in order, the missing label last.
    children: BTreeMap<(bool, String), Branch>,
    /// Leaf only: eligible nodes that fit, by rank.
    heap: Heap,
    /// Could not take its last share.
    full: bool,
}

/// Shares `extra` new tasks among branches holding `counts` tasks so that the result is as even as
/// possible: branches are raised to a common level; branches already above it get nothing; the
/// remainder goes one each, in branch order, to the branches at the level.
pub(crate) fn water_fill(counts: &[u64], extra: u64) -> Vec<u64> {
    let m = counts.len();
    if m == 0 {
        return Vec::new();
    }
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let mut prefix: u64 = 0;
    let mut level = 0;
    for i in 0..m {
        prefix = prefix.saturating_add(sorted[i]);
        let l = extra.saturating_add(prefix) / (i as u64 + 1);
        if i + 1 == m || l <= sorted[i + 1] {
            level = l;
            break;
        }
    }
    let mut shares: Vec<u64> = counts.iter().map(|&t| level.saturating_sub(t)).collect();
    let mut left = extra.saturating_sub(shares.iter().sum());
    for (share, &t) in shares.iter_mut().zip(counts) {
        if left == 0 {
            break;
        }
        if t <= level {
            *share += 1;
            left -= 1;
        }
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::water_fill;

    #[test]
    fn water_fill_table() {
        let cases: &[(&[u64], u64, &[u64])] = &[
            (&[0, 0, 0], 5, &[2, 2, 1]),
            (&[5, 0, 0], 4, &[0, 2, 2]),
            (&[1, 1], 1, &[1, 0]),
            (&[0, 1], 1, &[1, 0]),
            (&[3, 0], 1, &[0, 1]),
            (&[2, 0, 1], 6, &[1, 3, 2]),
            (&[0], 7, &[7]),
            (&[4, 4, 4], 0, &[0, 0, 0]),
        ];
        for (counts, extra, want) in cases {
            assert_eq!(water_fill(counts, *extra), *want, "{counts:?} + {extra}");
        }
        assert!(water_fill(&[], 3).is_empty());
    }
}
