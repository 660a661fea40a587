//! `GET /events`: Docker's swarm events from the store's watch, streamed as newline-delimited
//! JSON, with filters and `since`/`until`.

mod common;
#[path = "skip/mod.rs"]
mod skip;
mod stream_support;

use common::{case, Env};
use serde_json::{json, Value};
use stream_support::Stream;

async fn next_event(s: &mut Stream) -> Value {
    let line = s.next_line().await.expect("an event line");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

fn unix_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn enc(filters: &Value) -> String {
    form_urlencoded::byte_serialize(filters.to_string().as_bytes()).collect()
}

#[tokio::test]
async fn changes_stream_as_docker_events() {
    let mut env = Env::active().await;
    let mut s = Stream::get(env.server.path(), "/v1.44/events").await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("application/json"));

    let secret = env.secret("pw", b"x").await;
    let e = next_event(&mut s).await;
    assert_eq!(e["Type"], "secret");
    assert_eq!(e["Action"], "create");
    assert_eq!(e["Actor"]["ID"], secret.as_str());
    assert_eq!(e["Actor"]["Attributes"]["name"], "pw");
    assert_eq!(e["scope"], "swarm");
    let nanos = e["timeNano"].as_u64().expect("timeNano");
    assert_eq!(e["time"].as_u64(), Some(nanos / 1_000_000_000));

    let svc = env.service("web", 1).await;
    let e = next_event(&mut s).await;
    assert_eq!(
        (&e["Type"], &e["Action"]),
        (&json!("service"), &json!("create"))
    );
    assert_eq!(e["Actor"]["ID"], svc.as_str());
    assert_eq!(e["Actor"]["Attributes"]["name"], "web");

    let path = format!("/v1.44/services/{svc}");
    let v = env.version(&path).await;
    let r = env
        .post(
            &format!("{path}/update?version={v}"),
            json!({
                "Name": "web",
                "TaskTemplate": {"ContainerSpec": {"Image": "busybox:1.36", "Args": ["sleep", "60"]}},
                "Mode": {"Replicated": {"Replicas": 3}}
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = next_event(&mut s).await;
    assert_eq!(
        (&e["Type"], &e["Action"]),
        (&json!("service"), &json!("update"))
    );
    let a = &e["Actor"]["Attributes"];
    assert_eq!(a["replicas.old"], "1");
    assert_eq!(a["replicas.new"], "3");
    assert_eq!(a["image.old"], "busybox");
    assert_eq!(a["image.new"], "busybox:1.36");

    let node = env.backend.node_id().expect("node id").to_string();
    let npath = format!("/v1.44/nodes/{node}");
    let v = env.version(&npath).await;
    let r = env
        .post(
            &format!("{npath}/update?version={v}"),
            json!({"Availability": "drain", "Role": "manager"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = next_event(&mut s).await;
    assert_eq!(
        (&e["Type"], &e["Action"]),
        (&json!("node"), &json!("update"))
    );
    assert_eq!(e["Actor"]["ID"], node.as_str());
    assert_eq!(e["Actor"]["Attributes"]["availability.old"], "active");
    assert_eq!(e["Actor"]["Attributes"]["availability.new"], "drain");

    assert_eq!(env.call("DELETE", &path, None).await.status, 200);
    let e = next_event(&mut s).await;
    assert_eq!(
        (&e["Type"], &e["Action"]),
        (&json!("service"), &json!("remove"))
    );
    assert_eq!(e["Actor"]["ID"], svc.as_str());
    let net = env
        .post(
            "/v1.44/networks/create",
            json!({"Name": "backend", "Driver": "overlay"}),
        )
        .await;
    assert_eq!(net.status, 201, "{}", net.text());
    let e = next_event(&mut s).await;
    assert_eq!(
        (&e["Type"], &e["Action"]),
        (&json!("network"), &json!("create"))
    );
    assert_eq!(e["Actor"]["Attributes"]["name"], "backend");
}

#[tokio::test]
async fn filters_select_live_events() {
    let mut env = Env::active().await;
    let f = enc(&json!({"type": ["service"], "event": ["create"], "service": ["ap"]}));
    let mut s = Stream::get(env.server.path(), &format!("/v1.44/events?filters={f}")).await;
    assert_eq!(s.status, 200);
    env.secret("db_password", b"x").await;
    env.service("web", 1).await;
    let api = env.service("api", 1).await;
    let e = next_event(&mut s).await;
    assert_eq!(
        e["Actor"]["ID"],
        api.as_str(),
        "only the service named ap*: {e}"
    );
    assert_eq!(e["Action"], "create");
}

#[tokio::test]
async fn since_and_until_replay_past_events_and_end() {
    let mut env = Env::active().await;
    let secret = env.secret("one", b"1").await;
    env.service("web", 1).await;
    let sid = env.secret("two", b"2").await;
    assert_eq!(
        env.call("DELETE", &format!("/v1.44/secrets/{sid}"), None)
            .await
            .status,
        200
    );
    let until = unix_now();
    let f = enc(&json!({"type": ["secret"]}));
    let mut s = Stream::get(
        env.server.path(),
        &format!("/v1.44/events?since=0&until={until}&filters={f}"),
    )
    .await;
    assert_eq!(s.status, 200);
    let lines = s.rest_lines().await;
    assert!(s.ended, "an until in the past ends the answer");
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["Action"].as_str().unwrap_or("").to_string(),
                e["Actor"]["Attributes"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("create".to_string(), "one".to_string()),
            ("create".to_string(), "two".to_string()),
            ("remove".to_string(), "two".to_string())
        ]
    );
    assert_eq!(events[0]["Actor"]["ID"], secret.as_str());

    // Only `until` (past): the kept events up to it, then the end.
    let mut s = Stream::get(env.server.path(), &format!("/v1.44/events?until={until}")).await;
    assert_eq!(s.status, 200);
    let all = s.rest_lines().await;
    assert!(
        all.len() >= 4,
        "until alone replays the kept events up to it (dockerd does): {all:?}"
    );
}

#[tokio::test]
async fn bad_queries_are_refused() {
    let mut env = Env::active().await;
    let bogus = enc(&json!({"bogus": ["x"]}));
    env.check_all(&[
        case(
            "GET",
            &format!("/v1.44/events?filters={bogus}"),
            None,
            400,
            "invalid filter 'bogus'",
        ),
        case("GET", "/v1.44/events?since=yesterday", None, 400, "since"),
        case("GET", "/v1.44/events?until=1.x", None, 400, "until"),
        case(
            "GET",
            "/v1.44/events?since=20&until=10",
            None,
            400,
            "cannot be after `until`",
        ),
    ])
    .await;
}

/// A `docker` CLI command against the test server, with a private config.
fn docker_cmd(
    env: &Env,
    config: &std::path::Path,
    args: &[&str],
) -> Option<tokio::process::Command> {
    let path = std::env::var_os("PATH")?;
    let bin = std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", env.server.path().display()),
        )
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .env("DOCKER_CLI_HINTS", "false")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    Some(cmd)
}

#[tokio::test]
async fn the_docker_cli_shows_the_events() {
    use tokio::io::AsyncBufReadExt;

    let mut env = Env::active().await;
    let config = tempfile::tempdir().unwrap();
    let format = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Scope}}";
    let Some(mut live) = docker_cmd(
        &env,
        config.path(),
        &["events", "--filter", "type=service", "--format", format],
    ) else {
        skip::skip("no docker CLI on PATH");
        return;
    };
    let mut child = live.spawn().expect("docker events");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // The CLI connects asynchronously: create services until its stream shows one.
    let mut seen = None;
    for i in 0..50 {
        env.service(&format!("svc{i}"), 1).await;
        let next =
            tokio::time::timeout(std::time::Duration::from_millis(200), lines.next_line()).await;
        if let Ok(Ok(Some(l))) = next {
            seen = Some(l);
            break;
        }
    }
    let seen = seen.expect("docker events printed a service event");
    assert!(seen.starts_with("service create svc"), "{seen}");
    assert!(seen.ends_with(" swarm"), "{seen}");
    drop(lines);
    let _ = child.kill().await;

    env.secret("s1", b"x").await;
    let until = unix_now();
    let out = docker_cmd(
        &env,
        config.path(),
        &[
            "events",
            "--since",
            "0",
            "--until",
            &until,
            "--filter",
            "type=secret",
            "--format",
            format,
        ],
    )
    .expect("docker")
    .output()
    .await
    .expect("docker events --since --until");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "secret create s1 swarm"
    );
}
