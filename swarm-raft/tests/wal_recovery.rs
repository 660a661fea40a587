//! The write-ahead log on its own: torn tails are cut at every possible byte, damage inside the log
//! refuses the open with the file and offset, tampering is caught on read, oversized lengths are
//! refused, truncate/purge survive reopening, and concurrent appends share fsyncs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{CommittedLeaderId, EntryPayload, LogId};
use swarm_core::{StoreAction, Timestamp};
use swarm_raft::testing::{append_durably, test_kdf, wal_segment_files};
use swarm_raft::types::Entry;
use swarm_raft::{Keyring, Proposal, StorageFault, Wal, WalOptions};

fn entry(index: u64, term: u64) -> Entry {
    let secret = swarm_core::testing::secret(index as u128, &format!("s{index}"), b"payload");
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Proposal {
            timestamp: Timestamp(index),
            actions: vec![StoreAction::Create(secret.into())],
        }),
    }
}

fn keys(dir: &Path) -> Arc<Keyring> {
    Arc::new(Keyring::load(dir, None, None, test_kdf()).unwrap())
}

fn open(dir: &Path, seg: u64) -> Result<(Wal, swarm_raft::OpenReport), StorageFault> {
    Wal::open(
        &dir.join("wal"),
        keys(dir),
        WalOptions {
            segment_bytes: seg,
            // These cases cut and measure files at their last record (preallocated space:
            // wal_prealloc.rs).
            prealloc_bytes: 0,
            ..WalOptions::default()
        },
        None,
    )
}

async fn append(wal: &Wal, entries: Vec<Entry>) {
    append_durably(wal, entries).await;
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    wal_segment_files(dir)
}

/// Recomputes both checksums of the frame at `at` (after a test edited it on purpose).
fn fix_checksums(bytes: &mut [u8], at: usize) {
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&bytes[at..at + 4]),
        &bytes[at + 12..at + 12 + len],
    );
    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    let header = crc32c::crc32c(&bytes[at..at + 8]);
    bytes[at + 8..at + 12].copy_from_slice(&header.to_le_bytes());
}

fn indexes(wal: &Wal) -> Vec<u64> {
    wal.entries(0..u64::MAX)
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test]
async fn torn_tail_is_cut_at_every_byte_and_reported() {
    let d = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(d.path(), 1 << 20).unwrap();
        append(&wal, (1..=3).map(|i| entry(i, 1)).collect()).await;
    }
    let seg = segments(d.path()).remove(0);
    let full = fs::read(&seg).unwrap();
    let wal_len_two = {
        let (wal, _) = open(d.path(), 1 << 20).unwrap();
        let _ = wal;
        // length of the file up to the end of entry 2: find it by re-writing two entries elsewhere
        let d2 = tempfile::tempdir().unwrap();
        fs::copy(d.path().join("keys"), d2.path().join("keys")).unwrap();
        let (w2, _) = open(d2.path(), 1 << 20).unwrap();
        append(&w2, (1..=2).map(|i| entry(i, 1)).collect()).await;
        fs::metadata(&segments(d2.path())[0]).unwrap().len() as usize
    };
    for cut in (wal_len_two + 1..full.len()).step_by(7) {
        fs::write(&seg, &full[..cut]).unwrap();
        let (wal, report) = open(d.path(), 1 << 20).unwrap();
        assert_eq!(indexes(&wal), vec![1, 2], "cut at {cut}");
        let (file, offset, _) = report.truncated_tail.expect("torn tail reported");
        assert_eq!((file, offset as usize), (seg.clone(), wal_len_two));
        // and the log keeps working after the repair
        drop(wal);
    }
}

#[tokio::test]
async fn damage_inside_the_log_refuses_open_with_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(d.path(), 1 << 20).unwrap();
        append(&wal, (1..=3).map(|i| entry(i, 1)).collect()).await;
    }
    let seg = segments(d.path()).remove(0);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[32 + 40] ^= 0x01; // inside the first record, followed by valid records
    fs::write(&seg, &bytes).unwrap();
    match open(d.path(), 1 << 20) {
        Err(StorageFault::Corrupt { file, offset, .. }) => assert_eq!((file, offset), (seg, 32)),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[tokio::test]
async fn damage_in_an_earlier_segment_or_a_missing_segment_refuses_open() {
    let d = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(d.path(), 200).unwrap();
        for i in 1..=6 {
            append(&wal, vec![entry(i, 1)]).await;
        }
    }
    let segs = segments(d.path());
    assert!(segs.len() >= 3, "small segments rotate: {segs:?}");
    // Cut the end of the first segment: not the tail of the log, so it is corruption.
    let first = fs::read(&segs[0]).unwrap();
    fs::write(&segs[0], &first[..first.len() - 3]).unwrap();
    assert!(
        matches!(open(d.path(), 200), Err(StorageFault::Corrupt { file, .. }) if file == segs[0])
    );
    fs::write(&segs[0], &first).unwrap();
    // Remove a middle segment.
    let middle = fs::read(&segs[1]).unwrap();
    fs::remove_file(&segs[1]).unwrap();
    assert!(
        matches!(open(d.path(), 200), Err(StorageFault::Corrupt { file, .. }) if file == segs[2])
    );
    fs::write(&segs[1], &middle).unwrap();
    assert_eq!(
        indexes(&open(d.path(), 200).unwrap().0),
        vec![1, 2, 3, 4, 5, 6]
    );
}

#[tokio::test]
async fn tampered_record_with_valid_checksum_is_caught_on_read() {
    let d = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(d.path(), 1 << 20).unwrap();
        append(&wal, (1..=2).map(|i| entry(i, 1)).collect()).await;
    }
    let seg = segments(d.path()).remove(0);
    let mut bytes = fs::read(&seg).unwrap();
    // Flip a ciphertext byte of record 1 and recompute its checksum.
    let at = 32;
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    bytes[at + 12 + len - 20] ^= 0x80;
    fix_checksums(&mut bytes, at);
    fs::write(&seg, &bytes).unwrap();
    let (wal, _) = open(d.path(), 1 << 20).unwrap();
    match wal.entries(1..2) {
        Err(StorageFault::Tampered { file, offset, .. }) => assert_eq!((file, offset), (seg, 32)),
        other => panic!("expected tampering, got {other:?}"),
    }
    assert!(wal.verify_from(0).is_err());
}

#[tokio::test]
async fn a_record_moved_to_another_index_does_not_open() {
    let d = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(d.path(), 1 << 20).unwrap();
        append(&wal, (1..=2).map(|i| entry(i, 1)).collect()).await;
    }
    let seg = segments(d.path()).remove(0);
    let mut bytes = fs::read(&seg).unwrap();
    // Rewrite the clear index of record 2 as... record 2 stays at 2 but claims term 5 (moved).
    let at = 32 + 12 + u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize;
    bytes[at + 20..at + 28].copy_from_slice(&5u64.to_le_bytes());
    fix_checksums(&mut bytes, at);
    fs::write(&seg, &bytes).unwrap();
    let (wal, _) = open(d.path(), 1 << 20).unwrap();
    assert!(
        matches!(wal.entries(2..3), Err(StorageFault::Tampered { offset, .. }) if offset == at as u64)
    );
}

#[tokio::test]
async fn oversized_length_field_is_refused_before_allocation() {
    let d = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(d.path(), 1 << 20).unwrap();
        append(&wal, (1..=2).map(|i| entry(i, 1)).collect()).await;
    }
    let seg = segments(d.path()).remove(0);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    let header = crc32c::crc32c(&bytes[32..40]);
    bytes[40..44].copy_from_slice(&header.to_le_bytes());
    fs::write(&seg, &bytes).unwrap();
    // Even with a header checksum that matches, an absurd length is refused (nothing was
    // allocated for 4 GiB) and, the frame being complete in its header, it is corruption: the
    // open refuses rather than cutting the log.
    match open(d.path(), 1 << 20) {
        Err(StorageFault::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!((file, offset), (seg.clone(), 32));
            assert!(reason.contains("limit"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Nothing was cut.
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

#[tokio::test]
async fn truncate_and_purge_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(d.path(), 300).unwrap();
        for i in 1..=10 {
            append(&wal, vec![entry(i, 1)]).await;
        }
        wal.truncate(8).unwrap();
        append(&wal, vec![entry(8, 2)]).await;
        wal.purge(LogId::new(CommittedLeaderId::new(1, 1), 4))
            .unwrap();
        assert_eq!(indexes(&wal), vec![5, 6, 7, 8]);
    }
    let purged = Some(LogId::new(CommittedLeaderId::new(1, 1), 4));
    let (wal, _) = Wal::open(
        &d.path().join("wal"),
        keys(d.path()),
        WalOptions {
            segment_bytes: 300,
            prealloc_bytes: 0,
            ..WalOptions::default()
        },
        purged,
    )
    .unwrap();
    assert_eq!(indexes(&wal), vec![5, 6, 7, 8]);
    assert_eq!(wal.entries(8..9).unwrap()[0].log_id.leader_id.term, 2);
}

#[tokio::test]
async fn concurrent_appends_share_fsyncs() {
    let d = tempfile::tempdir().unwrap();
    let (wal, _) = open(d.path(), 64 << 20).unwrap();
    let mut waits = Vec::new();
    for i in 1..=200 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        wal.append_for_test(vec![entry(i, 1)], tx).unwrap();
        waits.push(rx);
    }
    for w in waits {
        w.await.unwrap().unwrap();
    }
    let fsyncs = wal.fsyncs();
    assert!(
        fsyncs < 200,
        "200 appends took {fsyncs} fsyncs: group commit is not batching"
    );
    let stats = wal.stats();
    assert_eq!(stats.fsyncs, fsyncs);
    assert_eq!(stats.entries, 200);
    assert_eq!(stats.actions, 200);
    let segment_bytes: u64 = segments(d.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    // Every byte of the segments but their headers was written by these appends.
    assert_eq!(
        stats.bytes,
        segment_bytes - swarm_raft::wal::frame::HEADER_LEN as u64
    );
}

/// A failed fsync at segment rotation is not trusted later: the append fails (and can be retried),
/// the flusher rewrites the pending writes before its next fsync, and every entry is there after
/// reopening.
#[tokio::test]
async fn a_failed_fsync_at_rotation_is_retried_and_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(d.path(), 200).unwrap();
        append(&wal, vec![entry(1, 1)]).await;
        // The flusher is idle: the next fsync is the rotation's, in the append itself.
        wal.disk_faults().fail_fsyncs(1, 28);
        let (tx, _rx) = tokio::sync::oneshot::channel();
        match wal.append_for_test(vec![entry(2, 1)], tx) {
            Err(StorageFault::Io { op: "fsync", .. }) => {}
            other => panic!("expected the rotation fsync to fail, got {other:?}"),
        }
        let fault = wal.fault().borrow().clone().expect("the fault is shown");
        assert!(fault.contains("no space left on device"), "{fault}");
        append(&wal, vec![entry(2, 1)]).await;
        append(&wal, vec![entry(3, 1)]).await;
        assert!(wal.fault().borrow().is_none());
    }
    assert_eq!(indexes(&open(d.path(), 200).unwrap().0), vec![1, 2, 3]);
}
