//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/{wal_segment,snapshot}.rs`) and the
//! corpus replay test. Each accepts any bytes and must never panic.
//!
//! Each target feeds its bytes twice: once raw (the checksums reject nearly everything, which
//! tests the outer checks), and once to a builder that takes them as frame bodies, lengths,
//! indexes and snapshot header fields and writes a file whose checksums and seals are valid
//! (sealed with [`fuzz_dek`]), so the fuzzer explores the decoders *behind* the checksums: index
//! order, torn-tail rules, the length limits, record places, and the bincode entry and snapshot
//! payload decoders.

use swarm_secrets::{Dek, RecordPlace};

use crate::snapshot::{decode_file, SnapshotPayload};
use crate::wal::frame::{decode_frame, scan_segment, FrameResult};

/// The fixed key the fuzz corpora are sealed with (fuzzing only).
pub fn fuzz_dek() -> Dek {
    Dek::from_bytes([7; 32])
}

/// Reads fuzzer bytes as structured input (exhausted input reads as zeros).
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Builds a WAL segment from fuzzer bytes with valid checksums and seals. Layout of the input:
/// `first index u8 | has prev u8`, then per frame `ctl u8 | body len u16 | body`, where `ctl`
/// picks: bit 0 an index off the expected one (by bits 1..3), bit 4 the body used raw as the
/// sealed record (else sealed as the plaintext), bit 5 a fuzzer length field (u32, header
/// checksum recomputed), bits 6..7 the term. A last `u16` cuts the file (0 = no cut).
pub fn build_wal_segment(data: &[u8]) -> Vec<u8> {
    use crate::wal::frame::{encode_frame, SegmentHeader, HEADER_LEN};
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let dek = fuzz_dek();
    let mut inp = Input(data);
    let first = u64::from(inp.u8());
    let prev = (inp.u8() & 1 == 1).then(|| first.wrapping_sub(1));
    let mut out = SegmentHeader {
        first_index: first,
        prev_index: prev,
    }
    .encode()
    .to_vec();
    let mut index = first;
    let mut frames = 0;
    while !inp.is_empty() && frames < 64 {
        let ctl = inp.u8();
        let len = usize::from(inp.u16()) % 4096;
        let body = inp.bytes(len);
        let at_index = if ctl & 1 == 1 {
            index.wrapping_add(u64::from((ctl >> 1) & 7))
        } else {
            index
        };
        let term = u64::from(ctl >> 6);
        let place = RecordPlace::LogEntry {
            index: at_index,
            term,
        };
        let sealed = if ctl & 0x10 != 0 {
            body.to_vec()
        } else {
            dek.seal(&place, body, &mut rng).unwrap_or_default()
        };
        let start = out.len();
        encode_frame(&mut out, at_index, term, 1, &sealed);
        if ctl & 0x20 != 0 {
            out[start..start + 4].copy_from_slice(&inp.u32().to_le_bytes());
            let h = crc32c::crc32c(&out[start..start + 8]);
            out[start + 8..start + 12].copy_from_slice(&h.to_le_bytes());
        }
        index = index.wrapping_add(1);
        frames += 1;
    }
    let cut = usize::from(inp.u16());
    if cut != 0 {
        out.truncate(HEADER_LEN + cut % (out.len() - HEADER_LEN + 1));
    }
    out
}

/// Scans `data` as a WAL segment and opens every valid frame's record with [`fuzz_dek`]; then
/// does the same with the segment [`build_wal_segment`] makes of `data`.
pub fn wal_segment(data: &[u8]) {
    decode_wal_segment(data);
    decode_wal_segment(&build_wal_segment(data));
    let _ = crate::wal::committed::decode(data);
}

fn decode_wal_segment(data: &[u8]) {
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

/// Decodes `data` as a snapshot file (chunks opened with [`fuzz_dek`]) and as a raw payload; then
/// the file [`build_snapshot`] makes of `data`.
pub fn snapshot(data: &[u8]) {
    let dek = fuzz_dek();
    for file in [data, &build_snapshot(data)] {
        if let Ok((_, plain)) = decode_file(file, |p, b| dek.open(p, b)) {
            let _ = SnapshotPayload::decode(&plain);
        }
    }
    let _ = SnapshotPayload::decode(data);
}

/// Builds a snapshot file from fuzzer bytes with valid checksums and seals. Input: `ctl u8 |
/// id len u8 | id | chunk count u8 | plain len u32`, then per chunk `len u16 | plaintext`; `ctl`
/// bit 0 uses the header's counts as given (else the true ones), bit 1 seals chunks for a wrong
/// place (chunk index + 1), bit 2 appends the rest of the input after the last chunk.
pub fn build_snapshot(data: &[u8]) -> Vec<u8> {
    use crate::snapshot::{SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let dek = fuzz_dek();
    let mut inp = Input(data);
    let ctl = inp.u8();
    let id_len = usize::from(inp.u8() % 64);
    let id = String::from_utf8_lossy(inp.bytes(id_len)).into_owned();
    let claimed_chunks = u32::from(inp.u8() % 8);
    let claimed_len = u64::from(inp.u32());
    let mut chunks: Vec<&[u8]> = Vec::new();
    while !inp.is_empty() && chunks.len() < 8 {
        let len = usize::from(inp.u16()) % 8192;
        chunks.push(inp.bytes(len));
    }
    let (n, plain_len) = if ctl & 1 == 1 {
        (claimed_chunks, claimed_len)
    } else {
        (
            chunks.len() as u32,
            chunks.iter().map(|c| c.len() as u64).sum(),
        )
    };
    let mut out = Vec::new();
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&plain_len.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let count = chunks.len() as u32;
    for (i, c) in chunks.into_iter().enumerate() {
        let i = i as u32 + u32::from(ctl & 2 != 0);
        let place = RecordPlace::Snapshot {
            id: id.clone(),
            chunk: i,
            last: i + 1 == count,
        };
        let sealed = dek.seal(&place, c, &mut rng).unwrap_or_default();
        let len = (sealed.len() as u32).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&len), &sealed).to_le_bytes());
        out.extend_from_slice(&sealed);
    }
    if ctl & 4 != 0 {
        out.extend_from_slice(inp.0);
    }
    out
}

/// Input for [`build_wal_segment`] whose two frames hold valid entries at indexes 1 and 2 (a
/// seed that starts the fuzzer behind the checksums and the seal).
pub fn seed_wal_frames() -> Vec<u8> {
    let mut out = vec![1u8, 0];
    for index in 1..=2u64 {
        let plain = crate::codec::encode(&seed_entry(index));
        out.push(0x40); // term 1, sealed, expected index
        out.extend_from_slice(&(plain.len() as u16).to_le_bytes());
        out.extend_from_slice(&plain);
    }
    out
}

/// Input for [`build_snapshot`] whose one chunk holds a valid payload of an empty store.
pub fn seed_snapshot_build() -> Vec<u8> {
    let plain = seed_payload().encode();
    let mut out = vec![0u8, 7];
    out.extend_from_slice(b"1-1-3-0");
    out.extend_from_slice(&[1, 0, 0, 0, 0]);
    out.extend_from_slice(&(plain.len() as u16).to_le_bytes());
    out.extend_from_slice(&plain);
    out
}

fn seed_entry(index: u64) -> crate::types::Entry {
    let secret = swarm_core::Secret {
        id: swarm_core::Id::from_u128(u128::from(index)),
        meta: Default::default(),
        spec: swarm_core::objects::secret::SecretSpec {
            annotations: swarm_core::Annotations::named(format!("s{index}")),
            data: swarm_core::SecretData::new(b"seed".to_vec()),
            templating: None,
        },
    };
    crate::types::Entry {
        log_id: crate::wal::log_id(1, 1, index),
        payload: openraft::EntryPayload::Normal(crate::types::Proposal {
            timestamp: swarm_core::Timestamp(index),
            actions: vec![swarm_core::StoreAction::Create(secret.into())],
        }),
    }
}

fn seed_payload() -> SnapshotPayload {
    SnapshotPayload {
        meta: crate::types::SnapshotMeta {
            last_log_id: Some(crate::wal::log_id(1, 1, 3)),
            last_membership: Default::default(),
            snapshot_id: "1-1-3-0".into(),
        },
        store: swarm_core::Store::new().snapshot(),
    }
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
        let entry = seed_entry(index);
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
    let payload = seed_payload();
    crate::snapshot::encode_file("1-1-3-0", &payload.encode(), |p, b| {
        dek.seal(p, b, &mut rng)
    })
    .unwrap_or_default()
}
