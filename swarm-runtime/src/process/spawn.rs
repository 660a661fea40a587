//! Spawning task and exec processes: the code that runs in the child between `fork` and `exec`
//! (new session, private mount and UTS namespaces, bind mounts, hostname, uid/gid), program lookup,
//! and bounded output capture.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
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
    pub(crate) fstype: Option<CString>,
    pub(crate) flags: libc::c_ulong,
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
    /// Namespaces to join (exec into a running task): open `/proc/<pid>/ns/*` files and types.
    #[serde(skip)]
    pub(crate) join: Vec<(OwnedFd, libc::c_int)>,
    /// Mounts, in order.
    pub(crate) mounts: Vec<MountOp>,
    /// Hostname to set (needs `unshare`).
    pub(crate) hostname: Option<CString>,
    /// `(uid, gid, supplementary groups)` to switch to.
    pub(crate) ids: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// Working directory.
    pub(crate) dir: Option<CString>,
    /// Die (`SIGKILL`) when the parent dies: a supervised task must not outlive its supervisor,
    /// which alone can report its exit.
    pub(crate) die_with_parent: bool,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Setup {
    /// Runs in the forked child: async-signal-safe system calls only, no allocation.
    fn apply(&self) -> io::Result<()> {
        // SAFETY (whole block): every pointer passed below comes from a CString or Vec owned by
        // `self`, which outlives the calls; the child is single-threaded at this point.
        unsafe {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if self.unshare {
                check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
            }
            for (fd, nstype) in &self.join {
                check(libc::setns(fd.as_raw_fd(), *nstype))?;
            }
            for m in &self.mounts {
                check(libc::mount(
                    m.source.as_ptr(),
                    m.target.as_ptr(),
                    m.fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                    m.flags,
                    m.data
                        .as_ref()
                        .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
                ))?;
                if m.read_only {
                    check(libc::mount(
                        std::ptr::null(),
                        m.target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REMOUNT
                            | libc::MS_BIND
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV,
                        std::ptr::null(),
                    ))?;
                }
            }
            if let Some(h) = &self.hostname {
                check(libc::sethostname(h.as_ptr(), h.as_bytes().len()))?;
            }
            if let Some((uid, gid, groups)) = &self.ids {
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(*gid))?;
                check(libc::setuid(*uid))?;
            }
            if let Some(d) = &self.dir {
                check(libc::chdir(d.as_ptr()))?;
            }
            // Last: a change of credentials clears the parent-death signal.
            if self.die_with_parent {
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            }
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
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
        read_only,
    })
}

/// A fresh tmpfs on `target`, optionally read-only (`MS_RDONLY` from the start: a tmpfs needs no
/// remount for that).
pub(crate) fn tmpfs(target: &str, data: &str, read_only: bool) -> Result<MountOp, RuntimeError> {
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    Ok(MountOp {
        source: c"tmpfs".to_owned(),
        target: cstring(target, "mount target")?,
        fstype: Some(c"tmpfs".to_owned()),
        flags,
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
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
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
    // SAFETY: `Setup::apply` performs only async-signal-safe system calls on memory owned by the
    // `Arc`, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || setup.apply());
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
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; a negative pid addresses the group.
    unsafe {
        libc::kill(-pgid, sig);
    }
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
