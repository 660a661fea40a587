//! A tiny TCP and UDP load tool for the cross-host routing mesh figures (docs/BENCHMARKS.md, "Cross-host
//! mesh (issue 16)"), run by `swarm-node/tests/multihost_mesh.rs`'s ignored `mesh_figures` test
//! inside the hosts' network namespaces.
//!
//! - `mesh_xhost serve <addr>`: an echo server (the benchmarked task), TCP and UDP on the same
//!   address.
//! - `mesh_xhost rr <addr> <connections> <seconds> <bytes>`: each connection sends `<bytes>` and
//!   waits for the echo, in a loop; prints one line
//!   `rr requests=<n> rps=<r> p50_us=<a> p99_us=<b>`.
//! - `mesh_xhost bulk <addr> <mib>`: one connection writes `<mib>` MiB while reading the echo
//!   back; prints `bulk mib=<n> secs=<s> mib_per_s=<r>`.
//!
//! - `mesh_xhost udp <addr> <flows> <seconds> <bytes>`: each flow (its own socket) sends a
//!   `<bytes>` datagram and waits for the echo (1 s, then it counts as lost and sends the next),
//!   in a loop; prints `udp requests=<n> rps=<r> p50_us=<a> p99_us=<b> lost=<l>`.
//!
//! Latency is per request (write to full echo read), measured with the monotonic clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

fn usage() -> ! {
    eprintln!(
        "usage: mesh_xhost serve <addr> | rr <addr> <connections> <seconds> <bytes> | bulk <addr> <mib> | udp <addr> <flows> <seconds> <bytes>"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = arg(&args, 2);
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(addr).await,
        Some("rr") => rr(addr, arg(&args, 3), arg(&args, 4), arg(&args, 5)).await,
        Some("bulk") => bulk(addr, arg(&args, 3)).await,
        Some("udp") => udp(addr, arg(&args, 3), arg(&args, 4), arg(&args, 5)).await,
        _ => usage(),
    }
}

async fn serve(addr: SocketAddr) {
    let sock = UdpSocket::bind(addr)
        .await
        .expect("binding the udp echo port");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            if let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(&buf[..n], from).await;
            }
        }
    });
    let listener = TcpListener::bind(addr)
        .await
        .expect("binding the echo port");
    loop {
        let Ok((mut c, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = c.set_nodelay(true);
            let (mut r, mut w) = c.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

async fn rr(addr: SocketAddr, connections: usize, seconds: u64, bytes: usize) {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let Ok(mut c) = TcpStream::connect(addr).await else {
                return lat;
            };
            let _ = c.set_nodelay(true);
            let msg = vec![7u8; bytes];
            let mut buf = vec![0u8; bytes];
            while Instant::now() < end {
                let t = Instant::now();
                if c.write_all(&msg).await.is_err() || c.read_exact(&mut buf).await.is_err() {
                    break;
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    println!("rr {}", summary(all, seconds));
}

/// `requests=<n> rps=<r> p50_us=<a> p99_us=<b>` of the latencies `all` over `seconds`.
fn summary(mut all: Vec<u64>, seconds: u64) -> String {
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    format!(
        "requests={} rps={:.0} p50_us={} p99_us={}",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.99)
    )
}

async fn udp(addr: SocketAddr, flows: usize, seconds: u64, bytes: usize) {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..flows {
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut lost) = (Vec::new(), 0u64);
            let Ok(sock) = UdpSocket::bind("0.0.0.0:0").await else {
                return (lat, lost);
            };
            if sock.connect(addr).await.is_err() {
                return (lat, lost);
            }
            let msg = vec![7u8; bytes];
            let mut buf = vec![0u8; 65_536];
            while Instant::now() < end {
                let t = Instant::now();
                if sock.send(&msg).await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                    Ok(Ok(_)) => lat.push(t.elapsed().as_micros() as u64),
                    _ => lost += 1,
                }
            }
            (lat, lost)
        }));
    }
    let (mut all, mut lost) = (Vec::new(), 0);
    for t in tasks {
        let (l, n) = t.await.unwrap_or_default();
        all.extend(l);
        lost += n;
    }
    println!("udp {} lost={lost}", summary(all, seconds));
}

async fn bulk(addr: SocketAddr, mib: usize) {
    let c = TcpStream::connect(addr).await.expect("connecting");
    let (mut r, mut w) = c.into_split();
    let total = mib << 20;
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![1u8; 64 << 10];
        let mut sent = 0;
        while sent < total {
            w.write_all(&chunk).await.expect("writing");
            sent += chunk.len();
        }
        w.shutdown().await.expect("half-closing");
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    while got < total {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    writer.await.expect("writer");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bulk mib={} secs={secs:.2} mib_per_s={:.1}",
        got >> 20,
        (got as f64 / (1 << 20) as f64) / secs
    );
}
