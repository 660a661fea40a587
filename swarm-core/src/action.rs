//! [`StoreAction`]: the one command that changes a store, and [`Batch`], the unit raft replicates.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::meta::{Annotations, Meta, Version};
use crate::object::{Object, ObjectRef};
use crate::objects::service::{PortConfig, TaskSpec};
use crate::objects::task::{NetworkAttachment, Task, TaskState, TaskStatus};
use crate::time::Timestamp;

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
///
/// Every action is sized exactly ([`encoded_size`]); the spec of a task that shares it with the
/// task before it (the tasks of one service version, as the orchestrators and the scheduler
/// write them) is sized once.
pub fn split_into_batches(actions: Vec<StoreAction>) -> Vec<Vec<StoreAction>> {
    // bincode's encoding of a Vec is an 8-byte length followed by the elements.
    const VEC_HEADER: u64 = 8;
    let limit = MAX_PROPOSAL_BYTES as u64;
    let mut out = Vec::new();
    let mut chunk: Vec<StoreAction> = Vec::new();
    let mut bytes = VEC_HEADER;
    let mut sizer = Sizer::default();
    for action in actions {
        let size = sizer.size(&action).unwrap_or(limit);
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

/// The exact bincode size of `action` (what [`encode_actions`] writes for it).
pub fn encoded_size(action: &StoreAction) -> u64 {
    Sizer::default().size(action).unwrap_or(u64::MAX)
}

/// Sizes actions, remembering the size of the last task spec it walked.
///
/// Sound because the actions being split are owned and unchanged for the whole split: an `Arc`
/// pointer seen again within it is the same allocation with the same contents.
#[derive(Default)]
struct Sizer {
    last_spec: Option<(*const TaskSpec, u64)>,
}

/// A task's fields but its spec, as serde serializes [`Task`] (same order, same types), so that
/// `size(task) = size(TaskFields) + size(spec)`. Built by exhaustive destructuring: a field added
/// to `Task` does not compile until it is added here.
#[derive(Serialize)]
struct TaskFields<'a> {
    id: &'a Id,
    meta: &'a Meta,
    service_id: &'a Id,
    service_annotations: &'a Annotations,
    slot: u64,
    node_id: &'a Option<Id>,
    spec_version: &'a Version,
    status: &'a TaskStatus,
    desired_state: TaskState,
    job_iteration: &'a Option<Version>,
    assigned_secrets: &'a Vec<Id>,
    assigned_configs: &'a Vec<Id>,
    networks: &'a Vec<NetworkAttachment>,
    ports: &'a Vec<PortConfig>,
}

impl Sizer {
    fn size(&mut self, action: &StoreAction) -> Option<u64> {
        // bincode writes an enum variant as a u32 index: one for the action, one for the object.
        const VARIANT: u64 = 4;
        let task = match action {
            StoreAction::Create(Object::Task(t)) | StoreAction::Update(Object::Task(t)) => t,
            _ => return bincode::serialized_size(action).ok(),
        };
        let Task {
            id,
            meta,
            service_id,
            service_annotations,
            slot,
            node_id,
            spec,
            spec_version,
            status,
            desired_state,
            job_iteration,
            assigned_secrets,
            assigned_configs,
            networks,
            ports,
        } = &**task;
        let fields = TaskFields {
            id,
            meta,
            service_id,
            service_annotations,
            slot: *slot,
            node_id,
            spec_version,
            status,
            desired_state: *desired_state,
            job_iteration,
            assigned_secrets,
            assigned_configs,
            networks,
            ports,
        };
        let spec_size = match self.last_spec {
            Some((p, n)) if std::ptr::eq(p, Arc::as_ptr(spec)) => n,
            _ => {
                let n = bincode::serialized_size(&**spec).ok()?;
                self.last_spec = Some((Arc::as_ptr(spec), n));
                n
            }
        };
        Some(2 * VARIANT + bincode::serialized_size(&fields).ok()? + spec_size)
    }
}
