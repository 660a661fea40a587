//! The scale harness (issue 19): three `swarm-node` managers (separate processes, sim runtime)
//! and N simulated worker nodes packed into a few processes, each node with its own
//! certificate, QUIC connection, dispatcher session, heartbeats and sim runtime; a driver
//! creating services through the Docker API and measuring what the managers do.
//!
//! ```text
//! cargo build --release -p swarm-node --bin swarm-node
//! cargo build --release -p swarm-benches --bin scale
//! target/release/scale run --nodes 1000 --services 10 --replicas 1000
//!     [--packs P] [--node-bin target/release/swarm-node] [--port 24770] [--rest-secs 20]
//!     [--join-parallel 64] [--timeout-secs 900] [--lose 100] [--update true] [--catch-up true]
//! ```
//!
//! Smoke mode (a minute): `target/release/scale run --nodes 50 --services 1 --replicas 100`.
//!
//! Stages, each printed as it ends: managers up; all nodes joined (packs ready) and `Ready` in
//! `GET /nodes`; the leader's CPU, every manager's and pack's RSS at rest (from `/proc`, over
//! `--rest-secs`); `--services` x `--replicas` created one after the other and the time until
//! `GET /services?status=true` counts all running, with `service ls` / `inspect` / `create`
//! (a 0-replica probe service) latencies sampled meanwhile; CPU and RSS at rest again; then, if
//! asked, `--lose N` nodes (a pack of their own) SIGKILLed at once and timed until marked down
//! and their tasks run elsewhere, a rolling update of `scale-0` (`--update true`, parallelism
//! 100) timed until completed, and a fourth manager joined (`--catch-up true`) timed until its
//! own store counts every task running (see `stages`). A last line gives every figure as JSON.
//!
//! Everything the harness starts is stopped by pid and its temporary directory removed when it
//! ends, fails or panics (see `cluster`); `SCALE_KEEP=1` keeps the directory (daemon logs).
//! `SCALE_RUST_LOG` sets the processes' log filter (default `warn`).

mod cluster;
mod driver;
mod pack;
mod stages;

use std::net::{IpAddr, SocketAddr};

fn usage() -> String {
    "usage: scale run [--nodes N] [--services S] [--replicas R] [--packs P] [--node-bin PATH] \
     [--port PORT] [--rest-secs S] [--join-parallel J] [--timeout-secs T] [--lose N] \
     [--update true] [--catch-up true] [--pack-nice 10]\n       \
     scale pack --manager ADDR --token TOKEN --count K --bind-ip IP --name NAME [--parallel J]"
        .to_string()
}

/// `--flag value` pairs.
fn pairs(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        out.push((flag.clone(), value.clone()));
    }
    Ok(out)
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| format!("{flag} {v}: {e}"))
}

fn pack_options(args: &[String]) -> Result<pack::PackOptions, String> {
    let mut o = pack::PackOptions {
        manager: SocketAddr::from(([127, 0, 0, 1], 2377)),
        token: String::new(),
        count: 0,
        bind_ip: IpAddr::from([127, 0, 0, 1]),
        name: "node".into(),
        parallel: 64,
    };
    for (f, v) in pairs(args)? {
        match f.as_str() {
            "--manager" => o.manager = num(&f, &v)?,
            "--token" => o.token = v,
            "--count" => o.count = num(&f, &v)?,
            "--bind-ip" => o.bind_ip = num(&f, &v)?,
            "--name" => o.name = v,
            "--parallel" => o.parallel = num(&f, &v)?,
            _ => return Err(format!("unknown flag {f}\n{}", usage())),
        }
    }
    if o.token.is_empty() {
        return Err("--token is required".into());
    }
    Ok(o)
}

fn run_options(args: &[String]) -> Result<driver::RunOptions, String> {
    let mut o = driver::RunOptions::default();
    let mut packs = None;
    for (f, v) in pairs(args)? {
        match f.as_str() {
            "--nodes" => o.nodes = num(&f, &v)?,
            "--services" => o.services = num(&f, &v)?,
            "--replicas" => o.replicas = num(&f, &v)?,
            "--packs" => packs = Some(num(&f, &v)?),
            "--node-bin" => o.node_bin = v.into(),
            "--port" => o.port = num(&f, &v)?,
            "--rest-secs" => o.rest_secs = num(&f, &v)?,
            "--join-parallel" => o.join_parallel = num(&f, &v)?,
            "--timeout-secs" => o.timeout_secs = num(&f, &v)?,
            "--lose" => o.lose = num(&f, &v)?,
            "--update" => o.update = num::<bool>(&f, &v)?,
            "--catch-up" => o.catch_up = num::<bool>(&f, &v)?,
            "--pack-nice" => o.pack_nice = num(&f, &v)?,
            _ => return Err(format!("unknown flag {f}\n{}", usage())),
        }
    }
    // 625 nodes a pack: at 2,500 a pack's socket and runtime fell behind at 5,000 nodes x
    // 100,000 tasks (full receive queues, drops; docs/BENCHMARKS.md, Scale).
    o.packs = packs.unwrap_or(o.nodes.div_ceil(625)).max(1);
    Ok(o)
}

/// Raises this process's open-file limit to its hard limit (a pack holds a UDP socket per node).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    raise_nofile();
    let result = match args.first().map(String::as_str) {
        Some("pack") => pack_options(&args[1..]).and_then(|o| {
            tracing_init();
            runtime()?.block_on(pack::run(o))
        }),
        Some("run") => run_options(&args[1..]).and_then(|o| {
            runtime()?.block_on(async {
                // SIGINT/SIGTERM drop the run, whose `Procs` stops every process it started.
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .map_err(|e| e.to_string())?;
                tokio::select! {
                    r = driver::run(o) => r,
                    _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
                    _ = term.recv() => Err("terminated".to_string()),
                }
            })
        }),
        _ => Err(usage()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Warnings from the packs' nodes go to stderr (`RUST_LOG`, default `warn`).
fn tracing_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
