//! A multi-host swarm driven only by the docker CLI: `swarm-node run` daemons in network
//! namespaces (`multihost_support/`), formed with join tokens, then faults.
//!
//! One scenario per test, each on its own hosts:
//! - `tokens_form_a_swarm_...`: 3 managers + 2 workers join by token; `node ls` on a manager
//!   shows 5 Ready nodes with one Leader and two Reachable; a service's replicas spread over the
//!   hosts; a worker's socket answers Docker's 503 to `service ls` while its `info` works; a
//!   rotated worker token is refused and the new one admits a sixth host; killing the leader's
//!   process (SIGKILL), a write succeeds through another manager, which then lists the old
//!   leader Unreachable; after a second manager is killed (quorum lost),
//!   `swarm init --force-new-cluster` on the survivor keeps the service, and the workers' tasks
//!   keep running under it.
//! - `promote_and_demote_...`: `docker node promote` turns a worker host into a manager (the CA
//!   reissues its certificate with the manager role, the node restarts as a manager and joins
//!   raft: its socket then serves cluster reads); `docker node demote` takes a manager out of raft
//!   (the leader lists it without manager status) and that node restarts as a worker.
//! - `a_partitioned_worker_...`: a worker cut off the network (iptables in its namespace) is
//!   marked down once its heartbeats stop and its tasks are replaced on the other hosts; after
//!   the partition heals it is Ready again and the service still has exactly its replicas
//!   running (none duplicated); a worker killed and started again rejoins as the same node.
//!
//! The tests print a few timings (`FIGURE ...`, not asserted): join latency (token to Ready)
//! and leader failover across processes (SIGKILL of the leader to a successful write elsewhere).

mod multihost_support;

use multihost_support::{Cluster, Host, Runtime, Tokens};

/// `docker node ls` as `hostname status manager-status` lines.
async fn node_ls(h: &Host) -> Vec<String> {
    h.ok(&[
        "node",
        "ls",
        "--format",
        "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
    ])
    .await
    .lines()
    .map(|l| l.trim().to_string())
    .collect()
}

fn count(lines: &[String], pred: impl Fn(&str) -> bool) -> usize {
    lines.iter().filter(|l| pred(l)).count()
}

/// `service ps` of `service` as `node state` lines of the tasks meant to run.
async fn running_on(h: &Host, service: &str) -> Vec<(String, String)> {
    let out = h
        .ok(&[
            "service",
            "ps",
            service,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ])
        .await;
    out.lines()
        .filter_map(|l| {
            let (node, state) = l.split_once(' ')?;
            Some((node.to_string(), state.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_form_a_swarm_that_survives_its_leader_and_recovers_from_quorum_loss() {
    let Some(mut c) = Cluster::new(6, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    let h0 = c.host(0);
    let Tokens {
        manager: manager_token,
        worker: worker_token,
    } = h0.init(&[]).await;
    assert!(manager_token.starts_with("SWMTKN-1-"), "{manager_token}");
    for i in [1, 2] {
        c.host(i).join(&manager_token, h0).await;
    }
    for i in [3, 4] {
        let t = std::time::Instant::now();
        c.host(i).join(&worker_token, h0).await;
        let joined = t.elapsed();
        let name = format!("host{i} Ready");
        c.host(0)
            .wait_for(
                "the worker ready",
                &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
                |out| out.lines().any(|l| l == name),
            )
            .await;
        eprintln!(
            "FIGURE join latency (worker, token to Ready): {:?} (join call {joined:?})",
            t.elapsed()
        );
    }
    // Every host is listed, Ready; one leader and two reachable managers.
    let ls = c
        .host(0)
        .wait_for(
            "5 ready nodes, 1 leader, 2 reachable",
            &[
                "node",
                "ls",
                "--format",
                "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
            ],
            |out| {
                let lines: Vec<String> = out.lines().map(str::to_string).collect();
                lines.len() == 5
                    && count(&lines, |l| l.contains(" Ready")) == 5
                    && count(&lines, |l| l.ends_with("Leader")) == 1
                    && count(&lines, |l| l.ends_with("Reachable")) == 2
            },
        )
        .await;
    assert!(ls.contains("host0 Ready Leader"), "{ls}");
    // Another manager answers the same list.
    let on_h1 = node_ls(c.host(1)).await;
    assert_eq!(on_h1.len(), 5, "{on_h1:?}");

    // A service's replicas spread over the hosts.
    c.host(0)
        .ok(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "10",
            "busybox",
            "sleep",
            "3600",
        ])
        .await;
    c.host(0)
        .wait_for(
            "10 running replicas",
            &[
                "service",
                "ps",
                "web",
                "--filter",
                "desired-state=running",
                "--format",
                "{{.CurrentState}}",
            ],
            |out| out.lines().filter(|l| l.starts_with("Running")).count() == 10,
        )
        .await;
    let placed = running_on(c.host(0), "web").await;
    let hosts: std::collections::BTreeSet<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(hosts.len(), 5, "replicas on every host: {placed:?}");

    // A worker's socket: cluster reads refused with Docker's 503, info works.
    let e = c.host(3).fails(&["service", "ls"]).await;
    assert!(
        e.contains("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state."),
        "{e}"
    );
    let state = c
        .host(3)
        .ok(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ])
        .await;
    assert_eq!(state, "active false");

    // A rotated worker token is refused; the new one admits a sixth host.
    let rotated = c
        .host(1)
        .ok(&["swarm", "join-token", "--rotate", "-q", "worker"])
        .await;
    assert_ne!(rotated, worker_token);
    let e = c
        .host(5)
        .fails(&["swarm", "join", "--token", &worker_token, &c.host(1).addr()])
        .await;
    assert!(
        e.to_lowercase().contains("token"),
        "the refusal names the token: {e}"
    );
    c.host(5).join(&rotated, c.host(1)).await;
    c.host(0)
        .wait_for(
            "6 ready nodes",
            &["node", "ls", "--format", "{{.Status}}"],
            |out| out.lines().filter(|l| *l == "Ready").count() == 6,
        )
        .await;

    // The leader's process dies: a write succeeds through another manager.
    let t = std::time::Instant::now();
    c.host_mut(0).kill().await;
    c.host(1)
        .wait_for(
            "a write through host1",
            &["service", "scale", "--detach", "web=12"],
            |_| true,
        )
        .await;
    eprintln!(
        "FIGURE leader failover (SIGKILL to a successful write through another manager; CLI polled every 200 ms): {:?}",
        t.elapsed()
    );
    c.host(1)
        .wait_for(
            "host0 unreachable, a new leader",
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
            |out| {
                out.lines().any(|l| l == "host0 Unreachable")
                    && out.lines().filter(|l| l.ends_with("Leader")).count() == 1
            },
        )
        .await;

    // Quorum lost (2 of 3 managers gone): the survivor forces a new cluster, keeping every object.
    c.host_mut(2).kill().await;
    c.host(1)
        .ok(&[
            "swarm",
            "init",
            "--force-new-cluster",
            "--advertise-addr",
            c.host(1).ip(),
        ])
        .await;
    let ls = c
        .host(1)
        .wait_for(
            "host1 leads alone",
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
            |out| {
                out.lines().any(|l| l == "host1 Leader")
                    && !out
                        .lines()
                        .any(|l| l.ends_with("Reachable") || l.ends_with("Unreachable"))
            },
        )
        .await;
    assert!(ls.lines().count() >= 6, "every node kept: {ls}");
    // The dead managers' sessions died with the old cluster: the new one marks them unknown
    // (then down), so nothing is scheduled on them. Their last heartbeats were recent enough
    // that no heartbeat timer of the old cluster had marked them down yet.
    c.host(1)
        .wait_for(
            "the dead managers no longer ready",
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            |out| {
                out.lines()
                    .filter(|l| l.starts_with("host0 ") || l.starts_with("host2 "))
                    .all(|l| !l.ends_with(" Ready"))
            },
        )
        .await;
    let replicas = c
        .host(1)
        .ok(&[
            "service",
            "inspect",
            "web",
            "--format",
            "{{.Spec.Mode.Replicated.Replicas}}",
        ])
        .await;
    assert_eq!(replicas, "12");
    // Writes commit again, and the workers follow the new cluster.
    c.host(1)
        .ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            "after",
            "--replicas",
            "2",
            "busybox",
            "sleep",
            "3600",
        ])
        .await;
    c.host(1)
        .wait_for(
            "the workers ready under the new cluster",
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            |out| {
                ["host3 Ready", "host4 Ready", "host5 Ready"]
                    .iter()
                    .all(|w| out.lines().any(|l| l == *w))
            },
        )
        .await;
    c.host(1)
        .wait_for(
            "both tasks of `after` running",
            &[
                "service",
                "ps",
                "after",
                "--format",
                "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
            ],
            |out| {
                out.lines()
                    .filter(|l| l.contains(" Running Running"))
                    .count()
                    == 2
            },
        )
        .await;
    c.host(1).wait_replicas("after", "2/2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_demote_change_roles_across_hosts() {
    let Some(mut c) = Cluster::new(4, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    let h0 = c.host(0);
    let tokens = h0.init(&[]).await;
    c.host(1).join(&tokens.manager, h0).await;
    c.host(2).join(&tokens.manager, h0).await;
    c.host(3).join(&tokens.worker, h0).await;
    c.host(0)
        .wait_for(
            "4 ready nodes, 3 managers",
            &[
                "node",
                "ls",
                "--format",
                "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
            ],
            |out| {
                out.lines().filter(|l| l.contains(" Ready")).count() == 4
                    && out
                        .lines()
                        .filter(|l| l.ends_with("Leader") || l.ends_with("Reachable"))
                        .count()
                        == 3
            },
        )
        .await;
    // A worker's socket cannot read the cluster...
    c.host(3).fails(&["node", "ls"]).await;
    // ...until it is promoted: it restarts as a manager and joins raft.
    c.host(0).ok(&["node", "promote", "host3"]).await;
    c.host(0)
        .wait_for(
            "host3 a reachable manager",
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
            |out| out.lines().any(|l| l == "host3 Reachable"),
        )
        .await;
    let seen = c
        .host(3)
        .wait_for(
            "host3 serving cluster reads",
            &["node", "ls", "--format", "{{.Hostname}}"],
            |out| out.lines().count() == 4,
        )
        .await;
    assert!(seen.contains("host0"), "{seen}");
    // Demote a manager: the leader takes it out of raft and lists it as a worker.
    c.host(0).ok(&["node", "demote", "host2"]).await;
    c.host(0)
        .wait_for(
            "host2 no longer a manager",
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
            |out| {
                out.lines().any(|l| l.trim() == "host2")
                    && out
                        .lines()
                        .filter(|l| l.ends_with("Leader") || l.ends_with("Reachable"))
                        .count()
                        == 3
            },
        )
        .await;
    let role = c
        .host(0)
        .ok(&["node", "inspect", "host2", "--format", "{{.Spec.Role}}"])
        .await;
    assert_eq!(role, "worker");
    // The demoted node runs as a worker: its socket refuses cluster reads, its info says so.
    c.host(2)
        .wait_for(
            "host2 a worker",
            &[
                "info",
                "--format",
                "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
            ],
            |out| out == "active false",
        )
        .await;
    let e = c.host(2).fails(&["node", "ls"]).await;
    assert!(e.contains("This node is not a swarm manager"), "{e}");
    c.host(0)
        .wait_for(
            "host2 ready as a worker",
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            |out| out.lines().any(|l| l == "host2 Ready"),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_worker_is_replaced_and_not_duplicated_after_heal() {
    let Some(mut c) = Cluster::new(3, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    c.form(0, 2).await;
    c.host(0)
        .ok(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "6",
            "busybox",
            "sleep",
            "3600",
        ])
        .await;
    c.host(0).wait_replicas("web", "6/6").await;
    let placed = running_on(c.host(0), "web").await;
    assert!(placed.iter().any(|(n, _)| n == "host2"), "{placed:?}");

    let t = std::time::Instant::now();
    c.host_mut(2).partition();
    c.host(0)
        .wait_for(
            "host2 down",
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            |out| out.lines().any(|l| l == "host2 Down"),
        )
        .await;
    c.host(0)
        .wait_for(
            "6 replicas running off host2",
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
                let running: Vec<&str> = out.lines().filter(|l| l.contains(" Running")).collect();
                running.len() == 6 && !running.iter().any(|l| l.starts_with("host2 "))
            },
        )
        .await;
    eprintln!(
        "FIGURE node failure to replacement running (partitioned worker, 5 s heartbeats): {:?}",
        t.elapsed()
    );
    c.host_mut(2).heal();
    c.host(0)
        .wait_for(
            "host2 ready again",
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            |out| out.lines().any(|l| l == "host2 Ready"),
        )
        .await;
    // Exactly the replicas run: the healed worker's old tasks are not running beside their
    // replacements.
    c.host(0).wait_replicas("web", "6/6").await;
    let running = c
        .host(0)
        .ok(&[
            "service",
            "ps",
            "web",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ])
        .await;
    let n = running.lines().filter(|l| l.contains(" Running")).count();
    assert_eq!(n, 6, "{running}");

    // A worker restarted (crash) comes back as the same node through the managers it recorded.
    let id = c.host(1).node_id().await;
    let recorded = std::fs::read_to_string(c.host(1).data_dir().join("node.json")).unwrap();
    assert!(recorded.contains("\"worker\""), "{recorded}");
    c.host_mut(1).kill().await;
    c.host(0)
        .wait_for(
            "host1 down",
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            |out| out.lines().any(|l| l == "host1 Down"),
        )
        .await;
    c.host_mut(1).start().await;
    assert_eq!(c.host(1).node_id().await, id);
    c.host(0)
        .wait_for(
            "host1 ready again",
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
            |out| out.lines().any(|l| l == "host1 Ready"),
        )
        .await;
    c.host(0).wait_replicas("web", "6/6").await;
}
