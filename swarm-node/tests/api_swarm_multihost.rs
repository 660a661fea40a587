//! The multi-host swarm API over a `TestBackend` playing each role: `swarm join` validation and
//! refusal, a worker's 503 on every cluster read and write (its `/info` and `swarm leave` still
//! work), join-token rotation, Docker's leave refusals, `node ls`/`inspect` from a raft view
//! (Leader, Reachable, Unreachable) with the root CA's `TLSInfo`, promote/demote and `node rm`
//! refused by the raft membership, `CAConfig` updates. Then the real `docker` CLI for the same
//! commands (skipped loudly without a `docker` binary).

mod common;
#[path = "docker_cli/mod.rs"]
mod docker_cli;
#[path = "skip/mod.rs"]
mod skip;

use std::path::Path;
use std::sync::Arc;

use common::{case, Env};
use docker_cli::{docker, docker_binary};
use serde_json::{json, Value};
use swarm_core::objects::node::{
    ManagerStatus, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Reachability,
    Resources,
};
use swarm_core::{Id, Meta, Node, StoreAction};
use swarm_node::backend::RaftMember;
use swarm_node::backend::RaftView;
use swarm_node::testing::{HttpResponse, TestBackend, TestRaft, TEST_ROOT_CA_PEM};

const NOT_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

fn host(n: u128, role: NodeRole, state: NodeState) -> Node {
    Node {
        id: Id::from_u128(n),
        meta: Meta::default(),
        spec: NodeSpec {
            desired_role: role,
            ..Default::default()
        },
        description: Some(NodeDescription {
            hostname: format!("host-{n}"),
            resources: Resources {
                nano_cpus: 4_000_000_000,
                memory_bytes: 8 << 30,
            },
            engine: swarm_core::objects::node::EngineDescription {
                engine_version: "swarm-node-test".into(),
                labels: [("rack".to_string(), format!("r{n}"))]
                    .into_iter()
                    .collect(),
            },
            ..Default::default()
        }),
        status: NodeStatus {
            state,
            message: String::new(),
            addr: format!("127.0.0.{n}"),
        },
        manager_status: (role == NodeRole::Manager).then(|| ManagerStatus {
            raft_id: n as u64,
            addr: format!("127.0.0.{n}:2377"),
            leader: false,
            reachability: Reachability::Reachable,
        }),
        role,
        certificate: None,
    }
}

fn member(raft_id: u64, node: Id, reachable: bool, leader: bool) -> RaftMember {
    RaftMember {
        raft_id,
        node_id: Some(node),
        addr: format!("127.0.0.{raft_id}:2377"),
        reachable,
        leader,
    }
}

/// A manager (the init node) with two more managers (2, 3) and a worker (4) in the store, and a
/// raft view where this node leads, 2 is reachable and 3 is not.
async fn three_managers() -> (Env, Id, Arc<TestRaft>) {
    let env = Env::active().await;
    let me = env.backend.node_id().expect("node id");
    env.backend
        .commit(vec![
            StoreAction::Create(host(2, NodeRole::Manager, NodeState::Ready).into()),
            StoreAction::Create(host(3, NodeRole::Manager, NodeState::Down).into()),
            StoreAction::Create(host(4, NodeRole::Worker, NodeState::Ready).into()),
        ])
        .expect("plant nodes");
    let raft = TestRaft::new(vec![
        member(1, me, true, true),
        member(2, Id::from_u128(2), true, false),
        member(3, Id::from_u128(3), false, false),
    ]);
    env.backend.set_raft(Some(raft.clone()));
    (env, me, raft)
}

fn valid_join() -> Value {
    let token = format!("SWMTKN-1-{}-{}", "1".repeat(50), "2".repeat(25));
    json!({
        "ListenAddr": "0.0.0.0",
        "AdvertiseAddr": "127.0.0.9",
        "RemoteAddrs": ["127.0.0.1"],
        "JoinToken": token,
        "Availability": "drain",
    })
}

#[tokio::test]
async fn join_validates_and_refuses_a_node_in_a_swarm() {
    let mut env = Env::inactive().await;
    let with = |k: &str, v: Value| {
        let mut b = valid_join();
        b[k] = v;
        b
    };
    let cases = [
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(json!({"RemoteAddrs": []})),
            400,
            "at least 1 RemoteAddr is required to join",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(with("RemoteAddrs", json!(["127.0.0.1:99999"]))),
            400,
            "invalid remoteAddr \"127.0.0.1:99999\": Invalid bind address format: 127.0.0.1:99999",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(with("RemoteAddrs", json!(["127.0.0.1:0"]))),
            400,
            "Invalid bind address format",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(with("RemoteAddrs", json!(["udp://127.0.0.1"]))),
            400,
            "Invalid proto, expected tcp: udp://127.0.0.1",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(with("ListenAddr", json!("a b:1"))),
            400,
            "invalid ListenAddr \"a b:1\"",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(with("AdvertiseAddr", json!("127.0.0.1:x"))),
            400,
            "invalid AdvertiseAddr",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(with("DataPathAddr", json!("nope"))),
            400,
            "invalid DataPathAddr",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(with("JoinToken", json!(""))),
            400,
            "A valid join token is necessary to join this cluster",
        ),
        case(
            "POST",
            "/v1.44/swarm/join",
            Some(with("JoinToken", json!("SWMTKN-2-x"))),
            500,
            "invalid join token",
        ),
    ];
    env.check_all(&cases).await;
    // Nothing was joined by the refused requests.
    assert!(env.backend.last_join().is_none());
    let mut bad = env.raw("POST", "/v1.44/swarm/join", b"{not json").await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    bad = env
        .call("POST", "/v1.44/swarm/join", Some(&valid_join()))
        .await;
    assert_eq!(bad.status, 200, "{}", bad.text());
    let req = env.backend.last_join().expect("joined");
    assert_eq!(req.listen_addr, "0.0.0.0:2377");
    assert_eq!(req.advertise_addr, "127.0.0.9:2377");
    assert_eq!(req.remote_addrs, vec!["127.0.0.1:2377".to_string()]);
    assert_eq!(
        req.availability,
        Some(swarm_core::objects::node::NodeAvailability::Drain)
    );
    assert!(!format!("{req:?}").contains("SWMTKN"), "token redacted");
    // Docker's 503 on a second join (and on an init), whatever the body.
    env.check_all(&[
        case("POST", "/v1.44/swarm/join", Some(valid_join()), 503,
            "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."),
        case("POST", "/v1.44/swarm/join", Some(json!({})), 503, "already part of a swarm"),
    ])
    .await;
}

#[tokio::test]
async fn init_normalizes_listen_and_advertise_addresses() {
    let mut env = Env::inactive().await;
    env.check(&case(
        "POST",
        "/v1.44/swarm/init",
        Some(json!({"ListenAddr": "127.0.0.1:70000"})),
        400,
        "invalid ListenAddr \"127.0.0.1:70000\": Invalid bind address format",
    ))
    .await;
    env.check(&case(
        "POST",
        "/v1.44/swarm/init",
        Some(json!({"ListenAddr": "127.0.0.1:4000", "AdvertiseAddr": "127.0.0.5"})),
        200,
        "",
    ))
    .await;
    let me = env.backend.node_id().expect("id");
    let node = env.get(&format!("/v1.44/nodes/{me}")).await.json();
    // The double advertises the host of the advertise address (port from the listen address).
    assert_eq!(node["Status"]["Addr"], "127.0.0.5");
}

#[tokio::test]
async fn a_worker_answers_cluster_requests_with_503_but_serves_info_and_leave() {
    let mut env = Env::active().await;
    env.backend.set_worker(true);
    let mgr = Id::from_u128(77);
    env.backend
        .set_remote_managers(vec![(mgr, "127.0.0.1:2377".into())]);
    let mut cases = Vec::new();
    for (method, path, body) in [
        ("GET", "/v1.44/swarm", None),
        ("GET", "/v1.44/nodes", None),
        ("GET", "/v1.44/nodes/x", None),
        ("GET", "/v1.44/services", None),
        ("GET", "/v1.44/tasks", None),
        ("GET", "/v1.44/secrets", None),
        ("GET", "/v1.44/configs", None),
        (
            "GET",
            "/v1.44/networks?filters=%7B%22scope%22%3A%5B%22swarm%22%5D%7D",
            None,
        ),
        ("GET", "/v1.44/swarm/unlockkey", None),
        ("POST", "/v1.44/swarm/update?version=1", Some(json!({}))),
        (
            "POST",
            "/v1.44/services/create",
            Some(json!({"Name": "x", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}})),
        ),
        (
            "POST",
            "/v1.44/secrets/create",
            Some(json!({"Name": "s", "Data": "eA=="})),
        ),
        ("DELETE", "/v1.44/nodes/x", None),
    ] {
        cases.push(case(method, path, body, 503, NOT_MANAGER));
    }
    env.check_all(&cases).await;
    let info = env.get("/v1.44/info").await.json();
    let swarm = &info["Swarm"];
    assert_eq!(swarm["LocalNodeState"], "active");
    assert_eq!(swarm["ControlAvailable"], false);
    assert_eq!(swarm["Error"], "");
    assert_eq!(swarm["NodeID"], env.backend.node_id().unwrap().to_string());
    assert_eq!(
        swarm["RemoteManagers"],
        json!([{"NodeID": mgr.to_string(), "Addr": "127.0.0.1:2377"}])
    );
    // Only a manager shows the cluster, its nodes and managers.
    for k in ["Cluster", "Nodes", "Managers"] {
        assert!(swarm.get(k).is_none_or(Value::is_null), "{k}: {swarm}");
    }
    let ping = env.get("/_ping").await;
    assert_eq!(ping.header("swarm"), Some("active/worker"));
    // A worker leaves without --force.
    env.check(&case("POST", "/v1.44/swarm/leave", None, 200, ""))
        .await;
    assert_eq!(
        env.get("/v1.44/info").await.json()["Swarm"]["LocalNodeState"],
        "inactive"
    );
}

#[tokio::test]
async fn manager_info_lists_nodes_managers_and_raft_peers() {
    let (mut env, me, _raft) = three_managers().await;
    let swarm = env.get("/v1.44/info").await.json()["Swarm"].clone();
    assert_eq!(swarm["ControlAvailable"], true);
    assert_eq!(swarm["Nodes"], 4);
    assert_eq!(swarm["Managers"], 3);
    assert_eq!(swarm["NodeID"], me.to_string());
    assert_eq!(swarm["NodeAddr"], "127.0.0.1");
    let peers = swarm["RemoteManagers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3);
    assert!(
        peers.contains(&json!({"NodeID": Id::from_u128(2).to_string(), "Addr": "127.0.0.2:2377"}))
    );
    assert!(swarm["Cluster"]["ID"].is_string());
    assert_eq!(
        swarm["Cluster"]["TLSInfo"]["CertIssuerSubject"],
        "MBMxETAPBgNVBAMTCHN3YXJtLWNh"
    );
}

#[tokio::test]
async fn join_tokens_rotate_with_a_new_secret_and_the_same_digest() {
    let mut env = Env::active().await;
    let s = env.get("/v1.44/swarm").await.json();
    let (w0, m0) = (
        s["JoinTokens"]["Worker"].as_str().unwrap().to_string(),
        s["JoinTokens"]["Manager"].as_str().unwrap().to_string(),
    );
    let w = swarm_net::JoinToken::parse(&w0).expect("worker token in SwarmKit's format");
    let m = swarm_net::JoinToken::parse(&m0).expect("manager token");
    assert_eq!(
        w.ca_digest(),
        &swarm_net::token::ca_digest(TEST_ROOT_CA_PEM.as_bytes())
    );
    assert_eq!(w.ca_digest(), m.ca_digest());
    assert_ne!(w0, m0);
    // TLSInfo comes from the root CA certificate.
    assert_eq!(s["TLSInfo"]["TrustRoot"], TEST_ROOT_CA_PEM);
    assert_eq!(
        s["TLSInfo"]["CertIssuerSubject"],
        "MBMxETAPBgNVBAMTCHN3YXJtLWNh"
    );
    assert!(s["TLSInfo"]["CertIssuerPublicKey"]
        .as_str()
        .is_some_and(|k| k.starts_with("MFkwEwYHKoZIzj0CAQYI")));

    let v = s["Version"]["Index"].as_u64().unwrap();
    let r = env
        .post(
            &format!("/v1.44/swarm/update?version={v}&rotateManagerToken=true"),
            s["Spec"].clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = env.get("/v1.44/swarm").await.json();
    let (w1, m1) = (
        s["JoinTokens"]["Worker"].as_str().unwrap().to_string(),
        s["JoinTokens"]["Manager"].as_str().unwrap().to_string(),
    );
    assert_eq!(w1, w0, "the worker token stays");
    assert_ne!(m1, m0, "the manager token is new");
    let m1t = swarm_net::JoinToken::parse(&m1).expect("rotated token");
    assert_eq!(m1t.ca_digest(), m.ca_digest(), "same CA digest");
    let v = s["Version"]["Index"].as_u64().unwrap();
    let r = env
        .post(
            &format!(
                "/v1.44/swarm/update?version={v}&rotateWorkerToken=true&rotateManagerToken=true"
            ),
            s["Spec"].clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = env.get("/v1.44/swarm").await.json();
    assert_ne!(s["JoinTokens"]["Worker"], json!(w1));
    assert_ne!(s["JoinTokens"]["Manager"], json!(m1));
}

#[tokio::test]
async fn ca_config_updates_record_expiry_and_force_rotate() {
    let mut env = Env::active().await;
    let s = env.get("/v1.44/swarm").await.json();
    let v = s["Version"]["Index"].as_u64().unwrap();
    let mut spec = s["Spec"].clone();
    spec["CAConfig"]["NodeCertExpiry"] = json!(1_800_000_000_000u64);
    env.check(&case(
        "POST",
        &format!("/v1.44/swarm/update?version={v}"),
        Some(spec.clone()),
        400,
        "rpc error: code = InvalidArgument desc = minimum certificate expiry time is: 1h0m0s",
    ))
    .await;
    spec["CAConfig"]["NodeCertExpiry"] = json!(7_200_000_000_000u64);
    spec["CAConfig"]["ForceRotate"] = json!(1);
    env.check(&case(
        "POST",
        &format!("/v1.44/swarm/update?version={v}"),
        Some(spec),
        200,
        "",
    ))
    .await;
    let s = env.get("/v1.44/swarm").await.json();
    assert_eq!(
        s["Spec"]["CAConfig"]["NodeCertExpiry"],
        7_200_000_000_000u64
    );
    assert_eq!(s["Spec"]["CAConfig"]["ForceRotate"], 1);
}

#[tokio::test]
async fn leave_refusals_use_dockers_words() {
    // The last manager.
    let mut env = Env::active().await;
    env.check(&case("POST", "/v1.44/swarm/leave", None, 503,
        "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.")).await;
    // Two reachable of three: leaving loses the quorum.
    let (mut env, _me, raft) = three_managers().await;
    env.check(&case("POST", "/v1.44/swarm/leave", None, 503,
        "You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves 1 managers out of 3. Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.")).await;
    // All three reachable: still refused without --force, as Docker does.
    let mut members = raft.members();
    members[2].reachable = true;
    raft.set_members(members);
    env.check(&case("POST", "/v1.44/swarm/leave", None, 503,
        "You are attempting to leave the swarm on a node that is participating as a manager. The only way to restore")).await;
    // A locked node.
    let mut env = Env::active().await;
    env.backend.lock_node();
    env.check(&case("POST", "/v1.44/swarm/leave", None, 503,
        "Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.")).await;
    env.check(&case(
        "POST",
        "/v1.44/swarm/leave?force=true",
        None,
        200,
        "",
    ))
    .await;
}

#[tokio::test]
async fn node_list_shows_raft_status_resources_and_tls() {
    let (mut env, me, _raft) = three_managers().await;
    let nodes = env.get("/v1.44/nodes").await.json();
    let by_id = |id: Id| {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ID"] == id.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("node {id} listed"))
    };
    let mine = by_id(me);
    assert_eq!(
        mine["ManagerStatus"],
        json!({"Leader": true, "Reachability": "reachable", "Addr": "127.0.0.1:2377"})
    );
    assert_eq!(
        by_id(Id::from_u128(2))["ManagerStatus"],
        json!({"Reachability": "reachable", "Addr": "127.0.0.2:2377"})
    );
    // The store says reachable; the raft view decides.
    assert_eq!(
        by_id(Id::from_u128(3))["ManagerStatus"]["Reachability"],
        "unreachable"
    );
    let w = by_id(Id::from_u128(4));
    assert!(w.get("ManagerStatus").is_none_or(Value::is_null), "{w}");
    assert_eq!(w["Status"]["Addr"], "127.0.0.4");
    assert_eq!(
        w["Description"]["Resources"],
        json!({"NanoCPUs": 4_000_000_000u64, "MemoryBytes": 8u64 << 30})
    );
    assert_eq!(w["Description"]["Engine"]["Labels"], json!({"rack": "r4"}));
    assert_eq!(w["Description"]["TLSInfo"]["TrustRoot"], TEST_ROOT_CA_PEM);
    assert_eq!(
        w["Description"]["TLSInfo"]["CertIssuerSubject"],
        "MBMxETAPBgNVBAMTCHN3YXJtLWNh"
    );
}

async fn set_role(env: &mut Env, id: Id, role: &str) -> HttpResponse {
    let n = env.get(&format!("/v1.44/nodes/{id}")).await.json();
    let v = n["Version"]["Index"].as_u64().unwrap();
    let mut spec = n["Spec"].clone();
    spec["Role"] = json!(role);
    env.post(&format!("/v1.44/nodes/{id}/update?version={v}"), spec)
        .await
}

#[tokio::test]
async fn promote_demote_and_remove_follow_the_raft_membership() {
    let (mut env, me, raft) = three_managers().await;
    // Demoting 2 leaves {1 reachable, 3 unreachable}: no quorum.
    let r = set_role(&mut env, Id::from_u128(2), "worker").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["message"], "rpc error: code = FailedPrecondition desc = can't remove member from the raft: this would result in a loss of quorum");
    // Demoting the unreachable 3 keeps two reachable of two.
    let r = set_role(&mut env, Id::from_u128(3), "worker").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // 3 is still a raft member until the daemon removes it: rm is refused.
    let r = env
        .call(
            "DELETE",
            &format!("/v1.44/nodes/{}?force=true", Id::from_u128(3)),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["message"], format!("rpc error: code = FailedPrecondition desc = node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal", Id::from_u128(3)));
    // Once out of the raft it goes (it is down: no --force needed).
    raft.set_members(vec![
        member(1, me, true, true),
        member(2, Id::from_u128(2), true, false),
    ]);
    let r = env
        .call(
            "DELETE",
            &format!("/v1.44/nodes/{}", Id::from_u128(3)),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A Ready worker needs --force.
    let w = Id::from_u128(4);
    let r = env.call("DELETE", &format!("/v1.44/nodes/{w}"), None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        format!(
            "rpc error: code = FailedPrecondition desc = node {w} is not down and can't be removed"
        )
    );
    // Promote the worker, then the last-manager rule on a one-manager store.
    assert_eq!(set_role(&mut env, w, "manager").await.status, 200);
    let r = env
        .call("DELETE", &format!("/v1.44/nodes/{w}?force=true"), None)
        .await;
    assert_eq!(
        r.status,
        200,
        "not a raft member yet: removable: {}",
        r.text()
    );
    let mut single = Env::active().await;
    let me1 = single.backend.node_id().unwrap();
    let r = set_role(&mut single, me1, "worker").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm");
}

// ---- the docker CLI ----

async fn ok(env: &Env, config: &Path, args: &[&str]) -> String {
    let o = docker(env.server.path(), config, args, None).await;
    assert_eq!(o.code, 0, "docker {args:?}: {}\n{}", o.stdout, o.stderr);
    o.stdout.trim().to_string()
}

async fn fails(env: &Env, config: &Path, args: &[&str], want: &str) {
    let o = docker(env.server.path(), config, args, None).await;
    assert_ne!(o.code, 0, "docker {args:?} should fail: {}", o.stdout);
    assert!(
        o.stderr.contains(want),
        "docker {args:?}: {}\nwant {want:?}",
        o.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cli_multihost_commands() {
    if docker_binary().is_none() {
        skip::skip("no docker CLI on PATH");
        return;
    }
    let cfg = tempfile::tempdir().expect("tempdir");
    let cfg = cfg.path();
    let (mut env, me, _raft) = three_managers().await;

    let token = ok(&env, cfg, &["swarm", "join-token", "worker", "-q"]).await;
    assert!(swarm_net::JoinToken::parse(&token).is_ok(), "{token}");
    let before = ok(&env, cfg, &["swarm", "join-token", "-q", "manager"]).await;
    let rotated = ok(&env, cfg, &["swarm", "join-token", "--rotate", "manager"]).await;
    assert!(
        rotated.contains("Successfully rotated manager join token."),
        "{rotated}"
    );
    let after = ok(&env, cfg, &["swarm", "join-token", "-q", "manager"]).await;
    assert_ne!(before, after);
    assert!(rotated.contains(&after), "{rotated}");

    let ls = ok(
        &env,
        cfg,
        &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
    )
    .await;
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines.contains(&"test-node Leader"), "{ls}");
    assert!(lines.contains(&"host-2 Reachable"), "{ls}");
    assert!(lines.contains(&"host-3 Unreachable"), "{ls}");
    assert!(lines.iter().any(|l| l.trim() == "host-4"), "{ls}");
    let tls = ok(
        &env,
        cfg,
        &[
            "node",
            "inspect",
            "--format",
            "{{json .Description.TLSInfo.CertIssuerSubject}}",
            "host-4",
        ],
    )
    .await;
    // The CLI holds it as bytes; `json` shows them as Docker sent them.
    assert_eq!(tls, "\"MBMxETAPBgNVBAMTCHN3YXJtLWNh\"");

    fails(
        &env,
        cfg,
        &["node", "demote", "host-2"],
        "this would result in a loss of quorum",
    )
    .await;
    let out = ok(&env, cfg, &["node", "demote", "host-3"]).await;
    assert!(
        out.contains("Manager host-3 demoted in the swarm."),
        "{out}"
    );
    fails(
        &env,
        cfg,
        &["node", "rm", "host-3"],
        "is a cluster manager and is a member of the raft cluster",
    )
    .await;
    fails(
        &env,
        cfg,
        &["node", "rm", "host-4"],
        "is not down and can't be removed",
    )
    .await;
    let out = ok(&env, cfg, &["node", "promote", "host-4"]).await;
    assert!(
        out.contains("Node host-4 promoted to a manager in the swarm."),
        "{out}"
    );

    let info = ok(
        &env,
        cfg,
        &[
            "info",
            "--format",
            "{{.Swarm.Managers}} {{.Swarm.Nodes}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeID}}",
        ],
    )
    .await;
    // Managers counts the role nodes hold (promotion is applied by the daemon's role manager,
    // which the double does not run; the demoted host-3 holds its role until then too).
    assert_eq!(info, format!("3 4 true {me}"));
    fails(
        &env,
        cfg,
        &["swarm", "leave"],
        "Removing this node leaves 1 managers out of 3",
    )
    .await;
    fails(
        &env,
        cfg,
        &["swarm", "join", "--token", &token, "127.0.0.1:2377"],
        "This node is already part of a swarm.",
    )
    .await;

    // Certificates: the root as Docker prints it, a rotation request, the expiry rule.
    let ca = ok(&env, cfg, &["swarm", "ca"]).await;
    assert_eq!(ca, TEST_ROOT_CA_PEM.trim());
    ok(&env, cfg, &["swarm", "ca", "--rotate", "--detach"]).await;
    let spec = env.get("/v1.44/swarm").await.json()["Spec"].clone();
    assert_eq!(spec["CAConfig"]["ForceRotate"], 1);
    fails(
        &env,
        cfg,
        &["swarm", "update", "--cert-expiry", "30m"],
        "minimum certificate expiry time is: 1h0m0s",
    )
    .await;
    ok(&env, cfg, &["swarm", "update", "--cert-expiry", "2h"]).await;
    let spec = env.get("/v1.44/swarm").await.json()["Spec"].clone();
    assert_eq!(spec["CAConfig"]["NodeCertExpiry"], 7_200_000_000_000u64);

    // The same CLI against a worker.
    env.backend.set_worker(true);
    fails(&env, cfg, &["node", "ls"], "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state.").await;
    fails(
        &env,
        cfg,
        &["swarm", "join-token", "worker"],
        "This node is not a swarm manager.",
    )
    .await;
    let info = ok(
        &env,
        cfg,
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ],
    )
    .await;
    assert_eq!(info, "active false");
    let out = ok(&env, cfg, &["swarm", "leave"]).await;
    assert!(out.contains("Node left the swarm."), "{out}");

    // Join from the CLI: addresses as typed, token as given.
    let fresh = Env::with(TestBackend::new()).await;
    let out = ok(
        &fresh,
        cfg,
        &[
            "swarm",
            "join",
            "--token",
            &token,
            "--advertise-addr",
            "127.0.0.9",
            "--listen-addr",
            "127.0.0.9:4500",
            "127.0.0.1:2377",
        ],
    )
    .await;
    assert!(
        out.contains("This node joined a swarm as a worker."),
        "{out}"
    );
    let req = fresh.backend.last_join().expect("joined");
    assert_eq!(req.remote_addrs, vec!["127.0.0.1:2377".to_string()]);
    assert_eq!(req.listen_addr, "127.0.0.9:4500");
    assert_eq!(req.advertise_addr, "127.0.0.9:4500");
    assert_eq!(req.join_token.as_str(), token);
}
