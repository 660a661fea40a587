//! Acceptance: overlay networks and service discovery through the real `docker` CLI against the
//! real `swarm-node` binary on the docker runtime.
//!
//! Proves that `docker network create -d overlay` networks isolate services: a service reaches
//! another on the same network by its service name (`wget http://web/`), while a service on
//! another network cannot resolve it; that `--network-add` attaches a service (it then reaches
//! the other) and `--network-rm` detaches it; that `docker network rm` of a network in use is
//! refused, and succeeds once nothing uses it.

mod accept_support;

use accept_support::{Node, Runtime, IMAGE};

/// A client that asks `http://web/` every half second and prints what it got, or `FAIL`.
const CLIENT: &str =
    "while true; do if r=$(timeout 5 wget -qO- http://web/ 2>&1); then echo \"GOT $r\"; \
                      else echo \"FAIL $r\"; fi; sleep 0.5; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_each_other_by_name_on_their_network_only() {
    let Some(node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    node.ok(&["network", "create", "-d", "overlay", "appnet"])
        .await;
    node.ok(&["network", "create", "--driver", "overlay", "othernet"])
        .await;
    let nets = node
        .ok(&[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ])
        .await;
    assert!(nets.contains("appnet overlay swarm"), "{nets}");
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "--network",
        "appnet",
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /www && echo web-ok > /www/index.html && exec httpd -f -p 80 -h /www",
    ])
    .await;
    for (name, net) in [("client", "appnet"), ("outsider", "othernet")] {
        node.ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--network",
            net,
            IMAGE,
            "sh",
            "-c",
            CLIENT,
        ])
        .await;
    }
    node.wait_replicas("web", "2/2").await;
    node.wait_logs("client", "GOT web-ok").await;
    let outsider = node.wait_logs("outsider", "FAIL").await;
    assert!(!outsider.contains("GOT web-ok"), "{outsider}");

    // The network is in use: removal refused, nothing removed.
    let err = node.fails(&["network", "rm", "appnet"]).await;
    assert!(err.contains("in use"), "{err}");
    assert!(!node
        .ok(&["network", "ls", "-q", "--filter", "name=appnet"])
        .await
        .is_empty());

    // --network-add: the outsider now reaches web by name.
    node.ok(&[
        "service",
        "update",
        "--detach",
        "--network-add",
        "appnet",
        "outsider",
    ])
    .await;
    let nets = node
        .inspect("outsider", "{{len .Spec.TaskTemplate.Networks}}")
        .await;
    assert_eq!(nets, "2");
    node.wait_logs("outsider", "GOT web-ok").await;

    // --network-rm and removal of every user: the network can go.
    node.ok(&[
        "service",
        "update",
        "--detach",
        "--network-rm",
        "appnet",
        "outsider",
    ])
    .await;
    assert_eq!(
        node.inspect("outsider", "{{len .Spec.TaskTemplate.Networks}}")
            .await,
        "1"
    );
    node.ok(&["service", "rm", "web", "client"]).await;
    node.wait_for(
        "appnet to be removable",
        &["network", "rm", "appnet"],
        |_| true,
    )
    .await;
    assert_eq!(
        node.ok(&["network", "ls", "-q", "--filter", "name=appnet"])
            .await,
        ""
    );
    // A service naming a network that does not exist is refused.
    let err = node
        .fails(&[
            "service",
            "create",
            "--detach",
            "--name",
            "lost",
            "--network",
            "nosuch",
            IMAGE,
            "sleep",
            "1000",
        ])
        .await;
    assert!(err.contains("nosuch"), "{err}");
    assert!(err.contains("not found"), "{err}");
}
