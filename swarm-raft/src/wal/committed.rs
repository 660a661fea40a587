//! `wal/committed`: the highest log id this node knows to be committed, kept so that a log that
//! lost committed entries (an emptied or deleted segment, a cut tail) refuses the start instead of
//! serving a shorter history.
//!
//! Format 2 (written since the simulated-disk crash tests): two slots of 48 bytes, so that a torn
//! overwrite of one slot leaves the previous value readable in the other.
//!
//! ```text
//! slot (at 0 and at 48, little-endian):
//! 0   8  magic "SWRMCMT2"
//! 8   8  sequence number (the slot with the higher valid one holds the current value)
//! 16  1  1 if a log id follows, 0 if nothing was committed yet
//! 17  8  index | 25 8 term | 33 8 leader node
//! 41  4  CRC32C of bytes 0..41
//! 45  3  zero
//! ```
//!
//! Write number `n` overwrites only slot `n % 2` and fsyncs it; a crash during it may tear that
//! slot (a checksum mismatch) but never the other, whose older value is then used: the file is a
//! lower bound, so an older value only guards a little less. Format 1 (one 37-byte record,
//! `"SWRMCMT1"`, overwritten in place, which relied on a sector being written atomically) is still
//! read and converted (atomically) when the log opens. A file with no valid slot refuses the open.
//!
//! The file is only ever written by the WAL's committed-index writer, with values the flusher
//! hands it *after* the segments holding every entry up to that index were fsynced, so the value on
//! disk never runs ahead of the durable log; it lags behind the value openraft last saved by at
//! most one group commit plus 50 ms (see `wal::flush`), and is brought up to date when the log
//! closes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::StorageFault;
use crate::files::{atomic_write_on, tighten_on};
use crate::types::LogId;
use crate::wal::log_id;

/// Name of the committed-index file inside the WAL directory.
pub const COMMITTED_FILE: &str = "committed";
const MAGIC_V1: [u8; 8] = *b"SWRMCMT1";
const MAGIC: [u8; 8] = *b"SWRMCMT2";
/// Length of a format-1 file.
pub const COMMITTED_LEN_V1: usize = 37;
/// Length of one slot.
pub const SLOT_LEN: usize = 48;
/// Length of the file (format 2: two slots).
pub const COMMITTED_LEN: usize = 2 * SLOT_LEN;

fn put_log_id(out: &mut [u8], committed: Option<LogId>) {
    if let Some(c) = committed {
        out[0] = 1;
        out[1..9].copy_from_slice(&c.index.to_le_bytes());
        out[9..17].copy_from_slice(&c.leader_id.term.to_le_bytes());
        out[17..25].copy_from_slice(&c.leader_id.node_id.to_le_bytes());
    }
}

fn get_log_id(b: &[u8], flag_at: u64) -> Result<Option<LogId>, (u64, &'static str)> {
    let u = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[r]);
        u64::from_le_bytes(a)
    };
    match b[0] {
        0 => Ok(None),
        1 => Ok(Some(log_id(u(9..17), u(17..25), u(1..9)))),
        _ => Err((flag_at, "committed-index presence flag is neither 0 nor 1")),
    }
}

/// Encodes one slot holding `committed` with sequence number `seq`.
pub fn encode_slot(seq: u64, committed: Option<LogId>) -> [u8; SLOT_LEN] {
    let mut out = [0u8; SLOT_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    put_log_id(&mut out[16..41], committed);
    let crc = crc32c::crc32c(&out[0..41]);
    out[41..45].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Encodes a whole file holding `committed` (slot 0, sequence 0; slot 1 empty).
pub fn encode(committed: Option<LogId>) -> [u8; COMMITTED_LEN] {
    let mut out = [0u8; COMMITTED_LEN];
    out[..SLOT_LEN].copy_from_slice(&encode_slot(0, committed));
    out
}

fn decode_slot(b: &[u8], at: u64) -> Result<(u64, Option<LogId>), (u64, &'static str)> {
    if b[0..8] != MAGIC {
        return Err((at, "not a committed-index slot (bad magic)"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[41..45]);
    if crc32c::crc32c(&b[0..41]) != u32::from_le_bytes(crc) {
        return Err((at + 41, "committed-index checksum mismatch"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[8..16]);
    Ok((u64::from_le_bytes(seq), get_log_id(&b[16..41], at + 16)?))
}

/// Decodes a file: the value, the sequence number of the slot holding it, and the format (1 or
/// 2). `Err((offset, reason))` names the failed check.
fn decode_full(bytes: &[u8]) -> Result<(Option<LogId>, u64, u8), (u64, &'static str)> {
    if bytes.len() == COMMITTED_LEN_V1 {
        return decode_v1(bytes).map(|v| (v, 0, 1));
    }
    if bytes.len() != COMMITTED_LEN {
        return Err((0, "the committed-index file has the wrong length"));
    }
    let a = decode_slot(&bytes[..SLOT_LEN], 0);
    let b = decode_slot(&bytes[SLOT_LEN..], SLOT_LEN as u64);
    match (a, b) {
        (Ok((sa, va)), Ok((sb, vb))) => Ok(if sb > sa { (vb, sb, 2) } else { (va, sa, 2) }),
        (Ok((s, v)), Err(_)) | (Err(_), Ok((s, v))) => Ok((v, s, 2)),
        (Err(e), Err(_)) => Err(e),
    }
}

/// Decodes the file's bytes (format 1 or 2); `Err((offset, reason))` names the failed check.
pub fn decode(bytes: &[u8]) -> Result<Option<LogId>, (u64, &'static str)> {
    decode_full(bytes).map(|(v, _, _)| v)
}

fn decode_v1(bytes: &[u8]) -> Result<Option<LogId>, (u64, &'static str)> {
    if bytes[0..8] != MAGIC_V1 {
        return Err((0, "not a committed-index file (bad magic)"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[33..37]);
    if crc32c::crc32c(&bytes[0..33]) != u32::from_le_bytes(crc) {
        return Err((33, "committed-index checksum mismatch"));
    }
    get_log_id(&bytes[8..33], 8)
}

/// The open committed-index file.
pub(crate) struct CommittedFile {
    path: PathBuf,
    file: Box<dyn DiskFile>,
    /// The sequence number of the slot holding the current value.
    seq: Mutex<u64>,
}

impl CommittedFile {
    /// Opens the file in `dir`. If it is absent: with `create`, creates it (durably, holding
    /// "nothing committed"); without, refuses with [`StorageFault::Missing`] and creates nothing.
    /// Returns the file, the value it holds, and whether it existed.
    pub(crate) fn open(
        disk: &dyn Disk,
        dir: &Path,
        create: bool,
    ) -> Result<(CommittedFile, Option<LogId>, bool), StorageFault> {
        let path = dir.join(COMMITTED_FILE);
        let (value, seq, found) = match disk.read(&path) {
            Ok(bytes) => {
                let (value, seq, format) =
                    decode_full(&bytes).map_err(|(o, r)| StorageFault::corrupt(&path, o, r))?;
                tighten_on(disk, &path, 0o600)?;
                if format == 1 {
                    // Converted atomically: the old value or the new file, never neither.
                    atomic_write_on(disk, &path, &encode(value))?;
                }
                (value, seq, true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
                return Err(StorageFault::Missing {
                    path,
                    what:
                        "committed-index file missing, but the directory holds a raft log or state"
                            .into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Created atomically (temporary file, fsync, rename, directory fsync): a crash
                // leaves no file or a whole one.
                atomic_write_on(disk, &path, &encode(None))?;
                (None, 0, false)
            }
            Err(e) => return Err(StorageFault::io("read", &path, e)),
        };
        let file = disk
            .open(&path, OpenMode::Write)
            .map_err(|e| StorageFault::io("open", &path, e))?;
        let f = CommittedFile {
            path,
            file,
            seq: Mutex::new(seq),
        };
        Ok((f, value, found))
    }

    /// Overwrites the value (in the slot not holding the current one) and fsyncs it.
    pub(crate) fn write(&self, committed: Option<LogId>) -> std::io::Result<()> {
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        let next = *seq + 1;
        let at = (next % 2) * SLOT_LEN as u64;
        self.file.write_all_at(&encode_slot(next, committed), at)?;
        self.file.sync_data()?;
        *seq = next;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_every_flipped_byte_of_a_lone_slot() {
        for v in [None, Some(log_id(3, 2, 41))] {
            let b = encode(v);
            assert_eq!(decode(&b), Ok(v));
            for i in 0..45 {
                let mut d = b;
                d[i] ^= 0x10;
                assert!(decode(&d).is_err(), "byte {i}");
            }
            assert!(decode(&b[..COMMITTED_LEN - 1]).is_err());
        }
    }

    #[test]
    fn the_newer_valid_slot_wins_and_a_torn_one_falls_back_to_the_other() {
        let (old, new) = (Some(log_id(1, 1, 5)), Some(log_id(1, 1, 9)));
        let mut b = [0u8; COMMITTED_LEN];
        b[..SLOT_LEN].copy_from_slice(&encode_slot(2, old));
        b[SLOT_LEN..].copy_from_slice(&encode_slot(3, new));
        assert_eq!(decode(&b), Ok(new));
        for cut in SLOT_LEN..COMMITTED_LEN - 3 {
            let mut torn = b;
            torn[cut..].fill(0);
            assert_eq!(decode(&torn), Ok(old), "torn at {cut}");
        }
    }

    #[test]
    fn format_1_is_still_read() {
        let mut v1 = [0u8; COMMITTED_LEN_V1];
        v1[0..8].copy_from_slice(&MAGIC_V1);
        v1[8] = 1;
        v1[9..17].copy_from_slice(&41u64.to_le_bytes());
        v1[17..25].copy_from_slice(&3u64.to_le_bytes());
        v1[25..33].copy_from_slice(&2u64.to_le_bytes());
        let crc = crc32c::crc32c(&v1[0..33]);
        v1[33..37].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&v1), Ok(Some(log_id(3, 2, 41))));
        v1[20] ^= 1;
        assert!(decode(&v1).is_err());
    }
}
