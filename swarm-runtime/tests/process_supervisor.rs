//! Supervised process tasks across runtime lifetimes: each test starts tasks in one runtime
//! (inside its own async runtime), drops both as a crashed daemon would lose them, and checks what
//! a second runtime on the same supervisor directory finds through `recover`: the same processes
//! (same pids, never restarted), their output from before, exit codes kept while no runtime ran.
//! Also: stale staging directories are swept, a cancelled start leaves no process, and (as root)
//! one task cannot reach another's secrets through `/proc/<pid>/root`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swarm_core::objects::service::ContainerSpec;
use swarm_core::{Id, SecretData};
use swarm_runtime::process::SupervisorOptions;
use swarm_runtime::testing::unique_id;
use swarm_runtime::{
    ExitStatus, FileKind, ProcessOptions, ProcessRuntime, Runtime, RuntimeState, TaskConfig,
    TaskFile,
};
use tempfile::TempDir;

const STEP: Duration = Duration::from_secs(30);

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn runtime(dir: &Path, namespaces: bool) -> ProcessRuntime {
    ProcessRuntime::with_options(ProcessOptions {
        namespaces,
        stage_dir: None,
        volumes_dir: None,
        supervisor: Some(SupervisorOptions {
            program: env!("CARGO_BIN_EXE_swarm-supervisor").into(),
            args: Vec::new(),
            dir: dir.join("supervisors"),
        }),
    })
    .expect("process runtime")
}

fn task(node: Id, script: &str) -> TaskConfig {
    let spec = ContainerSpec {
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..ContainerSpec::default()
    };
    let mut c = TaskConfig::new(unique_id(), "supervised", spec);
    c.node_id = node;
    c.container.stop_grace_period = Some(Duration::from_secs(10));
    c
}

fn secret(target: &str, data: &[u8]) -> TaskFile {
    TaskFile {
        kind: FileKind::Secret,
        id: unique_id(),
        name: target.rsplit('/').next().unwrap_or("s").to_string(),
        target: target.to_string(),
        uid: 0,
        gid: 0,
        mode: 0o444,
        data: SecretData::new(data.to_vec()),
    }
}

/// Whether `pid` is a live (not zombie) process.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Pids of live processes whose command line contains `marker`.
fn with_marker(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(marker) && running(pid) {
            out.push(pid);
        }
    }
    out
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within {STEP:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn start(rt: &ProcessRuntime, c: &TaskConfig) -> u32 {
    rt.prepare(c).await.expect("prepare");
    rt.start(&c.task_id).await.expect("start");
    rt.inspect(&c.task_id).await.expect("inspect").pid
}

async fn logs_contain(rt: &ProcessRuntime, task: &Id, text: &str) -> bool {
    let deadline = Instant::now() + STEP;
    loop {
        let lines = rt.logs(task, None).await.expect("logs");
        if lines.iter().any(|l| l.line.contains(text)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn socket_of(dir: &Path, task: &Id) -> PathBuf {
    dir.join("supervisors").join(format!("{task}.sock"))
}

/// A running task outlives its runtime; the next runtime adopts it with its pid and its output,
/// stops it through the supervisor (its own exit code) and removes it (the supervisor exits).
#[test]
fn child_outlives_a_dropped_runtime_and_is_adopted() {
    let dir = TempDir::new().unwrap();
    let node = unique_id();
    let c = task(
        node,
        "echo before-restart; trap 'exit 3' TERM; sleep 1000 & wait",
    );
    let pid = {
        let tokio = tokio_rt();
        tokio.block_on(async {
            let rt = runtime(dir.path(), is_root());
            let pid = start(&rt, &c).await;
            assert!(logs_contain(&rt, &c.task_id, "before-restart").await);
            pid
        })
    };
    assert!(running(pid), "the task died with its runtime");
    tokio_rt().block_on(async {
        let rt = runtime(dir.path(), is_root());
        let found = rt.recover(&node).await.expect("recover");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].task, c.task_id);
        assert_eq!(found[0].state, RuntimeState::Running);
        assert_eq!(rt.inspect(&c.task_id).await.unwrap().pid, pid);
        assert!(logs_contain(&rt, &c.task_id, "before-restart").await);
        rt.shutdown(&c.task_id).await.expect("shutdown");
        assert_eq!(rt.wait(&c.task_id).await.unwrap(), ExitStatus::code(3));
        assert!(!running(pid));
        rt.remove(&c.task_id).await.expect("remove");
    });
    let socket = socket_of(dir.path(), &c.task_id);
    wait_until("the supervisor removes its socket", || !socket.exists());
    assert!(with_marker(&socket.display().to_string()).is_empty());
}

/// A task that exits while no runtime runs keeps its exit code in its supervisor (which does not
/// exit) until a runtime adopts it and removes it.
#[test]
fn a_supervisor_keeps_the_exit_code_until_collected() {
    let dir = TempDir::new().unwrap();
    let node = unique_id();
    let c = task(node, "sleep 0.3; exit 7");
    let pid = tokio_rt().block_on(async {
        let rt = runtime(dir.path(), false);
        start(&rt, &c).await
    });
    wait_until("the task exits", || !running(pid));
    let socket = socket_of(dir.path(), &c.task_id);
    let supervisor = with_marker(&socket.display().to_string());
    assert_eq!(supervisor.len(), 1, "one supervisor waits for a runtime");
    tokio_rt().block_on(async {
        let rt = runtime(dir.path(), false);
        let found = rt.recover(&node).await.expect("recover");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].state, RuntimeState::Exited(ExitStatus::code(7)));
        assert_eq!(rt.wait(&c.task_id).await.unwrap(), ExitStatus::code(7));
        rt.remove(&c.task_id).await.expect("remove");
    });
    wait_until("the supervisor exits once collected", || {
        !running(supervisor[0]) && !socket.exists()
    });
}

/// `recover` lists one node's tasks only and deletes the sockets of dead supervisors.
#[test]
fn recover_keeps_to_its_node_and_forgets_dead_supervisors() {
    let dir = TempDir::new().unwrap();
    let (node_a, node_b) = (unique_id(), unique_id());
    let c = task(node_a, "sleep 1000");
    tokio_rt().block_on(async {
        let rt = runtime(dir.path(), false);
        start(&rt, &c).await;
    });
    let stale = dir
        .path()
        .join("supervisors")
        .join(format!("{}.sock", unique_id()));
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    tokio_rt().block_on(async {
        let rt = runtime(dir.path(), false);
        assert!(rt.recover(&node_b).await.unwrap().is_empty());
        assert!(!stale.exists(), "a dead supervisor's socket is removed");
        assert_eq!(rt.recover(&node_a).await.unwrap().len(), 1);
        rt.remove(&c.task_id).await.expect("remove");
        assert!(rt.recover(&node_a).await.unwrap().is_empty());
    });
}

/// Staging directories nobody owns any more are deleted: a task directory in the supervised
/// stage root with no supervisor (swept by `recover`), and a crashed process's default stage root
/// under /dev/shm (swept when a runtime makes its own). Live tasks keep theirs.
#[test]
fn stale_staging_is_swept() {
    let dir = TempDir::new().unwrap();
    let node = unique_id();
    let mut c = task(node, "sleep 1000");
    c.files.push(secret("/run/secrets/kept", b"live"));
    let staged = tokio_rt().block_on(async {
        let rt = runtime(dir.path(), false);
        start(&rt, &c).await;
        rt.inspect(&c.task_id).await.unwrap().staged_files[0].clone()
    });
    // <root>/<task>/secrets/kept
    let root = staged.ancestors().nth(3).expect("stage root").to_path_buf();
    let orphan = root.join(unique_id().as_str()).join("secrets");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("leftover"), b"plaintext").unwrap();

    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let dead_root = PathBuf::from(format!("/dev/shm/swarm-process-{dead_pid}-0"));
    std::fs::create_dir_all(&dead_root).unwrap();
    std::fs::write(dead_root.join("leftover"), b"plaintext").unwrap();

    tokio_rt().block_on(async {
        let rt = runtime(dir.path(), false);
        rt.recover(&node).await.unwrap();
        assert!(!orphan.exists(), "the orphan staging directory is swept");
        assert_eq!(std::fs::read(&staged).unwrap(), b"live");
        let unsupervised = ProcessRuntime::with_options(ProcessOptions {
            namespaces: false,
            ..ProcessOptions::default()
        })
        .unwrap();
        assert!(!dead_root.exists(), "a dead process's stage root is swept");
        drop(unsupervised);
        rt.remove(&c.task_id).await.unwrap();
        assert!(!staged.exists());
    });
}

/// A start future dropped at any point leaves no process behind once the task is removed.
#[test]
fn a_cancelled_start_leaves_no_process() {
    let dir = TempDir::new().unwrap();
    let node = unique_id();
    let marker = format!("cancel-marker-{}", unique_id());
    tokio_rt().block_on(async {
        let rt = runtime(dir.path(), false);
        for i in 0..30u64 {
            let c = task(node, &format!("sleep 1000 # {marker}"));
            rt.prepare(&c).await.unwrap();
            let limit = Duration::from_micros(i * 500);
            let _ = tokio::time::timeout(limit, rt.start(&c.task_id)).await;
            rt.remove(&c.task_id).await.unwrap();
        }
    });
    wait_until("no task process is left", || {
        with_marker(&marker).is_empty()
    });
}

/// As root, task A cannot read task B's secret through `/proc/<B's pid>/root`: each supervised
/// task is the init of its own PID namespace with its own /proc.
#[test]
fn pid_namespace_hides_other_tasks_secrets() {
    if !is_root() {
        swarm_runtime_skipped("PID namespaces need root");
        return;
    }
    let dir = TempDir::new().unwrap();
    let node = unique_id();
    tokio_rt().block_on(async {
        let rt = runtime(dir.path(), true);
        let mut b = task(node, "sleep 1000");
        b.files.push(secret("/run/secrets/only_b", b"b-secret"));
        let pid_b = start(&rt, &b).await;
        // B itself reads its secret; the host sees it through /proc (the daemon may).
        let host_view = format!("/proc/{pid_b}/root/run/secrets/only_b");
        assert_eq!(std::fs::read(&host_view).unwrap(), b"b-secret");
        let a = task(
            node,
            &format!("echo self=$$; cat {host_view} && echo LEAKED; echo tried; sleep 1000"),
        );
        start(&rt, &a).await;
        assert!(logs_contain(&rt, &a.task_id, "tried").await);
        let lines: Vec<String> = rt
            .logs(&a.task_id, None)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert!(lines.contains(&"self=1".to_string()), "{lines:?}");
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("LEAKED") || l.contains("b-secret")),
            "{lines:?}"
        );
        rt.remove(&a.task_id).await.unwrap();
        rt.remove(&b.task_id).await.unwrap();
    });
}

/// Prints a SKIPPED line that libtest's capture does not swallow (it only captures the print
/// macros, not writes to the stderr handle).
fn swarm_runtime_skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n**********\nSKIPPED: {why}; this test did not run\n**********"
    );
}

/// A supervisor killed outright takes its task with it (the task must not run unowned), and the
/// runtime reports the exit as unknown rather than inventing a code.
#[test]
fn a_killed_supervisor_takes_its_task_and_the_exit_is_unknown() {
    let dir = TempDir::new().unwrap();
    let node = unique_id();
    let c = task(node, "sleep 1000");
    tokio_rt().block_on(async {
        let rt = runtime(dir.path(), false);
        let pid = start(&rt, &c).await;
        let socket = socket_of(dir.path(), &c.task_id);
        let supervisor = with_marker(&socket.display().to_string());
        assert_eq!(supervisor.len(), 1);
        let sup = rustix::process::Pid::from_raw(supervisor[0] as i32).expect("a pid");
        rustix::process::kill_process(sup, rustix::process::Signal::KILL).expect("kill");
        let err = tokio::time::timeout(STEP, rt.wait(&c.task_id))
            .await
            .expect("wait returns")
            .unwrap_err();
        assert!(
            matches!(err, swarm_runtime::RuntimeError::ExitUnknown { .. }),
            "{err}"
        );
        wait_until("the task dies with its supervisor", || !running(pid));
        rt.remove(&c.task_id).await.unwrap();
    });
}

/// Upgrading in place: the supervisor executable is replaced on disk (a new file at the same path)
/// while a task runs; the task keeps running under the old supervisor, and a runtime started
/// with the new file adopts it (same protocol version).
#[test]
fn replacing_the_supervisor_binary_keeps_the_workload() {
    let dir = TempDir::new().unwrap();
    let node = unique_id();
    let exe = dir.path().join("bin").join("supervisor");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_swarm-supervisor"), &exe).unwrap();
    let with_exe = |dir: &Path| {
        ProcessRuntime::with_options(ProcessOptions {
            namespaces: false,
            stage_dir: None,
            volumes_dir: None,
            supervisor: Some(SupervisorOptions {
                program: exe.clone(),
                args: Vec::new(),
                dir: dir.join("supervisors"),
            }),
        })
        .expect("process runtime")
    };
    let c = task(node, "sleep 1000");
    let pid = tokio_rt().block_on(async {
        let rt = with_exe(dir.path());
        start(&rt, &c).await
    });
    // A package manager's upgrade: write the new file beside, rename it over the old one.
    let staged = exe.with_extension("new");
    std::fs::copy(env!("CARGO_BIN_EXE_swarm-supervisor"), &staged).unwrap();
    std::fs::rename(&staged, &exe).unwrap();
    assert!(running(pid));
    tokio_rt().block_on(async {
        let rt = with_exe(dir.path());
        let found = rt.recover(&node).await.expect("recover");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].state, RuntimeState::Running);
        assert_eq!(rt.inspect(&c.task_id).await.unwrap().pid, pid);
        // New tasks start with the new file.
        let d = task(node, "sleep 1000");
        start(&rt, &d).await;
        rt.remove(&c.task_id).await.unwrap();
        rt.remove(&d.task_id).await.unwrap();
    });
    assert!(!running(pid));
}
