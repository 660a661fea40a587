//! Acceptance: Docker's secrets and configs walkthroughs, typed with the real `docker` CLI against
//! the real `swarm-node` binary, on the process runtime and on the docker runtime.
//!
//! Proves that `docker secret create ... -` stores a secret that `secret ls` / `inspect` never
//! show, that a task reads it at `/run/secrets/<name>` (or the target given, with the mode given),
//! that configs land at their absolute target with their mode, that removing an object in use
//! fails with Docker's "in use" message, and that `service update --secret-rm/--secret-add`
//! (`--config-rm/--config-add`) rotates the object in running tasks, after which the old one can
//! be removed. What a task sees is read from its own output (`docker service logs`) and, on the
//! docker runtime, with `docker exec` into its container through the real Docker Engine.

mod accept_support;

use accept_support::{engine, Node, Runtime, IMAGE};

/// `stat` as the task prints it: mode, uid, gid.
const STAT: &str = "stat -c '%a %u %g'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_walkthrough_on_the_process_runtime() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    let secret = "This is a secret";
    let id = node
        .ok_stdin(
            &["secret", "create", "my_secret_data", "-"],
            format!("{secret}\n").as_bytes(),
        )
        .await;
    assert_eq!(id.len(), 25, "secret create prints the id: {id}");

    // Listing and inspecting never show the data (in clear or in base64).
    let b64 = "VGhpcyBpcyBhIHNlY3JldAo";
    for args in [
        &["secret", "ls"][..],
        &["secret", "inspect", "my_secret_data"],
        &["secret", "inspect", "--pretty", "my_secret_data"],
    ] {
        let out = node.ok(args).await;
        assert!(out.contains("my_secret_data"), "{args:?}: {out}");
        assert!(
            !out.contains(secret) && !out.contains(b64),
            "{args:?} shows the data: {out}"
        );
    }
    let inspected: serde_json::Value =
        serde_json::from_str(&node.ok(&["secret", "inspect", "my_secret_data"]).await).unwrap();
    assert_eq!(inspected[0]["ID"], id.as_str());
    assert!(inspected[0]["Spec"].get("Data").is_none(), "{inspected}");

    // Without namespaces (not root) the process runtime says where the files are.
    let dir = "${SWARM_SECRETS_DIR:-/run/secrets}";
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "reader",
        "--secret",
        "my_secret_data",
        "busybox",
        "sh",
        "-c",
        &format!("cat {dir}/my_secret_data; {STAT} {dir}/my_secret_data; exec sleep 1000"),
    ])
    .await;
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "custom",
        "--secret",
        "source=my_secret_data,target=other,mode=0400",
        "busybox",
        "sh",
        "-c",
        &format!("{STAT} {dir}/other; echo custom ready; exec sleep 1000"),
    ])
    .await;
    let logs = node.wait_logs("reader", "444 0 0").await;
    assert!(logs.contains(secret), "the task reads the secret: {logs}");
    let logs = node.wait_logs("custom", "custom ready").await;
    assert!(logs.contains("400 0 0"), "target and mode honoured: {logs}");
    node.wait_replicas("reader", "1/1").await;

    // In use: refused with Docker's message, nothing removed.
    let err = node.fails(&["secret", "rm", "my_secret_data"]).await;
    assert!(
        err.contains(
            "rpc error: code = InvalidArgument desc = secret 'my_secret_data' is in use by the following services: custom, reader"
        ),
        "{err}"
    );
    assert_eq!(
        node.ok(&["secret", "ls", "--format", "{{.Name}}"]).await,
        "my_secret_data"
    );

    // Rotation: a new secret under the old target name, then the old one can go.
    node.ok_stdin(
        &["secret", "create", "my_secret_data_v2", "-"],
        b"rotated value\n",
    )
    .await;
    node.ok(&[
        "service",
        "update",
        "--detach",
        "--secret-rm",
        "my_secret_data",
        "--secret-add",
        "source=my_secret_data_v2,target=my_secret_data",
        "reader",
    ])
    .await;
    node.wait_logs("reader", "rotated value").await;
    node.wait_for(
        "the rotation to complete",
        &[
            "service",
            "inspect",
            "reader",
            "--format",
            "{{.UpdateStatus.State}}",
        ],
        |s| s == "completed",
    )
    .await;
    let err = node.fails(&["secret", "rm", "my_secret_data"]).await;
    assert!(
        err.contains("is in use by the following service: custom"),
        "{err}"
    );
    node.ok(&["service", "rm", "custom"]).await;
    node.ok(&["secret", "rm", "my_secret_data"]).await;
    assert_eq!(
        node.ok(&["secret", "ls", "--format", "{{.Name}}"]).await,
        "my_secret_data_v2"
    );
    let err = node.fails(&["secret", "rm", "my_secret_data_v2"]).await;
    assert!(
        err.contains("in use by the following service: reader"),
        "{err}"
    );
    node.wait_replicas("reader", "1/1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_walkthrough_on_the_process_runtime() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    node.ok_stdin(
        &["config", "create", "site.conf", "-"],
        b"server { listen 80; }\n",
    )
    .await;
    // Configs are not secret: inspect shows them.
    let pretty = node
        .ok(&["config", "inspect", "--pretty", "site.conf"])
        .await;
    assert!(pretty.contains("server { listen 80; }"), "{pretty}");

    // The process runtime bind-mounts a config over a file it creates on the host, so the target's
    // directory must exist there: the test's own directory does (the docker runtime test below
    // uses /etc/x/site.conf).
    let target = node.dir().join("site.conf").display().to_string();
    let path = format!("${{SWARM_CONFIGS_DIR}}{target}");
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--config",
        &format!("source=site.conf,target={target},mode=0440"),
        "busybox",
        "sh",
        "-c",
        &format!("{STAT} {path}; cat {path}; exec sleep 1000"),
    ])
    .await;
    let logs = node.wait_logs("web", "listen 80;").await;
    assert!(logs.contains("440 0 0"), "mode honoured: {logs}");

    let err = node.fails(&["config", "rm", "site.conf"]).await;
    assert!(
        err.contains("config 'site.conf' is in use by the following service: web"),
        "{err}"
    );
    node.ok_stdin(
        &["config", "create", "site-v2.conf", "-"],
        b"server { listen 8080; }\n",
    )
    .await;
    node.ok(&[
        "service",
        "update",
        "--detach",
        "--config-rm",
        "site.conf",
        "--config-add",
        &format!("source=site-v2.conf,target={target},mode=0440"),
        "web",
    ])
    .await;
    node.wait_logs("web", "listen 8080;").await;
    node.wait_for(
        "the rotation to complete",
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
    node.ok(&["config", "rm", "site.conf"]).await;
    assert_eq!(
        node.ok(&["config", "ls", "--format", "{{.Name}}"]).await,
        "site-v2.conf"
    );
}

/// The running containers of `service` on node `node_id`, through the real engine.
async fn containers(node_id: &str, service: &str) -> Vec<String> {
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
    out.stdout.split_whitespace().map(str::to_string).collect()
}

/// `docker exec container args` through the real engine; its stdout.
async fn exec(container: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", container];
    all.extend_from_slice(args);
    let out = engine(&all).await;
    assert_eq!(out.code, 0, "docker {all:?}: {}", out.stderr);
    out.stdout
}

/// Waits until every running container of `service` answers `cat path` with `want`, and there
/// are `n` of them.
async fn wait_contents(
    node: &Node,
    node_id: &str,
    service: &str,
    n: usize,
    path: &str,
    want: &str,
) {
    let deadline = tokio::time::Instant::now() + accept_support::TIMEOUT;
    loop {
        let cs = containers(node_id, service).await;
        let mut seen = Vec::new();
        for c in &cs {
            let out = engine(&["exec", c, "cat", path]).await;
            seen.push(out.stdout);
        }
        if cs.len() == n && seen.iter().all(|s| s == want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "containers of {service} show {seen:?}, want {n} x {want:?}\n{}",
            node.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_configs_walkthrough_on_the_docker_runtime() {
    let Some(mut node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let node_id = node.node_id().await;
    node.ok_stdin(
        &["secret", "create", "my_secret_data", "-"],
        b"This is a secret",
    )
    .await;
    node.ok_stdin(
        &["config", "create", "site.conf", "-"],
        b"server { listen 80; }",
    )
    .await;
    // sh as PID 1 ignores SIGTERM: a short grace period keeps updates quick.
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "--stop-grace-period",
        "1s",
        "--secret",
        "my_secret_data",
        "--secret",
        "source=my_secret_data,target=other,mode=0400",
        "--config",
        "source=site.conf,target=/etc/x/site.conf,mode=0440",
        IMAGE,
        "sleep",
        "1000",
    ])
    .await;
    node.wait_replicas("web", "2/2").await;
    let cs = containers(&node_id, "web").await;
    assert_eq!(cs.len(), 2, "{cs:?}");
    for c in &cs {
        assert_eq!(
            exec(c, &["cat", "/run/secrets/my_secret_data"]).await,
            "This is a secret"
        );
        assert_eq!(
            exec(c, &["cat", "/etc/x/site.conf"]).await,
            "server { listen 80; }"
        );
        assert_eq!(
            exec(
                c,
                &[
                    "stat",
                    "-c",
                    "%n %a %u %g",
                    "/run/secrets/my_secret_data",
                    "/run/secrets/other",
                    "/etc/x/site.conf"
                ]
            )
            .await,
            "/run/secrets/my_secret_data 444 0 0\n/run/secrets/other 400 0 0\n/etc/x/site.conf 440 0 0\n"
        );
        // The files are read-only mounts, not files of the container's writable layer.
        let mounts = engine(&[
            "inspect",
            c,
            "--format",
            "{{range .Mounts}}{{.Destination}} rw={{.RW}};{{end}}",
        ])
        .await
        .stdout;
        for path in [
            "/run/secrets/my_secret_data",
            "/run/secrets/other",
            "/etc/x/site.conf",
        ] {
            assert!(mounts.contains(&format!("{path} rw=false;")), "{mounts}");
        }
    }

    let err = node.fails(&["secret", "rm", "my_secret_data"]).await;
    assert!(
        err.contains("secret 'my_secret_data' is in use by the following service: web"),
        "{err}"
    );
    let err = node.fails(&["config", "rm", "site.conf"]).await;
    assert!(
        err.contains("config 'site.conf' is in use by the following service: web"),
        "{err}"
    );

    // Rotate both; every new container sees the new contents; the old objects can go.
    node.ok_stdin(&["secret", "create", "my_secret_data_v2", "-"], b"v2")
        .await;
    node.ok_stdin(
        &["config", "create", "site-v2.conf", "-"],
        b"server { listen 8080; }",
    )
    .await;
    node.ok(&[
        "service",
        "update",
        "--detach",
        "--secret-rm",
        "my_secret_data",
        "--secret-add",
        "source=my_secret_data_v2,target=my_secret_data",
        "--config-rm",
        "site.conf",
        "--config-add",
        "source=site-v2.conf,target=/etc/x/site.conf,mode=0440",
        "web",
    ])
    .await;
    node.wait_for(
        "the rotation to complete",
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
    wait_contents(
        &node,
        &node_id,
        "web",
        2,
        "/run/secrets/my_secret_data",
        "v2",
    )
    .await;
    wait_contents(
        &node,
        &node_id,
        "web",
        2,
        "/etc/x/site.conf",
        "server { listen 8080; }",
    )
    .await;
    node.ok(&["secret", "rm", "my_secret_data"]).await;
    node.ok(&["config", "rm", "site.conf"]).await;

    // A graceful stop stops every container of this node.
    node.stop().await;
    assert!(containers(&node_id, "web").await.is_empty());
}
