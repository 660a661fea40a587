//! The routing mesh across hosts (issue 16, deliverable 1): two `swarm-node run` daemons in
//! network namespaces (`multihost_support/`), a manager (host0) and a worker (host1), the
//! process runtime (tasks are local processes listening on their host's loopback, which no
//! other host can reach directly).
//!
//! Properties:
//! - a published port answers on every host, from a task pinned to another host: host0's port
//!   reaches host1's task and host1's (a worker, which has no store) reaches host0's;
//! - killing a host mid-stream ends the connections through it and only those: a client on
//!   host0 holding one connection to host1's task and one to host0's own sees the first end and
//!   the second keep echoing.
//!
//! Why it proves it: each echo task prefixes its replies with its host's name, so the reply
//! says which task answered; the tasks listen on 127.0.0.1 inside their own namespace, so a
//! reply from the other host's task can only have come through the mesh stream between the
//! hosts.

mod multihost_support;

use std::process::Stdio;
use std::time::Duration;

use multihost_support::{Cluster, Host, Runtime, TIMEOUT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

/// A TCP echo server: `echo.py <port> <tag>` answers every chunk with `<tag>:<chunk>`.
const ECHO: &str = r#"
import socket, sys, threading
port, tag = int(sys.argv[1]), sys.argv[2].encode()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(tag + b":" + d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A client: `client.py hold|once <port>...` connects to each port, sends `ping`, prints
/// `<port> <reply>`; with `hold`, prints `ready`, waits for a line on stdin, then sends `again`
/// on each connection and prints `<port> <reply>` or `<port> closed`.
const CLIENT: &str = r#"
import socket, sys
mode, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
conns = []
for p in ports:
    try:
        c = socket.create_connection(("127.0.0.1", p), timeout=10)
        c.sendall(b"ping")
        r = c.recv(65536)
        print(p, r.decode() if r else "closed", flush=True)
        conns.append((p, c))
    except OSError as e:
        print(p, "error", e, flush=True)
if mode == "hold":
    print("ready", flush=True)
    sys.stdin.readline()
    for p, c in conns:
        try:
            c.settimeout(60)
            c.sendall(b"again")
            r = c.recv(65536)
            print(p, r.decode() if r else "closed", flush=True)
        except OSError:
            print(p, "closed", flush=True)
"#;

/// Writes the scripts into `dir`; their paths.
fn scripts(dir: &std::path::Path) -> (String, String) {
    let echo = dir.join("echo.py");
    let client = dir.join("client.py");
    std::fs::write(&echo, ECHO).unwrap();
    std::fs::write(&client, CLIENT).unwrap();
    (
        echo.to_str().unwrap().to_string(),
        client.to_str().unwrap().to_string(),
    )
}

/// Creates an echo service pinned to `on` (tagged with its hostname), publishing `published`.
async fn echo_service(h0: &Host, name: &str, on: &str, published: u16, echo: &str) {
    let target = (published + 100).to_string();
    h0.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--constraint",
        &format!("node.hostname=={on}"),
        "--publish",
        &format!("{published}:{target}"),
        "python",
        "/usr/bin/python3",
        echo,
        &target,
        on,
    ])
    .await;
}

/// Runs the client once on `h` against `port` until it gets `want` (the mesh view reaches
/// every host a moment after the task runs).
async fn wait_reply(h: &Host, client: &str, port: u16, want: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let expect = format!("{port} {want}");
    loop {
        let out = h
            .exec("/usr/bin/python3", &[client, "once", &port.to_string()])
            .await;
        if out.stdout.trim() == expect {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} on {} never answered {want:?}; last: {:?} {:?}",
            h.ip(),
            out.stdout,
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_ports_answer_across_hosts_and_a_lost_host_ends_only_its_connections() {
    let Some(mut c) = Cluster::new(2, Runtime::Process) else {
        return;
    };
    c.start_all().await;
    c.form(0, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (echo, client) = scripts(dir.path());
    let h0 = c.host(0);
    echo_service(h0, "on1", "host1", 18_100, &echo).await;
    echo_service(h0, "on0", "host0", 18_101, &echo).await;
    h0.wait_replicas("on1", "1/1").await;
    h0.wait_replicas("on0", "1/1").await;

    // Every host answers on every published port, from the task wherever it runs.
    wait_reply(h0, &client, 18_100, "host1:ping").await;
    wait_reply(c.host(1), &client, 18_101, "host0:ping").await;
    wait_reply(c.host(1), &client, 18_100, "host1:ping").await;
    wait_reply(h0, &client, 18_101, "host0:ping").await;

    // A client on host0 holds a connection through the mesh to host1's task and one to host0's
    // own task; host1 dies.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", h0.namespace(), "/usr/bin/python3"])
        .args([client.as_str(), "hold", "18100", "18101"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert_eq!(line(&mut lines).await, "18100 host1:ping");
    assert_eq!(line(&mut lines).await, "18101 host0:ping");
    assert_eq!(line(&mut lines).await, "ready");
    c.host_mut(1).kill().await;
    let mut stdin = holder.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();
    // The connection through host1 ends (once host0 notices host1 is gone); host0's own task
    // still echoes on the other.
    assert_eq!(line(&mut lines).await, "18100 closed");
    assert_eq!(line(&mut lines).await, "18101 host0:again");
    drop(stdin);
    let _ = holder.wait().await;
}

/// The client's next line.
async fn line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("the client answers in time")
        .expect("reading the client's output")
        .expect("the client printed a line")
}
