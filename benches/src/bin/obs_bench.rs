//! Observability figures (issue 18): events delivered per second to 10 `/events` watchers, log
//! follow latency (line written to line shown), and the metrics scrape time with 10,000 tasks.
//!
//! ```text
//! cargo run --release -p swarm-benches --bin obs_bench -- [events|logs|metrics|all] [--rounds N]
//! ```
//!
//! - `events`: the API (in process, over its Unix socket) on a `TestBackend`; 10 clients stream
//!   `GET /events`; 20,000 secrets are committed (in batches of 100 actions, then one per
//!   commit for 5,000 more) and the clock runs from the first commit until every watcher has
//!   read every event; the producer never runs more than 2,000 events ahead of the slowest
//!   watcher (a stream more than the hub's 4,096 live events behind is closed), so the figure is
//!   the sustained rate. Figure: events per second per watcher, and delivered in total.
//! - `logs`: a daemon on the process runtime runs one task printing `date +%s%N` every 10 ms;
//!   a client follows `GET /services/{id}/logs?follow=1`; each line's latency is the client's
//!   receive time minus the time the line holds (read by `date` just before it wrote the line).
//!   2,000 lines per round; p50 / p99 / max.
//! - `metrics`: a `TestBackend` store with one service and 10,000 tasks running on the node; the
//!   metrics page is scraped over TCP 50 times per round (it reads the store at every scrape);
//!   p50 / p99 and the page size.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::objects::task::TaskState;
use swarm_core::{Object, StoreAction};
use swarm_node::backend::{Backend, InitRequest};
use swarm_node::testing::{TestBackend, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    pct(&v, 0.5)
}

/// Opens a streamed GET and returns the connection after the request was sent.
async fn open_stream(socket: &std::path::Path, path: &str) -> UnixStream {
    let mut c = UnixStream::connect(socket).await.expect("connect");
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n").as_bytes())
        .await
        .expect("send");
    c
}

/// Reads from `c` until `want` occurrences of `needle` were seen, publishing the count.
async fn count_until(
    mut c: UnixStream,
    needle: &'static [u8],
    want: usize,
    progress: Arc<std::sync::atomic::AtomicUsize>,
) -> usize {
    let mut seen = 0;
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while seen < want {
        let n = c.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        carry.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(i) = carry[start..]
            .windows(needle.len())
            .position(|w| w == needle)
        {
            seen += 1;
            start += i + needle.len();
        }
        let keep = carry.len().saturating_sub(needle.len() - 1).max(start);
        carry.drain(..keep);
        progress.store(seen, std::sync::atomic::Ordering::Relaxed);
    }
    seen
}

/// Most events the producer runs ahead of the slowest watcher (the hub buffers 4,096 live).
const LAG: usize = 2_000;

async fn events_round(per_commit: usize, total: usize) -> (f64, Duration) {
    let backend = TestBackend::active().await;
    let server = TestServer::start(backend.clone()).await.expect("serve");
    // Attach the hub and let the 10 streams start.
    let mut watchers = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..10 {
        let c = open_stream(server.path(), "/v1.44/events").await;
        let p = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        progress.push(p.clone());
        watchers.push(tokio::spawn(count_until(c, b"\"timeNano\"", total, p)));
    }
    let mut client = server.client().await.expect("client");
    let _ = client.get("/v1.44/secrets").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let start = Instant::now();
    let mut made = 0;
    while made < total {
        let n = per_commit.min(total - made);
        let actions = (0..n)
            .map(|_| {
                let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let s =
                    swarm_core::testing::secret(1_000_000 + u128::from(k), &format!("s{k}"), b"x");
                StoreAction::Create(Object::Secret(Arc::new(s)))
            })
            .collect();
        backend.commit(actions).expect("commit");
        made += n;
        // Flow control: never more than LAG events ahead of the slowest watcher (a stream
        // further behind than the hub's live buffer is closed), so this is the sustained rate.
        while progress
            .iter()
            .map(|p| p.load(std::sync::atomic::Ordering::Relaxed))
            .min()
            .unwrap_or(0)
            + LAG
            < made
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let mut got = Vec::new();
    for w in watchers {
        got.push(w.await.expect("watcher"));
    }
    let took = start.elapsed();
    assert!(
        got.iter().all(|g| *g == total),
        "every watcher gets every event: {got:?}"
    );
    (total as f64 / took.as_secs_f64(), took)
}

async fn events(rounds: usize) {
    for (per_commit, total) in [(100usize, 20_000usize), (1, 5_000)] {
        let mut rates = Vec::new();
        for r in 0..rounds {
            let (rate, took) = events_round(per_commit, total).await;
            println!(
                "events: round {r}: {total} events ({per_commit} per commit) to 10 watchers in {:.1} ms: {rate:.0} events/s per watcher, {:.0} delivered/s",
                took.as_secs_f64() * 1e3,
                rate * 10.0
            );
            rates.push(rate);
        }
        let m = median(rates);
        println!(
            "events: median ({per_commit} per commit): {m:.0} events/s per watcher, {:.0} delivered/s in total",
            m * 10.0
        );
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

async fn logs(rounds: usize) {
    let dir = std::env::temp_dir().join(format!("swarm-obs-bench-{}", std::process::id()));
    let mut config = swarm_node::config::DaemonConfig::new(&dir);
    config.runtime = swarm_node::config::RuntimeKind::Process;
    let d = swarm_node::daemon::Daemon::start(config)
        .await
        .expect("daemon");
    d.init(InitRequest::default()).await.expect("init");
    let a = d.cluster().expect("active");
    let mut svc = swarm_core::testing::service(1, "clock", 1);
    svc.spec.task.container.command = vec![
        "sh".into(),
        "-c".into(),
        "while :; do date +%s%N; sleep 0.01; done".into(),
    ];
    let id = svc.id;
    swarm_core::update(&a.store, a.proposer.as_ref(), |tx| tx.create(svc))
        .await
        .expect("create");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !a.store.view(|s| {
        s.tasks_by_service(&id)
            .any(|t| t.status.state == TaskState::Running)
    }) {
        assert!(Instant::now() < deadline, "the task never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = TestServer::start(d.clone()).await.expect("serve");
    let mut all = Vec::new();
    for r in 0..rounds {
        let mut c = open_stream(
            server.path(),
            &format!("/v1.44/services/{id}/logs?follow=1&stdout=1&tail=0"),
        )
        .await;
        let mut lat = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        while lat.len() < 2_000 {
            let n = c.read(&mut buf).await.expect("read");
            assert!(n > 0, "the follow ended");
            let at = now_ns();
            pending.extend_from_slice(&buf[..n]);
            // Digits followed by a newline are the payloads; the framing is not digits-only.
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let digits: Vec<u8> = line
                    .iter()
                    .rev()
                    .skip(1)
                    .take_while(|b| b.is_ascii_digit())
                    .copied()
                    .collect();
                if digits.len() >= 18 {
                    let s: String = digits.iter().rev().map(|b| *b as char).collect();
                    if let Ok(t) = s.parse::<u64>() {
                        lat.push(at.saturating_sub(t) as f64 / 1e6);
                    }
                }
            }
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        println!(
            "logs: round {r}: {} lines: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 1.0)
        );
        all.extend(lat);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    println!(
        "logs: all rounds: {} lines: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 1.0)
    );
    drop(server);
    d.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn scrape(addr: std::net::SocketAddr) -> usize {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut out = Vec::new();
    c.read_to_end(&mut out).expect("read");
    assert!(out.starts_with(b"HTTP/1.1 200"), "scrape failed");
    out.len()
}

async fn metrics(rounds: usize) {
    let backend = TestBackend::active().await;
    let node = backend.node_id();
    let svc = swarm_core::testing::service(1, "web", 10_000);
    backend
        .commit(vec![StoreAction::Create(Object::Service(Arc::new(
            svc.clone(),
        )))])
        .expect("service");
    let mut actions = Vec::new();
    for i in 0..10_000u64 {
        let mut t = swarm_core::testing::task(100 + u128::from(i), &svc, i + 1);
        t.node_id = node;
        t.status.state = TaskState::Running;
        actions.push(StoreAction::Create(Object::Task(Arc::new(t))));
    }
    for chunk in swarm_core::action::split_into_batches(actions) {
        backend.commit(chunk).expect("tasks");
    }
    let listener = swarm_node::metrics::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let b: Arc<dyn Backend> = backend.clone();
    tokio::spawn(swarm_node::metrics::serve(
        listener,
        b,
        std::future::pending(),
    ));
    let mut all = Vec::new();
    let mut size = 0;
    for r in 0..rounds {
        let mut v = Vec::new();
        for _ in 0..50 {
            let start = Instant::now();
            size = tokio::task::spawn_blocking(move || scrape(addr))
                .await
                .expect("scrape");
            v.push(start.elapsed().as_secs_f64() * 1e3);
        }
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "metrics: round {r}: 50 scrapes with 10,000 tasks: p50 {:.2} ms, p99 {:.2} ms ({size} bytes)",
            pct(&v, 0.5),
            pct(&v, 0.99)
        );
        all.extend(v);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    println!(
        "metrics: all rounds: p50 {:.2} ms, p99 {:.2} ms, page {size} bytes",
        pct(&all, 0.5),
        pct(&all, 0.99)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
        .cloned()
        .unwrap_or_else(|| "all".into());
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    if what == "events" || what == "all" {
        events(rounds).await;
    }
    if what == "logs" || what == "all" {
        logs(rounds).await;
    }
    if what == "metrics" || what == "all" {
        metrics(rounds).await;
    }
}
