//! One manager endpoint holding many idle worker connections with keep-alive: the server runs in a
//! child process so its memory and CPU are its own. Credentials reach the child through its stdin
//! (never a file: the manager key is a secret).

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_net::pki::testing::{system_now, TestPki};
use swarm_net::pki::{PrivateKey, TlsMaterial};
use swarm_net::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

use crate::{quic, stats};

/// Connections per client endpoint (UDP socket), like that many workers behind one address.
const PER_ENDPOINT: usize = 100;
/// Handshakes in progress at once.
const CONCURRENT: usize = 64;
/// Handshake attempts per connection.
const ATTEMPTS: usize = 5;
const SETTLE: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(30);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex from parent"))
        .collect()
}

fn list(items: &[Vec<u8>]) -> String {
    items.iter().map(|c| hex(c)).collect::<Vec<_>>().join(",")
}

/// Server side: reads credentials, serves, prints its port, then answers `stats` lines with
/// `rss_kib cpu_ms open_connections` until stdin closes.
pub async fn server() {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut next = || {
        lines
            .next()
            .and_then(Result::ok)
            .expect("credentials from parent")
    };
    let chain = next().split(',').map(unhex).collect();
    let key = PrivateKey::from_pkcs8_der(&unhex(&next())).expect("manager key");
    let roots = next().split(',').map(unhex).collect();
    let material = TlsMaterial::new(chain, key, roots).expect("manager credentials");
    let (server, peer) = quic::serve(&material);
    println!("{}", peer.addr.port());
    // The runtime's other worker keeps serving while this one waits on stdin.
    tokio::task::block_in_place(|| {
        for line in lines.map_while(Result::ok) {
            if line == "stats" {
                let (rss, cpu) = stats::own_usage().unwrap_or_default();
                println!("{rss} {} {}", cpu.as_millis(), server.open_connections());
            }
        }
    });
}

pub async fn run(n: usize) {
    let mut pki = TestPki::new(2, system_now());
    let manager = pki.node(Role::Manager);
    let worker = pki.node(Role::Worker);
    let exe = std::env::current_exe().expect("own path");
    let mut child = tokio::process::Command::new(exe)
        .arg("idle-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server process");
    let mut stdin = child.stdin.take().expect("child stdin");
    let mut out = BufReader::new(child.stdout.take().expect("child stdout")).lines();
    let creds = format!(
        "{}\n{}\n{}\n",
        list(manager.chain()),
        hex(manager.key().pkcs8_der()),
        list(manager.roots())
    );
    stdin
        .write_all(creds.as_bytes())
        .await
        .expect("send credentials");
    let port: u16 = out
        .next_line()
        .await
        .expect("child stdout")
        .expect("port")
        .parse()
        .expect("port number");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut ask = async || -> (u64, Duration, usize) {
        stdin.write_all(b"stats\n").await.expect("ask stats");
        let line = out.next_line().await.expect("stats").expect("stats line");
        let f: Vec<u64> = line
            .split(' ')
            .map(|x| x.parse().expect("number"))
            .collect();
        (f[0], Duration::from_millis(f[1]), f[2] as usize)
    };
    let (rss0, _, _) = ask().await;

    let endpoints: Vec<_> = (0..n.div_ceil(PER_ENDPOINT))
        .map(|_| quic::raw_endpoint(&worker))
        .collect();
    let gate = Arc::new(Semaphore::new(CONCURRENT));
    let retries = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let (endpoint, config) = endpoints[i / PER_ENDPOINT].clone();
        let gate = gate.clone();
        let retries = retries.clone();
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            // A handshake whose datagrams were dropped (a starved process's full socket buffer)
            // times out; count it and try again rather than abort the run.
            for _ in 0..ATTEMPTS {
                let connecting = endpoint
                    .connect_with(config.clone(), addr, "swarm")
                    .expect("connect");
                match connecting.await {
                    Ok(conn) => return conn,
                    Err(_) => {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            panic!("no handshake after {ATTEMPTS} attempts")
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for p in pending {
        conns.push(p.await.expect("connect task"));
    }
    let connect_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let (rss1, cpu1, open1) = ask().await;
    let (_, own_cpu1) = stats::own_usage().unwrap_or_default();
    tokio::time::sleep(IDLE).await;
    let (rss2, cpu2, open2) = ask().await;
    let (_, own_cpu2) = stats::own_usage().unwrap_or_default();
    let alive = conns.iter().filter(|c| c.close_reason().is_none()).count();
    let server_cpu = (cpu2 - cpu1).as_secs_f64() / IDLE.as_secs_f64() * 100.0;
    let client_cpu = (own_cpu2 - own_cpu1).as_secs_f64() / IDLE.as_secs_f64() * 100.0;
    println!("| idle connections (server-side count before / after {}s) | {open1} / {open2} (client sees {alive} alive) |", IDLE.as_secs());
    println!(
        "| connection setup, {CONCURRENT} concurrent handshakes | {:.0} connections/s ({} timed out and were retried) |",
        n as f64 / connect_secs,
        retries.load(Ordering::Relaxed)
    );
    println!("| manager RSS: empty / with {n} idle connections | {} MiB / {} MiB ({:.1} KiB per connection) |",
        rss0 / 1024, rss2 / 1024, (rss2.saturating_sub(rss0)) as f64 / n as f64);
    println!("| manager CPU while idle (keep-alive every 2 s) | {server_cpu:.1} % of one core (RSS drift over the window: {} KiB) |", rss2 as i64 - rss1 as i64);
    println!(
        "| the {n} workers' CPU (same process, for reference) | {client_cpu:.1} % of one core |"
    );
    drop(conns);
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}
