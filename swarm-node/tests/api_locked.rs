//! A locked node (autolock on, restarted, not unlocked) answers every swarm endpoint with the
//! locked error (503) and its body names nothing of the cluster; an inactive node answers them with
//! the not-in-swarm error.

mod common;

use common::Env;
use serde_json::json;

/// Every swarm endpoint, with a plausible body where it takes one.
fn endpoints() -> Vec<(&'static str, &'static str, Option<serde_json::Value>)> {
    let spec = Some(json!({"Name": "x", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}}));
    vec![
        ("GET", "/v1.44/swarm", None),
        ("POST", "/v1.44/swarm/update?version=1", Some(json!({}))),
        ("GET", "/v1.44/swarm/unlockkey", None),
        ("GET", "/v1.44/nodes", None),
        ("GET", "/v1.44/nodes/test-node", None),
        (
            "POST",
            "/v1.44/nodes/test-node/update?version=1",
            Some(json!({})),
        ),
        ("DELETE", "/v1.44/nodes/test-node", None),
        ("GET", "/v1.44/services", None),
        ("GET", "/v1.44/services?status=true", None),
        ("POST", "/v1.44/services/create", spec.clone()),
        ("GET", "/v1.44/services/web", None),
        ("POST", "/v1.44/services/web/update?version=1", spec),
        ("DELETE", "/v1.44/services/web", None),
        ("GET", "/v1.44/services/web/logs?stdout=1", None),
        ("GET", "/v1.44/tasks", None),
        ("GET", "/v1.44/tasks/abc", None),
        ("GET", "/v1.44/tasks/abc/logs?stdout=1", None),
        ("GET", "/v1.44/secrets", None),
        (
            "POST",
            "/v1.44/secrets/create",
            Some(json!({"Name": "s", "Data": "eA=="})),
        ),
        ("GET", "/v1.44/secrets/pw", None),
        (
            "POST",
            "/v1.44/secrets/pw/update?version=1",
            Some(json!({"Name": "pw"})),
        ),
        ("DELETE", "/v1.44/secrets/pw", None),
        ("GET", "/v1.44/configs", None),
        (
            "POST",
            "/v1.44/configs/create",
            Some(json!({"Name": "c", "Data": "eA=="})),
        ),
        ("GET", "/v1.44/configs/c", None),
        (
            "POST",
            "/v1.44/configs/c/update?version=1",
            Some(json!({"Name": "c"})),
        ),
        ("DELETE", "/v1.44/configs/c", None),
        ("GET", "/v1.44/networks", None),
        ("POST", "/v1.44/networks/create", Some(json!({"Name": "n"}))),
        ("GET", "/v1.44/networks/n", None),
        ("DELETE", "/v1.44/networks/n", None),
        ("POST", "/v1.44/networks/prune", None),
    ]
}

#[tokio::test]
async fn locked_node_answers_every_swarm_endpoint_with_the_locked_error() {
    let mut env = Env::active().await;
    env.service("web", 1).await;
    env.secret("pw", b"topsecret").await;
    let cluster_id = env
        .backend
        .store()
        .view(|s| s.cluster().map(|c| c.id.to_string()))
        .expect("cluster");
    let node_id = env.backend.node_id().expect("node").to_string();
    env.backend.lock_node();
    let before = env.snapshot();
    for (method, path, body) in endpoints() {
        let r = env.call(method, path, body.as_ref()).await;
        let text = r.text();
        assert_eq!(r.status, 503, "{method} {path}: {text}");
        assert!(
            text.contains("Swarm is encrypted and needs to be unlocked"),
            "{method} {path}: {text}"
        );
        for secret in [&cluster_id, &node_id, "topsecret", "dG9wc2VjcmV0"] {
            assert!(!text.contains(secret), "{method} {path} leaked {secret}");
        }
    }
    let info = env.get("/v1.44/info").await.text();
    assert!(!info.contains(&cluster_id) && !info.contains(&node_id));
    assert_eq!(env.get("/_ping").await.header("swarm"), Some("locked"));
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn inactive_node_answers_every_swarm_endpoint_with_not_in_swarm() {
    let mut env = Env::inactive().await;
    for (method, path, body) in endpoints() {
        let r = env.call(method, path, body.as_ref()).await;
        assert_eq!(r.status, 503, "{method} {path}: {}", r.text());
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains("This node is not a swarm manager")),
            "{method} {path}: {}",
            r.text()
        );
    }
}
