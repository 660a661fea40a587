//! Group commit: one background thread fsyncs the segment files that appends wrote to and then
//! completes every waiting append in order. Appends that arrive while an fsync runs are batched
//! into the next one, so concurrent appends share one fsync.

use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use openraft::storage::LogFlushed;

use crate::types::TypeConfig;

/// What to do once the data written before this item is durable.
pub(crate) enum Done {
    /// Tell openraft the append is on disk.
    Raft(LogFlushed<TypeConfig>),
    /// Wake a caller waiting for everything written so far to be durable.
    Barrier(tokio::sync::oneshot::Sender<io::Result<()>>),
}

struct Item {
    file: Option<Arc<File>>,
    done: Done,
}

#[derive(Default)]
struct Queue {
    items: Vec<Item>,
    closed: bool,
    fsyncs: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Handle to the flusher thread. Dropping it completes what is queued and stops the thread.
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start() -> io::Result<Flusher> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("swarm-wal-flush".into())
            .spawn(move || run(&s))?;
        Ok(Flusher {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `done` to complete after `file` (if any) is fsynced.
    pub(crate) fn push(&self, file: Option<Arc<File>>, done: Done) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
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
        q.items.push(Item { file, done });
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Number of fsyncs performed so far (for tests and benchmarks of group commit).
    pub(crate) fn fsyncs(&self) -> u64 {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fsyncs
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let items = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            while q.items.is_empty() && !q.closed {
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.items.is_empty() && q.closed {
                return;
            }
            std::mem::take(&mut q.items)
        };
        // fsync each distinct file once (they are nearly always the same, active segment).
        let mut synced: Vec<&Arc<File>> = Vec::new();
        let mut result: Result<(), (io::ErrorKind, String)> = Ok(());
        for f in items.iter().filter_map(|i| i.file.as_ref()) {
            if synced.iter().any(|s| Arc::ptr_eq(s, f)) {
                continue;
            }
            synced.push(f);
            if let Err(e) = f.sync_data() {
                tracing::error!(error = %e, "WAL fsync failed");
                result = Err((e.kind(), e.to_string()));
                break;
            }
        }
        let n = synced.len() as u64;
        shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fsyncs += n;
        for item in items {
            let r = match &result {
                Ok(()) => Ok(()),
                Err((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            };
            complete(item.done, r);
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
