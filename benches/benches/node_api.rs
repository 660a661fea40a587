//! swarm-node's Docker API: `GET /services` with 1 000 services, over the Unix socket, through the
//! whole stack (hyper, routing, the store view, conversion to Docker's JSON, serialization) against
//! the in-process `TestBackend`.
//!
//! ```text
//! cargo bench -p swarm-benches --bench node_api
//! ```
//! Besides criterion's figures, each scenario first times `SWARM_BENCH_N` (default 2 000) requests
//! one by one on a keep-alive connection and prints p50 / p99 / max.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use swarm_core::testing::service;
use swarm_core::StoreAction;
use swarm_node::testing::{HttpClient, TestBackend, TestServer};

const SERVICES: u128 = 1_000;

struct Fixture {
    rt: tokio::runtime::Runtime,
    _backend: Arc<TestBackend>,
    _server: TestServer,
    client: HttpClient,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (backend, server, client) = rt.block_on(async {
        let backend = TestBackend::active().await;
        let all: Vec<StoreAction> = (1..=SERVICES)
            .map(|n| StoreAction::Create(service(n, &format!("svc-{n:04}"), 3).into()))
            .collect();
        for chunk in all.chunks(200) {
            backend.commit(chunk.to_vec()).expect("commit services");
        }
        let server = TestServer::start(backend.clone()).await.expect("serve");
        let client = server.client().await.expect("connect");
        (backend, server, client)
    });
    Fixture {
        rt,
        _backend: backend,
        _server: server,
        client,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn scenario(c: &mut Criterion, f: &mut Fixture, name: &str, path: &str) {
    let n: usize = std::env::var("SWARM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let (rt, client) = (&f.rt, &mut f.client);
    let first = rt.block_on(client.get(path)).expect("request");
    assert_eq!(first.status, 200, "{}", first.text());
    let count = first.json().as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(count, SERVICES as usize);
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = rt.block_on(client.get(path)).expect("request");
        lat.push(t.elapsed());
        assert_eq!(r.status, 200);
    }
    lat.sort();
    eprintln!(
        "{name}: {count} services, {} KiB per answer, {n} requests: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        first.body.len() / 1024,
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    c.bench_function(name, |b| {
        b.iter(|| rt.block_on(client.get(path)).expect("request"))
    });
}

fn list_services(c: &mut Criterion) {
    let mut f = fixture();
    scenario(c, &mut f, "node_api/list_services_1000", "/v1.44/services");
    scenario(
        c,
        &mut f,
        "node_api/list_services_1000_status",
        "/v1.44/services?status=true",
    );
}

criterion_group!(benches, list_services);
criterion_main!(benches);
