//! The API's self-protection: the replica cap refused with a clear 400 at create, update and
//! scale (also for replicated jobs), and the connection cap and header-read timeout, which close
//! silent and half-open connections so that a normal request still gets an answer.
//!
//! Every loop is bounded and every wait is on a condition with a timeout; the server runs on a
//! Unix socket in the temp directory.

mod common;

use std::time::Duration;

use common::{case, Env};
use serde_json::{json, Value};
use swarm_core::validate::ServiceLimits;
use swarm_node::api::ApiOptions;
use swarm_node::testing::{HttpClient, TestBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long a test waits for a connection the server should close.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

fn spec(mode: Value) -> Value {
    json!({
        "Name": "web",
        "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}},
        "Mode": mode
    })
}

/// The default cap (100,000) refuses the count from the issue, and jobs' counts, with the
/// message naming the field, the value and the limit; nothing is created.
#[tokio::test]
async fn default_replica_cap_refuses_huge_counts_with_400() {
    let mut env = Env::active().await;
    let before = env.snapshot();
    let cases = [
        case(
            "POST",
            "/v1.44/services/create",
            Some(spec(json!({"Replicated": {"Replicas": 9_223_372_036_854_775_807i64}}))),
            400,
            "invalid Replicas value 9223372036854775807: a service may ask for at most 100000 tasks (the manager's --max-replicas)",
        ),
        case(
            "POST",
            "/v1.44/services/create",
            Some(spec(json!({"Replicated": {"Replicas": 100_001}}))),
            400,
            "invalid Replicas value 100001",
        ),
        case(
            "POST",
            "/v1.44/services/create",
            Some(spec(json!({"ReplicatedJob": {"MaxConcurrent": 200_000}}))),
            400,
            "invalid MaxConcurrent value 200000",
        ),
        case(
            "POST",
            "/v1.44/services/create",
            Some(spec(json!({"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1_000_000}}))),
            400,
            "invalid TotalCompletions value 1000000",
        ),
    ];
    for c in &cases {
        env.check(c).await;
    }
    assert_eq!(env.snapshot(), before, "a refused create changed the store");
}

/// An operator's own cap applies to create, update and scale (`docker service scale` is an
/// update of the replica count); a count at the cap is accepted.
#[tokio::test]
async fn configured_replica_cap_applies_to_create_update_and_scale() {
    let options = ApiOptions {
        service_limits: ServiceLimits { max_replicas: 10 },
        ..ApiOptions::default()
    };
    let mut env = Env::with_options(TestBackend::active().await, options).await;
    env.check(&case(
        "POST",
        "/v1.44/services/create",
        Some(spec(json!({"Replicated": {"Replicas": 11}}))),
        400,
        "invalid Replicas value 11: a service may ask for at most 10 tasks",
    ))
    .await;
    let id = env.service("web", 10).await;
    let path = format!("/v1.44/services/{id}");
    let before = env.snapshot();
    let v = env.version(&path).await;
    let mut scaled = env.get(&path).await.json()["Spec"].clone();
    scaled["Mode"]["Replicated"]["Replicas"] = json!(11);
    env.check(&case(
        "POST",
        &format!("{path}/update?version={v}"),
        Some(scaled.clone()),
        400,
        "invalid Replicas value 11",
    ))
    .await;
    assert_eq!(env.snapshot(), before, "a refused scale changed the store");
    scaled["Mode"]["Replicated"]["Replicas"] = json!(3);
    env.check(&case(
        "POST",
        &format!("{path}/update?version={v}"),
        Some(scaled),
        200,
        "",
    ))
    .await;
}

/// A rollback brings back the previous spec, which was accepted under the cap of its day: a
/// manager whose cap has since been lowered (same store, a daemon restarted with a smaller
/// `--max-replicas`) refuses it like any other request over the cap, and changes nothing.
#[tokio::test]
async fn rollback_above_a_lowered_cap_is_refused() {
    let backend = TestBackend::active().await;
    let mut wide = Env::with_options(
        backend.clone(),
        ApiOptions {
            service_limits: ServiceLimits { max_replicas: 10 },
            ..ApiOptions::default()
        },
    )
    .await;
    let id = wide.service("web", 10).await;
    let path = format!("/v1.44/services/{id}");
    let v = wide.version(&path).await;
    let mut scaled = wide.get(&path).await.json()["Spec"].clone();
    scaled["Mode"]["Replicated"]["Replicas"] = json!(3);
    wide.check(&case(
        "POST",
        &format!("{path}/update?version={v}"),
        Some(scaled.clone()),
        200,
        "",
    ))
    .await;
    let mut narrow = Env::with_options(
        backend,
        ApiOptions {
            service_limits: ServiceLimits { max_replicas: 5 },
            ..ApiOptions::default()
        },
    )
    .await;
    let before = narrow.snapshot();
    let v = narrow.version(&path).await;
    narrow
        .check(&case(
            "POST",
            &format!("{path}/update?version={v}&rollback=previous"),
            Some(scaled),
            400,
            "invalid Replicas value 10: a service may ask for at most 5 tasks",
        ))
        .await;
    assert_eq!(
        narrow.snapshot(),
        before,
        "a refused rollback changed the store"
    );
}

/// Reads until the server closes the connection (EOF or reset); panics after [`CLOSE_WAIT`].
async fn wait_closed(stream: &mut UnixStream, what: &str) {
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(CLOSE_WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {CLOSE_WAIT:?}");
}

/// Whether the server still holds `stream` open, without waiting: a non-blocking read of the
/// socket itself (not tokio's cached readiness) would block, where a closed one gives EOF.
fn still_open(stream: UnixStream) -> bool {
    use std::io::Read;
    let mut s = stream.into_std().expect("std stream");
    s.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0u8; 1];
    matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Three times the cap in silent and half-open connections: a fresh client's request is answered
/// at once, the connections idle longest are closed to make room, the newest stay open.
#[tokio::test]
async fn idle_connections_beyond_the_cap_are_evicted_and_a_request_still_succeeds() {
    const CAP: usize = 8;
    let options = ApiOptions {
        max_connections: CAP,
        // Long enough that eviction, not the timeout, closes them during the test.
        header_read_timeout: Duration::from_secs(600),
        ..ApiOptions::default()
    };
    let env = Env::with_options(TestBackend::active().await, options).await;
    // The Env's own client is one open connection, idle since its start: the oldest of all.
    let mut idle = Vec::new();
    for i in 0..3 * CAP {
        let mut s = UnixStream::connect(env.server.path())
            .await
            .expect("connect");
        if i % 2 == 1 {
            // Half-open: a request head that never ends.
            s.write_all(b"GET /_ping HTTP/1.1\r\nHost: doc")
                .await
                .expect("partial head");
        }
        idle.push(s);
    }
    let mut fresh = HttpClient::connect(env.server.path())
        .await
        .expect("connect past the cap");
    let r = fresh.get("/_ping").await.expect("a request past the cap");
    assert_eq!(r.status, 200, "{}", r.text());
    // 1 + 3*CAP idle connections and the fresh one: all but the newest CAP were evicted, oldest
    // first; the fresh client is among the kept ones (it was busy or newest when others came).
    let evicted = 1 + 3 * CAP + 1 - CAP;
    for (i, s) in idle.iter_mut().enumerate().take(evicted - 1) {
        wait_closed(s, &format!("idle connection {i}")).await;
    }
    for (i, s) in idle.into_iter().enumerate().skip(evicted - 1) {
        assert!(
            still_open(s),
            "idle connection {i} was closed but is among the newest"
        );
    }
    let r = fresh
        .get("/_ping")
        .await
        .expect("the fresh client still works");
    assert_eq!(r.status, 200);
}

/// Connections that send no complete request head within the header-read timeout are closed:
/// silent, half-open, trickling a byte at a time, and idle keep-alive after a request. A new
/// request is answered afterwards.
#[tokio::test]
async fn connections_without_a_request_head_are_closed_after_the_timeout() {
    let options = ApiOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ApiOptions::default()
    };
    let env = Env::with_options(TestBackend::active().await, options).await;
    let path = env.server.path().to_path_buf();
    let mut silent = UnixStream::connect(&path).await.expect("connect");
    let mut half = UnixStream::connect(&path).await.expect("connect");
    half.write_all(b"POST /services/create HTTP/1.1\r\n")
        .await
        .expect("partial head");
    let mut kept = UnixStream::connect(&path).await.expect("connect");
    kept.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        .await
        .expect("request");
    // A trickler: one byte of a head that never ends, every 50 ms, for at most 400 bytes (20 s),
    // stopping as soon as the server closes it.
    let trickle = {
        let path = path.clone();
        tokio::spawn(async move {
            let mut s = UnixStream::connect(&path).await.expect("connect");
            let head = format!("GET /_ping HTTP/1.1\r\nX-Slow: {}", "a".repeat(400));
            for b in head.as_bytes().iter().take(400) {
                if s.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
    };
    wait_closed(&mut silent, "silent connection").await;
    wait_closed(&mut half, "half-open connection").await;
    // The kept-alive one gets its answer, then is closed once idle.
    wait_closed(&mut kept, "idle keep-alive connection").await;
    assert!(
        trickle.await.expect("trickler"),
        "a connection trickling its head was never closed"
    );
    let mut fresh = HttpClient::connect(&path).await.expect("connect");
    let r = fresh
        .get("/_ping")
        .await
        .expect("request after the timeouts");
    assert_eq!(r.status, 200);
}
