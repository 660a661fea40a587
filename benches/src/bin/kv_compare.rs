//! Runs Debian's etcd and swarm-raft (`kv_server`) side by side under the same load (`kv_load`)
//! and prints a markdown table of medians (docs/BENCHMARKS.md, "swarm-raft beside etcd";
//! `benches/scripts/kv_compare.sh` installs etcd, builds and runs this).
//!
//! ```text
//! kv_compare [--rounds 5] [--warmup 2] [--duration 10] [--members 1,3] [--clients 1,64]
//!            [--systems etcd,swarm] [--value-bytes 1024] [--keys 1024]
//!            [--work-dir DIR] [--etcd /usr/bin/etcd] [--bin-dir DIR]
//! ```
//! Every measurement starts a fresh cluster (data directories under one temporary directory in
//! `--work-dir`, default the system temp dir, so both systems write to the same filesystem; free
//! loopback ports), runs `kv_load` against it as a separate process, stops the cluster (SIGTERM,
//! then SIGKILL after 10 s) and deletes its data. Order: for each round, for each member count,
//! for each client count, every system in turn (etcd, swarm, etcd, swarm, ...). Per-run results go
//! to stderr as they come; the table goes to stdout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use swarm_benches::kv::{median, RunResult, RESULT_PREFIX};

#[derive(Debug, Clone)]
struct Args {
    rounds: u32,
    warmup: f64,
    duration: f64,
    members: Vec<u32>,
    clients: Vec<u32>,
    systems: Vec<String>,
    value_bytes: u64,
    keys: u64,
    work_dir: PathBuf,
    etcd: PathBuf,
    bin_dir: PathBuf,
}

const USAGE: &str = "usage: kv_compare [--rounds N] [--warmup SECS] [--duration SECS] [--members 1,3] [--clients 1,64] [--systems etcd,swarm] [--value-bytes N] [--keys N] [--work-dir DIR] [--etcd PATH] [--bin-dir DIR]";

fn list(v: &str, name: &str) -> Result<Vec<u32>, String> {
    v.split(',')
        .map(|x| match x.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{name} wants positive numbers separated by commas, got {v:?}"
            )),
        })
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut a = Args {
        rounds: 5,
        warmup: 2.0,
        duration: 10.0,
        members: vec![1, 3],
        clients: vec![1, 64],
        systems: vec!["etcd".into(), "swarm".into()],
        value_bytes: 1024,
        keys: 1024,
        work_dir: std::env::temp_dir(),
        etcd: PathBuf::from("/usr/bin/etcd"),
        bin_dir: exe.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let secs = |n: &str| match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
            _ => Err(format!("{n} wants seconds, got {v:?}")),
        };
        let num = |n: &str| v.parse::<u64>().map_err(|e| format!("{n}: {e}"));
        match flag.as_str() {
            "--rounds" => a.rounds = num("--rounds")? as u32,
            "--warmup" => a.warmup = secs("--warmup")?,
            "--duration" => a.duration = secs("--duration")?,
            "--members" => a.members = list(&v, "--members")?,
            "--clients" => a.clients = list(&v, "--clients")?,
            "--systems" => {
                a.systems = v.split(',').map(str::to_string).collect();
                if let Some(s) = a.systems.iter().find(|s| *s != "etcd" && *s != "swarm") {
                    return Err(format!("--systems are etcd and/or swarm, not {s:?}"));
                }
            }
            "--value-bytes" => a.value_bytes = num("--value-bytes")?,
            "--keys" => a.keys = num("--keys")?,
            "--work-dir" => a.work_dir = PathBuf::from(v),
            "--etcd" => a.etcd = PathBuf::from(v),
            "--bin-dir" => a.bin_dir = PathBuf::from(v),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.rounds == 0 || a.duration <= 0.0 {
        return Err("--rounds and --duration must be positive".into());
    }
    Ok(a)
}

/// `n` free loopback ports (bound and released; another process could take one in between, in
/// which case the server fails to bind and the run reports it).
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}")))
        .collect::<Result<_, _>>()?;
    ls.iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| format!("free port: {e}"))
        })
        .collect()
}

/// A running cluster; dropping it stops every member that is still running.
struct Cluster {
    children: Vec<Child>,
    /// Client endpoints, member 1 first.
    endpoints: Vec<String>,
    dir: PathBuf,
}

impl Cluster {
    fn start(a: &Args, system: &str, members: u32, dir: &Path) -> Result<Cluster, String> {
        let ports = free_ports(2 * members as usize)?;
        let client = |i: u32| format!("127.0.0.1:{}", ports[2 * (i as usize - 1)]);
        let peer = |i: u32| format!("127.0.0.1:{}", ports[2 * (i as usize - 1) + 1]);
        let mut c = Cluster {
            children: Vec::new(),
            endpoints: (1..=members).map(client).collect(),
            dir: dir.to_path_buf(),
        };
        for i in 1..=members {
            let data = dir.join(format!("m{i}"));
            let log = std::fs::File::create(dir.join(format!("m{i}.log")))
                .map_err(|e| format!("log file in {}: {e}", dir.display()))?;
            let mut cmd = if system == "etcd" {
                let initial: Vec<String> = (1..=members)
                    .map(|j| format!("m{j}=http://{}", peer(j)))
                    .collect();
                let mut cmd = Command::new(&a.etcd);
                cmd.arg("--name")
                    .arg(format!("m{i}"))
                    .arg("--data-dir")
                    .arg(&data)
                    .arg("--listen-client-urls")
                    .arg(format!("http://{}", client(i)))
                    .arg("--advertise-client-urls")
                    .arg(format!("http://{}", client(i)))
                    .arg("--listen-peer-urls")
                    .arg(format!("http://{}", peer(i)))
                    .arg("--initial-advertise-peer-urls")
                    .arg(format!("http://{}", peer(i)))
                    .arg("--initial-cluster")
                    .arg(initial.join(","))
                    .arg("--initial-cluster-state")
                    .arg("new")
                    .arg("--initial-cluster-token")
                    .arg("kv-compare")
                    .args(["--logger", "zap", "--log-level", "warn"]);
                cmd
            } else {
                let mut cmd = Command::new(a.bin_dir.join("kv_server"));
                cmd.arg("--id")
                    .arg(i.to_string())
                    .arg("--data")
                    .arg(&data)
                    .arg("--raft")
                    .arg(peer(i))
                    .arg("--client")
                    .arg(client(i));
                if i == 1 {
                    cmd.arg("--bootstrap");
                    for j in 2..=members {
                        cmd.arg("--add").arg(format!("{j}={}", peer(j)));
                    }
                }
                cmd
            };
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("starting {system} member {i}: {e}"))?;
            c.children.push(child);
        }
        Ok(c)
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// SIGTERM every member, wait up to 10 s each, then SIGKILL. Errors if one had already died.
    fn stop(mut self) -> Result<(), String> {
        let mut died = Vec::new();
        for (i, ch) in self.children.iter_mut().enumerate() {
            if let Ok(Some(st)) = ch.try_wait() {
                died.push(format!("member {} exited early ({st})", i + 1));
            }
            let pid = libc::pid_t::try_from(ch.id()).unwrap_or(0);
            if pid > 0 {
                // SAFETY: kill has no memory-safety preconditions; pid is our own child, not reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        for ch in &mut self.children {
            let until = Instant::now() + Duration::from_secs(10);
            while matches!(ch.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill_all();
        if died.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}; logs in {}",
                died.join(", "),
                self.dir.display()
            ))
        }
    }

    fn kill_all(&mut self) {
        for ch in &mut self.children {
            if matches!(ch.try_wait(), Ok(None)) {
                let _ = ch.kill();
                let _ = ch.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn one_run(
    a: &Args,
    system: &str,
    members: u32,
    clients: u32,
    root: &Path,
) -> Result<RunResult, String> {
    let dir = root.join(format!("{system}-{members}m-{clients}c"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cluster = Cluster::start(a, system, members, &dir)?;
    let pids: Vec<String> = cluster.pids().iter().map(u32::to_string).collect();
    let out = Command::new(a.bin_dir.join("kv_load"))
        .args(["--system", system])
        .arg("--endpoints")
        .arg(cluster.endpoints.join(","))
        .args(["--members", &members.to_string()])
        .args(["--clients", &clients.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .args(["--duration", &a.duration.to_string()])
        .args(["--value-bytes", &a.value_bytes.to_string()])
        .args(["--keys", &a.keys.to_string()])
        .args(["--server-pids", &pids.join(",")])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running kv_load: {e}"))?;
    let stopped = cluster.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "kv_load against {system} ({members} members, {clients} clients) failed ({}): {}; server logs in {}",
            out.status,
            stderr.trim(),
            dir.display()
        ));
    }
    stopped?;
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .ok_or(format!("kv_load printed no result: {stdout}"))?;
    let r: RunResult = serde_json::from_str(line).map_err(|e| format!("kv_load result: {e}"))?;
    std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    Ok(r)
}

fn table(a: &Args, results: &[RunResult]) -> String {
    let mut s = String::new();
    s.push_str("| members | clients | system | puts/s | p50 ms | p99 ms | entries/fsync | puts/fsync | client CPU | server CPU | runs |\n");
    s.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut ratios = Vec::new();
    for &m in &a.members {
        for &c in &a.clients {
            let mut rates = Vec::new();
            for sys in &a.systems {
                let rs: Vec<&RunResult> = results
                    .iter()
                    .filter(|r| r.system == *sys && r.members == m && r.clients == c)
                    .collect();
                let med =
                    |f: fn(&RunResult) -> f64| median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
                let (rate, p50, p99) = (
                    med(|r| r.puts_per_sec),
                    med(|r| r.p50_ms),
                    med(|r| r.p99_ms),
                );
                s.push_str(&format!(
                    "| {m} | {c} | {sys} | {rate:.0} | {p50:.2} | {p99:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
                    med(RunResult::entries_per_fsync),
                    med(RunResult::puts_per_fsync),
                    med(|r| r.client_cpu),
                    med(|r| r.server_cpu),
                    rs.len()
                ));
                rates.push((sys.clone(), rate, p99));
            }
            if let (Some(e), Some(w)) = (
                rates.iter().find(|r| r.0 == "etcd"),
                rates.iter().find(|r| r.0 == "swarm"),
            ) {
                if e.1 > 0.0 && e.2 > 0.0 {
                    ratios.push(format!(
                        "{m} member(s), {c} client(s): swarm/etcd puts/s {:.2}x, p99 {:.2}x",
                        w.1 / e.1,
                        w.2 / e.2
                    ));
                }
            }
        }
    }
    s.push_str("\nMedians over rounds; CPU in cores (CPU seconds / wall seconds) over the measured window.\n");
    for r in ratios {
        s.push_str(&format!("- {r}\n"));
    }
    s
}

fn run(a: &Args) -> Result<String, String> {
    if a.systems.iter().any(|s| s == "etcd") && !a.etcd.exists() {
        return Err(format!(
            "{} not found (apt-get install etcd-server)",
            a.etcd.display()
        ));
    }
    for b in ["kv_server", "kv_load"] {
        if !a.bin_dir.join(b).exists() {
            return Err(format!(
                "{} not found (build the swarm-benches binaries)",
                a.bin_dir.join(b).display()
            ));
        }
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let root = a
        .work_dir
        .join(format!("kv-compare-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut results = Vec::new();
    for round in 1..=a.rounds {
        for &m in &a.members {
            for &c in &a.clients {
                for sys in &a.systems {
                    // A failed run keeps its directory (server logs) for a look.
                    let r = one_run(a, sys, m, c, &root)?;
                    eprintln!(
                        "round {round}: {sys} {m} member(s) {c} client(s): {:.0} puts/s, p50 {:.2} ms, p99 {:.2} ms, {} entries / {} fsyncs = {:.2} ({:.2} puts/fsync), client CPU {:.2}, server CPU {:.2}",
                        r.puts_per_sec, r.p50_ms, r.p99_ms, r.entries, r.fsyncs, r.entries_per_fsync(), r.puts_per_fsync(), r.client_cpu, r.server_cpu
                    );
                    results.push(r);
                }
            }
        }
    }
    std::fs::remove_dir_all(&root).map_err(|e| format!("removing {}: {e}", root.display()))?;
    Ok(table(a, &results))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kv_compare: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kv_compare: {e}");
            ExitCode::FAILURE
        }
    }
}
