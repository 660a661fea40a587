//! The cluster CA across processes: `swarm-node run` daemons in network namespaces
//! (`multihost_support/`), driven by the docker CLI.
//!
//! One scenario per test, each on its own hosts:
//! - `root_rotation_converges_with_services_running`: 3 managers + 2 workers on the process
//!   runtime with a replicated service; `docker swarm ca --rotate` ends with every host's
//!   certificate (the chain its daemon stored) issued by the new root, `swarm ca` and every
//!   node's TLSInfo (the cluster's root, as this implementation reports it) showing the new root
//!   on every manager, the service's tasks unchanged (same ids, still running, none added) and a
//!   scale through every manager placing tasks on every host.
//! - `managers_and_workers_renew_short_lived_certificates`: `swarm update --cert-expiry 1h` and
//!   the test-only renewal speedup (`SWARM_NODE_TEST_RENEWAL_SPEEDUP`, see
//!   `swarm_node::net::ca::RENEWAL_SPEEDUP_ENV`), 3 managers and a worker: every node replaces
//!   its certificate (new serial, 1 h validity), and keeps doing so after the manager the worker
//!   joined through is killed (the worker renews through the other managers); each daemon logs
//!   its renewals and the cluster keeps working (writes through the managers left, tasks on
//!   every live host).
//! - `a_worker_certificate_is_refused_on_raft`: from inside the worker's namespace, a client
//!   presenting the worker's valid cluster certificate calls `raft.v1.read_index` and
//!   `raft.v1.propose` on the leader: `PermissionDenied`; a manager's certificate is answered,
//!   and the worker's is admitted where workers may call.
//! - `node_rm_force_refuses_the_removed_certificates_also_after_a_restart`: `docker node rm
//!   --force` of a worker that is Down and of one that is Ready: their tasks are replaced on the
//!   remaining hosts, and their certificates are refused on the dispatcher (also after the
//!   manager restarts) while the remaining worker's is admitted.
//!
//! Raft and CA calls with a node's own certificate are made by [`probe`]: this test binary run
//! again inside a host's namespace (`ip netns exec`), with the ignored test `rpc_probe`.

mod multihost_support;

use std::collections::BTreeSet;
use std::path::Path;

use multihost_support::{Cluster, Host, Runtime};
use swarm_net::pki::bundle::parse_pem;
use swarm_net::pki::CertInfo;

/// The leaf of the certificate a host's daemon stored (`certificates/swarm-node.crt`).
fn stored_leaf(h: &Host) -> CertInfo {
    leaf_in(&h.data_dir())
}

fn leaf_in(data_dir: &Path) -> CertInfo {
    let path = data_dir.join("certificates").join("swarm-node.crt");
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let chain = parse_pem(&pem).expect("a PEM chain");
    CertInfo::parse(&chain[0]).expect("a certificate")
}

/// The subject key id of the (first) root in `pem`.
fn root_key_id(pem: &str) -> Vec<u8> {
    let certs = parse_pem(pem.as_bytes()).expect("a PEM root");
    CertInfo::parse(&certs[0])
        .expect("a root certificate")
        .subject_key_id
        .expect("a subject key id")
}

/// The ids of every task of `service` (history included).
async fn task_ids(h: &Host, service: &str) -> BTreeSet<String> {
    h.ok(&["service", "ps", service, "-q", "--no-trunc"])
        .await
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_converges_with_services_running() {
    let Some(mut c) = Cluster::new(5, Runtime::Process) else {
        return;
    };
    c.start_all().await;
    c.form(2, 2).await;
    let h0 = c.host(0);
    h0.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "5",
        "busybox",
        "sleep",
        "3600",
    ])
    .await;
    h0.wait_replicas("web", "5/5").await;
    let before = task_ids(h0, "web").await;
    let running_before: BTreeSet<String> = h0
        .running_tasks("web")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(running_before.len(), 5);
    let old_root = h0.ok(&["swarm", "ca"]).await;
    let old_key = root_key_id(&old_root);
    for h in c.hosts() {
        assert_eq!(stored_leaf(h).authority_key_id, Some(old_key.clone()));
    }

    h0.ok(&["swarm", "ca", "--rotate", "--detach"]).await;
    // The rotation ends when every node holds a certificate from the new root: `swarm ca` then
    // shows the new root alone.
    let new_root = h0
        .wait_for("the rotation to finish", &["swarm", "ca"], |out| {
            !out.is_empty() && out != old_root
        })
        .await;
    let new_key = root_key_id(&new_root);
    assert_ne!(new_key, old_key);
    for h in c.hosts() {
        let leaf = stored_leaf(h);
        assert_eq!(
            leaf.authority_key_id,
            Some(new_key.clone()),
            "host {} holds a certificate from the new root",
            h.ip()
        );
    }
    // Every manager answers the new root, for the cluster and for every node.
    let ids = h0.ok(&["node", "ls", "-q"]).await;
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 5);
    for m in 0..3 {
        let h = c.host(m);
        h.wait_for("the new root on this manager", &["swarm", "ca"], |out| {
            out == new_root
        })
        .await;
        for id in &ids {
            let root = h
                .ok(&[
                    "node",
                    "inspect",
                    id,
                    "--format",
                    "{{.Description.TLSInfo.TrustRoot}}",
                ])
                .await;
            assert_eq!(root.trim(), new_root.trim(), "node {id} on manager {m}");
        }
    }
    // The service was not touched: the same tasks, all still running, none added.
    assert_eq!(task_ids(h0, "web").await, before);
    let running_after: BTreeSet<String> = h0
        .running_tasks("web")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(running_after, running_before);

    // Writes through every manager, and the new tasks run on every host.
    for (m, replicas) in [(0, 6), (1, 8), (2, 10)] {
        c.host(m)
            .ok(&["service", "scale", "--detach", &format!("web={replicas}")])
            .await;
        c.host(m)
            .wait_replicas("web", &format!("{replicas}/{replicas}"))
            .await;
    }
    let placed = h0.running_tasks("web").await;
    let hosts: BTreeSet<&str> = placed.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        hosts.len(),
        5,
        "tasks on every host after the rotation: {placed:?}"
    );
    // The old tasks are among them, untouched.
    let ids_now: BTreeSet<String> = placed.into_iter().map(|(id, _)| id).collect();
    assert!(running_before.is_subset(&ids_now));
}

/// Polls until `pred` holds for the leaf each of `hosts` stored; the leaves then.
async fn wait_leaves(
    c: &Cluster,
    hosts: &[usize],
    what: &str,
    pred: impl Fn(usize, &CertInfo) -> bool,
) -> Vec<CertInfo> {
    let deadline = tokio::time::Instant::now() + multihost_support::TIMEOUT;
    loop {
        let leaves: Vec<CertInfo> = hosts.iter().map(|i| stored_leaf(c.host(*i))).collect();
        if hosts.iter().zip(&leaves).all(|(i, l)| pred(*i, l)) {
            return leaves;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            c.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_and_workers_renew_short_lived_certificates() {
    let Some(mut c) = Cluster::new(4, Runtime::Sim) else {
        return;
    };
    // A 90-day certificate renews after 45-72 days: divided by 10^6, after 4-7 s. A 1 h one
    // (backdated 1 h) renews within 36 min: then at the 1 s floor of the speedup.
    for i in 0..4 {
        c.host_mut(i)
            .set_env(swarm_node::net::ca::RENEWAL_SPEEDUP_ENV, "1000000");
    }
    c.start_all().await;
    let h0 = c.host(0);
    let tokens = h0.init(&[]).await;
    h0.ok(&["swarm", "update", "--cert-expiry", "1h"]).await;
    let expiry = h0
        .ok(&[
            "info",
            "--format",
            "{{.Swarm.Cluster.Spec.CAConfig.NodeCertExpiry}}",
        ])
        .await;
    assert_eq!(expiry, "1h0m0s");
    c.host(1).join(&tokens.manager, h0).await;
    c.host(2).join(&tokens.manager, h0).await;
    c.host(3).join(&tokens.worker, h0).await;
    h0.wait_ready(4).await;
    let first: Vec<CertInfo> = (0..4).map(|i| stored_leaf(c.host(i))).collect();

    // Every node renews onto a 1 h certificate (2 h window with the backdate)...
    let hour =
        |l: &CertInfo| l.not_after.since(l.not_before) == std::time::Duration::from_secs(7200);
    let renewed = wait_leaves(
        &c,
        &[0, 1, 2, 3],
        "every node on a renewed 1 h certificate",
        |i, l| l.serial != first[i].serial && hour(l),
    )
    .await;
    // ... and keeps renewing after the manager the worker joined through (and renewed with so
    // far) is gone: the worker turns to the managers its sessions announce.
    c.host_mut(0).kill().await;
    let renewed = wait_leaves(&c, &[1, 2, 3], "every node renewed once more", |i, l| {
        l.serial != renewed[i].serial && l.serial != first[i].serial && hour(l)
    })
    .await;
    wait_leaves(&c, &[1, 2, 3], "every node renewed again", |i, l| {
        l.serial != renewed[i - 1].serial && hour(l)
    })
    .await;

    // The cluster keeps working: writes through both managers left, tasks on every live host.
    let h1 = c.host(1);
    h1.wait_for(
        "the live nodes ready",
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        |out| {
            ["host1 Ready", "host2 Ready", "host3 Ready"]
                .iter()
                .all(|w| out.lines().any(|l| l == *w))
        },
    )
    .await;
    h1.wait_for(
        "a write through host1",
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "after",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            "3600",
        ],
        |_| true,
    )
    .await;
    h1.wait_replicas("after", "3/3").await;
    c.host(2)
        .ok(&["service", "scale", "--detach", "after=6"])
        .await;
    c.host(2).wait_replicas("after", "6/6").await;
    let placed = h1.running_tasks("after").await;
    let hosts: BTreeSet<&str> = placed.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        hosts,
        BTreeSet::from(["host1", "host2", "host3"]),
        "tasks on every live host: {placed:?}"
    );
    // The daemons log each renewal.
    for h in c.hosts() {
        let log = std::fs::read_to_string(h.dir().join("daemon-1.log")).unwrap_or_default();
        assert!(
            log.contains("node certificate renewed"),
            "host {} logged no renewal",
            h.ip()
        );
    }
}

/// What one probe call answered: `ok`, `denied <code>: <message>` or `error <text>`.
async fn probe(host: &Host, data_dir: &Path, target: &Host, call: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let exe = exe.display().to_string();
    let out = host
        .exec(
            "env",
            &[
                &format!("SWARMT_PROBE_DATA_DIR={}", data_dir.display()),
                &format!("SWARMT_PROBE_TARGET={}", target.addr()),
                &format!("SWARMT_PROBE_CALL={call}"),
                &exe,
                "rpc_probe",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ],
        )
        .await;
    out.stdout
        .lines()
        .find_map(|l| l.split_once("PROBE-RESULT ").map(|(_, r)| r))
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!(
                "the probe answered nothing:\n{}\n{}",
                out.stdout, out.stderr
            )
        })
}

/// Not a test by itself: [`probe`] runs it inside a host's namespace. It calls one method on
/// `SWARMT_PROBE_TARGET` presenting the certificate stored in `SWARMT_PROBE_DATA_DIR` and prints
/// `PROBE-RESULT <outcome>`.
#[tokio::test]
#[ignore = "run by the other tests inside a host's namespace"]
async fn rpc_probe() {
    use swarm_net::rpc::{Client, Peer, RpcError, TlsState};
    let (Ok(dir), Ok(target), Ok(call)) = (
        std::env::var("SWARMT_PROBE_DATA_DIR"),
        std::env::var("SWARMT_PROBE_TARGET"),
        std::env::var("SWARMT_PROBE_CALL"),
    ) else {
        panic!("rpc_probe runs only with SWARMT_PROBE_* set (see `probe`)");
    };
    let material = swarm_node::net::node::load_material(Path::new(&dir))
        .expect("the stored certificate")
        .expect("a certificate");
    let me = material.identity().node_id;
    let tls = TlsState::new(&material).expect("TLS state");
    let client = Client::bind(
        "0.0.0.0:0".parse().unwrap(),
        tls,
        swarm_node::net::node::rpc_config(&swarm_raft::entropy::os()),
    )
    .expect("a client");
    let peer = Peer {
        addr: target.parse().expect("target address"),
        role: swarm_net::Role::Manager,
        node_id: None,
    };
    let t = std::time::Duration::from_secs(10);
    let result: Result<(), RpcError> = match call.as_str() {
        "read_index" => client
            .unary(
                &peer,
                &swarm_node::net::raft::READ_INDEX,
                &swarm_raft::RaftRpc::ReadIndex,
                t,
            )
            .await
            .map(drop),
        "propose" => client
            .unary(
                &peer,
                &swarm_node::net::raft::PROPOSE,
                &swarm_raft::RaftRpc::Propose(Vec::new()),
                t,
            )
            .await
            .map(drop),
        "cert_status" => client
            .unary(
                &peer,
                &swarm_node::net::ca::NODE_CERTIFICATE_STATUS,
                &swarm_node::net::ca::StatusRequest { node_id: me },
                t,
            )
            .await
            .map(drop),
        "heartbeat" => client
            .unary(
                &peer,
                &swarm_node::net::dispatch::HEARTBEAT,
                &swarm_node::net::dispatch::HeartbeatRequest { session_id: 0 },
                t,
            )
            .await
            .map(drop),
        other => panic!("unknown probe call {other}"),
    };
    let outcome = match result {
        Ok(()) => "ok".to_string(),
        Err(RpcError::PermissionDenied(m)) => format!("denied permission: {m}"),
        Err(RpcError::Authentication(m)) => format!("denied authentication: {m}"),
        Err(RpcError::Status(s)) => format!("status {:?}: {}", s.code, s.message),
        Err(e) => format!("error {e}"),
    };
    println!("PROBE-RESULT {outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_certificate_is_refused_on_raft() {
    let Some(mut c) = Cluster::new(3, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    c.form(1, 1).await;
    let h0 = c.host(0);
    let (worker, manager) = (c.host(2), c.host(1));
    assert_eq!(leaf_role(worker).await, "worker");
    for call in ["read_index", "propose"] {
        let got = probe(worker, &worker.data_dir(), h0, call).await;
        assert!(
            got.starts_with("denied permission"),
            "a worker certificate on raft.v1.{call}: {got}"
        );
    }
    // The same worker certificate is good for what workers may call.
    let got = probe(worker, &worker.data_dir(), h0, "cert_status").await;
    assert_eq!(got, "ok");
    // A manager's certificate is answered on raft.
    let got = probe(manager, &manager.data_dir(), h0, "read_index").await;
    assert_eq!(got, "ok", "a manager certificate on raft.v1.read_index");
}

/// The role a host's `docker info` shows.
async fn leaf_role(h: &Host) -> String {
    let control = h
        .ok(&["info", "--format", "{{.Swarm.ControlAvailable}}"])
        .await;
    if control == "true" {
        "manager"
    } else {
        "worker"
    }
    .to_string()
}

/// A heartbeat for a session that does not exist, admitted: the dispatcher answers it.
fn admitted(got: &str) {
    assert!(
        got.starts_with("status FailedPrecondition: the session is not current"),
        "the certificate is refused: {got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_rm_force_refuses_the_removed_certificates_also_after_a_restart() {
    let Some(mut c) = Cluster::new(4, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    c.form(0, 3).await;
    let h0 = c.host(0);
    let down_id = c.host(1).node_id().await;
    let ready_id = c.host(2).node_id().await;
    h0.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "8",
        "busybox",
        "sleep",
        "3600",
    ])
    .await;
    h0.wait_replicas("web", "8/8").await;
    let placed = h0.running_tasks("web").await;
    for host in ["host1", "host2"] {
        assert!(
            placed.iter().any(|(_, n)| n == host),
            "tasks on {host} before the removal: {placed:?}"
        );
    }
    // Before: both workers' certificates are admitted.
    for i in [1, 2] {
        let h = c.host(i);
        admitted(&probe(h, &h.data_dir(), h0, "heartbeat").await);
    }

    // host1 goes down (its process stops); host2 stays Ready.
    c.host_mut(1).kill().await;
    let h0 = c.host(0);
    h0.wait_for(
        "host1 down",
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        |out| out.lines().any(|l| l == "host1 Down"),
    )
    .await;
    let e = h0.fails(&["node", "rm", &ready_id]).await;
    assert!(e.contains("is not down and can't be removed"), "{e}");
    h0.ok(&["node", "rm", "--force", &down_id]).await;
    h0.ok(&["node", "rm", "--force", &ready_id]).await;
    let ls = h0.ok(&["node", "ls", "--format", "{{.Hostname}}"]).await;
    assert_eq!(
        ls.lines().collect::<BTreeSet<_>>(),
        BTreeSet::from(["host0", "host3"]),
        "{ls}"
    );
    // Their tasks are replaced on the remaining hosts.
    h0.wait_for(
        "8 replicas running on host0 and host3",
        &[
            "service",
            "ps",
            "web",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ],
        |out| {
            let run: Vec<&str> = out.lines().filter(|l| l.contains(" Running")).collect();
            run.len() == 8
                && run
                    .iter()
                    .all(|l| l.starts_with("host0 ") || l.starts_with("host3 "))
        },
    )
    .await;

    // The removed certificates are refused (the stopped host's certificate is presented by the
    // probe from its data directory), the remaining worker's is not.
    let refused = |got: &str| got.starts_with("denied") || got.contains("removed");
    for i in [1, 2] {
        let h = c.host(i);
        let got = probe(h, &h.data_dir(), h0, "heartbeat").await;
        assert!(refused(&got), "removed host{i}: {got}");
    }
    let h3 = c.host(3);
    admitted(&probe(h3, &h3.data_dir(), h0, "heartbeat").await);

    // The manager restarts: the refusals survive it.
    c.host_mut(0).stop().await;
    c.host_mut(0).start().await;
    let h0 = c.host(0);
    h0.wait_ready(2).await;
    for i in [1, 2] {
        let h = c.host(i);
        let got = probe(h, &h.data_dir(), h0, "heartbeat").await;
        assert!(refused(&got), "removed host{i} after the restart: {got}");
    }
    let h3 = c.host(3);
    admitted(&probe(h3, &h3.data_dir(), h0, "heartbeat").await);
}
