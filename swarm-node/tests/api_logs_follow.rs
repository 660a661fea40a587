//! `logs?follow=1`: a service's lines as they are written (with the time each was written),
//! from every task including those started later; `since`/`tail`; and a client that goes away
//! releases the runtime streams it held.

mod daemon_support;
mod stream_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use daemon_support::*;
use stream_support::Stream;
use swarm_core::objects::task::TaskState;
use swarm_core::{Id, Object, StoreAction, Task};
use swarm_node::backend::{
    Backend, BackendError, ClusterAccess, DaemonInfo, InitRequest, SwarmState,
};
use swarm_node::config::RuntimeKind;
use swarm_node::daemon::Daemon;
use swarm_node::testing::{TestBackend, TestServer};
use swarm_runtime::{LogLine, LogOptions, LogRecords};

/// `<RFC 3339 time> <details> <text>` split, with the time as ns since the epoch.
fn parse_payload(p: &str) -> (u64, String, String) {
    let (ts, rest) = p.split_once(' ').expect("a timestamp");
    let (details, text) = rest.split_once(' ').expect("details");
    (
        rfc3339_nanos(ts),
        details.to_string(),
        text.trim_end().to_string(),
    )
}

/// `2024-05-01T12:00:00.000000001Z` as ns since the epoch (the API writes exactly this shape).
fn rfc3339_nanos(s: &str) -> u64 {
    assert_eq!(s.len(), 30, "{s:?}");
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().expect("digits");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    u64::try_from(secs).expect("after 1970") * 1_000_000_000 + n(20..29) as u64
}

fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_logs_follow_every_task_with_write_times() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(dir.path(), RuntimeKind::Process))
        .await
        .expect("daemon starts");
    d.init(InitRequest::default()).await.unwrap();
    let a = access(&d);
    let started = wall_nanos();
    let svc = service(
        1,
        "ticker",
        1,
        &[
            "sh",
            "-c",
            "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done",
        ],
    );
    let id = create(&a, svc).await;
    assert!(converged(&a.store, id, 1).await, "the ticker runs");
    let server = TestServer::start(d.clone()).await.expect("serve");
    let base = format!("/v1.44/services/{id}/logs?stdout=1&stderr=1&timestamps=1&details=1");

    let mut s = Stream::get(server.path(), &format!("{base}&follow=1&tail=2")).await;
    assert_eq!(s.status, 200);
    assert_eq!(
        s.header("content-type"),
        Some("application/vnd.docker.multiplexed-stream")
    );
    let mut last: Option<(u64, u64)> = None;
    let mut first_task = String::new();
    // Lines keep coming after the answer started: a follow, not a snapshot.
    for _ in 0..10 {
        let (stream, payload) = s.next_frame().await.expect("a followed line");
        assert_eq!(stream, 1, "stdout");
        let (time, details, text) = parse_payload(&payload);
        assert!(
            details.contains(&format!("com.docker.swarm.service.id={id}")),
            "{details}"
        );
        first_task = details.clone();
        let n: u64 = text.strip_prefix("tick ").expect(&text).parse().expect("n");
        assert!(
            time >= started && time <= wall_nanos(),
            "write time {time} out of range"
        );
        if let Some((t0, n0)) = last {
            assert!(
                n > n0 && time >= t0,
                "lines in order: {n0}@{t0} then {n}@{time}"
            );
        }
        last = Some((time, n));
    }
    // A task started later joins the follow.
    scale(&a, id, 2).await;
    let mut other = false;
    for _ in 0..400 {
        let (_, payload) = s.next_frame().await.expect("a followed line");
        let (_, details, _) = parse_payload(&payload);
        if details != first_task {
            other = true;
            break;
        }
    }
    assert!(other, "the second task's lines reach the follow");
    drop(s);

    // since: nothing written before it.
    let (cut, _) = last.expect("lines");
    let mut s = Stream::get(
        server.path(),
        &format!(
            "{base}&since={}.{:09}",
            cut / 1_000_000_000,
            cut % 1_000_000_000
        ),
    )
    .await;
    assert_eq!(s.status, 200);
    let mut n = 0;
    while let Some((_, payload)) = s.next_frame().await {
        let (time, _, _) = parse_payload(&payload);
        assert!(time >= cut, "a line from before since: {payload}");
        n += 1;
    }
    assert!(n > 0, "lines written after since");
    // tail applies per task.
    let mut s = Stream::get(server.path(), &format!("{base}&tail=1")).await;
    let mut frames = 0;
    while s.next_frame().await.is_some() {
        frames += 1;
    }
    assert_eq!(frames, 2, "one line from each of the two tasks");
    drop(server);
    d.shutdown().await;
}

/// A backend whose follow streams never end by themselves and count how many are open.
struct Counting {
    inner: Arc<TestBackend>,
    open: Arc<AtomicUsize>,
}

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Backend for Counting {
    fn swarm_state(&self) -> SwarmState {
        self.inner.swarm_state()
    }
    fn cluster(&self) -> Result<ClusterAccess, BackendError> {
        self.inner.cluster()
    }
    async fn init(&self, req: InitRequest) -> Result<Id, BackendError> {
        self.inner.init(req).await
    }
    async fn unlock(&self, key: &str) -> Result<(), BackendError> {
        self.inner.unlock(key).await
    }
    async fn leave(&self, force: bool) -> Result<(), BackendError> {
        self.inner.leave(force).await
    }
    async fn task_logs(
        &self,
        task: &Task,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>, BackendError> {
        self.inner.task_logs(task, tail).await
    }
    async fn task_log_stream(
        &self,
        _task: &Task,
        opts: LogOptions,
    ) -> Result<LogRecords, BackendError> {
        assert!(opts.follow);
        self.open.fetch_add(1, Ordering::SeqCst);
        let guard = Guard(self.open.clone());
        Ok(Box::pin(futures_util::stream::unfold(
            guard,
            |g| async move {
                std::future::pending::<()>().await;
                Some((
                    Err(swarm_runtime::RuntimeError::Io {
                        op: "never".into(),
                        source: std::io::Error::other("never"),
                    }),
                    g,
                ))
            },
        )))
    }
    fn info(&self) -> DaemonInfo {
        self.inner.info()
    }
}

#[tokio::test]
async fn a_client_going_away_releases_the_follow() {
    let inner = TestBackend::active().await;
    let svc = swarm_core::testing::service(1, "web", 2);
    let mut actions = vec![StoreAction::Create(Object::Service(Arc::new(svc.clone())))];
    for slot in 1..=2u64 {
        let mut t = swarm_core::testing::task(10 + u128::from(slot), &svc, slot);
        t.node_id = inner.node_id();
        t.status.state = TaskState::Running;
        actions.push(StoreAction::Create(Object::Task(Arc::new(t))));
    }
    inner.commit(actions).expect("commit");
    let open = Arc::new(AtomicUsize::new(0));
    let backend = Arc::new(Counting {
        inner,
        open: open.clone(),
    });
    let server = TestServer::start(backend).await.expect("serve");
    let path = format!("/v1.44/services/{}/logs?stdout=1&follow=1", svc.id);
    let s = Stream::get(server.path(), &path).await;
    assert_eq!(s.status, 200);
    assert!(
        poll_until(|| async { open.load(Ordering::SeqCst) == 2 }).await,
        "both tasks followed"
    );
    drop(s);
    assert!(
        poll_until(|| async { open.load(Ordering::SeqCst) == 0 }).await,
        "a disconnect releases every runtime stream ({} still open)",
        open.load(Ordering::SeqCst)
    );
}
