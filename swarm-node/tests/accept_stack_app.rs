//! Acceptance: `docker stack deploy` of the WordPress/MySQL shape (busybox stand-ins) through the
//! real `docker` CLI against the real `swarm-node` binary on the docker runtime.
//!
//! The compose file has a `db` service keeping its data in a named volume on a private `backend`
//! network, and a `wordpress` service (2 replicas) on `backend` and `frontend` publishing 18081:80.
//! `wordpress` fetches `http://db:3306/` by name at start and serves what it got, so a request to
//! 127.0.0.1:18081 through the routing mesh proves the stack came up, its services talk by name
//! and its port is published; the volume's boot counter proves the data lives in the volume.

mod accept_support;

use accept_support::{engine, wait_http, Node, Runtime};

const COMPOSE: &str = r#"version: "3.8"
services:
  db:
    image: swarm-test/busybox:latest
    command: ["sh", "-c", "mkdir -p /var/lib/mysql/www; n=$$(cat /var/lib/mysql/boots 2>/dev/null || echo 0); n=$$((n+1)); echo $$n > /var/lib/mysql/boots; echo mysql-ok boots=$$n > /var/lib/mysql/www/index.html; exec httpd -f -p 3306 -h /var/lib/mysql/www"]
    volumes:
      - db_data:/var/lib/mysql
    networks:
      - backend
  wordpress:
    image: swarm-test/busybox:latest
    command: ["sh", "-c", "mkdir -p /www; until timeout 5 wget -qO /www/index.html http://db:3306/; do sleep 0.5; done; exec httpd -f -p 80 -h /www"]
    ports:
      - "18081:80"
    networks:
      - backend
      - frontend
    deploy:
      replicas: 2
networks:
  backend:
  frontend:
volumes:
  db_data:
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordpress_shaped_stack_comes_up_and_talks_by_name() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let file = node.dir().join("stack.yml");
    std::fs::write(&file, COMPOSE).unwrap();
    let file = file.display().to_string();
    // The volume is named after the stack; start from a clean one.
    let volume = "wpaccept_db_data";
    let _ = engine(&["volume", "rm", "-f", volume]).await;
    node.ok(&["stack", "deploy", "--detach", "-c", &file, "wpaccept"])
        .await;
    let nets = node
        .ok(&[
            "network",
            "ls",
            "--filter",
            "label=com.docker.stack.namespace=wpaccept",
            "--format",
            "{{.Name}} {{.Driver}}",
        ])
        .await;
    assert!(nets.contains("wpaccept_backend overlay"), "{nets}");
    assert!(nets.contains("wpaccept_frontend overlay"), "{nets}");
    node.wait_replicas("wpaccept_db", "1/1").await;
    node.wait_replicas("wpaccept_wordpress", "2/2").await;
    let body = wait_http(18081, "wordpress serving what db answered", |b| {
        b.contains("mysql-ok")
    })
    .await;
    assert_eq!(body.trim(), "mysql-ok boots=1");
    let ports = node
        .ok(&[
            "stack",
            "services",
            "wpaccept",
            "--format",
            "{{.Name}} {{.Ports}}",
        ])
        .await;
    assert!(
        ports.contains("wpaccept_wordpress *:18081->80/tcp"),
        "{ports}"
    );

    // The database's data is in the named volume: a forced update restarts it and it counts on.
    node.ok(&["service", "update", "--detach", "--force", "wpaccept_db"])
        .await;
    let deadline = tokio::time::Instant::now() + accept_support::TIMEOUT;
    loop {
        let boots = engine(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:/v"),
            "swarm-test/busybox:latest",
            "cat",
            "/v/boots",
        ])
        .await;
        if boots.stdout.trim() == "2" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "boot counter: {boots:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    node.ok(&["stack", "rm", "wpaccept"]).await;
    node.wait_for("the stack to be gone", &["service", "ls", "-q"], |o| {
        o.is_empty()
    })
    .await;
    // Networks go once their tasks are gone (as with Docker, removal is retried by the CLI user).
    node.wait_for(
        "the stack's networks to be removable",
        &[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.stack.namespace=wpaccept",
        ],
        |o| o.is_empty(),
    )
    .await;
    let deadline = tokio::time::Instant::now() + accept_support::TIMEOUT;
    while engine(&["volume", "rm", volume]).await.code != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "volume still in use"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
