//! `/nodes`: list with filters, inspect by id, hostname or prefix, update (labels, availability,
//! role) with the demotion rules, and removal rules (managers refused, live nodes need force).

mod common;

use std::collections::BTreeMap;

use common::{case, Env};
use serde_json::json;
use swarm_core::objects::node::{NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus};
use swarm_core::{Annotations, Id, Meta, Node, StoreAction};

fn worker(n: u128, host: &str, state: NodeState, labels: &[(&str, &str)]) -> Node {
    Node {
        id: Id::from_u128(n),
        meta: Meta::default(),
        spec: NodeSpec {
            annotations: Annotations {
                name: String::new(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            },
            ..Default::default()
        },
        description: Some(NodeDescription {
            hostname: host.into(),
            ..Default::default()
        }),
        status: NodeStatus {
            state,
            ..Default::default()
        },
        manager_status: None,
        role: NodeRole::Worker,
        certificate: None,
    }
}

async fn env_with_workers() -> Env {
    let env = Env::active().await;
    env.backend
        .commit(vec![
            StoreAction::Create(worker(1, "alpha", NodeState::Ready, &[("zone", "a")]).into()),
            StoreAction::Create(worker(2, "beta", NodeState::Down, &[("zone", "b")]).into()),
        ])
        .expect("plant");
    env
}

fn hosts(v: &serde_json::Value) -> Vec<String> {
    let mut h: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|n| {
            n["Description"]["Hostname"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    h.sort();
    h
}

#[tokio::test]
async fn list_and_inspect() {
    let mut env = env_with_workers().await;
    let me = env.backend.node_id().expect("id").to_string();
    for (f, want) in [
        ("", vec!["alpha", "beta", "test-node"]),
        (r#"{"role":["manager"]}"#, vec!["test-node"]),
        (r#"{"role":{"worker":true}}"#, vec!["alpha", "beta"]),
        (r#"{"name":["al"]}"#, vec!["alpha"]),
        (r#"{"node.label":["zone=b"]}"#, vec!["beta"]),
        (r#"{"node.label":["zone"]}"#, vec!["alpha", "beta"]),
        (
            r#"{"membership":["accepted"]}"#,
            vec!["alpha", "beta", "test-node"],
        ),
        (r#"{"membership":["pending"]}"#, vec![]),
    ] {
        let path = if f.is_empty() {
            "/v1.44/nodes".to_string()
        } else {
            format!("/v1.44/nodes?filters={}", urlencode(f))
        };
        let r = env.get(&path).await;
        assert_eq!(r.status, 200, "{f}: {}", r.text());
        assert_eq!(hosts(&r.json()), want, "{f}");
    }
    let n = env.get("/v1.44/nodes/alpha").await.json();
    assert_eq!(n["ID"], Id::from_u128(1).as_str());
    assert_eq!(n["Spec"]["Role"], "worker");
    assert_eq!(n["Spec"]["Availability"], "active");
    assert_eq!(n["Status"]["State"], "ready");
    let n = env.get(&format!("/v1.44/nodes/{}", &me[..8])).await.json();
    assert_eq!(n["Description"]["Hostname"], "test-node");
    env.check_all(&[
        case(
            "GET",
            "/v1.44/nodes/gamma",
            None,
            404,
            "node gamma not found",
        ),
        case(
            "GET",
            "/v1.44/nodes?filters=%7B%22role%22%3A%5B%22boss%22%5D%7D",
            None,
            400,
            "Invalid role filter: 'boss'",
        ),
        // Both planted ids start with many zeros.
        case(
            "GET",
            "/v1.44/nodes/0000",
            None,
            400,
            "is ambiguous (2 matches found)",
        ),
    ])
    .await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn update_labels_availability_and_role() {
    let mut env = env_with_workers().await;
    let v = env.version("/v1.44/nodes/alpha").await;
    let r = env
        .post(
            &format!("/v1.44/nodes/alpha/update?version={v}"),
            json!({"Labels": {"rack": "r1"}, "Role": "worker", "Availability": "drain"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let n = env.get("/v1.44/nodes/alpha").await.json();
    assert_eq!(n["Spec"]["Labels"], json!({"rack": "r1"}));
    assert_eq!(n["Spec"]["Availability"], "drain");

    // Promote alpha; then demoting it is fine (two managers), demoting the last one is not.
    let v = env.version("/v1.44/nodes/alpha").await;
    let r = env
        .post(
            &format!("/v1.44/nodes/alpha/update?version={v}"),
            json!({"Role": "manager"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let me = env.backend.node_id().expect("id").to_string();
    let v = env.version("/v1.44/nodes/alpha").await;
    let r = env
        .post(
            &format!("/v1.44/nodes/alpha/update?version={v}"),
            json!({"Role": "worker"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let vm = env.version(&format!("/v1.44/nodes/{me}")).await;
    let before = env.snapshot();
    env.check_all(&[
        case(
            "POST",
            &format!("/v1.44/nodes/{me}/update?version={vm}"),
            Some(json!({"Role": "worker"})),
            400,
            "attempting to demote the last manager of the swarm",
        ),
        case(
            "POST",
            &format!("/v1.44/nodes/{me}/update?version={}", vm - 1),
            Some(json!({"Role": "manager"})),
            409,
            "update out of sequence",
        ),
        case(
            "POST",
            "/v1.44/nodes/alpha/update?version=x",
            Some(json!({})),
            400,
            "invalid node version",
        ),
        case(
            "POST",
            &format!("/v1.44/nodes/alpha/update?version={v}"),
            Some(json!({"Availability": "sleepy"})),
            400,
            "invalid JSON",
        ),
    ])
    .await;
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn remove_rules() {
    let mut env = env_with_workers().await;
    let me = env.backend.node_id().expect("id").to_string();
    let before = env.snapshot();
    env.check_all(&[
        case(
            "DELETE",
            &format!("/v1.44/nodes/{me}"),
            None,
            400,
            "It must be demoted to worker before removal",
        ),
        case(
            "DELETE",
            "/v1.44/nodes/alpha",
            None,
            400,
            "is not down and can't be removed",
        ),
        case(
            "DELETE",
            "/v1.44/nodes/nosuch",
            None,
            404,
            "node nosuch not found",
        ),
    ])
    .await;
    assert_eq!(env.snapshot(), before);
    env.check_all(&[
        case("DELETE", "/v1.44/nodes/beta", None, 200, ""),
        case("DELETE", "/v1.44/nodes/alpha?force=true", None, 200, ""),
    ])
    .await;
    assert_eq!(
        hosts(&env.get("/v1.44/nodes").await.json()),
        vec!["test-node"]
    );
}
