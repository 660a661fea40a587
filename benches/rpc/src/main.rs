//! swarm-net RPC figures beside tonic on the same workload, in one run.
//!
//! ```sh
//! cargo run --release -p swarm-rpc-bench                 # unary throughput, latency, handshakes
//! cargo run --release -p swarm-rpc-bench -- idle 10000   # one manager holding 10,000 idle workers
//! ```
//!
//! Both stacks run in this process on one tokio runtime, client and server together, on loopback,
//! with the same P-256 certificates (mutual TLS) and 1 KiB requests and responses:
//! - throughput: 64 calls in flight over one connection for `SECS` seconds;
//! - latency: an open-loop 1,000 calls/s for `SECS` seconds, each latency counted from the call's
//!   scheduled start (so a stall is not hidden by the calls it delays);
//! - connection setup: a new connection (mTLS handshake) and its first call, `HANDSHAKES` times.
//!
//! `idle N` starts a server in a child process (`idle-server`), opens N worker connections to it
//! from this process, lets them sit with keep-alive, and reports the server's memory and CPU.

mod grpc;
mod idle;
mod quic;
mod stats;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_net::pki::testing::{system_now, TestPki};
use swarm_net::Role;

const SECS: u64 = 10;
const IN_FLIGHT: usize = 64;
const RATE: u64 = 1000;
const HANDSHAKES: usize = 500;
const PAYLOAD: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match args.first().map(String::as_str) {
        Some("idle") => {
            let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
            rt.block_on(idle::run(n));
        }
        Some("idle-server") => rt.block_on(idle::server()),
        _ => rt.block_on(compare()),
    }
}

async fn compare() {
    let mut pki = TestPki::new(1, system_now());
    let manager = pki.node(Role::Manager);
    let worker = pki.node(Role::Worker);
    let payload = vec![7u8; PAYLOAD];

    let (_server, peer) = quic::serve(&manager);
    let client = quic::client(&worker);
    let grpc_addr = grpc::serve(&manager).await;
    let channel = grpc::connect(grpc_addr, &worker).await;

    println!("| measure | swarm-net (QUIC) | tonic (TCP + TLS) |");
    println!("| --- | --- | --- |");

    let q = {
        let (client, peer, payload) = (client.clone(), peer, payload.clone());
        throughput(move || {
            let (client, payload) = (client.clone(), payload.clone());
            async move { quic::call(&client, &peer, &payload).await }
        })
        .await
    };
    let t = {
        let (channel, payload) = (channel.clone(), payload.clone());
        throughput(move || {
            let (channel, payload) = (channel.clone(), payload.clone());
            async move { grpc::call(&channel, &payload).await }
        })
        .await
    };
    println!("| unary 1 KiB, {IN_FLIGHT} in flight, one connection: calls/s | {q:.0} | {t:.0} |");

    let q = {
        let (client, payload) = (client.clone(), payload.clone());
        latency(move || {
            let (client, payload) = (client.clone(), payload.clone());
            async move { quic::call(&client, &peer, &payload).await }
        })
        .await
    };
    let t = {
        let (channel, payload) = (channel.clone(), payload.clone());
        latency(move || {
            let (channel, payload) = (channel.clone(), payload.clone());
            async move { grpc::call(&channel, &payload).await }
        })
        .await
    };
    println!(
        "| unary 1 KiB at {RATE} calls/s: p50 / p99 (µs) | {} / {} | {} / {} |",
        q.0, q.1, t.0, t.1
    );

    let (endpoint, config) = quic::raw_endpoint(&worker);
    let mut hs = Vec::with_capacity(HANDSHAKES);
    let mut first = Vec::with_capacity(HANDSHAKES);
    for _ in 0..HANDSHAKES {
        let start = Instant::now();
        let conn = endpoint
            .connect_with(config.clone(), peer.addr, "swarm")
            .expect("connect")
            .await
            .expect("handshake");
        hs.push(start.elapsed());
        conn.close(0u32.into(), b"");
        let fresh = quic::client(&worker);
        let start = Instant::now();
        quic::call(&fresh, &peer, &payload).await;
        first.push(start.elapsed());
        fresh.endpoint().close(0u32.into(), b"");
    }
    let mut tfirst = Vec::with_capacity(HANDSHAKES);
    for _ in 0..HANDSHAKES {
        let start = Instant::now();
        let channel = grpc::connect(grpc_addr, &worker).await;
        grpc::call(&channel, &payload).await;
        tfirst.push(start.elapsed());
    }
    let (h50, h99) = stats::percentiles(&mut hs);
    let (q50, q99) = stats::percentiles(&mut first);
    let (t50, t99) = stats::percentiles(&mut tfirst);
    println!("| mTLS handshake alone: p50 / p99 (µs) | {h50} / {h99} | n/a |");
    println!(
        "| new connection + first 1 KiB call: p50 / p99 (µs) | {q50} / {q99} | {t50} / {t99} |"
    );
}

/// Calls completed per second with `IN_FLIGHT` callers looping for `SECS` seconds (after a second
/// of warm-up).
async fn throughput<F, Fut>(call: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let warm = Instant::now() + Duration::from_secs(1);
    let end = warm + Duration::from_secs(SECS);
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (call, done) = (call.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                call().await;
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if now >= warm {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    done.load(Ordering::Relaxed) as f64 / SECS as f64
}

/// p50 / p99 in µs of an open-loop `RATE` calls/s for `SECS` seconds.
async fn latency<F, Fut>(call: F) -> (u128, u128)
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let period = Duration::from_micros(1_000_000 / RATE);
    let n = RATE * SECS;
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let scheduled = start + period * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            call().await;
            scheduled.elapsed()
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        samples.push(t.await.expect("call"));
    }
    stats::percentiles(&mut samples)
}
