//! The opt-in metrics page: served on its own TCP address, in Prometheus' text format, with the
//! raft, scheduler, dispatcher, API and agent metrics a running swarm produces; `promtool check
//! metrics` accepts it.

mod daemon_support;
#[path = "skip/mod.rs"]
mod skip;

use std::sync::Arc;

use daemon_support::*;
use swarm_core::TaskState;
use swarm_node::backend::{Backend, InitRequest};
use swarm_node::testing::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` over plain HTTP/1.1 (connection closed by the client's header).
async fn scrape(addr: std::net::SocketAddr) -> (String, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    (head.to_string(), body.to_string())
}

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_swarm_exposes_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_sim(dir.path()).await;
    d.init(InitRequest::default()).await.unwrap();
    let a = access(&d);
    let id = create(&a, service(1, "web", 3, &["serve"])).await;
    assert!(converged(&a.store, id, 3).await, "3 tasks run");
    // A service no node can take: its task waits, with the scheduler's reason.
    let mut stuck = service(2, "stuck", 1, &["serve"]);
    stuck.spec.task.placement.constraints = vec!["node.labels.nope==1".into()];
    let stuck_id = create(&a, stuck).await;
    assert!(
        wait_store(&a.store, |s| tasks(s, &stuck_id).iter().any(|t| t
            .status
            .state
            == TaskState::Pending
            && !t.status.err.is_empty()))
        .await,
        "the constrained task is pending with a reason"
    );
    // API traffic.
    let api = TestServer::start(d.clone()).await.expect("serve the API");
    let mut client = api.client().await.expect("connect");
    assert_eq!(
        client.get("/v1.44/services").await.expect("get").status,
        200
    );
    assert_eq!(
        client
            .get("/v1.44/services/nope")
            .await
            .expect("get")
            .status,
        404
    );

    let listener = swarm_node::metrics::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let backend: Arc<dyn Backend> = d.clone();
    let server = tokio::spawn(swarm_node::metrics::serve(listener, backend, async move {
        let _ = stopped.await;
    }));
    let (head, page) = scrape(addr).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for name in [
        "swarm_raft_commit_seconds_bucket{result=\"ok\",le=",
        "swarm_raft_commit_seconds_count{result=\"ok\"}",
        "swarm_raft_leader_changes_total",
        "swarm_raft_log_entries",
        "swarm_raft_term",
        "swarm_raft_is_leader 1",
        "swarm_scheduler_placements_total",
        "swarm_scheduler_pending_tasks{reason=\"no suitable node",
        "swarm_dispatcher_sessions 1",
        "swarm_dispatcher_sessions_opened_total",
        "swarm_dispatcher_status_reports_total",
        "swarm_dispatcher_assignment_seconds_bucket",
        "swarm_api_requests_total{method=\"GET\",route=\"/services\",status=\"200\"} 1",
        "swarm_api_requests_total{method=\"GET\",route=\"/services/{id}\",status=\"404\"} 1",
        "swarm_api_request_seconds_bucket{method=\"GET\",route=\"/services\",le=",
        "swarm_agent_tasks{state=\"running\"} 3",
    ] {
        assert!(page.contains(name), "{name} missing from:\n{page}");
    }
    assert!(sample(&page, "swarm_scheduler_placements_total").unwrap_or(0.0) >= 3.0);
    assert!(sample(&page, "swarm_raft_leader_changes_total").unwrap_or(0.0) >= 1.0);
    assert!(sample(&page, "swarm_raft_log_entries").unwrap_or(0.0) >= 1.0);
    assert!(
        sample(&page, "swarm_raft_commit_seconds_count{result=\"ok\"}").unwrap_or(0.0) >= 2.0,
        "every committed change is timed"
    );

    promtool_accepts(&page);
    let _ = stop.send(());
    server.await.expect("join").expect("served");
    drop(client);
    drop(api);
    d.shutdown().await;
}

/// `promtool check metrics` reads the page on stdin; exit 0 means no problem found.
fn promtool_accepts(page: &str) {
    use std::io::Write;
    let promtool = std::env::var("SWARM_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            skip::skip(&format!(
                "promtool ({promtool}) cannot run: {e}; it comes with Debian's prometheus package (.ci/run extracts it)"
            ));
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write the page");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics refused the page: {}{}\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
