//! The crate's error type: one enum, every variant distinct, every message says what was wrong and
//! what to do next. No operation of this crate panics on bad input; it returns one of these.

use crate::keys::KeyId;
use crate::place::{KeyPurpose, RecordPlace};

/// Everything that can go wrong in `swarm-secrets`.
///
/// Matching is meant to be exhaustive for callers that map errors to operator messages (swarm-node) or
/// to storage faults (swarm-raft); the enum is `non_exhaustive` so new failure kinds can be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text given as an unlock key is not of the form `SWMKEY-1-` + 43 base64 characters.
    #[error("malformed unlock key: {0}")]
    MalformedUnlockKey(#[from] UnlockKeyFormatError),

    /// The unlock key is well formed but is not the key this manager's key file was wrapped with.
    #[error(
        "wrong unlock key: it does not open this manager's keys; check that it is the cluster's current \
         unlock key (an unlocked manager prints it), and if the key was rotated while this manager was \
         down, unlock once with the previous key"
    )]
    WrongUnlockKey,

    /// The bytes are not a structurally valid sealed record (too short, wrong magic, bad place field).
    #[error(
        "corrupt sealed record: {reason}; the bytes are not a complete record written by swarm-secrets \
         (truncated write or overwritten storage), restore the data from another replica or a snapshot"
    )]
    CorruptRecord {
        /// Which structural check failed.
        reason: &'static str,
    },

    /// A sealed record or key file carries a format version this build does not know.
    #[error(
        "{what} has format version {found}, but this build of swarm reads only version {supported}; \
         run a swarm release that knows version {found}"
    )]
    UnknownVersion {
        /// `"sealed record"` or `"key file"`.
        what: &'static str,
        /// The version byte found in the input.
        found: u8,
        /// The version this build reads and writes.
        supported: u8,
    },

    /// The record's authentication tag does not verify: some byte was changed after sealing.
    #[error(
        "sealed record failed authentication: it was modified or corrupted after it was sealed; do not \
         use it, restore the data from another replica or a snapshot"
    )]
    TamperedRecord,

    /// The record is authentic but belongs to another place (log index, snapshot, key slot): it was
    /// moved, swapped or replayed.
    #[error(
        "sealed record belongs to {sealed_for} but was read as {opened_as}: records were moved, swapped \
         or replayed on disk; do not trust this storage, restore from another replica"
    )]
    WrongPlace {
        /// The place the record was sealed for (authenticated).
        sealed_for: Box<RecordPlace>,
        /// The place the caller asked for.
        opened_as: Box<RecordPlace>,
    },

    /// The record was sealed with a key this holder does not have (retired, or never known).
    #[error(
        "sealed record was sealed with key {key_id}, which is not held here (retired after a snapshot \
         covered it, or never known to this node); read the data from a newer snapshot or another replica"
    )]
    UnknownKey {
        /// The key id found in the record header.
        key_id: KeyId,
    },

    /// An input to sealing or wrapping is larger than the format can carry.
    #[error(
        "{what} is {len} bytes, more than the {max} bytes a sealed record can carry; split it"
    )]
    TooLarge {
        /// What was too large (`"plaintext"`, `"record place"`).
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The key file bytes are not a valid key file.
    #[error(
        "malformed key file: {reason}; the file was truncated or edited, restore it from a backup or \
         remove this manager from the cluster and join it again"
    )]
    MalformedKeyFile {
        /// Which check failed.
        reason: &'static str,
    },

    /// Argon2id parameters are outside the accepted range.
    #[error("invalid argon2id parameters: {reason}")]
    InvalidKdfParams {
        /// What is out of range, and the range.
        reason: String,
    },

    /// Sealing was attempted with a key whose key file has not yet been reported durable.
    #[error(
        "key file generation {generation} holds the current sealing key but has not been reported \
         durable; write it to disk and call handle_persisted({generation}) before sealing records, or \
         they could not be opened after a crash"
    )]
    KeyFileNotPersisted {
        /// The generation that must be persisted first.
        generation: u64,
    },

    /// A DEK rotation was started while another is still waiting for its covering snapshot.
    #[error(
        "a DEK rotation is already in progress (pending key {pending}); it completes once a snapshot \
         sealed with the pending key covers log index {boundary}; take a snapshot, then retry"
    )]
    DekRotationInProgress {
        /// The pending key sealing new records.
        pending: KeyId,
        /// The log index a snapshot must cover to retire the old key.
        boundary: u64,
    },

    /// The purpose is reserved for the key hierarchy itself.
    #[error("key purpose `{purpose}` is reserved for the raft DEKs; store secrets under another purpose")]
    ReservedPurpose {
        /// The purpose that was refused.
        purpose: KeyPurpose,
    },

    /// The random number generator produced the same key twice in a row.
    #[error(
        "the random number generator produced a key that collides with the current one several times; \
         it is broken, give the node a working cryptographic RNG"
    )]
    RandomnessFailure,
}

/// Why an unlock key's text was rejected (see [`Error::MalformedUnlockKey`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnlockKeyFormatError {
    /// The text does not start with `SWMKEY-1-`.
    #[error("it must start with `SWMKEY-1-`; paste the whole key exactly as it was printed")]
    MissingPrefix,
    /// The part after the prefix is not canonical unpadded standard base64.
    #[error(
        "the part after `SWMKEY-1-` must be unpadded standard base64 (A-Z, a-z, 0-9, +, /); the key was \
         mistyped or altered"
    )]
    BadEncoding,
    /// The part after the prefix has the wrong number of characters.
    #[error(
        "the part after `SWMKEY-1-` has {chars} characters but an unlock key has 43 (32 bytes); the key \
         was truncated or has extra characters"
    )]
    WrongLength {
        /// Characters found after the prefix.
        chars: usize,
    },
}
