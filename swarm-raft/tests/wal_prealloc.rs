//! The write-ahead log with preallocated space (segment format 5, and 6 with the same frames): the active segment holds
//! written zeros ahead of its last record, and what a crash leaves there is told apart from
//! damage to durable records. Each case writes a real log, edits its last segment the way a torn
//! write (or a crash at a given point) would, and reopens it:
//! * zeros after the records are preallocated space: a clean end, nothing reported or cut;
//! * a last record with a zeroed sector, or whose header never landed, followed by zeros, is a
//!   torn tail: cut and reported, and the log appends again at that place;
//! * a record that does not verify followed by one that does refuses the open (file, offset);
//! * segments roll over with preallocation (full segments keep no zeros) and reopen whole;
//! * a crash right after preallocating (zeros, no record yet), in a fresh segment too, loses
//!   nothing; segments of formats 4 and 5 (store format 3) are refused by name.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{CommittedLeaderId, EntryPayload, LogId};
use swarm_core::{StoreAction, Timestamp};
use swarm_raft::testing::{append_durably, test_kdf, wal_segment_files};
use swarm_raft::types::Entry;
use swarm_raft::wal::frame::{scan_segment, ScanEnd, SegmentHeader, HEADER_LEN};
use swarm_raft::{Keyring, Proposal, StorageFault, Wal, WalOptions};

fn entry(index: u64) -> Entry {
    let secret = swarm_core::testing::secret(index as u128, &format!("s{index}"), &[7; 600]);
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            timestamp: Timestamp(index),
            actions: vec![StoreAction::Create(secret.into())],
        }),
    }
}

fn keys(dir: &Path) -> Arc<Keyring> {
    Arc::new(Keyring::load(dir, None, None, test_kdf()).unwrap())
}

fn open_with(
    dir: &Path,
    segment_bytes: u64,
    prealloc_bytes: u64,
) -> Result<(Wal, swarm_raft::OpenReport), StorageFault> {
    Wal::open(
        &dir.join("wal"),
        keys(dir),
        WalOptions {
            segment_bytes,
            prealloc_bytes,
            ..WalOptions::default()
        },
        None,
    )
}

/// 1 MiB segments preallocated 64 KiB at a time.
fn open(dir: &Path) -> Result<(Wal, swarm_raft::OpenReport), StorageFault> {
    open_with(dir, 1 << 20, 64 << 10)
}

async fn append(wal: &Wal, entries: Vec<Entry>) {
    append_durably(wal, entries).await;
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    wal_segment_files(dir)
}

fn indexes(wal: &Wal) -> Vec<u64> {
    wal.entries(0..u64::MAX)
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

/// A log of entries 1..=n in one segment, closed; returns the segment and its record offsets
/// (start of each record, then the end of the last).
async fn log_of(dir: &Path, n: u64) -> (PathBuf, Vec<usize>) {
    {
        let (wal, _) = open(dir).unwrap();
        append(&wal, (1..=n).map(entry).collect()).await;
    }
    let seg = segments(dir).remove(0);
    let bytes = fs::read(&seg).unwrap();
    let scan = scan_segment(&bytes).unwrap();
    let mut at: Vec<usize> = scan.frames.iter().map(|f| f.offset as usize).collect();
    let last = scan.frames.last().unwrap();
    let end = (last.offset + u64::from(last.len)) as usize;
    at.push(end);
    assert_eq!(scan.end, ScanEnd::Preallocated { offset: end as u64 });
    assert_eq!(bytes.len(), 64 << 10, "one chunk preallocated");
    (seg, at)
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = fs::read(path).unwrap();
    f(&mut b);
    fs::write(path, &b).unwrap();
}

/// After a torn tail was cut, the log appends at the cut and reopens whole.
async fn appends_again_after_the_cut(dir: &Path, have: Vec<u64>) {
    let next = have.last().map_or(1, |l| l + 1);
    {
        let (wal, report) = open(dir).unwrap();
        assert!(report.truncated_tail.is_none(), "the cut was made durable");
        assert_eq!(indexes(&wal), have);
        append(&wal, vec![entry(next), entry(next + 1)]).await;
    }
    let (wal, report) = open(dir).unwrap();
    assert!(report.truncated_tail.is_none());
    let mut want = have;
    want.extend([next, next + 1]);
    assert_eq!(indexes(&wal), want);
}

#[tokio::test]
async fn restart_after_a_clean_stop_keeps_the_preallocated_space_and_appends_after_the_records() {
    let d = tempfile::tempdir().unwrap();
    let (seg, at) = log_of(d.path(), 3).await;
    {
        let (wal, report) = open(d.path()).unwrap();
        assert_eq!(
            report.truncated_tail, None,
            "zeros after the records are no torn tail"
        );
        assert_eq!(report.entries, 3);
        assert_eq!(indexes(&wal), vec![1, 2, 3]);
        append(&wal, vec![entry(4)]).await;
    }
    // Entry 4 went right after entry 3, inside the preallocated space, and the file kept its size.
    let bytes = fs::read(&seg).unwrap();
    assert_eq!(bytes.len(), 64 << 10);
    let scan = scan_segment(&bytes).unwrap();
    assert_eq!(scan.frames.len(), 4);
    assert_eq!(scan.frames[3].offset as usize, at[3]);
    let (wal, _) = open(d.path()).unwrap();
    assert_eq!(indexes(&wal), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn zeros_after_a_torn_last_record_are_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    let (seg, at) = log_of(d.path(), 3).await;
    // Only the first 100 bytes of the last record reached the disk; zeros follow.
    edit(&seg, |b| b[at[2] + 100..at[3]].fill(0));
    let (wal, report) = open(d.path()).unwrap();
    let (file, offset, reason) = report.truncated_tail.expect("torn tail reported");
    assert_eq!((file, offset as usize), (seg.clone(), at[2]));
    assert!(reason.contains("preallocated"), "{reason}");
    assert_eq!(indexes(&wal), vec![1, 2]);
    drop(wal);
    appends_again_after_the_cut(d.path(), vec![1, 2]).await;
}

#[tokio::test]
async fn a_zeroed_sector_inside_the_last_record_is_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    let (seg, at) = log_of(d.path(), 3).await;
    assert!(at[3] - at[2] > 700, "records span sectors");
    // One 512-byte sector in the middle of the last record never landed.
    let sector = (at[2] / 512 + 1) * 512;
    edit(&seg, |b| b[sector..sector + 512].fill(0));
    let (wal, report) = open(d.path()).unwrap();
    let (_, offset, _) = report.truncated_tail.expect("torn tail reported");
    assert_eq!(offset as usize, at[2]);
    assert_eq!(indexes(&wal), vec![1, 2]);
    drop(wal);
    appends_again_after_the_cut(d.path(), vec![1, 2]).await;
    // The last record's header lost while its body landed reads the same way.
    let d = tempfile::tempdir().unwrap();
    let (seg, at) = log_of(d.path(), 3).await;
    edit(&seg, |b| b[at[2]..at[2] + 12].fill(0));
    let (wal, report) = open(d.path()).unwrap();
    assert_eq!(report.truncated_tail.map(|t| t.1 as usize), Some(at[2]));
    assert_eq!(indexes(&wal), vec![1, 2]);
}

#[tokio::test]
async fn a_valid_record_after_a_bad_one_refuses_the_open() {
    // A zeroed sector inside a record that is followed by a valid one: that record was durable.
    let d = tempfile::tempdir().unwrap();
    let (seg, at) = log_of(d.path(), 3).await;
    let sector = (at[1] / 512 + 1) * 512;
    assert!(sector + 512 <= at[2]);
    edit(&seg, |b| b[sector..sector + 512].fill(0));
    match open(d.path()) {
        Err(StorageFault::Corrupt { file, offset, .. }) => {
            assert_eq!((file, offset), (seg, at[1] as u64))
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // A torn last record, then a valid-looking record further into the preallocated space.
    let d = tempfile::tempdir().unwrap();
    let (seg, at) = log_of(d.path(), 3).await;
    let record = fs::read(&seg).unwrap()[at[0]..at[1]].to_vec();
    edit(&seg, |b| {
        b[at[2] + 100..at[3]].fill(0);
        b[at[3] + 4096..at[3] + 4096 + record.len()].copy_from_slice(&record);
    });
    let before = fs::read(&seg).unwrap();
    match open(d.path()) {
        Err(StorageFault::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!((file, offset), (seg.clone(), at[2] as u64));
            assert!(reason.contains("valid record follows"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(
        fs::read(&seg).unwrap(),
        before,
        "a refused open changes nothing"
    );
}

#[tokio::test]
async fn a_crash_right_after_preallocating_loses_nothing() {
    // The chunk after the first was being preallocated (zeros written, the file longer) when the
    // crash came, before the record that needed it.
    let d = tempfile::tempdir().unwrap();
    let (seg, _) = log_of(d.path(), 3).await;
    edit(&seg, |b| b.resize(3 * (64 << 10) - 5000, 0));
    {
        let (wal, report) = open(d.path()).unwrap();
        assert_eq!(report.truncated_tail, None);
        assert_eq!(indexes(&wal), vec![1, 2, 3]);
        append(&wal, vec![entry(4)]).await;
    }
    assert_eq!(indexes(&open(d.path()).unwrap().0), vec![1, 2, 3, 4]);
    // A new segment that was created and preallocated, without a record yet.
    let d = tempfile::tempdir().unwrap();
    let (first, _) = log_of(d.path(), 2).await;
    let fresh = first.with_file_name(format!("{:020}.wal", 3));
    let mut b = SegmentHeader {
        first_index: 3,
        prev_index: Some(2),
    }
    .encode()
    .to_vec();
    b.resize(64 << 10, 0);
    fs::write(&fresh, &b).unwrap();
    {
        let (wal, report) = open(d.path()).unwrap();
        assert_eq!((report.segments, report.truncated_tail), (2, None));
        assert_eq!(indexes(&wal), vec![1, 2]);
        append(&wal, vec![entry(3)]).await;
    }
    let (wal, _) = open(d.path()).unwrap();
    assert_eq!(indexes(&wal), vec![1, 2, 3]);
    let scan = scan_segment(&fs::read(&fresh).unwrap()).unwrap();
    assert_eq!(scan.frames.len(), 1, "entry 3 went into the fresh segment");
}

#[tokio::test]
async fn segments_roll_over_with_preallocation_and_reopen_whole() {
    let d = tempfile::tempdir().unwrap();
    {
        // 8 KiB segments, 4 KiB chunks: each segment takes a few appends.
        let (wal, _) = open_with(d.path(), 8 << 10, 4 << 10).unwrap();
        for i in 1..=40 {
            append(&wal, vec![entry(i)]).await;
        }
    }
    let segs = segments(d.path());
    assert!(segs.len() >= 3, "segments rolled over: {segs:?}");
    for (k, s) in segs.iter().enumerate() {
        let bytes = fs::read(s).unwrap();
        let scan = scan_segment(&bytes).unwrap();
        if k + 1 < segs.len() {
            assert_eq!(
                scan.end,
                ScanEnd::Clean,
                "a full segment keeps no zeros: {s:?}"
            );
        } else {
            assert!(
                matches!(scan.end, ScanEnd::Preallocated { .. }),
                "{:?}",
                scan.end
            );
            assert_eq!(bytes.len() % (4 << 10), 0);
        }
    }
    let (wal, report) = open_with(d.path(), 8 << 10, 4 << 10).unwrap();
    assert_eq!(report.truncated_tail, None);
    assert_eq!(indexes(&wal), (1..=40).collect::<Vec<_>>());
    append(&wal, vec![entry(41)]).await;
    drop(wal);
    let (wal, _) = open_with(d.path(), 8 << 10, 4 << 10).unwrap();
    assert_eq!(indexes(&wal), (1..=41).collect::<Vec<_>>());
}

/// Segments of formats 4 and 5 hold store objects of snapshot format 3, which no longer decode:
/// the open refuses them by name (file, version), before reading any entry.
#[tokio::test]
async fn segments_of_the_previous_store_format_are_refused_by_name() {
    for version in [4u32, 5] {
        let d = tempfile::tempdir().unwrap();
        {
            let (wal, _) = open_with(d.path(), 1 << 20, 0).unwrap();
            append(&wal, (1..=3).map(entry).collect()).await;
        }
        let seg = segments(d.path()).remove(0);
        edit(&seg, |b| {
            let header = SegmentHeader::decode(b).unwrap();
            b[..HEADER_LEN].copy_from_slice(&header.encode_version(version));
        });
        match open(d.path()) {
            Err(StorageFault::Corrupt { reason, .. }) => assert!(
                reason.contains(&format!(
                    "segment format version {version} holds store objects of an earlier layout"
                )),
                "{reason}"
            ),
            Err(other) => panic!("format {version}: {other}"),
            Ok(_) => panic!("format {version}: opened"),
        }
    }
}

/// The leader's cache of recent entries answers like the disk, and stays right across truncate
/// and purge.
#[tokio::test]
async fn reads_of_recent_entries_match_the_disk_across_truncate_and_purge() {
    let d = tempfile::tempdir().unwrap();
    let (wal, _) = open(d.path()).unwrap();
    append(&wal, (1..=10).map(entry).collect()).await;
    let cached = wal.entries(3..8).unwrap();
    let (_copy, disk) = open_disk_copy(d.path());
    assert_eq!(cached, disk.entries(3..8).unwrap());
    wal.truncate(6).unwrap();
    let mut e6 = entry(6);
    e6.log_id = LogId::new(CommittedLeaderId::new(2, 1), 6);
    append(&wal, vec![e6.clone()]).await;
    let got = wal.entries(4..100).unwrap();
    assert_eq!(
        got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert_eq!(got[2], e6, "the truncated entry is not served");
    wal.purge(LogId::new(CommittedLeaderId::new(1, 1), 4))
        .unwrap();
    assert_eq!(indexes(&wal), vec![5, 6]);
    assert!(wal.entries(1..5).unwrap().is_empty());
}

/// A second handle on a copy of the log (nothing cached): what the disk holds.
fn open_disk_copy(dir: &Path) -> (tempfile::TempDir, Wal) {
    let copy = tempfile::tempdir().unwrap();
    fs::copy(dir.join("keys"), copy.path().join("keys")).unwrap();
    fs::create_dir_all(copy.path().join("wal")).unwrap();
    for e in fs::read_dir(dir.join("wal")).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, copy.path().join("wal").join(p.file_name().unwrap())).unwrap();
    }
    let wal = open(copy.path()).unwrap().0;
    (copy, wal)
}
