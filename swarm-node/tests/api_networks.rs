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

/// The service's VIP on `network` (its `Endpoint.VirtualIPs` entry), if any.
fn vip(service: &serde_json::Value, network: &str) -> Option<String> {
    service["Endpoint"]["VirtualIPs"]
        .as_array()?
        .iter()
        .find(|v| v["NetworkID"] == network)
        .and_then(|v| v["Addr"].as_str().map(str::to_string))
}

async fn create_net(env: &mut Env, body: serde_json::Value) -> String {
    let r = env.post("/v1.44/networks/create", body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["Id"].as_str().expect("Id").to_string()
}

async fn create_service(env: &mut Env, name: &str, nets: &[&str], mode: &str) {
    let networks: Vec<_> = nets.iter().map(|n| json!({"Target": n})).collect();
    let r = env
        .post(
            "/v1.44/services/create",
            json!({"Name": name, "TaskTemplate": {"ContainerSpec": {"Image": "busybox"},
                   "Networks": networks}, "EndpointSpec": {"Mode": mode}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Networks get subnets from the default address pool (10.0.0.0/8, /24) unless they give their
/// own, never overlapping; services get the lowest free VIP on each attached network, keep it
/// across updates, release it when detached, and a dnsrr service gets none. A refused network
/// changes nothing.
#[tokio::test]
async fn networks_get_subnets_and_services_get_stable_virtual_ips() {
    let mut env = Env::active().await;
    let front = create_net(&mut env, json!({"Name": "front", "Driver": "overlay"})).await;
    let back = create_net(&mut env, json!({"Name": "back", "Driver": "overlay"})).await;
    let own = create_net(
        &mut env,
        json!({"Name": "own", "IPAM": {"Config": [{"Subnet": "10.0.2.0/24"}]}}),
    )
    .await;
    let n = env.get("/v1.44/networks/front").await.json();
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.0.0.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.0.0.1");
    let n = env.get("/v1.44/networks/back").await.json();
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24");
    let n = env.get("/v1.44/networks/own").await.json();
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.0.2.1");
    // The next default subnet skips the one `own` gave.
    create_net(&mut env, json!({"Name": "fourth"})).await;
    let n = env.get("/v1.44/networks/fourth").await.json();
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.0.3.0/24");

    let before = env.snapshot();
    env.check_all(&[case(
        "POST",
        "/v1.44/networks/create",
        Some(json!({"Name": "clash", "IPAM": {"Config": [{"Subnet": "10.0.0.128/25"}]}})),
        400,
        "overlaps with the subnet 10.0.0.0/24 of network front",
    )])
    .await;
    assert_eq!(env.snapshot(), before);

    create_service(&mut env, "a", &["front"], "vip").await;
    create_service(&mut env, "b", &["front", "back"], "vip").await;
    create_service(&mut env, "rr", &["front"], "dnsrr").await;
    let a = env.get("/v1.44/services/a").await.json();
    let b = env.get("/v1.44/services/b").await.json();
    let rr = env.get("/v1.44/services/rr").await.json();
    assert_eq!(vip(&a, &front).as_deref(), Some("10.0.0.2/24"));
    assert_eq!(vip(&b, &front).as_deref(), Some("10.0.0.3/24"));
    assert_eq!(vip(&b, &back).as_deref(), Some("10.0.1.2/24"));
    assert!(rr["Endpoint"]["VirtualIPs"].is_null(), "{rr}");

    // An update keeps the VIPs of the networks the service stays on and frees the others.
    let version = b["Version"]["Index"].as_u64().expect("version");
    let r = env
        .post(
            &format!("/v1.44/services/b/update?version={version}"),
            json!({"Name": "b", "TaskTemplate": {"ContainerSpec": {"Image": "busybox:2"},
                   "Networks": [{"Target": "front"}, {"Target": "own"}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = env.get("/v1.44/services/b").await.json();
    assert_eq!(vip(&b, &front).as_deref(), Some("10.0.0.3/24"));
    assert_eq!(vip(&b, &back), None);
    assert_eq!(vip(&b, &own).as_deref(), Some("10.0.2.2/24"));
    // The freed address is the lowest free one again.
    create_service(&mut env, "c", &["back"], "vip").await;
    let c = env.get("/v1.44/services/c").await.json();
    assert_eq!(vip(&c, &back).as_deref(), Some("10.0.1.2/24"));
    // Removing a service frees its VIP too.
    env.check_all(&[case("DELETE", "/v1.44/services/a", None, 200, "")])
        .await;
    create_service(&mut env, "d", &["front"], "vip").await;
    let d = env.get("/v1.44/services/d").await.json();
    assert_eq!(vip(&d, &front).as_deref(), Some("10.0.0.2/24"));

    // `network inspect --verbose` lists the attached services with their VIPs.
    let n = env.get("/v1.44/networks/front?verbose=true").await.json();
    assert_eq!(n["Services"]["d"]["VIP"], "10.0.0.2", "{n}");
    assert_eq!(n["Services"]["b"]["VIP"], "10.0.0.3", "{n}");
    assert_eq!(n["Services"]["rr"]["VIP"], "", "{n}");
    let n = env.get("/v1.44/networks/front").await.json();
    assert!(n["Services"].is_null(), "{n}");
}
