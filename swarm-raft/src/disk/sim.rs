//! [`SimDisk`]: an in-memory [`Disk`] with a crash model, for crash tests and deterministic
//! simulation (feature `sim`).
//!
//! # Crash model
//! * Every file (an inode) has *durable* content and a list of unsynced operations (writes and
//!   length changes) on top of it; reads see the result of all of them. A successful
//!   `sync_data`/`sync_all` makes every pending operation of that file durable. A *failed* fsync
//!   (injected) settles each pending operation at random, durable or lost for good, while reads
//!   keep seeing the new bytes: as on Linux, the kernel may drop dirty pages and not report it
//!   again, so only a rewrite and a later successful fsync make them durable.
//! * Creating, renaming and removing a file change the namespace at once; each such operation is
//!   durable only once its directory is fsynced ([`Disk::sync_dir`]). Directories themselves are
//!   durable when created (swarm-raft creates them once, before any file in them).
//! * [`SimDisk::crash_image`] returns the disk a power cut would leave, as a new `SimDisk` (open
//!   handles keep writing to the old one): every unsynced directory operation is kept or lost
//!   independently (replayed in order; one whose source is gone is skipped), and for every file,
//!   each unsynced operation is kept or lost independently, and the last unsynced write, if
//!   kept, is torn: only a prefix of it (any length, possibly empty) lands. With
//!   [`CrashOptions::in_order`], a file's unsynced operations are kept as a prefix instead (the
//!   disk wrote back in order), the last kept write still torn.
//! * Quota: [`SimDisk::set_quota`] caps the bytes of all named files; a write past it writes what
//!   fits and fails with raw OS error 28 (`ENOSPC`), as a full filesystem does.
//! * Faults: the next N writes or fsyncs fail with a chosen OS error
//!   ([`SimDisk::fail_writes`], [`SimDisk::fail_fsyncs`]); a hook ([`SimDisk::set_fsync_hook`])
//!   runs before every file fsync, for slow fsyncs (it must not read the wall clock under a
//!   simulator: advance the simulator's time or count instead).
//!
//! Randomness comes only from the seeds passed in: one seed, one crash image.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Disk, DiskFile, OpenMode};

mod file;
use file::SimFile;

/// A hook run before every file fsync of a [`SimDisk`], given the file's path.
pub type FsyncHook = Arc<dyn Fn(&Path) + Send + Sync>;

#[derive(Clone, Debug)]
enum FileOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

fn apply(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, bytes } => {
            let at = *offset as usize;
            if content.len() < at + bytes.len() {
                content.resize(at + bytes.len(), 0);
            }
            content[at..at + bytes.len()].copy_from_slice(bytes);
        }
        FileOp::SetLen(len) => content.resize(*len as usize, 0),
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    /// What reads see.
    current: Vec<u8>,
    /// What survives a crash for sure.
    durable: Vec<u8>,
    /// Unsynced operations, oldest first.
    pending: Vec<FileOp>,
    mode: u32,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link { path: PathBuf, ino: u64 },
    Unlink { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

impl DirOp {
    /// The directory whose fsync makes this durable.
    fn dir(&self) -> &Path {
        let p = match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path } => path,
            DirOp::Rename { to, .. } => to,
        };
        p.parent().unwrap_or(Path::new("/"))
    }
}

fn replay(names: &mut BTreeMap<PathBuf, u64>, op: &DirOp) {
    match op {
        DirOp::Link { path, ino } => {
            names.insert(path.clone(), *ino);
        }
        DirOp::Unlink { path } => {
            names.remove(path);
        }
        DirOp::Rename { from, to } => {
            if let Some(ino) = names.remove(from) {
                names.insert(to.clone(), ino);
            }
        }
    }
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// The namespace reads see: file path -> inode.
    names: BTreeMap<PathBuf, u64>,
    /// The durable namespace.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Unsynced namespace operations, oldest first.
    dir_ops: Vec<DirOp>,
    /// Directories and their modes (durable when created).
    dirs: BTreeMap<PathBuf, u32>,
    quota: Option<u64>,
    fail_writes: u64,
    fail_fsyncs: u64,
    errno: i32,
    /// Seeds the fate of the writes a failed fsync leaves unsettled.
    rng: Option<StdRng>,
    fsyncs: u64,
    /// Mutating operations so far.
    ops: u64,
    /// An armed crash: at this operation count, with this seed and options.
    crash_at: Option<(u64, u64, CrashOptions)>,
    /// The image taken at the armed crash.
    crashed: Option<SimDisk>,
    /// On a crash image: the durable content each named file had on the crashed disk.
    before_crash: BTreeMap<PathBuf, Vec<u8>>,
}

impl State {
    fn used(&self) -> u64 {
        self.names
            .values()
            .map(|i| self.inodes.get(i).map_or(0, |n| n.current.len() as u64))
            .sum()
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        dir.parent().is_none() || self.dirs.contains_key(dir)
    }

    fn take_fault(counter: &mut u64, errno: i32) -> io::Result<()> {
        match *counter {
            0 => Ok(()),
            u64::MAX => Err(io::Error::from_raw_os_error(errno)),
            _ => {
                *counter -= 1;
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }

    fn sync_inode(&mut self, ino: u64) -> io::Result<()> {
        self.fsyncs += 1;
        let failed = State::take_fault(&mut self.fail_fsyncs, self.errno);
        let rng = self.rng.get_or_insert_with(|| StdRng::seed_from_u64(0));
        let Some(node) = self.inodes.get_mut(&ino) else {
            return Ok(());
        };
        let pending = std::mem::take(&mut node.pending);
        for op in &pending {
            // A failed fsync may have written back any of them, or dropped them for good.
            if failed.is_ok() || rng.gen_bool(0.5) {
                apply(&mut node.durable, op);
            }
        }
        failed
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{}: no such file or directory (simulated disk)",
            path.display()
        ),
    )
}

/// How [`SimDisk::crash_image`] loses unsynced writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashOptions {
    /// Keep each file's unsynced operations as a prefix (in-order write-back) instead of each
    /// independently.
    pub in_order: bool,
}

/// An in-memory disk with a crash model (see the module docs). Cloning shares the disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    hook: Arc<Mutex<Option<FsyncHook>>>,
    inline: bool,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("SimDisk")
            .field("files", &st.names.len())
            .field("pending_dir_ops", &st.dir_ops.len())
            .field("inline", &self.inline)
            .finish_non_exhaustive()
    }
}

impl SimDisk {
    /// An empty disk whose storage runs with OS threads, like the real one (see
    /// [`Disk::inline`]).
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// An empty disk for deterministic simulation: the storage on it runs without OS threads
    /// ([`Disk::inline`] is `true`).
    pub fn inline() -> SimDisk {
        SimDisk {
            inline: true,
            ..SimDisk::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Caps the bytes of all files at `bytes` (`None`: unlimited). Writes past it fail with
    /// `ENOSPC` after writing what fits.
    pub fn set_quota(&self, bytes: Option<u64>) {
        self.lock().quota = bytes;
    }

    /// Bytes held by all files (what the quota counts).
    pub fn used_bytes(&self) -> u64 {
        self.lock().used()
    }

    /// Makes the next `n` file writes fail with OS error `errno` (`u64::MAX`: until cleared
    /// with `n = 0`).
    pub fn fail_writes(&self, n: u64, errno: i32) {
        let mut st = self.lock();
        st.fail_writes = n;
        st.errno = errno;
    }

    /// Makes the next `n` file fsyncs fail with OS error `errno` (`u64::MAX`: until cleared with
    /// `n = 0`). The writes they covered are settled at random (see the module docs).
    pub fn fail_fsyncs(&self, n: u64, errno: i32) {
        let mut st = self.lock();
        st.fail_fsyncs = n;
        st.errno = errno;
    }

    /// Seeds the fate of writes left unsettled by a failed fsync (default seed 0).
    pub fn seed(&self, seed: u64) {
        self.lock().rng = Some(StdRng::seed_from_u64(seed));
    }

    /// Runs `hook` before every file fsync (a slow disk: advance simulated time, or sleep in a
    /// test that runs on real time). `None` removes it.
    pub fn set_fsync_hook(&self, hook: Option<FsyncHook>) {
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    /// File fsyncs so far (successful or not).
    pub fn fsyncs(&self) -> u64 {
        self.lock().fsyncs
    }

    /// The durable content of the file named `path` in the durable namespace, if any: what a
    /// crash image holds unless unsynced operations on top of it also land.
    pub fn durable_content(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let ino = st.durable_names.get(path)?;
        st.inodes.get(ino).map(|n| n.durable.clone())
    }

    /// On a crash image: the durable content the file named `path` had on the crashed disk
    /// (what the image holds unless unsynced writes also landed), `None` if it had none.
    pub fn durable_before_crash(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().before_crash.get(path).cloned()
    }

    /// Whether any file or directory operation is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        let st = self.lock();
        !st.dir_ops.is_empty() || st.inodes.values().any(|n| !n.pending.is_empty())
    }

    /// The disk as a crash at this instant leaves it, chosen by `seed` (see the module docs): a
    /// new disk with everything durable, the same quota and inline mode, no armed faults and no
    /// hook. This disk and its open files are unchanged.
    pub fn crash_image(&self, seed: u64, opts: CrashOptions) -> SimDisk {
        let st = self.lock();
        self.image_of(&st, seed, opts)
    }

    /// Arms a crash at a precise point: right before the `n`-th mutating operation from now
    /// (write, length change, fsync, create, rename, remove; `n = 0`: the next one), the disk
    /// takes [`SimDisk::crash_image`]`(seed, opts)` and keeps it for [`SimDisk::take_crash`].
    /// The disk itself carries on.
    pub fn arm_crash(&self, n: u64, seed: u64, opts: CrashOptions) {
        let mut st = self.lock();
        st.crash_at = Some((st.ops + n, seed, opts));
    }

    /// The crash image taken at the armed point, if that point was reached.
    pub fn take_crash(&self) -> Option<SimDisk> {
        self.lock().crashed.take()
    }

    /// Mutating operations so far (the clock of [`SimDisk::arm_crash`]).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Counts a mutating operation, taking the armed crash image first if its point is reached.
    fn tick(&self, st: &mut State) {
        if let Some((at, seed, opts)) = st.crash_at {
            if st.ops >= at {
                st.crash_at = None;
                let image = self.image_of(st, seed, opts);
                st.crashed = Some(image);
            }
        }
        st.ops += 1;
    }

    fn image_of(&self, st: &State, seed: u64, opts: CrashOptions) -> SimDisk {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut names = st.durable_names.clone();
        for op in &st.dir_ops {
            if rng.gen_bool(0.5) {
                replay(&mut names, op);
            }
        }
        let mut inodes = HashMap::new();
        let mut live: Vec<u64> = names.values().copied().collect();
        live.sort_unstable();
        live.dedup();
        for ino in live {
            let Some(node) = st.inodes.get(&ino) else {
                continue;
            };
            let mut content = node.durable.clone();
            let n = node.pending.len();
            let keep: Vec<bool> = if opts.in_order {
                let k = rng.gen_range(0..=n);
                (0..n).map(|i| i < k).collect()
            } else {
                (0..n).map(|_| rng.gen_bool(0.5)).collect()
            };
            // The torn write: the file's last unsynced write (independent loss) or the last one
            // kept (in order), if it is kept.
            let torn = if opts.in_order {
                (0..n)
                    .rev()
                    .find(|&i| keep[i] && matches!(node.pending[i], FileOp::Write { .. }))
            } else {
                node.pending
                    .iter()
                    .rposition(|op| matches!(op, FileOp::Write { .. }))
            };
            for (i, op) in node.pending.iter().enumerate() {
                if !keep[i] {
                    continue;
                }
                match op {
                    FileOp::Write { offset, bytes } if Some(i) == torn => {
                        let cut = rng.gen_range(0..=bytes.len());
                        let op = FileOp::Write {
                            offset: *offset,
                            bytes: bytes[..cut].to_vec(),
                        };
                        apply(&mut content, &op);
                    }
                    op => apply(&mut content, op),
                }
            }
            inodes.insert(
                ino,
                Inode {
                    current: content.clone(),
                    durable: content,
                    pending: Vec::new(),
                    mode: node.mode,
                },
            );
        }
        let image = State {
            inodes,
            next_ino: st.next_ino,
            durable_names: names.clone(),
            names,
            dir_ops: Vec::new(),
            dirs: st.dirs.clone(),
            quota: st.quota,
            before_crash: st
                .durable_names
                .iter()
                .filter_map(|(p, i)| Some((p.clone(), st.inodes.get(i)?.durable.clone())))
                .collect(),
            rng: Some(StdRng::seed_from_u64(seed ^ 0x5eed)),
            ..State::default()
        };
        SimDisk {
            state: Arc::new(Mutex::new(image)),
            hook: Arc::new(Mutex::new(None)),
            inline: self.inline,
        }
    }

    fn run_hook(&self, path: &Path) {
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = hook {
            h(path);
        }
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let mut st = self.lock();
        self.tick(&mut st);
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !st.dir_exists(parent) {
            return Err(not_found(parent));
        }
        if st.dirs.contains_key(path) {
            return Err(io::Error::from_raw_os_error(21)); // EISDIR
        }
        let existing = st.names.get(path).copied();
        let (ino, read) = match (mode, existing) {
            (OpenMode::ReadWrite, Some(i)) => (i, true),
            (OpenMode::Write, Some(i)) => (i, false),
            (OpenMode::ReadWrite | OpenMode::Write, None) => return Err(not_found(path)),
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::from_raw_os_error(17)); // EEXIST
            }
            (OpenMode::CreateTruncate { read }, Some(i)) => {
                SimFile::push(&mut st, i, FileOp::SetLen(0));
                (i, read)
            }
            (OpenMode::CreateTruncate { .. } | OpenMode::CreateNew, None) => {
                let read = matches!(mode, OpenMode::CreateTruncate { read: true });
                st.next_ino += 1;
                let ino = st.next_ino;
                st.inodes.insert(
                    ino,
                    Inode {
                        mode: 0o600,
                        ..Inode::default()
                    },
                );
                st.names.insert(path.to_path_buf(), ino);
                st.dir_ops.push(DirOp::Link {
                    path: path.to_path_buf(),
                    ino,
                });
                (ino, read)
            }
        };
        Ok(Box::new(SimFile {
            disk: self.clone(),
            ino,
            path: path.to_path_buf(),
            read,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        let ino = st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(st
            .inodes
            .get(ino)
            .map(|n| n.current.clone())
            .unwrap_or_default())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        self.tick(&mut st);
        let ino = st.names.remove(from).ok_or_else(|| not_found(from))?;
        st.names.insert(to.to_path_buf(), ino);
        if from.parent() == to.parent() {
            st.dir_ops.push(DirOp::Rename {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
            });
        } else {
            st.dir_ops.push(DirOp::Unlink {
                path: from.to_path_buf(),
            });
            st.dir_ops.push(DirOp::Link {
                path: to.to_path_buf(),
                ino,
            });
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        self.tick(&mut st);
        st.names.remove(path).ok_or_else(|| not_found(path))?;
        st.dir_ops.push(DirOp::Unlink {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let st = self.lock();
        if !st.dirs.contains_key(dir) {
            return Err(not_found(dir));
        }
        let files = st.names.keys().filter(|p| p.parent() == Some(dir));
        let dirs = st.dirs.keys().filter(|p| p.parent() == Some(dir));
        Ok(files.chain(dirs).cloned().collect())
    }

    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        self.tick(&mut st);
        for d in dir.ancestors() {
            if d.parent().is_none() || d.as_os_str().is_empty() {
                continue;
            }
            if st.names.contains_key(d) {
                return Err(io::Error::from_raw_os_error(17)); // EEXIST: a file is in the way
            }
            st.dirs.entry(d.to_path_buf()).or_insert(mode);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), (&'static str, io::Error)> {
        let mut st = self.lock();
        self.tick(&mut st);
        if !st.dirs.contains_key(dir) {
            return Err(("open directory", not_found(dir)));
        }
        let (mine, rest): (Vec<DirOp>, Vec<DirOp>) =
            std::mem::take(&mut st.dir_ops).into_iter().partition(|op| {
                op.dir() == dir
                    || matches!(op, DirOp::Rename { from, .. } if from.parent() == Some(dir))
            });
        let mut durable = std::mem::take(&mut st.durable_names);
        for op in &mine {
            replay(&mut durable, op);
        }
        st.durable_names = durable;
        st.dir_ops = rest;
        Ok(())
    }

    fn mode(&self, path: &Path) -> io::Result<u32> {
        let st = self.lock();
        if let Some(m) = st.dirs.get(path) {
            return Ok(*m);
        }
        let ino = st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(st.inodes.get(ino).map_or(0o600, |n| n.mode))
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        self.tick(&mut st);
        if let Some(m) = st.dirs.get_mut(path) {
            *m = mode;
            return Ok(());
        }
        let ino = *st.names.get(path).ok_or_else(|| not_found(path))?;
        if let Some(n) = st.inodes.get_mut(&ino) {
            n.mode = mode;
        }
        Ok(())
    }

    fn inline(&self) -> bool {
        self.inline
    }
}
