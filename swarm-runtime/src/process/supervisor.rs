//! The per-task supervisor: a small process that owns one task's process, its exit code and its
//! output, and outlives the daemon (as containerd-shim does for containers).
//!
//! The daemon starts it as a separate exec of a binary the embedder chooses (`swarm-node
//! supervise <socket>` for the reference daemon; see [`super::SupervisorOptions`]), and that
//! binary calls [`supervise`] before it starts any runtime of its own. The supervisor runs in its
//! own session, so neither a signal to the daemon's process group nor the daemon's death reaches
//! it. It reads a launch frame on standard input, starts the task (as PID 1 of a new PID namespace
//! when asked), answers on standard output, waits for the daemon's acknowledgement (no
//! acknowledgement = the daemon gave up on the start: the task is killed, so a cancelled start
//! leaves no process), then serves the protocol of [`super::proto`] on its Unix socket until the
//! daemon collects the exit code.
//!
//! When the task exits the supervisor kills what is left of its process group and deletes the
//! task's staging directory at once (secrets never outlive the task, even while no daemon runs),
//! then keeps the exit code and the log ring until a daemon sends `Collect`.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};

use super::logs::LogBuffer;
use super::proto::{
    self, Launch, Launched, ProtoError, Reply, Request, WireLine, PROTOCOL_VERSION,
};
use super::spawn;
use crate::runtime::{ExitStatus, LogStream};

/// Why a supervisor could not run.
#[derive(Debug, Error)]
pub enum SupervisorError {
    /// The launch frame from the daemon was missing or bad.
    #[error("reading the launch request: {0}")]
    Launch(#[source] ProtoError),
    /// The daemon speaks another protocol version.
    #[error(
        "the daemon speaks supervisor protocol {theirs}; this binary speaks {PROTOCOL_VERSION}"
    )]
    Version {
        /// The daemon's version.
        theirs: u32,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The task's process could not be started (the daemon was told why).
    #[error("starting the task: {0}")]
    Start(String),
    /// The daemon did not acknowledge the start; the task was killed.
    #[error("the daemon went away before acknowledging the start; the task was stopped")]
    Abandoned,
}

fn io_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> SupervisorError {
    let op = op.into();
    move |source| SupervisorError::Io { op, source }
}

/// Runs a supervisor serving on `socket`: call it from the supervisor executable's `main`, before
/// any async runtime exists (it builds its own single-threaded one), with standard input and
/// output as the daemon gave them. Returns once the daemon has collected the task's exit code.
pub fn supervise(socket: &Path) -> Result<(), SupervisorError> {
    // The launch carries the task's environment: keep it out of core dumps and away from other
    // processes of the same user, like the daemon itself.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let mut stdin = std::io::stdin().lock();
    let launch: Launch = proto::read_sync(&mut stdin).map_err(SupervisorError::Launch)?;
    if launch.version != PROTOCOL_VERSION {
        let reason = format!(
            "supervisor speaks protocol {PROTOCOL_VERSION}, the daemon {}",
            launch.version
        );
        let _ = proto::write_sync(&mut std::io::stdout(), &Launched::Failed { reason });
        return Err(SupervisorError::Version {
            theirs: launch.version,
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the supervisor's event loop"))?;
    rt.block_on(run(socket, launch, stdin))
}

/// What every connection handler shares.
struct State {
    launch: Launch,
    pid: u32,
    exit: watch::Sender<Option<ExitStatus>>,
    logs: LogBuffer,
    /// The stop signal the supervisor emulated with `SIGKILL` (see [`Request::Stop`]).
    emulated: Mutex<Option<i32>>,
    collected: Notify,
}

fn fail(reason: String) -> SupervisorError {
    let _ = proto::write_sync(
        &mut std::io::stdout(),
        &Launched::Failed {
            reason: reason.clone(),
        },
    );
    SupervisorError::Start(reason)
}

async fn run(
    socket: &Path,
    mut launch: Launch,
    mut stdin: std::io::StdinLock<'static>,
) -> Result<(), SupervisorError> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)
        .map_err(|e| fail(format!("binding {}: {e}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(format!("chmod {}: {e}", socket.display())))?;
    let result = start(&mut launch, &mut stdin).await;
    if result.is_err() {
        let _ = std::fs::remove_file(socket);
    }
    let (child, pid) = result?;
    let (exit, _) = watch::channel(None);
    let state = Arc::new(State {
        launch,
        pid,
        exit,
        logs: LogBuffer::default(),
        emulated: Mutex::new(None),
        collected: Notify::new(),
    });
    reap(state.clone(), child);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                if let Ok((conn, _)) = conn {
                    tokio::spawn(serve(state.clone(), conn));
                }
            }
            _ = state.collected.notified() => break,
        }
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Starts the task, reports it, and waits for the daemon's acknowledgement.
async fn start(
    launch: &mut Launch,
    stdin: &mut std::io::StdinLock<'static>,
) -> Result<(tokio::process::Child, u32), SupervisorError> {
    if launch.pid_namespace {
        // SAFETY: rustix marks unshare unsafe only for `CLONE_FILES` (descriptors shared with
        // other threads); a PID namespace only affects children forked after it (the task
        // becomes PID 1 of the new namespace), and this thread forks only the task.
        #[allow(unsafe_code)]
        let unshared =
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWPID) };
        if let Err(e) = unshared {
            return Err(fail(format!("creating a PID namespace: {e}")));
        }
    }
    let setup = Arc::new(std::mem::take(&mut launch.setup));
    let mut child = spawn::command(&launch.program, &launch.args, &launch.env, setup)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let pid = child.id().unwrap_or(0);
    let told = proto::write_sync(&mut std::io::stdout(), &Launched::Started { pid });
    // One byte back means the daemon recorded the task; end of file means it gave up.
    let mut ack = [0u8; 1];
    let acked = told.is_ok() && matches!(stdin.read(&mut ack), Ok(1));
    if !acked {
        spawn::kill_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
        cleanup(launch);
        return Err(SupervisorError::Abandoned);
    }
    detach_stdio();
    Ok((child, pid))
}

/// Points standard input, output and error at /dev/null: the daemon's pipes must not keep it
/// (or a dead daemon's terminal) involved.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

fn cleanup(launch: &Launch) {
    if let Some(dir) = &launch.cleanup {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Collects the task's output and its exit.
fn reap(state: Arc<State>, mut child: tokio::process::Child) {
    if let Some(out) = child.stdout.take() {
        state.logs.spawn_reader(LogStream::Stdout, out);
    }
    if let Some(err) = child.stderr.take() {
        state.logs.spawn_reader(LogStream::Stderr, err);
    }
    tokio::spawn(async move {
        let mut status = match child.wait().await {
            Ok(s) => spawn::exit_status(s),
            Err(_) => ExitStatus::signal(libc::SIGKILL),
        };
        if status.signal == Some(libc::SIGKILL) {
            if let Some(sig) = *state.emulated.lock().unwrap_or_else(|e| e.into_inner()) {
                status = ExitStatus::signal(sig);
            }
        }
        // Like a container: when the main process ends, everything it started ends too.
        spawn::kill_group(state.pid, libc::SIGKILL);
        cleanup(&state.launch);
        state.exit.send_replace(Some(status));
    });
}

async fn serve(state: Arc<State>, mut conn: UnixStream) {
    let Ok(Request::Hello { version }) = proto::read(&mut conn).await else {
        return;
    };
    if version != PROTOCOL_VERSION {
        let msg = format!("supervisor speaks protocol {PROTOCOL_VERSION}, not {version}");
        let _ = proto::write(&mut conn, &Reply::Refused(msg)).await;
        return;
    }
    let hello = Reply::Hello {
        version: PROTOCOL_VERSION,
        node: state.launch.node,
        task: state.launch.task,
        pid: state.pid,
        exit: state.exit.borrow().map(Into::into),
        record: state.launch.record.clone(),
    };
    if proto::write(&mut conn, &hello).await.is_err() {
        return;
    }
    while let Ok(req) = proto::read::<Request>(&mut conn).await {
        let reply = match req {
            Request::Hello { .. } => Reply::Refused("hello was already sent".into()),
            Request::Status => Reply::Status {
                exit: state.exit.borrow().map(Into::into),
            },
            Request::Wait => Reply::Exited(exited(&state).await.into()),
            Request::Stop { signal, grace } => {
                Reply::Exited(stop(&state, signal, grace).await.into())
            }
            Request::Logs { tail } => Reply::Logs(logs(&state, tail)),
            Request::Records {
                since,
                tail,
                from,
                wait_ms,
            } => records(&state, since, tail, from, wait_ms).await,
            Request::Collect if state.exit.borrow().is_none() => {
                Reply::Refused("the task is still running; stop it first".into())
            }
            Request::Collect => {
                let _ = proto::write(&mut conn, &Reply::Collected).await;
                state.collected.notify_one();
                return;
            }
        };
        if proto::write(&mut conn, &reply).await.is_err() {
            return;
        }
    }
}

async fn exited(state: &State) -> ExitStatus {
    let mut rx = state.exit.subscribe();
    let status = match rx.wait_for(Option::is_some).await {
        Ok(s) => s.unwrap_or(ExitStatus::signal(libc::SIGKILL)),
        Err(_) => ExitStatus::signal(libc::SIGKILL),
    };
    status
}

async fn stop(state: &State, signal: i32, grace: Duration) -> ExitStatus {
    if let Some(s) = *state.exit.borrow() {
        return s;
    }
    if state.launch.pid_namespace && init_ignores(state.pid, signal) {
        // The kernel drops signals a namespace's init does not handle; a process outside a PID
        // namespace would die of this one, so the task does, and reports that signal.
        *state.emulated.lock().unwrap_or_else(|e| e.into_inner()) = Some(signal);
        spawn::kill_group(state.pid, libc::SIGKILL);
    } else {
        spawn::kill_group(state.pid, signal);
    }
    match tokio::time::timeout(grace, exited(state)).await {
        Ok(s) => s,
        Err(_) => {
            spawn::kill_group(state.pid, libc::SIGKILL);
            exited(state).await
        }
    }
}

/// Whether `pid`, as a PID namespace's init, would not see `signal` although its default action
/// kills: it neither catches nor ignores it.
fn init_ignores(pid: u32, signal: i32) -> bool {
    let harmless = [
        libc::SIGCHLD,
        libc::SIGCONT,
        libc::SIGURG,
        libc::SIGWINCH,
        libc::SIGSTOP,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ];
    if harmless.contains(&signal) || !(1..=64).contains(&signal) {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let bit = 1u64 << (signal - 1);
    (mask("SigCgt:") | mask("SigIgn:")) & bit == 0
}

/// The log tail, cut (oldest first) so the reply fits in a frame.
fn logs(state: &State, tail: Option<u64>) -> Vec<WireLine> {
    let tail = tail.map(|t| usize::try_from(t).unwrap_or(usize::MAX));
    let lines = state.logs.tail(tail);
    let budget = proto::MAX_FRAME as usize / 2;
    let mut used = 0;
    let mut keep = lines.len();
    for (i, l) in lines.iter().enumerate().rev() {
        used += l.line.len() + 16;
        if used > budget {
            break;
        }
        keep = i;
    }
    lines[keep..].iter().map(WireLine::from).collect()
}

/// Answers `Request::Records` (see there), cut so the reply fits in a frame: the newest lines
/// of a first read, the oldest of a follow (the next request goes on from there).
async fn records(
    state: &State,
    since: Option<u64>,
    tail: Option<u64>,
    from: Option<u64>,
    wait_ms: u32,
) -> Reply {
    let budget = proto::MAX_FRAME as usize / 2;
    let wire = |(_, r): (u64, crate::runtime::LogRecord)| proto::WireRecord {
        time: r.time.map_or(0, |t| t.as_nanos()),
        stderr: r.stream == LogStream::Stderr,
        line: r.line,
    };
    match from {
        None => {
            let opts = crate::runtime::LogOptions {
                since: since.map(swarm_core::Timestamp),
                tail: tail.map(|t| usize::try_from(t).unwrap_or(usize::MAX)),
                follow: false,
            };
            let (lines, next) = state.logs.select(&opts);
            let mut used = 0;
            let mut keep = lines.len();
            for (i, (_, r)) in lines.iter().enumerate().rev() {
                used += r.line.len() + 24;
                if used > budget {
                    break;
                }
                keep = i;
            }
            Reply::Records {
                lines: lines.into_iter().skip(keep).map(wire).collect(),
                next,
                finished: false,
            }
        }
        Some(from) => {
            let wait = Duration::from_millis(u64::from(wait_ms.min(10_000)));
            let _ = tokio::time::timeout(wait, state.logs.wait_after(from)).await;
            // About 16 KiB per line at most: 1,024 lines stay well under the budget.
            let batch = state.logs.after(from, 1024);
            Reply::Records {
                lines: batch.lines.into_iter().map(wire).collect(),
                next: batch.next,
                finished: batch.finished,
            }
        }
    }
}

/// The socket path of a task's supervisor in `dir`.
pub(crate) fn socket_path(dir: &Path, task: &swarm_core::Id) -> PathBuf {
    dir.join(format!("{task}.sock"))
}
