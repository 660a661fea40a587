//! Snapshot files and snapshot payloads, as pure functions over bytes (fuzzed by
//! `fuzz/fuzz_targets/snapshot.rs`).
//!
//! A snapshot's plaintext ([`SnapshotPayload`]: openraft's metadata + every store object,
//! secrets included) is what travels to followers (openraft chunks it, at most
//! `snapshot_max_chunk_size` bytes per message; the transport encrypts it). On disk it is always
//! sealed, in chunks, so damage is reported with the chunk's offset:
//!
//! ```text
//! header:  magic "SWRMSNP1" | version u32 | id_len u32 | id (UTF-8) | chunks u32 | plain_len u64
//!          | CRC32C of the header bytes before it (u32)           (integers little-endian)
//! chunks:  len u32 | CRC32C(len ++ body) u32 | body = sealed record,
//!          RecordPlace::Snapshot { id, chunk: i, last: i == chunks - 1 }
//! ```
//!
//! Every length is checked against a limit before anything is allocated for it.

use serde::{Deserialize, Serialize};
use swarm_core::StoreSnapshot;
use swarm_secrets::{RecordPlace, SecretBytes};

use crate::codec;
use crate::types::SnapshotMeta;

/// Snapshot file magic.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SWRMSNP1";
/// Snapshot file format version.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Plaintext bytes per sealed chunk on disk.
pub const CHUNK_PLAIN_BYTES: usize = 1024 * 1024;
/// Largest sealed chunk accepted on read.
pub const MAX_CHUNK_BYTES: usize = CHUNK_PLAIN_BYTES + 4096;
/// Largest snapshot plaintext accepted (1 GiB), on disk and from a leader.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;
const MAX_ID_BYTES: usize = 1024;

/// What a snapshot holds: openraft's metadata and the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPayload {
    /// Last log id included, last membership, snapshot id.
    pub meta: SnapshotMeta,
    /// Every object of the store.
    pub store: StoreSnapshot,
}

impl SnapshotPayload {
    /// Encodes with bincode.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes untrusted bytes (a file or a leader's transfer), refusing more than
    /// [`MAX_SNAPSHOT_BYTES`] before allocating.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotPayload, String> {
        let p: SnapshotPayload = codec::decode(bytes, MAX_SNAPSHOT_BYTES)?;
        if p.store.format != swarm_core::store::SNAPSHOT_FORMAT {
            return Err(format!(
                "store snapshot format {} is not supported",
                p.store.format
            ));
        }
        Ok(p)
    }
}

/// Why a snapshot file could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum SnapshotFileError {
    /// Structural damage at a byte offset.
    Corrupt {
        /// Offset of the bad field or chunk.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A chunk's checksum is right but it does not open (modified, moved, unknown key).
    Tampered {
        /// Offset of the chunk.
        offset: u64,
        /// What swarm-secrets found.
        source: swarm_secrets::Error,
    },
}

/// Seals `plain` into a snapshot file image. `seal(place, bytes)` seals one chunk.
pub fn encode_file(
    id: &str,
    plain: &[u8],
    mut seal: impl FnMut(&RecordPlace, &[u8]) -> Result<Vec<u8>, swarm_secrets::Error>,
) -> Result<Vec<u8>, swarm_secrets::Error> {
    let chunks: Vec<&[u8]> = if plain.is_empty() {
        vec![&[][..]]
    } else {
        plain.chunks(CHUNK_PLAIN_BYTES).collect()
    };
    let mut out = Vec::with_capacity(plain.len() + chunks.len() * 128 + 64);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    out.extend_from_slice(&(plain.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        let place = RecordPlace::Snapshot {
            id: id.to_string(),
            chunk: i as u32,
            last: i + 1 == n,
        };
        let sealed = seal(&place, c)?;
        let len = (sealed.len() as u32).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&len), &sealed).to_le_bytes());
        out.extend_from_slice(&sealed);
    }
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SnapshotFileError> {
        let s = self
            .b
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| SnapshotFileError::Corrupt {
                offset: self.pos as u64,
                reason: format!("file ends inside the {what}"),
            })?;
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, SnapshotFileError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, SnapshotFileError> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

/// Parses and opens a snapshot file image: returns its id and plaintext. `open(place, record)`
/// opens one chunk.
pub fn decode_file(
    bytes: &[u8],
    mut open: impl FnMut(&RecordPlace, &[u8]) -> Result<SecretBytes, swarm_secrets::Error>,
) -> Result<(String, Vec<u8>), SnapshotFileError> {
    let corrupt = |offset: usize, reason: &str| SnapshotFileError::Corrupt {
        offset: offset as u64,
        reason: reason.into(),
    };
    let mut r = Reader { b: bytes, pos: 0 };
    if r.take(8, "magic")? != SNAPSHOT_MAGIC {
        return Err(corrupt(0, "not a swarm snapshot file (bad magic)"));
    }
    if r.u32("version")? != SNAPSHOT_VERSION {
        return Err(corrupt(8, "unknown snapshot format version"));
    }
    let id_len = r.u32("id length")? as usize;
    if id_len > MAX_ID_BYTES {
        return Err(corrupt(12, "snapshot id is longer than the limit"));
    }
    let id = std::str::from_utf8(r.take(id_len, "id")?)
        .map_err(|_| corrupt(16, "snapshot id is not UTF-8"))?;
    let chunks = r.u32("chunk count")? as u64;
    let plain_len = r.u64("length")?;
    let header_end = r.pos;
    if crc32c::crc32c(&bytes[..header_end]) != r.u32("header checksum")? {
        return Err(corrupt(header_end, "header checksum mismatch"));
    }
    if plain_len > MAX_SNAPSHOT_BYTES
        || chunks == 0
        || chunks > MAX_SNAPSHOT_BYTES / CHUNK_PLAIN_BYTES as u64 + 1
    {
        return Err(corrupt(
            header_end - 12,
            "chunk count or length outside the limits",
        ));
    }
    let mut plain = Vec::with_capacity((plain_len as usize).min(bytes.len()));
    for i in 0..chunks {
        let at = r.pos;
        let len = r.u32("chunk length")? as usize;
        if len > MAX_CHUNK_BYTES {
            return Err(corrupt(at, "chunk length exceeds the limit"));
        }
        let crc = r.u32("chunk checksum")?;
        let body = r.take(len, "chunk")?;
        if crc32c::crc32c_append(crc32c::crc32c(&bytes[at..at + 4]), body) != crc {
            return Err(corrupt(at, "chunk checksum mismatch"));
        }
        let place = RecordPlace::Snapshot {
            id: id.to_string(),
            chunk: i as u32,
            last: i + 1 == chunks,
        };
        let opened = open(&place, body).map_err(|source| SnapshotFileError::Tampered {
            offset: at as u64,
            source,
        })?;
        plain.extend_from_slice(opened.expose());
        if plain.len() as u64 > plain_len {
            return Err(corrupt(at, "chunks hold more bytes than the header says"));
        }
    }
    if r.pos != bytes.len() {
        return Err(corrupt(r.pos, "bytes after the last chunk"));
    }
    if plain.len() as u64 != plain_len {
        return Err(corrupt(
            r.pos,
            "chunks hold fewer bytes than the header says",
        ));
    }
    Ok((id.to_string(), plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use swarm_secrets::Dek;

    #[test]
    fn file_round_trips_and_reports_damage_offsets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let dek = Dek::generate(&mut rng);
        let plain: Vec<u8> = (0..(CHUNK_PLAIN_BYTES * 2 + 10)).map(|i| i as u8).collect();
        let file = encode_file("1-2-3", &plain, |p, b| dek.seal(p, b, &mut rng)).unwrap();
        let (id, back) = decode_file(&file, |p, b| dek.open(p, b)).unwrap();
        assert_eq!((id.as_str(), back == plain), ("1-2-3", true));

        // A truncated file (last chunk dropped) is detected.
        let cut = file.len() - 50;
        assert!(matches!(
            decode_file(&file[..cut], |p, b| dek.open(p, b)),
            Err(SnapshotFileError::Corrupt { .. })
        ));
        // A flipped ciphertext byte with a recomputed checksum is tampering.
        let mut t = file.clone();
        let n = t.len();
        t[n - 20] ^= 1;
        let first_chunk = 8 + 4 + 4 + 5 + 4 + 8 + 4;
        // recompute the checksum of the last chunk
        let mut at = first_chunk;
        for _ in 0..2 {
            let len = u32::from_le_bytes(t[at..at + 4].try_into().unwrap()) as usize;
            at += 8 + len;
        }
        let len = u32::from_le_bytes(t[at..at + 4].try_into().unwrap()) as usize;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&t[at..at + 4]), &t[at + 8..at + 8 + len]);
        t[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        match decode_file(&t, |p, b| dek.open(p, b)) {
            Err(SnapshotFileError::Tampered { offset, .. }) => assert_eq!(offset, at as u64),
            other => panic!("{other:?}"),
        }
    }
}
