//! Helpers shared by the `accept_*` tests: the real `swarm-node` binary on a temporary data
//! directory and socket, driven by the real `docker` CLI.
//!
//! - [`Node::start`] runs `swarm-node run --data-dir <tmp> --socket <tmp>/s.sock --runtime ...`
//!   and waits for its `export DOCKER_HOST=` line; it returns `None` (after a loud `SKIPPED` note, a failure in CI:
//!   see `skip/mod.rs`)
//!   when there is no `docker` CLI, or, for the docker runtime, no Docker Engine. The engine's test
//!   image (`swarm-test/busybox:latest`) is built once by swarm-runtime's `build-test-image.sh`.
//! - Every `docker` command gets `DOCKER_HOST=unix://<socket>` and a private `DOCKER_CONFIG`, so it
//!   can only reach this test's daemon, and is bounded by a timeout.
//! - Waits poll a CLI command until its output satisfies a predicate, bounded by [`TIMEOUT`]; no
//!   test sleeps a fixed time.
//! - Dropping a [`Node`] kills the daemon if it still runs and removes the Docker containers it
//!   labelled (`com.docker.swarm.node.id=<id>`); on a failing test it prints the daemon's log.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

#[path = "../skip/mod.rs"]
mod skip;
use skip::skip;

pub mod trials;

/// The bound of every wait (debug builds on a busy two-core machine).
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// The bound of one `docker` command.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a wait polls.
const POLL: Duration = Duration::from_millis(100);
/// The Docker Engine's socket (the docker runtime's, and `docker exec`'s).
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";
/// The docker runtime's test image.
pub const IMAGE: &str = "swarm-test/busybox:latest";

/// Which runtime adapter the daemon runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// Local processes (`docker service create IMAGE cmd...` runs `cmd...`).
    Process,
    /// The local Docker Engine with [`IMAGE`].
    Docker,
}

impl Runtime {
    fn as_str(self) -> &'static str {
        match self {
            Runtime::Process => "process",
            Runtime::Docker => "docker",
        }
    }
}

/// What a `docker` command did.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The docker CLI, if installed.
pub fn docker_cli() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/local/bin/docker");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
}

/// Makes sure the docker runtime's test image exists (built once per machine).
fn ensure_image() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../swarm-runtime/tests/support/build-test-image.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .arg(IMAGE)
            .status()
            .expect("running build-test-image.sh");
        assert!(status.success(), "building {IMAGE} failed ({status})");
    });
}

/// A `docker` command with the environment that pins it to `host`.
fn cli(host: &str, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(docker_cli().expect("docker CLI"));
    cmd.args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", config)
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command, args: &[&str], stdin: Option<&[u8]>) -> Out {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("spawning docker");
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).await.expect("writing docker's stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("docker {args:?} did not finish in {CLI_TIMEOUT:?}"))
        .expect("docker's output");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `docker args` against the real Docker Engine (for `docker exec` into task containers).
pub async fn engine(args: &[&str]) -> Out {
    let config = tempfile::tempdir().expect("tempdir");
    run(
        cli(&format!("unix://{ENGINE_SOCKET}"), config.path(), args),
        args,
        None,
    )
    .await
}

/// One `swarm-node run` daemon and its private docker CLI configuration.
pub struct Node {
    dir: tempfile::TempDir,
    /// `None`: `--runtime` not given (`auto`).
    runtime: Option<Runtime>,
    init: bool,
    /// Whether `--socket` is given (else the default, `<data-dir>/swarm.sock`).
    explicit_socket: bool,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    /// Starts a daemon (`init`: with `--init`), or `None` when this machine cannot run the test.
    pub async fn start(runtime: Runtime, init: bool) -> Option<Node> {
        Node::start_with(Some(runtime), init, true).await
    }

    /// Starts a daemon with `--runtime` only if `runtime` is given and `--socket` only if
    /// `explicit_socket`.
    pub async fn start_with(
        runtime: Option<Runtime>,
        init: bool,
        explicit_socket: bool,
    ) -> Option<Node> {
        if docker_cli().is_none() {
            skip("no docker CLI (/usr/local/bin/docker or on PATH)");
            return None;
        }
        if runtime == Some(Runtime::Docker) {
            if !Path::new(ENGINE_SOCKET).exists() {
                skip(&format!("no Docker Engine ({ENGINE_SOCKET} is absent)"));
                return None;
            }
            ensure_image();
        }
        let dir = tempfile::Builder::new()
            .prefix("swarm-accept-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("docker-config")).expect("docker config dir");
        let mut node = Node {
            dir,
            runtime,
            init,
            explicit_socket,
            child: None,
            starts: 0,
        };
        node.spawn().await;
        Some(node)
    }

    /// The temporary directory (data, socket, logs; tests may put files here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        if self.explicit_socket {
            self.dir().join("s.sock")
        } else {
            self.data_dir().join("swarm.sock")
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir().join(format!("daemon-{n}.log"))
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("daemon log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm-node"));
        cmd.arg("run").arg("--data-dir").arg(self.data_dir());
        if self.explicit_socket {
            cmd.arg("--socket").arg(self.socket());
        }
        if let Some(r) = self.runtime {
            cmd.args(["--runtime", r.as_str()]);
        }
        if self.init {
            cmd.arg("--init");
        }
        // Tests may only use loopback addresses: the routing mesh listens on 127.0.0.1.
        cmd.args(["--mesh-addr", "127.0.0.1"]);
        // ...and the swarm listener on loopback (any free port).
        cmd.args(["--listen-addr", "127.0.0.1:0"]);
        cmd.env("RUST_LOG", "info,openraft=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawning swarm-node");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let want = format!("export DOCKER_HOST=unix://{}", self.socket().display());
        let announce = format!(
            "swarm-node: serving the Docker API on {}",
            self.socket().display()
        );
        let ready = tokio::time::timeout(TIMEOUT, async {
            let mut seen = Vec::new();
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l == want => {
                        return if seen.contains(&announce) {
                            Ok(seen)
                        } else {
                            Err(seen)
                        }
                    }
                    Ok(Some(l)) => seen.push(l),
                    _ => return Err(seen),
                }
            }
        })
        .await;
        match ready {
            Ok(Ok(_)) => {}
            Ok(Err(seen)) => panic!(
                "swarm-node exited before serving; stdout {seen:?}\n{}",
                self.log_tail()
            ),
            Err(_) => panic!("swarm-node did not serve within {TIMEOUT:?}"),
        }
        // Keep draining stdout so the daemon never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// Stops the daemon with SIGTERM (tasks stopped, raft closed) and waits for it to exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let status = tokio::time::timeout(TIMEOUT, child.wait())
            .await
            .unwrap_or_else(|_| panic!("swarm-node did not stop on SIGTERM\n{}", self.log_tail()))
            .expect("waiting for swarm-node");
        assert!(
            status.success(),
            "swarm-node exited with {status}\n{}",
            self.log_tail()
        );
    }

    /// Stops the daemon and starts it again on the same data directory and socket.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Kills the daemon with SIGKILL (a crash: nothing is stopped or flushed) and reaps it.
    pub async fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        child.start_kill().expect("SIGKILL swarm-node");
        tokio::time::timeout(TIMEOUT, child.wait())
            .await
            .expect("swarm-node did not die of SIGKILL")
            .expect("waiting for swarm-node");
    }

    /// Starts the daemon again on the same data directory and socket (after [`Node::kill`]).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the daemon still runs");
        self.spawn().await;
    }

    /// Pids of the live `swarm-node supervise` processes of this node's data directory.
    pub fn supervisors(&self) -> Vec<u32> {
        processes_with(&self.data_dir().join("supervisors").display().to_string())
    }

    /// `docker args` against this daemon.
    pub async fn docker(&self, args: &[&str]) -> Out {
        self.docker_stdin(args, None).await
    }

    /// `docker args` with `stdin` piped in.
    pub async fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let host = format!("unix://{}", self.socket().display());
        let config = self.dir().join("docker-config");
        run(cli(&host, &config, args), args, stdin).await
    }

    /// `docker args`, which must succeed; its stdout, trimmed.
    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args).await;
        assert_eq!(
            o.code, 0,
            "docker {args:?} failed:\n{}\n{}",
            o.stdout, o.stderr
        );
        o.stdout.trim().to_string()
    }

    /// `docker args` with `stdin`, which must succeed; its stdout, trimmed.
    pub async fn ok_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        let o = self.docker_stdin(args, Some(stdin)).await;
        assert_eq!(
            o.code, 0,
            "docker {args:?} failed:\n{}\n{}",
            o.stdout, o.stderr
        );
        o.stdout.trim().to_string()
    }

    /// `docker args`, which must fail; its stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let o = self.docker(args).await;
        assert_ne!(o.code, 0, "docker {args:?} succeeded:\n{}", o.stdout);
        o.stderr
    }

    /// Polls `docker args` until it succeeds with a stdout for which `pred` holds; returns that
    /// stdout (trimmed). Panics with `what` and the last output after [`TIMEOUT`].
    pub async fn wait_for(&self, what: &str, args: &[&str], pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let o = self.docker(args).await;
            let out = o.stdout.trim().to_string();
            if o.code == 0 && pred(&out) {
                return out;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {what}; last `docker {}`:\n{out}\n{}\n{}",
                    args.join(" "),
                    o.stderr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls `docker args` until it fails with a stderr containing `text`; returns that stderr.
    pub async fn wait_for_error(&self, what: &str, args: &[&str], text: &str) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let o = self.docker(args).await;
            if o.code != 0 && o.stderr.contains(text) {
                return o.stderr;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {what}; last `docker {}` ({}):\n{}\n{}\n{}",
                    args.join(" "),
                    o.code,
                    o.stdout,
                    o.stderr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `docker service ls` shows `replicas` (e.g. `3/3`) for `service`.
    pub async fn wait_replicas(&self, service: &str, replicas: &str) {
        let filter = format!("name={service}");
        self.wait_for(
            &format!("service {service} at {replicas}"),
            &[
                "service",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}} {{.Replicas}}",
            ],
            |out| out.lines().any(|l| l == format!("{service} {replicas}")),
        )
        .await;
    }

    /// `docker service inspect service --format format`.
    pub async fn inspect(&self, service: &str, format: &str) -> String {
        self.ok(&["service", "inspect", service, "--format", format])
            .await
    }

    /// This node's id (`docker info`).
    pub async fn node_id(&self) -> String {
        let id = self.ok(&["info", "--format", "{{.Swarm.NodeID}}"]).await;
        assert_eq!(id.len(), 25, "node id {id:?}");
        id
    }

    /// The output of the running tasks of `service`, through `docker service logs --raw`.
    pub async fn logs(&self, service: &str) -> String {
        let o = self.docker(&["service", "logs", "--raw", service]).await;
        assert_eq!(o.code, 0, "docker service logs {service}: {}", o.stderr);
        o.stdout
    }

    /// Waits until `docker service logs` of `service` contains `text`; returns the logs.
    pub async fn wait_logs(&self, service: &str, text: &str) -> String {
        self.wait_for(
            &format!("{text:?} in the logs of {service}"),
            &["service", "logs", "--raw", service],
            |out| out.contains(text),
        )
        .await
    }

    /// One raw HTTP request to the daemon's API.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> swarm_node::testing::HttpResponse {
        let mut c = swarm_node::testing::HttpClient::connect(&self.socket())
            .await
            .expect("connecting to the API socket");
        c.request(method, path, body).await.expect("HTTP request")
    }

    /// The last lines of the daemon's current log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- swarm-node log ({}) ---\n{}",
            self.log_path(self.starts).display(),
            lines[from..].join("\n")
        )
    }

    /// Sends `sig` to the daemon and waits up to `limit` for it to exit: its exit status and how
    /// long it took, or `None` when it was still running at `limit` (then it stays to be
    /// killed by the drop).
    pub async fn signal_and_wait(
        &mut self,
        sig: i32,
        limit: Duration,
    ) -> Option<(std::process::ExitStatus, Duration)> {
        let mut child = self.child.take().expect("the daemon is not running");
        let pid = child.id().expect("the daemon was already reaped");
        let sent = std::time::Instant::now();
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => Some((status.expect("waiting for swarm-node"), sent.elapsed())),
            Err(_) => {
                self.child = Some(child);
                None
            }
        }
    }

    /// Kills the daemon with SIGKILL (no stop: its tasks are left as they are), then starts it
    /// again on the same data directory and socket.
    pub async fn kill_and_restart(&mut self) {
        let status = self
            .signal_and_wait(libc::SIGKILL, TIMEOUT)
            .await
            .expect("swarm-node did not die on SIGKILL");
        assert!(!status.0.success());
        self.spawn().await;
    }

    /// The node id recorded in the data directory, if the node is in a swarm.
    pub fn stored_node_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data_dir().join("node.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        // `Id` is written as its 25 ASCII bytes (an array of numbers), a plain string by older
        // builds: read both.
        match &v["node_id"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(bytes) => bytes
                .iter()
                .map(|b| {
                    b.as_u64()
                        .and_then(|b| u8::try_from(b).ok())
                        .map(char::from)
                })
                .collect(),
            _ => None,
        }
    }
}

/// One `GET /` over a fresh TCP connection to `127.0.0.1:port` (HTTP/1.0, so the server closes
/// the connection after the answer); the response body, or why the request failed.
pub async fn http_get(port: u16, path: &str) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let req = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        match text.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
                Ok(body.to_string())
            }
            _ => Err(format!("bad response: {text:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), req)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Polls [`http_get`] until it succeeds with a body for which `pred` holds; returns the body.
pub async fn wait_http(port: u16, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let r = http_get(port, "/").await;
        if let Ok(body) = &r {
            if pred(body) {
                return body.clone();
            }
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what} on 127.0.0.1:{port}; last answer: {r:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Pids of live (not zombie) processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true);
        if !zombie && String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Kills a task supervisor this test's daemon left, and its task's process group.
fn kill_supervisor(pid: u32) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let ppid = std::fs::read_to_string(format!("/proc/{child}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(") ")
                    .and_then(|(_, r)| r.split(' ').nth(1).map(str::to_string))
            })
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            // SAFETY: kill(2) on the task (its own process group) this test's daemon started.
            unsafe {
                libc::kill(-child, libc::SIGKILL);
                libc::kill(child, libc::SIGKILL);
            }
        }
    }
    // SAFETY: kill(2) on a supervisor this test's daemon started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Stops a daemon left running by a failed test: SIGTERM first, so that it stops its tasks (the
/// process runtime's children run in their own sessions and would outlive a SIGKILL), SIGKILL if
/// it has not exited after 20 s.
fn terminate(mut child: Child) {
    let Some(pid) = child.id() else { return };
    // SAFETY: kill(2) on our own child, not yet reaped (`id()` is `None` once it is).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // `kill_on_drop` sends SIGKILL.
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        if let Some(child) = self.child.take() {
            terminate(child);
        }
        // Supervised process tasks outlive a daemon that was killed: stop what is left.
        for pid in self.supervisors() {
            kill_supervisor(pid);
        }
        if self.runtime == Some(Runtime::Process) {
            return;
        }
        let Some(id) = self.stored_node_id() else {
            return;
        };
        // Remove whatever containers this node left (a test that failed midway, or a kill).
        let label = format!("label=com.docker.swarm.node.id={id}");
        let Ok(out) = std::process::Command::new(docker_cli().expect("docker CLI"))
            .args(["-H", &format!("unix://{ENGINE_SOCKET}")])
            .args(["ps", "-aq", "--filter", &label])
            .env("DOCKER_CONFIG", self.dir().join("docker-config"))
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new(docker_cli().expect("docker CLI"))
                .args(["-H", &format!("unix://{ENGINE_SOCKET}"), "rm", "-f"])
                .args(&ids)
                .env("DOCKER_CONFIG", self.dir().join("docker-config"))
                .output();
        }
    }
}
