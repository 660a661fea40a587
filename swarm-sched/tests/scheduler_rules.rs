//! Every scheduling rule as a data table: a cluster, a service, how many tasks, and what must
//! happen (tasks per node, per label value, or the exact "no suitable node" reason).
//!
//! Each case runs through the real loop: fixtures committed to a `Store`, events fed to the
//! `Scheduler`, its actions committed back (`Harness::settle`), and the outcome read from the store.

use std::collections::BTreeMap;

use swarm_core::objects::node::{NodeAvailability, NodeRole, NodeState, Platform, Resources};
use swarm_core::objects::service::{PortConfig, Protocol, PublishMode};
use swarm_core::{Node, Service, TaskState};
use swarm_sched::testing::{id, labeled_node, node, service, tasks, Harness, CPU, GIB};
use swarm_sched::Scheduler;

/// What a case expects.
enum Expect {
    /// Placed tasks per node number; nodes not listed get none. No task stays pending.
    PerNode(&'static [(u128, usize)]),
    /// Placed tasks per value of node label `.0` (`""` = missing); no task stays pending.
    ByLabel(&'static str, &'static [(&'static str, usize)]),
    /// `.0` tasks placed; every other task pending with exactly this error.
    Pending(usize, &'static str),
}

struct Case {
    name: &'static str,
    nodes: Vec<Node>,
    spec: fn(&mut Service),
    tasks: u64,
    expect: Expect,
}

fn no_change(_: &mut Service) {}

fn with(mut n: Node, f: impl FnOnce(&mut Node)) -> Node {
    f(&mut n);
    n
}

fn constraint(s: &mut Service, exprs: &[&str]) {
    s.spec.task.placement.constraints = exprs.iter().map(|e| e.to_string()).collect();
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "spread evenly with no preferences, lowest ids first",
            nodes: (1..=3).map(node).collect(),
            spec: no_change,
            tasks: 7,
            expect: Expect::PerNode(&[(1, 3), (2, 2), (3, 2)]),
        },
        Case {
            name: "spread on rack: a has 2 nodes, b 1, missing 1 => 2/2/1",
            nodes: vec![
                labeled_node(1, &[("rack", "a")]),
                labeled_node(2, &[("rack", "a")]),
                labeled_node(3, &[("rack", "b")]),
                node(4),
            ],
            spec: |s| s.spec.task.placement.preferences = vec!["node.labels.rack".into()],
            tasks: 5,
            expect: Expect::ByLabel("rack", &[("a", 2), ("b", 2), ("", 1)]),
        },
        Case {
            name: "spread: a label with an empty value is the missing-label branch",
            nodes: vec![
                labeled_node(1, &[("rack", "a")]),
                labeled_node(2, &[("rack", "")]),
                node(3),
            ],
            spec: |s| s.spec.task.placement.preferences = vec!["node.labels.rack".into()],
            tasks: 4,
            expect: Expect::ByLabel("rack", &[("a", 2), ("", 2)]),
        },
        Case {
            name: "spread: a branch that fills up gives its share to the others",
            nodes: vec![
                labeled_node(1, &[("rack", "a")]),
                labeled_node(2, &[("rack", "b")]),
                labeled_node(3, &[("rack", "b")]),
            ],
            spec: |s| {
                s.spec.task.placement.preferences = vec!["node.labels.rack".into()];
                s.spec.task.placement.max_replicas = 2;
            },
            tasks: 6,
            expect: Expect::ByLabel("rack", &[("a", 2), ("b", 4)]),
        },
        Case {
            name: "spread over two levels: dc then rack",
            nodes: vec![
                labeled_node(1, &[("dc", "east"), ("rack", "1")]),
                labeled_node(2, &[("dc", "east"), ("rack", "2")]),
                labeled_node(3, &[("dc", "west"), ("rack", "1")]),
                labeled_node(4, &[("dc", "west"), ("rack", "1")]),
            ],
            spec: |s| {
                s.spec.task.placement.preferences =
                    vec!["node.labels.dc".into(), "node.labels.rack".into()]
            },
            tasks: 8,
            // east 4 = rack1 2 + rack2 2; west 4 = both on rack1, 2 per node.
            expect: Expect::PerNode(&[(1, 2), (2, 2), (3, 2), (4, 2)]),
        },
        Case {
            name: "spread on an engine label",
            nodes: vec![
                with(node(1), |n| engine_label(n, "zone", "x")),
                with(node(2), |n| engine_label(n, "zone", "x")),
                with(node(3), |n| engine_label(n, "zone", "y")),
            ],
            spec: |s| s.spec.task.placement.preferences = vec!["engine.labels.zone".into()],
            tasks: 4,
            expect: Expect::PerNode(&[(1, 1), (2, 1), (3, 2)]),
        },
        Case {
            name: "constraint == on a node label; nodes without the label fail",
            nodes: vec![
                labeled_node(1, &[("zone", "east")]),
                labeled_node(2, &[("zone", "west")]),
                node(3),
            ],
            spec: |s| constraint(s, &["node.labels.zone==east"]),
            tasks: 3,
            expect: Expect::PerNode(&[(1, 3)]),
        },
        Case {
            name: "constraint != on a node label; a missing label passes",
            nodes: vec![
                labeled_node(1, &[("zone", "east")]),
                labeled_node(2, &[("zone", "west")]),
                node(3),
            ],
            spec: |s| constraint(s, &["node.labels.zone!=east"]),
            tasks: 2,
            expect: Expect::PerNode(&[(2, 1), (3, 1)]),
        },
        Case {
            name: "constraint values match ignoring case",
            nodes: vec![labeled_node(1, &[("zone", "EAST")]), node(2)],
            spec: |s| constraint(s, &["node.labels.zone == east"]),
            tasks: 2,
            expect: Expect::PerNode(&[(1, 2)]),
        },
        Case {
            name: "several constraints are ANDed",
            nodes: vec![
                labeled_node(1, &[("zone", "east"), ("ssd", "true")]),
                labeled_node(2, &[("zone", "east")]),
                labeled_node(3, &[("ssd", "true")]),
            ],
            spec: |s| constraint(s, &["node.labels.zone==east", "node.labels.ssd==true"]),
            tasks: 2,
            expect: Expect::PerNode(&[(1, 2)]),
        },
        Case {
            name: "node.ip in a CIDR",
            // node(n) has address 10.<n/256>.<n%256>.1
            nodes: vec![node(1), node(2), node(300)],
            spec: |s| constraint(s, &["node.ip==10.0.0.0/16"]),
            tasks: 4,
            expect: Expect::PerNode(&[(1, 2), (2, 2)]),
        },
        Case {
            name: "node.ip != one address",
            nodes: vec![node(1), node(2)],
            spec: |s| constraint(s, &["node.ip!=10.0.1.1"]),
            tasks: 2,
            expect: Expect::PerNode(&[(2, 2)]),
        },
        Case {
            name: "node.role, node.hostname, node.id",
            nodes: vec![
                with(node(1), |n| n.role = NodeRole::Manager),
                with(node(2), |n| n.role = NodeRole::Manager),
                node(3),
            ],
            spec: |s| {
                let node2 = id(2).to_string();
                s.spec.task.placement.constraints = vec![
                    "node.role==manager".into(),
                    "node.hostname!=node-1".into(),
                    format!("node.id=={node2}"),
                ]
            },
            tasks: 2,
            expect: Expect::PerNode(&[(2, 2)]),
        },
        Case {
            name: "node.platform.os and node.platform.arch",
            nodes: vec![node(1), with(node(2), |n| set_platform(n, "windows", "x86_64"))],
            spec: |s| constraint(s, &["node.platform.os==windows", "node.platform.arch==x86_64"]),
            tasks: 1,
            expect: Expect::PerNode(&[(2, 1)]),
        },
        Case {
            name: "engine.labels",
            nodes: vec![node(1), with(node(2), |n| engine_label(n, "gpu", "yes"))],
            spec: |s| constraint(s, &["engine.labels.gpu==yes"]),
            tasks: 1,
            expect: Expect::PerNode(&[(2, 1)]),
        },
        Case {
            name: "an unknown constraint key matches no node",
            nodes: vec![node(1), node(2)],
            spec: |s| constraint(s, &["node.colour==red"]),
            tasks: 1,
            expect: Expect::Pending(
                0,
                "no suitable node (scheduling constraints not satisfied on 2 nodes)",
            ),
        },
        Case {
            name: "resources: reservations exhaust the nodes",
            nodes: (1..=3).map(node).collect(),
            spec: |s| s.spec.task.resources.reservations.nano_cpus = 3 * CPU,
            tasks: 5,
            expect: Expect::Pending(3, "no suitable node (insufficient resources on 3 nodes)"),
        },
        Case {
            name: "resources: memory counts too, and fills nodes evenly",
            nodes: (1..=2).map(node).collect(),
            spec: |s| s.spec.task.resources.reservations.memory_bytes = 3 * GIB,
            tasks: 5,
            expect: Expect::Pending(4, "no suitable node (insufficient resources on 2 nodes)"),
        },
        Case {
            name: "reasons are sorted by how many nodes they explain",
            nodes: vec![
                labeled_node(1, &[("zone", "east")]),
                with(labeled_node(2, &[("zone", "east")]), |n| {
                    set_resources(n, CPU, 8 * GIB)
                }),
                node(3),
                node(4),
                node(5),
            ],
            spec: |s| {
                constraint(s, &["node.labels.zone==east"]);
                s.spec.task.resources.reservations.nano_cpus = 2 * CPU;
            },
            tasks: 3,
            expect: Expect::Pending(
                2,
                "no suitable node (scheduling constraints not satisfied on 3 nodes; insufficient resources on 2 nodes)",
            ),
        },
        Case {
            name: "a node without a description has no resources",
            nodes: vec![with(node(1), |n| n.description = None), node(2)],
            spec: |s| s.spec.task.resources.reservations.memory_bytes = GIB,
            tasks: 2,
            expect: Expect::PerNode(&[(2, 2)]),
        },
        Case {
            name: "platform: x86_64 is amd64; arm nodes are skipped",
            nodes: vec![
                node(1),
                with(node(2), |n| set_platform(n, "linux", "aarch64")),
            ],
            spec: |s| {
                s.spec.task.placement.platforms = vec![Platform {
                    architecture: "amd64".into(),
                    os: "linux".into(),
                }]
            },
            tasks: 2,
            expect: Expect::PerNode(&[(1, 2)]),
        },
        Case {
            name: "platform: aarch64 is arm64; empty os matches any",
            nodes: vec![
                node(1),
                with(node(2), |n| set_platform(n, "linux", "aarch64")),
            ],
            spec: |s| {
                s.spec.task.placement.platforms = vec![Platform {
                    architecture: "arm64".into(),
                    os: String::new(),
                }]
            },
            tasks: 2,
            expect: Expect::PerNode(&[(2, 2)]),
        },
        Case {
            name: "platform: nothing matches",
            nodes: vec![node(1)],
            spec: |s| {
                s.spec.task.placement.platforms = vec![Platform {
                    architecture: "s390x".into(),
                    os: "linux".into(),
                }]
            },
            tasks: 1,
            expect: Expect::Pending(0, "no suitable node (unsupported platform on 1 node)"),
        },
        Case {
            name: "host-mode port: one task per node",
            nodes: (1..=3).map(node).collect(),
            spec: |s| host_port(s, 8080),
            tasks: 4,
            expect: Expect::Pending(
                3,
                "no suitable node (host-mode port already in use on 3 nodes)",
            ),
        },
        Case {
            name: "ingress ports do not limit placement",
            nodes: vec![node(1)],
            spec: |s| {
                host_port(s, 8080);
                s.spec.endpoint.ports[0].publish_mode = PublishMode::Ingress;
            },
            tasks: 3,
            expect: Expect::PerNode(&[(1, 3)]),
        },
        Case {
            name: "max replicas per node",
            nodes: (1..=2).map(node).collect(),
            spec: |s| s.spec.task.placement.max_replicas = 2,
            tasks: 5,
            expect: Expect::Pending(4, "no suitable node (max replicas per node limit exceed)"),
        },
        Case {
            name: "drained, paused and down nodes get nothing",
            nodes: vec![
                with(node(1), |n| n.spec.availability = NodeAvailability::Drain),
                with(node(2), |n| n.spec.availability = NodeAvailability::Pause),
                with(node(3), |n| n.status.state = NodeState::Down),
                node(4),
            ],
            spec: no_change,
            tasks: 3,
            expect: Expect::PerNode(&[(4, 3)]),
        },
        Case {
            name: "no node available",
            nodes: vec![
                with(node(1), |n| n.spec.availability = NodeAvailability::Drain),
                with(node(2), |n| n.status.state = NodeState::Unknown),
            ],
            spec: no_change,
            tasks: 1,
            expect: Expect::Pending(0, "no suitable node (2 nodes not available for new tasks)"),
        },
        Case {
            name: "no nodes at all",
            nodes: vec![],
            spec: no_change,
            tasks: 2,
            expect: Expect::Pending(0, "no suitable node"),
        },
    ]
}

fn engine_label(n: &mut Node, k: &str, v: &str) {
    if let Some(d) = n.description.as_mut() {
        d.engine.labels.insert(k.into(), v.into());
    }
}

fn set_platform(n: &mut Node, os: &str, arch: &str) {
    if let Some(d) = n.description.as_mut() {
        d.platform = Platform {
            architecture: arch.into(),
            os: os.into(),
        };
    }
}

fn set_resources(n: &mut Node, nano_cpus: i64, memory_bytes: i64) {
    if let Some(d) = n.description.as_mut() {
        d.resources = Resources {
            nano_cpus,
            memory_bytes,
        };
    }
}

fn host_port(s: &mut Service, port: u32) {
    s.spec.endpoint.ports = vec![PortConfig {
        name: String::new(),
        protocol: Protocol::Tcp,
        target_port: 80,
        published_port: port,
        publish_mode: PublishMode::Host,
    }];
}

#[test]
fn scheduling_rules() {
    let mut failures = Vec::new();
    for case in cases() {
        if let Err(e) = run_case(&case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn run_case(case: &Case) -> Result<(), String> {
    let mut h = Harness::new();
    h.create(case.nodes.clone());
    let mut svc = service(1000, case.tasks);
    (case.spec)(&mut svc);
    h.create([svc.clone()]);
    let mut s = Scheduler::new();
    s.handle_reset(&h.store);
    h.create(tasks(&svc, 10_000, case.tasks));
    h.settle(&mut s);

    let all: Vec<_> = svc_tasks(&h);
    let placed: Vec<_> = all.iter().filter(|t| t.node_id.is_some()).collect();
    let pending: Vec<_> = all.iter().filter(|t| t.node_id.is_none()).collect();
    for t in &placed {
        if t.status.state != TaskState::Assigned
            || t.status.message != "scheduler assigned task to node"
        {
            return Err(format!("placed task has status {:?}", t.status));
        }
    }
    let per_node = |t: &&&std::sync::Arc<swarm_core::Task>| t.node_id;
    let mut by_node: BTreeMap<swarm_core::Id, usize> = BTreeMap::new();
    for t in &placed {
        if let Some(n) = per_node(&t) {
            *by_node.entry(n).or_default() += 1;
        }
    }
    match &case.expect {
        Expect::PerNode(want) => {
            let want: BTreeMap<_, _> = want.iter().map(|&(n, c)| (id(n), c)).collect();
            if by_node != want || !pending.is_empty() {
                return Err(format!(
                    "per node {by_node:?}, want {want:?}; pending {:?}",
                    pending.iter().map(|t| &t.status.err).collect::<Vec<_>>()
                ));
            }
        }
        Expect::ByLabel(label, want) => {
            let mut got: BTreeMap<String, usize> = BTreeMap::new();
            for (n, c) in &by_node {
                let node = h.store.get::<Node>(n).ok_or("node vanished")?;
                let v = node
                    .spec
                    .annotations
                    .labels
                    .get(*label)
                    .cloned()
                    .unwrap_or_default();
                *got.entry(v).or_default() += c;
            }
            let want: BTreeMap<String, usize> =
                want.iter().map(|&(v, c)| (v.to_string(), c)).collect();
            if got != want || !pending.is_empty() {
                return Err(format!("by {label}: {got:?}, want {want:?}"));
            }
        }
        Expect::Pending(n, err) => {
            if placed.len() != *n {
                return Err(format!("{} placed, want {n}", placed.len()));
            }
            for t in &pending {
                if t.status.state != TaskState::Pending || t.status.err != *err {
                    return Err(format!(
                        "pending task has state {} err {:?}, want {err:?}",
                        t.status.state, t.status.err
                    ));
                }
            }
        }
    }
    Ok(())
}

fn svc_tasks(h: &Harness) -> Vec<std::sync::Arc<swarm_core::Task>> {
    h.store.tasks_by_service(&id(1000)).cloned().collect()
}
