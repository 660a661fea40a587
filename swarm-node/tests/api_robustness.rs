//! Malformed and hostile input never crashes the server, never gets a 5xx, and never changes the
//! store: every valid body of every write endpoint, cut short at many points or with its values
//! replaced by values of the wrong type, is refused with a 4xx and Docker's error shape.

mod common;

use common::Env;
use serde_json::{json, Value};

/// Write endpoints with a valid body for each.
fn bodies() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/v1.44/services/create",
            json!({"Name": "svc", "Labels": {"a": "b"},
                "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Args": ["sleep", "1"],
                    "Mounts": [{"Type": "tmpfs", "Target": "/t"}],
                    "Secrets": [{"SecretName": "pw", "File": {"Name": "pw"}}]},
                    "RestartPolicy": {"Condition": "on-failure", "Delay": 1},
                    "Placement": {"Constraints": ["node.role==manager"]}},
                "Mode": {"Replicated": {"Replicas": 2}},
                "UpdateConfig": {"Parallelism": 1, "Order": "start-first"},
                "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080}]}}),
        ),
        (
            "/v1.44/secrets/create",
            json!({"Name": "s2", "Labels": {}, "Data": "eA=="}),
        ),
        (
            "/v1.44/configs/create",
            json!({"Name": "c2", "Data": "eA=="}),
        ),
        (
            "/v1.44/networks/create",
            json!({"Name": "n2", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.1.0.0/24"}]}}),
        ),
        (
            "/v1.44/swarm/update?version=1",
            json!({"Orchestration": {"TaskHistoryRetentionLimit": 3}}),
        ),
        (
            "/v1.44/nodes/test-node/update?version=1",
            json!({"Role": "manager", "Availability": "active"}),
        ),
        ("/v1.44/swarm/unlock", json!({"UnlockKey": "SWMKEY-1-x"})),
        ("/v1.44/swarm/init", json!({"ListenAddr": "0.0.0.0:2377"})),
    ]
}

/// Every scalar in `v` replaced, one at a time, by each wrong-typed value.
fn type_swaps(v: &Value) -> Vec<Value> {
    let wrong = [
        json!(null),
        json!(-1),
        json!("x"),
        json!([1]),
        json!({"k": 1}),
        json!(1e300),
    ];
    let mut out = Vec::new();
    fn walk(
        root: &Value,
        path: &mut Vec<PathStep>,
        cur: &Value,
        wrong: &[Value],
        out: &mut Vec<Value>,
    ) {
        match cur {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(PathStep::Key(k.clone()));
                    walk(root, path, child, wrong, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push(PathStep::Index(i));
                    walk(root, path, child, wrong, out);
                    path.pop();
                }
            }
            _ => {}
        }
        for w in wrong {
            let mut copy = root.clone();
            if let Some(slot) = at(&mut copy, path) {
                *slot = w.clone();
                out.push(copy);
            }
        }
    }
    walk(v, &mut Vec::new(), v, &wrong, &mut out);
    out
}

enum PathStep {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            PathStep::Key(k) => cur.get_mut(k.as_str())?,
            PathStep::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

#[tokio::test]
async fn truncated_and_mistyped_bodies_are_client_errors() {
    let mut env = Env::active().await;
    let mut sent = 0usize;
    for (path, body) in bodies() {
        let bytes = serde_json::to_vec(&body).expect("json");
        // Cut short at many points (never the full, valid body).
        for cut in (0..bytes.len()).step_by(3) {
            let r = env.raw("POST", path, &bytes[..cut]).await;
            sent += 1;
            assert!(
                (400..500).contains(&r.status) || r.status == 503,
                "{path} cut at {cut}: {} {}",
                r.status,
                r.text()
            );
            assert!(r.json()["message"].is_string(), "{path}: {}", r.text());
        }
        for mutated in type_swaps(&body) {
            let r = env.call("POST", path, Some(&mutated)).await;
            sent += 1;
            assert!(
                r.status < 500 || r.status == 503 || r.status == 501,
                "{path} {mutated}: {} {}",
                r.status,
                r.text()
            );
            if r.status >= 400 {
                assert!(r.json()["message"].is_string(), "{path}: {}", r.text());
            }
        }
    }
    assert!(sent > 500, "only {sent} requests");
    // Some swaps still make a valid body (a label value "x"), so writes may have happened here;
    // `truncations_change_nothing` checks the store. The server is still answering.
    let r = env.get("/v1.44/services").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn truncations_change_nothing() {
    let mut env = Env::active().await;
    let before = env.snapshot();
    for (path, body) in bodies() {
        let bytes = serde_json::to_vec(&body).expect("json");
        for cut in 0..bytes.len() {
            let r = env.raw("POST", path, &bytes[..cut]).await;
            assert!(r.status >= 400, "{path} cut at {cut}: {}", r.status);
        }
    }
    assert_eq!(env.snapshot(), before);
    // An array or null is not an object, even where every field is optional.
    let mut inactive = Env::inactive().await;
    for junk in [&b"[]"[..], b"null", b"{\"ListenAddr\": 5}"] {
        let r = inactive.raw("POST", "/v1.44/swarm/init", junk).await;
        assert_eq!(r.status, 400, "{junk:?}: {}", r.text());
    }
    assert!(inactive.backend.node_id().is_none());
    for junk in [
        &b"\xff\xfe\x00"[..],
        b"null",
        b"[]",
        b"\"str\"",
        b"1",
        b"{}{}",
        b"{\"Name\":\"\\ud800\"}",
    ] {
        for (path, _) in bodies() {
            let r = env.raw("POST", path, junk).await;
            assert!(
                r.status >= 400 && (r.status < 500 || r.status == 503 || r.status == 501),
                "{path} {junk:?}: {}",
                r.status
            );
        }
    }
    assert_eq!(env.snapshot(), before);
}
