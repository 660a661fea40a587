//! The `sim` runtime: in-memory tasks with scripted behaviour, for tests and scale runs.
//!
//! A task's script comes from its container labels (runtime options `swarm.runtime.sim.*`):
//!
//! | option | meaning |
//! | --- | --- |
//! | `exit` = code | exit with this code (after `after`, default 0 s); without it the task runs until stopped |
//! | `after` = duration | when to exit (`2s`, `150ms`) |
//! | `fail-start` = message | `start` fails with this message |
//! | `unhealthy-after` = duration | every `exec` fails once the task has run this long |
//! | `ignore-stop` = true | the stop signal is ignored; only `SIGKILL` after the grace period ends it |
//! | `output` = text | printed to stdout when the task starts |
//!
//! Time is tokio time, so tests may use `tokio::time::pause()`. A task that runs until stopped costs
//! one map entry and no tokio task, so one agent can hold tens of thousands.
//!
//! `prepare` and `start` never await, so a dropped future cannot leave half a task (contract
//! clause 9); `recover` lists the node's tasks in the map (nothing outlives the value to adopt).
//!
//! `exec` understands a few commands, enough for health checks and the conformance suite: `true`,
//! `false`, `sh -c "exit N"`, `echo ...`, `cat PATH`, `stat -c "%a %u %g" PATH`, `hostname`,
//! `printenv NAME` and `sleep SECONDS`. Others exit 127.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::duration::parse_duration;
use swarm_core::{Id, SecretData};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::RuntimeError;
use crate::runtime::{
    clip_output, runtime_options, stop_and_wait, wait_exit, ExecResult, ExitStatus, LogLine,
    LogOptions, LogRecord, LogRecords, LogStream, RecoveredTask, Runtime, RuntimeState, TaskConfig,
    TaskInspect,
};
use crate::signal::parse_signal;

const OPTIONS: &[&str] = &[
    "exit",
    "after",
    "fail-start",
    "unhealthy-after",
    "ignore-stop",
    "output",
];

/// The scripted behaviour of one simulated task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Script {
    exit: Option<(i64, Duration)>,
    fail_start: Option<String>,
    unhealthy_after: Option<Duration>,
    ignore_stop: bool,
    output: Option<String>,
}

struct SimFile {
    mode: u32,
    uid: u32,
    gid: u32,
    data: SecretData,
}

struct SimTask {
    node: Id,
    script: Script,
    hostname: String,
    env: Vec<String>,
    stop_signal: i32,
    grace: Duration,
    state: RuntimeState,
    started_at: Option<Instant>,
    exit_tx: watch::Sender<Option<ExitStatus>>,
    logs: Vec<LogLine>,
    /// Wall-clock time the output lines were written (all at start).
    logs_at: Option<swarm_core::Timestamp>,
    files: HashMap<String, SimFile>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

/// The in-memory runtime. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct SimRuntime {
    tasks: Arc<Mutex<HashMap<Id, SimTask>>>,
}

impl std::fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRuntime")
            .field("tasks", &self.lock().len())
            .finish()
    }
}

impl SimRuntime {
    /// An empty simulator.
    pub fn new() -> SimRuntime {
        SimRuntime::default()
    }

    /// How many tasks it holds (prepared and not removed).
    pub fn task_count(&self) -> usize {
        self.lock().len()
    }

    /// How many tasks are running now.
    pub fn running_count(&self) -> usize {
        self.lock()
            .values()
            .filter(|t| t.state == RuntimeState::Running)
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Id, SimTask>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<R>(
        &self,
        task: &Id,
        f: impl FnOnce(&mut SimTask) -> Result<R, RuntimeError>,
    ) -> Result<R, RuntimeError> {
        let mut map = self.lock();
        let t = map
            .get_mut(task)
            .ok_or(RuntimeError::NotFound { task: *task })?;
        f(t)
    }

    fn exit(&self, task: &Id, status: ExitStatus) {
        let mut map = self.lock();
        if let Some(t) = map.get_mut(task) {
            finish(t, status);
        }
    }
}

fn finish(t: &mut SimTask, status: ExitStatus) {
    if matches!(t.state, RuntimeState::Exited(_)) {
        return;
    }
    t.state = RuntimeState::Exited(status);
    t.files.clear();
    if let Some(h) = t.timer.take() {
        h.abort();
    }
    t.exit_tx.send_replace(Some(status));
}

fn parse_script(config: &TaskConfig) -> Result<Script, RuntimeError> {
    let opts = runtime_options(&config.container.labels, "sim", OPTIONS)?;
    let dur = |key: &str| -> Result<Option<Duration>, RuntimeError> {
        opts.get(key)
            .map(|v| {
                parse_duration(v).map_err(|_| RuntimeError::BadOptionValue {
                    option: format!("swarm.runtime.sim.{key}"),
                    value: v.clone(),
                    expected: "a duration such as 2s or 150ms",
                })
            })
            .transpose()
    };
    let exit = match opts.get("exit") {
        Some(v) => Some((
            v.parse::<i64>().map_err(|_| RuntimeError::BadOptionValue {
                option: "swarm.runtime.sim.exit".into(),
                value: v.clone(),
                expected: "an exit code",
            })?,
            dur("after")?.unwrap_or(Duration::ZERO),
        )),
        None => None,
    };
    Ok(Script {
        exit,
        fail_start: opts.get("fail-start").cloned(),
        unhealthy_after: dur("unhealthy-after")?,
        ignore_stop: opts.get("ignore-stop").is_some_and(|v| v == "true"),
        output: opts.get("output").cloned(),
    })
}

#[async_trait]
impl Runtime for SimRuntime {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn prepare(&self, config: &TaskConfig) -> Result<(), RuntimeError> {
        let script = parse_script(config)?;
        let stop_signal = parse_signal(&config.container.stop_signal)?;
        let files = config
            .files
            .iter()
            .map(|f| {
                (
                    f.target.clone(),
                    SimFile {
                        mode: f.mode,
                        uid: f.uid,
                        gid: f.gid,
                        data: f.data.clone(),
                    },
                )
            })
            .collect();
        let mut map = self.lock();
        if map.contains_key(&config.task_id) {
            return Err(RuntimeError::AlreadyPrepared {
                task: config.task_id,
            });
        }
        let (exit_tx, _) = watch::channel(None);
        map.insert(
            config.task_id,
            SimTask {
                node: config.node_id,
                script,
                hostname: config.container.hostname.clone(),
                env: config.container.env.clone(),
                stop_signal,
                grace: config.container.effective_stop_grace_period(),
                state: RuntimeState::Created,
                started_at: None,
                exit_tx,
                logs: Vec::new(),
                logs_at: None,
                files,
                timer: None,
            },
        );
        Ok(())
    }

    async fn start(&self, task: &Id) -> Result<(), RuntimeError> {
        let this = self.clone();
        let id = *task;
        self.with(task, |t| {
            if t.state != RuntimeState::Created {
                return Err(RuntimeError::AlreadyStarted { task: id });
            }
            if let Some(msg) = &t.script.fail_start {
                return Err(RuntimeError::StartFailed {
                    task: id,
                    reason: msg.clone(),
                });
            }
            t.state = RuntimeState::Running;
            t.started_at = Some(Instant::now());
            if let Some(out) = &t.script.output {
                t.logs_at = Some(crate::process::wall_now());
                t.logs.push(LogLine {
                    stream: LogStream::Stdout,
                    line: out.clone(),
                });
            }
            if let Some((code, after)) = t.script.exit {
                if after.is_zero() {
                    finish(t, ExitStatus::code(code));
                } else {
                    t.timer = Some(tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        this.exit(&id, ExitStatus::code(code));
                    }));
                }
            }
            Ok(())
        })
    }

    async fn wait(&self, task: &Id) -> Result<ExitStatus, RuntimeError> {
        let mut rx = self.with(task, |t| Ok(t.exit_tx.subscribe()))?;
        // A dropped record: the task was removed while we waited, which kills it.
        Ok(wait_exit(&mut rx)
            .await
            .unwrap_or(ExitStatus::signal(libc::SIGKILL)))
    }

    async fn shutdown(&self, task: &Id) -> Result<(), RuntimeError> {
        let step = {
            let mut map = self.lock();
            let Some(t) = map.get_mut(task) else {
                return Ok(());
            };
            match t.state {
                RuntimeState::Exited(_) => None,
                RuntimeState::Created => {
                    finish(t, ExitStatus::code(0));
                    None
                }
                RuntimeState::Running if !t.script.ignore_stop => {
                    let sig = t.stop_signal;
                    finish(t, ExitStatus::signal(sig));
                    None
                }
                RuntimeState::Running => Some((t.grace, t.exit_tx.subscribe())),
            }
        };
        let Some((grace, mut rx)) = step else {
            return Ok(());
        };
        // The stop signal was "sent" above (this script ignores it); the kill always works.
        let kill = async { self.exit(task, ExitStatus::signal(libc::SIGKILL)) };
        stop_and_wait(task, &mut rx, async {}, grace, kill).await
    }

    /// The sim's tasks live in this value, so there is never anything to adopt: it lists the
    /// node's tasks it holds (its inventory, for the conformance suite).
    async fn recover(&self, node: &Id) -> Result<Vec<RecoveredTask>, RuntimeError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, t)| t.node == *node)
            .map(|(id, t)| RecoveredTask {
                task: *id,
                state: t.state,
            })
            .collect())
    }

    async fn remove(&self, task: &Id) -> Result<(), RuntimeError> {
        if let Some(mut t) = self.lock().remove(task) {
            finish(&mut t, ExitStatus::signal(libc::SIGKILL));
        }
        Ok(())
    }

    async fn inspect(&self, task: &Id) -> Result<TaskInspect, RuntimeError> {
        self.with(task, |t| {
            Ok(TaskInspect {
                state: t.state,
                container_id: format!("sim:{task}"),
                pid: 0,
                staged_files: Vec::new(),
                image_healthcheck: None,
                addresses: Vec::new(),
                ports: Vec::new(),
            })
        })
    }

    async fn exec(
        &self,
        task: &Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let outcome = self.with(task, |t| {
            if t.state != RuntimeState::Running {
                return Err(RuntimeError::NotRunning { task: *task });
            }
            let elapsed = t.started_at.map(|s| s.elapsed()).unwrap_or_default();
            if t.script.unhealthy_after.is_some_and(|d| elapsed >= d) {
                return Ok(Err(ExecResult {
                    exit_code: 1,
                    output: "simulated failure: the task turned unhealthy".into(),
                }));
            }
            Ok(Ok(interpret(t, cmd)))
        })?;
        match outcome {
            Err(done) => Ok(done),
            Ok(Interpreted::Done(r)) => Ok(r),
            Ok(Interpreted::Sleep(d)) => {
                if d > timeout {
                    tokio::time::sleep(timeout).await;
                    return Err(RuntimeError::ExecTimeout { timeout });
                }
                tokio::time::sleep(d).await;
                Ok(ExecResult {
                    exit_code: 0,
                    output: String::new(),
                })
            }
        }
    }

    async fn logs(&self, task: &Id, tail: Option<usize>) -> Result<Vec<LogLine>, RuntimeError> {
        self.with(task, |t| {
            let skip = tail.map_or(0, |n| t.logs.len().saturating_sub(n));
            Ok(t.logs[skip..].to_vec())
        })
    }

    /// Lines carry the time the task started (the simulator writes its output then). A follow
    /// ends when the task exits or is removed; a follow begun before the start gets the start's
    /// lines when it ends.
    async fn log_stream(&self, task: &Id, opts: LogOptions) -> Result<LogRecords, RuntimeError> {
        let (first, mut exit_rx) =
            self.with(task, |t| Ok((sim_records(t), t.exit_tx.subscribe())))?;
        let seen = first.len();
        let head = futures_util::stream::iter(opts.select(first).into_iter().map(Ok));
        if !opts.follow {
            return Ok(Box::pin(head));
        }
        let this = self.clone();
        let id = *task;
        let rest = futures_util::stream::once(async move {
            // Ends at the exit, or when the task (and its sender) is removed.
            let _ = exit_rx.wait_for(Option::is_some).await;
            let later = this.with(&id, |t| Ok(sim_records(t))).unwrap_or_default();
            futures_util::stream::iter(later.into_iter().skip(seen).map(Ok))
        });
        Ok(Box::pin(futures_util::StreamExt::chain(
            head,
            futures_util::StreamExt::flatten(rest),
        )))
    }
}

fn sim_records(t: &SimTask) -> Vec<LogRecord> {
    t.logs
        .iter()
        .map(|l| LogRecord {
            time: t.logs_at,
            stream: l.stream,
            line: l.line.clone(),
        })
        .collect()
}

enum Interpreted {
    Done(ExecResult),
    Sleep(Duration),
}

fn done(exit_code: i64, output: impl Into<String>) -> Interpreted {
    Interpreted::Done(ExecResult {
        exit_code,
        output: clip_output(output.into().as_bytes()),
    })
}

fn interpret(t: &SimTask, cmd: &[String]) -> Interpreted {
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let prog = args.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    match (prog, args.get(1..).unwrap_or(&[])) {
        (Some("true"), _) => done(0, ""),
        (Some("false"), _) => done(1, ""),
        (Some("sh"), ["-c", script]) => match script.trim().strip_prefix("exit") {
            Some(n) => done(n.trim().parse().unwrap_or(2), ""),
            None => done(127, format!("sim: cannot interpret {script:?}")),
        },
        (Some("echo"), rest) => done(0, format!("{}\n", rest.join(" "))),
        (Some("hostname"), []) => done(0, format!("{}\n", t.hostname)),
        (Some("printenv"), [name]) => {
            let prefix = format!("{name}=");
            match t.env.iter().find_map(|e| e.strip_prefix(&prefix)) {
                Some(v) => done(0, format!("{v}\n")),
                None => done(1, ""),
            }
        }
        (Some("cat"), [path]) => match t.files.get(*path) {
            Some(f) => done(0, String::from_utf8_lossy(f.data.expose()).into_owned()),
            None => done(
                1,
                format!("cat: can't open '{path}': No such file or directory\n"),
            ),
        },
        (Some("stat"), ["-c", "%a %u %g", path]) => match t.files.get(*path) {
            Some(f) => done(0, format!("{:o} {} {}\n", f.mode, f.uid, f.gid)),
            None => done(
                1,
                format!("stat: can't stat '{path}': No such file or directory\n"),
            ),
        },
        (Some("sleep"), [secs]) => match secs.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Interpreted::Sleep(Duration::from_secs_f64(s)),
            _ => done(1, "sleep: invalid number\n"),
        },
        _ => done(127, format!("sim: {:?}: command not found\n", cmd)),
    }
}
