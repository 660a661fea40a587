//! Serializable mirrors of swarm-core's [`StoreError`] and [`CommitError`], so that a rejection on
//! the leader can travel back to the follower that forwarded the proposal (and sit in openraft's
//! serde-bound response type) without loss.

use serde::{Deserialize, Serialize};
use swarm_core::{CommitError, Id, ObjectKind, StoreError, TaskState};

/// [`StoreError`] in a serializable form. Converts both ways without loss.
#[allow(missing_docs)] // Each variant mirrors the documented StoreError variant of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireStoreError {
    AlreadyExists {
        kind: ObjectKind,
        id: Id,
    },
    NameConflict {
        kind: ObjectKind,
        name: String,
    },
    NotFound {
        kind: ObjectKind,
        id: Id,
    },
    VersionConflict {
        kind: ObjectKind,
        id: Id,
        current: u64,
        given: u64,
    },
    InUse {
        kind: ObjectKind,
        name: String,
        services: Vec<String>,
    },
    StateRegression {
        id: Id,
        from: TaskState,
        to: TaskState,
    },
    StaleIndex {
        current: u64,
        given: u64,
    },
    Snapshot(String),
    /// A variant added to [`StoreError`] after this mirror was written, by its message.
    Other(String),
}

impl From<StoreError> for WireStoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { kind, id } => Self::AlreadyExists { kind, id },
            StoreError::NameConflict { kind, name } => Self::NameConflict { kind, name },
            StoreError::NotFound { kind, id } => Self::NotFound { kind, id },
            StoreError::VersionConflict {
                kind,
                id,
                current,
                given,
            } => Self::VersionConflict {
                kind,
                id,
                current,
                given,
            },
            StoreError::InUse {
                kind,
                name,
                services,
            } => Self::InUse {
                kind,
                name,
                services,
            },
            StoreError::StateRegression { id, from, to } => Self::StateRegression { id, from, to },
            StoreError::StaleIndex { current, given } => Self::StaleIndex { current, given },
            StoreError::Snapshot(s) => Self::Snapshot(s),
            #[allow(unreachable_patterns)]
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<WireStoreError> for StoreError {
    fn from(e: WireStoreError) -> Self {
        match e {
            WireStoreError::AlreadyExists { kind, id } => Self::AlreadyExists { kind, id },
            WireStoreError::NameConflict { kind, name } => Self::NameConflict { kind, name },
            WireStoreError::NotFound { kind, id } => Self::NotFound { kind, id },
            WireStoreError::VersionConflict {
                kind,
                id,
                current,
                given,
            } => Self::VersionConflict {
                kind,
                id,
                current,
                given,
            },
            WireStoreError::InUse {
                kind,
                name,
                services,
            } => Self::InUse {
                kind,
                name,
                services,
            },
            WireStoreError::StateRegression { id, from, to } => {
                Self::StateRegression { id, from, to }
            }
            WireStoreError::StaleIndex { current, given } => Self::StaleIndex { current, given },
            WireStoreError::Snapshot(s) | WireStoreError::Other(s) => Self::Snapshot(s),
        }
    }
}

/// [`CommitError`] in a serializable form, for forwarded proposals.
#[allow(missing_docs)] // Each variant mirrors the documented CommitError variant of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireCommitError {
    Rejected(WireStoreError),
    NotLeader { leader: Option<String> },
    NoQuorum { timeout_ms: u64 },
    TooLarge { bytes: usize, limit: usize },
    Stopped,
}

impl From<CommitError> for WireCommitError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Rejected(e) => Self::Rejected(e.into()),
            CommitError::NotLeader { leader } => Self::NotLeader { leader },
            CommitError::NoQuorum { timeout_ms } => Self::NoQuorum { timeout_ms },
            CommitError::TooLarge { bytes, limit } => Self::TooLarge { bytes, limit },
            #[allow(unreachable_patterns)]
            _ => Self::Stopped,
        }
    }
}

impl From<WireCommitError> for CommitError {
    fn from(e: WireCommitError) -> Self {
        match e {
            WireCommitError::Rejected(e) => Self::Rejected(e.into()),
            WireCommitError::NotLeader { leader } => Self::NotLeader { leader },
            WireCommitError::NoQuorum { timeout_ms } => Self::NoQuorum { timeout_ms },
            WireCommitError::TooLarge { bytes, limit } => Self::TooLarge { bytes, limit },
            WireCommitError::Stopped => Self::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_round_trip() {
        let id = Id::from_u128(7);
        let cases = [
            StoreError::AlreadyExists {
                kind: ObjectKind::Task,
                id,
            },
            StoreError::VersionConflict {
                kind: ObjectKind::Service,
                id,
                current: 3,
                given: 2,
            },
            StoreError::InUse {
                kind: ObjectKind::Secret,
                name: "s".into(),
                services: vec!["a".into()],
            },
            StoreError::StateRegression {
                id,
                from: TaskState::Running,
                to: TaskState::New,
            },
            StoreError::StaleIndex {
                current: 5,
                given: 5,
            },
        ];
        for e in cases {
            let w = WireStoreError::from(e.clone());
            let bytes = bincode::serialize(&w).unwrap();
            let back: WireStoreError = bincode::deserialize(&bytes).unwrap();
            assert_eq!(StoreError::from(back), e);
        }
    }
}
