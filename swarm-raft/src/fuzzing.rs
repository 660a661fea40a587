//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/{wal_segment,snapshot}.rs`) and the
//! corpus replay test. Each accepts any bytes and must never panic.

use swarm_secrets::{Dek, RecordPlace};

use crate::snapshot::{decode_file, SnapshotPayload};
use crate::wal::frame::{decode_frame, scan_segment, FrameResult};

/// The fixed key the fuzz corpora are sealed with (fuzzing only).
pub fn fuzz_dek() -> Dek {
    Dek::from_bytes([7; 32])
}

/// Scans `data` as a WAL segment and opens every valid frame's record with [`fuzz_dek`].
pub fn wal_segment(data: &[u8]) {
    let dek = fuzz_dek();
    if let Ok(scan) = scan_segment(data) {
        for f in &scan.frames {
            let Some(bytes) = data.get(f.offset as usize..) else {
                continue;
            };
            if let FrameResult::Frame(frame, _) = decode_frame(bytes) {
                let place = RecordPlace::LogEntry {
                    index: frame.index,
                    term: frame.term,
                };
                if let Ok(plain) = dek.open(&place, frame.sealed) {
                    let _ = crate::codec::decode::<crate::types::Entry>(
                        plain.expose(),
                        crate::wal::MAX_ENTRY_BYTES,
                    );
                }
            }
        }
    }
    // Also treat the input as one frame and as a raw entry.
    let _ = decode_frame(data);
    let _ = crate::codec::decode::<crate::types::Entry>(data, 1 << 20);
}

/// Decodes `data` as a snapshot file (chunks opened with [`fuzz_dek`]) and as a raw payload.
pub fn snapshot(data: &[u8]) {
    let dek = fuzz_dek();
    if let Ok((_, plain)) = decode_file(data, |p, b| dek.open(p, b)) {
        let _ = SnapshotPayload::decode(&plain);
    }
    let _ = SnapshotPayload::decode(data);
}

/// A valid two-record WAL segment sealed with [`fuzz_dek`] (a seed for the corpus).
pub fn seed_wal_segment() -> Vec<u8> {
    use crate::wal::frame::{encode_frame, SegmentHeader};
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let dek = fuzz_dek();
    let mut out = SegmentHeader {
        first_index: 1,
        prev_index: None,
    }
    .encode()
    .to_vec();
    for index in 1..=2u64 {
        let secret = swarm_core::Secret {
            id: swarm_core::Id::from_u128(u128::from(index)),
            meta: Default::default(),
            spec: swarm_core::objects::secret::SecretSpec {
                annotations: swarm_core::Annotations::named(format!("s{index}")),
                data: swarm_core::SecretData::new(b"seed".to_vec()),
                templating: None,
            },
        };
        let entry = crate::types::Entry {
            log_id: crate::wal::log_id(1, 1, index),
            payload: openraft::EntryPayload::Normal(crate::types::Proposal {
                timestamp: swarm_core::Timestamp(index),
                actions: vec![swarm_core::StoreAction::Create(secret.into())],
            }),
        };
        let place = RecordPlace::LogEntry { index, term: 1 };
        if let Ok(sealed) = dek.seal(&place, &crate::codec::encode(&entry), &mut rng) {
            encode_frame(&mut out, index, 1, 1, &sealed);
        }
    }
    out
}

/// A valid snapshot file of an empty store sealed with [`fuzz_dek`] (a seed for the corpus).
pub fn seed_snapshot() -> Vec<u8> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let dek = fuzz_dek();
    let payload = SnapshotPayload {
        meta: crate::types::SnapshotMeta {
            last_log_id: Some(crate::wal::log_id(1, 1, 3)),
            last_membership: Default::default(),
            snapshot_id: "1-1-3-0".into(),
        },
        store: swarm_core::Store::new().snapshot(),
    };
    crate::snapshot::encode_file("1-1-3-0", &payload.encode(), |p, b| {
        dek.seal(p, b, &mut rng)
    })
    .unwrap_or_default()
}
