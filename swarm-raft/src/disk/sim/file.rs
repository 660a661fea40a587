//! The open files of a [`SimDisk`]: each operation goes to the shared in-memory state, counts
//! for [`SimDisk::arm_crash`], honours the quota and the injected faults.

use std::io;
use std::path::PathBuf;

use super::{apply, FileOp, SimDisk, State};
use crate::disk::DiskFile;

/// An open file of a [`SimDisk`].
pub(super) struct SimFile {
    pub(super) disk: SimDisk,
    pub(super) ino: u64,
    pub(super) path: PathBuf,
    pub(super) read: bool,
}

impl std::fmt::Debug for SimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFile").field("path", &self.path).finish()
    }
}

impl SimFile {
    pub(super) fn push(st: &mut State, ino: u64, op: FileOp) {
        if let Some(node) = st.inodes.get_mut(&ino) {
            apply(&mut node.current, &op);
            node.pending.push(op);
        }
    }
}

impl DiskFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.disk.lock();
        self.disk.tick(&mut st);
        let errno = st.errno;
        State::take_fault(&mut st.fail_writes, errno)?;
        let cur = st
            .inodes
            .get(&self.ino)
            .map_or(0, |n| n.current.len() as u64);
        let mut n = buf.len();
        let mut full = false;
        if let Some(quota) = st.quota {
            let room = quota.saturating_sub(st.used());
            let growth = (offset + buf.len() as u64).saturating_sub(cur);
            if growth > room {
                // What fits: up to the current end plus the room left.
                n = (cur + room).saturating_sub(offset).min(n as u64) as usize;
                full = true;
            }
        }
        if n > 0 {
            let op = FileOp::Write {
                offset,
                bytes: buf[..n].to_vec(),
            };
            SimFile::push(&mut st, self.ino, op);
        }
        if full {
            return Err(io::Error::from_raw_os_error(28));
        }
        Ok(())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if !self.read {
            return Err(io::Error::from_raw_os_error(9));
        }
        let st = self.disk.lock();
        let content = st
            .inodes
            .get(&self.ino)
            .map(|n| &n.current[..])
            .unwrap_or(&[]);
        let at = offset as usize;
        match content.get(at..at + buf.len()) {
            Some(b) => {
                buf.copy_from_slice(b);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            )),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.disk.lock();
        self.disk.tick(&mut st);
        SimFile::push(&mut st, self.ino, FileOp::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.disk.run_hook(&self.path);
        let mut st = self.disk.lock();
        self.disk.tick(&mut st);
        st.sync_inode(self.ino)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}
