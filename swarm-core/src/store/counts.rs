//! Per-service task counts: how many of a service's tasks run or completed, kept up to date with
//! every task write so that `docker service ls` (which shows `running/desired` for every service)
//! reads a few numbers per service instead of walking every task of the cluster under the store's
//! read lock. Only those two states count: a task enters each at most once, so creating,
//! assigning and starting tasks (the scheduler's writes) never touch the counts.

use super::idmap::KeyMap;
use crate::id::Id;
use crate::meta::Version;
use crate::objects::task::{Task, TaskState};

/// How many of a service's tasks (or of one job iteration's) are in the states `docker service
/// ls` reports. See [`crate::Store::task_counts`]. (A global service's desired count depends on
/// the desired states of its tasks, one per node: read it from the service's tasks.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Tasks observed `running`.
    pub running: u64,
    /// Tasks observed `complete`.
    pub completed: u64,
}

impl TaskCounts {
    fn is_zero(&self) -> bool {
        *self == TaskCounts::default()
    }

    /// Adds (`add`) or takes away one task's contribution `c`.
    fn shift(&mut self, c: Contribution, add: bool) {
        let apply = |n: &mut u64, by: bool| {
            if by {
                *n = if add {
                    n.saturating_add(1)
                } else {
                    n.saturating_sub(1)
                };
            }
        };
        apply(&mut self.running, c.running);
        apply(&mut self.completed, c.completed);
    }
}

/// What one task adds to its service's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Contribution {
    running: bool,
    completed: bool,
}

impl Contribution {
    fn of(t: &Task) -> Option<(Id, Option<Version>, Contribution)> {
        Contribution::of_state(t.status.state).map(|c| (t.service_id, t.job_iteration, c))
    }

    /// What a task in observed state `state` adds, if anything.
    fn of_state(state: TaskState) -> Option<Contribution> {
        let c = Contribution {
            running: state == TaskState::Running,
            completed: state == TaskState::Complete,
        };
        (c.running || c.completed).then_some(c)
    }
}

/// The counts of one service: over all its tasks, and per job iteration (jobs only; few
/// iterations have tasks at once).
#[derive(Clone, Debug, Default)]
struct ServiceCounts {
    all: TaskCounts,
    iterations: Vec<(Version, TaskCounts)>,
}

/// The counts of every service with a task that counts (see [`TaskCounts`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct CountIndex {
    map: KeyMap<Id, ServiceCounts>,
}

impl CountIndex {
    /// The counts of `service`: of all its tasks, or of job iteration `iteration`'s.
    pub(crate) fn get(&self, service: &Id, iteration: Option<Version>) -> TaskCounts {
        let Some(sc) = self.map.get(service) else {
            return TaskCounts::default();
        };
        match iteration {
            None => sc.all,
            Some(it) => sc
                .iterations
                .iter()
                .find(|(i, _)| *i == it)
                .map_or_else(TaskCounts::default, |(_, c)| *c),
        }
    }

    /// Keeps the counts in step after `old` was replaced by `new` (either may be absent). A write
    /// that changes no contribution (creations, assignments, most status updates) costs no probe.
    pub(crate) fn reindex(&mut self, old: Option<&Task>, new: Option<&Task>) {
        let (old, new) = (
            old.and_then(Contribution::of),
            new.and_then(Contribution::of),
        );
        if old == new {
            return;
        }
        if let Some((service, iteration, c)) = old {
            self.shift(service, iteration, c, false);
        }
        if let Some((service, iteration, c)) = new {
            self.shift(service, iteration, c, true);
        }
    }

    fn shift(&mut self, service: Id, iteration: Option<Version>, c: Contribution, add: bool) {
        let sc = self.map.entry(service).or_default();
        sc.all.shift(c, add);
        if let Some(it) = iteration {
            match sc.iterations.iter().position(|(i, _)| *i == it) {
                Some(pos) => {
                    sc.iterations[pos].1.shift(c, add);
                    if sc.iterations[pos].1.is_zero() {
                        sc.iterations.swap_remove(pos);
                    }
                }
                None if add => {
                    let mut counts = TaskCounts::default();
                    counts.shift(c, true);
                    sc.iterations.push((it, counts));
                }
                None => {}
            }
        }
        if sc.all.is_zero() && sc.iterations.is_empty() {
            self.map.remove(&service);
        }
    }

    /// The counts of tasks given as (service, job iteration, observed state), built in one pass
    /// (a snapshot restore, from the keys it reads of every task at once).
    pub(crate) fn from_states(
        tasks: impl Iterator<Item = (Id, Option<Version>, TaskState)>,
    ) -> CountIndex {
        let mut ix = CountIndex::default();
        for (service, iteration, state) in tasks {
            if let Some(c) = Contribution::of_state(state) {
                ix.shift(service, iteration, c, true);
            }
        }
        ix
    }
}
