//! Secrets and configs through the API: create, list with filters, inspect (a secret's data is
//! never in any answer), labels-only updates, removal, and size and name errors.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{case, Env};
use serde_json::json;

const PLAINTEXT: &[u8] = b"correct horse battery staple";

#[tokio::test]
async fn secret_data_never_leaves_the_daemon() {
    let mut env = Env::active().await;
    let id = env.secret("pw", PLAINTEXT).await;
    let b64 = STANDARD.encode(PLAINTEXT);
    for path in [
        "/v1.44/secrets".to_string(),
        format!("/v1.44/secrets/{id}"),
        "/v1.44/secrets/pw".to_string(),
        format!("/v1.44/secrets/{}", &id[..5]),
        "/v1.44/secrets?filters=%7B%22name%22%3A%5B%22pw%22%5D%7D".to_string(),
    ] {
        let r = env.get(&path).await;
        assert_eq!(r.status, 200, "{path}");
        let text = r.text();
        assert!(!text.contains(&b64), "{path} leaked the data");
        assert!(!text.contains("correct horse"), "{path} leaked the data");
        assert!(!text.contains("\"Data\""), "{path} has a Data field");
        assert!(text.contains("\"pw\""), "{path}");
    }
    let s = env.get(&format!("/v1.44/secrets/{id}")).await.json();
    assert_eq!(s["ID"], id.as_str());
    assert_eq!(s["Spec"]["Name"], "pw");
}

#[tokio::test]
async fn secret_lifecycle_and_errors() {
    let mut env = Env::active().await;
    let id = env.secret("api_key", b"k").await;
    env.secret("other", b"o").await;
    let path = format!("/v1.44/secrets/{id}");
    let v = env.version(&path).await;
    let r = env
        .post(
            &format!("{path}/update?version={v}"),
            json!({"Name": "api_key", "Labels": {"env": "prod"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(env.get(&path).await.json()["Spec"]["Labels"]["env"], "prod");
    // Same data again is allowed (as SwarmKit allows it); different data is not.
    let v = env.version(&path).await;
    let same = json!({"Name": "api_key", "Labels": {}, "Data": STANDARD.encode(b"k")});
    let r = env.post(&format!("{path}/update?version={v}"), same).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = env.version(&path).await;

    let big = STANDARD.encode(vec![7u8; 500 * 1024]);
    let before = env.snapshot();
    env.check_all(&[
        case(
            "POST",
            &format!("{path}/update?version={v}"),
            Some(json!({"Name": "api_key", "Data": STANDARD.encode(b"new")})),
            400,
            "only updates to Labels are allowed",
        ),
        case(
            "POST",
            &format!("{path}/update?version={v}"),
            Some(json!({"Name": "renamed"})),
            400,
            "only updates to Labels are allowed",
        ),
        case(
            "POST",
            &format!("{path}/update?version={}", v - 1),
            Some(json!({"Name": "api_key"})),
            409,
            "update out of sequence",
        ),
        case(
            "POST",
            "/v1.44/secrets/create",
            Some(json!({"Name": "api_key", "Data": "eA=="})),
            409,
            "rpc error: code = AlreadyExists desc = secret api_key already exists",
        ),
        case(
            "POST",
            "/v1.44/secrets/create",
            Some(json!({"Name": "big", "Data": big})),
            400,
            "secret data must be larger than 0 and less than 512000 bytes",
        ),
        case(
            "POST",
            "/v1.44/secrets/create",
            Some(json!({"Name": "empty", "Data": ""})),
            400,
            "got 0 bytes",
        ),
        case(
            "POST",
            "/v1.44/secrets/create",
            Some(json!({"Name": "bad", "Data": "not base64!"})),
            400,
            "not valid base64",
        ),
        case(
            "POST",
            "/v1.44/secrets/create",
            Some(json!({"Name": "", "Data": "eA=="})),
            400,
            "name must not be empty",
        ),
        case(
            "GET",
            "/v1.44/secrets/nosuch",
            None,
            404,
            "secret nosuch not found",
        ),
        case(
            "DELETE",
            "/v1.44/secrets/nosuch",
            None,
            404,
            "secret nosuch not found",
        ),
        case(
            "GET",
            "/v1.44/secrets?filters=%7B%22x%22%3A%5B%5D%7D",
            None,
            400,
            "invalid filter 'x'",
        ),
    ])
    .await;
    assert_eq!(env.snapshot(), before);

    let r = env.call("DELETE", &path, None).await;
    assert_eq!(r.status, 200);
    let list = env.get("/v1.44/secrets").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn configs_show_their_data_and_filter_by_label() {
    let mut env = Env::active().await;
    let data = STANDARD.encode(b"server { listen 80; }");
    let r = env
        .post(
            "/v1.44/configs/create",
            json!({"Name": "nginx.conf", "Labels": {"app": "web"}, "Data": data}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["ID"].as_str().expect("id").to_string();
    let r = env
        .post(
            "/v1.44/configs/create",
            json!({"Name": "other", "Data": "eA=="}),
        )
        .await;
    assert_eq!(r.status, 201);
    let c = env.get("/v1.44/configs/nginx.conf").await.json();
    assert_eq!(c["ID"], id.as_str());
    assert_eq!(c["Spec"]["Data"], data.as_str());
    let r = env
        .get("/v1.44/configs?filters=%7B%22label%22%3A%7B%22app%3Dweb%22%3Atrue%7D%7D")
        .await;
    let list = r.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["Spec"]["Name"], "nginx.conf");

    // docker stack deploy sends configs back with their (unchanged) data.
    let v = env.version(&format!("/v1.44/configs/{id}")).await;
    let r = env
        .post(
            &format!("/v1.44/configs/{id}/update?version={v}"),
            json!({"Name": "nginx.conf", "Labels": {"app": "web2"}, "Data": data}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let big = STANDARD.encode(vec![1u8; 1000 * 1024]);
    env.check_all(&[
        case(
            "POST",
            "/v1.44/configs/create",
            Some(json!({"Name": "big", "Data": big})),
            400,
            "config data must be larger than 0",
        ),
        case(
            "GET",
            "/v1.44/configs/zzz",
            None,
            404,
            "config zzz not found",
        ),
    ])
    .await;
    let r = env.call("DELETE", "/v1.44/configs/other", None).await;
    assert_eq!(r.status, 200);
}
