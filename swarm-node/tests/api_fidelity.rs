//! Docker API fidelity against a real engine: every request body in
//! `tests/fixtures/docker-20.10/` (captured from Docker Engine 20.10 by `generate.sh` there, with
//! every field set) is sent to swarm-node, and what swarm-node answers is compared field by field
//! with what the engine answered: inspect documents (ids, versions, timestamps and the
//! engine's own allocations ignored) and error answers (status and message, ids mapped).
//!
//! Why this proves fidelity: the expected side is not written by hand; it is the engine's own
//! JSON. A field swarm-node drops, renames, adds or changes shows as a difference naming its
//! path. The few deliberate differences are listed in [`DIVERGENCES`] with the reason, and an
//! entry that no longer differs fails the test too, so the list stays true.
//!
//! No swarm mode, engine or root is needed here: the test runs against swarm-node's API over a
//! `TestBackend`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::Env;
use serde_json::{json, Value};

/// API version the fixtures were captured with (the engine's maximum).
const V: &str = "/v1.41";

/// Paths never compared: identities, versions, times, and what the engine allocates itself.
const IGNORED: &[&str] = &[
    "ID",
    "Id",
    "Version",
    "CreatedAt",
    "UpdatedAt",
    "Created",
    // Join tokens and the root CA are this cluster's own credentials.
    "JoinTokens",
    "TLSInfo",
    // Overlay allocations the engine adds to a network (VXLAN ids, IPAM serial allocation).
    "Options.com.docker.network.driver.overlay.vxlanid_list",
    "IPAM.Options.com.docker.network.ipam.serial",
    // When the job last started.
    "JobStatus.LastExecution",
    "JobStatus.JobIteration.Index",
];

/// Deliberate differences: (fixture, path, why). Each must still differ (a stale entry fails).
const DIVERGENCES: &[(&str, &str, &str)] = &[
    (
        "swarm-inspect",
        "Spec.TaskDefaults.LogDriver",
        "Docker 20.10's swarm init drops Spec.TaskDefaults; swarm-node stores what was sent",
    ),
    (
        "swarm-inspect-updated",
        "RootRotationInProgress",
        "the engine rotated to the given SigningCACert; swarm-node refuses a rotation to a given \
         root (SigningCACert/Key) by name, and the test sends the update without them; the \
         ForceRotate it records is acted on by the manager's CA loop, which the test double \
         does not run",
    ),
    (
        "network-inspect",
        "Containers",
        "swarm-node shows an empty map where Docker shows null (no containers either way)",
    ),
    (
        "service-global-inspect",
        "Endpoint.Spec.Mode",
        "Docker leaves Endpoint.Spec empty for a dnsrr service without ports; swarm-node shows \
         the mode the client gave",
    ),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/docker-20.10")
}

/// A fixture file, with every Docker id in `ids` replaced by ours.
fn fixture(name: &str, ids: &BTreeMap<String, String>) -> Value {
    let path = fixtures().join(format!("{name}.json"));
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run generate.sh)", path.display()));
    for (docker, ours) in ids {
        text = text.replace(docker.as_str(), ours);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The engine's answer (`{"Status": ..., "Body": ...}`).
fn answer(name: &str, ids: &BTreeMap<String, String>) -> (u16, Value) {
    let a = fixture(name, ids);
    let status = a["Status"].as_u64().expect("Status") as u16;
    (status, a["Body"].clone())
}

/// The request body sent to the engine.
fn request(name: &str, ids: &BTreeMap<String, String>) -> Value {
    fixture(&format!("{name}.request"), ids)
}

/// Every path where `ours` differs from `docker` (null and absent are the same, as for every
/// client that decodes into typed structs).
fn diff(path: &str, docker: &Value, ours: &Value, out: &mut Vec<String>) {
    if IGNORED.contains(&path) {
        return;
    }
    match (docker, ours) {
        (Value::Object(d), Value::Object(o)) => {
            let keys: std::collections::BTreeSet<&String> = d.keys().chain(o.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &p,
                    d.get(k).unwrap_or(&Value::Null),
                    o.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(d), Value::Array(o)) if d.len() == o.len() => {
            for (i, (d, o)) in d.iter().zip(o).enumerate() {
                diff(&format!("{path}[{i}]"), d, o, out);
            }
        }
        (Value::Number(d), Value::Number(o)) if d.as_f64() == o.as_f64() => {}
        (d, o) if d == o => {}
        (d, o) => out.push(format!("{path}: docker {d} / swarm-node {o}")),
    }
}

/// Compares our document with the engine's; returns the differences not in [`DIVERGENCES`],
/// plus the listed divergences of `name` that did not occur.
fn check_document(name: &str, docker: &Value, ours: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    diff("", docker, ours, &mut diffs);
    let listed: Vec<&str> = DIVERGENCES
        .iter()
        .filter(|(f, _, _)| *f == name)
        .map(|(_, p, _)| *p)
        .collect();
    let mut problems: Vec<String> = diffs
        .iter()
        .filter(|d| !listed.iter().any(|p| d.starts_with(&format!("{p}:"))))
        .map(|d| format!("{name}: {d}"))
        .collect();
    for p in listed {
        if !diffs.iter().any(|d| d.starts_with(&format!("{p}:"))) {
            problems.push(format!(
                "{name}: listed divergence {p} no longer differs: remove it from DIVERGENCES"
            ));
        }
    }
    problems
}

/// Sends `body` with `method` to `path` and returns (status, JSON body).
async fn send(env: &mut Env, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let r = env.call(method, &format!("{V}{path}"), body).await;
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text()));
    (r.status, v)
}

/// Creates an object from the fixture's request and maps the engine's id of it to ours.
async fn create(
    env: &mut Env,
    fixture_name: &str,
    path: &str,
    ids: &mut BTreeMap<String, String>,
) -> String {
    let body = request(fixture_name, ids);
    let (status, ours) = send(env, "POST", path, Some(&body)).await;
    let (docker_status, docker) = answer(fixture_name, ids);
    assert_eq!(status, docker_status, "{fixture_name}: {ours}");
    let key = |v: &Value| {
        v.get("ID")
            .or_else(|| v.get("Id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .expect("an id")
    };
    let id = key(&ours);
    ids.insert(key(&docker), id.clone());
    id
}

/// GETs `path` and compares it with the fixture `name`.
async fn inspect(
    env: &mut Env,
    name: &str,
    path: &str,
    ids: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    let (status, ours) = send(env, "GET", path, None).await;
    let (docker_status, docker) = answer(name, ids);
    assert_eq!(status, docker_status, "{name}: {ours}");
    problems.extend(check_document(name, &docker, &ours));
}

#[tokio::test]
async fn swarm_init_and_update_keep_every_field() {
    let mut env = Env::inactive().await;
    let ids = BTreeMap::new();
    let mut problems = Vec::new();

    let init = request("swarm-init", &ids);
    let (status, body) = send(&mut env, "POST", "/swarm/init", Some(&init)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.as_str().is_some_and(|id| id.len() == 25), "{body}");
    inspect(&mut env, "swarm-inspect", "/swarm", &ids, &mut problems).await;

    // The engine rotated its root CA to the given signing certificate; swarm-node refuses that
    // by name, and takes the rest of the same update (ForceRotate included).
    let mut update = request("swarm-update", &ids);
    let version = env.version(&format!("{V}/swarm")).await;
    let (status, body) = send(
        &mut env,
        "POST",
        &format!("/swarm/update?version={version}"),
        Some(&update),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("SigningCACert")));
    let ca = update["CAConfig"].as_object_mut().expect("CAConfig");
    ca.remove("SigningCACert");
    ca.remove("SigningCAKey");
    let (status, body) = send(
        &mut env,
        "POST",
        &format!("/swarm/update?version={version}"),
        Some(&update),
    )
    .await;
    // A changed ForceRotate is recorded (the manager's CA loop rotates the root).
    assert_eq!(status, 200, "{body}");
    inspect(
        &mut env,
        "swarm-inspect-updated",
        "/swarm",
        &ids,
        &mut problems,
    )
    .await;

    let unlock = env.get(&format!("{V}/swarm/unlockkey")).await;
    assert_eq!(unlock.status, 200);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The errors of the swarm endpoints, as the engine words them.
#[tokio::test]
async fn swarm_errors_keep_docker_wording() {
    let mut env = Env::inactive().await;
    let ids = BTreeMap::new();
    let init = request("swarm-init", &ids);
    send(&mut env, "POST", "/swarm/init", Some(&init)).await;
    let again = send(&mut env, "POST", "/swarm/init", Some(&init)).await;
    check_error("swarm-init-again", again, &ids);
    // Move the cluster past version 1 first, so that version 1 is stale here too.
    let stale = request("swarm-update-stale", &ids);
    let version = env.version(&format!("{V}/swarm")).await;
    let r = send(
        &mut env,
        "POST",
        &format!("/swarm/update?version={version}"),
        Some(&stale),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = send(&mut env, "POST", "/swarm/update?version=1", Some(&stale)).await;
    check_error("swarm-update-stale", r, &ids);
}

/// Our error answer against the engine's: same status and message, except that a stale
/// version answers 409 (the engine: 500, a gRPC `Unknown`) with details before the suffix
/// clients match, `update out of sequence`.
fn check_error(name: &str, ours: (u16, Value), ids: &BTreeMap<String, String>) {
    let (docker_status, docker) = answer(name, ids);
    let want = docker["message"]
        .as_str()
        .or_else(|| docker.as_str())
        .unwrap_or_else(|| panic!("{name}: no message in {docker}"));
    let got = ours.1["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no message in {}", ours.1));
    const STALE: &str = "rpc error: code = Unknown desc = update out of sequence";
    if want == STALE {
        assert_eq!(docker_status, 500, "{name}");
        assert_eq!(ours.0, 409, "{name}: {got}");
        assert!(
            got.starts_with("rpc error: code = Unknown desc = ")
                && got.ends_with("update out of sequence"),
            "{name}: {got:?} does not keep Docker's form {want:?}"
        );
    } else {
        assert_eq!(ours.0, docker_status, "{name}: {got}");
        assert_eq!(got, want, "{name}");
    }
}

#[tokio::test]
async fn objects_keep_every_field_and_errors_keep_docker_wording() {
    let mut env = Env::active().await;
    let mut ids = BTreeMap::new();
    let mut problems = Vec::new();

    // Node spec.
    let node = env.get(&format!("{V}/nodes")).await.json()[0]["ID"]
        .as_str()
        .expect("node id")
        .to_string();
    let docker_node = answer("node-inspect", &ids).1["ID"]
        .as_str()
        .expect("docker node id")
        .to_string();
    ids.insert(docker_node, node.clone());
    let version = env.version(&format!("{V}/nodes/{node}")).await;
    let spec = request("node-update", &ids);
    let (status, body) = send(
        &mut env,
        "POST",
        &format!("/nodes/{node}/update?version={version}"),
        Some(&spec),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, ours) = send(&mut env, "GET", &format!("/nodes/{node}"), None).await;
    let docker = answer("node-inspect", &ids).1;
    problems.extend(check_document(
        "node-inspect",
        &docker["Spec"],
        &ours["Spec"],
    ));

    // Network, secret, config.
    let net = create(&mut env, "network-create", "/networks/create", &mut ids).await;
    inspect(
        &mut env,
        "network-inspect",
        &format!("/networks/{net}"),
        &ids,
        &mut problems,
    )
    .await;
    let secret = create(&mut env, "secret-create", "/secrets/create", &mut ids).await;
    inspect(
        &mut env,
        "secret-inspect",
        &format!("/secrets/{secret}"),
        &ids,
        &mut problems,
    )
    .await;
    let config = create(&mut env, "config-create", "/configs/create", &mut ids).await;
    inspect(
        &mut env,
        "config-inspect",
        &format!("/configs/{config}"),
        &ids,
        &mut problems,
    )
    .await;

    // Services: every field set, nothing set, global, job; with and without insertDefaults.
    for (kind, defaults) in [
        ("full", true),
        ("min", true),
        ("global", false),
        ("job", false),
    ] {
        let create_name = format!("service-{kind}-create");
        let id = create(&mut env, &create_name, "/services/create", &mut ids).await;
        let name = format!("service-{kind}-inspect");
        inspect(
            &mut env,
            &name,
            &format!("/services/{id}"),
            &ids,
            &mut problems,
        )
        .await;
        if defaults {
            let name = format!("service-{kind}-inspect-defaults");
            let path = format!("/services/{id}?insertDefaults=true");
            inspect(&mut env, &name, &path, &ids, &mut problems).await;
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // Errors clients match on, request by request as the engine got them.
    let min = ids
        .iter()
        .find(|(d, _)| {
            answer("service-min-create", &BTreeMap::new()).1["ID"].as_str() == Some(d.as_str())
        })
        .map(|(_, o)| o.clone())
        .expect("min service");
    let min_version = env.version(&format!("{V}/services/{min}")).await;
    let secret_version = env.version(&format!("{V}/secrets/{secret}")).await;
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "service-create-duplicate",
            "POST",
            "/services/create".into(),
        ),
        ("service-missing", "GET", "/services/nosuchservice".into()),
        (
            "service-remove-missing",
            "DELETE",
            "/services/nosuchservice".into(),
        ),
        (
            "service-update-stale",
            "POST",
            format!("/services/{min}/update?version=1"),
        ),
        (
            "service-update-rename",
            "POST",
            format!("/services/{min}/update?version={min_version}"),
        ),
        (
            "service-update-mode",
            "POST",
            format!("/services/{min}/update?version={min_version}"),
        ),
        (
            "service-rollback-none",
            "POST",
            format!("/services/{min}/update?version={min_version}&rollback=previous"),
        ),
        ("secret-create-duplicate", "POST", "/secrets/create".into()),
        ("secret-missing", "GET", "/secrets/nosuchsecret".into()),
        (
            "secret-remove-in-use",
            "DELETE",
            format!("/secrets/{secret}"),
        ),
        (
            "secret-update-data",
            "POST",
            format!("/secrets/{secret}/update?version={secret_version}"),
        ),
        (
            "secret-update-stale",
            "POST",
            format!("/secrets/{secret}/update?version=1"),
        ),
        ("config-create-duplicate", "POST", "/configs/create".into()),
        ("config-missing", "GET", "/configs/nosuchconfig".into()),
        (
            "config-remove-in-use",
            "DELETE",
            format!("/configs/{config}"),
        ),
        (
            "network-create-duplicate",
            "POST",
            "/networks/create".into(),
        ),
        ("network-missing", "GET", "/networks/nosuchnetwork".into()),
        (
            "network-remove-in-use",
            "DELETE",
            format!("/networks/{net}"),
        ),
        ("node-missing", "GET", "/nodes/nosuchnode".into()),
        (
            "node-update-stale",
            "POST",
            format!("/nodes/{node}/update?version=1"),
        ),
        ("task-missing", "GET", "/tasks/nosuchtask".into()),
    ];
    let before = env.snapshot();
    for (name, method, path) in cases {
        let has_body = fixtures().join(format!("{name}.request.json")).exists();
        let body = has_body.then(|| request(name, &ids));
        let r = send(&mut env, method, &path, body.as_ref()).await;
        check_error(name, r, &ids);
    }
    assert_eq!(
        env.snapshot(),
        before,
        "a refused request changed the store"
    );
}

/// Values Docker's JSON cannot tell apart from their defaults still come back as sent; and
/// ratios are exact.
#[tokio::test]
async fn ratios_are_exact_and_json_spellings_are_dockers() {
    let mut env = Env::active().await;
    let r = env
        .post(
            &format!("{V}/services/create"),
            json!({"Name": "r", "TaskTemplate": {"ContainerSpec": {"Image": "busybox",
                "HealthCheck": {"Test": ["CMD", "true"]}, "OomScoreAdj": -500,
                "Privileges": {"NoNewPrivileges": true, "Seccomp": {"Mode": "unconfined"},
                               "AppArmor": {"Mode": "disabled"}}}},
                   "UpdateConfig": {"MaxFailureRatio": 0.4},
                   "RollbackConfig": {"MaxFailureRatio": 0.1}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = env.get(&format!("{V}/services/r")).await;
    let text = s.text();
    assert!(text.contains("\"MaxFailureRatio\":0.4,") || text.contains("\"MaxFailureRatio\":0.4}"));
    let s = s.json();
    assert_eq!(s["Spec"]["RollbackConfig"]["MaxFailureRatio"], json!(0.1));
    let c = &s["Spec"]["TaskTemplate"]["ContainerSpec"];
    // Accepted in either spelling, written as Docker writes it.
    assert_eq!(c["Healthcheck"]["Test"], json!(["CMD", "true"]));
    assert!(c.get("HealthCheck").is_none());
    assert_eq!(c["OomScoreAdj"], -500);
    assert_eq!(
        c["Privileges"],
        json!({"NoNewPrivileges": true, "Seccomp": {"Mode": "unconfined"},
               "AppArmor": {"Mode": "disabled"}})
    );
    assert_eq!(c["Isolation"], "default");
}
