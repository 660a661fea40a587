//! Replays the fuzz corpora of `fuzz/corpus/{wal_segment,snapshot}` through the same entry points
//! the fuzz targets call (`swarm_raft::fuzzing`), so every input that ever found a bug stays a
//! regression test under plain `cargo test`. A missing or empty corpus directory fails the test.
//!
//! `SWARM_WRITE_SEEDS=1 cargo test -p swarm-raft --test fuzz_corpus` (re)writes the seed files.

use std::fs;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} is missing: {e}", dir.display()));
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, b)
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    files
}

fn write_seeds() {
    if std::env::var_os("SWARM_WRITE_SEEDS").is_none() {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let wal = swarm_raft::fuzzing::seed_wal_segment();
    fs::write(root.join("wal_segment/valid_two_records"), &wal).unwrap();
    fs::write(root.join("wal_segment/torn_tail"), &wal[..wal.len() - 9]).unwrap();
    fs::write(root.join("wal_segment/header_only"), &wal[..32]).unwrap();
    let mut oversized = wal[..32].to_vec();
    oversized.extend_from_slice(&u32::MAX.to_le_bytes());
    oversized.extend_from_slice(&[0; 8]);
    fs::write(root.join("wal_segment/oversized_length"), &oversized).unwrap();
    let mut flipped = wal.clone();
    flipped[60] ^= 0xff;
    fs::write(root.join("wal_segment/flipped_byte"), &flipped).unwrap();
    fs::write(
        root.join("wal_segment/built_two_entries"),
        swarm_raft::fuzzing::seed_wal_frames(),
    )
    .unwrap();
    fs::write(
        root.join("snapshot/built_empty_store"),
        swarm_raft::fuzzing::seed_snapshot_build(),
    )
    .unwrap();
    let snap = swarm_raft::fuzzing::seed_snapshot();
    fs::write(root.join("snapshot/valid_empty_store"), &snap).unwrap();
    fs::write(root.join("snapshot/truncated"), &snap[..snap.len() - 5]).unwrap();
    let mut flipped = snap.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 1;
    fs::write(root.join("snapshot/flipped_tag"), &flipped).unwrap();
    fs::write(root.join("snapshot/huge_plain_len"), {
        let mut h = snap[..40].to_vec();
        h.extend_from_slice(&[0xff; 16]);
        h
    })
    .unwrap();
}

#[test]
fn wal_segment_corpus_never_panics() {
    write_seeds();
    for (path, bytes) in corpus("wal_segment") {
        eprintln!("replaying {}", path.display());
        swarm_raft::fuzzing::wal_segment(&bytes);
    }
}

#[test]
fn snapshot_corpus_never_panics() {
    write_seeds();
    for (path, bytes) in corpus("snapshot") {
        eprintln!("replaying {}", path.display());
        swarm_raft::fuzzing::snapshot(&bytes);
    }
}

#[test]
fn seeds_decode() {
    let wal = swarm_raft::fuzzing::seed_wal_segment();
    let scan = swarm_raft::wal::frame::scan_segment(&wal).unwrap();
    assert_eq!(scan.frames.len(), 2);
    let snap = swarm_raft::fuzzing::seed_snapshot();
    let dek = swarm_raft::fuzzing::fuzz_dek();
    let (_, plain) = swarm_raft::snapshot::decode_file(&snap, |p, b| dek.open(p, b)).unwrap();
    swarm_raft::snapshot::SnapshotPayload::decode(&plain).unwrap();
}

/// The builders behind the fuzz targets get past the checksums and seals: a seed in their input
/// format becomes a segment whose frames scan clean and open into entries, and a snapshot file
/// that opens into its payload.
#[test]
fn builders_reach_the_decoders_behind_the_checksums() {
    let dek = swarm_raft::fuzzing::fuzz_dek();
    let wal = swarm_raft::fuzzing::build_wal_segment(&swarm_raft::fuzzing::seed_wal_frames());
    let scan = swarm_raft::wal::frame::scan_segment(&wal).unwrap();
    assert_eq!(scan.end, swarm_raft::wal::frame::ScanEnd::Clean);
    assert_eq!(scan.frames.len(), 2);
    for f in &scan.frames {
        let at = f.offset as usize;
        let swarm_raft::wal::frame::FrameResult::Frame(frame, _) =
            swarm_raft::wal::frame::decode_frame(&wal[at..])
        else {
            panic!("frame at {at} does not decode");
        };
        let place = swarm_secrets::RecordPlace::LogEntry {
            index: frame.index,
            term: frame.term,
        };
        let plain = dek.open(&place, frame.sealed).expect("the seal opens");
        assert!(!plain.expose().is_empty());
    }
    let snap = swarm_raft::fuzzing::build_snapshot(&swarm_raft::fuzzing::seed_snapshot_build());
    let (id, plain) = swarm_raft::snapshot::decode_file(&snap, |p, b| dek.open(p, b)).unwrap();
    assert_eq!(id, "1-1-3-0");
    swarm_raft::snapshot::SnapshotPayload::decode(&plain).unwrap();
}
