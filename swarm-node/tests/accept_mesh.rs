//! Acceptance: published ports and the routing mesh through the real `docker` CLI against the real
//! `swarm-node` binary (the mesh listens on 127.0.0.1 in tests).
//!
//! Proves that a busybox httpd service published with `--publish 8080:80` and 3 replicas answers
//! on 127.0.0.1:8080 with connections spread over the replicas; that a request loop running
//! through a `--update-order start-first` rolling update sees no failure; that `service ls` and
//! `inspect` show the published ports (a port published as 0 gets one of the dynamic range); that
//! a port already published by another service, or held by another program, is refused at
//! create and update time with nothing changed; and that the process runtime's tasks (on the
//! host network) are reached through the mesh too.

mod accept_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use accept_support::{http_get, wait_http, Node, Runtime, IMAGE};

/// The web server of these tests: httpd serving `<hostname> v=<VERSION>`.
const WEB: &str = "mkdir -p /www && echo \"$(hostname) v=${VERSION:-1}\" > /www/index.html \
                   && exec httpd -f -p 80 -h /www";

/// What a request loop saw.
#[derive(Default)]
struct LoopResult {
    ok: usize,
    failures: Vec<String>,
    bodies: BTreeSet<String>,
}

/// Requests `GET /` on `port` over a new connection each time, back to back, until `stop`.
fn request_loop(port: u16, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<LoopResult> {
    tokio::spawn(async move {
        let mut r = LoopResult::default();
        while !stop.load(Ordering::Relaxed) {
            match http_get(port, "/").await {
                Ok(body) => {
                    r.ok += 1;
                    r.bodies.insert(body.trim().to_string());
                }
                Err(e) => r.failures.push(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_port_spreads_and_start_first_update_drops_nothing() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "3",
        "--publish",
        "8080:80",
        IMAGE,
        "sh",
        "-c",
        WEB,
    ])
    .await;
    node.wait_replicas("web", "3/3").await;
    let ls = node
        .ok(&["service", "ls", "--format", "{{.Name}} {{.Ports}}"])
        .await;
    assert!(ls.contains("web *:8080->80/tcp"), "{ls}");
    let ports = node
        .inspect("web", "{{range .Endpoint.Ports}}{{.PublishedPort}}->{{.TargetPort}}/{{.Protocol}} {{.PublishMode}}{{end}}")
        .await;
    assert_eq!(ports, "8080->80/tcp ingress");

    // Connections are spread over the three replicas.
    let deadline = tokio::time::Instant::now() + accept_support::TIMEOUT;
    let mut seen = BTreeSet::new();
    while seen.len() < 3 {
        if let Ok(body) = http_get(8080, "/").await {
            seen.insert(body.trim().to_string());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {seen:?} answered on 127.0.0.1:8080\n{}",
            node.log_tail()
        );
    }
    assert!(seen.iter().all(|b| b.ends_with(" v=1")), "{seen:?}");

    // A rolling update, start-first, while requests keep coming: none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let looping = request_loop(8080, stop.clone());
    node.ok(&[
        "service",
        "update",
        "--detach",
        "--update-order",
        "start-first",
        "--update-monitor",
        "1s",
        "--env-add",
        "VERSION=2",
        "web",
    ])
    .await;
    node.wait_for(
        "the update to complete",
        &[
            "service",
            "inspect",
            "--format",
            "{{.UpdateStatus.State}}",
            "web",
        ],
        |out| out == "completed",
    )
    .await;
    // Every replica now serves the new version (old tasks left the mesh).
    let mut new = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + accept_support::TIMEOUT;
    while new.len() < 3 {
        let body = wait_http(8080, "the new version", |b| b.trim().ends_with(" v=2")).await;
        new.insert(body.trim().to_string());
        assert!(tokio::time::Instant::now() < deadline, "{new:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let r = looping.await.unwrap();
    assert!(
        r.failures.is_empty(),
        "{} of {} requests failed during the update: {:?}\n{}",
        r.failures.len(),
        r.ok + r.failures.len(),
        r.failures,
        node.log_tail()
    );
    assert!(r.ok >= 20, "only {} requests ran during the update", r.ok);
    assert!(
        r.bodies.iter().any(|b| b.ends_with(" v=1")),
        "{:?}",
        r.bodies
    );
    assert!(
        r.bodies.iter().any(|b| b.ends_with(" v=2")),
        "{:?}",
        r.bodies
    );

    // Removing the service closes the port.
    node.ok(&["service", "rm", "web"]).await;
    let deadline = tokio::time::Instant::now() + accept_support::TIMEOUT;
    while http_get(8080, "/").await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "8080 still answers after service rm"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `service update --publish-add publish service`, which must fail and leave the service
/// unchanged (same version); its stderr.
async fn refused_publish_add(node: &Node, service: &str, publish: &str) -> String {
    let before = node.inspect(service, "{{.Version.Index}}").await;
    let err = node
        .fails(&[
            "service",
            "update",
            "--detach",
            "--publish-add",
            publish,
            service,
        ])
        .await;
    assert_eq!(node.inspect(service, "{{.Version.Index}}").await, before);
    err
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_ports_are_refused_and_nothing_changes() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    // A port another program holds.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port().to_string();
    let err = node
        .fails(&[
            "service",
            "create",
            "--detach",
            "--name",
            "a",
            "--publish",
            &format!("{held_port}:80"),
            "busybox",
            "sleep",
            "1000",
        ])
        .await;
    assert!(
        err.contains(&format!(
            "port {held_port}/tcp cannot be published on this node"
        )),
        "{err}"
    );
    assert_eq!(node.ok(&["service", "ls", "-q"]).await, "");

    // A port another service publishes.
    let p = free_port().to_string();
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "first",
        "--publish",
        &format!("{p}:80"),
        "busybox",
        "sleep",
        "1000",
    ])
    .await;
    let err = node
        .fails(&[
            "service",
            "create",
            "--detach",
            "--name",
            "second",
            "--publish",
            &format!("{p}:81"),
            "busybox",
            "sleep",
            "1000",
        ])
        .await;
    assert!(
        err.contains(&format!("port '{p}' is already in use by service 'first'")),
        "{err}"
    );
    // The same through an update of another service: refused, the service unchanged.
    node.ok(&[
        "service", "create", "--detach", "--name", "other", "busybox", "sleep", "1000",
    ])
    .await;
    for (publish, want) in [
        (format!("{p}:82"), "already in use by service 'first'"),
        (
            format!("{held_port}:82"),
            "cannot be published on this node",
        ),
        ("70000:80".to_string(), "70000"),
    ] {
        let err = refused_publish_add(&node, "other", &publish).await;
        assert!(err.contains(want), "{publish}: {err}");
    }
    // A port published as 0 gets one from the dynamic range.
    node.ok(&[
        "service",
        "update",
        "--detach",
        "--publish-add",
        "target=9999",
        "other",
    ])
    .await;
    let got: u32 = node
        .inspect(
            "other",
            "{{range .Endpoint.Ports}}{{.PublishedPort}}{{end}}",
        )
        .await
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&got), "{got}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_tasks_are_reached_through_the_mesh() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    let www = node.dir().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the host network\n").unwrap();
    let published = free_port();
    let target = free_port().to_string();
    // Same port inside and out cannot work on the host network: refused with the reason.
    let err = node
        .fails(&[
            "service",
            "create",
            "--detach",
            "--name",
            "same",
            "--publish",
            &format!("{target}:{target}"),
            "busybox",
            "sleep",
            "1000",
        ])
        .await;
    assert!(err.contains("must differ from its target port"), "{err}");
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "hostweb",
        "--publish",
        &format!("{published}:{target}"),
        "busybox",
        "busybox",
        "httpd",
        "-f",
        "-p",
        &format!("127.0.0.1:{target}"),
        "-h",
        www.to_str().unwrap(),
    ])
    .await;
    node.wait_replicas("hostweb", "1/1").await;
    let body = wait_http(published, "the process task", |b| b.contains("hello")).await;
    assert_eq!(body, "hello from the host network\n");
    // `docker service inspect` says plainly how the tasks are networked.
    let vips = node
        .inspect(
            "hostweb",
            "{{range .Endpoint.VirtualIPs}}{{.NetworkID}} {{.Addr}}{{end}}",
        )
        .await;
    assert_eq!(vips, "host 127.0.0.1/8");
    // A second replica on the same node would listen on the same host port: rejected, saying why.
    node.ok(&["service", "scale", "--detach", "hostweb=2"])
        .await;
    node.wait_for(
        "the second replica to be rejected",
        &[
            "service",
            "ps",
            "hostweb",
            "--no-trunc",
            "--format",
            "{{.CurrentState}}|{{.Error}}",
        ],
        |out| {
            out.lines().any(|l| {
                l.starts_with("Rejected")
                    && l.contains(&format!("target port {target}/tcp is already used by task"))
            })
        },
    )
    .await;
    let body = http_get(published, "/")
        .await
        .expect("the first replica still serves");
    assert_eq!(body, "hello from the host network\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_port_is_bound_on_the_node_once() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let port = free_port();
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "hostmode",
        "--replicas",
        "2",
        "--publish",
        &format!("mode=host,published={port},target=80"),
        IMAGE,
        "sh",
        "-c",
        WEB,
    ])
    .await;
    // One node, one host port: the second replica cannot be placed, and says why.
    let states = node
        .wait_for(
            "one running and one pending replica",
            &[
                "service",
                "ps",
                "hostmode",
                "--no-trunc",
                "--format",
                "{{.CurrentState}}|{{.Error}}",
            ],
            |out| {
                out.lines().any(|l| l.starts_with("Running"))
                    && out.lines().any(|l| {
                        l.starts_with("Pending")
                            && l.contains("host-mode port already in use on 1 node")
                    })
            },
        )
        .await;
    assert_eq!(states.lines().count(), 2, "{states}");
    let body = wait_http(port, "the host-mode task", |b| b.contains(" v=1")).await;
    assert!(body.trim().ends_with(" v=1"), "{body}");
    // As with Docker, `service ls` lists ingress ports only; inspect shows the host-mode one.
    let ports = node
        .inspect(
            "hostmode",
            "{{range .Endpoint.Ports}}{{.PublishedPort}}->{{.TargetPort}} {{.PublishMode}}{{end}}",
        )
        .await;
    assert_eq!(ports, format!("{port}->80 host"));
}
