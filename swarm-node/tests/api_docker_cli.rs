//! The real `docker` CLI against the API over a `TestBackend`: what an operator types works and
//! prints what Docker prints. Skipped loudly when no `docker` binary is installed (a failure in
//! CI: see `skip/mod.rs`).
//!
//! Each command runs with `DOCKER_HOST=unix://<temp socket>` and a fresh `DOCKER_CONFIG`, so it
//! can only reach this test's server. Commands are bounded by a timeout; nothing sleeps.

mod common;
#[path = "docker_cli/mod.rs"]
mod docker_cli;
#[path = "skip/mod.rs"]
mod skip;

use std::path::Path;

use common::Env;
use docker_cli::{docker, docker_binary};

/// Runs `docker args` and asserts success; returns stdout trimmed.
async fn ok(env: &Env, config: &Path, args: &[&str]) -> String {
    let o = docker(env.server.path(), config, args, None).await;
    assert_eq!(o.code, 0, "docker {args:?}: {}\n{}", o.stdout, o.stderr);
    o.stdout.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cli_drives_secrets_services_and_nodes() {
    if docker_binary().is_none() {
        skip::skip("no docker CLI on PATH");
        return;
    }
    let env = Env::active().await;
    let cfg = tempfile::tempdir().expect("tempdir");
    let c = cfg.path();

    assert_eq!(
        ok(&env, c, &["version", "--format", "{{.Server.APIVersion}}"]).await,
        "1.44"
    );
    assert_eq!(
        ok(
            &env,
            c,
            &[
                "info",
                "--format",
                "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"
            ]
        )
        .await,
        "active true"
    );

    // Secrets.
    let o = docker(
        env.server.path(),
        c,
        &["secret", "create", "db_pw", "-"],
        Some(b"s3cret"),
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let secret_id = o.stdout.trim().to_string();
    assert_eq!(secret_id.len(), 25, "{secret_id}");
    assert_eq!(
        ok(&env, c, &["secret", "ls", "--format", "{{.Name}}"]).await,
        "db_pw"
    );
    assert_eq!(
        ok(
            &env,
            c,
            &["secret", "inspect", "db_pw", "--format", "{{.ID}}"]
        )
        .await,
        secret_id
    );
    let all = ok(&env, c, &["secret", "inspect", "db_pw"]).await;
    assert!(
        !all.contains("s3cret") && !all.contains("czNjcmV0"),
        "{all}"
    );

    // Services.
    let id = ok(
        &env,
        c,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "2",
            "--secret",
            "db_pw",
            "--label",
            "tier=front",
            "busybox",
            "sleep",
            "600",
        ],
    )
    .await;
    assert_eq!(id.len(), 25, "{id}");
    assert_eq!(
        ok(
            &env,
            c,
            &[
                "service",
                "ls",
                "--format",
                "{{.Name}} {{.Mode}} {{.Replicas}}"
            ]
        )
        .await,
        "web replicated 0/2"
    );
    assert_eq!(
        ok(
            &env,
            c,
            &["service", "ls", "--filter", "label=tier=front", "-q"]
        )
        .await,
        &id[..12]
    );
    assert_eq!(
        ok(
            &env,
            c,
            &["service", "inspect", "web", "--format", "{{.Spec.Mode.Replicated.Replicas}} {{(index .Spec.TaskTemplate.ContainerSpec.Secrets 0).SecretName}}"],
        )
        .await,
        "2 db_pw"
    );
    ok(
        &env,
        c,
        &[
            "service",
            "update",
            "--detach",
            "--replicas",
            "3",
            "--image",
            "busybox:1.36",
            "web",
        ],
    )
    .await;
    assert_eq!(
        ok(&env, c, &["service", "inspect", "web", "--format", "{{.Spec.Mode.Replicated.Replicas}} {{.Spec.TaskTemplate.ContainerSpec.Image}} {{.PreviousSpec.TaskTemplate.ContainerSpec.Image}}"]).await,
        "3 busybox:1.36 busybox:latest"
    );
    ok(&env, c, &["service", "rollback", "--detach", "web"]).await;
    assert_eq!(
        ok(
            &env,
            c,
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}} {{.UpdateStatus.State}}"
            ]
        )
        .await,
        "busybox:latest rollback_started"
    );
    assert_eq!(ok(&env, c, &["service", "ps", "-q", "web"]).await, "");

    // The secret is in use; removing it fails with Docker's message.
    let o = docker(env.server.path(), c, &["secret", "rm", "db_pw"], None).await;
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("is in use by the following service: web"),
        "{}",
        o.stderr
    );

    // Errors a user makes.
    let o = docker(env.server.path(), c, &["service", "inspect", "nope"], None).await;
    assert_ne!(o.code, 0);
    let o = docker(
        env.server.path(),
        c,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "bad",
            "--constraint",
            "node.role=manager",
            "busybox",
        ],
        None,
    )
    .await;
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("invalid placement constraint"),
        "{}",
        o.stderr
    );

    // Nodes.
    assert_eq!(
        ok(
            &env,
            c,
            &[
                "node",
                "ls",
                "--format",
                "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}} {{.Self}}"
            ]
        )
        .await,
        "test-node Ready Active Leader true"
    );
    ok(
        &env,
        c,
        &["node", "update", "--label-add", "zone=a", "test-node"],
    )
    .await;
    assert_eq!(
        ok(
            &env,
            c,
            &[
                "node",
                "inspect",
                "self",
                "--format",
                "{{index .Spec.Labels \"zone\"}}"
            ]
        )
        .await,
        "a"
    );

    // Autolock.
    let out = ok(&env, c, &["swarm", "update", "--autolock=true"]).await;
    assert!(out.contains("SWMKEY-1-"), "{out}");
    let key = ok(&env, c, &["swarm", "unlock-key", "-q"]).await;
    assert!(out.contains(&key), "{out} / {key}");

    // Networks and cleanup.
    ok(
        &env,
        c,
        &["network", "create", "--driver", "overlay", "backend"],
    )
    .await;
    assert_eq!(
        ok(
            &env,
            c,
            &[
                "network",
                "ls",
                "--format",
                "{{.Name}} {{.Driver}} {{.Scope}}"
            ]
        )
        .await,
        "backend overlay swarm"
    );
    ok(&env, c, &["service", "rm", "web"]).await;
    ok(&env, c, &["secret", "rm", "db_pw"]).await;
    ok(&env, c, &["network", "rm", "backend"]).await;
    assert_eq!(ok(&env, c, &["service", "ls", "-q"]).await, "");
}

/// A list long enough to be streamed (chunked, converted as it is sent) reads back whole in the
/// CLI: `docker service ls` and `docker node ls` through the streamed answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cli_reads_streamed_lists_whole() {
    if docker_binary().is_none() {
        skip::skip("no docker CLI on PATH");
        return;
    }
    let mut env = Env::active().await;
    let cfg = tempfile::tempdir().expect("tempdir");
    let c = cfg.path();
    let n = 600;
    for i in 0..n {
        env.service(&format!("svc-{i:04}"), 1).await;
    }
    let names = ok(&env, c, &["service", "ls", "--format", "{{.Name}}"]).await;
    let mut got: Vec<&str> = names.lines().collect();
    got.sort_unstable();
    let want: Vec<String> = (0..n).map(|i| format!("svc-{i:04}")).collect();
    assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>());
    let nodes = ok(&env, c, &["node", "ls", "-q"]).await;
    assert_eq!(nodes.lines().count(), 1, "{nodes}");
}
