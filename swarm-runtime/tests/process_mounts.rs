//! The `process` runtime's mounts, volumes and networking, driven through the `Runtime` trait with
//! hand-built task configs: named volumes outlive their tasks, anonymous ones go with theirs,
//! `read_only` is enforced for volume, bind and tmpfs mounts (an exec into the task tries to
//! write), missing mount targets are created and removed, bad mounts are rejected in `prepare`
//! with Docker's wording, and host-mode ports are the target ports, checked free and reported.
//!
//! Mount tests need root (private mount namespaces) and print `SKIPPED` otherwise (a failure in CI:
//! see `support/skip.rs`); rejection and port tests run with or without root.

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use swarm_core::objects::secret::Driver;
use swarm_core::objects::service::{
    ContainerSpec, Mount, MountKind, PortConfig, Protocol, PublishMode, TmpfsOptions, VolumeOptions,
};
use swarm_core::objects::task::TaskAddress;
use swarm_core::Id;
use swarm_runtime::testing::unique_id;
use swarm_runtime::{ProcessOptions, ProcessRuntime, Runtime, RuntimeError, TaskConfig};
use tempfile::TempDir;

#[path = "support/skip.rs"]
mod skip;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A runtime whose volumes live in a fresh temporary directory; with namespaces only as root.
fn runtime(namespaces: bool) -> Option<(ProcessRuntime, TempDir)> {
    if namespaces && !is_root() {
        skip::skip("mounts in the process runtime need root (private mount namespaces)");
        return None;
    }
    let vols = tempfile::tempdir().expect("temp dir");
    let rt = ProcessRuntime::with_options(ProcessOptions {
        namespaces,
        stage_dir: None,
        volumes_dir: Some(vols.path().to_path_buf()),
        supervisor: None,
    })
    .expect("process runtime");
    Some((rt, vols))
}

/// The runtime mount tests use: namespaces when root, else none (rejections read the same).
fn any_runtime() -> (ProcessRuntime, TempDir) {
    runtime(is_root()).expect("a runtime without namespaces needs no root")
}

/// A task that runs until stopped.
fn sleeper(mounts: Vec<Mount>) -> TaskConfig {
    let spec = ContainerSpec {
        command: vec![
            "sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; sleep 1000 & wait".into(),
        ],
        mounts,
        ..ContainerSpec::default()
    };
    TaskConfig::new(unique_id(), "mounts", spec)
}

fn mount(kind: MountKind, source: &str, target: &Path, read_only: bool) -> Mount {
    Mount {
        kind,
        source: source.to_string(),
        target: target.display().to_string(),
        read_only,
        volume: None,
        tmpfs: None,
        bind: None,
    }
}

async fn run(rt: &ProcessRuntime, config: &TaskConfig) {
    rt.prepare(config).await.expect("prepare");
    rt.start(&config.task_id).await.expect("start");
}

/// Runs `script` with `sh -c` inside the task; returns (exit code, output).
async fn sh(rt: &ProcessRuntime, task: &Id, script: &str) -> (i64, String) {
    let cmd = ["sh".to_string(), "-c".to_string(), script.to_string()];
    let r = rt
        .exec(task, &cmd, Duration::from_secs(20))
        .await
        .expect("exec");
    (r.exit_code, r.output)
}

async fn rejection(rt: &ProcessRuntime, config: &TaskConfig) -> String {
    let e: RuntimeError = rt
        .prepare(config)
        .await
        .expect_err("prepare should reject the task");
    assert!(e.is_rejection(), "not a rejection: {e}");
    assert!(
        rt.inspect(&config.task_id).await.is_err(),
        "a rejected task stays known"
    );
    e.to_string()
}

/// A mount target inside a temp dir, so that creating and removing it touches nothing else.
fn target(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// Task 1 writes into a named volume and is removed; the directory stays on the host and task 2,
/// mounting the same name, reads the file.
#[tokio::test]
async fn named_volume_outlives_its_tasks() {
    let Some((rt, vols)) = runtime(true) else {
        return;
    };
    let mnt = tempfile::tempdir().unwrap();
    let data = target(&mnt, "data");
    let m = mount(MountKind::Volume, "counter", &data, false);

    let t1 = sleeper(vec![m.clone()]);
    run(&rt, &t1).await;
    let (code, out) = sh(
        &rt,
        &t1.task_id,
        &format!("echo hello > {}/f", data.display()),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    rt.remove(&t1.task_id).await.unwrap();

    let on_host = vols.path().join("counter/_data");
    assert_eq!(
        std::fs::read_to_string(on_host.join("f")).unwrap(),
        "hello\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&on_host.metadata().unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o755);

    let t2 = sleeper(vec![m]);
    run(&rt, &t2).await;
    let (code, out) = sh(&rt, &t2.task_id, &format!("cat {}/f", data.display())).await;
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    rt.remove(&t2.task_id).await.unwrap();
    assert!(
        on_host.join("f").is_file(),
        "the named volume went with its task"
    );
}

/// An anonymous volume (no source) exists from `prepare`, survives the task's exit, and is removed
/// with the task.
#[tokio::test]
async fn anonymous_volume_is_removed_with_its_task() {
    let Some((rt, vols)) = runtime(true) else {
        return;
    };
    let mnt = tempfile::tempdir().unwrap();
    let data = target(&mnt, "scratch");
    let t = sleeper(vec![mount(MountKind::Volume, "", &data, false)]);
    run(&rt, &t).await;
    let on_host = vols.path().join(format!("_anonymous/{}-0", t.task_id));
    assert!(on_host.is_dir(), "{} missing", on_host.display());
    let (code, out) = sh(&rt, &t.task_id, &format!("echo x > {}/f", data.display())).await;
    assert_eq!(code, 0, "{out}");
    assert!(on_host.join("f").is_file());
    rt.shutdown(&t.task_id).await.unwrap();
    assert!(on_host.is_dir(), "removed before the task was");
    rt.remove(&t.task_id).await.unwrap();
    assert!(!on_host.exists(), "anonymous volume left behind");
}

/// For each kind, a read-only mount refuses a write from inside the task and a read-write one
/// accepts it (one task holds all six mounts).
#[tokio::test]
async fn read_only_is_enforced_for_volume_bind_and_tmpfs() {
    let Some((rt, _vols)) = runtime(true) else {
        return;
    };
    let mnt = tempfile::tempdir().unwrap();
    let src_ro = tempfile::tempdir().unwrap();
    let src_rw = tempfile::tempdir().unwrap();
    let tmpfs = |name: &str, ro: bool| Mount {
        tmpfs: Some(TmpfsOptions {
            size_bytes: 1 << 20,
            mode: 0,
        }),
        ..mount(MountKind::Tmpfs, "", &target(&mnt, name), ro)
    };
    let src = |d: &TempDir| d.path().display().to_string();
    let cases = [
        (
            mount(MountKind::Volume, "vol_ro", &target(&mnt, "vro"), true),
            false,
        ),
        (
            mount(MountKind::Volume, "vol_rw", &target(&mnt, "vrw"), false),
            true,
        ),
        (
            mount(MountKind::Bind, &src(&src_ro), &target(&mnt, "bro"), true),
            false,
        ),
        (
            mount(MountKind::Bind, &src(&src_rw), &target(&mnt, "brw"), false),
            true,
        ),
        (tmpfs("tro", true), false),
        (tmpfs("trw", false), true),
    ];
    let t = sleeper(cases.iter().map(|(m, _)| m.clone()).collect());
    run(&rt, &t).await;
    for (m, writable) in &cases {
        let (code, out) = sh(&rt, &t.task_id, &format!("echo x > {}/f", m.target)).await;
        assert_eq!(
            code == 0,
            *writable,
            "{:?} {}: exit {code}: {out}",
            m.kind,
            m.target
        );
        if !writable {
            assert!(out.contains("Read-only file system"), "{out}");
        }
    }
    assert!(
        src_rw.path().join("f").is_file(),
        "the bind wrote elsewhere"
    );
    assert!(!src_ro.path().join("f").exists());
    rt.remove(&t.task_id).await.unwrap();
}

/// Mount targets missing on the host are created (with their parents) for the task and removed
/// once it exits; a target that existed stays.
#[tokio::test]
async fn missing_mount_targets_are_created_and_removed() {
    let Some((rt, _vols)) = runtime(true) else {
        return;
    };
    let mnt = tempfile::tempdir().unwrap();
    let file_src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file_src.path(), "file content\n").unwrap();
    let dir_target = target(&mnt, "a/b/c");
    let file_target = target(&mnt, "etc/app.conf");
    let existing = target(&mnt, "existing");
    std::fs::create_dir(&existing).unwrap();
    let t = sleeper(vec![
        mount(MountKind::Tmpfs, "", &dir_target, false),
        mount(
            MountKind::Bind,
            &file_src.path().display().to_string(),
            &file_target,
            true,
        ),
        mount(MountKind::Tmpfs, "", &existing, false),
    ]);
    run(&rt, &t).await;
    assert!(dir_target.is_dir() && file_target.is_file());
    let (code, out) = sh(&rt, &t.task_id, &format!("cat {}", file_target.display())).await;
    assert_eq!((code, out.as_str()), (0, "file content\n"));
    rt.shutdown(&t.task_id).await.unwrap();
    assert!(
        !target(&mnt, "a").exists(),
        "created directories left behind"
    );
    assert!(
        !target(&mnt, "etc").exists(),
        "created file mount point left behind"
    );
    assert!(existing.is_dir(), "a pre-existing target was removed");
    rt.remove(&t.task_id).await.unwrap();
}

/// A mount point that cannot be created rejects the task after others were made: everything
/// `prepare` had created (mount points, anonymous volume, staged state) is undone.
#[tokio::test]
async fn failed_prepare_leaves_nothing_behind() {
    let Some((rt, vols)) = runtime(true) else {
        return;
    };
    let mnt = tempfile::tempdir().unwrap();
    let file = target(&mnt, "file");
    std::fs::write(&file, "").unwrap();
    let t = sleeper(vec![
        mount(MountKind::Volume, "", &target(&mnt, "new/data"), false),
        mount(MountKind::Tmpfs, "", &file.join("below"), false),
    ]);
    let e = rejection(&rt, &t).await;
    assert!(e.contains("cannot create the mount point"), "{e}");
    assert!(!target(&mnt, "new").exists(), "mount point left behind");
    let anon = vols.path().join("_anonymous");
    assert_eq!(
        std::fs::read_dir(anon).unwrap().count(),
        0,
        "anonymous volume left behind"
    );
    let again = sleeper(vec![mount(
        MountKind::Volume,
        "",
        &target(&mnt, "new/data"),
        false,
    )]);
    rt.prepare(&again)
        .await
        .expect("the same targets work for another task");
    rt.remove(&again.task_id).await.unwrap();
}

/// A bind source that does not exist rejects the task with Docker's wording, the same with and
/// without namespaces.
#[tokio::test]
async fn missing_bind_source_is_rejected_with_dockers_wording() {
    let mnt = tempfile::tempdir().unwrap();
    let missing = "/nonexistent/swarm-test-source";
    for namespaces in [false, true] {
        let Some((rt, _vols)) = runtime(namespaces) else {
            continue;
        };
        let t = sleeper(vec![mount(
            MountKind::Bind,
            missing,
            &target(&mnt, "in"),
            false,
        )]);
        let e = rejection(&rt, &t).await;
        let docker = format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {missing}"
        );
        assert!(e.ends_with(&docker), "namespaces={namespaces}: {e}");
        assert!(!target(&mnt, "in").exists());
    }
}

/// Bad volume names, other drivers, driver options, and a runtime without a volume directory
/// reject the task, naming what is wrong.
#[tokio::test]
async fn unsupported_volumes_are_rejected() {
    let (rt, vols) = any_runtime();
    let mnt = tempfile::tempdir().unwrap();
    let driver = |name: &str, opt: Option<(&str, &str)>| {
        Some(VolumeOptions {
            driver: Some(Driver {
                name: name.to_string(),
                options: opt
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            ..VolumeOptions::default()
        })
    };
    let vol = |source: &str, volume: Option<VolumeOptions>| Mount {
        volume,
        ..mount(MountKind::Volume, source, &target(&mnt, "data"), false)
    };
    let cases = [
        (
            vol("bad/name", None),
            "\"bad/name\" includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host \
             directory, use absolute path",
        ),
        (vol("x", None), "\"x\" includes invalid characters"),
        (vol("_x", None), "\"_x\" includes invalid characters"),
        (
            vol("data", driver("nfs", None)),
            "volume driver \"nfs\" is not supported",
        ),
        (
            vol("data", driver("local", Some(("type", "nfs")))),
            "volume driver option \"type\" is not supported",
        ),
    ];
    for (m, want) in cases {
        let e = rejection(&rt, &sleeper(vec![m.clone()])).await;
        assert!(e.contains(want), "{m:?}: {e}");
    }
    assert_eq!(
        std::fs::read_dir(vols.path()).unwrap().count(),
        0,
        "created a volume"
    );

    let rt = ProcessRuntime::with_options(ProcessOptions {
        namespaces: is_root(),
        stage_dir: None,
        volumes_dir: None,
        supervisor: None,
    })
    .unwrap();
    let e = rejection(&rt, &sleeper(vec![vol("data", None)])).await;
    assert!(e.contains("given no directory for volumes"), "{e}");
}

fn host_port(protocol: Protocol, target: u16, published: u16) -> PortConfig {
    PortConfig {
        name: String::new(),
        protocol,
        target_port: u32::from(target),
        published_port: u32::from(published),
        publish_mode: PublishMode::Host,
    }
}

/// A port nobody holds right now (the kernel's pick, released at once).
fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    // The same number must be free for UDP too, so that either protocol can use it.
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map_or_else(|_| free_port(), |_| port)
}

/// No NAT: a host-mode port published on another port than its target is rejected.
#[tokio::test]
async fn host_port_must_be_its_target_port() {
    let (rt, _vols) = any_runtime();
    let mut t = sleeper(Vec::new());
    t.ports = vec![host_port(Protocol::Tcp, 80, 8080)];
    let e = rejection(&rt, &t).await;
    assert!(
        e.ends_with(
            "the process runtime runs tasks on the node's network: host-mode port 8080 cannot \
             be mapped to target port 80; publish the target port itself"
        ),
        "{e}"
    );
}

/// A host-mode port already bound on the node (TCP or UDP, on 0.0.0.0) rejects the task, and the
/// rejection leaves nothing behind (no anonymous volume, no mount point).
#[tokio::test]
async fn host_port_in_use_is_rejected() {
    let (rt, vols) = any_runtime();
    let mnt = tempfile::tempdir().unwrap();
    let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let held = [
        (Protocol::Tcp, tcp.local_addr().unwrap().port(), "tcp"),
        (Protocol::Udp, udp.local_addr().unwrap().port(), "udp"),
    ];
    for (protocol, port, name) in held {
        let mounts = if rt.namespaces() {
            vec![mount(MountKind::Volume, "", &target(&mnt, "x/data"), false)]
        } else {
            Vec::new()
        };
        let mut t = sleeper(mounts);
        t.ports = vec![host_port(protocol, port, 0)];
        let e = rejection(&rt, &t).await;
        let want = format!("host-mode port {port}/{name} is already in use on this node: ");
        assert!(e.contains(&want), "{e}");
        assert!(!target(&mnt, "x").exists(), "mount point left behind");
        let anon = vols.path().join("_anonymous");
        assert!(
            !anon.exists() || std::fs::read_dir(&anon).unwrap().count() == 0,
            "anonymous volume left behind"
        );
    }
}

/// A free host-mode port is accepted (published 0 = the target port), reported with the task's
/// loopback address while it runs, held against a second task, and free again once the task is
/// gone.
#[tokio::test]
async fn free_host_port_is_accepted_and_reported() {
    let (rt, _vols) = any_runtime();
    let port = free_port();
    let mut t = sleeper(Vec::new());
    t.ports = vec![
        host_port(Protocol::Tcp, port, 0),
        PortConfig {
            publish_mode: PublishMode::Ingress,
            ..host_port(Protocol::Tcp, 80, 30080)
        },
    ];
    rt.prepare(&t).await.expect("prepare");
    let before = rt.inspect(&t.task_id).await.unwrap();
    assert!(before.addresses.is_empty() && before.ports.is_empty());
    rt.start(&t.task_id).await.unwrap();
    let running = rt.inspect(&t.task_id).await.unwrap();
    assert_eq!(running.ports, vec![host_port(Protocol::Tcp, port, port)]);
    assert_eq!(
        running.addresses,
        vec![TaskAddress {
            network_id: None,
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }]
    );

    let mut other = sleeper(Vec::new());
    other.ports = vec![host_port(Protocol::Tcp, port, port)];
    let e = rejection(&rt, &other).await;
    assert!(
        e.contains(&format!("task {} publishes it", t.task_id)),
        "{e}"
    );

    rt.shutdown(&t.task_id).await.unwrap();
    assert!(rt.inspect(&t.task_id).await.unwrap().ports.is_empty());
    rt.remove(&t.task_id).await.unwrap();
    rt.prepare(&other).await.expect("the port is free again");
    rt.remove(&other.task_id).await.unwrap();
}
