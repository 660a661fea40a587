//! The flusher without threads, for disks that run inline ([`crate::disk::Disk::inline`]:
//! deterministic simulation, where an OS thread would make the schedule depend on the OS).
//!
//! * Every append drains the queue before it returns, under the WAL's writer lock: the segment is
//!   fsynced and the append's completion fires inside the append (group commit degenerates to
//!   one fsync per append, which a simulation does not mind). Barriers and saved committed
//!   indexes drain too, taking the writer lock.
//! * The committed index is persisted in the same drain, right after the fsync that made its
//!   entries durable (no 50 ms pacing: there is no clock here).
//! * A failed fsync is retried at once (rewriting every pending write first) a few times; if it
//!   keeps failing, the items go back to the queue, the fault is shown, and a task on the
//!   caller's tokio runtime retries with backoff (tokio time, so a simulator controls it).
//!   Without a runtime the next append or barrier retries.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;

use super::{complete, rewrite_and_sync, set_fault, sync_files, CommittedFile, Shared};
use crate::types::LogId;

/// Immediate retries of a failed fsync before the items wait for the retry task.
const IMMEDIATE_RETRIES: usize = 3;

/// State of an inline flusher.
pub(crate) struct Inline {
    /// The WAL's writer lock.
    pub(super) writer: Arc<Mutex<StdRng>>,
    committed: CommittedFile,
    /// The committed log id on disk, and whether a write was lost (closing with writes that
    /// never became durable: nothing more is persisted then).
    written: Mutex<(Option<LogId>, bool)>,
    /// A retry task is scheduled.
    retrying: AtomicBool,
}

impl Inline {
    pub(super) fn new(
        writer: Arc<Mutex<StdRng>>,
        committed: CommittedFile,
        initial: Option<LogId>,
    ) -> Inline {
        Inline {
            writer,
            committed,
            written: Mutex::new((initial, false)),
            retrying: AtomicBool::new(false),
        }
    }

    /// Persists `c` if it is newer than what the file holds (a failed write is retried at the
    /// next drain).
    fn persist(&self, shared: &Shared, c: Option<LogId>) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if w.1 || c <= w.0 {
            return;
        }
        match shared
            .faults
            .check_write()
            .and_then(|()| self.committed.write(c))
        {
            Ok(()) => w.0 = c,
            Err(e) => {
                tracing::warn!(file = %self.committed.path().display(), error = %e, "could not persist the committed index; will retry");
            }
        }
    }
}

/// Makes everything queued durable and completes it; the caller holds the writer lock.
/// Returns whether items are left (an fsync kept failing).
pub(super) fn drain(shared: &Arc<Shared>, inline: &Arc<Inline>) -> bool {
    let (mut items, committed) = {
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut q.items), q.committed)
    };
    if items.is_empty() {
        // Nothing pending: every appended entry is durable, so is the saved committed index.
        inline.persist(shared, committed);
        return false;
    }
    let mut result = if shared.tainted.swap(false, Ordering::SeqCst) {
        Err("an earlier fsync of the raft log failed; rewriting what it may have lost".to_string())
    } else {
        sync_files(shared, &items)
    };
    let mut tries = 0;
    while result.is_err() && tries < IMMEDIATE_RETRIES {
        tries += 1;
        result = rewrite_and_sync(shared, &items);
    }
    match result {
        Err(msg) => {
            set_fault(shared, Some(msg));
            // Whatever was written may be lost: rewrite it all before trusting an fsync again.
            shared.tainted.store(true, Ordering::SeqCst);
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            items.append(&mut q.items);
            q.items = items;
            drop(q);
            schedule_retry(shared, inline);
            true
        }
        Ok(n) => {
            set_fault(shared, None);
            {
                let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.fsyncs += n;
                let last = items.iter().filter_map(|i| i.last).max();
                q.durable = q.durable.max(last);
            }
            for item in items {
                complete(item.done, Ok(()));
            }
            // Every entry up to `committed` was appended before it was saved, so it is durable.
            inline.persist(shared, committed);
            false
        }
    }
}

/// Retries a failing fsync from a task on the current tokio runtime, with backoff.
fn schedule_retry(shared: &Arc<Shared>, inline: &Arc<Inline>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if inline.retrying.swap(true, Ordering::SeqCst) {
        return;
    }
    let (shared, inline) = (shared.clone(), inline.clone());
    rt.spawn(async move {
        let mut backoff = Duration::from_millis(10);
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            if shared
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .closed
            {
                break;
            }
            let left = {
                let _w = inline.writer.lock().unwrap_or_else(|e| e.into_inner());
                // `retrying` is still set, so a failed drain does not spawn a second task.
                drain(&shared, &inline)
            };
            if !left {
                break;
            }
        }
        inline.retrying.store(false, Ordering::SeqCst);
    });
}

/// Closing: a last drain (taking the writer lock); what still cannot be made durable is
/// answered with an error and the committed index is left as it is.
pub(super) fn close(shared: &Arc<Shared>, inline: &Arc<Inline>) {
    inline.retrying.store(true, Ordering::SeqCst);
    let left = {
        let _w = inline.writer.lock().unwrap_or_else(|e| e.into_inner());
        drain(shared, inline)
    };
    if left {
        inline.written.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        let items =
            std::mem::take(&mut shared.queue.lock().unwrap_or_else(|e| e.into_inner()).items);
        for item in items {
            complete(
                item.done,
                Err(io::Error::other(
                    "the write-ahead log closed before a failed fsync could be redone",
                )),
            );
        }
    }
}
