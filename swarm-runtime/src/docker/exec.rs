//! `exec` for the docker runtime, and how a timed-out exec is killed.
//!
//! The Engine API cannot cancel or signal an exec. On timeout the adapter kills the exec'd
//! process itself, but only when it can prove the process is the exec's and lives in the
//! container: it opens a pidfd on the PID the engine reports (so the PID cannot be reused under
//! it), checks that the process is in the container's PID namespace, checks with the engine that
//! the exec still runs (so the pidfd names the exec's process, not a successor), and signals
//! through the pidfd. When any check fails (the daemon does not share the engine's PID namespace,
//! or lacks the rights to look) nothing is killed: the probe is reported timed out and the stray
//! command ends with the container, as in Docker before 20.10.

use std::os::fd::OwnedFd;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use swarm_core::Id;

use super::convert::{engine, status_code};
use super::DockerRuntime;
use crate::error::RuntimeError;
use crate::runtime::{clip_output, ExecResult, RuntimeState, MAX_EXEC_OUTPUT};

impl DockerRuntime {
    /// [`crate::Runtime::exec`]: runs `cmd` in the task's container as the task's user.
    pub(super) async fn exec_in(
        &self,
        task: &Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let (container, state, user) =
            self.get(task, |t| (t.container.clone(), t.state, t.user.clone()))?;
        if state != RuntimeState::Running {
            return Err(RuntimeError::NotRunning { task: *task });
        }
        let docker = &self.inner.docker;
        let created = docker
            .create_exec(
                &container,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.to_vec()),
                    user: (!user.is_empty()).then_some(user),
                    ..CreateExecOptions::default()
                },
            )
            .await
            .map_err(|e| match status_code(&e) {
                Some(409) => RuntimeError::NotRunning { task: *task },
                _ => engine("create exec", e),
            })?;
        let run = async {
            let mut out = Vec::new();
            match docker.start_exec(&created.id, None).await {
                Ok(StartExecResults::Attached { mut output, .. }) => {
                    while let Some(Ok(chunk)) = output.next().await {
                        let bytes = chunk.into_bytes();
                        let room = MAX_EXEC_OUTPUT.saturating_sub(out.len());
                        out.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    }
                }
                Ok(StartExecResults::Detached) => {}
                Err(e) => return Err(engine("start exec", e)),
            }
            Ok(out)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(out) => {
                let out = out?;
                let inspect = docker
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| engine("inspect exec", e))?;
                Ok(ExecResult {
                    exit_code: inspect.exit_code.unwrap_or(-1),
                    output: clip_output(&out),
                })
            }
            Err(_) => {
                self.kill_exec(&created.id, &container).await;
                Err(RuntimeError::ExecTimeout { timeout })
            }
        }
    }

    /// Kills a timed-out exec's process when it is provably that process (see the module docs).
    async fn kill_exec(&self, exec: &str, container: &str) {
        let docker = &self.inner.docker;
        let Some(pid) = docker
            .inspect_exec(exec)
            .await
            .ok()
            .and_then(|i| i.pid)
            .and_then(|p| libc::pid_t::try_from(p).ok())
            .filter(|p| *p > 1)
        else {
            return;
        };
        let Some(init) = docker
            .inspect_container(container, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.pid)
            .and_then(|p| libc::pid_t::try_from(p).ok())
            .filter(|p| *p > 0)
        else {
            return;
        };
        let Some(fd) = pidfd_open(pid) else {
            tracing::debug!(pid, "timed-out exec not killed: no pidfd for its pid");
            return;
        };
        if !same_pid_namespace(pid, init) {
            tracing::debug!(
                pid,
                "timed-out exec not killed: its pid is not in the container's namespace here"
            );
            return;
        }
        // The pidfd now pins whatever `pid` named when it was opened; the exec still running
        // means that was the exec's process (its pid cannot be reused before it is reaped).
        let running = docker
            .inspect_exec(exec)
            .await
            .ok()
            .and_then(|i| i.running)
            .unwrap_or(false);
        if running {
            pidfd_kill(&fd);
        }
    }
}

/// Opens a pidfd for `pid` (Linux 5.3+).
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Sends SIGKILL through a pidfd.
fn pidfd_kill(fd: &OwnedFd) {
    if let Err(e) = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL) {
        tracing::debug!(
            error = %e,
            "killing a timed-out exec failed (it may have exited)"
        );
    }
}

/// Whether two processes, as this process sees them, share a PID namespace.
fn same_pid_namespace(a: libc::pid_t, b: libc::pid_t) -> bool {
    let ns = |p: libc::pid_t| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    match (ns(a), ns(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_shares_its_namespace_and_a_missing_pid_does_not() {
        let me = libc::pid_t::try_from(std::process::id()).unwrap();
        assert!(same_pid_namespace(me, me));
        assert!(!same_pid_namespace(me, libc::pid_t::MAX));
        assert!(pidfd_open(libc::pid_t::MAX).is_none());
    }
}
