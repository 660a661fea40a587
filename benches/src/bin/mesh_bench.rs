//! Routing-mesh proxy throughput and added latency against a direct connection, on loopback,
//! measured with `wrk` (Debian package `wrk`).
//!
//! ```text
//! cargo run --release -p swarm-benches --bin mesh_bench -- \
//!     [--connections 1000] [--duration 10] [--rounds 3] [--wrk-threads 1] \
//!     [--proxy-threads 1] [--backend-threads 1] [--tasks 3] [--buffer 16384] [--kernel]
//! ```
//!
//! `--kernel` (root): the mesh runs with `kernel_ingress`, so the kernel DNATs the connections
//! to the (local) tasks and the proxy carries none; the bench waits until the rules are in.
//!
//! Starts a keep-alive HTTP/1.1 backend (tokio, a fixed 2-byte body) on 127.0.0.2, and the
//! routing mesh in front of it through the daemon's own API: a `SharedStore` holding one service
//! that publishes a port in ingress mode and `--tasks` running tasks whose addresses all reach
//! that backend (127.0.0.2..; each loopback address is a listener of the same backend), and
//! [`swarm_node::mesh::RoutingMesh::start`] on 127.0.0.1. Then, `--rounds` times, it runs
//! `wrk -t<wrk-threads> -c<connections> -d<duration>s --latency` against the backend directly and
//! against the mesh, alternately, and prints each run and the medians.
//!
//! Threads: the backend and the proxy each run on their own tokio runtime in this process, with
//! `--backend-threads` and `--proxy-threads` workers; wrk runs as a separate process. On a
//! 2-core machine the three share the cores, so the defaults give each one thread and leave the
//! scheduler to share: more threads than cores only add context switches.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::{PortConfig, Protocol, PublishMode};
use swarm_core::objects::task::TaskAddress;
use swarm_core::testing::{service, task};
use swarm_core::{LocalProposer, ManualClock, Object, Proposer, SharedStore, StoreAction};
use swarm_core::{TaskState, Timestamp};
use swarm_node::mesh::{MeshConfig, PortKey, RoutingMesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

struct Options {
    connections: u32,
    duration: u32,
    rounds: u32,
    wrk_threads: u32,
    proxy_threads: usize,
    backend_threads: usize,
    tasks: u8,
    buffer: usize,
    /// Run the mesh with the kernel ingress path (root).
    kernel: bool,
    /// Scenarios: 0 = saturate (each connection sends its next request as soon as the answer
    /// arrives); N = each connection waits a random 0..2N ms (mean N) before each request
    /// (wrk's `delay()` hook; random so that the 1 000 connections do not fire in bursts).
    delays: Vec<u32>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        connections: 1000,
        duration: 10,
        rounds: 3,
        wrk_threads: 1,
        proxy_threads: 1,
        backend_threads: 1,
        tasks: 3,
        buffer: MeshConfig::default().copy_buffer,
        kernel: false,
        delays: vec![0, 100],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--kernel" {
            o.kernel = true;
            continue;
        }
        if a == "--bench" {
            continue;
        }
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        if a == "--delay-ms" {
            o.delays = v
                .split(',')
                .map(|d| {
                    d.trim()
                        .parse()
                        .map_err(|_| format!("--delay-ms: not a number: {d}"))
                })
                .collect::<Result<_, _>>()?;
            continue;
        }
        let n: u64 = v.parse().map_err(|_| format!("{a}: not a number: {v}"))?;
        let small = |n: u64| u32::try_from(n).map_err(|_| format!("{a}: too large"));
        match a.as_str() {
            "--connections" => o.connections = small(n)?,
            "--duration" => o.duration = small(n)?,
            "--rounds" => o.rounds = small(n)?.max(1),
            "--wrk-threads" => o.wrk_threads = small(n)?.max(1),
            "--proxy-threads" => o.proxy_threads = small(n)? as usize,
            "--backend-threads" => o.backend_threads = small(n)? as usize,
            "--tasks" => o.tasks = u8::try_from(n).map_err(|_| "--tasks: at most 250")?.max(1),
            "--buffer" => o.buffer = small(n)?.max(512) as usize,
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(o)
}

/// A runtime for one side: `threads` workers, or with 0 a current-thread runtime driven by a
/// dedicated thread (no work-stealing bookkeeping). Its [`tokio::runtime::Handle`] is returned.
fn runtime(threads: usize, name: &str) -> tokio::runtime::Handle {
    if threads == 0 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("runtime thread");
        return handle;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let handle = rt.handle().clone();
    // Lives as long as the process.
    std::mem::forget(rt);
    handle
}

/// Answers every request (a GET without body: a header block ending in a blank line) with
/// [`RESPONSE`], keeping the connection open; answers pipelined requests in one write.
async fn serve_http(l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut filled = 0;
            let mut out = Vec::with_capacity(RESPONSE.len() * 4);
            loop {
                let n = match s.read(&mut buf[filled..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                filled += n;
                let mut start = 0;
                while let Some(end) = find(&buf[start..filled], b"\r\n\r\n") {
                    start += end + 4;
                    out.extend_from_slice(RESPONSE);
                }
                buf.copy_within(start..filled, 0);
                filled -= start;
                if filled == buf.len() {
                    return; // a header block larger than the buffer: not wrk's
                }
                if !out.is_empty() {
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            }
        });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One wrk run's figures.
#[derive(Clone, Copy, Debug)]
struct WrkResult {
    rps: f64,
    p99_ms: f64,
    p50_ms: f64,
    errors: u64,
}

/// `1.23ms`, `456.00us`, `1.02s`, `2.00m` -> milliseconds.
fn parse_duration_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(out: &str) -> Option<WrkResult> {
    let mut rps = None;
    let mut p99 = None;
    let mut p50 = None;
    let mut errors = 0;
    for line in out.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Requests/sec:") => rps = words.next().and_then(|v| v.parse().ok()),
            Some("99%") => p99 = words.next().and_then(parse_duration_ms),
            Some("50%") => p50 = words.next().and_then(parse_duration_ms),
            Some("Socket") => {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                errors += line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum::<u64>();
            }
            Some("Non-2xx") => {
                errors += words.last().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
            _ => {}
        }
    }
    Some(WrkResult {
        rps: rps?,
        p99_ms: p99?,
        p50_ms: p50?,
        errors,
    })
}

fn run_wrk(o: &Options, addr: SocketAddr, script: Option<&std::path::Path>) -> WrkResult {
    let mut cmd = Command::new("wrk");
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd
        .arg(format!("-t{}", o.wrk_threads))
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{}s", o.duration))
        .arg("--latency")
        .arg(format!("http://{addr}/"))
        .output()
        .expect("running wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_wrk(&text) {
        Some(r) if out.status.success() => r,
        _ => {
            eprintln!(
                "mesh_bench: could not read wrk's output:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::process::exit(1);
        }
    }
}

/// CPU seconds (user + system) used so far by this process's threads named `backend*` and
/// `mesh*` (Linux: `/proc/self/task/*/stat`, in clock ticks of 10 ms).
fn cpu_seconds() -> (f64, f64) {
    let mut backend = 0u64;
    let mut mesh = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // "<tid> (<comm>) <state> ..." with utime and stime the 14th and 15th fields.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: u64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        if comm.starts_with("backend") {
            backend += ticks;
        } else if comm.starts_with("mesh") {
            mesh += ticks;
        }
    }
    (backend as f64 / 100.0, mesh as f64 / 100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `o.rounds` rounds of wrk against `direct` then `proxied`, each connection waiting
/// `delay` ms before each request (0: none), and prints the runs and the medians.
fn scenario(o: &Options, delay: u32, direct: SocketAddr, proxied: SocketAddr) {
    let script = (delay > 0).then(|| {
        let path = std::env::temp_dir().join(format!("mesh_bench_delay_{delay}.lua"));
        std::fs::write(
            &path,
            format!(
                "function delay()\n  return math.random(0, {})\nend\n",
                2 * delay
            ),
        )
        .expect("writing the wrk script");
        path
    });
    println!();
    match delay {
        0 => println!("## saturated: every connection sends its next request at once"),
        d => {
            println!("## paced: every connection waits a random 0-{} ms (mean {d} ms) before each request (wrk `delay()`)", 2 * d)
        }
    }
    println!("| round | path | requests/s | p50 | p99 | errors | backend CPU | proxy CPU |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut d = Vec::new();
    let mut p = Vec::new();
    for round in 1..=o.rounds {
        for (name, addr, into) in [("direct", direct, &mut d), ("mesh", proxied, &mut p)] {
            let (b0, m0) = cpu_seconds();
            let r = run_wrk(o, addr, script.as_deref());
            let (b1, m1) = cpu_seconds();
            let secs = f64::from(o.duration);
            println!(
                "| {round} | {name} | {:.0} | {:.3} ms | {:.3} ms | {} | {:.0}% | {:.0}% |",
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.errors,
                100.0 * (b1 - b0) / secs,
                100.0 * (m1 - m0) / secs
            );
            into.push(r);
        }
    }
    let rps_d = median(d.iter().map(|r| r.rps).collect());
    let rps_p = median(p.iter().map(|r| r.rps).collect());
    let p99_d = median(d.iter().map(|r| r.p99_ms).collect());
    let p99_p = median(p.iter().map(|r| r.p99_ms).collect());
    let loss = 100.0 * (1.0 - rps_p / rps_d);
    let added = p99_p - p99_d;
    println!("median direct: {rps_d:.0} req/s, p99 {p99_d:.3} ms");
    println!("median mesh:   {rps_p:.0} req/s, p99 {p99_p:.3} ms");
    if delay == 0 {
        println!(
            "throughput loss {loss:.1}% (target <= 10%: {}); p99 at saturation is queueing in wrk, not judged",
            if loss <= 10.0 { "met" } else { "missed" }
        );
    } else {
        println!(
            "added p99 {added:.3} ms (target <= 0.2 ms: {}); offered load is fixed, throughput not judged",
            if added <= 0.2 { "met" } else { "missed" }
        );
    }
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mesh_bench: {e}");
            std::process::exit(2);
        }
    };
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("mesh_bench: wrk is not installed; install it with `apt-get install -y wrk`");
        std::process::exit(1);
    }

    // The backend: one HTTP server listening on 127.0.0.2.. (one address per task), one port.
    let backend_rt = runtime(o.backend_threads, "backend");
    let target = loop {
        let port = free_port();
        let bound: Result<Vec<TcpListener>, _> = backend_rt.block_on(async {
            let mut v = Vec::new();
            for n in 0..o.tasks {
                v.push(TcpListener::bind(SocketAddr::new(lo(n + 2), port)).await?);
            }
            Ok::<_, std::io::Error>(v)
        });
        if let Ok(listeners) = bound {
            for l in listeners {
                backend_rt.spawn(serve_http(l));
            }
            break port;
        }
    };
    let direct = SocketAddr::new(lo(2), target);

    // The mesh, as the daemon runs it: a store with one service and its running tasks.
    let proxy_rt = runtime(o.proxy_threads, "mesh");
    let published = free_port();
    let mesh = proxy_rt.block_on(async {
        let store = SharedStore::default();
        let proposer = LocalProposer::new(
            store.clone(),
            Arc::new(ManualClock::new(Timestamp::from_secs(1_704_067_200))),
        );
        let mut s = service(1, "web", u64::from(o.tasks));
        let port = PortConfig {
            protocol: Protocol::Tcp,
            target_port: u32::from(target),
            published_port: u32::from(published),
            publish_mode: PublishMode::Ingress,
            ..Default::default()
        };
        s.spec.endpoint.ports = vec![port.clone()];
        s.endpoint.spec = s.spec.endpoint.clone();
        s.endpoint.ports = vec![port];
        let mut actions = vec![StoreAction::Create(Object::Service(Arc::new(s.clone())))];
        for n in 0..o.tasks {
            let mut t = task(u128::from(n) + 10, &s, u64::from(n) + 1);
            t.status.state = TaskState::Running;
            t.status.addresses = vec![TaskAddress {
                network_id: None,
                addr: lo(n + 2),
            }];
            actions.push(StoreAction::Create(Object::Task(Arc::new(t))));
        }
        let mesh = RoutingMesh::start(
            store,
            MeshConfig {
                addr: lo(1),
                copy_buffer: o.buffer,
                kernel_ingress: o.kernel,
                ..MeshConfig::default()
            },
        );
        proposer.propose(actions).await.expect("commit");
        let key = PortKey {
            port: published,
            protocol: Protocol::Tcp,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !(mesh.is_listening(key)
            && mesh
                .backends(key)
                .is_some_and(|b| b.len() == usize::from(o.tasks))
            && (!o.kernel || mesh.kernel_carries(key).0))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the mesh did not publish the port (or, with --kernel, install its rules: root and nft needed)"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // One request through, so a broken setup fails here and not as wrk errors.
        let mut c = TcpStream::connect(SocketAddr::new(lo(1), published))
            .await
            .expect("connect");
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        let n = c.read(&mut buf).await.expect("read");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "unexpected answer through the mesh"
        );
        mesh
    });
    let proxied = SocketAddr::new(lo(1), published);

    println!(
        "wrk -t{} -c{} -d{}s --latency; backend {} thread(s), proxy {} thread(s), {} task(s), copy buffer {} B, kernel ingress {}",
        o.wrk_threads, o.connections, o.duration, o.backend_threads, o.proxy_threads, o.tasks, o.buffer, o.kernel
    );
    for &delay in &o.delays {
        scenario(&o, delay, direct, proxied);
    }
    proxy_rt.block_on(mesh.stop());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 10s test @ http://127.0.0.1:8080/\n  1 threads and 1000 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     9.81ms    1.20ms  30.00ms   90.00%\n  Latency Distribution\n     50%    9.50ms\n     75%   10.00ms\n     90%   11.00ms\n     99%   14.53ms\n  1000000 requests in 10.00s, 80.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 2\nRequests/sec: 100000.12\nTransfer/sec:      8.00MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.rps, 100000.12);
        assert_eq!(r.p99_ms, 14.53);
        assert_eq!(r.p50_ms, 9.5);
        assert_eq!(r.errors, 5);
        assert_eq!(parse_duration_ms("456.00us"), Some(0.456));
        assert_eq!(parse_duration_ms("1.02s"), Some(1020.0));
    }
}
