//! The routing mesh's kernel path for local ingress (`MeshConfig::kernel_ingress`: nftables
//! DNAT, root): connections to a published port that go to a task on this node are carried by
//! the kernel, balanced over the tasks, following task health and state; the table is removed
//! at stop and a stale one at start.
//!
//! The test runs in a network namespace of its own (its thread `unshare`s one, and runs a
//! current-thread tokio runtime there, so the mesh's sockets and the `nft` it spawns live in
//! that namespace): the host's ruleset is never touched. Needs root and `nft`; skips loudly
//! otherwise.
//!
//! Why it proves the kernel carried a connection: a backend answers with the source port it
//! sees. DNAT keeps the client's source port; the userspace proxy connects from a port of its
//! own. So "the backend saw my port" means no proxy was on the path.

#[path = "skip/mod.rs"]
mod skip;

mod mesh_support;

use std::net::SocketAddr;
use std::process::Command;

use mesh_support::{lo, tcp, wait_until, Fixture};
use swarm_core::objects::service::Protocol;
use swarm_core::objects::task::Health;
use swarm_core::TaskState;
use swarm_node::mesh::MeshConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const PUBLISHED: u16 = 18080;
const TARGET: u16 = 18081;

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().expect("nft runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A backend named `name` on `addr`: answers each connection with `<name> <peer port>`.
async fn backend(name: &'static str, addr: SocketAddr) {
    let l = TcpListener::bind(addr).await.expect("bind backend");
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = l.accept().await {
            let _ = s
                .write_all(format!("{name} {}\n", peer.port()).as_bytes())
                .await;
        }
    });
}

/// One connection to the published port: which backend answered, and whether the kernel
/// carried it (the backend saw this connection's own source port).
async fn ask() -> Option<(String, bool)> {
    let s = TcpStream::connect(SocketAddr::new(lo(1), PUBLISHED))
        .await
        .ok()?;
    let mine = s.local_addr().ok()?.port();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).await.ok()?;
    let (name, port) = line.trim().split_once(' ')?;
    Some((name.to_string(), port.parse::<u16>().ok()? == mine))
}

/// Asks `n` times; the answers in order.
async fn ask_many(n: usize) -> Vec<(String, bool)> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(ask().await.expect("an answer"));
    }
    v
}

async fn scenario() {
    assert!(Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip runs")
        .success());
    // A stale table, as a crashed daemon would leave it: removed at start.
    let stale = "table ip swarm_ingress {\n chain output {\n  type nat hook output priority -100; policy accept;\n  tcp dport 1 accept\n }\n}\n";
    let mut c = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    std::io::Write::write_all(&mut c.stdin.take().expect("stdin"), stale.as_bytes())
        .expect("write");
    assert!(c.wait().expect("nft").success());
    assert!(nft(&["list", "tables"]).contains("swarm_ingress"));

    let f = Fixture::with(MeshConfig {
        addr: lo(1),
        kernel_ingress: true,
        ..MeshConfig::default()
    });
    let s = f.publish(1, Protocol::Tcp, PUBLISHED, TARGET).await;
    wait_until("the stale table is gone", || async {
        !nft(&["list", "ruleset"]).contains("dport 1 accept")
    })
    .await;

    backend("b2", SocketAddr::new(lo(2), TARGET)).await;
    backend("b3", SocketAddr::new(lo(3), TARGET)).await;
    let key = tcp(PUBLISHED);
    let t2 = f.run_task(10, &s, lo(2)).await;
    let t3 = f.run_task(11, &s, lo(3)).await;
    wait_until("the kernel carries the port", || {
        let ok = f.mesh.is_listening(key) && f.mesh.kernel_carries(key).0;
        async move { ok }
    })
    .await;
    // Two backends: numgen alternates between them, and every connection is the kernel's.
    let got = ask_many(8).await;
    assert!(got.iter().all(|(_, k)| *k), "all in the kernel: {got:?}");
    let b2 = got.iter().filter(|(n, _)| n == "b2").count();
    assert_eq!(b2, 4, "balanced over both tasks: {got:?}");
    for w in got.windows(2) {
        assert_ne!(w[0].0, w[1].0, "round robin: {got:?}");
    }

    // An unhealthy task leaves the rules: only b2 answers, still in the kernel.
    f.edit_task(t3, |t| t.status.health = Some(Health::Unhealthy))
        .await;
    wait_until("only b2 is a target", || async {
        ask_many(4).await.iter().all(|(n, k)| n == "b2" && *k)
    })
    .await;
    let rules = nft(&["list", "table", "ip", "swarm_ingress"]);
    assert!(
        rules.contains("mod 1 map { 0 : 127.0.0.2 . 18081 }"),
        "{rules}"
    );

    // Healthy again: both; then b2's stop is committed: only b3.
    f.edit_task(t3, |t| t.status.health = Some(Health::Healthy))
        .await;
    wait_until("b3 is back", || async {
        ask_many(4).await.iter().any(|(n, _)| n == "b3")
    })
    .await;
    f.edit_task(t2, |t| t.desired_state = TaskState::Shutdown)
        .await;
    wait_until("only b3 is a target", || async {
        ask_many(4).await.iter().all(|(n, k)| n == "b3" && *k)
    })
    .await;

    // No backend left: no rule for the port (the userspace listener takes the connection and
    // closes it, having no task).
    f.edit_task(t3, |t| t.desired_state = TaskState::Shutdown)
        .await;
    wait_until("the port's rule is gone", || async {
        !nft(&["list", "ruleset"]).contains("dport 18080") && !f.mesh.kernel_carries(key).0
    })
    .await;
    assert!(ask().await.is_none(), "no task: no answer");

    // Stop removes the table.
    f.mesh.stop().await;
    assert!(
        !nft(&["list", "tables"]).contains("swarm_ingress"),
        "{}",
        nft(&["list", "ruleset"])
    );
}

#[test]
fn the_kernel_carries_local_ingress_and_follows_the_tasks() {
    if !is_root() {
        skip::skip("the kernel ingress path needs root (nftables in a network namespace)");
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        skip::skip("nft (Debian package nftables) is not installed");
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: unshare only changes this thread's namespaces; no memory is shared with it.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(scenario());
    })
    .join()
    .expect("the scenario passed");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
