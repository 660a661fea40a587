//! The control layer: typed operations on the cluster state, SwarmKit's `controlapi` in Rust.
//!
//! Every write follows one path: resolve what the caller named (full id, name, or unique id prefix),
//! validate the spec with [`swarm_core::validate`], stage a [`swarm_core::Tx`] on a consistent view of
//! the store, and commit its actions through the [`swarm_core::Proposer`]. A refused operation
//! ([`ControlError`]) changes nothing. Reads resolve against a consistent view and return shared
//! objects. The Docker API layer (`crate::api`) converts Docker's JSON to and from the swarm-core
//! types and calls these methods; an embedder can call them directly.
//!
//! # Layout
//! - [`error`][]: [`ControlError`].
//! - `resolve`: id / name / prefix lookup, as Docker's daemon does it.
//! - [`service`]: services ([`ServiceRequest`], [`FileRef`]).
//! - `secret`: secrets and configs (labels-only updates).
//! - `network`: swarm-scoped networks.
//! - `node`: node updates (labels, availability, role) and removal.
//! - [`cluster`]: `docker swarm update`, autolock and the unlock key.

pub mod cluster;
pub mod error;
mod network;
mod node;
mod resolve;
mod secret;
pub mod service;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};
use swarm_core::validate::ServiceLimits;
use swarm_core::{Clock, Id, SharedStore, Timestamp, Tx};

use crate::backend::{ClusterAccess, RaftView};
pub use cluster::Rotation;
pub use error::ControlError;
pub use secret::Blob;
pub use service::{FileRef, ServiceRequest};

/// The wall clock, for stamping update statuses and job iterations.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timestamp(nanos)
    }
}

/// Typed control operations over one cluster's store and proposer. Cheap to build per request.
#[derive(Clone)]
pub struct Control {
    access: ClusterAccess,
    clock: Arc<dyn Clock>,
    limits: ServiceLimits,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("node_id", &self.access.node_id)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Operations over `access`, stamping times with `clock`, with the default
    /// [`ServiceLimits`].
    pub fn new(access: ClusterAccess, clock: Arc<dyn Clock>) -> Control {
        Control {
            access,
            clock,
            limits: ServiceLimits::default(),
        }
    }

    /// The same operations with `limits` applied to every service spec created or updated.
    #[must_use]
    pub fn with_limits(mut self, limits: ServiceLimits) -> Control {
        self.limits = limits;
        self
    }

    /// The limits applied to service specs.
    pub fn limits(&self) -> &ServiceLimits {
        &self.limits
    }

    /// The store (read it with [`SharedStore::view`]).
    pub fn store(&self) -> &SharedStore {
        &self.access.store
    }

    /// The raft membership view, when the daemon provides one (multi-host managers).
    pub fn raft(&self) -> Option<&Arc<dyn RaftView>> {
        self.access.raft.as_ref()
    }

    /// This node's id.
    pub fn node_id(&self) -> Id {
        self.access.node_id
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Makes the local store current before a read whose result a client may act on (an inspect
    /// or list whose versions come back in an update): on a raft follower, the read-index
    /// protocol ([`swarm_core::Proposer::sync_reads`]: the leader's commit index, then a bounded
    /// wait until this manager applied it); on the leader or a local proposer, nothing. SwarmKit
    /// serves the control API on the leader (followers proxy it), so any manager answers as the
    /// leader would. Fails with `Unavailable` when there is no leader or the wait times out.
    pub async fn sync_reads(&self) -> Result<(), ControlError> {
        self.access.proposer.sync_reads().await?;
        Ok(())
    }

    /// [`Control::sync_reads`], then the store (read it with [`SharedStore::view`]).
    pub async fn current_store(&self) -> Result<&SharedStore, ControlError> {
        self.sync_reads().await?;
        Ok(&self.access.store)
    }

    /// A fresh random object id from the cluster's entropy.
    fn new_id(&self) -> Id {
        Id::generate(&mut self.access.entropy.clone())
    }

    /// Stages `f` on a consistent view and commits its actions (nothing if it recorded none).
    /// The view is made current first ([`Control::sync_reads`]), so a follower stages on what
    /// the leader has committed and the version a client read through any manager matches.
    async fn commit<R>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, ControlError>,
    ) -> Result<R, ControlError> {
        self.sync_reads().await?;
        let (r, actions) = self.access.store.prepare(f)?;
        if !actions.is_empty() {
            self.access.proposer.propose(actions).await?;
        }
        Ok(r)
    }
}

/// A fresh random object id from the operating system's RNG (the test double's ids; the
/// control layer's come from the cluster's entropy, [`Control`]'s `new_id`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn new_id() -> Id {
    Id::generate(&mut OsRng)
}

/// `n` random bytes from the operating system's RNG.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    bytes
}
