//! [`KeyStatus`]: a read-only summary of a [`crate::KeyManager`]'s state, for status output and tests.
//! It holds ids and counters only, never key material.

use crate::keys::KeyId;

/// Where the DEK rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DekPhase {
    /// One DEK seals and opens.
    Steady {
        /// The DEK.
        current: KeyId,
    },
    /// A rotation is in progress.
    Rotating {
        /// The old DEK: opens only, retired after a covering snapshot.
        retiring: KeyId,
        /// The new DEK: seals every new record.
        pending: KeyId,
        /// Highest log index the retiring DEK sealed; a snapshot must cover it.
        boundary: u64,
    },
}

impl DekPhase {
    /// The DEK that seals new records.
    pub fn sealing_key(&self) -> KeyId {
        match *self {
            Self::Steady { current } => current,
            Self::Rotating { pending, .. } => pending,
        }
    }
}

/// A snapshot of a key manager's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStatus {
    /// Autolock is on (KEK derived from the unlock key, not stored).
    pub autolock: bool,
    /// The current KEK.
    pub kek: KeyId,
    /// The DEK phase.
    pub dek: DekPhase,
    /// A DEK rotation was requested and has not begun.
    pub dek_rotation_requested: bool,
    /// A re-wrapped key file is not yet durable, so the previous KEK is still accepted.
    pub kek_switching: bool,
    /// Generation of the latest key file.
    pub generation: u64,
    /// Latest generation reported durable.
    pub persisted_generation: u64,
}
