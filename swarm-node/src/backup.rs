//! Offline backup and restore of a node's data directory (`swarm-node backup` / `restore`), after
//! Docker's admin guide ("Back up the swarm", "Restore from a backup").
//!
//! **Offline only.** Both take the data directory's advisory lock ([`DataDirLock`]) for their
//! whole run, so they are refused while a daemon runs there, and a daemon cannot start during
//! one.
//!
//! **What a backup holds.** Every regular file and directory under the data directory
//! (`node.json`, `raft/`, `certificates/` and whatever else the node keeps there), byte for byte,
//! except [`EXCLUDED`]: the lock file, the init/leave marker, a restore's staging directory, and
//! the task data of the process runtime (`volumes/`, `supervisors/`), as Docker's guide backs up
//! `/var/lib/docker/swarm` only. Sockets and FIFOs (the API socket) are skipped; a symbolic link
//! is refused. Nothing is decrypted: the raft data stays sealed. With autolock on, the backup is
//! of no use without the unlock key (as Docker's); **with autolock off, `raft/keys` holds the
//! key-encryption key, so the backup must be protected like the node itself.**
//!
//! **Layout.** The backup is a directory: `manifest.json` and `files/<path>` for each file.
//! The manifest ([`Manifest`]) lists every directory (mode) and file (size, mode, SHA-256), the
//! format version, the node id, raft id, cluster id and whether autolock is on, and carries the
//! SHA-256 of its own content. It holds no time stamp: two backups of the same state are equal
//! file by file. The directory is written under a temporary name, every file and directory
//! fsynced, then renamed into place (and its parent fsynced): a crash leaves no partial backup
//! under the final name. Everything is owner-only (files 0600, directories 0700).
//!
//! **Restore** verifies the whole backup first (manifest checksum and format, every listed file
//! present with its size and digest, nothing unlisted, `node.json` matching the manifest) and
//! touches the data directory only once that passed. A data directory that already holds swarm
//! state is refused unless `force`, and then the old state is moved aside into a sibling
//! directory `<data-dir>.pre-restore-<unix seconds>`, never deleted. Files are copied into a
//! staging directory inside the data directory (digests checked again while copying), fsynced,
//! then renamed into place, `node.json` last: a restore interrupted before that leaves a raft
//! directory without identity, which the daemon refuses to start on (it never deletes it).
//! The restored node starts as the same member; on another host, `docker swarm init
//! --force-new-cluster` then makes it a cluster of one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swarm_core::Id;
use thiserror::Error;

use crate::config::{create_data_dir, DataDirLock, LOCK_FILE};
use crate::manager::identity::{IDENTITY_FILE, TRANSITION_FILE};
use crate::manager::NodeIdentity;

/// The manifest's `format` field.
pub const FORMAT: &str = "swarm-node-backup";
/// The manifest format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name in a backup.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The directory of a backup holding the data directory's files.
pub const FILES_DIR: &str = "files";
/// The staging directory a restore copies into, inside the data directory.
pub const STAGING_DIR: &str = "restore.partial";
/// Top-level names of the data directory that a backup leaves out (see the module docs).
pub const EXCLUDED: &[&str] = &[
    LOCK_FILE,
    TRANSITION_FILE,
    STAGING_DIR,
    "volumes",
    "supervisors",
];
/// Where the key file lies in the data directory (its flags tell whether autolock is on).
const KEY_FILE: &str = "raft/keys";

/// Why a backup or restore was refused or failed. Every variant names the path concerned.
#[derive(Debug, Error)]
pub enum BackupError {
    /// A daemon (or another backup or restore) holds the data directory.
    #[error("{data_dir} is in use by a running swarm-node daemon (or another backup or restore); stop it first: backup and restore work offline only")]
    InUse {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The data directory holds no swarm (`node.json` absent).
    #[error("{data_dir} holds no swarm ({IDENTITY_FILE} is absent): nothing to back up")]
    NotASwarm {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The backup's destination already exists.
    #[error("{path} already exists; choose a new path for the backup")]
    OutputExists {
        /// The destination.
        path: PathBuf,
    },
    /// The backup's destination is inside the data directory it backs up.
    #[error("{path} is inside the data directory {data_dir}; write the backup elsewhere")]
    OutputInsideDataDir {
        /// The destination.
        path: PathBuf,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory's `node.json` or key file could not be read as such.
    #[error("{path}: {reason}")]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Something in the data directory cannot be backed up (a symbolic link, a name that is
    /// not UTF-8).
    #[error("{path}: {reason}; nothing was written")]
    Unsupported {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The manifest is missing, unreadable, damaged or inconsistent.
    #[error("{path}: {reason}; the backup is refused and the data directory was not touched")]
    BadManifest {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backup is of a format version this build does not know.
    #[error("{path}: backup format version {found} is not known to this swarm-node (it reads version {FORMAT_VERSION}); the data directory was not touched")]
    UnknownVersion {
        /// The manifest's path.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// A file of the backup does not match its manifest entry.
    #[error("{path}: {reason}; the backup is refused and the data directory was not touched")]
    BadFile {
        /// The backup's file.
        path: PathBuf,
        /// What is wrong (missing, size, digest, not listed).
        reason: String,
    },
    /// The data directory already holds swarm state and `--force` was not given.
    #[error("{data_dir} already holds swarm state ({entries}); give --force to move it aside and restore over it")]
    AlreadyInSwarm {
        /// The data directory.
        data_dir: PathBuf,
        /// The entries found, comma-separated.
        entries: String,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { op, path, source }
}

/// A directory of the data directory, relative to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    /// `/`-separated path relative to the data directory.
    pub path: String,
    /// Permission bits (restored as owner-only: `mode & 0o700`).
    pub mode: u32,
}

/// A regular file of the data directory, relative to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// `/`-separated path relative to the data directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (restored as owner-only: `mode & 0o600`).
    pub mode: u32,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// What a backup holds (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this build.
    pub version: u32,
    /// The node's id.
    pub node_id: Id,
    /// The node's raft member id.
    pub raft_id: u64,
    /// The cluster's id.
    pub cluster_id: Id,
    /// Whether autolock is on (the backup then needs the unlock key to be used).
    pub autolock: bool,
    /// Directories, parents before children.
    pub dirs: Vec<DirEntry>,
    /// Files, sorted by path.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Total bytes of the files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// `manifest.json` on disk: the manifest and the SHA-256 of its compact JSON.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    manifest: Manifest,
    sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn manifest_digest(m: &Manifest) -> String {
    let json = serde_json::to_vec(m).expect("a manifest always serialises");
    hex(&Sha256::digest(&json))
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The restored backup's manifest.
    pub manifest: Manifest,
    /// Where the data directory's former state was moved (with `force` only).
    pub moved_aside: Option<PathBuf>,
}

fn lock(data_dir: &Path) -> Result<DataDirLock, BackupError> {
    match DataDirLock::try_acquire(data_dir) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(BackupError::InUse {
            data_dir: data_dir.to_path_buf(),
        }),
        Err(e) => Err(io("lock", data_dir)(e)),
    }
}

/// Backs up the swarm state of `data_dir` into the new directory `out` (see the module docs).
/// Refused while a daemon runs on `data_dir`, when it holds no swarm, or when `out` exists.
pub fn backup(data_dir: &Path, out: &Path) -> Result<Manifest, BackupError> {
    let identity_path = NodeIdentity::path(data_dir);
    if !identity_path.exists() {
        return Err(BackupError::NotASwarm {
            data_dir: data_dir.to_path_buf(),
        });
    }
    if fs::symlink_metadata(out).is_ok() {
        return Err(BackupError::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let out_abs = absolute(out)?;
    let data_abs = fs::canonicalize(data_dir).map_err(io("resolve", data_dir))?;
    if out_abs.starts_with(&data_abs) {
        return Err(BackupError::OutputInsideDataDir {
            path: out.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
        });
    }
    let _lock = lock(data_dir)?;
    let identity = NodeIdentity::load(data_dir)
        .map_err(|e| BackupError::BadState {
            path: identity_path.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| BackupError::NotASwarm {
            data_dir: data_dir.to_path_buf(),
        })?;
    let autolock = autolock_of(data_dir)?;

    let mut dirs = Vec::new();
    let mut files = Vec::new();
    walk(data_dir, "", &mut dirs, &mut files)?;

    let parent = out_abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = out_abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| {
        let _ = fs::remove_dir_all(&tmp);
        make_dir(&tmp, 0o700)?;
        let files_root = tmp.join(FILES_DIR);
        make_dir(&files_root, 0o700)?;
        for d in &dirs {
            make_dir(&files_root.join(&d.path), 0o700)?;
        }
        let mut entries = Vec::with_capacity(files.len());
        for (rel, mode) in &files {
            let (size, sha256) = copy_file(&data_dir.join(rel), &files_root.join(rel), 0o600)?;
            entries.push(FileEntry {
                path: rel.clone(),
                size,
                mode: *mode,
                sha256,
            });
        }
        // Directories' entries are durable once each directory is fsynced, deepest first.
        for d in dirs.iter().rev() {
            sync_dir(&files_root.join(&d.path))?;
        }
        sync_dir(&files_root)?;
        let manifest = Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            node_id: identity.node_id,
            raft_id: identity.raft_id,
            cluster_id: identity.cluster_id,
            autolock,
            dirs: dirs.clone(),
            files: entries,
        };
        let file = ManifestFile {
            sha256: manifest_digest(&manifest),
            manifest,
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("a manifest always serialises");
        json.push(b'\n');
        write_new(&tmp.join(MANIFEST_FILE), &json, 0o600)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, &out_abs).map_err(io("rename", &out_abs))?;
        sync_dir(&parent)?;
        Ok(file.manifest)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn absolute(p: &Path) -> Result<PathBuf, BackupError> {
    let abs = std::path::absolute(p).map_err(io("resolve", p))?;
    // Resolve the parent (it must exist) so a symlinked path compares correctly.
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(fs::canonicalize(parent)
            .map_err(io("resolve", parent))?
            .join(name)),
        _ => Ok(abs),
    }
}

fn autolock_of(data_dir: &Path) -> Result<bool, BackupError> {
    let path = data_dir.join(KEY_FILE);
    let bytes = fs::read(&path).map_err(io("read", &path))?;
    let file = swarm_secrets::KeyFile::decode(&bytes).map_err(|e| BackupError::BadState {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(file.autolock())
}

/// Collects the directories and regular files under `root/rel`, sorted, leaving out
/// [`EXCLUDED`] at the top level and sockets and FIFOs anywhere.
fn walk(
    root: &Path,
    rel: &str,
    dirs: &mut Vec<DirEntry>,
    files: &mut Vec<(String, u32)>,
) -> Result<(), BackupError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io("list", &dir))? {
        let entry = entry.map_err(io("list", &dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(BackupError::Unsupported {
                path: entry.path(),
                reason: "the name is not UTF-8",
            });
        };
        if rel.is_empty() && EXCLUDED.contains(&name) {
            continue;
        }
        names.push(name.to_string());
    }
    names.sort();
    for name in names {
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = root.join(&child);
        let meta = fs::symlink_metadata(&path).map_err(io("stat", &path))?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        if ft.is_symlink() {
            return Err(BackupError::Unsupported {
                path,
                reason: "a symbolic link in the data directory",
            });
        } else if ft.is_dir() {
            dirs.push(DirEntry {
                path: child.clone(),
                mode,
            });
            walk(root, &child, dirs, files)?;
        } else if ft.is_file() {
            files.push((child, mode));
        } else {
            // The API socket, supervisor sockets: runtime endpoints, not state.
            tracing::debug!(path = %path.display(), "not backed up: neither a file nor a directory");
        }
    }
    Ok(())
}

fn make_dir(path: &Path, mode: u32) -> Result<(), BackupError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(io("create directory", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("chmod", path))
}

fn sync_dir(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", path))
}

fn create_new(path: &Path, mode: u32) -> Result<File, BackupError> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io("create", path))?;
    // The umask may have narrowed the mode; never widen past it otherwise.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("chmod", path))?;
    Ok(f)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BackupError> {
    let mut f = create_new(path, mode)?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("fsync", path))
}

/// Copies `from` into the new file `to` (fsynced), returning its size and SHA-256.
fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<(u64, String), BackupError> {
    let mut dst = create_new(to, mode)?;
    let digest = stream(from, Some((&mut dst, to)))?;
    dst.sync_all().map_err(io("fsync", to))?;
    Ok(digest)
}

/// Reads `from` to its end, writing it to `to` if given; returns its size and SHA-256.
fn stream(from: &Path, mut to: Option<(&mut File, &Path)>) -> Result<(u64, String), BackupError> {
    let mut src = File::open(from).map_err(io("open", from))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io("read", from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some((dst, path)) = to.as_mut() {
            dst.write_all(&buf[..n]).map_err(io("write", path))?;
        }
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Checks a manifest path: relative, `/`-separated, no empty, `.` or `..` component, not
/// under an excluded top-level name.
fn check_rel(manifest: &Path, rel: &str) -> Result<(), BackupError> {
    let bad = |why: &str| BackupError::BadManifest {
        path: manifest.to_path_buf(),
        reason: format!("the path {rel:?} {why}"),
    };
    if rel.is_empty() || rel.contains('\0') || rel.contains('\\') {
        return Err(bad("is not a plain relative path"));
    }
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(bad("is not a plain relative path"));
        }
    }
    if !Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(bad("is not a plain relative path"));
    }
    let top = rel.split('/').next().unwrap_or_default();
    if EXCLUDED.contains(&top) {
        return Err(bad("names an entry a backup never holds"));
    }
    Ok(())
}

/// Reads and checks a backup's manifest (checksum, format, version, paths), without the files.
fn read_manifest(input: &Path) -> Result<Manifest, BackupError> {
    let path = input.join(MANIFEST_FILE);
    let bad = |reason: String| BackupError::BadManifest {
        path: path.clone(),
        reason,
    };
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad("is missing: this is not a swarm-node backup".into()))
        }
        Err(e) => return Err(io("read", &path)(e)),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not valid JSON ({e})")))?;
    let m = &value["manifest"];
    if m["format"].as_str() != Some(FORMAT) {
        return Err(bad(format!("is not a {FORMAT} manifest")));
    }
    match m["version"].as_u64() {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(BackupError::UnknownVersion {
                path: path.clone(),
                found: v,
            })
        }
        None => return Err(bad("has no format version".into())),
    }
    let file: ManifestFile =
        serde_json::from_value(value).map_err(|e| bad(format!("is malformed ({e})")))?;
    if manifest_digest(&file.manifest) != file.sha256 {
        return Err(bad("does not match its checksum (damaged or edited)".into()));
    }
    let manifest = file.manifest;
    let mut seen = std::collections::BTreeSet::new();
    let dirs: std::collections::BTreeSet<&str> =
        manifest.dirs.iter().map(|d| d.path.as_str()).collect();
    for d in &manifest.dirs {
        check_rel(&path, &d.path)?;
        if !seen.insert(d.path.as_str()) {
            return Err(bad(format!("lists {:?} twice", d.path)));
        }
    }
    for f in &manifest.files {
        check_rel(&path, &f.path)?;
        if !seen.insert(f.path.as_str()) {
            return Err(bad(format!("lists {:?} twice", f.path)));
        }
        if let Some((parent, _)) = f.path.rsplit_once('/') {
            if !dirs.contains(parent) {
                return Err(bad(format!("lists {:?} but not its directory", f.path)));
            }
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("has a malformed digest for {:?}", f.path)));
        }
    }
    for d in &manifest.dirs {
        if let Some((parent, _)) = d.path.rsplit_once('/') {
            if !dirs.contains(parent) {
                return Err(bad(format!("lists {:?} but not its parent", d.path)));
            }
        }
    }
    if !manifest.files.iter().any(|f| f.path == IDENTITY_FILE) {
        return Err(bad(format!("lists no {IDENTITY_FILE}")));
    }
    Ok(manifest)
}

/// Verifies a backup completely: the manifest, then every file (present, size, SHA-256) and that
/// `files/` holds nothing unlisted. Returns the manifest.
pub fn verify(input: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(input)?;
    let root = input.join(FILES_DIR);
    for f in &manifest.files {
        let path = root.join(&f.path);
        let bad = |reason: String| BackupError::BadFile {
            path: path.clone(),
            reason,
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad("is missing from the backup".into()))
            }
            Err(e) => return Err(io("stat", &path)(e)),
        };
        if !meta.file_type().is_file() {
            return Err(bad("is not a regular file".into()));
        }
        if meta.size() != f.size {
            return Err(bad(format!(
                "has {} bytes, the manifest says {}",
                meta.size(),
                f.size
            )));
        }
        let (_, digest) = stream(&path, None)?;
        if digest != f.sha256 {
            return Err(bad("does not match its SHA-256 in the manifest".into()));
        }
    }
    // Nothing unlisted: a backup is exactly what its manifest says.
    let mut listed: std::collections::BTreeSet<String> =
        manifest.files.iter().map(|f| f.path.clone()).collect();
    listed.extend(manifest.dirs.iter().map(|d| d.path.clone()));
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    match fs::symlink_metadata(&root) {
        Ok(m) if m.is_dir() => walk_all(&root, "", &mut dirs, &mut files)?,
        _ => {
            return Err(BackupError::BadFile {
                path: root,
                reason: "is missing from the backup".into(),
            })
        }
    }
    for rel in dirs.iter().chain(files.iter()) {
        if !listed.contains(rel) {
            return Err(BackupError::BadFile {
                path: root.join(rel),
                reason: "is not listed in the manifest".into(),
            });
        }
    }
    for d in &manifest.dirs {
        if !dirs.contains(&d.path) {
            return Err(BackupError::BadFile {
                path: root.join(&d.path),
                reason: "(a directory) is missing from the backup".into(),
            });
        }
    }
    Ok(manifest)
}

/// Every entry under `root/rel` (no exclusions), for the unlisted-file check.
fn walk_all(
    root: &Path,
    rel: &str,
    dirs: &mut Vec<String>,
    files: &mut Vec<String>,
) -> Result<(), BackupError> {
    let dir = root.join(rel);
    for entry in fs::read_dir(&dir).map_err(io("list", &dir))? {
        let entry = entry.map_err(io("list", &dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type().map_err(io("stat", &entry.path()))?;
        if ft.is_dir() {
            dirs.push(child.clone());
            walk_all(root, &child, dirs, files)?;
        } else {
            files.push(child);
        }
    }
    Ok(())
}

/// The entries of `data_dir` a backup would hold (its swarm state), sorted.
fn state_entries(data_dir: &Path) -> Result<Vec<String>, BackupError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(data_dir).map_err(io("list", data_dir))? {
        let entry = entry.map_err(io("list", data_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if EXCLUDED.contains(&name.as_str()) {
            continue;
        }
        let ft = entry.file_type().map_err(io("stat", &entry.path()))?;
        if ft.is_dir() || ft.is_file() || ft.is_symlink() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Restores the backup `input` into `data_dir` (see the module docs). The backup is verified
/// before the data directory is touched; state already there is refused unless `force`, which
/// moves it aside.
pub fn restore(input: &Path, data_dir: &Path, force: bool) -> Result<RestoreReport, BackupError> {
    let manifest = verify(input)?;
    create_data_dir(data_dir).map_err(io("create", data_dir))?;
    let _lock = lock(data_dir)?;
    let existing = state_entries(data_dir)?;
    if !existing.is_empty() && !force {
        return Err(BackupError::AlreadyInSwarm {
            data_dir: data_dir.to_path_buf(),
            entries: existing.join(", "),
        });
    }

    // Copy into the staging directory, checking every digest again on the way.
    let staging = data_dir.join(STAGING_DIR);
    match fs::remove_dir_all(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove", &staging)(e)),
    }
    let staged = (|| {
        make_dir(&staging, 0o700)?;
        for d in &manifest.dirs {
            make_dir(&staging.join(&d.path), d.mode & 0o700)?;
        }
        let root = input.join(FILES_DIR);
        for f in &manifest.files {
            let from = root.join(&f.path);
            let (size, digest) = copy_file(&from, &staging.join(&f.path), f.mode & 0o600)?;
            if size != f.size || digest != f.sha256 {
                return Err(BackupError::BadFile {
                    path: from,
                    reason: "changed while being restored".into(),
                });
            }
        }
        for d in manifest.dirs.iter().rev() {
            sync_dir(&staging.join(&d.path))?;
        }
        sync_dir(&staging)?;
        let identity = NodeIdentity::load(&staging)
            .map_err(|e| BackupError::BadManifest {
                path: input.join(MANIFEST_FILE),
                reason: format!("its {IDENTITY_FILE} is not a valid identity ({e})"),
            })?
            .ok_or_else(|| BackupError::BadManifest {
                path: input.join(MANIFEST_FILE),
                reason: format!("lists no {IDENTITY_FILE}"),
            })?;
        if identity.node_id != manifest.node_id
            || identity.cluster_id != manifest.cluster_id
            || identity.raft_id != manifest.raft_id
        {
            return Err(BackupError::BadManifest {
                path: input.join(MANIFEST_FILE),
                reason: format!("its ids do not match the backed-up {IDENTITY_FILE}"),
            });
        }
        Ok(())
    })();
    if let Err(e) = staged {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }

    let moved_aside = if existing.is_empty() {
        None
    } else {
        Some(move_aside(data_dir, &existing)?)
    };

    // Into place: everything top-level, node.json last (its presence means "in a swarm").
    let mut tops: Vec<&str> = manifest
        .dirs
        .iter()
        .map(|d| d.path.as_str())
        .chain(manifest.files.iter().map(|f| f.path.as_str()))
        .filter(|p| !p.contains('/') && *p != IDENTITY_FILE)
        .collect();
    tops.push(IDENTITY_FILE);
    for top in tops {
        let to = data_dir.join(top);
        fs::rename(staging.join(top), &to).map_err(io("rename", &to))?;
        if top == IDENTITY_FILE {
            sync_dir(data_dir)?;
        }
    }
    fs::remove_dir(&staging).map_err(io("remove", &staging))?;
    sync_dir(data_dir)?;
    Ok(RestoreReport {
        manifest,
        moved_aside,
    })
}

/// Moves `entries` of `data_dir` into a new sibling `<data-dir>.pre-restore-<unix seconds>`.
fn move_aside(data_dir: &Path, entries: &[String]) -> Result<PathBuf, BackupError> {
    let abs = fs::canonicalize(data_dir).map_err(io("resolve", data_dir))?;
    let parent = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "swarm".into());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut aside = parent.join(format!("{name}.pre-restore-{secs}"));
    let mut n = 1;
    while fs::symlink_metadata(&aside).is_ok() {
        aside = parent.join(format!("{name}.pre-restore-{secs}-{n}"));
        n += 1;
    }
    make_dir(&aside, 0o700)?;
    for e in entries {
        let to = aside.join(e);
        fs::rename(data_dir.join(e), &to).map_err(io("move aside", &to))?;
    }
    sync_dir(&aside)?;
    sync_dir(&parent)?;
    sync_dir(data_dir)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_must_be_plain_and_relative() {
        let m = Path::new("manifest.json");
        for ok in ["node.json", "raft/keys", "certificates/node.crt"] {
            assert!(check_rel(m, ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "raft/../../x",
            "raft//keys",
            "./node.json",
            "a\\b",
            "volumes/v/_data",
            "daemon.lock",
            "raft/",
        ] {
            assert!(
                matches!(check_rel(m, bad), Err(BackupError::BadManifest { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 0xab, 0x0f]), "00ab0f");
    }
}
