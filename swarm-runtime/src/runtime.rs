//! The [`Runtime`] trait every adapter implements, and the values it takes and returns.
//!
//! A runtime runs the tasks of one node. The agent's task controller drives it through a fixed
//! lifecycle, one call at a time per task: [`Runtime::prepare`] -> [`Runtime::start`] ->
//! [`Runtime::wait`] (while [`Runtime::exec`] runs health checks and [`Runtime::shutdown`] may stop it) ->
//! [`Runtime::remove`]. Everything the runtime needs is in the [`TaskConfig`] given to `prepare`:
//! templates are already expanded and secret/config payloads already resolved.
//!
//! Two more calls frame that lifecycle: [`Runtime::recover`] runs once when the node's agent
//! starts, to take over the tasks a previous run of the node left running (the daemon restarted;
//! its workloads did not), and the conformance suite uses it as the runtime's inventory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use swarm_core::objects::service::{ContainerSpec, HealthConfig, PortConfig, ResourceRequirements};
use swarm_core::objects::task::{NetworkAttachment, TaskAddress};
use swarm_core::{Id, SecretData, Timestamp};

use crate::error::RuntimeError;

/// Everything a runtime needs to run one task. Built by the agent from a [`swarm_core::Task`].
#[derive(Clone, Debug)]
pub struct TaskConfig {
    /// The task id (the key of every other [`Runtime`] call).
    pub task_id: Id,
    /// Docker's task name, `<service>.<slot>.<task id>`.
    pub task_name: String,
    /// The owning service.
    pub service_id: Id,
    /// The service's name.
    pub service_name: String,
    /// The node running it.
    pub node_id: Id,
    /// The container spec with hostname, env and mount templates expanded.
    pub container: ContainerSpec,
    /// Limits and reservations.
    pub resources: ResourceRequirements,
    /// Secret and config files to materialise, with resolved targets and payloads.
    pub files: Vec<TaskFile>,
    /// Swarm networks to attach to. `aliases` is the complete list of DNS names the task answers
    /// to on that network: the service name, `tasks.<service>`, the task name, then the
    /// service's extra aliases.
    pub networks: Vec<NetworkAttachment>,
    /// The service's published ports; the adapter binds the host-mode ones on the node.
    pub ports: Vec<PortConfig>,
}

impl TaskConfig {
    /// A minimal config for tests and examples: the given container spec, no files.
    pub fn new(task_id: Id, service_name: &str, container: ContainerSpec) -> TaskConfig {
        TaskConfig {
            task_id,
            task_name: format!("{service_name}.1.{task_id}"),
            service_id: Id::from_u128(0),
            service_name: service_name.to_string(),
            node_id: Id::from_u128(0),
            container,
            resources: ResourceRequirements::default(),
            files: Vec::new(),
            networks: Vec::new(),
            ports: Vec::new(),
        }
    }
}

/// Whether a [`TaskFile`] is a secret or a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A secret: appears under `/run/secrets` unless its target is absolute.
    Secret,
    /// A config: appears at `/<target>`.
    Config,
}

/// A secret or config file the task must see.
#[derive(Clone, Debug)]
pub struct TaskFile {
    /// Secret or config.
    pub kind: FileKind,
    /// The secret's or config's id.
    pub id: Id,
    /// Its name (for messages).
    pub name: String,
    /// Absolute, normalised path inside the task (`/run/secrets/db_password`).
    pub target: String,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// File mode (permission bits only).
    pub mode: u32,
    /// The payload (configs too: they are wiped from memory the same way).
    pub data: SecretData,
}

/// How a task's main process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code; `128 + signal` when killed by a signal, as Docker reports it.
    pub code: i64,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// A normal exit with `code`.
    pub fn code(code: i64) -> ExitStatus {
        ExitStatus { code, signal: None }
    }

    /// Death by `signal` (code `128 + signal`).
    pub fn signal(signal: i32) -> ExitStatus {
        ExitStatus {
            code: 128 + i64::from(signal),
            signal: Some(signal),
        }
    }

    /// Whether the task succeeded (code 0).
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Where a task is in the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeState {
    /// Prepared, not started.
    Created,
    /// Running.
    Running,
    /// Exited (on its own or stopped).
    Exited(ExitStatus),
}

/// What [`Runtime::inspect`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInspect {
    /// Where the task is.
    pub state: RuntimeState,
    /// Runtime-specific id (a Docker container id, `process:<task id>`, `sim:<task id>`).
    pub container_id: String,
    /// Process id of the main process on the host, once started (0 when the runtime has none).
    pub pid: u32,
    /// Host paths of the materialised secret and config files (empty when the runtime keeps them
    /// in memory, as `sim` does). They exist from `prepare` until the task has exited.
    pub staged_files: Vec<PathBuf>,
    /// The image's own health check, used when the spec's test is empty (Docker images only).
    pub image_healthcheck: Option<HealthConfig>,
    /// Where the running task can be reached, one entry per network (empty before it runs).
    pub addresses: Vec<TaskAddress>,
    /// The host-mode ports bound for the task, with the node port chosen when none was given.
    pub ports: Vec<PortConfig>,
}

/// What [`Runtime::exec`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecResult {
    /// Exit code of the command (`128 + signal` when killed).
    pub exit_code: i64,
    /// Standard output and error, interleaved, truncated to [`MAX_EXEC_OUTPUT`] bytes.
    pub output: String,
}

/// Most bytes of output [`Runtime::exec`] keeps (Docker keeps 4 KiB of health check output).
pub const MAX_EXEC_OUTPUT: usize = 4096;

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a task's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Where it came from.
    pub stream: LogStream,
    /// The line, without its trailing newline (invalid UTF-8 replaced).
    pub line: String,
}

/// One line of a task's output with the time it was written: what [`Runtime::log_stream`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// When the runtime captured the line (the engine's timestamp for the docker adapter).
    /// `None` only from an adapter that keeps no times (the trait's default `log_stream`).
    pub time: Option<Timestamp>,
    /// Where it came from.
    pub stream: LogStream,
    /// The line, without its trailing newline (invalid UTF-8 replaced).
    pub line: String,
}

impl LogRecord {
    /// The line without its time.
    pub fn into_line(self) -> LogLine {
        LogLine {
            stream: self.stream,
            line: self.line,
        }
    }
}

/// What [`Runtime::log_stream`] reads. The default reads every kept line and ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Of the lines that pass `since`, only the last `tail` (all when `None`).
    pub tail: Option<usize>,
    /// Keep the stream open and yield lines as they are written, until the task has exited and
    /// its output is delivered (or the task is removed). Without it the stream ends after the
    /// lines kept now.
    pub follow: bool,
}

impl LogOptions {
    /// A finished stream of `lines` kept without write times, selected by `tail` (`since` keeps
    /// them all: a line without a time is never known to be older): what a source that records no
    /// times can offer. The default [`Runtime::log_stream`] and swarm-node's default backend use it.
    pub fn stream_untimed(&self, lines: Vec<LogLine>) -> LogRecords {
        let records = lines
            .into_iter()
            .map(|l| LogRecord {
                time: None,
                stream: l.stream,
                line: l.line,
            })
            .collect();
        let selected = self.select(records);
        Box::pin(futures_util::stream::iter(selected.into_iter().map(Ok)))
    }

    /// Applies `since` then `tail` to lines already kept, oldest first.
    pub fn select(&self, lines: Vec<LogRecord>) -> Vec<LogRecord> {
        let mut lines: Vec<LogRecord> = match self.since {
            Some(since) => lines
                .into_iter()
                .filter(|l| l.time.is_none_or(|t| t >= since))
                .collect(),
            None => lines,
        };
        if let Some(n) = self.tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        lines
    }
}

/// The lines of [`Runtime::log_stream`], oldest first. Dropping it stops the follow and releases
/// everything the runtime held for it (connections, subscriptions).
pub type LogRecords = BoxStream<'static, Result<LogRecord, RuntimeError>>;

/// How long an adapter waits for a task to exit after it sent `SIGKILL`, at most. A kernel or
/// engine that has not reaped a killed task by then is wedged; [`Runtime::shutdown`] gives up
/// with [`RuntimeError::KillTimedOut`] instead of hanging the node's stop.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// Waits for the exit an adapter publishes on `exit`, a `watch` channel holding `None` until the
/// task ends: `Some` of the published value, or `None` when the sender is gone without one (the
/// adapter dropped the task's record, as `remove` does: the adapter says what that means).
pub async fn wait_exit<T: Clone>(exit: &mut tokio::sync::watch::Receiver<Option<T>>) -> Option<T> {
    match exit.wait_for(Option::is_some).await {
        Ok(value) => value.clone(),
        Err(_) => None,
    }
}

/// Whether the exit on `exit` comes within `limit` (a closed channel counts: the record of a
/// task is dropped only once it ended).
async fn exits_within<T>(
    exit: &mut tokio::sync::watch::Receiver<Option<T>>,
    limit: Duration,
) -> bool {
    tokio::time::timeout(limit, exit.wait_for(Option::is_some))
        .await
        .is_ok()
}

/// Stops a running task the way [`Runtime::shutdown`] must: runs `signal` (send the stop
/// signal), waits up to `grace` for the exit on `exit`, then [`kill_and_wait`]s. Returns once the
/// exit is published, or [`RuntimeError::KillTimedOut`] when even `SIGKILL` brought none within
/// [`KILL_WAIT`]. `signal` and `kill` are run at most once each, in that order.
pub async fn stop_and_wait<T>(
    task: &Id,
    exit: &mut tokio::sync::watch::Receiver<Option<T>>,
    signal: impl std::future::Future<Output = ()>,
    grace: Duration,
    kill: impl std::future::Future<Output = ()>,
) -> Result<(), RuntimeError> {
    signal.await;
    if exits_within(exit, grace).await {
        return Ok(());
    }
    kill_and_wait(task, exit, kill).await
}

/// Runs `kill` (send `SIGKILL`) and waits up to [`KILL_WAIT`] for the exit on `exit`;
/// [`RuntimeError::KillTimedOut`] if none comes.
pub async fn kill_and_wait<T>(
    task: &Id,
    exit: &mut tokio::sync::watch::Receiver<Option<T>>,
    kill: impl std::future::Future<Output = ()>,
) -> Result<(), RuntimeError> {
    kill.await;
    if exits_within(exit, KILL_WAIT).await {
        Ok(())
    } else {
        Err(RuntimeError::KillTimedOut {
            task: *task,
            waited: KILL_WAIT,
        })
    }
}

/// A task [`Runtime::recover`] found: one the runtime holds something for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredTask {
    /// The task.
    pub task: Id,
    /// Where it is now.
    pub state: RuntimeState,
}

/// Runs tasks on one node. Implemented by the `process`, `docker` and `sim` adapters.
///
/// Every method takes the task's id; the runtime keys all its state by it. The agent's controller
/// makes at most one lifecycle call (`prepare`, `start`, `shutdown`, `remove`) per task at a time,
/// but `wait`, `inspect`, `exec` and `logs` may run concurrently with them and with each other.
///
/// # To ensure correctness
/// An adapter must:
/// 1. **Validate in `prepare`.** Reject a task it cannot run with [`RuntimeError::is_rejection`]
///    errors (missing image or binary, no command, unknown runtime option, bad user, unwritable
///    file target, unknown stop signal) before anything starts. A failing `prepare` leaves nothing
///    behind: no staged file, no container.
/// 2. **Keep secrets off disk.** Materialise [`TaskFile`]s only on tmpfs, with exactly the
///    requested uid, gid and mode, visible to this task only (never to another task), and delete
///    them once the task has exited: by the time `wait` or `shutdown` returns, the files listed in
///    [`TaskInspect::staged_files`] are gone. Never log a payload.
/// 3. **Start once.** `start` on a prepared task starts it and returns once it runs; a second
///    `start`, or `start` of an unknown task, is an error. A binary that cannot be executed makes
///    `start` (or `prepare`) fail, never `wait`.
/// 4. **Report one exit.** `wait` returns the same [`ExitStatus`] to every caller, however many
///    wait and whenever they call (before or after the exit); a signal death is `128 + signal`.
/// 5. **Stop with grace.** `shutdown` sends the spec's stop signal (`SIGTERM` when empty) to the
///    task, waits up to the stop grace period (10 s when unset), then sends `SIGKILL`, and returns
///    once the task has exited. On a task that never started or already exited it returns `Ok`.
/// 6. **Remove idempotently.** `remove` kills the task if it still runs, frees everything it holds
///    (container, staged files, logs) and succeeds on a task it does not know.
/// 7. **Exec in the task's world.** `exec` runs a command with the task's environment, user,
///    working directory and file view (its `/run/secrets`), returns its exit code and up to
///    [`MAX_EXEC_OUTPUT`] bytes of output, and kills it after `timeout`
///    ([`RuntimeError::ExecTimeout`]). It fails with [`RuntimeError::NotRunning`] on a task that
///    is not running.
/// 8. **Answer `NotFound`.** `start`, `wait`, `shutdown`, `inspect`, `exec`, `logs` on an unknown
///    task return [`RuntimeError::NotFound`] (`shutdown` and `remove` may return `Ok`).
/// 9. **Survive cancellation.** The agent drops a `prepare` or `start` future when the task is
///    removed meanwhile (and a node stop drops everything). A future dropped at any await point
///    leaves nothing `remove` cannot free: whatever was created (container, process, mount,
///    staged file, network reference) is registered under the task id before the next await, so
///    `remove` of that task frees it, and `recover` lists it until then. A dropped `start` leaves
///    the task either not started or running *with its exit observed*: `wait` and `shutdown`
///    still return once it exits.
/// 10. **Bound every wait.** `shutdown` returns within the stop grace period plus [`KILL_WAIT`]
///    (plus the time of the engine calls themselves): when the task has not exited [`KILL_WAIT`]
///    after `SIGKILL`, it returns [`RuntimeError::KillTimedOut`]. `remove` is bounded too (each
///    adapter documents its bound). An exit that cannot be observed (the engine's wait failed
///    and the task is gone) makes `wait` return [`RuntimeError::ExitUnknown`], never a made-up
///    exit code.
/// 11. **Recover what this node owns.** `recover(node)` finds, in the world and not only in
///    memory, every task of `node` the runtime holds something for (containers or processes
///    labelled with the node's id, staged files), adopts those it did not know (a previous run
///    of the node left them: the daemon restarted) and returns them all with their state. An
///    adopted task behaves as if this instance had prepared it (`Created`) or started it
///    (`Running`, `Exited`): `wait` reports its exit (an exit code the runtime can read back,
///    else [`RuntimeError::ExitUnknown`]), `shutdown`, `remove`, `inspect`, `exec` and `logs`
///    work, and its output from before the restart is kept where the runtime can keep it. It
///    never touches another node's tasks, so nodes may share one engine or host. A runtime
///    whose tasks cannot outlive it keeps the default: nothing to recover.
///
/// The conformance suite (`testing::conformance`, feature `testing`) checks all of this.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Short name (`process`, `docker`, `sim`); also the adapter's runtime-option prefix
    /// (`swarm.runtime.<name>.<option>` container labels). For display and labels only: callers
    /// that behave differently per adapter ask [`Runtime::capabilities`], never the name.
    fn name(&self) -> &'static str;

    /// How this adapter's tasks differ from isolated containers, for callers that adapt to it
    /// (the routing mesh, the API's view of a service's endpoint). Default: none of the
    /// differences ([`Capabilities::default`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Validates the task and gets everything ready to start (files staged, container created).
    async fn prepare(&self, config: &TaskConfig) -> Result<(), RuntimeError>;

    /// Starts a prepared task.
    async fn start(&self, task: &Id) -> Result<(), RuntimeError>;

    /// Waits for the task to exit and returns how.
    async fn wait(&self, task: &Id) -> Result<ExitStatus, RuntimeError>;

    /// Stops the task: stop signal, then `SIGKILL` after the grace period; returns once it exited.
    async fn shutdown(&self, task: &Id) -> Result<(), RuntimeError>;

    /// Frees everything the task holds; kills it first if it still runs.
    async fn remove(&self, task: &Id) -> Result<(), RuntimeError>;

    /// Reports the task's state.
    async fn inspect(&self, task: &Id) -> Result<TaskInspect, RuntimeError>;

    /// Runs `cmd` inside the running task (health checks use this).
    async fn exec(
        &self,
        task: &Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError>;

    /// The task's output so far: the last `tail` lines, or all kept lines when `None`.
    async fn logs(&self, task: &Id, tail: Option<usize>) -> Result<Vec<LogLine>, RuntimeError>;

    /// The task's output with the time each line was written, filtered by `opts.since` and
    /// `opts.tail`, and with `opts.follow` every later line as it is written (see [`LogOptions`]).
    /// An unknown task is [`RuntimeError::NotFound`] here, before any line. Adapters that record
    /// write times override it (docker, process, sim all do); the default reads [`Runtime::logs`]
    /// once, without times, and does not follow, so an adapter keeping the default does not pass
    /// the conformance suite's log case (a wrapper should forward this call).
    async fn log_stream(&self, task: &Id, opts: LogOptions) -> Result<LogRecords, RuntimeError> {
        Ok(opts.stream_untimed(self.logs(task, None).await?))
    }

    /// Every task of `node` this runtime holds something for, adopting the ones a previous run
    /// of the node left behind (see clause 11 above). The agent calls it once before it asks
    /// for assignments: adopted tasks still assigned keep running, the others are removed.
    /// Default: nothing to recover (for runtimes whose tasks die with them).
    async fn recover(&self, node: &Id) -> Result<Vec<RecoveredTask>, RuntimeError> {
        let _ = node;
        Ok(Vec::new())
    }
}

/// The label prefix of runtime options: `swarm.runtime.<runtime name>.<option>`.
pub const RUNTIME_OPTION_PREFIX: &str = "swarm.runtime.";

/// Extracts this runtime's options from container labels. Options meant for other runtimes are
/// ignored (one service may run on nodes with different runtimes); an option with this runtime's
/// prefix that is not in `known` rejects the task.
pub fn runtime_options(
    labels: &BTreeMap<String, String>,
    runtime: &str,
    known: &[&str],
) -> Result<BTreeMap<String, String>, RuntimeError> {
    let prefix = format!("{RUNTIME_OPTION_PREFIX}{runtime}.");
    let mut out = BTreeMap::new();
    for (k, v) in labels {
        let Some(opt) = k.strip_prefix(&prefix) else {
            continue;
        };
        if !known.contains(&opt) {
            return Err(RuntimeError::UnknownOption {
                runtime: runtime.to_string(),
                option: k.clone(),
                known: known.iter().map(|o| format!("{prefix}{o}")).collect(),
            });
        }
        out.insert(opt.to_string(), v.clone());
    }
    Ok(out)
}

/// Truncates exec output to [`MAX_EXEC_OUTPUT`] bytes on a character boundary.
pub(crate) fn clip_output(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() <= MAX_EXEC_OUTPUT {
        return s.into_owned();
    }
    let mut end = MAX_EXEC_OUTPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// What a [`Runtime`] adapter's tasks share with the host, as [`Runtime::capabilities`] reports
/// it. `Default` is an isolated adapter (containers with their own network namespace). Built with
/// the `with_*` methods, so adding a field is not a breaking change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Tasks run in the host's network namespace: their addresses are the host's, a host-mode
    /// published port is the target port itself, and the routing mesh must not listen on a
    /// port a task listens on. (`process`: true.)
    pub host_network: bool,
}

impl Capabilities {
    /// These capabilities with [`Capabilities::host_network`] set to `on`.
    pub const fn with_host_network(mut self, on: bool) -> Capabilities {
        self.host_network = on;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_for_other_runtimes_are_ignored_unknown_ones_rejected() {
        let mut labels = BTreeMap::new();
        labels.insert("swarm.runtime.docker.network".to_string(), "none".into());
        labels.insert("app".to_string(), "x".into());
        let opts = runtime_options(&labels, "process", &["namespace"]).unwrap();
        assert!(opts.is_empty());
        labels.insert("swarm.runtime.process.bogus".to_string(), "1".into());
        let err = runtime_options(&labels, "process", &["namespace"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("swarm.runtime.process.bogus"), "{msg}");
        assert!(msg.contains("swarm.runtime.process.namespace"), "{msg}");
        assert!(err.is_rejection());
    }

    /// The stop sequence: no kill when the stop signal works within the grace period, a kill
    /// after it when not, and a typed error when even the kill brings no exit (virtual time).
    #[tokio::test(start_paused = true)]
    async fn stop_and_wait_escalates_once_and_is_bounded() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use tokio::sync::watch;
        let task = Id::from_u128(1);
        let kills = AtomicU32::new(0);
        let kill = || async {
            kills.fetch_add(1, Ordering::SeqCst);
        };
        let grace = Duration::from_secs(10);

        // Exits on the stop signal.
        let (tx, mut rx) = watch::channel(None::<ExitStatus>);
        let signal = async {
            tx.send_replace(Some(ExitStatus::signal(15)));
        };
        stop_and_wait(&task, &mut rx, signal, grace, kill())
            .await
            .unwrap();
        assert_eq!(kills.load(Ordering::SeqCst), 0);
        assert_eq!(wait_exit(&mut rx).await, Some(ExitStatus::signal(15)));

        // Ignores the stop signal, dies of the kill.
        let (tx, mut rx) = watch::channel(None::<ExitStatus>);
        let kill_works = async {
            kills.fetch_add(1, Ordering::SeqCst);
            tx.send_replace(Some(ExitStatus::signal(9)));
        };
        stop_and_wait(&task, &mut rx, async {}, grace, kill_works)
            .await
            .unwrap();
        assert_eq!(kills.load(Ordering::SeqCst), 1);

        // Survives the kill: the wait ends after KILL_WAIT with a typed error.
        let (_tx, mut rx) = watch::channel(None::<ExitStatus>);
        let err = stop_and_wait(&task, &mut rx, async {}, grace, kill())
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::KillTimedOut { waited, .. } if waited == KILL_WAIT));
        assert_eq!(kills.load(Ordering::SeqCst), 2);

        // A dropped record counts as an exit for the stop, and as no exit for the wait.
        let (tx, mut rx) = watch::channel(None::<ExitStatus>);
        drop(tx);
        kill_and_wait(&task, &mut rx, async {}).await.unwrap();
        assert_eq!(wait_exit(&mut rx).await, None);
    }

    #[test]
    fn exit_status_codes() {
        assert_eq!(ExitStatus::signal(9).code, 137);
        assert!(ExitStatus::code(0).success());
        assert_eq!(clip_output(&[b'a'; 5000]).len(), MAX_EXEC_OUTPUT);
    }
}
