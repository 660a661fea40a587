//! Group commit: one background thread fsyncs the segment files that appends wrote to and then
//! completes every waiting append in order. Appends that arrive while an fsync runs are batched
//! into the next one, so concurrent appends share one fsync.
//!
//! # Disk faults
//! A failed fsync is never taken for durability: after one, the kernel may have dropped the dirty
//! pages and will not report it again. So the flusher keeps the bytes of every write until it is
//! durable, and on a failed fsync it takes the WAL's writer lock (no append runs, and every
//! completed write has been queued), rewrites every pending write at its offset, and fsyncs again,
//! with backoff, until it succeeds. Meanwhile the waiting appends stay pending (openraft is not
//! told anything false and its core keeps running) and [`Flusher::fault`] names the disk error so
//! proposals can answer it.
//!
//! # Committed index
//! After a batch is durable the flusher hands the committed index that was saved before the batch
//! was taken (so every entry up to it is durable) to a second thread, which persists it (see
//! [`super::committed`]) at most every 50 ms and always before the log closes. That write and its
//! fsync never delay an append's fsync. When nothing is queued, every appended entry is durable, so
//! an idle flusher hands the latest saved index at once.
//!
//! # Inline mode
//! On a disk that asks for it ([`crate::disk::Disk::inline`], deterministic simulation) there
//! are no threads: see [`inline`].

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openraft::storage::LogFlushed;
use rand::rngs::StdRng;

use super::committed::CommittedFile;
use super::faults::DiskFaults;

mod inline;
use crate::types::{LogId, TypeConfig};

/// The committed index is persisted at most this often (plus at close), so its fsyncs stay few;
/// the value on disk lags by at most this much (plus one write).
const COMMITTED_INTERVAL: Duration = Duration::from_millis(50);

/// What to do once the data written before this item is durable.
pub(crate) enum Done {
    /// Tell openraft the append is on disk.
    Raft(LogFlushed<TypeConfig>),
    /// Wake a caller waiting for everything written so far to be durable.
    Barrier(tokio::sync::oneshot::Sender<io::Result<()>>),
}

/// An open segment file and its path (for error messages).
pub(crate) struct SegFile {
    pub(crate) file: Box<dyn crate::disk::DiskFile>,
    pub(crate) path: PathBuf,
}

/// Bytes written at `offset` of a segment and not yet known durable.
pub(crate) struct Written {
    pub(crate) offset: u64,
    pub(crate) bytes: Arc<Vec<u8>>,
}

struct Item {
    file: Option<Arc<SegFile>>,
    written: Option<Written>,
    /// The last log index the write holds, if any.
    last: Option<u64>,
    done: Done,
}

#[derive(Default)]
struct Queue {
    items: Vec<Item>,
    closed: bool,
    fsyncs: u64,
    committed: Option<LogId>,
    /// The highest log index known durable (lowered by a truncation).
    durable: Option<u64>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// An fsync failed outside the flusher (segment rotation): the next batch is rewritten before
    /// it is synced, since the kernel may have dropped pages and will not say so again.
    tainted: std::sync::atomic::AtomicBool,
    fault: tokio::sync::watch::Sender<Option<String>>,
    faults: Arc<DiskFaults>,
    /// Committed indexes whose entries are durable, for the committed-index thread.
    handoff: Handoff,
}

impl Shared {
    fn new(initial: Option<LogId>, faults: Arc<DiskFaults>) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                committed: initial,
                ..Queue::default()
            }),
            wake: Condvar::new(),
            tainted: std::sync::atomic::AtomicBool::new(false),
            fault: tokio::sync::watch::channel(None).0,
            faults,
            handoff: Handoff {
                state: Mutex::new(HandoffState {
                    durable: initial,
                    closed: false,
                }),
                wake: Condvar::new(),
            },
        }
    }
}

/// Hands durable committed indexes from the flusher to the thread that persists them.
#[derive(Default)]
struct Handoff {
    state: Mutex<HandoffState>,
    wake: Condvar,
}

#[derive(Default)]
struct HandoffState {
    /// The highest committed log id whose entries are all durable.
    durable: Option<LogId>,
    closed: bool,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HandoffState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hand(&self, c: Option<LogId>) {
        let mut st = self.lock();
        if c > st.durable {
            st.durable = c;
            drop(st);
            self.wake.notify_one();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }
}

/// Whether `e` is a disk fault the log waits out (full disk, quota, I/O error) rather than a
/// reason to stop.
pub(crate) fn is_disk_fault(e: &io::Error) -> bool {
    // ENOSPC, EDQUOT, EIO.
    matches!(e.raw_os_error(), Some(28) | Some(122) | Some(5))
}

/// The message proposals answer while the log cannot write: names the disk error and the path,
/// e.g. "no space left on device writing the raft log at /var/lib/swarm-node/raft/wal/...".
pub(crate) fn disk_fault_message(op: &str, path: &std::path::Path, e: &io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(28) => "no space left on device".to_string(),
        Some(122) => "disk quota exceeded".to_string(),
        Some(5) => "I/O error".to_string(),
        _ => e.to_string(),
    };
    let doing = match op {
        "write" => "writing",
        "fsync" => "syncing",
        "create" => "creating",
        other => other,
    };
    format!(
        "{what} {doing} the raft log at {}; writes resume by themselves once the disk recovers",
        path.display()
    )
}

/// Handle to the flusher thread. Dropping it completes what is queued and stops the thread.
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Persists the committed index (see the module docs).
    committed_thread: Option<JoinHandle<()>>,
    /// Inline mode (no threads; see [`inline`]): `Some`, and both threads are `None`.
    inline: Option<Arc<inline::Inline>>,
}

impl Flusher {
    /// Starts the flusher: with `inline`, without threads (see [`inline`]).
    pub(crate) fn start(
        writer: Arc<Mutex<StdRng>>,
        committed: CommittedFile,
        initial: Option<LogId>,
        faults: Arc<DiskFaults>,
        inline: bool,
    ) -> io::Result<Flusher> {
        if inline {
            let shared = Arc::new(Shared::new(initial, faults));
            let inline = inline::Inline::new(writer, committed, initial);
            return Ok(Flusher {
                shared,
                thread: None,
                committed_thread: None,
                inline: Some(Arc::new(inline)),
            });
        }
        Flusher::start_threads(writer, committed, initial, faults)
    }

    fn start_threads(
        writer: Arc<Mutex<StdRng>>,
        committed: CommittedFile,
        initial: Option<LogId>,
        faults: Arc<DiskFaults>,
    ) -> io::Result<Flusher> {
        let shared = Arc::new(Shared::new(initial, faults));
        let s = shared.clone();
        let committed_thread = std::thread::Builder::new()
            .name("swarm-wal-committed".into())
            .spawn(move || persist_committed(&s, &committed, initial))?;
        let s = shared.clone();
        let thread = match std::thread::Builder::new()
            .name("swarm-wal-flush".into())
            .spawn(move || run(&s, &writer))
        {
            Ok(t) => t,
            Err(e) => {
                shared.handoff.close();
                let _ = committed_thread.join();
                return Err(e);
            }
        };
        Ok(Flusher {
            shared,
            thread: Some(thread),
            committed_thread: Some(committed_thread),
            inline: None,
        })
    }

    /// Inline mode: makes everything queued durable now and completes it. The caller holds the
    /// WAL's writer lock. No-op with threads.
    pub(crate) fn drain_held(&self) {
        if let Some(i) = &self.inline {
            inline::drain(&self.shared, i);
        }
    }

    /// Inline mode: [`Self::drain_held`], taking the writer lock. No-op with threads.
    pub(crate) fn kick(&self) {
        if let Some(i) = &self.inline {
            let _w = i.writer.lock().unwrap_or_else(|e| e.into_inner());
            inline::drain(&self.shared, i);
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `done` to complete after `file` (if any) is fsynced; `written` is what the caller
    /// wrote to it (kept to be rewritten if an fsync fails).
    pub(crate) fn push(
        &self,
        file: Option<Arc<SegFile>>,
        written: Option<Written>,
        last: Option<u64>,
        done: Done,
    ) {
        let mut q = self.queue();
        if q.closed {
            drop(q);
            complete(
                done,
                Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the write-ahead log is closed",
                )),
            );
            return;
        }
        q.items.push(Item {
            file,
            written,
            last,
            done,
        });
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Records the committed log id; it is persisted after the appends queued so far are durable.
    pub(crate) fn save_committed(&self, c: Option<LogId>) {
        let mut q = self.queue();
        if c > q.committed {
            q.committed = c;
            drop(q);
            self.shared.wake.notify_one();
        }
    }

    /// The highest log index known durable.
    pub(crate) fn durable_index(&self) -> Option<u64> {
        self.queue().durable
    }

    /// Entries from `index` on were removed: they are no longer durable.
    pub(crate) fn truncated(&self, index: u64) {
        let mut q = self.queue();
        if q.durable >= Some(index) {
            q.durable = index.checked_sub(1);
        }
    }

    /// The committed log id last saved.
    pub(crate) fn committed(&self) -> Option<LogId> {
        self.queue().committed
    }

    /// Number of fsyncs performed so far (for tests and benchmarks of group commit).
    pub(crate) fn fsyncs(&self) -> u64 {
        self.queue().fsyncs
    }

    /// Sets or clears the current disk fault (shown to proposals).
    pub(crate) fn set_fault(&self, fault: Option<String>) {
        set_fault(&self.shared, fault);
    }

    /// Watches the current disk fault: `Some(message)` while the log cannot write.
    pub(crate) fn fault(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shared.fault.subscribe()
    }

    /// Records that an fsync of a segment failed outside the flusher (see `Shared::tainted`).
    pub(crate) fn taint(&self, message: String) {
        self.shared.tainted.store(true, Ordering::SeqCst);
        set_fault(&self.shared, Some(message));
    }

    pub(crate) fn faults(&self) -> &Arc<DiskFaults> {
        &self.shared.faults
    }
}

fn set_fault(shared: &Shared, fault: Option<String>) {
    shared.fault.send_if_modified(|cur| {
        if *cur == fault {
            return false;
        }
        match &fault {
            Some(m) => tracing::error!(fault = %m, "raft log cannot write; retrying"),
            None => tracing::info!("raft log writes again"),
        }
        *cur = fault;
        true
    });
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.queue().closed = true;
        if let Some(i) = self.inline.take() {
            inline::close(&self.shared, &i);
            return;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The flusher handed its last durable committed index before it ended.
        self.shared.handoff.close();
        if let Some(t) = self.committed_thread.take() {
            let _ = t.join();
        }
    }
}

/// fsyncs each distinct file of `items` once (nearly always the one active segment).
fn sync_files(shared: &Shared, items: &[Item]) -> Result<u64, String> {
    let mut synced: Vec<&Arc<SegFile>> = Vec::new();
    for f in items.iter().filter_map(|i| i.file.as_ref()) {
        if synced.iter().any(|s| Arc::ptr_eq(s, f)) {
            continue;
        }
        synced.push(f);
        shared.faults.slow_fsync();
        if let Err(e) = shared
            .faults
            .check_fsync()
            .and_then(|()| f.file.sync_data())
        {
            return Err(disk_fault_message("fsync", &f.path, &e));
        }
    }
    Ok(synced.len() as u64)
}

/// Rewrites every pending write (in queue order), then fsyncs.
fn rewrite_and_sync(shared: &Shared, items: &[Item]) -> Result<u64, String> {
    for item in items {
        if let (Some(f), Some(w)) = (&item.file, &item.written) {
            if let Err(e) = shared
                .faults
                .check_write()
                .and_then(|()| f.file.write_all_at(&w.bytes, w.offset))
            {
                return Err(disk_fault_message("write", &f.path, &e));
            }
        }
    }
    sync_files(shared, items)
}

fn run(shared: &Shared, writer: &Mutex<StdRng>) {
    // Set when closing with writes that never became durable: the committed index saved since may
    // cover them, so nothing more is handed (the file keeps the last durable value).
    let mut lost = false;
    loop {
        let (mut items, committed) = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if !q.items.is_empty() {
                    break;
                }
                // Nothing queued: every appended entry is durable, so is the saved committed index.
                if !lost {
                    shared.handoff.hand(q.committed);
                }
                if q.closed {
                    return;
                }
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            (std::mem::take(&mut q.items), q.committed)
        };
        let mut result = if shared.tainted.swap(false, Ordering::SeqCst) {
            Err(
                "an earlier fsync of the raft log failed; rewriting what it may have lost"
                    .to_string(),
            )
        } else {
            sync_files(shared, &items)
        };
        let mut backoff = Duration::from_millis(10);
        while let Err(msg) = &result {
            if !msg.is_empty() {
                set_fault(shared, Some(msg.clone()));
            }
            let closed = {
                let q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                if !q.closed {
                    let _ = shared.wake.wait_timeout(q, backoff);
                }
                shared
                    .queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .closed
            };
            if closed {
                break;
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
            // Under the writer lock every completed write is queued and none is in progress.
            let _w = writer.lock().unwrap_or_else(|e| e.into_inner());
            let more =
                std::mem::take(&mut shared.queue.lock().unwrap_or_else(|e| e.into_inner()).items);
            items.extend(more);
            result = rewrite_and_sync(shared, &items);
        }
        if result.is_ok() {
            set_fault(shared, None);
        }
        {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.fsyncs += *result.as_ref().unwrap_or(&0);
            if result.is_ok() {
                let last = items.iter().filter_map(|i| i.last).max();
                q.durable = q.durable.max(last);
            }
        }
        let ok = result.is_ok();
        for item in items {
            let r = match &result {
                Ok(_) => Ok(()),
                Err(msg) if msg.is_empty() => Err(io::Error::other(
                    "the write-ahead log closed before a failed fsync could be redone",
                )),
                Err(msg) => Err(io::Error::other(msg.clone())),
            };
            complete(item.done, r);
        }
        if !ok {
            lost = true;
        } else if !lost {
            // Every entry up to `committed` was appended before it was saved, so it is durable.
            shared.handoff.hand(committed);
        }
    }
}

/// The committed-index thread: persists what the flusher hands it, at most every
/// [`COMMITTED_INTERVAL`], and the last value before it ends. A failed write is retried.
fn persist_committed(shared: &Shared, file: &CommittedFile, mut written: Option<LogId>) {
    let handoff = &shared.handoff;
    let mut last_write: Option<Instant> = None;
    loop {
        let (value, closed) = {
            let mut st = handoff.lock();
            loop {
                if st.durable > written {
                    let due = last_write.map(|t| t + COMMITTED_INTERVAL);
                    match due {
                        Some(due) if !st.closed && Instant::now() < due => {
                            let wait = due.saturating_duration_since(Instant::now());
                            st = handoff
                                .wake
                                .wait_timeout(st, wait)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                            continue;
                        }
                        _ => break,
                    }
                }
                if st.closed {
                    return;
                }
                st = handoff.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            (st.durable, st.closed)
        };
        last_write = Some(Instant::now());
        match shared.faults.check_write().and_then(|()| file.write(value)) {
            Ok(()) => written = value,
            Err(e) => {
                tracing::warn!(file = %file.path().display(), error = %e, "could not persist the committed index; will retry");
                if closed {
                    return;
                }
            }
        }
    }
}

fn complete(done: Done, r: io::Result<()>) {
    match done {
        Done::Raft(cb) => cb.log_io_completed(r),
        Done::Barrier(tx) => {
            let _ = tx.send(r);
        }
    }
}
