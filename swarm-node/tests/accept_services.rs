//! Acceptance: services, scaling, placement and nodes through the real `docker` CLI against the
//! real `swarm-node` binary (process runtime), and the README's `swarm-node run --init`.
//!
//! Proves that `docker service create --replicas`, `service scale`, `service ls` counts and
//! `service ps` (with task history after a forced update) show what Docker shows; that a global
//! service runs one task on the node and `service create` without `--detach` sees it converge;
//! that `node update --label-add` with `--constraint` places tasks, an unsatisfiable constraint
//! leaves the task pending with "no suitable node (...)" until a label satisfies it, and a label
//! change moves a placed task out; that `node update --availability drain` shuts every task down
//! and `active` brings them back. The README test runs the daemon as the README says (default
//! socket, `auto` runtime, `--init`) and checks what it prints and what it creates. On the docker
//! runtime, the engine's containers follow `service scale`, drain and `service rm`.

mod accept_support;

use accept_support::{engine, Node, Runtime, IMAGE};

/// `docker service ps` rows: name, desired state, current state (without its age).
async fn task_rows(node: &Node, service: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "service",
        "ps",
        service,
        "--no-trunc",
        "--format",
        "{{.Name}}|{{.DesiredState}}|{{.CurrentState}}",
    ];
    args.extend_from_slice(extra);
    node.ok(&args)
        .await
        .lines()
        .map(|l| {
            let (head, state) = l.rsplit_once('|').unwrap_or((l, ""));
            let state = state.split_whitespace().next().unwrap_or("");
            format!("{}|{state}", head.trim())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_scale_ls_and_ps_with_history() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    let id = node
        .ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            "1000",
        ])
        .await;
    assert_eq!(id.len(), 25, "{id}");
    node.wait_replicas("web", "3/3").await;
    node.ok(&[
        "service", "create", "--detach", "--name", "other", "busybox", "sleep", "1000",
    ])
    .await;
    node.wait_replicas("other", "1/1").await;
    assert_eq!(
        node.ok(&[
            "service",
            "ls",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}}"
        ])
        .await,
        "other replicated 1/1\nweb replicated 3/3"
    );

    assert_eq!(
        node.ok(&["service", "scale", "--detach", "web=5"]).await,
        "web scaled to 5"
    );
    node.wait_replicas("web", "5/5").await;
    assert_eq!(
        node.inspect("web", "{{.Spec.Mode.Replicated.Replicas}}")
            .await,
        "5"
    );
    node.ok(&["service", "scale", "--detach", "web=2", "other=0"])
        .await;
    node.wait_replicas("web", "2/2").await;
    node.wait_replicas("other", "0/0").await;
    let running = node
        .ok(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            "web",
        ])
        .await;
    assert_eq!(running.lines().count(), 2, "{running}");

    // A forced update replaces every task: `service ps` shows the history under each slot.
    node.ok(&["service", "update", "--detach", "--force", "web"])
        .await;
    node.wait_for(
        "the forced update to complete",
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{.UpdateStatus.State}}",
        ],
        |s| s == "completed",
    )
    .await;
    node.wait_replicas("web", "2/2").await;
    let rows = task_rows(&node, "web", &[]).await;
    assert_eq!(
        rows,
        vec![
            "web.1|Running|Running",
            "web.1|Shutdown|Shutdown",
            "web.2|Running|Running",
            "web.2|Shutdown|Shutdown",
        ],
        "{rows:#?}"
    );
    let history = node
        .ok(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=shutdown",
            "web",
        ])
        .await;
    assert_eq!(history.lines().count(), 2, "{history}");
    node.ok(&["service", "rm", "web", "other"]).await;
    node.wait_for("no tasks left", &["service", "ls", "-q"], str::is_empty)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_mode_constraints_labels_and_drain() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    let node_id = node.node_id().await;

    // Without --detach the CLI follows the service until it converges.
    let out = node
        .ok(&[
            "service", "create", "--name", "g", "--mode", "global", "busybox", "sleep", "1000",
        ])
        .await;
    assert!(out.contains("converged"), "{out}");
    node.wait_replicas("g", "1/1").await;
    assert_eq!(
        node.ok(&[
            "service",
            "ls",
            "--filter",
            "mode=global",
            "--format",
            "{{.Name}} {{.Mode}}"
        ])
        .await,
        "g global"
    );
    let rows = task_rows(&node, "g", &[]).await;
    assert_eq!(rows, vec![format!("g.{node_id}|Running|Running")]);

    node.ok(&["node", "update", "--label-add", "zone=a", &node_id])
        .await;
    assert_eq!(
        node.ok(&[
            "node",
            "inspect",
            "self",
            "--format",
            "{{.Spec.Labels.zone}}"
        ])
        .await,
        "a"
    );
    for (name, zone) in [("in_a", "a"), ("in_b", "b")] {
        node.ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--constraint",
            &format!("node.labels.zone=={zone}"),
            "busybox",
            "sleep",
            "1000",
        ])
        .await;
    }
    node.wait_replicas("in_a", "1/1").await;
    // The CLI quotes task errors.
    let state = [
        "service",
        "ps",
        "in_b",
        "--no-trunc",
        "--format",
        "{{.CurrentState}}|{{.Error}}",
    ];
    node.wait_for("in_b pending", &state, |out| {
        out.starts_with("Pending")
            && out.ends_with(
                r#"|"no suitable node (scheduling constraints not satisfied on 1 node)""#,
            )
    })
    .await;
    assert_eq!(
        node.ok(&[
            "service",
            "ls",
            "--filter",
            "name=in_b",
            "--format",
            "{{.Replicas}}"
        ])
        .await,
        "0/1"
    );

    // Relabelling satisfies in_b and no longer satisfies in_a (the constraint enforcer moves it).
    node.ok(&["node", "update", "--label-add", "zone=b", &node_id])
        .await;
    node.wait_replicas("in_b", "1/1").await;
    node.wait_replicas("in_a", "0/1").await;
    let in_a = [
        "service",
        "ps",
        "in_a",
        "--no-trunc",
        "--format",
        "{{.CurrentState}}|{{.Error}}",
    ];
    node.wait_for("in_a pending", &in_a, |out| {
        out.lines()
            .next()
            .is_some_and(|l| l.starts_with("Pending") && l.contains("no suitable node"))
    })
    .await;

    // Drain: every task stops and nothing is placed; active again: everything comes back.
    node.ok(&["node", "update", "--availability", "drain", &node_id])
        .await;
    assert_eq!(
        node.ok(&["node", "ls", "--format", "{{.Availability}}"])
            .await,
        "Drain"
    );
    node.wait_replicas("in_b", "0/1").await;
    node.wait_replicas("g", "0/0").await;
    node.wait_for(
        "in_b pending on the drained node",
        &[
            "service",
            "ps",
            "in_b",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Error}}",
        ],
        |out| out == r#""no suitable node (1 node not available for new tasks)""#,
    )
    .await;
    node.ok(&["node", "update", "--availability", "active", &node_id])
        .await;
    node.wait_replicas("in_b", "1/1").await;
    node.wait_replicas("g", "1/1").await;
    node.wait_replicas("in_a", "0/1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_run_init_serves_the_docker_cli() {
    // `swarm-node run --init` with the default socket and runtime, on a fresh data directory.
    let Some(mut node) = Node::start_with(None, true, false).await else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.data_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the data directory is owner-only");
    assert!(node.socket().starts_with(node.data_dir()));

    assert_eq!(
        node.ok(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"
        ])
        .await,
        "active true"
    );
    // `auto` picks docker when the engine answers.
    let engine = engine(&["version"]).await.code == 0;
    let runtime = node.ok(&["info", "--format", "{{.DefaultRuntime}}"]).await;
    assert_eq!(runtime, if engine { "docker" } else { "process" });
    let id = node.node_id().await;
    assert_eq!(
        node.ok(&[
            "node",
            "ls",
            "--format",
            "{{.ID}} {{.Status}} {{.ManagerStatus}} {{.Self}}"
        ])
        .await,
        format!("{id} Ready Leader true")
    );

    // `swarm-node status` reads the same socket.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-node"))
        .arg("status")
        .arg("--data-dir")
        .arg(node.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("swarm:    active") && text.contains(&id),
        "{text}"
    );
    assert!(text.contains(&format!("runtime:  {runtime}")), "{text}");

    // `--init` again after a restart is a no-op: the same swarm comes back.
    node.restart().await;
    assert_eq!(node.node_id().await, id);
}

/// The running containers this node started for `service`, through the real engine.
async fn running_containers(node_id: &str, service: &str) -> usize {
    let out = engine(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.node.id={node_id}"),
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout.split_whitespace().count()
}

async fn wait_containers(node: &Node, node_id: &str, service: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + accept_support::TIMEOUT;
    loop {
        let have = running_containers(node_id, service).await;
        if have == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{have} containers of {service} run, want {n}\n{}",
            node.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_scale_and_drain_on_the_docker_runtime() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let node_id = node.node_id().await;
    // `sleep` as PID 1 ignores SIGTERM: a short grace period keeps scaling down quick.
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "3",
        "--stop-grace-period",
        "1s",
        IMAGE,
        "sleep",
        "1000",
    ])
    .await;
    node.wait_replicas("web", "3/3").await;
    wait_containers(&node, &node_id, "web", 3).await;
    let names = engine(&[
        "ps",
        "--filter",
        &format!("label=com.docker.swarm.node.id={node_id}"),
        "--format",
        "{{.Names}}",
    ])
    .await
    .stdout;
    let tasks = node.ok(&["service", "ps", "web", "-q", "--no-trunc"]).await;
    for t in tasks.lines() {
        assert!(names.contains(t), "container named after task {t}: {names}");
    }

    node.ok(&["service", "scale", "--detach", "web=1"]).await;
    node.wait_replicas("web", "1/1").await;
    wait_containers(&node, &node_id, "web", 1).await;

    node.ok(&["node", "update", "--availability", "drain", &node_id])
        .await;
    node.wait_replicas("web", "0/1").await;
    wait_containers(&node, &node_id, "web", 0).await;
    node.ok(&["node", "update", "--availability", "active", &node_id])
        .await;
    node.wait_replicas("web", "1/1").await;
    wait_containers(&node, &node_id, "web", 1).await;

    node.ok(&["service", "rm", "web"]).await;
    wait_containers(&node, &node_id, "web", 0).await;
}
