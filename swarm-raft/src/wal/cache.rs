//! The recently appended entries, kept decoded so that a leader replicating what it has just
//! written does not read, checksum, open and decode its own records again.
//!
//! * Contents: one run of consecutive entries that always ends at the last entry of the log (the
//!   WAL changes it only under its state lock, together with the log: append, truncate, purge).
//! * Bound: the sealed size of the cached records (close to their decoded size) stays at most
//!   [`EntryCache::max_bytes`]; the oldest entries leave first. A run that no longer continues the
//!   log (an append after a purge past the end) replaces the cache.
//! * A read is served from the cache only when every entry it asks for that is in the log is
//!   cached; otherwise it goes to the disk as before.

use std::collections::VecDeque;
use std::ops::Range;

use crate::types::Entry;

/// Default bound of the cache (bytes of sealed records).
pub(crate) const DEFAULT_CACHE_BYTES: u64 = 8 * 1024 * 1024;

pub(crate) struct EntryCache {
    /// Entries with their sealed sizes, consecutive indexes from `first`.
    entries: VecDeque<(Entry, u32)>,
    first: u64,
    bytes: u64,
    max_bytes: u64,
}

impl EntryCache {
    pub(crate) fn new(max_bytes: u64) -> EntryCache {
        EntryCache {
            entries: VecDeque::new(),
            first: 0,
            bytes: 0,
            max_bytes,
        }
    }

    /// The index after the last cached entry (`first` when empty).
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Adds entries just appended to the log (consecutive; `sizes` are their sealed sizes).
    pub(crate) fn appended(&mut self, entries: impl IntoIterator<Item = (Entry, u32)>) {
        if self.max_bytes == 0 {
            return;
        }
        for (e, size) in entries {
            let index = e.log_id.index;
            if self.entries.is_empty() || index != self.end() {
                self.clear();
                self.first = index;
            }
            self.bytes += u64::from(size);
            self.entries.push_back((e, size));
        }
        while self.bytes > self.max_bytes {
            let Some((_, size)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= u64::from(size);
            self.first += 1;
        }
    }

    /// Entries at or after `index` were removed from the log.
    pub(crate) fn truncated(&mut self, index: u64) {
        while self.end() > index.max(self.first) {
            let Some((_, size)) = self.entries.pop_back() else {
                break;
            };
            self.bytes -= u64::from(size);
        }
    }

    /// Entries at or below `index` were purged from the log.
    pub(crate) fn purged(&mut self, index: u64) {
        while self.first <= index {
            let Some((_, size)) = self.entries.pop_front() else {
                self.first = index + 1;
                break;
            };
            self.bytes -= u64::from(size);
            self.first += 1;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The entries of `range` (already clipped to what the log holds), if all are cached.
    pub(crate) fn get(&self, range: Range<u64>) -> Option<Vec<Entry>> {
        if range.start >= range.end {
            return Some(Vec::new());
        }
        if range.start < self.first || range.end > self.end() {
            return None;
        }
        let (lo, hi) = (
            (range.start - self.first) as usize,
            (range.end - self.first) as usize,
        );
        Some(self.entries.range(lo..hi).map(|(e, _)| e.clone()).collect())
    }

    #[cfg(test)]
    fn indexes(&self) -> Vec<u64> {
        self.entries.iter().map(|(e, _)| e.log_id.index).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::log_id;

    fn e(index: u64) -> (Entry, u32) {
        let entry = Entry {
            log_id: log_id(1, 1, index),
            payload: openraft::EntryPayload::Blank,
        };
        (entry, 100)
    }

    #[test]
    fn keeps_the_newest_run_within_its_bound() {
        let mut c = EntryCache::new(350);
        c.appended((1..=3).map(e));
        assert_eq!(c.indexes(), vec![1, 2, 3]);
        c.appended((4..=5).map(e));
        assert_eq!(c.indexes(), vec![3, 4, 5], "oldest leave first");
        assert!(c.get(2..4).is_none(), "2 is no longer cached");
        let got = c.get(3..6).unwrap();
        assert_eq!(
            got.iter().map(|x| x.log_id.index).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(c.get(4..7).is_none(), "past the end is not cached");
    }

    #[test]
    fn truncate_purge_and_gaps_keep_it_a_suffix_of_the_log() {
        let mut c = EntryCache::new(10_000);
        c.appended((1..=6).map(e));
        c.truncated(4);
        assert_eq!(c.indexes(), vec![1, 2, 3]);
        c.appended((4..=5).map(e));
        assert_eq!(c.indexes(), vec![1, 2, 3, 4, 5]);
        c.purged(2);
        assert_eq!(c.indexes(), vec![3, 4, 5]);
        assert!(c.get(2..4).is_none());
        c.truncated(1);
        assert!(c.indexes().is_empty());
        c.appended((9..=10).map(e));
        c.appended((20..=21).map(e));
        assert_eq!(
            c.indexes(),
            vec![20, 21],
            "a run that does not follow replaces the cache"
        );
        c.purged(30);
        assert!(c.indexes().is_empty());
        c.appended((31..=31).map(e));
        assert_eq!(c.indexes(), vec![31]);
        assert_eq!(c.bytes, 100);
    }

    #[test]
    fn zero_bound_caches_nothing() {
        let mut c = EntryCache::new(0);
        c.appended((1..=3).map(e));
        assert!(c.get(1..2).is_none());
    }
}
