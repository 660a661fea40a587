//! The openraft type configuration: what a log entry carries ([`Proposal`]), what applying it
//! answers ([`Applied`]), node ids and addresses.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use swarm_core::{StoreAction, StoreError, Timestamp};

/// A raft node id. Swarm managers use a random 64-bit raft id, separate from their 25-character
/// node id (as SwarmKit does).
pub type NodeId = u64;

/// A manager as seen by raft: its address on the manager network (opaque to this crate).
pub type ManagerNode = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The raft types of swarm: entries carry [`Proposal`]s, applying one answers [`Applied`].
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = ManagerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft instance of a swarm manager.
pub type Raft = openraft::Raft<TypeConfig>;
/// One log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (leader id + index).
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, ManagerNode>;
/// Membership as stored with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, ManagerNode>;
/// openraft's storage error for our node ids.
pub type StorageError = openraft::StorageError<NodeId>;

/// One replicated command: a batch of store actions with the timestamp the leader gave it.
///
/// The leader stamps `timestamp` once, when it accepts the proposal, so every replica applies the
/// same batch and computes the same store, byte for byte.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// When the leader accepted the proposal; becomes `updated_at` of every object it writes.
    pub timestamp: Timestamp,
    /// The actions, applied atomically at the entry's log index.
    pub actions: Vec<StoreAction>,
}

/// What applying an entry to the store answered. Deterministic: every replica answers the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// Not a proposal (a blank or membership entry).
    Nothing,
    /// The batch was applied at this index.
    Committed {
        /// The log index, which became the version of every object written.
        index: u64,
    },
    /// The store refused the batch; nothing changed (on any replica).
    Rejected(StoreError),
}
