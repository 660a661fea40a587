//! Errors, kept in three families so a caller can tell "stop, the disk is wrong" from "this request
//! failed, try again or elsewhere":
//!
//! * [`StorageFault`]: fatal. The data directory is unreadable, corrupt, tampered with or locked; the
//!   node refuses to start (or stops) rather than serve wrong state. Every variant names the file
//!   and, where it applies, the byte offset.
//! * [`StartError`]: why [`crate::RaftNode::start`] did not produce a running node.
//! * [`MembershipError`] and [`KeyChangeError`]: why a cluster operation was refused; the node keeps
//!   running. Proposals fail with swarm-core's [`swarm_core::CommitError`].

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// A fatal problem with the data directory. The node must not serve until an operator fixed it.
#[derive(Debug, Error)]
pub enum StorageFault {
    /// A file operation failed (permissions, full disk, I/O error).
    #[error("{op} {path}: {source}; check the disk and the data directory's permissions")]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file's structure is broken somewhere other than a torn tail: a bad header, a checksum
    /// mismatch followed by valid records, entries out of order, a missing segment.
    #[error("{file} is corrupt at byte {offset}: {reason}; the node will not start on a damaged log. Restore this manager from another replica (remove it from the cluster and join it again) or move the data directory away")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the first bad byte.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A record's checksum is right but it does not authenticate: it was modified, moved or sealed
    /// with a key this node does not hold.
    #[error("{file} at byte {offset}: {source}")]
    Tampered {
        /// The file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// What swarm-secrets found.
        source: swarm_secrets::Error,
    },
    /// A length field announces more bytes than any valid record has; refused before allocating.
    #[error("{file} at byte {offset}: a record claims {len} bytes, more than the {max}-byte limit; the file is corrupt or was not written by swarm")]
    Oversized {
        /// The file.
        file: PathBuf,
        /// Byte offset of the length field.
        offset: u64,
        /// Claimed length.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// The key file could not be used (see the inner error for what to do).
    #[error("key file {file}: {source}")]
    Keys {
        /// The key file.
        file: PathBuf,
        /// What swarm-secrets found.
        source: swarm_secrets::Error,
    },
    /// A write was asked for that would break the log's invariants (a hole, an overwrite without
    /// truncation). A bug in the caller; nothing was written.
    #[error("refused log write: {0}")]
    Invariant(String),
    /// State the data directory had is gone: committed log entries (the log ends before the
    /// committed index), the key file, the snapshot the log was purged behind, or the
    /// committed-index file. Nothing was changed or deleted.
    #[error("{path}: {what}; the node will not start on a data directory that lost state. Put the missing files back, or restore this manager from another replica (remove it from the cluster and join it again), or move the data directory away")]
    Missing {
        /// The missing file or directory.
        path: PathBuf,
        /// What is missing, with the indexes involved.
        what: String,
    },
    /// The log was closed (the node is shutting down).
    #[error("the write-ahead log is closed")]
    Closed,
}

impl StorageFault {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageFault::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StorageFault::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Why a node did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// Autolock is on and no unlock key was given.
    #[error("swarm is encrypted and needs to be unlocked before it can be used; start the manager with the unlock key (`docker swarm unlock`)")]
    Locked,
    /// The unlock key does not open this manager's keys.
    #[error("invalid unlock key: {0}")]
    WrongUnlockKey(swarm_secrets::Error),
    /// The data directory is unusable.
    #[error(transparent)]
    Storage(#[from] StorageFault),
    /// The configuration is invalid.
    #[error("invalid raft configuration: {0}")]
    Config(String),
    /// openraft refused to start or initialize.
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Why a membership change was refused. The cluster is unchanged.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MembershipError {
    /// Only the leader changes membership.
    #[error("this node is not the raft leader{}; retry on the leader", leader.map(|l| format!(" (the leader is {l})")).unwrap_or_default())]
    NotLeader {
        /// The leader, if known.
        leader: Option<u64>,
    },
    /// The change would leave the cluster without a reachable quorum of managers.
    #[error("can't remove or demote manager {node}: the {reachable} reachable manager(s) left would not be a quorum of {voters}; bring unreachable managers back first")]
    WouldLoseQuorum {
        /// The manager to demote or remove.
        node: u64,
        /// Reachable voters after the change.
        reachable: usize,
        /// Voters after the change.
        voters: usize,
    },
    /// The last manager cannot be demoted or removed.
    #[error("can't demote or remove manager {0}: it is the last manager of the swarm")]
    LastManager(u64),
    /// The node is not a member.
    #[error("node {0} is not a member of the raft cluster")]
    NotMember(u64),
    /// A voter must be demoted before it is removed.
    #[error("node {0} is a manager (voter); demote it before removing it")]
    StillVoter(u64),
    /// No other voter is reachable and caught up with the log, so leadership cannot be handed
    /// over.
    #[error("no other manager is reachable and caught up to take over leadership from manager {0}; bring the other managers back first")]
    NoSuccessor(u64),
    /// Leadership was not handed over in time (the successor's election did not win); this node
    /// may still lead.
    #[error("leadership was not handed over within {timeout_ms} ms; retry, or check that the other managers are online")]
    TransferTimeout {
        /// How long we tried.
        timeout_ms: u64,
    },
    /// No quorum answered in time.
    #[error("the membership change did not commit within {timeout_ms} ms; check that a quorum of managers is online")]
    Timeout {
        /// How long we waited.
        timeout_ms: u64,
    },
    /// openraft refused the change (e.g. another change is in progress).
    #[error("raft refused the membership change: {0}")]
    Raft(String),
}

/// Why an autolock or unlock-key change failed. The previous keys stay in force.
#[derive(Debug, Error)]
pub enum KeyChangeError {
    /// swarm-secrets refused the transition.
    #[error(transparent)]
    Keys(#[from] swarm_secrets::Error),
    /// The new key file could not be written.
    #[error(transparent)]
    Storage(#[from] StorageFault),
    /// The blocking task that stretches the key and writes the key file did not finish (it panicked
    /// or the runtime is shutting down); the key file is unchanged or fully replaced, never partial.
    #[error("the key change was interrupted: {0}")]
    Interrupted(String),
}

/// Why a wait on a node's status ([`crate::RaftNode::wait_until`]) or an election trigger ended
/// without its result.
#[derive(Debug, Error)]
pub enum WaitError {
    /// The condition did not hold within the time given.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// The condition waited for.
        what: String,
        /// How long the wait lasted.
        after: std::time::Duration,
    },
    /// Raft stopped (shut down, or a fatal storage fault) before the condition held.
    #[error("raft stopped while waiting for {what}")]
    Stopped {
        /// The condition waited for.
        what: String,
    },
}
