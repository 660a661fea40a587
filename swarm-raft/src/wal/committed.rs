//! `wal/committed`: the highest log id this node knows to be committed, kept so that a log that
//! lost committed entries (an emptied or deleted segment, a cut tail) refuses the start instead of
//! serving a shorter history.
//!
//! ```text
//! 0   8  magic "SWRMCMT1"
//! 8   1  1 if a log id follows, 0 if nothing was committed yet
//! 9   8  index | 17 8 term | 25 8 leader node (little-endian)
//! 33  4  CRC32C of bytes 0..33
//! ```
//!
//! The file is overwritten in place (37 bytes, inside one sector). It is only ever written by the
//! WAL's committed-index thread, with values the flusher hands it *after* the segments holding
//! every entry up to that index were fsynced, so the value on disk never runs ahead of the durable
//! log; it lags behind the value openraft last saved by at most one group commit plus 50 ms (see
//! `wal::flush`), and is brought up to date when the log closes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::StorageFault;
use crate::files::{create_mode_0600, sync_dir, tighten};
use crate::types::LogId;
use crate::wal::log_id;

/// Name of the committed-index file inside the WAL directory.
pub const COMMITTED_FILE: &str = "committed";
const MAGIC: [u8; 8] = *b"SWRMCMT1";
/// Length of the file.
pub const COMMITTED_LEN: usize = 37;

/// Encodes the file's bytes.
pub fn encode(committed: Option<LogId>) -> [u8; COMMITTED_LEN] {
    let mut out = [0u8; COMMITTED_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    if let Some(c) = committed {
        out[8] = 1;
        out[9..17].copy_from_slice(&c.index.to_le_bytes());
        out[17..25].copy_from_slice(&c.leader_id.term.to_le_bytes());
        out[25..33].copy_from_slice(&c.leader_id.node_id.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[0..33]);
    out[33..37].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the file's bytes; `Err((offset, reason))` names the failed check.
pub fn decode(bytes: &[u8]) -> Result<Option<LogId>, (u64, &'static str)> {
    if bytes.len() != COMMITTED_LEN {
        return Err((0, "the committed-index file has the wrong length"));
    }
    if bytes[0..8] != MAGIC {
        return Err((0, "not a committed-index file (bad magic)"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[33..37]);
    if crc32c::crc32c(&bytes[0..33]) != u32::from_le_bytes(crc) {
        return Err((33, "committed-index checksum mismatch"));
    }
    let u = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[r]);
        u64::from_le_bytes(a)
    };
    match bytes[8] {
        0 => Ok(None),
        1 => Ok(Some(log_id(u(17..25), u(25..33), u(9..17)))),
        _ => Err((8, "committed-index presence flag is neither 0 nor 1")),
    }
}

/// The open committed-index file.
pub(crate) struct CommittedFile {
    path: PathBuf,
    file: File,
}

impl CommittedFile {
    /// Opens the file in `dir`. If it is absent: with `create`, creates it (durably, holding
    /// "nothing committed"); without, refuses with [`StorageFault::Missing`] and creates nothing.
    /// Returns the file, the value it holds, and whether it existed.
    pub(crate) fn open(
        dir: &Path,
        create: bool,
    ) -> Result<(CommittedFile, Option<LogId>, bool), StorageFault> {
        let path = dir.join(COMMITTED_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let value = decode(&bytes).map_err(|(o, r)| StorageFault::corrupt(&path, o, r))?;
                tighten(&path, 0o600)?;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| StorageFault::io("open", &path, e))?;
                Ok((CommittedFile { path, file }, value, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
                Err(StorageFault::Missing {
                    path,
                    what:
                        "committed-index file missing, but the directory holds a raft log or state"
                            .into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut opts = OpenOptions::new();
                opts.write(true).create_new(true);
                create_mode_0600(&mut opts);
                let file = opts
                    .open(&path)
                    .map_err(|e| StorageFault::io("create", &path, e))?;
                let f = CommittedFile { path, file };
                f.write(None)
                    .map_err(|e| StorageFault::io("write", &f.path, e))?;
                sync_dir(dir)?;
                Ok((f, None, false))
            }
            Err(e) => Err(StorageFault::io("read", &path, e)),
        }
    }

    /// Overwrites the value and fsyncs it.
    pub(crate) fn write(&self, committed: Option<LogId>) -> std::io::Result<()> {
        self.file.write_all_at(&encode(committed), 0)?;
        self.file.sync_data()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_every_flipped_byte() {
        for v in [None, Some(log_id(3, 2, 41))] {
            let b = encode(v);
            assert_eq!(decode(&b), Ok(v));
            for i in 0..b.len() {
                let mut d = b;
                d[i] ^= 0x10;
                assert!(decode(&d).is_err(), "byte {i}");
            }
            assert!(decode(&b[..36]).is_err());
        }
    }
}
