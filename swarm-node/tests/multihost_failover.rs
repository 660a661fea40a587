//! Leader failover across processes, measured: three managers, each a `swarm-node run` in its
//! own network namespace (`multihost_support/`), driven by the docker CLI.
//!
//! One sample: SIGKILL the leader's process, then at once send a write (`docker secret create`:
//! a create carries no object version, so it cannot conflict with the new leader's own updates
//! of node objects) to another manager, again at once if it fails, and time the kill to the
//! first write that succeeds. The killed manager is then started again from its data directory and,
//! once every manager is listed Reachable again under one leader, the next sample kills the
//! (possibly new) leader. The test prints one `FIGURE failover sample` line per sample and a
//! `FIGURE leader failover` line with p50/p99; it asserts only that every kill was survived
//! (a write succeeded and the killed manager rejoined), not how fast.
//!
//! `#[ignore]`: a measurement of a few minutes, run on purpose:
//! `FAILOVER_SAMPLES=20 cargo test -p swarm-node --test multihost_failover -- --ignored --nocapture`
//! (`SWARM_NODE_BIN=$PWD/target/release/swarm-node` runs a release daemon; needs root, `ip` and the docker CLI, like every `multihost_*` test).

mod multihost_support;

use std::time::{Duration, Instant};

use multihost_support::{Cluster, Runtime, TIMEOUT};

/// Managers in the cluster.
const MANAGERS: usize = 3;

/// Index of the host whose manager leads, once that manager's `node ls` shows itself as leader
/// and every other manager Reachable, and another manager names the same leader. Every running
/// host is asked: a follower lists reachability as it sees it (it sends nothing to the other
/// followers), and a manager just restarted may briefly list itself leader of its old term.
async fn leader_index(c: &Cluster) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        // (host, the leader it lists, whether all others are Reachable in its view)
        let mut views = Vec::new();
        for h in c.hosts().iter().filter(|h| h.running()) {
            let o = h
                .docker(&["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"])
                .await;
            let lines: Vec<&str> = o.stdout.lines().map(str::trim).collect();
            let leaders: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_suffix(" Leader"))
                .collect();
            let reachable = lines.iter().filter(|l| l.ends_with(" Reachable")).count();
            if o.code == 0 && lines.len() == MANAGERS && leaders.len() == 1 {
                views.push((h.index(), leaders[0].to_string(), reachable == MANAGERS - 1));
            }
        }
        let agreed = views.iter().find(|(i, l, all)| {
            *all && *l == format!("host{i}") && views.iter().any(|(j, m, _)| j != i && m == l)
        });
        if let Some((i, _, _)) = agreed {
            return *i;
        }
        assert!(
            Instant::now() < deadline,
            "no leader agreed on with every manager reachable within {TIMEOUT:?}: {views:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of several minutes; run with --ignored --nocapture"]
async fn leader_failover_across_processes() {
    let samples: usize = std::env::var("FAILOVER_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let Some(mut c) = Cluster::new(MANAGERS, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    let token = c.host(0).init(&[]).await.manager;
    for i in 1..MANAGERS {
        c.host(i).join(&token, c.host(0)).await;
    }
    let mut times = Vec::with_capacity(samples);
    let mut leader = leader_index(&c).await;
    for n in 0..samples {
        let via = (leader + 1) % MANAGERS;
        let data = c.host(via).dir().join("secret");
        std::fs::write(&data, format!("sample {n}")).expect("secret file");
        let data = data.display().to_string();
        let t = Instant::now();
        c.host_mut(leader).kill().await;
        let mut tries = 0;
        let last = loop {
            tries += 1;
            // A new name per attempt: an attempt that timed out may still have committed.
            let name = format!("failover-{n}-{tries}");
            let o = c
                .host(via)
                .docker(&["secret", "create", &name, &data])
                .await;
            if o.code == 0 {
                break name;
            }
            eprintln!(
                "failover sample {n}: write attempt {tries} failed after {:?}: {}",
                t.elapsed(),
                o.stderr.trim()
            );
            assert!(
                t.elapsed() < TIMEOUT,
                "no write succeeded through host{via} within {TIMEOUT:?} after killing host{leader}: {}\n{}",
                o.stderr,
                c.logs()
            );
        };
        let took = t.elapsed();
        eprintln!(
            "FIGURE failover sample {n}: killed host{leader}, write through host{via} after {took:?} ({tries} CLI call(s))"
        );
        times.push(took);
        c.host_mut(leader).start().await;
        leader = leader_index(&c).await;
        // Every manager caught up (its store holds the last write) before the next kill, so a
        // sample measures failover, not a restarted manager's catch-up.
        for h in c.hosts() {
            h.wait_for(
                "the last write applied",
                &["secret", "ls", "--format", "{{.Name}}"],
                |out| out.lines().any(|l| l == last),
            )
            .await;
        }
    }
    times.sort();
    eprintln!(
        "FIGURE leader failover (SIGKILL of the leader to a successful write through another manager, {} samples, {}): p50 {:?}, p99 {:?}, min {:?}, max {:?}",
        times.len(),
        if std::env::var_os("SWARM_NODE_BIN").is_some() {
            "daemon from SWARM_NODE_BIN"
        } else {
            "debug build"
        },
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        times[0],
        times[times.len() - 1]
    );
}
