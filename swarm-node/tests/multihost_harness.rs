//! The multi-host harness itself (`multihost_support/`): hosts in network namespaces reach each
//! other over the bridge, a partition cuts one off and healing restores it, and everything the
//! harness created (namespaces, processes) is gone after the cluster is dropped.

mod multihost_support;

use multihost_support::{Cluster, Runtime, METRICS_PORT};

/// `curl` of `ip`'s metrics endpoint from inside `from`'s namespace: whether it answered.
async fn reaches(from: &multihost_support::Host, ip: &str) -> bool {
    let url = format!("http://{ip}:{METRICS_PORT}/metrics");
    let o = from
        .exec(
            "curl",
            &[
                "-s",
                "-m",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ],
        )
        .await;
    o.code == 0 && o.stdout.trim() == "200"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_reach_each_other_partitions_cut_and_cleanup_removes_everything() {
    let Some(mut cluster) = Cluster::new(3, Runtime::Sim) else {
        return;
    };
    let namespaces: Vec<String> = cluster
        .hosts()
        .iter()
        .map(|h| h.namespace().to_string())
        .collect();
    cluster.start_all().await;
    let pids: Vec<String> = cluster
        .hosts()
        .iter()
        .map(|h| h.data_dir().display().to_string())
        .collect();
    // Each daemon answers on its own socket and is in no swarm yet.
    for h in cluster.hosts() {
        let state = h
            .ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .await;
        assert_eq!(state, "inactive");
    }
    // Every host reaches every other over the bridge (its daemon's metrics endpoint).
    for a in cluster.hosts() {
        for b in cluster.hosts() {
            assert!(
                reaches(a, b.ip()).await,
                "{} cannot reach {}",
                a.ip(),
                b.ip()
            );
        }
    }
    // A partition cuts host 2 off both ways; the others still reach each other.
    cluster.host_mut(2).partition();
    let (h0, h1, h2) = (cluster.host(0), cluster.host(1), cluster.host(2));
    assert!(!reaches(h0, h2.ip()).await);
    assert!(!reaches(h2, h1.ip()).await);
    assert!(reaches(h0, h1.ip()).await);
    cluster.host_mut(2).heal();
    assert!(reaches(cluster.host(0), cluster.host(2).ip()).await);
    // The daemons run in their namespaces: stop one cleanly, leave the others to the drop.
    cluster.host_mut(1).stop().await;
    drop(cluster);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    for ns in &namespaces {
        assert!(
            !left
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
            "namespace {ns} left behind"
        );
    }
    for dir in &pids {
        assert!(
            multihost_support::processes_with(dir).is_empty(),
            "a process of {dir} outlived the cluster"
        );
    }
}
