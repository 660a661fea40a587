//! Ping, version negotiation, `/version`, `/info`, unknown paths and the engine endpoints this
//! daemon answers with Docker-like 404s.

mod common;

use common::{case, Env};

#[tokio::test]
async fn ping_advertises_the_api_version_and_swarm_state() {
    let mut env = Env::inactive().await;
    for method in ["HEAD", "GET"] {
        let r = env.call(method, "/_ping", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("api-version"), Some("1.44"));
        assert_eq!(r.header("ostype"), Some("linux"));
        assert_eq!(r.header("docker-experimental"), Some("false"));
        assert_eq!(r.header("swarm"), Some("inactive"));
        if method == "GET" {
            assert_eq!(r.text(), "OK");
        }
    }
    let mut env = Env::active().await;
    let r = env.get("/v1.44/_ping").await;
    assert_eq!(r.header("swarm"), Some("active/manager"));
}

#[tokio::test]
async fn versioned_and_unversioned_paths() {
    let mut env = Env::active().await;
    env.check_all(&[
        case("GET", "/services", None, 200, "[]"),
        case("GET", "/v1.24/services", None, 200, "[]"),
        case("GET", "/v1.44/services", None, 200, "[]"),
        case("GET", "/v1.50/services", None, 200, "[]"),
        case("GET", "/v1.51/services?filters=%7B%7D", None, 200, "[]"),
        case(
            "GET",
            "/v1.12/services",
            None,
            400,
            "client version 1.12 is too old. Minimum supported API version is 1.24",
        ),
        case("GET", "/v1.99/services", None, 400, "is too new"),
        case("GET", "/v1.44/nope", None, 404, "page not found"),
        case("GET", "/nope", None, 404, "page not found"),
        case("PUT", "/v1.44/services", None, 405, "method not allowed"),
        case(
            "GET",
            "/v1.44/distribution/busybox:latest/json",
            None,
            404,
            "busybox:latest",
        ),
        case(
            "GET",
            "/v1.44/images/busybox/json",
            None,
            404,
            "No such image: busybox",
        ),
        case(
            "GET",
            "/v1.44/containers/abc/json",
            None,
            404,
            "No such container: abc",
        ),
    ])
    .await;
}

#[tokio::test]
async fn version_document() {
    let mut env = Env::inactive().await;
    let v = env.get("/v1.44/version").await.json();
    assert_eq!(v["ApiVersion"], "1.44");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Arch"], "amd64");
}

#[tokio::test]
async fn info_shows_the_swarm_section() {
    let mut env = Env::inactive().await;
    let i = env.get("/v1.44/info").await.json();
    assert_eq!(i["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(i["Swarm"]["ControlAvailable"], false);
    assert!(i["Swarm"].get("Cluster").is_none());

    let mut env = Env::active().await;
    let node = env.backend.node_id().expect("node id").to_string();
    let i = env.get("/v1.44/info").await.json();
    let s = &i["Swarm"];
    assert_eq!(s["LocalNodeState"], "active");
    assert_eq!(s["NodeID"], node.as_str());
    assert_eq!(s["ControlAvailable"], true);
    assert_eq!(s["Managers"], 1);
    assert_eq!(s["Nodes"], 1);
    assert_eq!(s["Cluster"]["Spec"]["Name"], "default");
    assert_eq!(
        s["Cluster"]["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"],
        5
    );
    assert_eq!(
        s["Cluster"]["Spec"]["Dispatcher"]["HeartbeatPeriod"],
        5_000_000_000u64
    );
    let created = s["Cluster"]["CreatedAt"].as_str().expect("created");
    assert_eq!(created, "2024-01-01T00:00:00.000000000Z");
    assert!(s["Cluster"]["Version"]["Index"].as_u64().is_some());
}
