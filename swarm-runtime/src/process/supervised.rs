//! Supervised tasks, the runtime's side: starting a task under its supervisor
//! ([`super::supervisor`]), talking to it, and adopting the supervisors a previous run of the
//! node left behind ([`crate::Runtime::recover`]).
//!
//! A supervised task is keyed by its supervisor's socket, `<dir>/<task id>.sock`. The runtime
//! keeps one connection per running task waiting for its exit, and opens a short connection per
//! other call. Only `remove` collects the exit code: until then a restarted daemon finds the
//! supervisor, exited or not, and adopts it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use swarm_core::Id;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::logs::LogBuffer;
use super::prepare::Prepared;
use super::proto::{self, Launch, Launched, ProtoError, Reply, Request, PROTOCOL_VERSION};
use super::supervisor::socket_path;
use super::{Inner, ProcTask, ProcessRuntime};
use crate::error::RuntimeError;
use crate::runtime::{
    ExitStatus, LogLine, LogOptions, LogRecord, LogRecords, RuntimeState, KILL_WAIT,
};

/// How the runtime starts supervisors: `<program> <args...> <socket path>`, run as a separate
/// process that calls [`super::supervise`] with that socket path.
#[derive(Clone, Debug)]
pub struct SupervisorOptions {
    /// The supervisor executable (the reference daemon uses its own binary).
    pub program: PathBuf,
    /// Arguments before the socket path (`["supervise"]` for `swarm-node`).
    pub args: Vec<OsString>,
    /// Where supervisors' sockets live (created 0700). One directory per node: a restarted
    /// runtime adopts every supervisor of its node found here.
    pub dir: PathBuf,
}

/// How long a supervisor may take to start its task and answer.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a supervisor may take to answer a hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Supervisors greeted at once while adopting.
const ADOPT_CONCURRENCY: usize = 64;

fn proto_err(op: &str, e: ProtoError) -> RuntimeError {
    RuntimeError::io(op.to_string(), e.into())
}

/// What a supervisor says about itself.
pub(super) struct Hello {
    node: Id,
    task: Id,
    pid: u32,
    exit: Option<ExitStatus>,
    record: Vec<u8>,
}

/// Connects to a supervisor and exchanges hellos.
async fn connect(socket: &Path) -> Result<(UnixStream, Hello), ProtoError> {
    let mut conn = UnixStream::connect(socket).await?;
    proto::write(
        &mut conn,
        &Request::Hello {
            version: PROTOCOL_VERSION,
        },
    )
    .await?;
    match proto::read(&mut conn).await? {
        Reply::Hello {
            version,
            node,
            task,
            pid,
            exit,
            record,
        } => {
            if version != PROTOCOL_VERSION {
                return Err(ProtoError::Version { theirs: version });
            }
            let hello = Hello {
                node,
                task,
                pid,
                exit: exit.map(Into::into),
                record,
            };
            Ok((conn, hello))
        }
        Reply::Refused(why) => Err(ProtoError::Unexpected(why)),
        other => Err(ProtoError::Unexpected(format!("{other:?}"))),
    }
}

/// Longest a follower's request waits in the supervisor for a new line.
const FOLLOW_POLL_MS: u32 = 1_000;

fn record(w: proto::WireRecord) -> LogRecord {
    LogRecord {
        time: Some(swarm_core::Timestamp(w.time)),
        stream: if w.stderr {
            crate::runtime::LogStream::Stderr
        } else {
            crate::runtime::LogStream::Stdout
        },
        line: w.line,
    }
}

/// One request on a fresh connection.
async fn call(socket: &Path, req: Request) -> Result<Reply, ProtoError> {
    let (mut conn, _) = connect(socket).await?;
    proto::write(&mut conn, &req).await?;
    proto::read(&mut conn).await
}

impl ProcessRuntime {
    /// Starts a prepared task under a new supervisor. The task is recorded as running before the
    /// supervisor is acknowledged, so a dropped future leaves either no process (the supervisor
    /// kills its task when the acknowledgement never comes) or a recorded one.
    pub(super) async fn start_supervised(
        &self,
        task: &Id,
        prep: &Prepared,
        node: Id,
    ) -> Result<(), RuntimeError> {
        let Some(opts) = self.inner.supervisor.as_ref() else {
            return Err(RuntimeError::invalid("no supervisor configured"));
        };
        let mut setup = self.setup(prep, None)?;
        setup.die_with_parent = true;
        let record = bincode::serialize(prep)
            .map_err(|e| RuntimeError::io("encoding the task record", std::io::Error::other(e)))?;
        let launch = Launch {
            version: PROTOCOL_VERSION,
            node,
            task: *task,
            program: prep.program.clone(),
            args: prep.args.clone(),
            env: prep.env.clone(),
            setup,
            pid_namespace: prep.namespaces,
            cleanup: prep.staged.secrets_dir.parent().map(Path::to_path_buf),
            record,
        };
        let socket = socket_path(&opts.dir, task);
        let mut cmd = tokio::process::Command::new(&opts.program);
        // From `/`: a supervisor lives long and must not pin the daemon's working directory.
        cmd.args(&opts.args)
            .arg(&socket)
            .current_dir("/")
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        // SAFETY: setsid is async-signal-safe, allocates nothing and touches no memory.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
        }
        let failed = |reason: String| RuntimeError::StartFailed {
            task: *task,
            reason,
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("starting the supervisor: {e}")))?;
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(failed("the supervisor has no pipes".into()));
        };
        // The supervisor is our child until this daemon dies. Dropping the handle (not
        // kill-on-drop) leaves it running and lets tokio reap it in the background when it
        // exits, without holding a descriptor per task as a waiting handle would.
        drop(child);
        proto::write(&mut stdin, &launch)
            .await
            .map_err(|e| failed(format!("talking to the supervisor: {e}")))?;
        let answer = tokio::time::timeout(LAUNCH_TIMEOUT, proto::read::<Launched>(&mut stdout))
            .await
            .map_err(|_| {
                failed(format!(
                    "the supervisor did not answer in {LAUNCH_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| failed(format!("talking to the supervisor: {e}")))?;
        let pid = match answer {
            Launched::Started { pid } => pid,
            Launched::Failed { reason } => {
                self.inner.finish(task, ExitStatus::code(127));
                return Err(failed(reason));
            }
        };
        {
            let mut map = self.inner.lock();
            let Some(t) = map.get_mut(task) else {
                // Removed meanwhile: no acknowledgement, the supervisor stops the task.
                return Err(RuntimeError::NotFound { task: *task });
            };
            t.state = RuntimeState::Running;
            t.pid = pid;
            t.socket = Some(socket.clone());
        }
        spawn_waiter(Arc::downgrade(&self.inner), *task, Waiter::Connect(socket));
        // A failed acknowledgement means the supervisor is gone; the waiter reports it.
        let _ = stdin.write_all(&[1]).await;
        Ok(())
    }

    /// Stops a supervised task through its supervisor; returns once it exited.
    pub(super) async fn stop_supervised(
        &self,
        task: &Id,
        socket: &Path,
        signal: i32,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        // The supervisor sends SIGKILL after `grace`; it may take KILL_WAIT to die (plus a moment
        // for the supervisor itself to answer).
        let limit = grace + KILL_WAIT + Duration::from_secs(1);
        let status = match tokio::time::timeout(
            limit,
            call(socket, Request::Stop { signal, grace }),
        )
        .await
        {
            Ok(Ok(Reply::Exited(s))) => s.into(),
            Ok(Ok(other)) => {
                return Err(proto_err(
                    "stopping the task",
                    ProtoError::Unexpected(format!("{other:?}")),
                ))
            }
            Ok(Err(e)) => {
                self.inner.finish_unknown(
                    task,
                    format!("its supervisor is gone without reporting it ({e})"),
                );
                return Ok(());
            }
            Err(_) => {
                return Err(RuntimeError::KillTimedOut {
                    task: *task,
                    waited: KILL_WAIT,
                })
            }
        };
        self.inner.finish(task, status);
        Ok(())
    }

    /// Tells the supervisor its exit code was recorded; it exits. A gone supervisor is fine.
    pub(super) async fn collect(socket: &Path) {
        let _ = tokio::time::timeout(HELLO_TIMEOUT, call(socket, Request::Collect)).await;
    }

    /// The task's output from its supervisor (empty once the supervisor is gone).
    pub(super) async fn logs_supervised(
        socket: &Path,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>, RuntimeError> {
        let tail = tail.map(|t| t as u64);
        match call(socket, Request::Logs { tail }).await {
            Ok(Reply::Logs(lines)) => Ok(lines.into_iter().map(Into::into).collect()),
            Ok(other) => Err(proto_err(
                "reading the task's logs",
                ProtoError::Unexpected(format!("{other:?}")),
            )),
            Err(ProtoError::Io(_)) => Ok(Vec::new()),
            Err(e) => Err(proto_err("reading the task's logs", e)),
        }
    }

    /// The task's output with capture times from its supervisor, and with `opts.follow` the
    /// later lines, asked for on one connection (a long poll per batch) until the supervisor
    /// says the output is complete or goes away. Dropping the stream closes the connection.
    pub(super) async fn log_stream_supervised(
        socket: &Path,
        opts: LogOptions,
    ) -> Result<LogRecords, RuntimeError> {
        const OP: &str = "reading the task's logs";
        let (mut conn, _) = match connect(socket).await {
            Ok(c) => c,
            // The supervisor is gone (collected): nothing left to read.
            Err(ProtoError::Io(_)) => return Ok(Box::pin(stream::empty())),
            Err(e) => return Err(proto_err(OP, e)),
        };
        let first = Request::Records {
            since: opts.since.map(|t| t.as_nanos()),
            tail: opts.tail.map(|t| t as u64),
            from: None,
            wait_ms: 0,
        };
        proto::write(&mut conn, &first)
            .await
            .map_err(|e| proto_err(OP, e))?;
        let (lines, next) = match proto::read(&mut conn).await {
            Ok(Reply::Records { lines, next, .. }) => (lines, next),
            Ok(other) => return Err(proto_err(OP, ProtoError::Unexpected(format!("{other:?}")))),
            Err(e) => return Err(proto_err(OP, e)),
        };
        let head = stream::iter(lines.into_iter().map(|w| Ok(record(w))));
        if !opts.follow {
            return Ok(Box::pin(head));
        }
        // (connection, next sequence number, lines of the last batch reversed, done)
        let state = (conn, next, Vec::<LogRecord>::new(), false);
        let tail = stream::unfold(state, |(mut conn, next, mut pending, done)| async move {
            let mut next = next;
            let mut done = done;
            loop {
                if let Some(r) = pending.pop() {
                    return Some((Ok(r), (conn, next, pending, done)));
                }
                if done {
                    return None;
                }
                let req = Request::Records {
                    since: None,
                    tail: None,
                    from: Some(next),
                    wait_ms: FOLLOW_POLL_MS,
                };
                if proto::write(&mut conn, &req).await.is_err() {
                    return None;
                }
                match proto::read(&mut conn).await {
                    Ok(Reply::Records {
                        lines,
                        next: n,
                        finished,
                    }) => {
                        pending = lines.into_iter().rev().map(record).collect();
                        next = n;
                        done = finished;
                    }
                    // The supervisor went away (the task was removed) or answered nonsense.
                    _ => return None,
                }
            }
        });
        Ok(Box::pin(head.chain(tail)))
    }

    /// Adopts every supervisor of `node` in the socket directory that this runtime does not know,
    /// removes the sockets of dead supervisors, and sweeps staging directories no task owns.
    pub(super) async fn adopt(&self, node: &Id) -> Result<(), RuntimeError> {
        let Some(opts) = self.inner.supervisor.as_ref() else {
            return Ok(());
        };
        let entries = std::fs::read_dir(&opts.dir)
            .map_err(|e| RuntimeError::io(format!("listing {}", opts.dir.display()), e))?;
        let sockets: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sock"))
            .collect();
        // The hello's connection becomes the adopted task's waiter connection: one connection
        // per task, which is most of what adopting 10 000 tasks costs.
        type Greeted = (PathBuf, Result<(UnixStream, Hello), ProtoError>);
        let greeted: Vec<Greeted> = stream::iter(sockets)
            .map(|socket| async move {
                let hello = match tokio::time::timeout(HELLO_TIMEOUT, connect(&socket)).await {
                    Ok(r) => r,
                    Err(_) => Err(ProtoError::Unexpected("no hello in time".into())),
                };
                (socket, hello)
            })
            .buffer_unordered(ADOPT_CONCURRENCY)
            .collect()
            .await;
        for (socket, hello) in greeted {
            match hello {
                Ok((conn, h)) if h.node == *node => self.adopt_one(socket, conn, h),
                Ok(_) => {}
                Err(ProtoError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                    ) =>
                {
                    // Nobody listens: a supervisor that died (its task with it).
                    let _ = std::fs::remove_file(&socket);
                }
                Err(e) => {
                    let path = socket.display();
                    tracing::warn!(socket = %path, error = %e, "cannot adopt a task supervisor");
                }
            }
        }
        // Every task this runtime holds now has its directory kept; the agent calls `recover`
        // before it prepares anything, so no staging is in flight.
        let keep: std::collections::HashSet<Id> = self.inner.lock().keys().copied().collect();
        self.inner.stage.sweep(|id| keep.contains(id));
        Ok(())
    }

    fn adopt_one(&self, socket: PathBuf, conn: UnixStream, h: Hello) {
        if self.inner.lock().contains_key(&h.task) {
            return;
        }
        let prep: Prepared = match decode_record(&h.record) {
            Ok(p) => p,
            Err(e) => {
                let task = h.task;
                tracing::warn!(%task, error = %e, "cannot read an adopted task's record");
                return;
            }
        };
        if let Err(e) = self.inner.ports().reserve(&h.task, &prep.host_ports) {
            let task = h.task;
            tracing::warn!(%task, error = %e, "an adopted task's host port is taken");
        }
        self.inner.mountpoints().adopt(&prep.mountpoints);
        let state = match h.exit {
            Some(s) => RuntimeState::Exited(s),
            None => RuntimeState::Running,
        };
        let (exit_tx, _) = watch::channel(h.exit);
        self.inner.lock().insert(
            h.task,
            ProcTask {
                prep: Arc::new(prep),
                node: h.node,
                state,
                pid: h.pid,
                exit_tx,
                logs: LogBuffer::default(),
                socket: Some(socket.clone()),
                exit_unknown: None,
            },
        );
        if h.exit.is_some() {
            // It exited while no daemon ran: free what it held (its supervisor deleted its files).
            let map = self.inner.lock();
            if let Some(t) = map.get(&h.task) {
                self.inner.release(&h.task, &t.prep);
            }
        } else {
            spawn_waiter(Arc::downgrade(&self.inner), h.task, Waiter::Greeted(conn));
        }
    }
}

fn decode_record(bytes: &[u8]) -> Result<Prepared, bincode::Error> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(u64::from(proto::MAX_FRAME))
        .deserialize(bytes)
}

/// Waits on one connection for the task's exit and records it.
/// How a waiter reaches its supervisor.
enum Waiter {
    /// Connect and greet first.
    Connect(PathBuf),
    /// A connection that already exchanged hellos.
    Greeted(UnixStream),
}

/// Sends `Wait` on an already greeted connection and reads the answer.
async fn wait_on(mut conn: UnixStream) -> Result<Reply, ProtoError> {
    proto::write(&mut conn, &Request::Wait).await?;
    proto::read(&mut conn).await
}

fn spawn_waiter(inner: Weak<Inner>, task: Id, how: Waiter) {
    tokio::spawn(async move {
        let result = match how {
            Waiter::Connect(socket) => call(&socket, Request::Wait).await,
            Waiter::Greeted(conn) => wait_on(conn).await,
        };
        let Some(inner) = inner.upgrade() else { return };
        match result {
            Ok(Reply::Exited(s)) => inner.finish(&task, s.into()),
            // The supervisor died without telling (killed): its task's exit is unknown.
            Ok(other) => inner.finish_unknown(&task, format!("its supervisor answered {other:?}")),
            Err(e) => inner.finish_unknown(
                &task,
                format!("its supervisor is gone without reporting it ({e})"),
            ),
        }
    });
}
