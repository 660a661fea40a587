//! Acceptance: mounts through the real `docker` CLI against the real `swarm-node` binary on the
//! docker runtime.
//!
//! Proves that a named volume keeps its data across a task restart and a service update (a
//! counter file keeps counting) and outlives the service; that bind and tmpfs mounts work and
//! their `readonly` is enforced; and that a bind mount whose source does not exist rejects the
//! task with Docker's wording.

mod accept_support;

use accept_support::{engine, Node, Runtime, IMAGE};

/// Increments /data/n and prints `count=<n>`, then sleeps.
const COUNTER: &str = "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; \
                       echo count=$n; exec sleep 1000";

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_volume_survives_restart_and_update() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let volume = unique("swarm-accept-counter");
    let mount = format!("type=volume,source={volume},target=/data");
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "counter",
        "--restart-delay",
        "500ms",
        "--mount",
        &mount,
        IMAGE,
        "sh",
        "-c",
        COUNTER,
    ])
    .await;
    node.wait_logs("counter", "count=1").await;

    // The task dies: its replacement counts on.
    let node_id = node.node_id().await;
    let running = engine(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.node.id={node_id}"),
        "--filter",
        "label=com.docker.swarm.service.name=counter",
    ])
    .await;
    let cid = running.stdout.trim().to_string();
    assert!(!cid.is_empty() && !cid.contains('\n'), "{running:?}");
    let killed = engine(&["kill", &cid]).await;
    assert_eq!(killed.code, 0, "{killed:?}");
    node.wait_logs("counter", "count=2").await;

    // A service update replaces the task: it counts on too.
    node.ok(&["service", "update", "--detach", "--force", "counter"])
        .await;
    node.wait_logs("counter", "count=3").await;

    // The volume outlives the service.
    node.ok(&["service", "rm", "counter"]).await;
    let deadline = tokio::time::Instant::now() + accept_support::TIMEOUT;
    loop {
        let left = engine(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.swarm.service.name=counter",
            "--filter",
            &format!("label=com.docker.swarm.node.id={node_id}"),
        ])
        .await;
        if left.stdout.trim().is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let inspect = engine(&["volume", "inspect", "--format", "{{.Name}}", &volume]).await;
    assert_eq!(inspect.stdout.trim(), volume, "{inspect:?}");
    let rm = engine(&["volume", "rm", &volume]).await;
    assert_eq!(rm.code, 0, "{rm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_and_tmpfs_mounts_enforce_readonly() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let input = node.dir().join("in");
    let output = node.dir().join("out");
    std::fs::create_dir(&input).unwrap();
    std::fs::create_dir(&output).unwrap();
    std::fs::write(input.join("hello"), "bind-content\n").unwrap();
    let script = "cat /in/hello; \
        if (echo x > /in/w) 2>/dev/null; then echo BIND-RO-BROKEN; else echo BIND-RO-OK; fi; \
        echo written > /out/f && echo BIND-RW-OK; \
        if (echo x > /scratch/w) 2>/dev/null; then echo TMPFS-RO-BROKEN; else echo TMPFS-RO-OK; fi; \
        echo x > /rw/f && echo TMPFS-RW-OK; exec sleep 1000";
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "mounts",
        "--mount",
        &format!("type=bind,src={},dst=/in,readonly", input.display()),
        "--mount",
        &format!("type=bind,source={},target=/out", output.display()),
        "--mount",
        "type=tmpfs,dst=/scratch,readonly",
        "--mount",
        "type=tmpfs,dst=/rw,tmpfs-size=1m,tmpfs-mode=1770",
        IMAGE,
        "sh",
        "-c",
        script,
    ])
    .await;
    let logs = node.wait_logs("mounts", "TMPFS-RW-OK").await;
    for want in ["bind-content", "BIND-RO-OK", "BIND-RW-OK", "TMPFS-RO-OK"] {
        assert!(logs.contains(want), "{want} missing from:\n{logs}");
    }
    assert!(!logs.contains("BROKEN"), "{logs}");
    assert_eq!(
        std::fs::read_to_string(output.join("f")).unwrap(),
        "written\n"
    );
    assert!(!input.join("w").exists());
    let mounts = node
        .inspect(
            "mounts",
            "{{range .Spec.TaskTemplate.ContainerSpec.Mounts}}{{.Type}}:{{.Target}}:{{.ReadOnly}} {{end}}",
        )
        .await;
    assert_eq!(
        mounts,
        "bind:/in:true bind:/out:false tmpfs:/scratch:true tmpfs:/rw:false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bind_source_rejects_the_task_with_dockers_wording() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let missing = node.dir().join("no-such-dir");
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "nobind",
        "--mount",
        &format!("type=bind,src={},dst=/x", missing.display()),
        IMAGE,
        "sleep",
        "1000",
    ])
    .await;
    let want = format!(
        "invalid mount config for type \"bind\": bind source path does not exist: {}",
        missing.display()
    );
    let errors = node
        .wait_for(
            "the task to be rejected",
            &[
                "service",
                "ps",
                "nobind",
                "--no-trunc",
                "--format",
                "{{.CurrentState}}|{{.Error}}",
            ],
            |out| out.contains("Rejected"),
        )
        .await;
    assert!(errors.contains(&want), "{errors}");
    // Bad mount syntax is refused by the daemon (or the CLI) with the field named.
    let err = node
        .fails(&[
            "service",
            "create",
            "--detach",
            "--name",
            "relative",
            "--mount",
            "type=bind,src=relative/path,dst=/x",
            IMAGE,
            "sleep",
            "1000",
        ])
        .await;
    assert!(err.contains("relative/path"), "{err}");
    let err = node
        .fails(&[
            "service",
            "create",
            "--detach",
            "--name",
            "notarget",
            "--mount",
            "type=tmpfs,dst=relative",
            IMAGE,
            "sleep",
            "1000",
        ])
        .await;
    assert!(err.contains("relative"), "{err}");
    assert_eq!(
        node.ok(&["service", "ls", "--format", "{{.Name}}"]).await,
        "nobind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_apply_to_mount_source_and_target() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let base = node.dir().join("per-service");
    std::fs::create_dir_all(base.join("tmpl")).unwrap();
    std::fs::write(base.join("tmpl").join("hello"), "templated source\n").unwrap();
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "tmpl",
        "--mount",
        &format!(
            "type=bind,src={}/{{{{.Service.Name}}}},dst=/slot-{{{{.Task.Slot}}}},readonly",
            base.display()
        ),
        IMAGE,
        "sh",
        "-c",
        "cat /slot-1/hello; exec sleep 1000",
    ])
    .await;
    node.wait_logs("tmpl", "templated source").await;
}
