//! Services through the API: create (defaults, case-insensitive keys, secrets by name), list with
//! filters and status, inspect, update, rollback, remove, and the errors a client can cause, each
//! of which leaves the store byte-for-byte unchanged.

mod common;

use std::sync::Arc;

use common::{case, Env};
use serde_json::json;
use swarm_core::{Id, StoreAction, Task, TaskState, TaskStatus};

#[tokio::test]
async fn create_fills_semantics_defaults_and_inspect_shows_them() {
    let mut env = Env::active().await;
    let id = env.service("web", 2).await;
    let r = env.get(&format!("/v1.44/services/{id}")).await;
    assert_eq!(r.status, 200);
    let s = r.json();
    assert_eq!(s["ID"], id.as_str());
    assert_eq!(s["Spec"]["Name"], "web");
    assert_eq!(s["Spec"]["Mode"]["Replicated"]["Replicas"], 2);
    let t = &s["Spec"]["TaskTemplate"];
    assert_eq!(t["ContainerSpec"]["Image"], "busybox");
    // As Docker: parts the client did not give are left out unless insertDefaults=true.
    for absent in [
        &t["RestartPolicy"],
        &s["Spec"]["UpdateConfig"],
        &s["Spec"]["RollbackConfig"],
    ] {
        assert!(absent.is_null(), "{s}");
    }
    let d = env
        .get(&format!("/v1.44/services/{id}?insertDefaults=true"))
        .await
        .json();
    let dt = &d["Spec"]["TaskTemplate"];
    assert_eq!(dt["RestartPolicy"]["Condition"], "any");
    assert_eq!(dt["RestartPolicy"]["Delay"], 5_000_000_000u64);
    let u = &d["Spec"]["UpdateConfig"];
    assert_eq!(u["Parallelism"], 1);
    assert_eq!(u["Monitor"], 5_000_000_000u64);
    assert_eq!(u["FailureAction"], "pause");
    assert_eq!(u["Order"], "stop-first");
    assert_eq!(d["Spec"]["RollbackConfig"]["Parallelism"], 1);
    // No EndpointSpec was given: Docker shows an empty one under Endpoint.
    assert!(s["Spec"]["EndpointSpec"].is_null());
    assert_eq!(s["Endpoint"]["Spec"], serde_json::json!({}));
    assert!(s["Version"]["Index"].as_u64().is_some());
    assert!(s["CreatedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    // No stop grace period was given; insertDefaults spells out Docker's 10s.
    assert!(t["ContainerSpec"].get("StopGracePeriod").is_none());
    let d = env
        .get("/v1.44/services/web?insertDefaults=true")
        .await
        .json();
    assert_eq!(
        d["Spec"]["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"],
        10_000_000_000u64
    );
}

#[tokio::test]
async fn lowercase_keys_and_jobs_are_accepted() {
    let mut env = Env::active().await;
    let r = env
        .post(
            "/services/create",
            json!({
                "name": "job",
                "labels": {"Team": "A"},
                "tasktemplate": {"containerspec": {"image": "busybox"}},
                "mode": {"replicatedjob": {"maxconcurrent": 2}}
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["Warnings"], json!([]));
    let s = env.get("/services/job").await.json();
    assert_eq!(s["Spec"]["Labels"]["Team"], "A");
    let job = &s["Spec"]["Mode"]["ReplicatedJob"];
    assert_eq!(job["MaxConcurrent"], 2);
    assert_eq!(job["TotalCompletions"], 2);
    assert!(s["Spec"].get("UpdateConfig").is_none());
    assert_eq!(s["JobStatus"]["JobIteration"]["Index"], 0);
}

#[tokio::test]
async fn list_filters_as_maps_or_lists_and_status() {
    let mut env = Env::active().await;
    let web = env.service("web", 3).await;
    env.service("worker", 1).await;
    let r = env
        .post(
            "/v1.44/services/create",
            json!({"Name": "agent", "Labels": {"tier": "infra"},
                   "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}},
                   "Mode": {"Global": {}}}),
        )
        .await;
    assert_eq!(r.status, 201);
    // Plant one running task of `web`.
    let svc = env
        .backend
        .store()
        .view(|s| {
            s.get::<swarm_core::Service>(&Id::parse(&web).expect("id"))
                .cloned()
        })
        .expect("service");
    let task = Task {
        id: Id::from_u128(77),
        meta: Default::default(),
        service_id: svc.id,
        service_annotations: svc.spec.annotations.clone(),
        slot: 1,
        node_id: env.backend.node_id(),
        spec: Arc::new(svc.spec.task.clone()),
        spec_version: svc.spec_version,
        status: TaskStatus {
            state: TaskState::Running,
            ..Default::default()
        },
        desired_state: TaskState::Running,
        job_iteration: None,
        assigned_secrets: vec![],
        assigned_configs: vec![],
        networks: Vec::new(),
        ports: Vec::new(),
    };
    env.backend
        .commit(vec![StoreAction::Create(task.into())])
        .expect("plant");

    let names = |r: &swarm_node::testing::HttpResponse| -> Vec<String> {
        let mut v: Vec<String> = r
            .json()
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["Spec"]["Name"].as_str().unwrap_or("").to_string())
            .collect();
        v.sort();
        v
    };
    for (filters, want) in [
        (r#"{"name":{"w":true}}"#, vec!["web", "worker"]),
        (r#"{"name":["web"]}"#, vec!["web"]),
        (r#"{"mode":["global"]}"#, vec!["agent"]),
        (r#"{"mode":{"replicated":true}}"#, vec!["web", "worker"]),
        (r#"{"label":["tier=infra"]}"#, vec!["agent"]),
        (r#"{"label":["tier"]}"#, vec!["agent"]),
        (r#"{"label":["tier=app"]}"#, vec![]),
    ] {
        let q: String = form_encode(filters);
        let r = env.get(&format!("/v1.44/services?filters={q}")).await;
        assert_eq!(r.status, 200, "{filters}: {}", r.text());
        assert_eq!(names(&r), want, "{filters}");
    }
    let q = form_encode(&format!(r#"{{"id":["{}"]}}"#, &web[..6]));
    let r = env.get(&format!("/v1.44/services?filters={q}")).await;
    assert_eq!(names(&r), vec!["web"]);

    let r = env.get("/v1.44/services?status=true").await;
    let list = r.json();
    let web_status = list
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["Spec"]["Name"] == "web")
        .map(|s| s["ServiceStatus"].clone())
        .expect("web");
    assert_eq!(web_status["RunningTasks"], 1);
    assert_eq!(web_status["DesiredTasks"], 3);
    let r = env.get("/v1.44/services").await;
    assert!(r.json()[0].get("ServiceStatus").is_none());

    env.check_all(&[
        case(
            "GET",
            "/v1.44/services?filters=%7Bbad",
            None,
            400,
            "invalid filter",
        ),
        case(
            "GET",
            &format!(
                "/v1.44/services?filters={}",
                form_encode(r#"{"colour":["red"]}"#)
            ),
            None,
            400,
            "invalid filter 'colour'",
        ),
        case(
            "GET",
            &format!(
                "/v1.44/services?filters={}",
                form_encode(r#"{"mode":["weird"]}"#)
            ),
            None,
            400,
            "mode=weird",
        ),
    ])
    .await;
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn update_rollback_and_remove() {
    let mut env = Env::active().await;
    let id = env.service("web", 1).await;
    let path = format!("/v1.44/services/{id}");
    let v = env.version(&path).await;
    let mut spec = env.get(&path).await.json()["Spec"].clone();
    spec["TaskTemplate"]["ContainerSpec"]["Image"] = json!("busybox:2");
    spec["Mode"]["Replicated"]["Replicas"] = json!(4);
    let r = env
        .post(&format!("{path}/update?version={v}"), spec.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Warnings"], json!([]));
    let s = env.get(&path).await.json();
    assert_eq!(
        s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        "busybox:2"
    );
    assert_eq!(
        s["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        "busybox"
    );

    // The same version again is stale now: a clear conflict, nothing changed.
    let before = env.snapshot();
    let r = env
        .post(&format!("{path}/update?version={v}"), spec.clone())
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .is_some_and(|m| m.contains("update out of sequence")));
    assert_eq!(env.snapshot(), before);

    // Rollback restores the previous spec.
    let v2 = env.version(&path).await;
    let r = env
        .post(
            &format!("{path}/update?version={v2}&rollback=previous"),
            spec,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = env.get(&path).await.json();
    assert_eq!(
        s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        "busybox"
    );
    assert_eq!(s["UpdateStatus"]["State"], "rollback_started");
    assert_eq!(s["UpdateStatus"]["Message"], "manually requested rollback");

    let r = env.call("DELETE", "/v1.44/services/web", None).await;
    assert_eq!(r.status, 200);
    env.check(&case(
        "GET",
        &path,
        None,
        404,
        &format!("service {id} not found"),
    ))
    .await;
}

#[tokio::test]
async fn client_mistakes_are_clear_errors_and_change_nothing() {
    let mut env = Env::active().await;
    env.service("web", 1).await;
    let v = env.version("/v1.44/services/web").await;
    let good = env.get("/v1.44/services/web").await.json()["Spec"].clone();
    let mut renamed = good.clone();
    renamed["Name"] = json!("other");
    let mut to_global = good.clone();
    to_global["Mode"] = json!({"Global": {}});
    let update = format!("/v1.44/services/web/update?version={v}");
    let before = env.snapshot();
    let image = |extra: serde_json::Value| {
        let mut b = json!({"Name": "x", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}});
        if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        Some(b)
    };
    env.check_all(&[
        case("POST", "/v1.44/services/create", None, 400, "invalid JSON"),
        case("GET", "/v1.44/services/nope", None, 404, "service nope not found"),
        case("DELETE", "/v1.44/services/nope", None, 404, "service nope not found"),
        case("POST", "/v1.44/services/nope/update?version=1", Some(good.clone()), 404, "not found"),
        case("POST", "/v1.44/services/web/update", Some(good.clone()), 400, "invalid service version"),
        case("POST", "/v1.44/services/web/update?version=1", Some(good.clone()), 409, "update out of sequence"),
        case("POST", &update, Some(renamed), 501, "rpc error: code = Unimplemented desc = renaming services is not supported"),
        case("POST", &update, Some(to_global), 501, "rpc error: code = Unimplemented desc = service mode change is not allowed"),
        case(
            "POST",
            "/v1.44/services/create",
            Some(json!({"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}})),
            409,
            "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service web already exists",
        ),
        case("POST", "/v1.44/services/create", Some(json!({"Name": "x"})), 400, "image reference must be provided"),
        case(
            "POST",
            "/v1.44/services/create",
            image(json!({"TaskTemplate": {"ContainerSpec": {"Image": "busybox"},
                "Placement": {"Constraints": ["node.role=manager"]}}})),
            400,
            "invalid placement constraint",
        ),
        case(
            "POST",
            "/v1.44/services/create",
            image(json!({"TaskTemplate": {"ContainerSpec": {"Image": "busybox",
                "Secrets": [{"SecretName": "missing", "File": {"Name": "missing"}}]}}})),
            400,
            "secret not found: missing",
        ),
        case(
            "POST",
            "/v1.44/services/create",
            image(json!({"TaskTemplate": {"ContainerSpec": {"Image": "busybox"},
                "Networks": [{"Target": "nonet"}]}})),
            404,
            "network nonet not found",
        ),
        case(
            "POST",
            "/v1.44/services/create",
            image(json!({"Mode": {"Replicated": {"Replicas": -2}}})),
            400,
            "must be non-negative",
        ),
        case(
            "POST",
            "/v1.44/services/create",
            image(json!({"Name": "bad name!"})),
            400,
            "invalid name",
        ),
        case(
            "POST",
            "/v1.44/services/create",
            image(json!({"TaskTemplate": {"ContainerSpec": {"Image": "busybox"},
                "Resources": {"Reservations": {"MemoryBytes": 1024}}}})),
            400,
            "invalid memory value",
        ),
        case(
            "POST",
            "/v1.44/services/web/update?version=1&rollback=sideways",
            Some(good.clone()),
            400,
            "unrecognized rollback option sideways",
        ),
    ])
    .await;
    // Rolling back a service that was never updated.
    env.check(&case(
        "POST",
        &format!("{update}&rollback=previous"),
        Some(good),
        400,
        "does not have a previous spec",
    ))
    .await;
    let r = env
        .raw(
            "POST",
            "/v1.44/services/create",
            b"{\"Name\": \"x\", \"TaskTemplate\": [",
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("invalid JSON"));
    assert_eq!(env.snapshot(), before, "a failed request changed the store");
}

#[tokio::test]
async fn secrets_by_name_are_resolved_and_ports_conflict() {
    let mut env = Env::active().await;
    let sid = env.secret("db_pw", b"hunter2").await;
    let r = env
        .post(
            "/v1.44/services/create",
            json!({"Name": "db", "TaskTemplate": {"ContainerSpec": {"Image": "postgres",
                "Secrets": [{"SecretName": "db_pw", "File": {"Name": "pw", "UID": "0", "GID": "0", "Mode": 256}}]}},
                "EndpointSpec": {"Ports": [{"TargetPort": 5432, "PublishedPort": 5432}]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = env.get("/v1.44/services/db").await.json();
    let refs = &s["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"];
    assert_eq!(refs[0]["SecretID"], sid.as_str());
    assert_eq!(refs[0]["SecretName"], "db_pw");
    assert_eq!(refs[0]["File"]["Mode"], 256);
    env.check(&case(
        "POST",
        "/v1.44/services/create",
        Some(
            json!({"Name": "db2", "TaskTemplate": {"ContainerSpec": {"Image": "postgres"}},
            "EndpointSpec": {"Ports": [{"TargetPort": 1, "PublishedPort": 5432}]}}),
        ),
        400,
        "port '5432' is already in use by service 'db'",
    ))
    .await;
    // The secret is in use now.
    env.check(&case(
        "DELETE",
        "/v1.44/secrets/db_pw",
        None,
        400,
        "secret 'db_pw' is in use by the following service: db",
    ))
    .await;
}
