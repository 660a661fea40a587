//! Secret and config files on tmpfs: target validation, per-task staging directories, cleanup.
//!
//! Every adapter that shows files to real processes stages them here first: one directory per task
//! under a stage root that must be a tmpfs (checked with `statfs`; as root a tmpfs is mounted when it
//! is not). Files under `/run/secrets` go to `<task dir>/secrets/<rest>`, every other target to
//! `<task dir>/files/<absolute target>`, each with the requested uid, gid and mode. Adapters then
//! bind-mount them (docker, process as root) or point the task at them (process without root).

use std::ffi::CString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use swarm_core::Id;

use crate::error::RuntimeError;
use crate::runtime::{FileKind, TaskConfig, TaskFile};

/// Where secrets appear in a task unless their target is absolute.
pub const SECRETS_DIR: &str = "/run/secrets";

const TMPFS_MAGIC: libc::c_long = 0x0102_1994;

/// Resolves a secret or config reference's target name to an absolute, normalised path in the
/// task: secrets under `/run/secrets` unless absolute, configs at `/<name>`. Rejects `..`, empty
/// names and NUL bytes.
pub fn resolve_target(kind: FileKind, name: &str) -> Result<String, RuntimeError> {
    let kind_name = kind_name(kind);
    let bad = |reason: &str| RuntimeError::FileTarget {
        kind: kind_name,
        target: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("the target name is empty"));
    }
    if name.contains('\0') {
        return Err(bad("the target contains a NUL byte"));
    }
    let joined = if name.starts_with('/') {
        name.to_string()
    } else if kind == FileKind::Secret {
        format!("{SECRETS_DIR}/{name}")
    } else {
        format!("/{name}")
    };
    let mut parts = Vec::new();
    for c in Path::new(&joined).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => return Err(bad("'..' is not allowed in a target path")),
            Component::Prefix(_) => return Err(bad("unsupported path prefix")),
        }
    }
    if parts.is_empty() {
        return Err(bad("the target names a directory, not a file"));
    }
    let path = format!("/{}", parts.join("/"));
    if path == SECRETS_DIR {
        return Err(bad("the target is the secrets directory itself"));
    }
    Ok(path)
}

pub(crate) fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Secret => "secret",
        FileKind::Config => "config",
    }
}

/// Whether `path` is on a tmpfs (or ramfs).
pub(crate) fn is_tmpfs(path: &Path) -> std::io::Result<bool> {
    let buf = rustix::fs::statfs(path)?;
    #[allow(clippy::unnecessary_cast)]
    let magic = buf.f_type as libc::c_long;
    Ok(magic == TMPFS_MAGIC || magic == 0x8584_58f6)
}

/// Whether this process runs with uid 0.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A stage root: a tmpfs directory holding one subdirectory per task.
#[derive(Debug)]
pub(crate) struct Stage {
    root: PathBuf,
    mounted: bool,
    dir_mode: u32,
    /// Kept when dropped (supervised tasks outlive the runtime and still use their files).
    persistent: bool,
}

/// A task's staged files.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Staged {
    /// `<stage>/<task>/secrets`: everything under `/run/secrets`.
    pub(crate) secrets_dir: PathBuf,
    /// `<stage>/<task>/files`: every other target, by its absolute path.
    pub(crate) files_dir: PathBuf,
    /// One entry per file.
    pub(crate) files: Vec<StagedFile>,
}

/// One staged file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StagedFile {
    /// Where it is on the host.
    pub(crate) host: PathBuf,
    /// Where the task must see it.
    pub(crate) target: String,
    /// Whether it lives under `/run/secrets` (and so inside [`Staged::secrets_dir`]).
    pub(crate) in_secrets_dir: bool,
}

impl Stage {
    /// Creates (if needed) `root` and makes sure it is a tmpfs, mounting one when running as root.
    /// `traversable` makes the directories 0711 instead of 0700, for tasks that run as another user
    /// and reach their files through host paths.
    pub(crate) fn create(root: PathBuf, traversable: bool) -> Result<Stage, RuntimeError> {
        let dir_mode = if traversable { 0o711 } else { 0o700 };
        DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(&root)
            .map_err(|e| RuntimeError::io(format!("creating {}", root.display()), e))?;
        let mut mounted = false;
        let on_tmpfs = is_tmpfs(&root)
            .map_err(|e| RuntimeError::io(format!("statfs {}", root.display()), e))?;
        if !on_tmpfs {
            if !is_root() {
                return Err(RuntimeError::NotTmpfs {
                    path: root.display().to_string(),
                });
            }
            mount_tmpfs(&root, dir_mode)?;
            mounted = true;
        } else if is_root() && !root.parent().is_some_and(|p| is_tmpfs(p).unwrap_or(true)) {
            // A tmpfs on a disk directory: one this runtime mounted in an earlier run.
            mounted = true;
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(dir_mode))
            .map_err(|e| RuntimeError::io(format!("chmod {}", root.display()), e))?;
        Ok(Stage {
            root,
            mounted,
            dir_mode,
            persistent: false,
        })
    }

    /// Makes the stage persistent: left in place when dropped unless it is empty (its tasks
    /// outlive the runtime); the next runtime on the same root sweeps the directories of tasks
    /// that are gone ([`Stage::sweep`]).
    pub(crate) fn persistent(mut self) -> Stage {
        self.persistent = true;
        self
    }

    /// The stage root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn task_dir(&self, task: &Id) -> PathBuf {
        self.root.join(task.as_str())
    }

    /// Writes the task's files. `chown` sets the requested owners (needs root). On error nothing
    /// is left behind.
    pub(crate) fn stage(&self, config: &TaskConfig, chown: bool) -> Result<Staged, RuntimeError> {
        let dir = self.task_dir(&config.task_id);
        let staged = Staged {
            secrets_dir: dir.join("secrets"),
            files_dir: dir.join("files"),
            files: Vec::new(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        let result = self.write_all(&dir, staged, &config.files, chown);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn write_all(
        &self,
        dir: &Path,
        mut staged: Staged,
        files: &[TaskFile],
        chown: bool,
    ) -> Result<Staged, RuntimeError> {
        let mk = |p: &Path, mode: u32| {
            DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(p)
                .map_err(|e| RuntimeError::io(format!("creating {}", p.display()), e))
        };
        mk(dir, self.dir_mode)?;
        mk(&staged.secrets_dir, 0o755)?;
        mk(&staged.files_dir, 0o755)?;
        for f in files {
            let fail = |reason: String| RuntimeError::FileTarget {
                kind: kind_name(f.kind),
                target: f.target.clone(),
                reason,
            };
            if staged.files.iter().any(|s| s.target == f.target) {
                return Err(fail("two secrets or configs have the same target".into()));
            }
            let (host, in_secrets_dir) = match f.target.strip_prefix("/run/secrets/") {
                Some(rest) => (staged.secrets_dir.join(rest), true),
                None => (
                    staged.files_dir.join(f.target.trim_start_matches('/')),
                    false,
                ),
            };
            if let Some(parent) = host.parent() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(|e| fail(e.to_string()))?;
            }
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&host)
                .map_err(|e| fail(e.to_string()))?;
            file.write_all(f.data.expose())
                .map_err(|e| fail(e.to_string()))?;
            if chown {
                std::os::unix::fs::fchown(&file, Some(f.uid), Some(f.gid))
                    .map_err(|e| fail(format!("setting owner {}:{}: {e}", f.uid, f.gid)))?;
            }
            file.set_permissions(std::fs::Permissions::from_mode(f.mode & 0o7777))
                .map_err(|e| fail(format!("setting mode {:o}: {e}", f.mode)))?;
            staged.files.push(StagedFile {
                host,
                target: f.target.clone(),
                in_secrets_dir,
            });
        }
        Ok(staged)
    }

    /// Deletes the directories of tasks `keep` does not own: what a crashed runtime left behind.
    /// Names that are not task ids are left alone.
    pub(crate) fn sweep(&self, keep: impl Fn(&Id) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| Id::parse(n).ok()) else {
                continue;
            };
            if !keep(&id) {
                tracing::info!(task = %id, "deleting the staged files of a task that is gone");
                self.unstage(&id);
            }
        }
    }

    /// Deletes the task's files (idempotent).
    pub(crate) fn unstage(&self, task: &Id) {
        let dir = self.task_dir(task);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(task = %task, error = %e, "could not delete staged files");
            }
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if self.persistent && std::fs::read_dir(&self.root).map_or(true, |mut d| d.next().is_some())
        {
            return;
        }
        if self.mounted {
            let _ = rustix::mount::unmount(&self.root, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn mount_tmpfs(path: &Path, mode: u32) -> Result<(), RuntimeError> {
    use rustix::mount::MountFlags;
    let data = CString::new(format!("mode={mode:o},size=64m")).unwrap_or_default();
    rustix::mount::mount(
        c"tmpfs",
        path,
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data.as_c_str(),
    )
    .map_err(|e| RuntimeError::io(format!("mounting a tmpfs on {}", path.display()), e.into()))
}

/// Where default stage roots live.
const SHM: &str = "/dev/shm";

/// A default stage root under /dev/shm, unique to this process and adapter instance:
/// `swarm-<adapter>-<pid>-<n>`. Roots of this shape whose process is dead (a crashed daemon's)
/// are deleted first, so plaintext files do not outlive their daemon by more than its restart.
pub(crate) fn default_stage_root(adapter: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    sweep_dead_roots(Path::new(SHM), adapter);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Path::new(SHM).join(format!("swarm-{adapter}-{}-{n}", std::process::id()))
}

/// The owner pid of a default stage root named `swarm-<adapter>-<pid>-<n>`.
fn root_owner(name: &str, adapter: &str) -> Option<libc::pid_t> {
    let rest = name
        .strip_prefix("swarm-")?
        .strip_prefix(adapter)?
        .strip_prefix('-')?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok().filter(|p| *p > 0)
}

/// Whether process `pid` exists (a pid reused by another process counts as alive, and so does
/// one this process may not signal: sweeps err on the side of keeping).
pub(crate) fn process_alive(pid: libc::pid_t) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Deletes `dir/swarm-<adapter>-<pid>-<n>` roots whose process is dead; returns how many.
pub(crate) fn sweep_dead_roots(dir: &Path, adapter: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut swept = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| root_owner(n, adapter)) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let path = e.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                swept += 1;
                tracing::info!(dir = %path.display(), pid, "deleted the stage directory of a dead process");
            }
            Err(err) => {
                tracing::warn!(dir = %path.display(), error = %err, "could not delete a dead process's stage directory");
            }
        }
    }
    swept
}

/// The stage root of a supervised process runtime whose supervisors live in `supervisor_dir`:
/// `<supervisor_dir>/stage` as root (a private tmpfs is mounted there, 0700), else a /dev/shm
/// directory named after the user and that path, so the next run on the same directory finds it.
pub(crate) fn supervised_stage_root(supervisor_dir: &Path) -> PathBuf {
    if is_root() {
        return supervisor_dir.join("stage");
    }
    // FNV-1a: a stable, dependency-free name for the path.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in supervisor_dir.as_os_str().as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let uid = rustix::process::getuid().as_raw();
    Path::new(SHM).join(format!("swarm-supervised-{uid}-{h:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_like_docker() {
        let ok: &[(FileKind, &str, &str)] = &[
            (FileKind::Secret, "db_pw", "/run/secrets/db_pw"),
            (FileKind::Secret, "dir/x", "/run/secrets/dir/x"),
            (FileKind::Secret, "/etc/app/key", "/etc/app/key"),
            (FileKind::Config, "app.conf", "/app.conf"),
            (FileKind::Config, "/etc//app.conf", "/etc/app.conf"),
            (FileKind::Config, "./a/./b", "/a/b"),
        ];
        for (k, name, want) in ok {
            assert_eq!(resolve_target(*k, name).unwrap(), *want);
        }
        for (k, name) in [
            (FileKind::Secret, ""),
            (FileKind::Secret, "../../etc/passwd"),
            (FileKind::Config, "/"),
            (FileKind::Secret, "/run/secrets"),
            (FileKind::Config, "a\0b"),
        ] {
            let e = resolve_target(k, name).unwrap_err();
            assert!(e.is_rejection(), "{name:?}");
        }
    }

    /// As root, a stage directory on disk gets a tmpfs mounted on it (and unmounted on drop).
    #[test]
    fn non_tmpfs_stage_gets_a_tmpfs_as_root() {
        let dir = std::env::temp_dir().join(format!("swarm-stage-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        if is_tmpfs(&dir).unwrap() {
            eprintln!("SKIPPED: {} is already on tmpfs", dir.display());
            return;
        }
        match Stage::create(dir.clone(), false) {
            Ok(stage) => {
                assert!(is_root());
                assert!(is_tmpfs(stage.root()).unwrap());
                drop(stage);
                assert!(!dir.exists() || !is_tmpfs(&dir).unwrap());
            }
            Err(e) => {
                assert!(!is_root(), "{e}");
                assert!(matches!(e, RuntimeError::NotTmpfs { .. }), "{e}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dev_shm_is_tmpfs_and_staging_cleans_up() {
        assert!(is_tmpfs(Path::new("/dev/shm")).unwrap());
        let stage = Stage::create(default_stage_root("unit"), false).unwrap();
        let mut cfg = TaskConfig::new(Id::from_u128(1), "s", Default::default());
        cfg.files.push(TaskFile {
            kind: FileKind::Secret,
            id: Id::from_u128(2),
            name: "pw".into(),
            target: "/run/secrets/pw".into(),
            uid: 0,
            gid: 0,
            mode: 0o400,
            data: swarm_core::SecretData::new(b"s3cret".to_vec()),
        });
        let staged = stage.stage(&cfg, false).unwrap();
        let f = &staged.files[0];
        assert!(f.in_secrets_dir);
        assert_eq!(std::fs::read(&f.host).unwrap(), b"s3cret");
        let mode = std::fs::metadata(&f.host).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        stage.unstage(&cfg.task_id);
        assert!(!f.host.exists());
        let root = stage.root().to_path_buf();
        drop(stage);
        assert!(!root.exists());
    }
}
