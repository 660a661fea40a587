//! Smoke tests of the swarm side of the etcd comparison: real `kv_server` processes (1 and 3
//! members over the TCP transport) and `kv_load` against them. No etcd needed.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use swarm_benches::kv::{
    read_msg, write_msg, Request, Response, RunResult, ServerStatus, RESULT_PREFIX,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Kills the servers when the test ends, however it ends.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `n` free addresses, each on a loopback address of its own (`127.<pid>.<call>.<i>`): a port
/// freed here and taken again by the server cannot meanwhile be handed to another test's probe
/// or to an outgoing connection, which use other addresses (127.0.0.1 on a shared port made two
/// members of one run collide: "Address already in use").
fn free_ports(n: usize) -> Vec<String> {
    static CALLS: AtomicU8 = AtomicU8::new(1);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let host = 1 + std::process::id() % 250;
    let ls: Vec<_> = (0..n)
        .map(|i| {
            std::net::TcpListener::bind(format!("127.{host}.{call}.{}:0", i + 1)).expect("bind")
        })
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").to_string())
        .collect()
}

/// Starts `n` members (member 1 bootstraps and adds the others); returns them and their client
/// addresses.
fn start(n: usize, dir: &std::path::Path) -> (Servers, Vec<String>) {
    let ports = free_ports(2 * n);
    let (clients, rafts) = (&ports[..n], &ports[n..]);
    let mut servers = Servers(Vec::new());
    for i in 0..n {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kv_server"));
        cmd.arg("--id")
            .arg((i + 1).to_string())
            .arg("--data")
            .arg(dir.join(format!("m{}", i + 1)))
            .args(["--raft", &rafts[i], "--client", &clients[i]]);
        if i == 0 {
            cmd.arg("--bootstrap");
            for (j, r) in rafts.iter().enumerate().skip(1) {
                cmd.arg("--add").arg(format!("{}={r}", j + 1));
            }
        }
        servers
            .0
            .push(cmd.stdin(Stdio::null()).spawn().expect("spawn kv_server"));
    }
    (servers, clients.to_vec())
}

async fn call(s: &mut TcpStream, req: &Request) -> Response {
    write_msg(s, req).await.expect("write");
    read_msg(s).await.expect("read").expect("answer")
}

async fn status(addr: &str) -> Option<ServerStatus> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    match call(&mut s, &Request::Status).await {
        Response::Status(st) => Some(st),
        other => panic!("status answered {other:?}"),
    }
}

/// Polls until `f` holds for the statuses of `addrs` (a hang guard of 60 s, not a speed check).
async fn wait_for(
    addrs: &[String],
    what: &str,
    f: impl Fn(&[ServerStatus]) -> bool,
) -> Vec<ServerStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut sts = Vec::new();
        for a in addrs {
            if let Some(st) = status(a).await {
                sts.push(st);
            }
        }
        if sts.len() == addrs.len() && f(&sts) {
            return sts;
        }
        assert!(
            Instant::now() < deadline,
            "never reached: {what}; last statuses {sts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn put(key: &str, byte: u8) -> Request {
    Request::Put {
        key: key.into(),
        value: vec![byte; 1024],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_keeps_the_last_put_of_each_key_and_survives_bad_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_servers, addrs) = start(1, dir.path());
    let before = wait_for(&addrs, "a leader", |s| s[0].leader).await[0];

    // A frame announcing 4 GiB is refused and only that connection closes.
    let mut bad = TcpStream::connect(&addrs[0]).await.expect("connect");
    bad.write_all(&u32::MAX.to_le_bytes()).await.expect("write");
    let answer = read_msg::<Response>(&mut bad).await;
    assert!(
        !matches!(answer, Ok(Some(_))),
        "an oversized frame got an answer: {answer:?}"
    );

    // 4 connections x 50 puts, overwriting 10 keys each (put i writes byte i to key i % 10).
    let mut tasks = Vec::new();
    for c in 0..4u8 {
        let addr = addrs[0].clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.expect("connect");
            let mut last = 0;
            for i in 0..50u8 {
                match call(&mut s, &put(&format!("c{c}-k{}", i % 10), i)).await {
                    Response::Put(Ok(index)) => {
                        assert!(index > last, "a later put commits at a later index");
                        last = index;
                    }
                    other => panic!("put answered {other:?}"),
                }
            }
            last
        }));
    }
    let mut top = 0;
    for t in tasks {
        top = top.max(t.await.expect("client"));
    }
    // Each key holds the last value written to it.
    let mut s = TcpStream::connect(&addrs[0]).await.expect("connect");
    for c in 0..4u8 {
        for k in 0..10u8 {
            let got = call(
                &mut s,
                &Request::Get {
                    key: format!("c{c}-k{k}"),
                },
            )
            .await;
            match got {
                Response::Get(Some(v)) => assert_eq!(v, vec![40 + k; 1024], "c{c}-k{k}"),
                other => panic!("c{c}-k{k}: {other:?}"),
            }
        }
    }
    match call(
        &mut s,
        &Request::Get {
            key: "never".into(),
        },
    )
    .await
    {
        Response::Get(None) => {}
        other => panic!("a key never put: {other:?}"),
    }
    // 200 puts are at most 200 entries (group commit may merge concurrent ones), each made
    // durable by some fsync.
    let after = status(&addrs[0]).await.expect("status");
    assert!(after.last_log_index >= top);
    let entries = after.entries - before.entries;
    assert!(
        (1..=200).contains(&entries),
        "{entries} entries for 200 puts"
    );
    let fsyncs = after.fsyncs - before.fsyncs;
    assert!(
        (1..=entries).contains(&fsyncs),
        "{fsyncs} fsyncs for {entries} entries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_over_tcp_and_kv_load_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (servers, addrs) = start(3, dir.path());
    let sts = wait_for(&addrs, "a leader with 3 voters", |s| {
        s.iter().any(|m| m.leader && m.voters == 3)
    })
    .await;
    let leader = addrs[sts.iter().position(|m| m.leader).expect("leader")].clone();

    let pids: Vec<String> = servers.0.iter().map(|c| c.id().to_string()).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_kv_load"))
        .args(["--system", "swarm", "--members", "3", "--clients", "4"])
        .args(["--warmup", "0.2", "--duration", "1", "--keys", "64"])
        .arg("--endpoints")
        .arg(addrs.join(","))
        .arg("--server-pids")
        .arg(pids.join(","))
        .output()
        .expect("run kv_load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kv_load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .expect("a result line");
    let r: RunResult = serde_json::from_str(line).expect("result json");
    assert_eq!(
        (r.system.as_str(), r.members, r.clients, r.errors),
        ("swarm", 3, 4, 0)
    );
    assert!(r.puts > 0 && r.fsyncs > 0 && r.entries > 0, "{r:?}");
    assert!(r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms, "{r:?}");

    // Every member ends with the leader's log.
    let mut s = TcpStream::connect(&leader).await.expect("connect");
    let Response::Put(Ok(index)) = call(&mut s, &put("last", 1)).await else {
        panic!("put on the leader failed");
    };
    wait_for(&addrs, "followers caught up", |s| {
        s.iter().all(|m| m.last_log_index >= index)
    })
    .await;
}
