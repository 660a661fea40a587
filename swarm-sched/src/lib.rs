//! # swarm-sched: pure scheduling and orchestration for swarm
//!
//! This crate decides; it never does. Every component takes the cluster state (a
//! `swarm_core::Store`, or for the scheduler any [`ClusterRead`] view) or its events,
//! and `now: Timestamp`, and returns `swarm_core::StoreAction`s for the caller to propose. There is
//! **no I/O, no clock, no thread, no global randomness** here: the same inputs always give the same
//! outputs, so tests, property tests and simulations drive it step by step on a virtual clock.
//! `swarm-node` runs these components on the raft leader (see each type's driver contract).
//!
//! # Layout
//! - [`scheduler`]: [`Scheduler`], assigning pending tasks to nodes: the filter pipeline
//!   (ready -> resources -> constraints -> platform -> host port -> max replicas; plugins are not
//!   modelled), spread preferences and node ranking, with SwarmKit's "no suitable node" reasons.
//! - [`orchestrator`]: [`Orchestrator`], the leader loop from service specs to tasks (replicated,
//!   global, jobs, drained and down nodes, constraint enforcer), built on [`restart`] (restart
//!   policy), [`reaper`] (task history) and [`update`] (rolling updates and rollbacks).
//! - [`read`]: [`ClusterRead`], the read seam: what the scheduler reads of the cluster, implemented
//!   by `swarm_core::Store` and by an embedder's own lists (`examples/own_nodes.rs`).
//! - `testing` (feature `testing`): fixtures and a store-driving harness shared by tests, benches and
//!   simulations.
//!
//! # Scheduling in one paragraph
//! Pending tasks of one service and spec version are placed as one batch. Each goes to the best
//! node that passes every filter, where best means: not penalised for 5 failures of this service
//! version in 5 minutes, then fewest active tasks of the service, then fewest active tasks, then
//! lowest node id (so placement is deterministic). Spread preferences split the service's tasks
//! evenly between label values, level by level, the missing label being a value of its own.
//! Per-node state is updated incrementally from store events, and cached eligibility indexes make a
//! batch cost O(tasks x log nodes) rather than O(tasks x nodes).
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod orchestrator;
pub mod read;
pub mod reaper;
pub mod restart;
pub mod scheduler;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod update;

pub use orchestrator::Orchestrator;
pub use read::{ClusterRead, Objects};
pub use reaper::TaskReaper;
pub use restart::RestartSupervisor;
pub use scheduler::{Scheduler, SchedulerStats};
pub use update::{
    apply_service_update, is_task_dirty, rollback_service, RollbackError, UpdateSupervisor,
};
