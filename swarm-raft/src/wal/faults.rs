//! [`DiskFaults`]: the WAL's own fault-injection hook (tests): failing segment writes and fsyncs,
//! slow fsyncs. Works on any disk; the simulated disk (`crate::disk::SimDisk`) has its own,
//! lower-level injection too.

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// A test hook in the WAL's file layer: makes the next segment writes or fsyncs fail with an OS
/// error (for example 28, `ENOSPC`), as a full disk would. Inert unless armed.
#[derive(Debug, Default)]
pub struct DiskFaults {
    writes: AtomicU64,
    fsyncs: AtomicU64,
    errno: AtomicI32,
    /// Microseconds every segment fsync of the flusher takes longer (a slow disk).
    fsync_delay_us: AtomicU64,
}

impl DiskFaults {
    /// Makes the next `n` segment writes fail with `errno` (`u64::MAX`: until [`Self::clear`]).
    pub fn fail_writes(&self, n: u64, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
        self.writes.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` segment fsyncs fail with `errno` (`u64::MAX`: until [`Self::clear`]).
    pub fn fail_fsyncs(&self, n: u64, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
        self.fsyncs.store(n, Ordering::SeqCst);
    }

    /// Makes every group-commit fsync of a segment take `delay` longer, as a slow disk would
    /// (`Duration::ZERO` stops it). Appends keep arriving meanwhile, so they queue for the next one.
    pub fn delay_fsyncs(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.fsync_delay_us.store(us, Ordering::SeqCst);
    }

    /// Stops injecting failures and delays.
    pub fn clear(&self) {
        self.writes.store(0, Ordering::SeqCst);
        self.fsyncs.store(0, Ordering::SeqCst);
        self.fsync_delay_us.store(0, Ordering::SeqCst);
    }

    pub(crate) fn slow_fsync(&self) {
        let us = self.fsync_delay_us.load(Ordering::SeqCst);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
    }

    fn take(&self, counter: &AtomicU64) -> io::Result<()> {
        let taken = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            0 => None,
            u64::MAX => Some(u64::MAX),
            n => Some(n - 1),
        });
        match taken {
            Ok(_) => Err(io::Error::from_raw_os_error(
                self.errno.load(Ordering::SeqCst),
            )),
            Err(_) => Ok(()),
        }
    }

    /// Whether injected write failures are armed (checked without using one up).
    pub(crate) fn writes_failing(&self) -> bool {
        self.writes.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn check_write(&self) -> io::Result<()> {
        self.take(&self.writes)
    }

    pub(crate) fn check_fsync(&self) -> io::Result<()> {
        self.take(&self.fsyncs)
    }
}
