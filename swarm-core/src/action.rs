//! [`StoreAction`]: the one command that changes a store, and [`Batch`], the unit raft replicates.

use serde::{Deserialize, Serialize};

use crate::object::{Object, ObjectRef};
use crate::time::Timestamp;

mod size;

pub use size::encoded_size;

/// One change to the store. Applying the same actions in the same order to equal stores gives equal
/// stores, byte for byte.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreAction {
    /// Insert a new object. Fails if the id exists or the name is taken.
    Create(Object),
    /// Replace an object. Fails unless its `meta.version` equals the stored version.
    Update(Object),
    /// Delete an object. Fails if it does not exist or (secrets, configs, networks) is in use.
    Remove(ObjectRef),
}

impl StoreAction {
    /// The object this action touches.
    pub fn target(&self) -> ObjectRef {
        match self {
            StoreAction::Create(o) | StoreAction::Update(o) => o.object_ref(),
            StoreAction::Remove(r) => *r,
        }
    }
}

/// A committed group of actions, applied atomically at one log index with one timestamp.
///
/// `index` becomes the version of every object the batch writes; `timestamp` (chosen by the proposer,
/// carried in the log) becomes their `updated_at`, so every replica computes the same store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Log index; must be greater than the store's current index.
    pub index: u64,
    /// Proposal time.
    pub timestamp: Timestamp,
    /// The actions, applied in order, all or nothing.
    pub actions: Vec<StoreAction>,
}

/// Upper bound on the encoded size of one proposal (1.5 MiB, as SwarmKit).
pub const MAX_PROPOSAL_BYTES: usize = 1536 * 1024;
/// Proposals are split into batches of at most this many actions (as SwarmKit).
pub const MAX_ACTIONS_PER_BATCH: usize = 200;

/// Upper bound used when decoding a batch or action from untrusted bytes.
pub const MAX_DECODE_BYTES: u64 = 64 * 1024 * 1024;

/// Encodes a list of actions with bincode.
pub fn encode_actions(actions: &[StoreAction]) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    bincode::serialize(actions).unwrap_or_default()
}

/// Decodes a list of actions from untrusted bytes, refusing input larger than
/// [`MAX_DECODE_BYTES`]. Length prefixes larger than the input fail without allocating them (serde
/// caps pre-allocation), and trailing bytes are refused.
pub fn decode_actions(bytes: &[u8]) -> Result<Vec<StoreAction>, bincode::Error> {
    use bincode::Options;
    // bincode 1.3 does not enforce `with_limit` on slices; check the size here.
    if bytes.len() as u64 > MAX_DECODE_BYTES {
        return Err(Box::new(bincode::ErrorKind::SizeLimit));
    }
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .with_limit(MAX_DECODE_BYTES)
        .deserialize(bytes)
}

/// Splits independent actions into proposals SwarmKit's way: at most [`MAX_ACTIONS_PER_BATCH`]
/// actions each, and also cut before an action that would take the encoded proposal past
/// [`MAX_PROPOSAL_BYTES`], so that tasks of a service with a large spec (each task carries the
/// spec) never make a proposal the proposer must refuse. Order is kept. An action larger than
/// the limit on its own gets a proposal of its own (which the proposer then refuses, as it would
/// anyway).
pub fn split_into_batches(actions: Vec<StoreAction>) -> Vec<Vec<StoreAction>> {
    // bincode's encoding of a Vec is an 8-byte length followed by the elements.
    const VEC_HEADER: u64 = 8;
    let limit = MAX_PROPOSAL_BYTES as u64;
    let mut out = Vec::new();
    let mut chunk: Vec<StoreAction> = Vec::new();
    let mut bytes = VEC_HEADER;
    for action in actions {
        let size = encoded_size(&action).unwrap_or(limit);
        if !chunk.is_empty() && (chunk.len() >= MAX_ACTIONS_PER_BATCH || bytes + size > limit) {
            out.push(std::mem::take(&mut chunk));
            bytes = VEC_HEADER;
        }
        bytes += size;
        chunk.push(action);
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out
}
