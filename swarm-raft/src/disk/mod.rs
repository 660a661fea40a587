//! The storage seam: every file operation swarm-raft's storage does (the WAL's segments and
//! `committed` file, `raft-state`, the key file, the snapshot) goes through a [`Disk`].
//!
//! * [`OsDisk`] is the production implementation: the real filesystem, with the same calls,
//!   modes (files 0600, directories 0700) and errors as before the seam existed. It is the
//!   default of [`crate::RaftConfig::disk`].
//! * `SimDisk` (feature `sim`, implied by `testing`) is an in-memory disk with a crash model for
//!   deterministic simulation and crash tests: unsynced writes and directory entries that were
//!   not fsynced can be lost, the last unsynced write of a file torn, a byte quota runs out with
//!   `ENOSPC`, fsyncs can be slowed (through a caller's hook) or failed.
//! * [`InlineDisk`] wraps another disk (the real filesystem, in swarm-node's cluster
//!   simulation) to run the storage without OS threads ([`Disk::inline`]).
//!
//! # Contract
//! A [`Disk`] behaves like a POSIX filesystem as far as swarm-raft relies on one:
//! * [`DiskFile::write_all_at`] makes bytes readable at once, durable only after
//!   [`DiskFile::sync_data`] or [`DiskFile::sync_all`] of that file returns `Ok`; a failed fsync
//!   may have lost any write since the last successful one (the caller rewrites them).
//! * Creating, renaming and removing a file changes the directory at once, durably only after
//!   [`Disk::sync_dir`] of the directory holding it.
//! * [`Disk::rename`] replaces the target atomically: after a crash the name holds the old or the
//!   new file, never a mix.
//! * Errors are `io::Error`s as the OS gives them (a full disk is raw OS error 28, `ENOSPC`); the
//!   callers name the path and the operation in a [`crate::StorageFault`].
//!
//! What it does not do: buffering, caching or retries (the WAL does those above it), and
//! anything outside swarm-raft's data directory (swarm-node's own files are not on the seam).

mod inline;
mod os;
#[cfg(feature = "sim")]
pub mod sim;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use inline::InlineDisk;
pub use os::OsDisk;
#[cfg(feature = "sim")]
pub use sim::{CrashOptions, SimDisk};

/// How [`Disk::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading and writing (`NotFound` if absent).
    ReadWrite,
    /// An existing file, for writing only (`NotFound` if absent).
    Write,
    /// Creates the file (mode 0600) or truncates an existing one; `read` also opens it for
    /// reading.
    CreateTruncate {
        /// Open for reading too.
        read: bool,
    },
    /// Creates a new file (mode 0600) for writing; `AlreadyExists` if the name is taken.
    CreateNew,
}

/// An open file of a [`Disk`]. All offsets are absolute; there is no cursor.
pub trait DiskFile: Send + Sync + Debug {
    /// Writes all of `buf` at `offset`, extending the file if needed. On error, a prefix of
    /// `buf` may have been written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset` (`UnexpectedEof` if the file ends first).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
}

/// The file operations of swarm-raft's storage (see the module docs for the contract).
/// Object-safe: the storage holds an `Arc<dyn Disk>`.
pub trait Disk: Send + Sync + Debug {
    /// Opens or creates a file (see [`OpenMode`]; created files are 0600).
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// The paths of the entries of a directory (files and directories), in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Creates a directory and its missing parents, new ones with `mode`; an existing one is
    /// fine.
    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()>;
    /// Makes a directory's entries durable. `Err((step, error))` names the step that failed:
    /// `"open directory"` or `"fsync directory"`.
    fn sync_dir(&self, dir: &Path) -> Result<(), (&'static str, io::Error)>;
    /// The permission bits (`mode & 0o7777`) of a file or directory (`NotFound` if absent).
    fn mode(&self, path: &Path) -> io::Result<u32>;
    /// Sets the permission bits of a file or directory.
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Whether the storage must do its work without OS threads or blocking pools: the WAL's
    /// flusher and committed-index writer then run inline on the calling task, and snapshot and
    /// key-file work runs on the caller instead of `spawn_blocking`, so one simulation seed gives
    /// one schedule. `false` (threads) for the real filesystem.
    fn inline(&self) -> bool {
        false
    }
}

/// The production disk, shared.
pub fn os() -> Arc<dyn Disk> {
    Arc::new(OsDisk)
}

/// Whether `path` exists on `disk` (`false` on any error, like `Path::exists`).
pub fn exists(disk: &dyn Disk, path: &Path) -> bool {
    disk.mode(path).is_ok()
}
