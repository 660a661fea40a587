//! A task's mounts (bind, volume, tmpfs): checking them in `prepare`, the volume directories, and
//! the mount points created on the host for targets that do not exist there.
//!
//! A task's mount namespace starts as a copy of the host's, so every mount target must exist on
//! the host before the task starts. A missing target (and any missing parent directory) is
//! created, counted per task in [`MountPoints`], and removed once the last task using it has
//! exited; a path that already existed is never created, changed or removed.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use swarm_core::objects::service::{Mount, MountKind};
use swarm_core::Id;

use crate::error::RuntimeError;

/// Where anonymous volumes live under the volume directory (no volume name can start with `_`).
const ANONYMOUS_DIR: &str = "_anonymous";

/// One mount to perform in the task's namespace (spec order, so nested targets work).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum TaskMount {
    /// Bind `source` (a host path, or a volume's directory) onto `target`.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A fresh tmpfs with the given mount data (`mode=...,size=...`).
    Tmpfs {
        target: String,
        data: String,
        read_only: bool,
    },
}

impl TaskMount {
    pub(super) fn target(&self) -> &str {
        match self {
            TaskMount::Bind { target, .. } | TaskMount::Tmpfs { target, .. } => target,
        }
    }

    /// What the mount point on the host must be: a file to bind a file over, else a directory.
    pub(super) fn point_kind(&self) -> PointKind {
        match self {
            TaskMount::Bind { source, .. } if !source.is_dir() => PointKind::File,
            _ => PointKind::Dir,
        }
    }
}

/// A task's mounts as checked by [`plan`], before anything exists on the host.
#[derive(Debug, Default)]
pub(super) struct MountPlan {
    pub(super) mounts: Vec<TaskMount>,
    /// `_data` directories of named volumes: created when missing, never removed.
    pub(super) named: Vec<PathBuf>,
    /// Anonymous volume directories: created for the task, removed with it.
    pub(super) anonymous: Vec<PathBuf>,
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Bind => "bind",
        MountKind::Volume => "volume",
        MountKind::Tmpfs => "tmpfs",
    }
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks the spec's mounts and works out what to mount where. Touches nothing on the host (it
/// only looks at bind sources), so a rejected task leaves nothing behind.
///
/// Spec errors (missing bind source, bad volume name or driver) come first, so they read the same
/// with and without namespaces; then the runtime's own limits (no volume directory, no
/// namespaces).
pub(super) fn plan(
    mounts: &[Mount],
    task: &Id,
    volumes_dir: Option<&Path>,
    namespaces: bool,
) -> Result<MountPlan, RuntimeError> {
    let mut plan = MountPlan::default();
    for (index, m) in mounts.iter().enumerate() {
        let kind = kind_name(m.kind);
        if !m.target.starts_with('/') {
            return Err(RuntimeError::invalid(format!(
                "invalid mount config for type \"{kind}\": invalid mount path: '{}' mount path \
                 must be absolute",
                m.target
            )));
        }
        if Path::new(&m.target) == Path::new("/") {
            return Err(RuntimeError::invalid(format!(
                "invalid mount config for type \"{kind}\": invalid specification: destination \
                 can't be '/'"
            )));
        }
        let mount = match m.kind {
            MountKind::Bind => {
                let source = PathBuf::from(&m.source);
                if std::fs::metadata(&source).is_err() {
                    return Err(RuntimeError::invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not \
                         exist: {}",
                        m.source
                    )));
                }
                TaskMount::Bind {
                    source,
                    target: m.target.clone(),
                    read_only: m.read_only,
                }
            }
            MountKind::Volume => {
                check_volume(m)?;
                let Some(dir) = volumes_dir else {
                    return Err(RuntimeError::invalid(format!(
                        "volume mount on {:?}: this process runtime was given no directory for \
                         volumes (ProcessOptions::volumes_dir), so it has none; use a bind mount",
                        m.target
                    )));
                };
                let source = if m.source.is_empty() {
                    let path = dir.join(ANONYMOUS_DIR).join(format!("{task}-{index}"));
                    plan.anonymous.push(path.clone());
                    path
                } else {
                    let path = dir.join(&m.source).join("_data");
                    plan.named.push(path.clone());
                    path
                };
                TaskMount::Bind {
                    source,
                    target: m.target.clone(),
                    read_only: m.read_only,
                }
            }
            MountKind::Tmpfs => {
                let o = m.tmpfs.clone().unwrap_or_default();
                let mode = if o.mode == 0 { 0o1777 } else { o.mode };
                let mut data = format!("mode={mode:o}");
                if o.size_bytes > 0 {
                    data.push_str(&format!(",size={}", o.size_bytes));
                }
                TaskMount::Tmpfs {
                    target: m.target.clone(),
                    data,
                    read_only: m.read_only,
                }
            }
        };
        if !namespaces {
            return Err(RuntimeError::invalid(format!(
                "mount on {:?} needs private mount namespaces (an agent running as root)",
                m.target
            )));
        }
        plan.mounts.push(mount);
    }
    Ok(plan)
}

/// Only the `local` driver, without options, and Docker's volume names.
fn check_volume(m: &Mount) -> Result<(), RuntimeError> {
    if let Some(d) = m.volume.as_ref().and_then(|v| v.driver.as_ref()) {
        if !d.name.is_empty() && d.name != "local" {
            return Err(RuntimeError::invalid(format!(
                "volume mount on {:?}: volume driver {:?} is not supported by the process \
                 runtime, which keeps volumes in local directories; use the \"local\" driver or \
                 the docker runtime",
                m.target, d.name
            )));
        }
        if let Some(opt) = d.options.keys().next() {
            return Err(RuntimeError::invalid(format!(
                "volume mount on {:?}: volume driver option {opt:?} is not supported by the \
                 process runtime, whose volumes are plain local directories; drop the driver \
                 options or use the docker runtime",
                m.target
            )));
        }
    }
    if !m.source.is_empty() && !valid_volume_name(&m.source) {
        return Err(RuntimeError::invalid(format!(
            "{:?} includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, \
             use absolute path",
            m.source
        )));
    }
    Ok(())
}

/// Creates `path` with exactly `mode` if it does not exist (an existing one is left as it is).
fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a volume's data directory in Docker's layout: the volume directory itself 0701
/// (traversable, not listable), its `_data` (or an anonymous volume's directory) 0755.
pub(super) fn create_volume_dir(data: &Path) -> Result<(), RuntimeError> {
    let fail = |e: io::Error| RuntimeError::io(format!("creating volume {}", data.display()), e);
    let parent = data.parent().unwrap_or(Path::new("/"));
    if let Some(root) = parent.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o701)
            .create(root)
            .map_err(fail)?;
    }
    mkdir(parent, 0o701).map_err(fail)?;
    mkdir(data, 0o755).map_err(fail)
}

/// Whether a mount point is a file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PointKind {
    File,
    Dir,
}

impl PointKind {
    fn remove(self, path: &Path) {
        // `remove_dir` only removes an empty directory: whatever someone put there stays.
        let _ = match self {
            PointKind::File => std::fs::remove_file(path),
            PointKind::Dir => std::fs::remove_dir(path),
        };
    }
}

/// The mount points (files and directories) this runtime created on the host, with how many
/// acquisitions hold each. Acquiring a target also holds every created parent, so a directory's
/// count is never below any of its children's and removing deepest first always works.
#[derive(Debug, Default)]
pub(super) struct MountPoints {
    held: HashMap<PathBuf, (usize, PointKind)>,
}

impl MountPoints {
    /// Makes sure `target` exists on the host as a `kind`, creating it and its missing parents.
    /// Returns the created paths now held (give them back to [`MountPoints::release`]); an error
    /// says why the mount point cannot exist and leaves nothing created.
    pub(super) fn acquire(
        &mut self,
        target: &Path,
        kind: PointKind,
    ) -> Result<Vec<PathBuf>, String> {
        let mut missing = Vec::new();
        for (depth, p) in target.ancestors().enumerate() {
            // The target itself must be of the right kind (a file mount point is never a
            // symlink); a parent only has to exist (mount(2) follows symlinks there).
            let meta = if depth == 0 && kind == PointKind::File {
                std::fs::symlink_metadata(p)
            } else {
                std::fs::metadata(p)
            };
            match meta {
                Ok(_) if depth > 0 => break,
                Ok(m) if kind == PointKind::File && m.is_file() => break,
                Ok(m) if kind == PointKind::Dir && m.is_dir() => break,
                Ok(_) if kind == PointKind::File => {
                    return Err("the target exists and is not a regular file".into())
                }
                Ok(_) => return Err("the target exists and is not a directory".into()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(p.to_path_buf()),
                Err(e) => {
                    return Err(format!(
                        "cannot create the mount point {} on this node: {e}",
                        target.display()
                    ))
                }
            }
        }
        let mut created: Vec<(PathBuf, PointKind)> = Vec::new();
        for p in missing.into_iter().rev() {
            let k = if p == target { kind } else { PointKind::Dir };
            let made = match k {
                PointKind::Dir => {
                    std::fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&p)
                        .and_then(|()| {
                            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                        })
                }
                PointKind::File => std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&p)
                    .map(drop),
            };
            if let Err(e) = made {
                for (c, ck) in created.iter().rev() {
                    ck.remove(c);
                }
                return Err(format!(
                    "cannot create the mount point {} on this node: {e}",
                    p.display()
                ));
            }
            created.push((p, k));
        }
        for (p, k) in created {
            self.held.insert(p, (0, k));
        }
        let mine: Vec<PathBuf> = target
            .ancestors()
            .filter(|p| self.held.contains_key(*p))
            .map(Path::to_path_buf)
            .collect();
        for p in &mine {
            if let Some((n, _)) = self.held.get_mut(p) {
                *n += 1;
            }
        }
        Ok(mine)
    }

    /// Gives back paths from [`MountPoints::acquire`]; removes those no task holds any more.
    pub(super) fn release(&mut self, paths: &[PathBuf]) {
        let mut free = Vec::new();
        for p in paths {
            if let Some((n, k)) = self.held.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    free.push((p.clone(), *k));
                }
            }
        }
        free.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, k) in free {
            self.held.remove(&p);
            k.remove(&p);
        }
    }

    /// Takes over mount points an earlier runtime created for a task it started (adopted after a
    /// restart): counted like acquired ones, removed when the last task holding them exits.
    pub(super) fn adopt(&mut self, paths: &[PathBuf]) {
        for p in paths {
            let kind = if p.is_dir() {
                PointKind::Dir
            } else {
                PointKind::File
            };
            self.held.entry(p.clone()).or_insert((0, kind)).0 += 1;
        }
    }

    /// Removes every mount point still held (the runtime is going away).
    pub(super) fn remove_all(&mut self) {
        let mut all: Vec<_> = self.held.drain().map(|(p, (_, k))| (p, k)).collect();
        all.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, k) in all {
            k.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_docker() {
        for ok in ["ab", "data", "my-vol_1.x", "0x"] {
            assert!(valid_volume_name(ok), "{ok}");
        }
        for bad in ["", "a", "_x", ".x", "-x", "a/b", "a b", "/abs", "é1"] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
    }

    #[test]
    fn mount_points_are_created_counted_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut mp = MountPoints::default();
        let deep = tmp.path().join("a/b/c");
        let file = tmp.path().join("a/f");
        let h1 = mp.acquire(&deep, PointKind::Dir).unwrap();
        assert_eq!(h1.len(), 3);
        assert!(deep.is_dir());
        let h2 = mp.acquire(&file, PointKind::File).unwrap();
        assert_eq!(h2, vec![file.clone(), tmp.path().join("a")]);
        assert!(file.is_file());
        let h3 = mp.acquire(&deep, PointKind::Dir).unwrap();
        mp.release(&h1);
        assert!(deep.is_dir(), "still held by a second acquisition");
        mp.release(&h3);
        assert!(!tmp.path().join("a/b").exists());
        assert!(file.is_file());
        mp.release(&h2);
        assert!(!tmp.path().join("a").exists());
        assert!(tmp.path().exists(), "pre-existing paths are never removed");
    }

    #[test]
    fn existing_targets_of_the_wrong_kind_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut mp = MountPoints::default();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"").unwrap();
        let e = mp.acquire(&f, PointKind::Dir).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        let e = mp.acquire(tmp.path(), PointKind::File).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(mp.acquire(&f, PointKind::File).unwrap().is_empty());
        assert!(mp.acquire(tmp.path(), PointKind::Dir).unwrap().is_empty());
        let e = mp.acquire(&f.join("below"), PointKind::Dir).unwrap_err();
        assert!(e.contains("cannot create"), "{e}");
    }
}
