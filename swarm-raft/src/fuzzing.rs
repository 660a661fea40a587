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
