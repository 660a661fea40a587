//! openraft's [`RaftLogStorage`] over the [`Wal`], plus the vote and purge point in `raft-state`.
//!
//! # To ensure correctness (openraft's list, and how it holds here)
//! - No hole is left: appends are consecutive or start a new segment; truncate removes a suffix;
//!   purge a prefix.
//! - Writes are serialized: every write goes through the WAL's writer lock; `save_vote` and
//!   `truncate` first wait for every earlier append to be durable (a flush barrier), so no write
//!   becomes durable before one issued earlier.
//! - Appended entries are readable when `append` returns; the callback fires once they are fsynced.
//! - `save_vote` returns only once the vote is durable (write, fsync, atomic rename, fsync dir).
//! - `save_committed` records the committed log id; the WAL persists it once every entry up to it
//!   is durable, and [`crate::RaftNode::start`] refuses a log that ends before it.
//!
//! # Disk faults
//! openraft stops its core for good on any storage error. A full disk (or a quota or I/O error) is
//! not a reason to stop: `append` rewinds the failed write and retries it with backoff (1 s at
//! most), never returning the error, and the flusher does the same for a failed fsync; `save_vote`
//! retries too, and a purge point that cannot be written leaves the log whole. The WAL's
//! [`Wal::fault`] names the error meanwhile, so proposals answer it instead of waiting; once the
//! disk has room the pending entries are written and everything carries on. While an append
//! waits, openraft's core waits with it (no heartbeats): in a cluster the other managers elect a
//! leader whose disk works, and this one follows again once its write succeeds.

use std::fmt::Debug;
use std::ops::{Bound, Range, RangeBounds};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageIOError};

use crate::error::StorageFault;
use crate::files::RaftStateFile;
use crate::keyring::Keyring;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::wal::{is_disk_fault, Done, Wal};

/// Maps a fatal storage fault into openraft's error, keeping the message (file, offset, advice).
pub(crate) fn fault_to_storage(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    fault: StorageFault,
) -> StorageError {
    tracing::error!(error = %fault, "raft storage fault");
    StorageIOError::new(subject, verb, openraft::AnyError::error(fault.to_string())).into()
}

/// Largest total size of the (sealed) records replicated in one append message, so that the
/// message stays under the transports' 4 MiB limit with room for framing; a single larger entry
/// (at most a maximal proposal) is still sent alone.
pub const MAX_APPEND_BYTES: u64 = 3 * 1024 * 1024;

struct Inner {
    wal: Wal,
    dir: PathBuf,
    state: Mutex<RaftStateFile>,
    keys: Arc<Keyring>,
}

/// The log storage handed to openraft (and its log reader). Cloning shares it.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Wraps an opened WAL; `dir` holds `raft-state`, whose content is `state`.
    pub fn new(wal: Wal, dir: PathBuf, state: RaftStateFile, keys: Arc<Keyring>) -> LogStore {
        LogStore {
            inner: Arc::new(Inner {
                wal,
                dir,
                state: Mutex::new(state),
                keys,
            }),
        }
    }

    /// The underlying write-ahead log.
    pub fn wal(&self) -> &Wal {
        &self.inner.wal
    }

    fn store_state(&self, f: impl FnOnce(&mut RaftStateFile)) -> Result<(), StorageFault> {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = st.clone();
        f(&mut next);
        next.store_on(&**self.inner.wal.disk(), &self.inner.dir)?;
        *st = next;
        Ok(())
    }

    async fn barrier(
        &self,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
    ) -> Result<(), StorageError> {
        match self.inner.wal.barrier().await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageError::from_io_error(subject, verb, e)),
            Err(_) => Err(fault_to_storage(subject, verb, StorageFault::Closed)),
        }
    }
}

fn to_range<RB: RangeBounds<u64>>(r: &RB) -> Range<u64> {
    let start = match r.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match r.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.inner
            .wal
            .entries(to_range(&range))
            .map_err(|f| fault_to_storage(ErrorSubject::Logs, ErrorVerb::Read, f))
    }

    /// What replication sends in one append message: at most `max_payload_entries` entries (the
    /// range openraft asks for) and at most [`MAX_APPEND_BYTES`] of records, at least one entry.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let end = self.inner.wal.limit_end(start, end, MAX_APPEND_BYTES);
        self.try_get_log_entries(start..end).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let (last_purged_log_id, last_log_id) = self.inner.wal.log_state();
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.barrier(ErrorSubject::Vote, ErrorVerb::Write).await?;
        let v = *vote;
        // Like appends, a vote waits out a full disk rather than stopping openraft's core.
        let mut backoff = std::time::Duration::from_millis(10);
        loop {
            match self.store_state(|s| s.vote = Some(v)) {
                Ok(()) => return Ok(()),
                Err(StorageFault::Io { source, path, op })
                    if is_disk_fault(&source) && !self.inner.wal.retrying_stopped() =>
                {
                    let msg = crate::wal::flush_message(op, &path, &source);
                    self.inner.wal.set_fault(Some(msg));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                }
                Err(f) => return Err(fault_to_storage(ErrorSubject::Vote, ErrorVerb::Write, f)),
            }
        }
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self
            .inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        let mut done = Done::Raft(callback);
        let mut backoff = std::time::Duration::from_millis(10);
        loop {
            match self.inner.wal.append(entries, done) {
                Ok(()) => {
                    self.inner.wal.set_fault(None);
                    return Ok(());
                }
                Err(f) if f.retry && !self.inner.wal.retrying_stopped() => {
                    self.inner
                        .wal
                        .set_fault(Some(Wal::describe_fault(&f.fault)));
                    done = f.done;
                    entries = f.entries;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                }
                Err(f) => {
                    return Err(fault_to_storage(
                        ErrorSubject::Logs,
                        ErrorVerb::Write,
                        f.fault,
                    ))
                }
            }
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.inner.wal.save_committed(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.wal.committed())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.barrier(ErrorSubject::Logs, ErrorVerb::Delete).await?;
        self.inner
            .wal
            .truncate(log_id.index)
            .map_err(|f| fault_to_storage(ErrorSubject::Logs, ErrorVerb::Delete, f))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let err = |f| fault_to_storage(ErrorSubject::Logs, ErrorVerb::Delete, f);
        match self.store_state(|s| s.last_purged = Some(log_id)) {
            Ok(()) => {}
            // Purging only frees space: with a full disk keep every entry (openraft reads none at
            // or below the purge point again, and asks to purge further next time).
            Err(StorageFault::Io { source, path, .. }) if is_disk_fault(&source) => {
                tracing::warn!(file = %path.display(), error = %source, "could not record the purge point; the log is kept whole until the next purge");
                return Ok(());
            }
            Err(f) => return Err(err(f)),
        }
        self.inner.wal.purge(log_id).map_err(err)?;
        // Nothing at or below the purge point is read again: an old DEK may now be retired.
        if let Err(e) = self.inner.keys.handle_snapshot(log_id.index) {
            tracing::warn!(error = %e, "could not retire the previous DEK after purge; will retry at the next purge");
        }
        Ok(())
    }
}
