//! `/tasks` with every filter the CLI sends, task inspect, and service/task logs in Docker's
//! multiplexed framing with the details the CLI parses.

mod common;

use std::sync::Arc;

use common::{case, Env};
use swarm_core::{Id, Service, StoreAction, Task, TaskState, TaskStatus, Version};
use swarm_runtime::{LogLine, LogStream};

fn task(
    n: u128,
    svc: &Service,
    slot: u64,
    node: Option<Id>,
    state: TaskState,
    desired: TaskState,
) -> Task {
    Task {
        id: Id::from_u128(n),
        meta: Default::default(),
        service_id: svc.id,
        service_annotations: svc.spec.annotations.clone(),
        slot,
        node_id: node,
        spec: Arc::new(svc.spec.task.clone()),
        spec_version: svc.spec_version,
        status: TaskStatus {
            state,
            message: state.as_str().into(),
            ..Default::default()
        },
        desired_state: desired,
        job_iteration: None,
        assigned_secrets: vec![],
        assigned_configs: vec![],
        networks: Vec::new(),
        ports: Vec::new(),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A service `web` with tasks 1 (slot 1, running), 2 (slot 2, running, stale spec version) and 3
/// (slot 1, shutdown); a service `api` with task 4 (pending, unassigned).
async fn setup() -> (Env, Service) {
    let mut e = Env::active().await;
    let web = e.service("web", 2).await;
    e.service("api", 1).await;
    let get = |name: &str| {
        e.backend
            .store()
            .view(|s| s.get_by_name::<Service>(name).cloned())
            .expect("service")
    };
    let (web_svc, api_svc) = (get("web"), get("api"));
    assert_eq!(web_svc.id.as_str(), web);
    let me = e.backend.node_id();
    let mut stale = task(2, &web_svc, 2, me, TaskState::Running, TaskState::Running);
    stale.spec_version = Version(99);
    let mut old_spec = (*stale.spec).clone();
    old_spec.container.image = "busybox:old".into();
    stale.spec = Arc::new(old_spec);
    e.backend
        .commit(vec![
            StoreAction::Create(
                task(1, &web_svc, 1, me, TaskState::Running, TaskState::Running).into(),
            ),
            StoreAction::Create(stale.into()),
            StoreAction::Create(
                task(3, &web_svc, 1, me, TaskState::Shutdown, TaskState::Shutdown).into(),
            ),
            StoreAction::Create(
                task(4, &api_svc, 1, None, TaskState::Pending, TaskState::Running).into(),
            ),
        ])
        .expect("plant");
    (e, (*web_svc).clone())
}

fn ids(v: &serde_json::Value) -> Vec<u128> {
    let mut out: Vec<u128> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["ID"].as_str())
        .filter_map(|id| u128::from_str_radix(id, 36).ok())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn task_filters() {
    let (mut env, web) = setup().await;
    let me = env.backend.node_id().expect("id").to_string();
    let cases: Vec<(String, Vec<u128>)> = vec![
        (String::new(), vec![1, 2, 3, 4]),
        (r#"{"service":["web"]}"#.into(), vec![1, 2, 3]),
        (
            format!(r#"{{"service":{{"{}":true}}}}"#, web.id),
            vec![1, 2, 3],
        ),
        (
            format!(r#"{{"service":["{}"]}}"#, &web.id.as_str()[..6]),
            vec![1, 2, 3],
        ),
        (
            r#"{"service":["web","api"],"desired-state":["running"]}"#.into(),
            vec![1, 2, 4],
        ),
        (r#"{"desired-state":["shutdown"]}"#.into(), vec![3]),
        (format!(r#"{{"node":["{me}"]}}"#), vec![1, 2, 3]),
        (r#"{"node":["test-node"]}"#.into(), vec![1, 2, 3]),
        (
            r#"{"service":["web"],"_up-to-date":["true"]}"#.into(),
            vec![1, 3],
        ),
        (r#"{"name":["web.1"]}"#.into(), vec![1, 3]),
        (r#"{"name":["api"]}"#.into(), vec![4]),
        (format!(r#"{{"id":["{}"]}}"#, Id::from_u128(4)), vec![4]),
        (r#"{"runtime":["container"]}"#.into(), vec![1, 2, 3, 4]),
    ];
    for (f, want) in cases {
        let path = if f.is_empty() {
            "/v1.44/tasks".to_string()
        } else {
            format!("/v1.44/tasks?filters={}", urlencode(&f))
        };
        let r = env.get(&path).await;
        assert_eq!(r.status, 200, "{f}: {}", r.text());
        assert_eq!(ids(&r.json()), want, "{f}");
    }
    env.check_all(&[
        case(
            "GET",
            &format!(
                "/v1.44/tasks?filters={}",
                urlencode(r#"{"service":["nope"]}"#)
            ),
            None,
            404,
            "service nope not found",
        ),
        case(
            "GET",
            &format!(
                "/v1.44/tasks?filters={}",
                urlencode(r#"{"desired-state":["dancing"]}"#)
            ),
            None,
            400,
            "Invalid desired-state filter: 'dancing'",
        ),
        case(
            "GET",
            &format!("/v1.44/tasks?filters={}", urlencode(r#"{"colour":["x"]}"#)),
            None,
            400,
            "invalid filter 'colour'",
        ),
        case(
            "GET",
            "/v1.44/tasks/nosuchtask",
            None,
            404,
            "task nosuchtask not found",
        ),
    ])
    .await;
}

#[tokio::test]
async fn task_inspect_by_id_and_name() {
    let (mut env, web) = setup().await;
    let id = Id::from_u128(1);
    let t = env.get(&format!("/v1.44/tasks/{id}")).await.json();
    assert_eq!(t["ID"], id.as_str());
    assert_eq!(t["ServiceID"], web.id.as_str());
    assert_eq!(t["Slot"], 1);
    assert_eq!(t["Status"]["State"], "running");
    assert_eq!(t["DesiredState"], "running");
    assert_eq!(t["Spec"]["ContainerSpec"]["Image"], "busybox");
    assert!(t.get("Name").is_none(), "the CLI derives names itself");
    let by_name = env.get(&format!("/v1.44/tasks/web.1.{id}")).await.json();
    assert_eq!(by_name["ID"], id.as_str());
}

/// Splits Docker's multiplexed stream into (stream, payload) frames.
fn frames(mut body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while body.len() >= 8 {
        let len = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) as usize;
        assert_eq!(&body[1..4], &[0, 0, 0]);
        let payload = &body[8..8 + len];
        out.push((body[0], String::from_utf8_lossy(payload).into_owned()));
        body = &body[8 + len..];
    }
    assert!(body.is_empty(), "trailing bytes");
    out
}

#[tokio::test]
async fn logs_are_multiplexed_with_details() {
    let (mut env, web) = setup().await;
    let line = |stream, s: &str| LogLine {
        stream,
        line: s.into(),
    };
    env.backend.set_logs(
        Id::from_u128(1),
        vec![
            line(LogStream::Stdout, "hello"),
            line(LogStream::Stderr, "oops"),
            line(LogStream::Stdout, "bye"),
        ],
    );
    let r = env
        .get("/v1.44/services/web/logs?stdout=1&stderr=1&details=true&tail=all")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.docker.multiplexed-stream")
    );
    let f = frames(&r.body);
    let me = env.backend.node_id().expect("id");
    let details = format!(
        "com.docker.swarm.node.id={me},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
        web.id,
        Id::from_u128(1)
    );
    assert_eq!(
        f,
        vec![
            (1, format!("{details} hello\n")),
            (2, format!("{details} oops\n")),
            (1, format!("{details} bye\n")),
        ]
    );
    let r = env
        .get(&format!(
            "/v1.44/tasks/{}/logs?stdout=1&tail=1",
            Id::from_u128(1)
        ))
        .await;
    assert_eq!(frames(&r.body), vec![(1, "bye\n".to_string())]);
    let r = env
        .get("/v1.44/services/web/logs?stdout=1&timestamps=1")
        .await;
    let f = frames(&r.body);
    assert_eq!(f.len(), 2);
    let (ts, rest) = f[0].1.split_once(' ').expect("timestamp first");
    assert_eq!(rest, "hello\n");
    assert!(
        ts.len() == 30 && &ts[10..11] == "T" && ts.ends_with('Z'),
        "{ts}"
    );
    env.check_all(&[
        case(
            "GET",
            "/v1.44/services/web/logs",
            None,
            400,
            "you must choose at least one stream",
        ),
        case(
            "GET",
            "/v1.44/services/web/logs?stdout=1&tail=-3",
            None,
            400,
            "negative tail values not supported",
        ),
        case(
            "GET",
            "/v1.44/services/web/logs?stdout=1&tail=x",
            None,
            400,
            "tail value must be a positive integer",
        ),
        case(
            "GET",
            "/v1.44/services/nope/logs?stdout=1",
            None,
            404,
            "service nope not found",
        ),
    ])
    .await;
}
