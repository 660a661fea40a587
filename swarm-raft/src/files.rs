//! Small durable files: atomic replacement (write a temporary file, fsync it, rename it over the
//! old one, fsync the directory) and the `raft-state` file that holds the vote and the purge point.
//!
//! Each function has an `_on` variant that works on any [`Disk`]; the plain ones use the real
//! filesystem ([`OsDisk`]; swarm-node's own files use them).
//!
//! **Every file swarm-raft writes is 0600 and every directory 0700**, including ones that already
//! existed with wider modes (they are tightened when opened): the key file may hold the KEK and the
//! log's clear fields tell who wrote what when.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::disk::{Disk, OpenMode, OsDisk};
use crate::error::StorageFault;
use crate::types::{LogId, Vote};

/// Name of the file holding the vote and the last purged log id.
pub const RAFT_STATE_FILE: &str = "raft-state";
const STATE_MAGIC: [u8; 8] = *b"SWRMSTA1";

/// Replaces `path` with `bytes` atomically and durably: after a crash the file holds either the old
/// or the new content, never a mix. On the real filesystem ([`atomic_write_on`] for any disk).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StorageFault> {
    atomic_write_on(&OsDisk, path, bytes)
}

/// [`atomic_write`] on `disk`.
pub fn atomic_write_on(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<(), StorageFault> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tmp_path(path);
    // Owner-only (0600): the key file may hold the KEK (autolock off).
    let f = disk
        .open(&tmp, OpenMode::CreateTruncate { read: false })
        .map_err(|e| StorageFault::io("create", &tmp, e))?;
    f.write_all_at(bytes, 0)
        .map_err(|e| StorageFault::io("write", &tmp, e))?;
    f.sync_all()
        .map_err(|e| StorageFault::io("fsync", &tmp, e))?;
    drop(f);
    // A leftover temporary file from an earlier crash keeps its mode when reopened: tighten it.
    tighten_on(disk, &tmp, 0o600)?;
    disk.rename(&tmp, path)
        .map_err(|e| StorageFault::io("rename", path, e))?;
    sync_dir_on(disk, dir)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageFault> {
    sync_dir_on(&OsDisk, dir)
}

/// [`sync_dir`] on `disk`.
pub fn sync_dir_on(disk: &dyn Disk, dir: &Path) -> Result<(), StorageFault> {
    disk.sync_dir(dir)
        .map_err(|(op, e)| StorageFault::io(op, dir, e))
}

/// Creates a directory (and missing parents) owner-only, and tightens it to 0700 if it existed.
pub fn ensure_dir(dir: &Path) -> Result<(), StorageFault> {
    ensure_dir_on(&OsDisk, dir)
}

/// [`ensure_dir`] on `disk`.
pub fn ensure_dir_on(disk: &dyn Disk, dir: &Path) -> Result<(), StorageFault> {
    disk.create_dir_all(dir, 0o700)
        .map_err(|e| StorageFault::io("create directory", dir, e))?;
    tighten_on(disk, dir, 0o700)
}

/// Sets `path`'s permission bits to `mode` unless they already are (files 0600, directories 0700).
/// A missing path is left alone.
pub fn tighten(path: &Path, mode: u32) -> Result<(), StorageFault> {
    tighten_on(&OsDisk, path, mode)
}

/// [`tighten`] on `disk`.
pub fn tighten_on(disk: &dyn Disk, path: &Path, mode: u32) -> Result<(), StorageFault> {
    let current = match disk.mode(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageFault::io("stat", path, e)),
    };
    if current == mode {
        return Ok(());
    }
    disk.set_mode(path, mode)
        .map_err(|e| StorageFault::io("restrict the permissions of", path, e))
}

/// Reads a whole file; `Ok(None)` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StorageFault> {
    read_optional_on(&OsDisk, path)
}

/// [`read_optional`] on `disk`.
pub fn read_optional_on(disk: &dyn Disk, path: &Path) -> Result<Option<Vec<u8>>, StorageFault> {
    match disk.read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageFault::io("read", path, e)),
    }
}

/// What `raft-state` holds. Neither field is secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStateFile {
    /// The last vote saved.
    pub vote: Option<Vote>,
    /// The last purged log id.
    pub last_purged: Option<LogId>,
}

impl RaftStateFile {
    /// Encodes: magic, CRC32C of the body, body length, body (bincode).
    pub fn encode(&self) -> Vec<u8> {
        let body = codec::encode(self);
        let mut out = Vec::with_capacity(16 + body.len());
        out.extend_from_slice(&STATE_MAGIC);
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes, checking magic, length and checksum. `Err((offset, reason))`.
    pub fn decode(bytes: &[u8]) -> Result<RaftStateFile, (u64, String)> {
        if bytes.len() < 16 || bytes[0..8] != STATE_MAGIC {
            return Err((0, "not a raft-state file (bad magic or too short)".into()));
        }
        let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let body = &bytes[16..];
        if body.len() != len {
            return Err((
                12,
                format!(
                    "length field says {len} bytes, the file holds {}",
                    body.len()
                ),
            ));
        }
        if crc32c::crc32c(body) != crc {
            return Err((16, "checksum mismatch".into()));
        }
        codec::decode(body, 4096).map_err(|e| (16, e))
    }

    /// Loads from `dir`, or the default if the file does not exist.
    pub fn load(dir: &Path) -> Result<RaftStateFile, StorageFault> {
        RaftStateFile::load_on(&OsDisk, dir)
    }

    /// [`RaftStateFile::load`] from `disk`.
    pub fn load_on(disk: &dyn Disk, dir: &Path) -> Result<RaftStateFile, StorageFault> {
        let path = dir.join(RAFT_STATE_FILE);
        match read_optional_on(disk, &path)? {
            None => Ok(RaftStateFile::default()),
            Some(b) => {
                RaftStateFile::decode(&b).map_err(|(o, r)| StorageFault::corrupt(&path, o, r))
            }
        }
    }

    /// Writes atomically into `dir`.
    pub fn store(&self, dir: &Path) -> Result<(), StorageFault> {
        self.store_on(&OsDisk, dir)
    }

    /// [`RaftStateFile::store`] on `disk`.
    pub fn store_on(&self, disk: &dyn Disk, dir: &Path) -> Result<(), StorageFault> {
        atomic_write_on(disk, &dir.join(RAFT_STATE_FILE), &self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn state_file_round_trips_and_detects_damage() {
        let s = RaftStateFile {
            vote: Some(Vote::new(3, 1)),
            last_purged: None,
        };
        let mut b = s.encode();
        assert_eq!(RaftStateFile::decode(&b), Ok(s));
        let n = b.len();
        b[n - 1] ^= 1;
        assert!(RaftStateFile::decode(&b).is_err());
        assert!(RaftStateFile::decode(&b[..n - 1]).is_err());
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "files written atomically are owner-only");
        }
    }
}
