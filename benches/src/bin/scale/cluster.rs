//! The processes of one scale run: three `swarm-node run --runtime sim` managers on loopback
//! ports, and the worker packs (this binary's `pack` subcommand), all under one temporary
//! directory.
//!
//! Cleanup policy: [`Procs`] owns every child it started and, when dropped (also on a panic or
//! an error return), sends each SIGTERM by its pid, waits up to 10 s, SIGKILLs what is left,
//! reaps them, and removes the temporary directory. It never signals a process it did not start.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use swarm_node::testing::HttpClient;

/// How long a manager gets to serve its socket.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One manager daemon.
pub struct Manager {
    /// Its swarm address (QUIC).
    pub addr: SocketAddr,
    /// Its API socket.
    pub socket: PathBuf,
    /// Its process id.
    pub pid: u32,
}

/// One worker pack: its pid and the lines it prints.
pub struct Pack {
    /// Its process id.
    pub pid: u32,
    /// Its stdout, line by line.
    pub lines: mpsc::Receiver<String>,
}

/// Every process of the run, and the directory they use. See the module docs.
pub struct Procs {
    /// The run's temporary directory.
    pub root: PathBuf,
    children: Vec<Child>,
    /// Held open: a pack exits when its stdin closes.
    stdins: Vec<ChildStdin>,
}

impl Procs {
    /// A fresh temporary directory under `$TMPDIR`.
    pub fn new() -> Result<Procs, String> {
        let root = std::env::temp_dir().join(format!("swarm-scale-{}", std::process::id()));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        Ok(Procs {
            root,
            children: Vec::new(),
            stdins: Vec::new(),
        })
    }

    /// Starts manager `index` (`--init` for the first) on `127.0.0.1:<port>` and waits until it
    /// serves its API socket.
    pub fn start_manager(
        &mut self,
        bin: &Path,
        index: usize,
        port: u16,
        init: bool,
    ) -> Result<Manager, String> {
        let dir = self.root.join(format!("m{index}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("s.sock");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--socket")
            .arg(&socket)
            .args(["--runtime", "sim", "--mesh-addr", "127.0.0.1"])
            .args(["--listen-addr", &addr.to_string()])
            .args(["--advertise-addr", &addr.to_string()])
            .args(["--hostname", &format!("manager{index}")])
            .env(
                "RUST_LOG",
                std::env::var("SCALE_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if init {
            cmd.arg("--init");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        self.children.push(child);
        let lines = spawn_reader(stdout);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.contains("export DOCKER_HOST") => break,
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "manager {index} did not serve its socket within {START_TIMEOUT:?}; see {}",
                        dir.join("daemon.log").display()
                    ))
                }
            }
        }
        Ok(Manager { addr, socket, pid })
    }

    /// Starts a worker pack: this executable's `pack` subcommand with `args`.
    pub fn start_pack(&mut self, args: &[String]) -> Result<Pack, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("pack")
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("SCALE_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting a pack: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        if let Some(stdin) = child.stdin.take() {
            self.stdins.push(stdin);
        }
        self.children.push(child);
        Ok(Pack {
            pid,
            lines: spawn_reader(stdout),
        })
    }
}

impl Procs {
    /// SIGKILLs the pack `pid` (one this run started) and reaps it: its nodes vanish without
    /// closing their connections, as machines that lost power.
    pub fn kill_pack(&mut self, pid: u32) -> Result<(), String> {
        let c = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .ok_or_else(|| format!("no child {pid} of this run"))?;
        c.kill().map_err(|e| format!("kill {pid}: {e}"))?;
        c.wait().map_err(|e| format!("wait {pid}: {e}"))?;
        Ok(())
    }
}

/// Reads `stdout` line by line on a thread of its own (so the pipe never fills).
fn spawn_reader(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                // Nobody listens any more: keep draining.
                continue;
            }
        }
    });
    rx
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stdins.clear();
        for c in &self.children {
            if let Ok(pid) = i32::try_from(c.id()) {
                // A child we started and have not reaped: its pid is still ours.
                let _ = send_signal(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.children {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        if std::env::var_os("SCALE_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!("kept {}", self.root.display());
        }
    }
}

/// Sends `signal` to `pid` (a child of ours).
fn send_signal(pid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid, signal) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sets the nice value of every thread of `pid` (a child of ours) to `nice`: Linux keeps nice
/// per thread, so the process's threads are set one by one. Best effort.
pub fn renice(pid: u32, nice: i32) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
            // SAFETY: setpriority(2) has no memory-safety preconditions.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
        }
    }
}

/// One API call on a fresh connection: status and JSON body.
pub async fn api(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let mut c = HttpClient::connect(socket)
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    call(&mut c, method, path, body).await
}

/// One API call on `c`: status and JSON body (`null` when empty or not JSON).
pub async fn call(
    c: &mut HttpClient,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
    let r = c
        .request(method, path, bytes.as_deref())
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    Ok((r.status, v))
}

/// CPU time (user + system) of `pid` in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

/// Resident set size of `pid` in MiB, from `/proc/<pid>/status`.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
