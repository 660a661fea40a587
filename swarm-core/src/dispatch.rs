//! Messages between the dispatcher (on the leader manager) and the agents (on every node).
//!
//! The dispatcher streams each node its [`AssignmentSet`]s: the tasks assigned to it plus only the
//! secrets and configs those tasks reference. The agent answers with batches of
//! [`TaskStatusUpdate`]s. A node opens a session with a [`NodeRegistration`]; the first set of every
//! session is complete (`full == true`), later ones are incremental.
//!
//! All types are plain serde (no `flatten`, `untagged` or `skip_serializing_if`) so that bincode can
//! carry them over the wire. Secret payloads travel as [`crate::SecretData`]: redacted in `Debug`,
//! zeroized on drop.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::objects::node::NodeDescription;
use crate::objects::secret::{Config, Secret};
use crate::objects::task::{Task, TaskStatus};

/// What a node sends to open a dispatcher session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    /// The node's id (the CN of its certificate).
    pub node_id: Id,
    /// What the node reports about itself.
    pub description: NodeDescription,
}

/// One message of the assignment stream.
///
/// With `full == true` the set is complete: the node must run exactly `tasks` and hold exactly
/// `secrets` and `configs`, dropping everything else; the `removed_*` lists are empty. With
/// `full == false` it is a change on top of the previous set: upsert `tasks`, `secrets`, `configs`
/// and drop the `removed_*` ids. Within one set, secrets and configs are applied before tasks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AssignmentSet {
    /// Sequence number within the session, starting at 1 and increasing by 1; a gap means a
    /// message was lost and the agent must ask for a new session (which starts with a full set).
    pub sequence: u64,
    /// Whether this set replaces everything the node was told before.
    pub full: bool,
    /// Tasks to run (new or updated: desired state, spec).
    pub tasks: Vec<Arc<Task>>,
    /// Tasks the node must forget (shut down if still running, then remove).
    pub removed_tasks: Vec<Id>,
    /// Secrets referenced by the node's tasks.
    pub secrets: Vec<Secret>,
    /// Secrets no task on the node references any more.
    pub removed_secrets: Vec<Id>,
    /// Configs referenced by the node's tasks.
    pub configs: Vec<Config>,
    /// Configs no task on the node references any more.
    pub removed_configs: Vec<Id>,
}

impl AssignmentSet {
    /// An empty complete set (the node must run nothing).
    pub fn empty_full(sequence: u64) -> AssignmentSet {
        AssignmentSet {
            sequence,
            full: true,
            ..AssignmentSet::default()
        }
    }
}

/// One observed status change of one task, as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatusUpdate {
    /// The task.
    pub task_id: Id,
    /// Its new status; its state is never behind a state reported before for the same task.
    pub status: TaskStatus,
}

/// A batch of status updates from one node (the agent batches by time and count).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBatch {
    /// The reporting node.
    pub node_id: Option<Id>,
    /// Updates, at most one per task, in the order the agent observed them.
    pub updates: Vec<TaskStatusUpdate>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Annotations;
    use crate::objects::secret::{SecretData, SecretSpec};
    use crate::objects::task::TaskState;

    #[test]
    fn assignment_sets_round_trip_through_bincode_and_redact_secrets() {
        let secret = Secret {
            id: Id::from_u128(1),
            meta: Default::default(),
            spec: SecretSpec {
                annotations: Annotations::named("pw"),
                data: SecretData::new(b"hunter2".to_vec()),
                templating: None,
            },
        };
        let set = AssignmentSet {
            sequence: 3,
            full: false,
            removed_tasks: vec![Id::from_u128(5)],
            secrets: vec![secret],
            ..AssignmentSet::default()
        };
        let bytes = bincode::serialize(&set).unwrap();
        let back: AssignmentSet = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, set);
        assert!(!format!("{set:?}").contains("hunter2"));

        let update = TaskStatusUpdate {
            task_id: Id::from_u128(2),
            status: TaskStatus {
                state: TaskState::Running,
                message: "started".into(),
                ..TaskStatus::default()
            },
        };
        let batch = StatusBatch {
            node_id: Some(Id::from_u128(9)),
            updates: vec![update],
        };
        let bytes = bincode::serialize(&batch).unwrap();
        assert_eq!(bincode::deserialize::<StatusBatch>(&bytes).unwrap(), batch);
    }
}
