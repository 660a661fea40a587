//! Acceptance: `docker stack deploy -c` of a compose v3 file through the real `docker` CLI
//! against the real `swarm-node` binary (process runtime).
//!
//! Proves that a compose file with replicas, update_config, restart_policy, placement
//! constraints, and file-based secrets and configs deploys as Docker deploys it: the stack's
//! network, secrets, configs and services are created with the compose settings in their specs,
//! tasks read the secret and the config, a service whose constraint no node satisfies stays
//! pending, `docker stack services` / `stack ps` report them, deploying a changed file updates the
//! stack in place, and `docker stack rm` removes everything it created.

mod accept_support;

use accept_support::{Node, Runtime};

fn compose(config_target: &str, replicas: u32) -> String {
    // `$$` is compose's escape for a literal `$`.
    format!(
        r#"version: "3.8"
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "cat $${{SWARM_SECRETS_DIR:-/run/secrets}}/db_password; cat $${{SWARM_CONFIGS_DIR}}{config_target}; exec sleep 1000"]
    deploy:
      replicas: {replicas}
      update_config:
        parallelism: 2
        delay: 1s
        failure_action: rollback
        monitor: 2s
        order: start-first
      restart_policy:
        condition: on-failure
        delay: 1s
        max_attempts: 3
        window: 30s
      placement:
        constraints:
          - node.role == manager
          - node.labels.tier == front
    secrets:
      - db_password
    configs:
      - source: site
        target: {config_target}
        mode: 0440
  worker:
    image: busybox:latest
    command: ["sleep", "1000"]
    deploy:
      placement:
        constraints: [node.labels.tier == back]
secrets:
  db_password:
    file: ./db_password.txt
configs:
  site:
    file: ./site.conf
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_deploy_services_update_and_rm() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    let node_id = node.node_id().await;
    node.ok(&["node", "update", "--label-add", "tier=front", &node_id])
        .await;
    let dir = node.dir();
    std::fs::write(dir.join("db_password.txt"), "stack secret\n").unwrap();
    std::fs::write(dir.join("site.conf"), "stack config\n").unwrap();
    let target = dir.join("site.conf.mounted").display().to_string();
    let file = dir.join("stack.yml");
    std::fs::write(&file, compose(&target, 2)).unwrap();
    let file = file.display().to_string();

    // Relative file paths in the compose file are relative to the file.
    let out = node
        .ok(&["stack", "deploy", "--detach", "-c", &file, "st"])
        .await;
    for line in [
        "Creating network st_default",
        "Creating secret st_db_password",
        "Creating config st_site",
        "Creating service st_web",
        "Creating service st_worker",
    ] {
        assert!(out.contains(line), "{out}");
    }
    assert_eq!(
        node.ok(&["stack", "ls", "--format", "{{.Name}} {{.Services}}"])
            .await,
        "st 2"
    );
    node.wait_for(
        "the stack's services to settle",
        &[
            "stack",
            "services",
            "st",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}}",
        ],
        |out| out == "st_web replicated 2/2\nst_worker replicated 0/1",
    )
    .await;
    node.wait_for(
        "st_worker pending",
        &[
            "service",
            "ps",
            "st_worker",
            "--no-trunc",
            "--format",
            "{{.CurrentState}}|{{.Error}}",
        ],
        |out| {
            out.starts_with("Pending")
                && out.contains("no suitable node (scheduling constraints not satisfied on 1 node)")
        },
    )
    .await;

    // The compose settings are in the spec.
    assert_eq!(
        node.inspect("st_web", "{{json .Spec.UpdateConfig}}").await,
        r#"{"Parallelism":2,"Delay":1000000000,"FailureAction":"rollback","Monitor":2000000000,"MaxFailureRatio":0,"Order":"start-first"}"#
    );
    assert_eq!(
        node.inspect("st_web", "{{json .Spec.TaskTemplate.RestartPolicy}}")
            .await,
        r#"{"Condition":"on-failure","Delay":1000000000,"MaxAttempts":3,"Window":30000000000}"#
    );
    assert_eq!(
        node.inspect(
            "st_web",
            "{{json .Spec.TaskTemplate.Placement.Constraints}}"
        )
        .await,
        r#"["node.role == manager","node.labels.tier == front"]"#
    );
    assert_eq!(
        node.inspect(
            "st_web",
            "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}>{{.File.Name}} {{end}}\
             {{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}}>{{.File.Name}}:{{printf \"%o\" .File.Mode}}{{end}}"
        )
        .await,
        format!("st_db_password>db_password st_site>{target}:440")
    );
    assert_eq!(
        node.inspect(
            "st_web",
            "{{index .Spec.Labels \"com.docker.stack.namespace\"}}"
        )
        .await,
        "st"
    );
    let logs = node.wait_logs("st_web", "stack config").await;
    assert!(logs.contains("stack secret"), "{logs}");
    let tasks = node
        .ok(&[
            "stack",
            "ps",
            "st",
            "--format",
            "{{.Name}} {{.DesiredState}}",
        ])
        .await;
    assert_eq!(tasks.lines().count(), 3, "{tasks}");

    // Deploying a changed file updates the stack in place.
    std::fs::write(&file, compose(&target, 3)).unwrap();
    let out = node
        .ok(&["stack", "deploy", "--detach", "-c", &file, "st"])
        .await;
    assert!(out.contains("Updating service st_web"), "{out}");
    node.wait_replicas("st_web", "3/3").await;

    let out = node.ok(&["stack", "rm", "st"]).await;
    for line in [
        "Removing service st_web",
        "Removing service st_worker",
        "Removing secret st_db_password",
        "Removing config st_site",
        "Removing network st_default",
    ] {
        assert!(out.contains(line), "{out}");
    }
    assert_eq!(node.ok(&["service", "ls", "-q"]).await, "");
    assert_eq!(node.ok(&["secret", "ls", "-q"]).await, "");
    assert_eq!(node.ok(&["config", "ls", "-q"]).await, "");
    assert_eq!(node.ok(&["stack", "ls", "--format", "{{.Name}}"]).await, "");
    let nets = node.ok(&["network", "ls", "--format", "{{.Name}}"]).await;
    assert!(!nets.contains("st_default"), "{nets}");
    // The tasks go once the agent has stopped them and the reaper deleted them.
    node.wait_for_error(
        "every task of the stack to be gone",
        &["stack", "ps", "st"],
        "nothing found in stack: st",
    )
    .await;
}
