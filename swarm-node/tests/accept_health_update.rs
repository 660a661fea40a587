//! Acceptance: health checks, restart policies and rolling updates through the real `docker` CLI
//! against the real `swarm-node` binary, on the process runtime and on the docker runtime.
//!
//! Proves that a service whose health check fails (`--health-cmd false --health-interval 1s
//! --health-retries 1`) has its tasks failed as unhealthy and replaced per its restart policy,
//! and no more than `--restart-max-attempts` times; that `service update` to a failing version
//! with `--update-parallelism 2 --update-failure-action rollback --update-monitor 2s` rolls back
//! by itself to the previous spec (`rollback_completed`, every replica running the old spec, the
//! previous spec used up so a manual rollback is refused); and that `docker service rollback`
//! restores the previous spec of a good update, followed by the CLI to convergence.

mod accept_support;

use accept_support::{engine, Node, Runtime, IMAGE};

/// A second tag of the test image, the "new version" of the docker runtime test.
const IMAGE_V2: &str = "swarm-test/busybox:accept-v2";

/// Creates a health-checked service whose check always fails, restarted at most twice, and waits
/// until it has given up: three tasks, each failed as unhealthy, none desired running.
async fn unhealthy_service_gives_up(node: &Node, image: &str, extra: &[&str]) {
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--name",
        "sick",
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "--restart-condition",
        "any",
        "--restart-delay",
        "100ms",
        "--restart-max-attempts",
        "2",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image, "sleep", "1000"]);
    node.ok(&args).await;
    let rows = node
        .wait_for(
            "three unhealthy tasks and no replacement",
            &[
                "service",
                "ps",
                "sick",
                "--no-trunc",
                "--format",
                "{{.DesiredState}}|{{.CurrentState}}|{{.Error}}",
            ],
            |out| {
                let lines: Vec<&str> = out.lines().collect();
                lines.len() == 3
                    && lines.iter().all(|l| {
                        l.starts_with("Shutdown|Failed") && l.contains("unhealthy container")
                    })
            },
        )
        .await;
    assert_eq!(rows.lines().count(), 3, "{rows}");
    node.wait_replicas("sick", "0/1").await;
}

/// Updates `ru` (4 replicas of `sleep 1000`) to a version that exits 1 and waits for the
/// automatic rollback to complete.
async fn failing_update_rolls_back(node: &Node, update: &[&str], replicas: &str) {
    let mut args = vec![
        "service",
        "update",
        "--detach",
        "--update-parallelism",
        "2",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "2s",
        "--args",
        "sh -c 'exit 1'",
    ];
    args.extend_from_slice(update);
    args.push("ru");
    node.ok(&args).await;
    node.wait_for(
        "the automatic rollback to complete",
        &[
            "service",
            "inspect",
            "ru",
            "--format",
            "{{.UpdateStatus.State}}",
        ],
        |s| s == "rollback_completed",
    )
    .await;
    node.wait_replicas("ru", replicas).await;
    assert_eq!(
        node.inspect("ru", "{{json .Spec.TaskTemplate.ContainerSpec.Args}}")
            .await,
        r#"["sleep","1000"]"#
    );
    let failed = node
        .ok(&[
            "service",
            "ps",
            "ru",
            "--no-trunc",
            "--format",
            "{{.CurrentState}}|{{.Error}}",
        ])
        .await;
    assert!(
        failed
            .lines()
            .any(|l| l.starts_with("Failed") && l.contains("task: non-zero exit (1)")),
        "{failed}"
    );
    // The automatic rollback used the previous spec up.
    let err = node.fails(&["service", "rollback", "--detach", "ru"]).await;
    assert!(err.contains("does not have a previous spec"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_restart_policy_and_rollbacks_on_the_process_runtime() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "ru",
        "--replicas",
        "4",
        "--restart-delay",
        "100ms",
        "--rollback-monitor",
        "1s",
        "busybox",
        "sleep",
        "1000",
    ])
    .await;
    let (_, ()) = tokio::join!(unhealthy_service_gives_up(&node, "busybox", &[]), async {
        node.wait_replicas("ru", "4/4").await;
        failing_update_rolls_back(&node, &[], "4/4").await;
    });

    // A good update, then `docker service rollback` (followed by the CLI until it converges).
    node.ok(&["service", "update", "--detach", "--args", "sleep 999", "ru"])
        .await;
    node.wait_for(
        "the update to complete",
        &[
            "service",
            "inspect",
            "ru",
            "--format",
            "{{.UpdateStatus.State}}",
        ],
        |s| s == "completed",
    )
    .await;
    assert_eq!(
        node.inspect("ru", "{{json .Spec.TaskTemplate.ContainerSpec.Args}}")
            .await,
        r#"["sleep","999"]"#
    );
    let out = node.ok(&["service", "rollback", "ru"]).await;
    assert!(
        out.contains("rollback: manually requested rollback"),
        "{out}"
    );
    assert!(out.contains("converged"), "{out}");
    assert_eq!(
        node.inspect(
            "ru",
            "{{.UpdateStatus.State}} {{json .Spec.TaskTemplate.ContainerSpec.Args}}"
        )
        .await,
        r#"rollback_completed ["sleep","1000"]"#
    );
    node.wait_replicas("ru", "4/4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_and_rollbacks_on_the_docker_runtime() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let tagged = engine(&["tag", IMAGE, IMAGE_V2]).await;
    assert_eq!(tagged.code, 0, "{}", tagged.stderr);
    // `sleep` as PID 1 ignores SIGTERM: a short grace period keeps replacements quick.
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "ru",
        "--replicas",
        "2",
        "--stop-grace-period",
        "1s",
        "--restart-delay",
        "100ms",
        "--rollback-monitor",
        "1s",
        IMAGE,
        "sleep",
        "1000",
    ])
    .await;
    let (_, ()) = tokio::join!(
        unhealthy_service_gives_up(&node, IMAGE, &["--stop-grace-period", "1s"]),
        async {
            node.wait_replicas("ru", "2/2").await;
            failing_update_rolls_back(&node, &["--image", IMAGE_V2], "2/2").await;
            assert_eq!(
                node.inspect("ru", "{{.Spec.TaskTemplate.ContainerSpec.Image}}")
                    .await,
                IMAGE
            );
        }
    );

    // A good new image, then a manual rollback to the old one.
    node.ok(&["service", "update", "--detach", "--image", IMAGE_V2, "ru"])
        .await;
    node.wait_for(
        "the update to complete",
        &[
            "service",
            "inspect",
            "ru",
            "--format",
            "{{.UpdateStatus.State}}",
        ],
        |s| s == "completed",
    )
    .await;
    node.wait_replicas("ru", "2/2").await;
    let images = node
        .ok(&[
            "service",
            "ps",
            "ru",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Image}}",
        ])
        .await;
    assert_eq!(images, format!("{IMAGE_V2}\n{IMAGE_V2}"));
    node.ok(&["service", "rollback", "--detach", "ru"]).await;
    node.wait_for(
        "the manual rollback to complete",
        &[
            "service",
            "inspect",
            "ru",
            "--format",
            "{{.UpdateStatus.State}} {{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ],
        |s| s == format!("rollback_completed {IMAGE}"),
    )
    .await;
    node.wait_replicas("ru", "2/2").await;
}
