//! The conformance suite: every case checks one clause of the [`Runtime`] contract through a
//! [`Fixture`]. Cases panic on failure (they are meant to run inside tests) and never sleep for a
//! fixed time: they wait on conditions with timeouts.

use std::future::Future;
use std::time::{Duration, Instant};

use swarm_core::{SecretData, Timestamp};

pub use super::cancel::{
    cancelled_prepare_leaves_nothing, cancelled_start_leaves_an_observed_task,
    exit_during_start_is_reported, recover_adopts_a_running_task, recover_adopts_an_exited_task,
    recover_lists_this_nodes_tasks_only,
};
use super::{unique_id, Behaviour, Fixture, Probe, IGNORING_STOP};
use crate::error::RuntimeError;
use crate::files::is_tmpfs;
use crate::runtime::{FileKind, LogOptions, Runtime, RuntimeState, TaskConfig, TaskFile};

/// Upper bound on any single step.
const STEP: Duration = Duration::from_secs(30);

async fn step<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {STEP:?}"),
    }
}

fn config(f: &dyn Fixture, b: &Behaviour) -> TaskConfig {
    let mut c = TaskConfig::new(unique_id(), "conformance", f.spec(b));
    c.container.stop_grace_period = Some(Duration::from_secs(10));
    c
}

async fn started(f: &dyn Fixture, c: &TaskConfig) -> std::sync::Arc<dyn Runtime> {
    let rt = f.runtime();
    step("prepare", rt.prepare(c)).await.expect("prepare");
    step("start", rt.start(&c.task_id)).await.expect("start");
    rt
}

async fn exec_ok(rt: &dyn Runtime, c: &TaskConfig, cmd: Vec<String>) -> String {
    let r = step("exec", rt.exec(&c.task_id, &cmd, Duration::from_secs(20)))
        .await
        .expect("exec");
    assert_eq!(r.exit_code, 0, "exec {cmd:?} failed: {}", r.output);
    r.output
}

async fn cleanup(rt: &dyn Runtime, c: &TaskConfig) {
    step("remove", rt.remove(&c.task_id)).await.expect("remove");
}

/// prepare -> created -> start -> running -> shutdown -> exited -> remove -> not found.
pub async fn lifecycle(f: &dyn Fixture) {
    let c = config(f, &Behaviour::RunForever);
    let rt = f.runtime();
    step("prepare", rt.prepare(&c)).await.expect("prepare");
    let i = rt.inspect(&c.task_id).await.expect("inspect");
    assert_eq!(i.state, RuntimeState::Created);
    step("start", rt.start(&c.task_id)).await.expect("start");
    let i = rt.inspect(&c.task_id).await.expect("inspect");
    assert_eq!(i.state, RuntimeState::Running);
    assert!(!i.container_id.is_empty());
    let t0 = Instant::now();
    step("shutdown", rt.shutdown(&c.task_id))
        .await
        .expect("shutdown");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "a task that honours the stop signal must not wait for the grace period"
    );
    let exit = step("wait", rt.wait(&c.task_id)).await.expect("wait");
    assert_ne!(exit.code, 0, "a stopped task reports the signal");
    assert!(matches!(
        rt.inspect(&c.task_id).await.expect("inspect").state,
        RuntimeState::Exited(_)
    ));
    cleanup(&*rt, &c).await;
    assert!(matches!(
        rt.inspect(&c.task_id).await,
        Err(RuntimeError::NotFound { .. })
    ));
    rt.remove(&c.task_id).await.expect("remove is idempotent");
}

/// The exit code reaches every waiter, before and after the exit.
pub async fn exit_code_reaches_every_waiter(f: &dyn Fixture) {
    let c = config(
        f,
        &Behaviour::Exit {
            code: 3,
            after: Duration::from_millis(300),
        },
    );
    let rt = started(f, &c).await;
    let (a, b) = tokio::join!(rt.wait(&c.task_id), rt.wait(&c.task_id));
    assert_eq!(a.expect("wait").code, 3);
    assert_eq!(b.expect("wait").code, 3);
    let late = step("wait", rt.wait(&c.task_id)).await.expect("wait");
    assert_eq!(late.code, 3);
    assert!(late.signal.is_none());
    cleanup(&*rt, &c).await;

    let c = config(
        f,
        &Behaviour::Exit {
            code: 0,
            after: Duration::ZERO,
        },
    );
    let rt = started(f, &c).await;
    assert!(step("wait", rt.wait(&c.task_id))
        .await
        .expect("wait")
        .success());
    cleanup(&*rt, &c).await;
}

/// A task ignoring the stop signal is killed after the grace period.
pub async fn ignored_stop_is_killed_after_grace(f: &dyn Fixture) {
    let mut c = config(f, &Behaviour::IgnoreStop);
    let grace = Duration::from_millis(1500);
    c.container.stop_grace_period = Some(grace);
    let rt = started(f, &c).await;
    // Stop it only once it says it ignores the stop signal: exec can work before the shell has
    // run its `trap`, and a TERM before that ends it at once.
    wait_logged(&*rt, &c, IGNORING_STOP).await;
    let t0 = Instant::now();
    step("shutdown", rt.shutdown(&c.task_id))
        .await
        .expect("shutdown");
    let took = t0.elapsed();
    assert!(
        took >= grace - Duration::from_millis(100),
        "killed after {took:?}, before the grace period"
    );
    assert!(
        took < grace + Duration::from_secs(8),
        "killed only after {took:?}"
    );
    let exit = step("wait", rt.wait(&c.task_id)).await.expect("wait");
    assert_eq!(exit.code, 137, "SIGKILL is reported as 137");
    cleanup(&*rt, &c).await;
}

/// Waits until exec works in the task (it has started its shell).
async fn wait_exec_ready(rt: &dyn Runtime, f: &dyn Fixture, c: &TaskConfig) {
    let deadline = Instant::now() + STEP;
    loop {
        if let Ok(r) = rt.exec(&c.task_id, &f.probe(&Probe::Succeed), STEP).await {
            if r.exit_code == 0 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "exec never succeeded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A task that cannot start fails in `prepare` or `start`, never later, and can be removed.
pub async fn start_failure_is_an_error(f: &dyn Fixture) {
    let c = config(f, &Behaviour::FailStart);
    let rt = f.runtime();
    let failed = match step("prepare", rt.prepare(&c)).await {
        Err(_) => true,
        Ok(()) => step("start", rt.start(&c.task_id)).await.is_err(),
    };
    assert!(
        failed,
        "a task that cannot start must fail prepare or start"
    );
    cleanup(&*rt, &c).await;
}

/// exec sees the task's env and hostname, reports exit codes, times out.
pub async fn exec_runs_inside_the_task(f: &dyn Fixture) {
    let mut c = config(f, &Behaviour::RunForever);
    c.container.env.push("CONFORMANCE_VAR=some value".into());
    c.container.hostname = "conformance-host".into();
    let rt = started(f, &c).await;
    wait_exec_ready(&*rt, f, &c).await;
    let out = exec_ok(
        &*rt,
        &c,
        f.probe(&Probe::PrintEnv("CONFORMANCE_VAR".into())),
    )
    .await;
    assert_eq!(out.trim(), "some value");
    if f.sets_hostname() {
        let out = exec_ok(&*rt, &c, f.probe(&Probe::Hostname)).await;
        assert_eq!(out.trim(), "conformance-host");
    }
    let r = step("exec", rt.exec(&c.task_id, &f.probe(&Probe::Fail(3)), STEP))
        .await
        .expect("exec");
    assert_eq!(r.exit_code, 3);
    let t0 = Instant::now();
    let r = rt
        .exec(
            &c.task_id,
            &f.probe(&Probe::Sleep(60)),
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(r, Err(RuntimeError::ExecTimeout { .. })), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    step("shutdown", rt.shutdown(&c.task_id))
        .await
        .expect("shutdown");
    let r = rt.exec(&c.task_id, &f.probe(&Probe::Succeed), STEP).await;
    assert!(matches!(r, Err(RuntimeError::NotRunning { .. })), "{r:?}");
    cleanup(&*rt, &c).await;
}

fn secret(target: &str, mode: u32, uid: u32, data: &[u8]) -> TaskFile {
    TaskFile {
        kind: FileKind::Secret,
        id: unique_id(),
        name: target.rsplit('/').next().unwrap_or(target).to_string(),
        target: target.to_string(),
        uid,
        gid: uid,
        mode,
        data: SecretData::new(data.to_vec()),
    }
}

/// Secrets and configs appear with the requested content, mode and owner, on tmpfs, and are
/// gone once the task has exited.
pub async fn files_are_materialised_on_tmpfs_and_removed(f: &dyn Fixture) {
    let mut c = config(f, &Behaviour::RunForever);
    let uid = if f.sets_owner() { 1000 } else { 0 };
    c.files.push(secret(
        "/run/secrets/conformance_pw",
        0o400,
        uid,
        b"s3cret-value",
    ));
    let conf_target = format!("/tmp/swarm-conformance-{}.conf", c.task_id);
    c.files.push(TaskFile {
        kind: FileKind::Config,
        ..secret(&conf_target, 0o444, 0, b"key = value\n")
    });
    let rt = started(f, &c).await;
    wait_exec_ready(&*rt, f, &c).await;
    let out = exec_ok(
        &*rt,
        &c,
        f.probe(&Probe::ReadFile("/run/secrets/conformance_pw".into())),
    )
    .await;
    assert_eq!(out, "s3cret-value");
    let st = exec_ok(
        &*rt,
        &c,
        f.probe(&Probe::StatFile("/run/secrets/conformance_pw".into())),
    )
    .await;
    if f.sets_owner() {
        assert_eq!(st.trim(), "400 1000 1000");
    } else {
        assert!(st.trim().starts_with("400 "), "{st}");
    }
    let out = exec_ok(&*rt, &c, f.probe(&Probe::ReadFile(conf_target.clone()))).await;
    assert_eq!(out, "key = value\n");
    let staged = rt.inspect(&c.task_id).await.expect("inspect").staged_files;
    for p in &staged {
        assert!(
            p.exists(),
            "{} should exist while the task runs",
            p.display()
        );
        let dir = p.parent().expect("staged files live in a directory");
        assert!(
            is_tmpfs(dir).expect("statfs"),
            "{} is not on tmpfs",
            p.display()
        );
    }
    step("shutdown", rt.shutdown(&c.task_id))
        .await
        .expect("shutdown");
    for p in &staged {
        assert!(
            !p.exists(),
            "{} must be deleted once the task exited",
            p.display()
        );
    }
    cleanup(&*rt, &c).await;
}

/// One task's secret is not visible to another task.
pub async fn secrets_are_private_to_their_task(f: &dyn Fixture) {
    let mut a = config(f, &Behaviour::RunForever);
    a.files
        .push(secret("/run/secrets/only_for_a", 0o444, 0, b"for a"));
    let b = config(f, &Behaviour::RunForever);
    let rt = started(f, &a).await;
    let _ = started(f, &b).await;
    wait_exec_ready(&*rt, f, &a).await;
    wait_exec_ready(&*rt, f, &b).await;
    let probe = f.probe(&Probe::ReadFile("/run/secrets/only_for_a".into()));
    assert_eq!(exec_ok(&*rt, &a, probe.clone()).await, "for a");
    let r = step("exec", rt.exec(&b.task_id, &probe, STEP))
        .await
        .expect("exec");
    assert_ne!(r.exit_code, 0, "task b read task a's secret: {}", r.output);
    assert!(!r.output.contains("for a"));
    cleanup(&*rt, &a).await;
    cleanup(&*rt, &b).await;
}

/// Output shows up in `logs`.
pub async fn logs_capture_output(f: &dyn Fixture) {
    let c = config(f, &Behaviour::Print("hello-conformance".into()));
    let rt = started(f, &c).await;
    wait_logged(&*rt, &c, "hello-conformance").await;
    cleanup(&*rt, &c).await;
}

/// `log_stream`: lines carry the time they were written, `since` and `tail` select, a follow
/// yields the line and ends once the task has exited; an unknown task is `NotFound`.
pub async fn log_stream_follows_and_ends_at_exit(f: &dyn Fixture) {
    use futures_util::StreamExt;

    let wall = || {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        swarm_core::Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    };
    // The engine's clock may be another process's view of the same host clock: allow a minute.
    let slack = Duration::from_secs(60);
    let rt = f.runtime();
    let nf = rt
        .log_stream(&unique_id(), LogOptions::default())
        .await
        .err();
    assert!(
        matches!(nf, Some(RuntimeError::NotFound { .. })),
        "log_stream of an unknown task: {nf:?}"
    );
    let c = config(f, &Behaviour::Print("follow-conformance".into()));
    let before = wall();
    let rt = started(f, &c).await;
    let follow = LogOptions {
        follow: true,
        ..LogOptions::default()
    };
    let mut lines = step("log_stream", rt.log_stream(&c.task_id, follow))
        .await
        .expect("log_stream");
    let line = loop {
        let next = step("the printed line to be followed", lines.next()).await;
        let r = next
            .expect("the follow ended before the printed line")
            .expect("a followed line");
        if r.line.contains("follow-conformance") {
            break r;
        }
    };
    let time = line.time.expect("the line's write time");
    let after = wall();
    assert!(
        time.plus(slack) >= before && time <= after.plus(slack),
        "line time {time:?} is not between {before:?} and {after:?}"
    );
    let collect = |opts: LogOptions| {
        let rt = rt.clone();
        let id = c.task_id;
        async move {
            let s = rt.log_stream(&id, opts).await.expect("log_stream");
            s.map(|r| r.expect("line").line).collect::<Vec<_>>().await
        }
    };
    let all = step("log_stream", collect(LogOptions::default())).await;
    assert!(
        all.iter().any(|l| l.contains("follow-conformance")),
        "{all:?}"
    );
    let later = LogOptions {
        since: Some(Timestamp(time.as_nanos() + 1)),
        ..LogOptions::default()
    };
    let none = step("log_stream since", collect(later)).await;
    assert!(
        !none.iter().any(|l| l.contains("follow-conformance")),
        "since after the line still returned it: {none:?}"
    );
    let zero = LogOptions {
        tail: Some(0),
        ..LogOptions::default()
    };
    assert_eq!(
        step("log_stream tail 0", collect(zero)).await,
        Vec::<String>::new()
    );
    step("shutdown", rt.shutdown(&c.task_id))
        .await
        .expect("shutdown");
    // The follow ends once the task exited and its output was delivered.
    while let Some(r) = step("the follow to end after the exit", lines.next()).await {
        r.expect("a followed line");
    }
    drop(lines);
    cleanup(&*rt, &c).await;
}

/// Waits until a line of the task's output contains `text`.
async fn wait_logged(rt: &dyn Runtime, c: &TaskConfig, text: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let lines = rt.logs(&c.task_id, Some(10)).await.expect("logs");
        if lines.iter().any(|l| l.line.contains(text)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{text:?} never reached the logs: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An unknown `swarm.runtime.<name>.*` option rejects the task; options of other runtimes don't.
pub async fn unknown_runtime_option_is_rejected(f: &dyn Fixture) {
    let rt = f.runtime();
    let mut c = config(f, &Behaviour::RunForever);
    c.container.labels.insert(
        format!("swarm.runtime.{}.no-such-option", rt.name()),
        "1".into(),
    );
    let e = rt
        .prepare(&c)
        .await
        .expect_err("unknown option must be rejected");
    assert!(e.is_rejection(), "{e}");
    assert!(e.to_string().contains("no-such-option"), "{e}");
    cleanup(&*rt, &c).await;
    let mut c = config(f, &Behaviour::RunForever);
    c.container
        .labels
        .insert("swarm.runtime.some-other-runtime.option".into(), "1".into());
    step("prepare", rt.prepare(&c))
        .await
        .expect("options of other runtimes are ignored");
    cleanup(&*rt, &c).await;
}

/// Unknown tasks: `NotFound`, except `shutdown`/`remove`; a second `prepare`/`start` fails.
pub async fn unknown_and_repeated_calls(f: &dyn Fixture) {
    let rt = f.runtime();
    let id = unique_id();
    let nf = |r: Result<(), RuntimeError>| matches!(r, Err(RuntimeError::NotFound { .. }));
    assert!(nf(rt.start(&id).await));
    assert!(nf(rt.wait(&id).await.map(|_| ())));
    assert!(nf(rt.inspect(&id).await.map(|_| ())));
    assert!(nf(rt.exec(&id, &["true".into()], STEP).await.map(|_| ())));
    assert!(nf(rt.logs(&id, None).await.map(|_| ())));
    rt.shutdown(&id)
        .await
        .expect("shutdown of an unknown task is Ok");
    rt.remove(&id)
        .await
        .expect("remove of an unknown task is Ok");

    let c = config(f, &Behaviour::RunForever);
    step("prepare", rt.prepare(&c)).await.expect("prepare");
    assert!(rt.prepare(&c).await.is_err(), "second prepare must fail");
    step("start", rt.start(&c.task_id)).await.expect("start");
    assert!(
        rt.start(&c.task_id).await.is_err(),
        "second start must fail"
    );
    cleanup(&*rt, &c).await;
}

/// Runs every case in turn.
pub async fn run_all(f: &dyn Fixture) {
    lifecycle(f).await;
    exit_code_reaches_every_waiter(f).await;
    ignored_stop_is_killed_after_grace(f).await;
    start_failure_is_an_error(f).await;
    exec_runs_inside_the_task(f).await;
    files_are_materialised_on_tmpfs_and_removed(f).await;
    secrets_are_private_to_their_task(f).await;
    logs_capture_output(f).await;
    log_stream_follows_and_ends_at_exit(f).await;
    unknown_runtime_option_is_rejected(f).await;
    unknown_and_repeated_calls(f).await;
    cancelled_prepare_leaves_nothing(f).await;
    cancelled_start_leaves_an_observed_task(f).await;
    exit_during_start_is_reported(f).await;
    recover_lists_this_nodes_tasks_only(f).await;
    recover_adopts_a_running_task(f).await;
    recover_adopts_an_exited_task(f).await;
}

/// Expands into one `#[tokio::test]` per conformance case. `$fixture` is an expression of type
/// `Option<impl Fixture>`; `None` skips (the expression should say why on stderr).
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@cases $fixture;
            lifecycle,
            exit_code_reaches_every_waiter,
            ignored_stop_is_killed_after_grace,
            start_failure_is_an_error,
            exec_runs_inside_the_task,
            files_are_materialised_on_tmpfs_and_removed,
            secrets_are_private_to_their_task,
            logs_capture_output,
            log_stream_follows_and_ends_at_exit,
            unknown_runtime_option_is_rejected,
            unknown_and_repeated_calls,
            cancelled_prepare_leaves_nothing,
            cancelled_start_leaves_an_observed_task,
            exit_during_start_is_reported,
            recover_lists_this_nodes_tasks_only,
            recover_adopts_a_running_task,
            recover_adopts_an_exited_task
        );
    };
    (@cases $fixture:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $fixture else { return };
                $crate::testing::conformance::$case(&fixture).await;
            }
        )*
    };
}
