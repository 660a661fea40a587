//! [`ControlError`]: why a control operation was refused. A refused operation changed nothing.

use swarm_core::{CommitError, ObjectKind, SpecError, StoreError};
use swarm_sched::RollbackError;
use thiserror::Error;

/// Why a control operation failed. Each variant maps to one HTTP status in the API layer
/// (`api::error`); messages follow SwarmKit's and Docker's wording.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ControlError {
    /// The spec breaks a rule (SwarmKit: `InvalidArgument`).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The request is malformed or refers to something unusable (SwarmKit: `InvalidArgument`).
    #[error("{0}")]
    InvalidArgument(String),
    /// No object matches the id, name or id prefix given.
    #[error("{kind} {input} not found")]
    NotFound {
        /// `service`, `secret`, `node`, ...
        kind: &'static str,
        /// What the caller asked for.
        input: String,
    },
    /// An id prefix matches several objects: give more characters.
    #[error("{kind} {input} is ambiguous ({count} matches found)")]
    Ambiguous {
        /// `service`, `secret`, `node`, ...
        kind: &'static str,
        /// What the caller asked for.
        input: String,
        /// How many objects match.
        count: usize,
    },
    /// The name is taken (SwarmKit: `AlreadyExists`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The name is taken, found by Docker's daemon itself before SwarmKit (`network with name X
    /// already exists`): the same 409, without the gRPC wrapping.
    #[error("{0}")]
    Conflict(String),
    /// The update was based on an older version of the object: read it again and retry.
    #[error("{0}")]
    OutOfSequence(String),
    /// The operation is not allowed in the object's current state (SwarmKit: `FailedPrecondition`),
    /// e.g. demoting the last manager or removing a node that is not down.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The operation is not supported yet.
    #[error("{0}")]
    Unimplemented(String),
    /// The cluster cannot take writes now (no leader, no quorum, shutting down): retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the manager; the message says what.
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    /// The gRPC code SwarmKit's control API would answer with, which Docker shows as
    /// `rpc error: code = <code> desc = <message>`; `None` for errors Docker raises itself
    /// (lookups by name or prefix, cluster availability).
    pub fn grpc_code(&self) -> Option<&'static str> {
        match self {
            ControlError::Spec(_) | ControlError::InvalidArgument(_) => Some("InvalidArgument"),
            ControlError::AlreadyExists(_) => Some("AlreadyExists"),
            ControlError::OutOfSequence(_) => Some("Unknown"),
            ControlError::FailedPrecondition(_) => Some("FailedPrecondition"),
            ControlError::Unimplemented(_) => Some("Unimplemented"),
            ControlError::NotFound { .. }
            | ControlError::Conflict(_)
            | ControlError::Ambiguous { .. }
            | ControlError::Unavailable(_)
            | ControlError::Internal(_) => None,
        }
    }

    pub(crate) fn not_found(kind: &'static str, input: impl Into<String>) -> ControlError {
        ControlError::NotFound {
            kind,
            input: input.into(),
        }
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> ControlError {
        match e {
            StoreError::NameConflict { kind, name } => ControlError::AlreadyExists(match kind {
                // SwarmKit keeps the store's message first for clients that match on it.
                ObjectKind::Service => {
                    format!("name conflicts with an existing object: service {name} already exists")
                }
                other => format!("{other} {name} already exists"),
            }),
            StoreError::AlreadyExists { .. } => ControlError::AlreadyExists(e.to_string()),
            StoreError::NotFound { kind, id } => {
                ControlError::not_found(kind.as_str(), id.as_str())
            }
            StoreError::VersionConflict { .. } => ControlError::OutOfSequence(e.to_string()),
            StoreError::InUse { .. } => ControlError::InvalidArgument(e.to_string()),
            StoreError::StateRegression { .. }
            | StoreError::StaleIndex { .. }
            | StoreError::Snapshot(_) => ControlError::Internal(e.to_string()),
        }
    }
}

impl From<CommitError> for ControlError {
    fn from(e: CommitError) -> ControlError {
        match e {
            CommitError::Rejected(e) => e.into(),
            CommitError::TooLarge { .. } => ControlError::InvalidArgument(e.to_string()),
            CommitError::NotLeader { .. }
            | CommitError::NoQuorum { .. }
            | CommitError::Stopped
            | CommitError::Storage(_) => ControlError::Unavailable(e.to_string()),
        }
    }
}

impl From<RollbackError> for ControlError {
    fn from(e: RollbackError) -> ControlError {
        match e {
            RollbackError::NoPreviousSpec { service } => ControlError::FailedPrecondition(format!(
                "service {service} does not have a previous spec"
            )),
        }
    }
}
