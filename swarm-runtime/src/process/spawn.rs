//! Spawning task and exec processes: the code that runs in the child between `fork` and `exec`
//! (new session, private mount and UTS namespaces, bind mounts, hostname, uid/gid), program lookup,
//! and bounded output capture.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::RuntimeError;

/// One mount to perform in the child's private mount namespace.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MountOp {
    pub(crate) source: CString,
    pub(crate) target: CString,
    /// The filesystem to mount; `None` is a recursive bind mount of `source`.
    pub(crate) fstype: Option<CString>,
    /// `MountFlags` bits of a filesystem mount (a bind mount takes none).
    pub(crate) flags: u32,
    pub(crate) data: Option<CString>,
    /// Remount read-only (bind mounts need a second call for that).
    pub(crate) read_only: bool,
}

/// Everything the child does before `exec`. Built in the parent (all allocation happens there);
/// [`Setup::apply`] only makes system calls. Serialisable so that a supervisor can apply it
/// (everything but `join`, which only exec uses).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Setup {
    /// Enter new mount and UTS namespaces and make every mount private.
    pub(crate) unshare: bool,
    /// Namespaces to join (exec into a running task): open `/proc/<pid>/ns/*` files and the
    /// type each must be.
    #[serde(skip)]
    pub(crate) join: Vec<(OwnedFd, rustix::thread::LinkNameSpaceType)>,
    /// Mounts, in order.
    pub(crate) mounts: Vec<MountOp>,
    /// Hostname to set (needs `unshare`).
    pub(crate) hostname: Option<CString>,
    /// `(uid, gid, supplementary groups)` to switch to.
    pub(crate) ids: Option<(u32, u32, Vec<u32>)>,
    /// Working directory.
    pub(crate) dir: Option<CString>,
    /// Die (`SIGKILL`) when the parent dies: a supervised task must not outlive its supervisor,
    /// which alone can report its exit.
    pub(crate) die_with_parent: bool,
}

/// [`Setup::ids`] as rustix's types.
struct Credentials {
    uid: rustix::process::Uid,
    gid: rustix::process::Gid,
    groups: Vec<rustix::process::Gid>,
}

impl Setup {
    /// The credentials to switch to as rustix's types, built in the parent (the child must not
    /// allocate). `-1` is no id (the kernel reads it as "unchanged"): refused.
    fn credentials(&self) -> io::Result<Option<Credentials>> {
        use rustix::process::{Gid, Uid};
        let Some((uid, gid, groups)) = &self.ids else {
            return Ok(None);
        };
        if *uid == u32::MAX || *gid == u32::MAX || groups.contains(&u32::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "4294967295 (-1) is not a user or group id",
            ));
        }
        Ok(Some(Credentials {
            uid: Uid::from_raw(*uid),
            gid: Gid::from_raw(*gid),
            groups: groups.iter().map(|g| Gid::from_raw(*g)).collect(),
        }))
    }

    /// Runs in the forked child: async-signal-safe system calls only, no allocation (every
    /// argument is a `CStr` or slice owned by `self` or `ids`, which rustix passes through).
    #[allow(unsafe_code)]
    fn apply(&self, ids: Option<&Credentials>) -> io::Result<()> {
        use rustix::mount::{MountFlags, MountPropagationFlags};
        use rustix::thread::UnshareFlags;
        rustix::process::setsid()?;
        if self.unshare {
            // SAFETY: rustix marks unshare unsafe only for `CLONE_FILES` (descriptors shared
            // with other threads); mount and UTS namespaces carry no such hazard, and the
            // forked child has a single thread.
            #[allow(unsafe_code)]
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::NEWUTS) }?;
            rustix::mount::mount_change(
                c"/",
                MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
            )?;
        }
        for (fd, kind) in &self.join {
            rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind))?;
        }
        for m in &self.mounts {
            match &m.fstype {
                None => {
                    rustix::mount::mount_bind_recursive(m.source.as_c_str(), m.target.as_c_str())?
                }
                Some(fs) => rustix::mount::mount(
                    m.source.as_c_str(),
                    m.target.as_c_str(),
                    fs.as_c_str(),
                    MountFlags::from_bits_retain(m.flags),
                    m.data.as_deref(),
                )?,
            }
            if m.read_only {
                rustix::mount::mount_remount(
                    m.target.as_c_str(),
                    MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
                    c"",
                )?;
            }
        }
        if let Some(h) = &self.hostname {
            rustix::system::sethostname(h.as_bytes())?;
        }
        if let Some(ids) = ids {
            // The thread calls are the process's here: the forked child has one thread.
            rustix::thread::set_thread_groups(&ids.groups)?;
            rustix::thread::set_thread_gid(ids.gid)?;
            rustix::thread::set_thread_uid(ids.uid)?;
        }
        if let Some(d) = &self.dir {
            rustix::process::chdir(d.as_c_str())?;
        }
        // Last: a change of credentials clears the parent-death signal.
        if self.die_with_parent {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        }
        Ok(())
    }
}

/// A C string from a path or string; NUL bytes are a spec error.
pub(crate) fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, RuntimeError> {
    CString::new(s.as_ref())
        .map_err(|_| RuntimeError::invalid(format!("{what} contains a NUL byte")))
}

/// A bind mount of `source` onto `target`, optionally read-only.
pub(crate) fn bind(source: &Path, target: &str, read_only: bool) -> Result<MountOp, RuntimeError> {
    Ok(MountOp {
        source: cstring(source.as_os_str().as_bytes(), "mount source")?,
        target: cstring(target, "mount target")?,
        fstype: None,
        flags: 0,
        data: None,
        read_only,
    })
}

/// A fresh tmpfs on `target`, optionally read-only (`MS_RDONLY` from the start: a tmpfs needs no
/// remount for that).
pub(crate) fn tmpfs(target: &str, data: &str, read_only: bool) -> Result<MountOp, RuntimeError> {
    use rustix::mount::MountFlags;
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    if read_only {
        flags |= MountFlags::RDONLY;
    }
    Ok(MountOp {
        source: c"tmpfs".to_owned(),
        target: cstring(target, "mount target")?,
        fstype: Some(c"tmpfs".to_owned()),
        flags: flags.bits(),
        data: Some(cstring(data, "tmpfs options")?),
        read_only: false,
    })
}

/// A fresh procfs on `/proc`: mounted by a task that is the init of its own PID namespace, it
/// shows that namespace only, so `/proc/<pid>/root` of other tasks is out of reach.
pub(crate) fn procfs() -> MountOp {
    MountOp {
        source: c"proc".to_owned(),
        target: c"/proc".to_owned(),
        fstype: Some(c"proc".to_owned()),
        flags: (rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOEXEC)
            .bits(),
        data: None,
        read_only: false,
    }
}

/// Builds a command that runs `program` with exactly `env`, piped stdout/stderr and `setup`
/// applied in the child.
pub(crate) fn command(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    setup: Arc<Setup>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let ids = setup.credentials();
    // SAFETY: the closure performs only async-signal-safe system calls on memory it owns (the
    // `Arc` and the credentials built above), and allocates nothing (an `io::Error` from an
    // errno or an `ErrorKind` does not allocate).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || match &ids {
            Ok(ids) => setup.apply(ids.as_ref()),
            Err(e) => Err(e.kind().into()),
        });
    }
    cmd
}

/// Finds `name` the way `execvp` would, using the task's `PATH`; errors use Docker's wording.
pub(crate) fn find_program(name: &str, path_var: &str) -> Result<PathBuf, RuntimeError> {
    let not_found = |reason: &str| RuntimeError::ExecutableNotFound {
        command: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(not_found("empty command"));
    }
    if name.contains('/') {
        let p = PathBuf::from(name);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && is_executable(&m) => Ok(p),
            Ok(m) if m.is_dir() => Err(not_found("is a directory")),
            Ok(_) => Err(not_found("permission denied")),
            Err(_) => Err(not_found("no such file or directory")),
        };
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(name);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && is_executable(&m) {
                return Ok(p);
            }
        }
    }
    Err(not_found("executable file not found in $PATH"))
}

fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

/// Reads two streams to their end concurrently, keeping at most `limit` bytes in total.
pub(crate) async fn read_both(
    a: Option<impl AsyncRead + Unpin>,
    b: Option<impl AsyncRead + Unpin>,
    limit: usize,
) -> Vec<u8> {
    async fn drain(r: Option<impl AsyncRead + Unpin>, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let Some(mut r) = r else { return out };
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => {
                    let room = limit.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }
    let (mut x, y) = tokio::join!(drain(a, limit), drain(b, limit));
    x.extend_from_slice(&y);
    x.truncate(limit);
    x
}

/// Sends `sig` to the process group `pgid` (the task's session); a vanished group is fine.
pub(crate) fn kill_group(pgid: u32, sig: i32) {
    let Some(pgid) = i32::try_from(pgid)
        .ok()
        .filter(|p| *p > 1)
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let Some(sig) = to_signal(sig) else {
        tracing::warn!(sig, "not a signal that can be sent");
        return;
    };
    let _ = rustix::process::kill_process_group(pgid, sig);
}

/// A signal number as rustix's `Signal`: the named signals, and the real-time ones this libc
/// leaves to applications (`SIGRTMIN()..=SIGRTMAX()`; a stop signal may be one of those).
pub(crate) fn to_signal(sig: i32) -> Option<rustix::process::Signal> {
    if let Some(s) = rustix::process::Signal::from_named_raw(sig) {
        return Some(s);
    }
    if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) {
        // SAFETY: rustix requires that a real-time signal be one libc does not reserve for
        // itself; `SIGRTMIN()..=SIGRTMAX()` is exactly the range libc leaves to applications.
        #[allow(unsafe_code)]
        let sig = unsafe { rustix::process::Signal::from_raw_unchecked(sig) };
        return Some(sig);
    }
    None
}

/// Opens `/proc/<pid>/ns/<name>` to join it later.
pub(crate) fn open_ns(pid: u32, name: &str) -> Result<OwnedFd, RuntimeError> {
    let path = format!("/proc/{pid}/ns/{name}");
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| RuntimeError::io(format!("opening {path}"), e))
}

/// Converts a child's wait status into Docker's exit code convention.
pub(crate) fn exit_status(status: std::process::ExitStatus) -> crate::runtime::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => crate::runtime::ExitStatus::code(i64::from(code)),
        (None, Some(sig)) => crate::runtime::ExitStatus::signal(sig),
        (None, None) => crate::runtime::ExitStatus::code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lookup_uses_docker_wording() {
        assert!(find_program("sh", "/usr/bin:/bin").is_ok());
        let e = find_program("no-such-binary-xyz", "/usr/bin:/bin").unwrap_err();
        assert_eq!(
            e.to_string(),
            "exec: \"no-such-binary-xyz\": executable file not found in $PATH"
        );
        let e = find_program("/nonexistent/x", "").unwrap_err();
        assert!(e.to_string().contains("no such file or directory"));
        assert!(find_program("/etc/passwd", "").unwrap_err().is_rejection());
    }
}
