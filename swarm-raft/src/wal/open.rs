//! Opening the log: scan and check every segment, decide the repair of a torn tail, refuse it if
//! it would lose committed entries, then repair and start the flusher.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::faults::DiskFaults;
use super::flush::{Flusher, SegFile};
use super::frame::{self, scan_segment, ScanEnd, HEADER_LEN};
use super::{committed, Loc, OpenReport, Segment, State, Wal, WalOptions};
use crate::disk::{Disk, OpenMode, OsDisk};
use crate::error::StorageFault;
use crate::files::{ensure_dir_on, sync_dir_on, tighten_on};
use crate::keyring::Keyring;
use crate::types::LogId;

/// A repair of the last segment decided while scanning, done only once the open is known to lose
/// no committed entry.
enum Repair {
    /// Remove a last segment that never got its whole header (crash while creating it).
    Remove(PathBuf),
    /// Cut a torn tail at this offset.
    Cut(Arc<SegFile>, u64),
}

impl Wal {
    /// Opens (or creates) the log in `dir` on the real filesystem. `last_purged` is the purge
    /// point persisted by the caller.
    pub fn open(
        dir: &Path,
        keys: Arc<Keyring>,
        opts: WalOptions,
        last_purged: Option<LogId>,
    ) -> Result<(Wal, OpenReport), StorageFault> {
        Wal::open_on(Arc::new(OsDisk), dir, keys, opts, last_purged)
    }

    /// [`Wal::open`] on `disk`.
    pub fn open_on(
        disk: Arc<dyn Disk>,
        dir: &Path,
        keys: Arc<Keyring>,
        opts: WalOptions,
        last_purged: Option<LogId>,
    ) -> Result<(Wal, OpenReport), StorageFault> {
        ensure_dir_on(&*disk, dir)?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        let listed = disk
            .list_dir(dir)
            .map_err(|e| StorageFault::io("list", dir, e))?;
        for path in listed {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(stem) = name.strip_suffix(".wal") {
                let first = stem.parse::<u64>().map_err(|_| {
                    StorageFault::corrupt(&path, 0, "segment file name is not a log index")
                })?;
                names.push((first, path));
            }
        }
        names.sort();
        let (committed_file, committed, found) =
            committed::CommittedFile::open(&*disk, dir, !opts.expect_committed)?;
        let mut report = OpenReport {
            committed,
            committed_file_found: found,
            ..OpenReport::default()
        };
        let mut repair: Option<Repair> = None;
        let mut segments: Vec<Segment> = Vec::new();
        let count = names.len();
        for (k, (first, path)) in names.into_iter().enumerate() {
            let is_last = k + 1 == count;
            let bytes = disk
                .read(&path)
                .map_err(|e| StorageFault::io("read", &path, e))?;
            let scan = match scan_segment(&bytes) {
                Ok(s) => s,
                Err((_, reason)) if is_last && bytes.len() < HEADER_LEN => {
                    // Crashed while creating the segment: it never held an entry.
                    report.truncated_tail = Some((path.clone(), 0, reason.to_string()));
                    repair = Some(Repair::Remove(path));
                    continue;
                }
                Err((offset, reason)) => return Err(StorageFault::corrupt(&path, offset, reason)),
            };
            tighten_on(&*disk, &path, 0o600)?;
            if frame::STORE_FORMAT_3_VERSIONS.contains(&scan.version) {
                return Err(StorageFault::corrupt(
                    &path,
                    8,
                    format!(
                        "segment format version {} holds store objects of an earlier layout \
                         (before network IPAM and service virtual IPs) and is no longer read; \
                         move the data directory away and rejoin this manager",
                        scan.version
                    ),
                ));
            }
            if scan.header.first_index != first {
                return Err(StorageFault::corrupt(
                    &path,
                    12,
                    "segment header does not match its file name",
                ));
            }
            if let Some(prev) = segments.last() {
                let prev_last = prev
                    .next_index()
                    .checked_sub(1)
                    .filter(|_| !prev.locs.is_empty());
                let prev_last = prev_last.or(prev.header.prev_index);
                if scan.header.prev_index != prev_last {
                    return Err(StorageFault::corrupt(
                        &path,
                        20,
                        "segment does not follow the previous one: a segment file is missing or was replaced",
                    ));
                }
            }
            let file = disk
                .open(&path, OpenMode::ReadWrite)
                .map_err(|e| StorageFault::io("open", &path, e))?;
            let file = Arc::new(SegFile {
                file,
                path: path.clone(),
            });
            let mut len = bytes.len() as u64;
            let mut alloc = len;
            match scan.end {
                ScanEnd::Clean => {}
                // Zeros after the frames: preallocated space (or appends that never reached the
                // disk, which lose nothing that was durable). The next append writes at `offset`.
                ScanEnd::Preallocated { offset } => len = offset,
                ScanEnd::Corrupt { offset, reason } => {
                    return Err(StorageFault::corrupt(&path, offset, reason))
                }
                ScanEnd::TornTail { offset, reason } if is_last => {
                    len = offset;
                    alloc = offset;
                    report.truncated_tail = Some((path.clone(), offset, reason));
                    repair = Some(Repair::Cut(file.clone(), offset));
                }
                ScanEnd::TornTail { offset, reason } => {
                    return Err(StorageFault::corrupt(
                        &path,
                        offset,
                        format!("{reason} in a segment that is not the last"),
                    ))
                }
            }
            let locs = scan
                .frames
                .iter()
                .map(|f| Loc {
                    offset: f.offset,
                    len: f.len,
                    term: f.term,
                    node: f.node,
                })
                .collect::<Vec<_>>();
            report.entries += locs.len() as u64;
            report.segments += 1;
            segments.push(Segment {
                path,
                header: scan.header,
                file,
                len,
                alloc,
                version: scan.version,
                prealloc_failed: false,
                locs,
            });
        }
        if let Some(repair) = repair {
            let last = segments
                .iter()
                .rev()
                .find_map(Segment::last_log_id)
                .map(|l| l.index)
                .max(last_purged.map(|p| p.index));
            if let Some(c) = committed.filter(|c| Some(c.index) > last) {
                let (file, offset, _) = report.truncated_tail.clone().unwrap_or_default();
                return Err(StorageFault::Missing {
                    path: file,
                    what: format!(
                        "the log ends at {} after a torn record at byte {offset}, but index {} was committed: committed entries are missing (nothing was cut)",
                        last.map_or("the start".to_string(), |l| format!("index {l}")),
                        c.index
                    ),
                });
            }
            match repair {
                Repair::Remove(path) => {
                    disk.remove_file(&path)
                        .map_err(|e| StorageFault::io("remove", &path, e))?;
                    sync_dir_on(&*disk, dir)?;
                }
                Repair::Cut(f, offset) => {
                    tracing::warn!(file = %f.path.display(), offset, "truncating torn tail of the raft log");
                    f.file
                        .set_len(offset)
                        .map_err(|e| StorageFault::io("truncate", &f.path, e))?;
                    f.file
                        .sync_all()
                        .map_err(|e| StorageFault::io("fsync", &f.path, e))?;
                }
            }
        }
        let writer = Arc::new(Mutex::new(StdRng::from_entropy()));
        let flusher = Flusher::start(
            writer.clone(),
            committed_file,
            committed,
            Arc::new(DiskFaults::default()),
            disk.inline(),
        )
        .map_err(|e| StorageFault::io("start flusher thread for", dir, e))?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            disk,
            keys,
            opts,
            state: RwLock::new(State {
                segments,
                last_purged,
                cache: super::cache::EntryCache::new(super::cache::DEFAULT_CACHE_BYTES),
            }),
            writer,
            flusher,
            entries_written: std::sync::atomic::AtomicU64::new(0),
            bytes_written: std::sync::atomic::AtomicU64::new(0),
            actions_written: std::sync::atomic::AtomicU64::new(0),
            closing: std::sync::atomic::AtomicBool::new(false),
        };
        if let Some(p) = last_purged {
            wal.drop_purged(p)?;
        }
        Ok((wal, report))
    }
}
