//! Disaster recovery across processes: `swarm-node run` daemons in network namespaces
//! (`multihost_support/`), driven by the docker CLI and the `swarm-node backup|restore`
//! subcommands.
//!
//! One scenario per test, each on its own hosts:
//! - `autolocked_managers_restart_locked_and_unlock_one_by_one`: `swarm init --autolock`, 3
//!   managers; each manager process in turn is stopped and started again: it comes back locked
//!   (cluster requests refused with Docker's words), the other two keep quorum and take writes
//!   meanwhile, and `docker swarm unlock` with the key brings it back as a reachable manager. Every
//!   object is there at the end. On disk (while locked), neither a secret's value nor the root CA
//!   certificate (stored in the cluster object next to the root CA key) appears in any file of the
//!   manager: the store is sealed under the unlock key.
//! - `restore_on_a_fresh_host_then_force_new_cluster`: `swarm-node backup` of a stopped manager,
//!   `swarm-node restore` into the empty data directory of another host, started there and
//!   `swarm init --force-new-cluster --advertise-addr` its own address: every service, secret,
//!   config and network is there, the manager advertises its new address, a manager joins the
//!   new cluster (raft with the moved manager), and a worker joins with its token and runs tasks.

mod multihost_support;

use std::path::Path;

use multihost_support::{Cluster, Host, Runtime};

const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used.";
const SECRET_VALUE: &str = "dr-secret-value-4f1c9a";

/// `name` of every object `docker KIND ls` lists (with `extra` arguments).
async fn names(h: &Host, kind: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![kind, "ls", "--format", "{{.Name}}"];
    args.extend_from_slice(extra);
    let mut v: Vec<String> = h.ok(&args).await.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Creates a service, a secret, a config and an overlay network through `h`.
async fn populate(h: &Host) {
    h.ok_stdin(&["secret", "create", "s1", "-"], SECRET_VALUE.as_bytes())
        .await;
    h.ok_stdin(&["config", "create", "c1", "-"], b"config-body")
        .await;
    h.ok(&["network", "create", "--driver", "overlay", "net1"])
        .await;
    h.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "--secret",
        "s1",
        "--config",
        "c1",
        "--network",
        "net1",
        "busybox",
        "sleep",
        "3600",
    ])
    .await;
}

/// What [`populate`] made, as `h` lists it.
async fn objects(h: &Host) -> Vec<Vec<String>> {
    vec![
        names(h, "service", &[]).await,
        names(h, "secret", &[]).await,
        names(h, "config", &[]).await,
        names(h, "network", &["--filter", "name=net1"]).await,
    ]
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

/// 3 managers, one leader and two reachable.
fn all_reachable(out: &str) -> bool {
    out.lines().count() == 3
        && out.lines().filter(|l| l.ends_with(" Leader")).count() == 1
        && out.lines().filter(|l| l.ends_with(" Reachable")).count() == 2
}

/// Waits until the leader lists the 3 managers reachable.
async fn wait_all_reachable(c: &Cluster, what: &str) {
    let deadline = tokio::time::Instant::now() + multihost_support::TIMEOUT;
    loop {
        for (i, h) in c.hosts().iter().enumerate() {
            let o = h
                .docker(&["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"])
                .await;
            let leader = format!("host{i} Leader");
            if o.code == 0
                && o.stdout.lines().any(|l| l.trim() == leader)
                && all_reachable(&o.stdout)
            {
                return;
            }
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
async fn autolocked_managers_restart_locked_and_unlock_one_by_one() {
    let Some(mut c) = Cluster::new(3, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    let h0 = c.host(0);
    h0.ok(&["swarm", "init", "--autolock", "--advertise-addr", h0.ip()])
        .await;
    let key = h0.ok(&["swarm", "unlock-key", "-q"]).await;
    assert!(key.starts_with("SWMKEY-1-"), "{key}");
    let manager_token = h0.ok(&["swarm", "join-token", "-q", "manager"]).await;
    c.host(1).join(&manager_token, h0).await;
    c.host(2).join(&manager_token, h0).await;
    wait_all_reachable(&c, "3 managers").await;
    let h0 = c.host(0);
    populate(h0).await;
    h0.wait_replicas("web", "2/2").await;
    let want = objects(h0).await;
    assert_eq!(
        want,
        vec![
            vec!["web".to_string()],
            vec!["s1".to_string()],
            vec!["c1".to_string()],
            vec!["net1".to_string()]
        ]
    );
    let root_pem = h0.ok(&["swarm", "ca"]).await;
    let root_der = swarm_net::pki::bundle::parse_pem(root_pem.as_bytes())
        .expect("the root CA")
        .remove(0);

    for (i, replicas) in [(0usize, 3), (1, 4), (2, 5)] {
        c.host_mut(i).stop().await;
        c.host_mut(i).start().await;
        let h = c.host(i);
        let state = h
            .ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .await;
        assert_eq!(state, "locked", "host{i} restarts locked");
        let e = h.fails(&["service", "ls"]).await;
        assert!(e.contains(LOCKED), "{e}");
        // Locked, its files hold neither the secret nor the cluster object (where the root CA
        // key is kept) in the clear: both are sealed under the unlock key.
        let dir = h.data_dir();
        let found = files_containing(&dir, SECRET_VALUE.as_bytes());
        assert!(found.is_empty(), "the secret in the clear in {found:?}");
        let found = files_containing(&dir, &root_der);
        assert!(
            found.is_empty(),
            "the cluster object in the clear in {found:?}"
        );
        // The other two managers keep quorum and the data: a write commits through one.
        let other = c.host((i + 1) % 3);
        other
            .wait_for(
                "a write while a manager is locked",
                &["service", "scale", "--detach", &format!("web={replicas}")],
                |_| true,
            )
            .await;
        assert_eq!(objects(other).await, want);
        // Unlocked with the key (read from stdin, as `docker swarm unlock` does), it is back.
        h.ok_stdin(&["swarm", "unlock"], format!("{key}\n").as_bytes())
            .await;
        h.wait_for(
            "the unlocked manager serving cluster reads",
            &[
                "info",
                "--format",
                "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
            ],
            |out| out == "active true",
        )
        .await;
        wait_all_reachable(&c, "the unlocked manager back in the cluster").await;
        // It catches up with the write made while it was locked (its reads are local).
        let want_replicas = replicas.to_string();
        h.wait_for(
            "the write made while it was locked",
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{.Spec.Mode.Replicated.Replicas}}",
            ],
            |out| out == want_replicas,
        )
        .await;
    }
    for h in c.hosts() {
        assert_eq!(objects(h).await, want);
        // Every manager shows the leader's view: all three reachable, one leader.
        h.wait_for(
            "3 reachable managers on this manager",
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
            all_reachable,
        )
        .await;
    }
    c.host(0).wait_replicas("web", "5/5").await;
}

/// Runs `swarm-node args`; its stdout (it must succeed).
fn swarm_node(args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-node"))
        .args(args)
        .output()
        .expect("swarm-node runs");
    assert!(
        out.status.success(),
        "swarm-node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_on_a_fresh_host_then_force_new_cluster() {
    let Some(mut c) = Cluster::new(4, Runtime::Sim) else {
        return;
    };
    let (source, fresh, worker, manager) = (0, 1, 2, 3);
    c.host_mut(source).start().await;
    let h = c.host(source);
    h.ok(&["swarm", "init", "--advertise-addr", h.ip()]).await;
    populate(h).await;
    h.wait_replicas("web", "2/2").await;
    let want = objects(h).await;
    let node = h.node_id().await;
    let old_token = h.ok(&["swarm", "join-token", "-q", "worker"]).await;

    // Backed up offline from the stopped manager, restored into the fresh host's empty data
    // directory.
    c.host_mut(source).stop().await;
    let backup = tempfile::tempdir().expect("a backup directory");
    let out = backup.path().join("bk");
    let source_dir = c.host(source).data_dir();
    let said = swarm_node(&[
        "backup".as_ref(),
        "--data-dir".as_ref(),
        source_dir.as_os_str(),
        out.as_os_str(),
    ]);
    assert!(said.contains(&node), "{said}");
    let fresh_dir = c.host(fresh).data_dir();
    assert!(!fresh_dir.exists(), "the fresh host has no data yet");
    let said = swarm_node(&[
        "restore".as_ref(),
        "--data-dir".as_ref(),
        fresh_dir.as_os_str(),
        out.as_os_str(),
    ]);
    assert!(said.contains("--force-new-cluster"), "{said}");

    c.host_mut(fresh).start().await;
    let h = c.host(fresh);
    h.ok(&[
        "swarm",
        "init",
        "--force-new-cluster",
        "--advertise-addr",
        h.ip(),
    ])
    .await;
    assert_eq!(h.node_id().await, node, "the restored node keeps its id");
    assert_eq!(objects(h).await, want, "every object restored");
    let secret = h
        .ok(&["secret", "inspect", "s1", "--format", "{{.Spec.Name}}"])
        .await;
    assert_eq!(secret, "s1");
    // The manager advertises the fresh host's address now.
    let addr = h
        .ok(&[
            "node",
            "inspect",
            "self",
            "--format",
            "{{.ManagerStatus.Addr}}",
        ])
        .await;
    assert_eq!(addr, h.addr());
    let info_addr = h.ok(&["info", "--format", "{{.Swarm.NodeAddr}}"]).await;
    assert_eq!(info_addr, h.ip());

    // A worker joins the new cluster with its token and runs tasks there.
    let token = h.ok(&["swarm", "join-token", "-q", "worker"]).await;
    // (The restored CA is the old cluster's: its token pins the same root.)
    assert_eq!(token, old_token);
    c.host_mut(worker).start().await;
    c.host(worker).join(&token, c.host(fresh)).await;
    let h = c.host(fresh);
    let host_name = "host2 Ready";
    h.wait_for(
        "the worker ready",
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        |out| out.lines().any(|l| l == host_name),
    )
    .await;
    // A manager joins too: raft runs between the moved manager and it.
    let manager_token = h.ok(&["swarm", "join-token", "-q", "manager"]).await;
    c.host_mut(manager).start().await;
    c.host(manager).join(&manager_token, c.host(fresh)).await;
    let joined = format!("{} Reachable", c.host(manager).node_id().await);
    let h = c.host(fresh);
    h.wait_for(
        "the new manager reachable",
        &["node", "ls", "--format", "{{.ID}} {{.ManagerStatus}}"],
        |out| out.lines().any(|l| l == joined),
    )
    .await;
    let on_new = c
        .host(manager)
        .ok(&["service", "ls", "--format", "{{.Name}}"])
        .await;
    assert_eq!(
        on_new, "web",
        "the new manager replicates the restored store"
    );
    // Two voters now: on a loaded machine the join can cost the leader its quorum for a moment,
    // and a re-elected leader marks the worker unknown until its session comes back. The scale
    // must see it ready, or its tasks go to the managers only (swarm never rebalances).
    h.wait_for(
        "the worker ready again",
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        |out| out.lines().any(|l| l == host_name),
    )
    .await;
    h.ok(&["service", "scale", "--detach", "web=6"]).await;
    h.wait_replicas("web", "6/6").await;
    h.wait_for(
        "tasks on the new worker",
        &[
            "service",
            "ps",
            "web",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ],
        |out| out.lines().any(|l| l.starts_with("host2 Running")),
    )
    .await;
}
