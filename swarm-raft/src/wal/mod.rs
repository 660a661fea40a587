//! The segmented, sealed, crash-safe write-ahead log that holds raft entries.
//!
//! * Files: `<dir>/<first index, 20 digits>.wal`, each a header and frames (see [`frame`]). The last
//!   segment is the active one; a new one starts when it exceeds [`WalOptions::segment_bytes`] or
//!   when an append does not follow the last entry (after a purge past the end).
//! * Append: entries are encoded (bincode), sealed by swarm-secrets with
//!   `RecordPlace::LogEntry { index, term }`, framed, and written with one positional write; the
//!   entries are readable at once. Durability is reported later by the flusher thread (group commit:
//!   appends queued during an fsync share the next one).
//! * Preallocation (segment format 5): before an append that would pass the end of the active
//!   segment's file, the file is extended with written zeros to the next multiple of
//!   [`WalOptions::prealloc_bytes`] (not synced there: the next group commit's fsync makes the new
//!   length durable once, and later commits overwrite allocated blocks, which on ext4 needs no
//!   journal commit). A full segment is trimmed to its records before the next one starts.
//! * Open: every segment is scanned and checksummed. A torn tail of the *last* segment (see
//!   [`frame`] for what a torn write may leave, with and without preallocated space) is truncated
//!   at the last good record and reported in [`OpenReport`]; zeros after the records are
//!   preallocated space, kept; a damaged record that cannot be a torn write, a missing segment or
//!   entries out of order refuse the open with [`StorageFault::Corrupt`] naming the file and
//!   offset.
//! * Cache: the newest entries appended are kept decoded (`cache`, bounded by bytes); reads of
//!   a range they cover (a leader replicating what it just wrote) are answered from it.
//! * Committed index: `committed` ([`committed`]) holds the highest committed log id, written by
//!   a thread of its own once the flusher made the entries it covers durable (never on the
//!   append's fsync path); the caller refuses to start when the log ends before it.
//! * Disk faults (full disk, quota, I/O error): a failed write is rewound and reported to the
//!   caller, which retries (see [`crate::log_store`]); a failed fsync is retried by the flusher,
//!   rewriting every pending write first. [`Wal::fault`] names the error meanwhile.
//! * Read: records are checksummed again and opened; a record that does not authenticate is a
//!   [`StorageFault::Tampered`] with its file and offset.
//! * Truncate removes a conflicting suffix; purge forgets a prefix (whole segments are deleted; the
//!   purge point itself is persisted by the caller in `raft-state` first).

mod cache;
pub mod committed;
mod faults;
mod flush;
pub mod frame;
mod open;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::CommittedLeaderId;
use rand::rngs::StdRng;
use swarm_secrets::RecordPlace;

pub use faults::DiskFaults;
pub(crate) use flush::Done;
pub(crate) use flush::{disk_fault_message as flush_message, is_disk_fault};
use flush::{disk_fault_message, Flusher, SegFile, Written};
use frame::{decode_frame, encode_frame, FrameResult, SegmentHeader, HEADER_LEN};

use crate::codec;
use crate::disk::{Disk, OpenMode};
use crate::error::StorageFault;
use crate::files::sync_dir_on;
use crate::keyring::Keyring;
use crate::types::{Entry, LogId};

/// Largest decoded entry accepted (bincode limit): a maximal proposal plus room.
pub const MAX_ENTRY_BYTES: u64 = frame::MAX_FRAME_BODY as u64;

/// Default of [`WalOptions::prealloc_bytes`].
pub const DEFAULT_PREALLOC_BYTES: u64 = 1024 * 1024;

/// Tunables of the log.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A new segment starts once the active one is larger than this (default 64 MiB).
    pub segment_bytes: u64,
    /// The active segment is extended with written zeros this far ahead of its write position
    /// (in chunks of this size, at most the segment size rounded up to 4 KiB), so a commit's
    /// fsync overwrites allocated blocks instead of growing the file (default 1 MiB; 0: never,
    /// the file grows with each append).
    pub prealloc_bytes: u64,
    /// The data directory already held raft state, so the `committed` file must exist: when it
    /// is missing the open is refused (and nothing is created) instead of starting from "nothing
    /// committed".
    pub expect_committed: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
            prealloc_bytes: DEFAULT_PREALLOC_BYTES,
            expect_committed: false,
        }
    }
}

/// What opening the log found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segments read.
    pub segments: usize,
    /// Entries indexed.
    pub entries: u64,
    /// A torn tail was cut: the file, the offset it was cut at, and why.
    pub truncated_tail: Option<(PathBuf, u64, String)>,
    /// The committed log id recorded in `committed`.
    pub committed: Option<LogId>,
    /// Whether the `committed` file existed (it is created, empty, when absent).
    pub committed_file_found: bool,
}

/// Counters of the write-ahead log since it was opened, for embedders and benchmarks: how well
/// group commit packs appends into fsyncs (`entries / fsyncs` entries per fsync).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalStats {
    /// fsyncs of log segments that made appended entries durable (the flusher's group commits).
    pub fsyncs: u64,
    /// Entries written to the log.
    pub entries: u64,
    /// Bytes of sealed, framed entries written to the log.
    pub bytes: u64,
    /// Store actions in the entries written. Concurrent proposals share entries (group commit on
    /// the leader merges them), so with single-action proposals `actions / fsyncs` is the number
    /// of proposals per fsync, while `entries / fsyncs` is about one on a leader under load.
    pub actions: u64,
}

/// An append that could not be written; nothing of it is in the log (a partial write was cut).
pub(crate) struct AppendFailed {
    pub(crate) fault: StorageFault,
    /// The entries, handed back for a retry.
    pub(crate) entries: Vec<Entry>,
    /// Whether the failure is a disk fault worth retrying (full disk, quota, I/O error).
    pub(crate) retry: bool,
    pub(crate) done: Done,
}

#[derive(Clone, Copy, Debug)]
struct Loc {
    offset: u64,
    len: u32,
    term: u64,
    node: u64,
}

struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    file: Arc<SegFile>,
    /// Where the frames end (the next append's offset).
    len: u64,
    /// The file's length: `len` plus preallocated zeros.
    alloc: u64,
    /// The segment's format ([`frame::SEGMENT_VERSION`] or 4, which is never preallocated).
    version: u32,
    /// A preallocation failed (a full disk): this segment grows with its appends from then on.
    prealloc_failed: bool,
    locs: Vec<Loc>,
}

impl Segment {
    fn first(&self) -> u64 {
        self.header.first_index
    }
    /// The index the next entry appended here would have.
    fn next_index(&self) -> u64 {
        self.header.first_index + self.locs.len() as u64
    }
    fn last_log_id(&self) -> Option<LogId> {
        let loc = self.locs.last()?;
        Some(log_id(loc.term, loc.node, self.next_index() - 1))
    }
}

struct State {
    segments: Vec<Segment>,
    last_purged: Option<LogId>,
    /// The newest entries, decoded (see [`cache`]); changed with the log, under this lock.
    cache: cache::EntryCache,
}

impl State {
    fn last_log_id(&self) -> Option<LogId> {
        let last = self.segments.iter().rev().find_map(Segment::last_log_id);
        match (last, self.last_purged) {
            (Some(l), Some(p)) if l.index <= p.index => Some(p),
            (Some(l), _) => Some(l),
            (None, p) => p,
        }
    }

    fn first_readable(&self) -> u64 {
        self.last_purged.map_or(0, |p| p.index + 1)
    }

    fn locate(&self, index: u64) -> Option<(usize, usize)> {
        if index < self.first_readable() {
            return None;
        }
        let s = self
            .segments
            .partition_point(|s| s.first() <= index)
            .checked_sub(1)?;
        let i = (index - self.segments[s].first()) as usize;
        (i < self.segments[s].locs.len()).then_some((s, i))
    }
}

/// The write-ahead log. Writes are serialized internally; reads may run concurrently.
pub struct Wal {
    dir: PathBuf,
    /// Where the files are (the real filesystem in production).
    disk: Arc<dyn Disk>,
    keys: Arc<Keyring>,
    opts: WalOptions,
    state: RwLock<State>,
    writer: Arc<Mutex<StdRng>>,
    flusher: Flusher,
    /// Entries written so far (see [`WalStats::entries`]).
    entries_written: std::sync::atomic::AtomicU64,
    /// Bytes written so far (see [`WalStats::bytes`]).
    bytes_written: std::sync::atomic::AtomicU64,
    /// Actions written so far (see [`WalStats::actions`]).
    actions_written: std::sync::atomic::AtomicU64,
    /// Set at shutdown: appends stop waiting out a disk fault.
    closing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

impl Wal {
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The last purged log id and the last log id (the purge point if no entry is left).
    pub fn log_state(&self) -> (Option<LogId>, Option<LogId>) {
        let st = self.read_state();
        (st.last_purged, st.last_log_id())
    }

    /// The log id at `index`, if present (no decryption).
    pub fn log_id_at(&self, index: u64) -> Option<LogId> {
        let st = self.read_state();
        let (s, i) = st.locate(index)?;
        let loc = st.segments[s].locs[i];
        Some(log_id(loc.term, loc.node, index))
    }

    /// Number of fsyncs done by the flusher so far.
    pub fn fsyncs(&self) -> u64 {
        self.flusher.fsyncs()
    }

    /// Counters since the log was opened: fsyncs, entries and bytes written.
    pub fn stats(&self) -> WalStats {
        use std::sync::atomic::Ordering::Relaxed;
        WalStats {
            fsyncs: self.flusher.fsyncs(),
            entries: self.entries_written.load(Relaxed),
            bytes: self.bytes_written.load(Relaxed),
            actions: self.actions_written.load(Relaxed),
        }
    }

    /// The highest log index known durable (fsynced) in this log since it was opened; `None`
    /// before the first fsync. Proposals are acknowledged only at or below it.
    pub fn durable_index(&self) -> Option<u64> {
        self.flusher.durable_index()
    }

    /// Records the committed log id (persisted once the entries up to it are durable).
    pub fn save_committed(&self, committed: Option<LogId>) {
        self.flusher.save_committed(committed);
        self.flusher.kick();
    }

    /// The committed log id last saved (or read at open).
    pub fn committed(&self) -> Option<LogId> {
        self.flusher.committed()
    }

    /// Watches the disk fault that keeps the log from writing: `Some(message naming the error and
    /// the path)` while it lasts, `None` once writes succeed again.
    pub fn fault(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.flusher.fault()
    }

    /// Makes appends that wait out a disk fault give up (the node is shutting down).
    pub fn stop_retrying(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn retrying_stopped(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set_fault(&self, fault: Option<String>) {
        self.flusher.set_fault(fault);
    }

    /// The fault-injection hook of the log's file layer (tests).
    #[cfg(feature = "testing")]
    pub fn disk_faults(&self) -> &Arc<DiskFaults> {
        self.flusher.faults()
    }

    /// Seals and writes `entries` (consecutive indexes). They are readable when this returns;
    /// `done` completes once they are durable. On failure nothing was added to the log and `done`
    /// is handed back, so the caller may retry.
    pub(crate) fn append(&self, entries: Vec<Entry>, done: Done) -> Result<(), Box<AppendFailed>> {
        // Entries at or below the purge point are already covered by a snapshot: nothing to keep.
        let skip = match self.read_state().last_purged {
            Some(p) => entries.partition_point(|e| e.log_id.index <= p.index),
            None => 0,
        };
        let mut owned = entries;
        owned.drain(..skip);
        let entries = &owned[..];
        let fail = |fault: StorageFault, done: Done| {
            Box::new(AppendFailed {
                retry: matches!(&fault, StorageFault::Io { source, .. } if is_disk_fault(source)),
                fault,
                entries: owned.clone(),
                done,
            })
        };
        let Some(first) = entries.first().map(|e| e.log_id.index) else {
            self.flusher.push(None, None, None, done);
            self.flusher.kick();
            return Ok(());
        };
        let mut rng = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = Vec::with_capacity(entries.len() * 256);
        let mut locs = Vec::with_capacity(entries.len());
        for (k, e) in entries.iter().enumerate() {
            let id = e.log_id;
            if id.index != first + k as u64 {
                let msg = format!(
                    "append of non-consecutive entries ({} after {})",
                    id.index,
                    first + k as u64 - 1
                );
                return Err(fail(StorageFault::Invariant(msg), done));
            }
            let plain = zeroizing(codec::encode(e));
            let place = RecordPlace::LogEntry {
                index: id.index,
                term: id.leader_id.term,
            };
            let sealed = match self.keys.seal(&place, plain.expose(), &mut rng) {
                Ok(s) => s,
                Err(source) => {
                    let file = self.dir.clone();
                    let fault = StorageFault::Tampered {
                        file,
                        offset: 0,
                        source,
                    };
                    return Err(fail(fault, done));
                }
            };
            let start = buf.len();
            encode_frame(
                &mut buf,
                id.index,
                id.leader_id.term,
                id.leader_id.node_id,
                &sealed,
            );
            locs.push(Loc {
                offset: start as u64,
                len: (buf.len() - start) as u32,
                term: id.leader_id.term,
                node: id.leader_id.node_id,
            });
        }
        let mut st = self.write_state();
        let last = st.last_log_id();
        if let Some(last) = last {
            if first <= last.index {
                let msg = format!(
                    "append at index {first} would overwrite the log (last index {}); truncate first",
                    last.index
                );
                return Err(fail(StorageFault::Invariant(msg), done));
            }
        }
        let need_new = match st.segments.last() {
            None => true,
            Some(s) => s.next_index() != first || s.len >= self.opts.segment_bytes,
        };
        if need_new {
            if let Some(s) = st.segments.last_mut() {
                if s.alloc > s.len {
                    // The old segment keeps no preallocated space (synced just below).
                    if let Err(e) = s.file.file.set_len(s.len) {
                        tracing::warn!(file = %s.path.display(), error = %e, "could not trim the preallocated space of a full raft log segment");
                    } else {
                        s.alloc = s.len;
                    }
                }
                let synced = self
                    .flusher
                    .faults()
                    .check_fsync()
                    .and_then(|()| s.file.file.sync_data());
                if let Err(e) = synced {
                    // Pending writes to this segment may be lost without another error: the
                    // flusher rewrites them before it trusts an fsync again.
                    self.flusher.taint(disk_fault_message("fsync", &s.path, &e));
                    return Err(fail(StorageFault::io("fsync", &s.path, e), done));
                }
            }
            let seg = match self.create_segment(first, last.map(|l| l.index)) {
                Ok(seg) => seg,
                Err(fault) => return Err(fail(fault, done)),
            };
            st.segments.push(seg);
        }
        let Some(seg) = st.segments.last_mut() else {
            return Err(fail(StorageFault::Closed, done));
        };
        let end = seg.len + buf.len() as u64;
        if end > seg.alloc && seg.version == frame::SEGMENT_VERSION {
            self.preallocate(seg, end);
        }
        let written = self
            .flusher
            .faults()
            .check_write()
            .and_then(|()| seg.file.file.write_all_at(&buf, seg.len));
        if let Err(e) = written {
            // Cut whatever part of the batch reached the file, so a retry writes at the same place
            // and a restart never finds half a frame before later ones (nor stale bytes after).
            let _ = seg.file.file.set_len(seg.len);
            seg.alloc = seg.len;
            return Err(fail(StorageFault::io("write", &seg.path, e), done));
        }
        seg.alloc = seg.alloc.max(end);
        let base = seg.len;
        let sizes: Vec<u32> = locs.iter().map(|l| l.len).collect();
        seg.locs.extend(locs.into_iter().map(|l| Loc {
            offset: l.offset + base,
            ..l
        }));
        seg.len += buf.len() as u64;
        let file = seg.file.clone();
        {
            use std::sync::atomic::Ordering::Relaxed;
            self.entries_written
                .fetch_add(entries.len() as u64, Relaxed);
            self.bytes_written.fetch_add(buf.len() as u64, Relaxed);
            let actions = entries.iter().map(|e| match &e.payload {
                openraft::EntryPayload::Normal(p) => p.actions.len() as u64,
                _ => 0,
            });
            self.actions_written.fetch_add(actions.sum(), Relaxed);
        }
        let last = entries.last().map(|e| e.log_id.index);
        st.cache.appended(owned.into_iter().zip(sizes));
        drop(st);
        // Queued before the writer lock is released: the flusher's fault recovery, which holds
        // that lock, then sees every write that reached the file.
        let written = Written {
            offset: base,
            bytes: Arc::new(buf),
        };
        self.flusher.push(Some(file), Some(written), last, done);
        // Inline mode: made durable here, under the writer lock (no-op with threads).
        self.flusher.drain_held();
        drop(rng);
        Ok(())
    }

    /// The message proposals answer for a failed append (names the disk error and the path).
    pub(crate) fn describe_fault(fault: &StorageFault) -> String {
        match fault {
            StorageFault::Io { op, path, source } => disk_fault_message(op, path, source),
            other => other.to_string(),
        }
    }

    fn create_segment(&self, first: u64, prev: Option<u64>) -> Result<Segment, StorageFault> {
        let path = segment_path(&self.dir, first);
        let header = SegmentHeader {
            first_index: first,
            prev_index: prev,
        };
        let file = self
            .disk
            .open(&path, OpenMode::CreateTruncate { read: true })
            .map_err(|e| StorageFault::io("create", &path, e))?;
        let faults = self.flusher.faults();
        faults
            .check_write()
            .and_then(|()| file.write_all_at(&header.encode(), 0))
            .map_err(|e| StorageFault::io("write", &path, e))?;
        faults
            .check_fsync()
            .and_then(|()| file.sync_all())
            .map_err(|e| StorageFault::io("fsync", &path, e))?;
        sync_dir_on(&*self.disk, &self.dir)?;
        Ok(Segment {
            path: path.clone(),
            header,
            file: Arc::new(SegFile { file, path }),
            len: HEADER_LEN as u64,
            alloc: HEADER_LEN as u64,
            version: frame::SEGMENT_VERSION,
            prealloc_failed: false,
            locs: Vec::new(),
        })
    }

    /// Extends `seg` with written zeros to cover `end`, rounded up to the preallocation chunk. Not
    /// synced here: the next group commit's fsync makes the new length durable, and later ones
    /// then overwrite allocated blocks. A failure (a full disk) only means no preallocation: what
    /// it wrote is given back (so it never takes the last free space from the vote or a
    /// snapshot), the append then grows the file as format 4 did, and this segment is not
    /// preallocated again.
    fn preallocate(&self, seg: &mut Segment, end: u64) {
        if seg.prealloc_failed {
            return;
        }
        let chunk = self
            .opts
            .prealloc_bytes
            .min(self.opts.segment_bytes.div_ceil(4096).max(1) * 4096);
        if chunk == 0 {
            return;
        }
        let target = end.div_ceil(chunk) * chunk;
        let zeros = vec![0u8; 64 * 1024];
        let mut at = seg.alloc.max(seg.len);
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            // An injected full disk fails this too, without using up a failure meant for appends.
            let written = if self.flusher.faults().writes_failing() {
                Err(std::io::Error::from_raw_os_error(28))
            } else {
                seg.file.file.write_all_at(&zeros[..n], at)
            };
            if let Err(e) = written {
                tracing::debug!(file = %seg.path.display(), error = %e, "could not preallocate raft log space; the segment grows with each append instead");
                seg.prealloc_failed = true;
                let keep = seg.alloc.max(seg.len);
                if seg.file.file.set_len(keep).is_err() {
                    // Zeros (or part of them) stay after the records: harmless, only not given back.
                    seg.alloc = at;
                }
                return;
            }
            at += n as u64;
        }
        seg.alloc = at;
    }

    /// Appends `entries` and signals `durable` once they are fsynced (tests, benchmarks, tools;
    /// openraft's path is [`crate::log_store::LogStore`]).
    pub fn append_for_test(
        &self,
        entries: Vec<Entry>,
        durable: tokio::sync::oneshot::Sender<std::io::Result<()>>,
    ) -> Result<(), StorageFault> {
        self.append(entries, Done::Barrier(durable))
            .map_err(|f| f.fault)
    }

    /// A receiver that completes once everything written before this call is durable.
    pub(crate) fn barrier(&self) -> tokio::sync::oneshot::Receiver<std::io::Result<()>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let file = self.read_state().segments.last().map(|s| s.file.clone());
        self.flusher.push(file, None, None, Done::Barrier(tx));
        self.flusher.kick();
        rx
    }

    /// Removes every entry at or after `index` (a conflicting suffix), durably. Call only after a
    /// `Wal::barrier` so no pending append completes for a removed entry.
    pub fn truncate(&self, index: u64) -> Result<(), StorageFault> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.flusher.truncated(index);
        let mut st = self.write_state();
        st.cache.truncated(index);
        let mut removed_files = false;
        while let Some(seg) = st.segments.last() {
            if seg.first() < index {
                break;
            }
            let path = seg.path.clone();
            self.disk
                .remove_file(&path)
                .map_err(|e| StorageFault::io("remove", &path, e))?;
            st.segments.pop();
            removed_files = true;
        }
        if let Some(seg) = st.segments.last_mut() {
            let keep = (index - seg.first()) as usize;
            if keep < seg.locs.len() {
                let new_len = seg.locs[keep].offset;
                seg.locs.truncate(keep);
                seg.file
                    .file
                    .set_len(new_len)
                    .map_err(|e| StorageFault::io("truncate", &seg.path, e))?;
                seg.alloc = new_len;
                seg.file
                    .file
                    .sync_all()
                    .map_err(|e| StorageFault::io("fsync", &seg.path, e))?;
                seg.len = new_len;
            }
        }
        if removed_files {
            sync_dir_on(&*self.disk, &self.dir)?;
        }
        Ok(())
    }

    /// Forgets every entry up to and including `upto` (already persisted as the purge point by the
    /// caller); deletes segments holding nothing newer.
    pub fn purge(&self, upto: LogId) -> Result<(), StorageFault> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.drop_purged(upto)
    }

    fn drop_purged(&self, upto: LogId) -> Result<(), StorageFault> {
        let mut st = self.write_state();
        if !matches!(st.last_purged, Some(p) if p.index >= upto.index) {
            st.last_purged = Some(upto);
        }
        st.cache.purged(upto.index);
        let mut removed = false;
        loop {
            let n = st.segments.len();
            let Some(seg) = st.segments.first() else {
                break;
            };
            let fully_purged = seg.next_index() <= upto.index + 1;
            let is_last = n == 1;
            if !fully_purged || (is_last && seg.locs.is_empty() && seg.first() == upto.index + 1) {
                break;
            }
            let path = seg.path.clone();
            self.disk
                .remove_file(&path)
                .map_err(|e| StorageFault::io("remove", &path, e))?;
            st.segments.remove(0);
            removed = true;
        }
        if removed {
            sync_dir_on(&*self.disk, &self.dir)?;
        }
        Ok(())
    }

    /// Reads the entries in `range` that are present, in index order (absent ones are skipped).
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<Entry>, StorageFault> {
        let st = self.read_state();
        let floor = range.start.max(st.first_readable());
        let end = st.last_log_id().map_or(0, |l| l.index + 1);
        if let Some(hit) = st.cache.get(floor..range.end.min(end).max(floor)) {
            return Ok(hit);
        }
        let mut out = Vec::new();
        for seg in &st.segments {
            let lo = floor.max(seg.first());
            let hi = range.end.min(seg.next_index());
            if lo >= hi {
                continue;
            }
            let (i, n) = ((lo - seg.first()) as usize, (hi - lo) as usize);
            let (a, b) = (seg.locs[i], seg.locs[i + n - 1]);
            let span = (b.offset + u64::from(b.len) - a.offset) as usize;
            let mut bytes = vec![0u8; span];
            seg.file
                .file
                .read_exact_at(&mut bytes, a.offset)
                .map_err(|e| StorageFault::io("read", &seg.path, e))?;
            for (k, loc) in seg.locs[i..i + n].iter().enumerate() {
                let at = (loc.offset - a.offset) as usize;
                out.push(self.decode_at(
                    seg,
                    &bytes[at..at + loc.len as usize],
                    loc.offset,
                    lo + k as u64,
                )?);
            }
        }
        Ok(out)
    }

    fn decode_at(
        &self,
        seg: &Segment,
        bytes: &[u8],
        offset: u64,
        index: u64,
    ) -> Result<Entry, StorageFault> {
        let corrupt = |reason: String| StorageFault::corrupt(&seg.path, offset, reason);
        let f = match decode_frame(bytes) {
            FrameResult::Frame(f, _) => f,
            other => {
                return Err(corrupt(format!(
                    "record no longer valid on read: {other:?}"
                )))
            }
        };
        if f.index != index {
            return Err(corrupt(format!(
                "record for index {} where {index} was expected",
                f.index
            )));
        }
        let place = RecordPlace::LogEntry {
            index,
            term: f.term,
        };
        let plain = self
            .keys
            .open(&place, f.sealed)
            .map_err(|source| StorageFault::Tampered {
                file: seg.path.clone(),
                offset,
                source,
            })?;
        let entry: Entry = codec::decode(plain.expose(), MAX_ENTRY_BYTES)
            .map_err(|e| corrupt(format!("authentic record does not decode: {e}")))?;
        if entry.log_id != log_id(f.term, f.node, index) {
            return Err(corrupt("record's log id differs from its header".into()));
        }
        Ok(entry)
    }

    /// Where to end a read from `start` (before `end`) so that the records read total at most
    /// `max_bytes`: the end of the longest such run, but at least one entry. When `start` is not
    /// in the log, `end` unchanged.
    pub fn limit_end(&self, start: u64, end: u64, max_bytes: u64) -> u64 {
        let st = self.read_state();
        let (mut at, mut total) = (start, 0u64);
        while at < end {
            let Some((s, i)) = st.locate(at) else { break };
            let len = u64::from(st.segments[s].locs[i].len);
            if at > start && total + len > max_bytes {
                break;
            }
            total += len;
            at += 1;
        }
        if at == start {
            end
        } else {
            at
        }
    }

    /// Reads and authenticates every entry from `start` on (used at startup, so that a tampered
    /// record refuses the start instead of stopping the node later). Returns how many were checked.
    pub fn verify_from(&self, start: u64) -> Result<u64, StorageFault> {
        let (_, last) = self.log_state();
        let Some(last) = last else { return Ok(0) };
        let mut n = 0;
        let mut at = start;
        while at <= last.index {
            let end = (at + 1024).min(last.index + 1);
            n += self.entries(at..end)?.len() as u64;
            at = end;
        }
        Ok(n)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The disk the log is on.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }
}

fn zeroizing(v: Vec<u8>) -> swarm_secrets::SecretBytes {
    swarm_secrets::SecretBytes::new(v)
}
