//! # swarm-core: the swarm state model
//!
//! The objects of a swarm cluster (cluster, nodes, services, tasks, secrets, configs, networks), the
//! rules their specs must follow, and the store that holds them: in memory, versioned, indexed,
//! transactional and watchable. Every change is a [`StoreAction`] committed through the [`Proposer`]
//! seam (raft in `swarm-raft`, [`LocalProposer`] in-process).
//!
//! This crate is **pure**: no I/O, no clock (time is a [`Timestamp`] argument or a [`Clock`] the
//! embedder supplies), no global randomness (ids come from a caller's RNG). The same inputs always give
//! the same store, byte for byte.
//!
//! # Layout
//! - [`id`], [`time`], [`meta`]: ids, timestamps, versions and annotations.
//! - [`objects`]: the object model, one module per kind.
//! - [`object`]: [`Object`] (any object) and the [`StoreObject`] trait.
//! - [`duration`], [`constraint`], [`placement`]: parsers for Go durations, placement constraints and
//!   spread preferences.
//! - [`validate`]: spec validation with typed errors.
//! - [`ipam`]: network subnets and service virtual IPs (pure allocation over what the store holds).
//! - [`action`]: [`StoreAction`] and [`Batch`], what raft replicates.
//! - [`store`]: [`Store`], [`SharedStore`], transactions ([`Tx`]) and watches ([`Watcher`]).
//! - [`proposer`]: the [`Proposer`] trait, [`LocalProposer`] and the [`update`] helper.
//! - `testing` (feature `testing`): fixtures for tests and benchmarks; `conformance` (feature
//!   `testing`): the [`Proposer`] conformance suite every implementation runs.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod action;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod constraint;
pub mod dispatch;
pub mod duration;
pub mod entropy;
pub mod id;
pub mod ipam;
pub mod meta;
pub mod object;
pub mod objects;
pub mod placement;
pub mod proposer;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod validate;

pub use action::{Batch, StoreAction};
pub use entropy::{Entropy, EntropySource};
pub use id::{Id, IdError};
pub use meta::{Annotations, Meta, Version};
pub use object::{Object, ObjectKind, ObjectRef, StoreObject};
pub use objects::cluster::Cluster;
pub use objects::network::Network;
pub use objects::node::Node;
pub use objects::secret::{Config, Secret, SecretData};
pub use objects::service::{Service, ServiceMode, ServiceSpec, TaskSpec};
pub use objects::task::{Task, TaskState, TaskStatus};
pub use proposer::{update, CommitError, LocalProposer, Proposer};
pub use store::{Event, SharedStore, Store, StoreError, StoreSnapshot, Tx, WatchFilter, Watcher};
pub use time::{Clock, ManualClock, SharedClock, Timestamp};
pub use validate::SpecError;
