//! `/networks` as `docker stack deploy` uses it: list by the stack label, create overlay networks,
//! inspect by name, attach services by name, refuse removal while in use.

mod common;

use common::{case, Env};
use serde_json::json;

const STACK_FILTER: &str =
    "%7B%22label%22%3A%7B%22com.docker.stack.namespace%3Dshop%22%3Atrue%7D%7D";

#[tokio::test]
async fn stack_style_network_lifecycle() {
    let mut env = Env::active().await;
    let r = env
        .get(&format!("/v1.44/networks?filters={STACK_FILTER}"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));
    let r = env
        .post(
            "/v1.44/networks/create",
            json!({"Name": "shop_default", "Driver": "overlay", "Scope": "swarm",
                   "Labels": {"com.docker.stack.namespace": "shop"}, "Attachable": false,
                   "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.20.0.0/24", "Gateway": "10.20.0.1"}]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().expect("Id").to_string();
    assert_eq!(r.json()["Warning"], "");
    let r = env
        .post("/v1.44/networks/create", json!({"Name": "plain"}))
        .await;
    assert_eq!(r.status, 201);

    let list = env
        .get(&format!("/v1.44/networks?filters={STACK_FILTER}"))
        .await
        .json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["Id"], id.as_str());
    let n = env
        .get("/v1.44/networks/shop_default?scope=swarm")
        .await
        .json();
    assert_eq!(n["Id"], id.as_str());
    assert_eq!(n["Scope"], "swarm");
    assert_eq!(n["Driver"], "overlay");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.20.0.0/24");

    // A service attached by network name stores the id.
    let r = env
        .post(
            "/v1.44/services/create",
            json!({"Name": "shop_web", "TaskTemplate": {"ContainerSpec": {"Image": "nginx"},
                   "Networks": [{"Target": "shop_default", "Aliases": ["web"]}]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = env.get("/v1.44/services/shop_web").await.json();
    assert_eq!(
        s["Spec"]["TaskTemplate"]["Networks"][0]["Target"],
        id.as_str()
    );

    let svc = s["ID"].as_str().unwrap_or_default().to_string();
    // Docker's (SwarmKit's) wording: ids, not names.
    let in_use = format!(
        "rpc error: code = FailedPrecondition desc = network {id} is in use by service {svc}"
    );
    let before = env.snapshot();
    env.check_all(&[
        case("DELETE", "/v1.44/networks/shop_default", None, 400, &in_use),
        case("POST", "/v1.44/networks/create", Some(json!({"Name": "plain"})), 409, "network with name plain already exists"),
        case("POST", "/v1.44/networks/create", Some(json!({"Name": "br", "Driver": "bridge"})), 400, "not supported"),
        case("POST", "/v1.44/networks/create", Some(json!({"Name": "loc", "Scope": "local"})), 400, "scope"),
        case(
            "POST",
            "/v1.44/networks/create",
            Some(json!({"Name": "badnet", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24", "Gateway": "10.9.9.9"}]}})),
            400,
            "does not contain gateway",
        ),
        case("GET", "/v1.44/networks/nonet", None, 404, "network nonet not found"),
        case("GET", "/v1.44/networks/plain?scope=local", None, 404, "not found"),
    ])
    .await;
    assert_eq!(env.snapshot(), before);
    env.check_all(&[
        case("DELETE", "/v1.44/services/shop_web", None, 200, ""),
        case("DELETE", "/v1.44/networks/shop_default", None, 200, ""),
        case(
            "GET",
            "/v1.44/networks?filters=%7B%22driver%22%3A%5B%22overlay%22%5D%7D",
            None,
            200,
            "plain",
        ),
    ])
    .await;
}
