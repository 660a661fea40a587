//! Placement across hosts, as the seeds' admin walkthrough shows it: five `swarm-node run`
//! daemons in network namespaces (`multihost_support/`), one manager and four workers joined by
//! token, driven only by the docker CLI.
//!
//! Property: plain replicas spread evenly over every host, and a service with
//! `--placement-pref spread=node.labels.rack` and a label constraint splits its replicas equally
//! between the racks (not between the hosts), while a host excluded by the constraint gets none.
//!
//! Why the setup proves it: the racks are deliberately unequal (three eligible hosts in rack `a`,
//! one in rack `b`, plus a rack-`b` host the constraint excludes). Even spreading over hosts
//! would put 2 of 6 replicas on the lone rack-`b` host; spreading by rack puts 3 there and 1 on
//! each rack-`a` host; ignoring the constraint would put some on the excluded host. Labels are set
//! with `docker node update --label-add` on the manager, so the labels travel through raft to the
//! leader's scheduler exactly as an operator's would.

mod multihost_support;

use std::collections::BTreeMap;

use multihost_support::{Cluster, Host, Runtime};

/// Running tasks of `service` per host name (`service ps`, tasks meant to run).
async fn per_host(h: &Host, service: &str) -> BTreeMap<String, usize> {
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
    let mut counts = BTreeMap::new();
    for line in out.lines() {
        if let Some((node, state)) = line.split_once(' ') {
            if state.starts_with("Running") {
                *counts.entry(node.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn expect(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(h, n)| (h.to_string(), *n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_evenly_over_hosts_and_by_rack_label_within_constraints() {
    let Some(mut c) = Cluster::new(5, Runtime::Sim) else {
        return;
    };
    c.start_all().await;
    c.form(0, 4).await;
    let h0 = c.host(0);

    // Plain replicas: an equal share on every host.
    h0.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "even",
        "--replicas",
        "10",
        "busybox",
        "sleep",
        "3600",
    ])
    .await;
    h0.wait_replicas("even", "10/10").await;
    let even = per_host(h0, "even").await;
    assert_eq!(
        even,
        expect(&[
            ("host0", 2),
            ("host1", 2),
            ("host2", 2),
            ("host3", 2),
            ("host4", 2)
        ]),
        "10 replicas over 5 hosts"
    );

    // Racks: a = host0..host2 (ssd), b = host3 (ssd) and host4 (hdd, excluded below).
    for (host, rack, disk) in [
        ("host0", "a", "ssd"),
        ("host1", "a", "ssd"),
        ("host2", "a", "ssd"),
        ("host3", "b", "ssd"),
        ("host4", "b", "hdd"),
    ] {
        h0.ok(&[
            "node",
            "update",
            "--label-add",
            &format!("rack={rack}"),
            "--label-add",
            &format!("disk={disk}"),
            host,
        ])
        .await;
    }
    let labels = h0
        .ok(&["node", "inspect", "host4", "--format", "{{.Spec.Labels}}"])
        .await;
    assert!(
        labels.contains("disk:hdd") && labels.contains("rack:b"),
        "{labels}"
    );
    h0.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "racked",
        "--replicas",
        "6",
        "--placement-pref",
        "spread=node.labels.rack",
        "--constraint",
        "node.labels.disk==ssd",
        "busybox",
        "sleep",
        "3600",
    ])
    .await;
    h0.wait_replicas("racked", "6/6").await;
    let racked = per_host(h0, "racked").await;
    assert_eq!(
        racked,
        expect(&[("host0", 1), ("host1", 1), ("host2", 1), ("host3", 3)]),
        "3 replicas per rack, none on the constraint-excluded host4"
    );
    let spec = h0
        .ok(&[
            "service",
            "inspect",
            "racked",
            "--format",
            "{{json .Spec.TaskTemplate.Placement}}",
        ])
        .await;
    assert!(
        spec.contains("node.labels.rack") && spec.contains("node.labels.disk==ssd"),
        "{spec}"
    );
}
