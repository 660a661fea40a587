//! [`InlineDisk`]: another disk's files, with the storage in inline mode.

use std::io;
use std::path::{Path, PathBuf};

use super::{Disk, DiskFile, OpenMode};

/// The files of `D` (usually [`super::OsDisk`]) with [`Disk::inline`] `true`: the WAL's flusher
/// and committed-index writer and the snapshot and key-file work run on the calling task instead
/// of OS threads, so a deterministic simulation (one thread, virtual time) schedules every step
/// while the data stays in a real directory. Each call blocks the task for the file operation,
/// which is what a simulation wants and a production node does not.
#[derive(Clone, Debug, Default)]
pub struct InlineDisk<D>(pub D);

impl<D: Disk> Disk for InlineDisk<D> {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        self.0.open(path, mode)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.0.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.0.list_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()> {
        self.0.create_dir_all(dir, mode)
    }
    fn sync_dir(&self, dir: &Path) -> Result<(), (&'static str, io::Error)> {
        self.0.sync_dir(dir)
    }
    fn mode(&self, path: &Path) -> io::Result<u32> {
        self.0.mode(path)
    }
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.0.set_mode(path, mode)
    }
    fn inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::OsDisk;

    #[test]
    fn delegates_files_and_runs_inline() {
        let dir = tempfile::tempdir().unwrap();
        let disk = InlineDisk(OsDisk);
        assert!(disk.inline());
        assert!(!OsDisk.inline());
        let path = dir.path().join("f");
        let f = disk
            .open(&path, OpenMode::CreateTruncate { read: true })
            .unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert_eq!(disk.read(&path).unwrap(), b"abc");
        assert_eq!(disk.list_dir(dir.path()).unwrap(), vec![path]);
    }
}
