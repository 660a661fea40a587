//! A running daemon's API under a flood of idle and half-open connections: how long a normal
//! request takes meanwhile, and how many of the flood the daemon closes (connection cap, then
//! header-read timeout).
//!
//! ```text
//! swarm-node run --runtime sim --init --data-dir /tmp/flood --socket /tmp/flood/s.sock &
//! ulimit -n 65536
//! cargo run --release -p swarm-benches --bin api_flood -- --socket /tmp/flood/s.sock \
//!     [--connections 20000] [--requests 20] [--wait 30] [--flood-time 30]
//! ```
//!
//! 1. `--requests` pings (`GET /_ping` on a fresh connection each, 10 s timeout) with nothing
//!    else open: the baseline.
//! 2. `--connections` connections opened as fast as possible and held: even ones send nothing,
//!    odd ones half a request head. Connects that fail are counted; the flood gets at most
//!    `--flood-time` seconds (a daemon that stops accepting blocks `connect`).
//! 3. `--requests` pings again while the flood is held.
//! 4. How many flood connections the daemon has closed, right after the pings and again after
//!    `--wait` seconds (past the header-read timeout every one should be).
//!
//! Plain blocking std sockets: the flood is file descriptors, not tasks.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const PING: &[u8] = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
const HALF: &[u8] = b"GET /_ping HTTP/1.1\r\nHost: doc";
const PING_TIMEOUT: Duration = Duration::from_secs(10);

struct Options {
    socket: PathBuf,
    connections: usize,
    requests: usize,
    wait: u64,
    flood_time: u64,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        socket: PathBuf::new(),
        connections: 20_000,
        requests: 20,
        wait: 30,
        flood_time: 30,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--socket" => o.socket = PathBuf::from(&value),
            "--connections" => o.connections = number()?,
            "--requests" => o.requests = number()?,
            "--wait" => o.wait = number()? as u64,
            "--flood-time" => o.flood_time = number()? as u64,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if o.socket.as_os_str().is_empty() {
        return Err("--socket PATH is required".into());
    }
    Ok(o)
}

/// [`ping_blocking`] in a thread, given up after [`PING_TIMEOUT`]: a daemon out of file
/// descriptors leaves `connect` blocked on a full backlog, which no socket timeout bounds.
fn ping(socket: &Path) -> Result<Duration, String> {
    let (tx, rx) = mpsc::channel();
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(ping_blocking(&socket));
    });
    rx.recv_timeout(PING_TIMEOUT)
        .unwrap_or_else(|_| Err(format!("no answer in {PING_TIMEOUT:?}")))
}

/// One ping on a fresh connection: its latency, or what went wrong.
fn ping_blocking(socket: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(PING_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(PING).map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "answer {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(40)])
        ));
    }
    Ok(start.elapsed())
}

/// Runs `n` pings and prints their median and maximum latency and failures.
fn pings(label: &str, socket: &Path, n: usize) {
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..n {
        match ping(socket) {
            Ok(t) => times.push(t),
            Err(e) => failures.push(e),
        }
    }
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let max = times.last().copied().unwrap_or_default();
    println!(
        "{label}: {} of {n} pings answered, median {:.2} ms, max {:.2} ms{}",
        times.len(),
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        failures
            .first()
            .map(|e| format!(", first failure: {e}"))
            .unwrap_or_default()
    );
}

/// How many of `conns` the daemon has closed (EOF or reset on a non-blocking read).
fn closed(conns: &mut [UnixStream]) -> usize {
    let mut buf = [0u8; 64];
    let mut n = 0;
    for s in conns.iter_mut() {
        let gone = match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        n += usize::from(gone);
    }
    n
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("api_flood: {e}");
            std::process::exit(2);
        }
    };
    pings("baseline", &o.socket, o.requests);
    // The flood runs in its own thread: against a daemon that stops accepting, `connect` blocks
    // once the backlog is full, and the pings must still be tried.
    let start = Instant::now();
    let flood = Arc::new(Mutex::new(Vec::with_capacity(o.connections)));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let (flood, socket, n) = (flood.clone(), o.socket.clone(), o.connections);
        std::thread::spawn(move || {
            let mut failed = 0usize;
            for i in 0..n {
                match UnixStream::connect(&socket) {
                    Ok(mut s) => {
                        if i % 2 == 1 {
                            let _ = s.write_all(HALF);
                        }
                        let _ = s.set_nonblocking(true);
                        flood.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                    }
                    Err(_) => failed += 1,
                }
            }
            let _ = done_tx.send(failed);
        });
    }
    let finished = done_rx.recv_timeout(Duration::from_secs(o.flood_time));
    let held = flood.lock().unwrap_or_else(|e| e.into_inner()).len();
    match finished {
        Ok(failed) => println!(
            "flood: {held} connections held ({failed} connects failed) in {:.2} s",
            start.elapsed().as_secs_f64()
        ),
        Err(_) => println!(
            "flood: only {held} of {} connections made in {} s (connect blocked)",
            o.connections, o.flood_time
        ),
    }
    pings("during the flood", &o.socket, o.requests);
    let mut flood = std::mem::take(&mut *flood.lock().unwrap_or_else(|e| e.into_inner()));
    println!(
        "closed by the daemon right after: {} of {}",
        closed(&mut flood),
        flood.len()
    );
    std::thread::sleep(Duration::from_secs(o.wait));
    println!(
        "closed by the daemon after {} s more: {} of {}",
        o.wait,
        closed(&mut flood),
        flood.len()
    );
    pings("after the flood", &o.socket, o.requests);
}
