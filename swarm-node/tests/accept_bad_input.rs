//! Acceptance: bad input through the real `docker` CLI and raw HTTP against the real
//! `swarm-node` binary (process runtime).
//!
//! Proves that malformed JSON, mistyped fields, unknown services, secrets and nodes, oversized
//! (>= 500 KiB) and empty secrets, oversized configs, replica counts over the cap (create, scale,
//! update, jobs), invalid constraints, a taken name, a stale or missing version on update, an
//! oversized body and an unknown path each get a clear
//! error with the right status (4xx, Docker's `{"message": ...}`), and that none of them changes
//! anything: the services, their specs and versions, their running tasks, the secrets, configs
//! and the node look exactly as before.

mod accept_support;

use accept_support::{Node, Runtime};
use serde_json::json;

/// Everything a refused request must leave as it was.
async fn snapshot(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for args in [
        &[
            "service",
            "ls",
            "--format",
            "{{.ID}} {{.Name}} {{.Mode}} {{.Replicas}}",
        ][..],
        &[
            "service",
            "inspect",
            "keep",
            "--format",
            "{{.Version.Index}} {{json .Spec}}",
        ],
        &["service", "ps", "keep", "-q", "--no-trunc"],
        &["secret", "ls", "--format", "{{.ID}} {{.Name}}"],
        &["config", "ls", "--format", "{{.ID}} {{.Name}}"],
        &[
            "node",
            "inspect",
            "self",
            "--format",
            "{{.Version.Index}} {{json .Spec}}",
        ],
        &["network", "ls", "--format", "{{.Name}}"],
    ] {
        out.push(node.ok(args).await);
    }
    out
}

/// A raw request: method, path, body, and the status and message piece it must get.
type HttpCase<'a> = (&'a str, String, Option<&'a [u8]>, u16, &'a str);

/// The ways `docker` commands fail, with a piece of what they must say.
const CLI_CASES: &[(&[&str], &str)] = &[
    (&["service", "inspect", "nope"], "no such service: nope"),
    (&["service", "ps", "nope"], "no such service: nope"),
    (&["service", "update", "--replicas", "3", "nope"], "service nope not found"),
    (&["service", "scale", "nope=3"], "service nope not found"),
    (&["service", "rollback", "nope"], "service nope not found"),
    (&["service", "rm", "nope"], "service nope not found"),
    (&["secret", "rm", "nope"], "secret nope not found"),
    (&["config", "inspect", "nope"], "config nope not found"),
    (&["node", "update", "--label-add", "a=b", "nope"], "node nope not found"),
    (
        &["service", "create", "--detach", "--name", "keep", "busybox", "sleep", "1"],
        "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service keep already exists",
    ),
    (
        &["service", "create", "--detach", "--name", "bad", "--constraint", "node.labels.zone~=a", "busybox", "sleep", "1"],
        "invalid placement constraint",
    ),
    (
        &["service", "create", "--detach", "--name", "bad", "--constraint", "node.role=manager", "busybox", "sleep", "1"],
        "invalid placement constraint",
    ),
    (
        &["service", "update", "--constraint-add", "node.labels.=a", "keep"],
        "invalid placement constraint",
    ),
    (&["service", "update", "--secret-add", "nope", "keep"], "secret not found: nope"),
    (
        &["service", "create", "--detach", "--name", "huge", "--replicas", "9223372036854775807", "busybox", "sleep", "1"],
        "invalid Replicas value 9223372036854775807: a service may ask for at most 100000 tasks",
    ),
    (&["service", "scale", "--detach", "keep=100001"], "invalid Replicas value 100001"),
    (
        &["service", "update", "--detach", "--replicas", "100001", "keep"],
        "invalid Replicas value 100001",
    ),
    (
        &["service", "create", "--detach", "--name", "job", "--mode", "replicated-job", "--max-concurrent", "200000", "busybox", "true"],
        "invalid MaxConcurrent value 200000",
    ),
    (&["swarm", "init"], "This node is already part of a swarm"),
    (&["secret", "rm", "pw"], "secret 'pw' is in use by the following service: keep"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let Some(node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    node.ok_stdin(&["secret", "create", "pw", "-"], b"pw").await;
    node.ok_stdin(&["config", "create", "cfg", "-"], b"cfg")
        .await;
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "keep",
        "--replicas",
        "2",
        "--secret",
        "pw",
        "busybox",
        "sleep",
        "1000",
    ])
    .await;
    node.wait_replicas("keep", "2/2").await;
    let before = snapshot(&node).await;

    for (args, says) in CLI_CASES {
        let err = node.fails(args).await;
        assert!(err.contains(says), "docker {args:?}: {err}");
    }

    // Secrets and configs at and over their size limits, and empty.
    let limit = 500 * 1024;
    let err = node
        .docker_stdin(&["secret", "create", "big", "-"], Some(&vec![b'a'; limit]))
        .await;
    assert_ne!(err.code, 0);
    assert!(
        err.stderr
            .contains("secret data must be larger than 0 and less than 512000 bytes (500 KiB)"),
        "{}",
        err.stderr
    );
    let err = node
        .docker_stdin(
            &["config", "create", "big", "-"],
            Some(&vec![b'a'; 2 * limit]),
        )
        .await;
    assert_ne!(err.code, 0);
    assert!(
        err.stderr.contains("less than 1024000 bytes (1000 KiB)"),
        "{}",
        err.stderr
    );
    let big = serde_json::to_vec(&json!({
        "Name": "big",
        "Data": base64_of(&vec![b'a'; limit]),
    }))
    .unwrap();
    let r = node.http("POST", "/v1.44/secrets/create", Some(&big)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("500 KiB"));
    let empty = serde_json::to_vec(&json!({"Name": "empty", "Data": ""})).unwrap();
    let r = node
        .http("POST", "/v1.44/secrets/create", Some(&empty))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // Just under the limit is fine (and removed again).
    node.ok_stdin(
        &["secret", "create", "just_fits", "-"],
        &vec![b'a'; limit - 1],
    )
    .await;
    node.ok(&["secret", "rm", "just_fits"]).await;

    // Raw HTTP: malformed and mistyped bodies on every write endpoint, unknown objects, versions.
    let version: u64 = node
        .inspect("keep", "{{.Version.Index}}")
        .await
        .parse()
        .unwrap();
    let spec = node.inspect("keep", "{{json .Spec}}").await;
    let mut bad_constraint: serde_json::Value = serde_json::from_str(&spec).unwrap();
    bad_constraint["TaskTemplate"]["Placement"] = json!({"Constraints": ["node.id"]});
    let bad_constraint = bad_constraint.to_string();
    let mut renamed: serde_json::Value = serde_json::from_str(&spec).unwrap();
    renamed["Name"] = json!("other");
    let renamed = renamed.to_string();
    let stale = format!("/v1.44/services/keep/update?version={}", version - 1);
    let current = format!("/v1.44/services/keep/update?version={version}");
    let cases: Vec<HttpCase<'_>> = vec![
        ("POST", "/v1.44/services/create".into(), Some(b"{\"Name\": \"x\", "), 400, "invalid JSON"),
        ("POST", "/v1.44/services/create".into(), Some(b"[1, 2]"), 400, "invalid JSON"),
        (
            "POST",
            "/v1.44/services/create".into(),
            Some(br#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"busybox"}},"Mode":{"Replicated":{"Replicas":"two"}}}"#),
            400,
            "invalid JSON",
        ),
        ("POST", current.clone(), Some(b"{not json"), 400, "invalid JSON"),
        ("POST", "/v1.44/secrets/create".into(), Some(b"{\"Name\": 1}"), 400, "invalid JSON"),
        ("POST", "/v1.44/configs/create".into(), Some(b"nope"), 400, "invalid JSON"),
        ("POST", "/v1.44/nodes/self/update?version=1".into(), Some(b"{"), 400, "invalid JSON"),
        ("POST", "/v1.44/swarm/update?version=1".into(), Some(b"{"), 400, "invalid JSON"),
        ("GET", "/v1.44/services/nope".into(), None, 404, "service nope not found"),
        ("DELETE", "/v1.44/services/nope".into(), None, 404, "service nope not found"),
        ("POST", "/v1.44/services/nope/update?version=1".into(), Some(spec.as_bytes()), 404, "service nope not found"),
        ("GET", "/v1.44/tasks/nope".into(), None, 404, "not found"),
        ("GET", "/v1.44/secrets/nope".into(), None, 404, "secret nope not found"),
        ("POST", current.clone(), Some(bad_constraint.as_bytes()), 400, "invalid placement constraint"),
        ("POST", current.clone(), Some(renamed.as_bytes()), 501, "renaming services is not supported"),
        ("POST", stale, Some(spec.as_bytes()), 409, "update out of sequence"),
        ("POST", "/v1.44/services/keep/update".into(), Some(spec.as_bytes()), 400, "invalid service version"),
        ("POST", "/v1.44/services/keep/update?version=x".into(), Some(spec.as_bytes()), 400, "invalid service version"),
        ("GET", "/v1.44/no/such/path".into(), None, 404, "page not found"),
    ];
    for (method, path, body, status, says) in &cases {
        let r = node.http(method, path, *body).await;
        let message = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            (r.status, r.header("content-type")),
            (*status, Some("application/json")),
            "{method} {path}: {}",
            r.text()
        );
        assert!(message.contains(says), "{method} {path}: {message}");
    }

    // A body over the API's 4 MiB limit is answered 413 without being read to the end.
    let answer = post_oversized(&node, "/v1.44/services/create", 5 * 1024 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#"{"message":"request body is larger than"#),
        "{answer}"
    );

    assert_eq!(
        snapshot(&node).await,
        before,
        "a refused request changed something"
    );
    node.wait_replicas("keep", "2/2").await;
}

/// Posts `len` bytes to `path` on a fresh connection, tolerating the server closing it before
/// the body is sent; returns the raw answer.
async fn post_oversized(node: &Node, path: &str, len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::UnixStream::connect(node.socket())
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < len && s.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    tokio::time::timeout(accept_support::TIMEOUT, exchange)
        .await
        .expect("the oversized request is answered")
}

/// Standard base64 (the API's encoding of secret data).
fn base64_of(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
