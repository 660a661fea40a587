//! The daemon behind swarm-node's Docker API (part A's layer) on a Unix socket, driven over HTTP
//! as the docker CLI would: `swarm init --autolock`, `service create` converges, `swarm unlock-key
//! --rotate` goes through the control layer and the manager re-wraps its keys, so after a restart
//! the old key is refused and the new one unlocks.

mod daemon_support;

use std::sync::Arc;

use daemon_support::*;
use serde_json::json;
use swarm_node::backend::{Backend, SwarmState};
use swarm_node::daemon::Daemon;
use swarm_node::testing::{HttpClient, TestServer};

async fn serve(d: &Arc<Daemon>) -> (TestServer, HttpClient) {
    let server = TestServer::start(d.clone() as Arc<dyn Backend>)
        .await
        .expect("API serves");
    let client = server.client().await.expect("API connects");
    (server, client)
}

/// The id of the key-encryption key the manager's keys are wrapped with now.
async fn kek(d: &Daemon) -> String {
    d.with_manager(|m, _| format!("{:?}", m.raft().keys().status().kek))
        .await
        .expect("active")
}

async fn unlock_key(c: &mut HttpClient) -> String {
    let r = c.get("/v1.44/swarm/unlockkey").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["UnlockKey"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_api_init_autolock_service_rotate_and_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_sim(dir.path()).await;
    let (server, mut c) = serve(&d).await;
    let r = c
        .post(
            "/v1.44/swarm/init",
            &json!({"ListenAddr": "0.0.0.0:2377", "AutoLockManagers": true}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(d.swarm_state(), SwarmState::Active);
    let key1 = unlock_key(&mut c).await;
    assert!(key1.starts_with("SWMKEY-1-"));

    let r = c
        .post(
            "/v1.44/services/create",
            &json!({
                "Name": "web",
                "TaskTemplate": {
                    "ContainerSpec": {"Image": "busybox", "Command": ["sleep", "300"]},
                    "RestartPolicy": {"Condition": "any", "Delay": 100_000_000u64},
                },
                "Mode": {"Replicated": {"Replicas": 3}},
            }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id: swarm_core::Id = r.json()["ID"].as_str().unwrap().parse().unwrap();
    assert!(converged(&access(&d).store, id, 3).await);

    // `docker swarm unlock-key --rotate`: GET /swarm, POST /swarm/update with the same spec.
    let before = kek(&d).await;
    let swarm = c.get("/v1.44/swarm").await.unwrap().json();
    let version = swarm["Version"]["Index"].as_u64().unwrap();
    let r = c
        .post(
            &format!("/v1.44/swarm/update?version={version}&rotateManagerUnlockKey=true"),
            &swarm["Spec"],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let key2 = unlock_key(&mut c).await;
    assert_ne!(key1, key2);
    let rewrapped = poll_until(|| {
        let d = d.clone();
        let before = before.clone();
        async move { kek(&d).await != before }
    })
    .await;
    assert!(rewrapped, "keys re-wrapped after rotation");
    drop(c);
    drop(server);
    d.shutdown().await;
    drop(d);

    let d = start_sim(dir.path()).await;
    let (_server, mut c) = serve(&d).await;
    let r = c.get("/v1.44/services").await.unwrap();
    assert!(r.status >= 400, "a locked swarm refuses: {}", r.text());
    assert!(r
        .text()
        .contains("Swarm is encrypted and needs to be unlocked"));
    let r = c
        .post("/v1.44/swarm/unlock", &json!({"UnlockKey": key1}))
        .await
        .unwrap();
    assert!(r.status >= 400, "the old key is refused");
    let r = c
        .post("/v1.44/swarm/unlock", &json!({"UnlockKey": key2}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.get("/v1.44/services").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(converged(&access(&d).store, id, 3).await);
    d.shutdown().await;
}
