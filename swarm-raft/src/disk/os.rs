//! [`OsDisk`]: the real filesystem behind the [`Disk`] seam, with the calls swarm-raft made
//! before the seam existed (positional writes and reads, `fdatasync`/`fsync`, a directory
//! fsync through an opened directory, owner-only modes).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Disk, DiskFile, OpenMode};

/// The real filesystem (production). Stateless; any number of handles share the OS's files.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsDisk;

impl DiskFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
}

impl Disk for OsDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let mut opts = OpenOptions::new();
        match mode {
            OpenMode::ReadWrite => opts.read(true).write(true),
            OpenMode::Write => opts.write(true),
            OpenMode::CreateTruncate { read } => {
                opts.read(read).write(true).create(true).truncate(true)
            }
            OpenMode::CreateNew => opts.write(true).create_new(true),
        };
        // Owner-only: the key file may hold the KEK (autolock off); nothing here is for others.
        opts.mode(0o600);
        Ok(Box::new(opts.open(path)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for ent in fs::read_dir(dir)? {
            out.push(ent?.path());
        }
        Ok(out)
    }

    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut b, mode);
        b.create(dir)
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), (&'static str, io::Error)> {
        let d = File::open(dir).map_err(|e| ("open directory", e))?;
        d.sync_all().map_err(|e| ("fsync directory", e))
    }

    fn mode(&self, path: &Path) -> io::Result<u32> {
        Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
}
