//! `/swarm`: init, inspect, update (autolock on and off, unlock-key rotation, refused join-token
//! rotation, stale versions), unlockkey, unlock on a locked node, and leave.

mod common;

use common::{case, Env};
use serde_json::json;
use swarm_core::objects::cluster::ClusterSpec;

#[tokio::test]
async fn init_then_inspect() {
    let mut env = Env::inactive().await;
    env.check(&case(
        "GET",
        "/v1.44/swarm",
        None,
        503,
        "This node is not a swarm manager",
    ))
    .await;
    let r = env
        .post(
            "/v1.44/swarm/init",
            json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "", "ForceNewCluster": false,
                   "Spec": {"Orchestration": {}, "EncryptionConfig": {"AutoLockManagers": false}},
                   "AutoLockManagers": false, "Availability": "active"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let node_id = r.json().as_str().expect("a JSON string").to_string();
    assert_eq!(
        Some(node_id.clone()),
        env.backend.node_id().map(|n| n.to_string())
    );
    env.check(&case(
        "POST",
        "/v1.44/swarm/init",
        Some(json!({})),
        503,
        "This node is already part of a swarm",
    ))
    .await;
    let s = env.get("/v1.44/swarm").await.json();
    assert!(s["JoinTokens"]["Worker"]
        .as_str()
        .is_some_and(|t| t.starts_with("SWMTKN-1-")));
    assert_eq!(s["Spec"]["EncryptionConfig"]["AutoLockManagers"], false);
    assert_eq!(
        s["Spec"]["CAConfig"]["NodeCertExpiry"],
        7_776_000_000_000_000u64
    );
    let n = env.get(&format!("/v1.44/nodes/{node_id}")).await.json();
    assert_eq!(n["ManagerStatus"]["Leader"], true);
}

async fn unlock_key(env: &mut Env) -> String {
    let r = env.get("/v1.44/swarm/unlockkey").await;
    r.json()["UnlockKey"].as_str().unwrap_or("?").to_string()
}

#[tokio::test]
async fn autolock_on_rotate_off() {
    let mut env = Env::active().await;
    assert_eq!(unlock_key(&mut env).await, "");
    let s = env.get("/v1.44/swarm").await.json();
    let v = s["Version"]["Index"].as_u64().expect("version");
    let mut spec = s["Spec"].clone();
    spec["EncryptionConfig"]["AutoLockManagers"] = json!(true);
    let r = env
        .post(
            &format!("/v1.44/swarm/update?version={v}&rotateWorkerToken=false&rotateManagerToken=false&rotateManagerUnlockKey=false"),
            spec.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let k1 = unlock_key(&mut env).await;
    assert!(k1.starts_with("SWMKEY-1-") && k1.len() == 9 + 43, "{k1}");
    assert!(swarm_secrets::UnlockKey::parse(&k1).is_ok());

    let v = env.version("/v1.44/swarm").await;
    let r = env
        .post(
            &format!("/v1.44/swarm/update?version={v}&rotateManagerUnlockKey=true"),
            spec.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let k2 = unlock_key(&mut env).await;
    assert!(k2.starts_with("SWMKEY-1-"));
    assert_ne!(k1, k2);

    let before = env.snapshot();
    env.check_all(&[
        case(
            "POST",
            &format!("/v1.44/swarm/update?version={}", v),
            Some(spec.clone()),
            409,
            "update out of sequence",
        ),
        case(
            "POST",
            "/v1.44/swarm/update",
            Some(spec.clone()),
            400,
            "invalid swarm version",
        ),
        case(
            "POST",
            &format!("/v1.44/swarm/update?version={}", v + 1),
            Some(json!({"Name": "other"})),
            400,
            "modification of cluster name is not allowed",
        ),
        case(
            "POST",
            &format!("/v1.44/swarm/update?version={}", v + 1),
            Some(json!({"CAConfig": {"NodeCertExpiry": 60_000_000_000u64}})),
            400,
            "minimum certificate expiry time is: 1h0m0s",
        ),
    ])
    .await;
    assert_eq!(env.snapshot(), before);

    let v = env.version("/v1.44/swarm").await;
    spec["EncryptionConfig"]["AutoLockManagers"] = json!(false);
    let r = env
        .post(&format!("/v1.44/swarm/update?version={v}"), spec)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(unlock_key(&mut env).await, "");
    let cluster = env
        .backend
        .store()
        .view(|s| s.cluster().cloned())
        .expect("cluster");
    assert!(cluster.unlock_keys.is_empty());
    assert_eq!(cluster.spec.raft, ClusterSpec::default().raft);
}

#[tokio::test]
async fn locked_node_unlocks_with_the_key_only() {
    let mut env = Env::active().await;
    let s = env.get("/v1.44/swarm").await.json();
    let v = s["Version"]["Index"].as_u64().expect("version");
    let r = env
        .post(
            &format!("/v1.44/swarm/update?version={v}"),
            json!({"EncryptionConfig": {"AutoLockManagers": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let key = env.get("/v1.44/swarm/unlockkey").await.json()["UnlockKey"]
        .as_str()
        .expect("key")
        .to_string();
    env.backend.lock_node();
    let wrong = "SWMKEY-1-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    env.check_all(&[
        case(
            "GET",
            "/v1.44/swarm/unlockkey",
            None,
            503,
            "Swarm is encrypted and needs to be unlocked",
        ),
        case(
            "POST",
            "/v1.44/swarm/unlock",
            Some(json!({"UnlockKey": wrong})),
            401,
            "invalid key provided",
        ),
        case(
            "POST",
            "/v1.44/swarm/unlock",
            Some(json!({"UnlockKey": "nonsense"})),
            400,
            "invalid unlock key",
        ),
    ])
    .await;
    let i = env.get("/v1.44/info").await.json();
    assert_eq!(i["Swarm"]["LocalNodeState"], "locked");
    assert!(i["Swarm"].get("Cluster").is_none());
    let r = env
        .post("/v1.44/swarm/unlock", json!({"unlockkey": key}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    env.check(&case(
        "POST",
        "/v1.44/swarm/unlock",
        Some(json!({"UnlockKey": key})),
        409,
        "swarm is not locked",
    ))
    .await;
    assert_eq!(env.get("/v1.44/swarm").await.status, 200);
}

#[tokio::test]
async fn leave_needs_force_on_the_last_manager() {
    let mut env = Env::active().await;
    env.check_all(&[
        case(
            "POST",
            "/v1.44/swarm/leave",
            None,
            503,
            "Use `--force` to ignore this message",
        ),
        case("POST", "/v1.44/swarm/leave?force=true", None, 200, ""),
        case(
            "GET",
            "/v1.44/nodes",
            None,
            503,
            "This node is not a swarm manager",
        ),
        case(
            "POST",
            "/v1.44/swarm/leave?force=1",
            None,
            503,
            "not a swarm manager",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(json!({})),
            400,
            "at least 1 RemoteAddr is required to join",
        ),
    ])
    .await;
    assert_eq!(
        env.get("/v1.44/info").await.json()["Swarm"]["LocalNodeState"],
        "inactive"
    );
}
