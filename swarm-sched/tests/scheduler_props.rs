//! Property tests over random clusters and services:
//!
//! 1. no task is ever placed on a node that fails a filter (readiness, constraints, platform,
//!    reserved resources, host ports, max replicas per node);
//! 2. with spread preferences and unlimited capacity, the tasks of a service differ by at most one
//!    between the branches of every level (and between the nodes of every leaf);
//! 3. a task left unplaced is pending with a "no suitable node" reason;
//! 4. the same inputs give the same store, byte for byte;
//! 5. without spread preferences, every task lands exactly where a naive reference (every node
//!    checked against every filter for every task, best rank taken) puts it.
//!
//! Each case commits nodes, services and two rounds of tasks to a `Store` and runs the scheduler
//! to quiescence through it (`Harness::settle`), so the properties hold for the real event loop.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use swarm_core::objects::node::{NodeAvailability, NodeRole, NodeState, Platform, Resources};
use swarm_core::objects::service::{PortConfig, PublishMode};
use swarm_core::{Id, Node, Service, Task, TaskState};
use swarm_sched::testing::{id, node, service, tasks, Harness, CPU, GIB};
use swarm_sched::Scheduler;

const CONSTRAINTS: [&str; 3] = [
    "node.labels.zone==x",
    "node.labels.rack!=a",
    "node.role==worker",
];

#[derive(Clone, Debug)]
struct NodeGen {
    rack: Option<u8>,
    zone: Option<u8>,
    ready: bool,
    availability: u8,
    cpus: i64,
    arm: bool,
    manager: bool,
}

#[derive(Clone, Debug)]
struct SvcGen {
    rounds: [u64; 2],
    cpu_halves: i64,
    constraints: Vec<bool>,
    prefs: u8,
    max_replicas: u64,
    host_port: bool,
    amd64_only: bool,
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    (
        proptest::option::of(0u8..3),
        proptest::option::of(0u8..2),
        proptest::bool::weighted(0.85),
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        1i64..5,
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(rack, zone, ready, availability, cpus, arm, manager)| NodeGen {
                rack,
                zone,
                ready,
                availability,
                cpus,
                arm,
                manager,
            },
        )
}

fn svc_gen() -> impl Strategy<Value = SvcGen> {
    (
        [0u64..25, 0u64..10],
        prop_oneof![2 => Just(0i64), 1 => 1i64..5],
        proptest::collection::vec(proptest::bool::weighted(0.25), 3),
        0u8..3,
        prop_oneof![3 => Just(0u64), 1 => 1u64..3],
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(rounds, cpu_halves, constraints, prefs, max_replicas, host_port, amd64_only)| {
                SvcGen {
                    rounds,
                    cpu_halves,
                    constraints,
                    prefs,
                    max_replicas,
                    host_port,
                    amd64_only,
                }
            },
        )
}

fn build_node(i: usize, g: &NodeGen) -> Node {
    let mut n = node(i as u128 + 1);
    if let Some(r) = g.rack {
        n.spec
            .annotations
            .labels
            .insert("rack".into(), ["a", "b", "c"][r as usize].into());
    }
    if let Some(z) = g.zone {
        n.spec
            .annotations
            .labels
            .insert("zone".into(), ["x", "y"][z as usize].into());
    }
    if !g.ready {
        n.status.state = NodeState::Down;
    }
    n.spec.availability = [
        NodeAvailability::Active,
        NodeAvailability::Pause,
        NodeAvailability::Drain,
    ][g.availability as usize];
    if g.manager {
        n.role = NodeRole::Manager;
    }
    if let Some(d) = n.description.as_mut() {
        d.resources = Resources {
            nano_cpus: g.cpus * CPU,
            memory_bytes: 8 * GIB,
        };
        if g.arm {
            d.platform.architecture = "aarch64".into();
        }
    }
    n
}

fn build_service(i: usize, g: &SvcGen) -> Service {
    let mut s = service(100 + i as u128, g.rounds.iter().sum());
    let p = &mut s.spec.task.placement;
    p.constraints = CONSTRAINTS
        .iter()
        .zip(&g.constraints)
        .filter(|(_, on)| **on)
        .map(|(c, _)| c.to_string())
        .collect();
    p.preferences = ["node.labels.rack", "node.labels.zone"][..g.prefs as usize]
        .iter()
        .map(|d| d.to_string())
        .collect();
    p.max_replicas = g.max_replicas;
    if g.amd64_only {
        p.platforms = vec![Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
        }];
    }
    s.spec.task.resources.reservations.nano_cpus = g.cpu_halves * CPU / 2;
    if g.host_port {
        s.spec.endpoint.ports = vec![PortConfig {
            published_port: 8000 + i as u32,
            target_port: 80,
            publish_mode: PublishMode::Host,
            ..PortConfig::default()
        }];
    }
    s
}

fn label<'a>(n: &'a Node, k: &str) -> &'a str {
    n.spec
        .annotations
        .labels
        .get(k)
        .map(String::as_str)
        .unwrap_or("")
}

/// The static filters, re-implemented independently for the generated constraint set.
fn statically_ok(n: &Node, s: &Service) -> bool {
    let p = &s.spec.task.placement;
    let ready =
        n.status.state == NodeState::Ready && n.spec.availability == NodeAvailability::Active;
    let constraints = p.constraints.iter().all(|c| match c.as_str() {
        "node.labels.zone==x" => label(n, "zone") == "x",
        "node.labels.rack!=a" => label(n, "rack") != "a",
        "node.role==worker" => n.role == NodeRole::Worker,
        _ => false,
    });
    let arch = n
        .description
        .as_ref()
        .map(|d| d.platform.architecture.as_str());
    let platform = p.platforms.is_empty() || arch == Some("x86_64");
    ready && constraints && platform
}

/// Runs one generated scenario; returns the harness at quiescence.
fn run(nodes: &[NodeGen], svcs: &[SvcGen]) -> Harness {
    let mut h = Harness::new();
    h.create(
        nodes
            .iter()
            .enumerate()
            .map(|(i, g)| build_node(i, g))
            .collect::<Vec<_>>(),
    );
    let services: Vec<Service> = svcs
        .iter()
        .enumerate()
        .map(|(i, g)| build_service(i, g))
        .collect();
    h.create(services.clone());
    let mut s = Scheduler::new();
    s.handle_reset(&h.store);
    let mut next = 10_000u128;
    for round in 0..2 {
        let mut all = Vec::new();
        for (svc, g) in services.iter().zip(svcs) {
            all.extend(tasks(svc, next, g.rounds[round]));
            next += 1000;
        }
        h.create(all);
        h.settle(&mut s);
    }
    h
}

/// Per node: reserved nano-CPUs, host ports, tasks per service.
type Usage = (i64, BTreeSet<u32>, BTreeMap<Id, u64>);

fn check(h: &Harness) -> Result<(), TestCaseError> {
    let mut used: BTreeMap<Id, Usage> = BTreeMap::new();
    for t in h.store.iter::<Task>() {
        let svc = h.store.get::<Service>(&t.service_id).expect("service");
        let Some(nid) = t.node_id else {
            prop_assert_eq!(t.status.state, TaskState::Pending);
            prop_assert!(
                t.status.err.starts_with("no suitable node"),
                "{}",
                t.status.err
            );
            continue;
        };
        let n = h.store.get::<Node>(&nid).expect("node");
        prop_assert!(
            statically_ok(n, svc),
            "task on a node failing a static filter"
        );
        let u = used.entry(nid).or_default();
        u.0 += t.spec.resources.reservations.nano_cpus;
        for p in &svc.spec.endpoint.ports {
            prop_assert!(
                u.1.insert(p.published_port),
                "host port used twice on a node"
            );
        }
        *u.2.entry(svc.id).or_default() += 1;
        let max = svc.spec.task.placement.max_replicas;
        prop_assert!(max == 0 || u.2[&svc.id] <= max, "max replicas exceeded");
        let cap = n.description.as_ref().map_or(0, |d| d.resources.nano_cpus);
        prop_assert!(u.0 <= cap, "resources overcommitted");
    }
    Ok(())
}

/// With unlimited capacity, counts per branch differ by at most one at every level.
fn check_spread(h: &Harness, svc: &Service) -> Result<(), TestCaseError> {
    let prefs: Vec<&str> = svc
        .spec
        .task
        .placement
        .preferences
        .iter()
        .map(|p| p.trim_start_matches("node.labels."))
        .collect();
    let eligible: Vec<&std::sync::Arc<Node>> = h
        .store
        .iter::<Node>()
        .filter(|n| statically_ok(n, svc))
        .collect();
    let per_node: BTreeMap<Id, u64> = h
        .store
        .tasks_by_service(&svc.id)
        .filter_map(|t| t.node_id)
        .fold(BTreeMap::new(), |mut m, n| {
            *m.entry(n).or_default() += 1;
            m
        });
    // Group eligible nodes by path prefix; at each depth, sibling branches must be balanced.
    for depth in 0..=prefs.len() {
        let mut groups: BTreeMap<Vec<&str>, BTreeMap<Vec<&str>, u64>> = BTreeMap::new();
        for n in &eligible {
            let path: Vec<&str> = prefs.iter().map(|k| label(n, k)).collect();
            // At the leaf depth, branches are single nodes.
            let (parent, child) = if depth < prefs.len() {
                (path[..depth].to_vec(), path[..=depth].to_vec())
            } else {
                (path.clone(), vec![n.id.as_str()])
            };
            *groups.entry(parent).or_default().entry(child).or_default() += if depth < prefs.len() {
                0
            } else {
                per_node.get(&n.id).copied().unwrap_or(0)
            };
        }
        if depth < prefs.len() {
            for n in h.store.iter::<Node>() {
                if let Some(&c) = per_node.get(&n.id) {
                    let path: Vec<&str> = prefs.iter().map(|k| label(n, k)).collect();
                    if let Some(g) = groups.get_mut(&path[..depth]) {
                        if let Some(b) = g.get_mut(&path[..=depth].to_vec()) {
                            *b += c;
                        }
                    }
                }
            }
        }
        for (parent, branches) in groups {
            let (lo, hi) = (branches.values().min(), branches.values().max());
            if let (Some(lo), Some(hi)) = (lo, hi) {
                prop_assert!(
                    hi - lo <= 1,
                    "unbalanced under {:?} at depth {}: {:?}",
                    parent,
                    depth,
                    branches
                );
            }
        }
    }
    Ok(())
}

/// The scheduler's placement rule, written as plainly as possible: batches in service id order,
/// tasks in id order, each to the node passing every filter with the fewest tasks of the service,
/// then the fewest tasks in all, then the lowest id; a task no node takes stays unplaced (and so do
/// the later tasks of its batch: capacity only shrinks). Returns the node of every task.
fn reference(nodes: &[NodeGen], svcs: &[SvcGen]) -> BTreeMap<Id, Option<Id>> {
    let built: Vec<Node> = nodes
        .iter()
        .enumerate()
        .map(|(i, g)| build_node(i, g))
        .collect();
    let services: Vec<Service> = svcs
        .iter()
        .enumerate()
        .map(|(i, g)| build_service(i, g))
        .collect();
    // Per node: CPU left, host ports taken, tasks per service, tasks in all.
    let mut state: Vec<Usage> = vec![Usage::default(); built.len()];
    let mut cpu_left: Vec<i64> = built
        .iter()
        .map(|n| n.description.as_ref().map_or(0, |d| d.resources.nano_cpus))
        .collect();
    let mut out = BTreeMap::new();
    let mut waiting: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
    let mut next = 10_000u128;
    for round in 0..2 {
        for (svc, g) in services.iter().zip(svcs) {
            let w = waiting.entry(svc.id).or_default();
            w.extend((0..g.rounds[round]).map(|k| id(next + u128::from(k))));
            next += 1000;
        }
        let mut order: Vec<&Service> = services.iter().collect();
        order.sort_by_key(|s| s.id);
        for svc in order {
            let cpu = svc.spec.task.resources.reservations.nano_cpus;
            let port = svc.spec.endpoint.ports.first().map(|p| p.published_port);
            let max = svc.spec.task.placement.max_replicas;
            let queue = std::mem::take(waiting.entry(svc.id).or_default());
            let mut blocked = false;
            for t in queue {
                let best = if blocked {
                    None
                } else {
                    (0..built.len())
                        .filter(|&i| statically_ok(&built[i], svc))
                        .filter(|&i| cpu <= 0 || cpu <= cpu_left[i])
                        .filter(|&i| port.is_none_or(|p| !state[i].1.contains(&p)))
                        .filter(|&i| {
                            max == 0 || state[i].2.get(&svc.id).copied().unwrap_or(0) < max
                        })
                        .min_by_key(|&i| {
                            let total: u64 = state[i].2.values().sum();
                            (
                                state[i].2.get(&svc.id).copied().unwrap_or(0),
                                total,
                                built[i].id,
                            )
                        })
                };
                match best {
                    Some(i) => {
                        cpu_left[i] -= cpu;
                        state[i].1.extend(port);
                        *state[i].2.entry(svc.id).or_default() += 1;
                        out.insert(t, Some(built[i].id));
                    }
                    None => {
                        blocked = true;
                        out.insert(t, None);
                        waiting.entry(svc.id).or_default().push(t);
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn placements_respect_every_filter(
        nodes in proptest::collection::vec(node_gen(), 0..16),
        svcs in proptest::collection::vec(svc_gen(), 1..5),
    ) {
        let h = run(&nodes, &svcs);
        check(&h)?;
    }

    #[test]
    fn spread_is_even_when_capacity_allows(
        nodes in proptest::collection::vec(node_gen(), 1..16),
        mut svc in svc_gen(),
        prefs in 1u8..3,
    ) {
        svc.prefs = prefs;
        svc.cpu_halves = 0;
        svc.max_replicas = 0;
        svc.host_port = false;
        let h = run(&nodes, std::slice::from_ref(&svc));
        check(&h)?;
        let s = h.store.get::<Service>(&id(100)).expect("service").clone();
        check_spread(&h, &s)?;
    }

    #[test]
    fn flat_placements_match_the_reference(
        nodes in proptest::collection::vec(node_gen(), 0..16),
        mut svcs in proptest::collection::vec(svc_gen(), 1..5),
    ) {
        for s in &mut svcs {
            s.prefs = 0;
        }
        let h = run(&nodes, &svcs);
        let got: BTreeMap<Id, Option<Id>> =
            h.store.iter::<Task>().map(|t| (t.id, t.node_id)).collect();
        prop_assert_eq!(got, reference(&nodes, &svcs));
    }

    #[test]
    fn same_inputs_same_store(
        nodes in proptest::collection::vec(node_gen(), 0..12),
        svcs in proptest::collection::vec(svc_gen(), 1..4),
    ) {
        let a = run(&nodes, &svcs).store.snapshot().encode();
        let b = run(&nodes, &svcs).store.snapshot().encode();
        prop_assert!(a == b);
    }
}

/// One step of an arbitrary history: anything the store accepts, however odd.
#[derive(Clone, Debug)]
enum Step {
    AddNode(u8, bool),
    RemoveNode(u8),
    AddTask {
        service: u8,
        state: u8,
        desired: u8,
        node: Option<u8>,
        cpus: i64,
        constraint: u8,
        pref: u8,
    },
    Advance(u8),
    FailTask(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..8, any::<bool>()).prop_map(|(n, ready)| Step::AddNode(n, ready)),
        (0u8..8).prop_map(Step::RemoveNode),
        (
            0u8..3,
            0u8..14,
            0u8..14,
            proptest::option::of(0u8..10),
            prop_oneof![
                Just(0i64),
                Just(-5),
                Just(CPU),
                Just(i64::MAX),
                Just(i64::MIN)
            ],
            0u8..5,
            0u8..3,
        )
            .prop_map(|(service, state, desired, node, cpus, constraint, pref)| {
                Step::AddTask {
                    service,
                    state,
                    desired,
                    node,
                    cpus,
                    constraint,
                    pref,
                }
            }),
        (0u8..200).prop_map(Step::Advance),
        any::<u16>().prop_map(Step::FailTask),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever the store holds (tasks on unknown nodes, assigned tasks without a node, absurd
    /// reservations, invalid constraints and preferences, nodes coming and going), the scheduler
    /// never panics, always settles, and once settled has nothing more to say.
    #[test]
    fn any_history_settles_quietly(steps in proptest::collection::vec(step(), 1..40)) {
        let mut h = Harness::new();
        let services: Vec<Service> = (0..3).map(|i| service(100 + i, 1)).collect();
        h.create(services.clone());
        let mut s = Scheduler::new();
        s.handle_reset(&h.store);
        let mut next = 1_000u128;
        for st in steps {
            match st {
                Step::AddNode(n, ready) => {
                    let mut nd = node(u128::from(n) + 1);
                    if !ready {
                        nd.status.state = NodeState::Down;
                    }
                    let action = if h.store.get::<Node>(&nd.id).is_some() {
                        let cur = h.store.get::<Node>(&nd.id).expect("node").clone();
                        nd.meta = cur.meta.clone();
                        swarm_core::StoreAction::Update(nd.into())
                    } else {
                        swarm_core::StoreAction::Create(nd.into())
                    };
                    let _ = h.commit(vec![action]);
                }
                Step::RemoveNode(n) => {
                    let _ = h.commit(vec![swarm_core::StoreAction::Remove(swarm_core::ObjectRef {
                        kind: swarm_core::ObjectKind::Node,
                        id: id(u128::from(n) + 1),
                    })]);
                }
                Step::AddTask { service: si, state, desired, node: on, cpus, constraint, pref } => {
                    let svc = &services[si as usize];
                    let mut t = swarm_sched::testing::task(svc, 1, next);
                    next += 1;
                    t.status.state = TaskState::ALL[state as usize];
                    t.desired_state = TaskState::ALL[desired as usize];
                    t.node_id = on.map(|n| id(u128::from(n) + 1));
                    let spec = std::sync::Arc::make_mut(&mut t.spec);
                    spec.resources.reservations.nano_cpus = cpus;
                    spec.placement.constraints = match constraint {
                        0 => vec![],
                        1 => vec!["node.labels.zone==x".into()],
                        2 => vec!["not a constraint".into()],
                        3 => vec!["node.ip==banana".into()],
                        _ => vec!["node.hostname!=node-1".into()],
                    };
                    spec.placement.preferences = match pref {
                        0 => vec![],
                        1 => vec!["node.labels.rack".into()],
                        _ => vec!["bogus".into(), "engine.labels.x".into()],
                    };
                    h.create([t]);
                }
                Step::Advance(secs) => h.advance(std::time::Duration::from_secs(u64::from(secs) * 10)),
                Step::FailTask(k) => {
                    let placed: Vec<_> = h
                        .store
                        .iter::<Task>()
                        .filter(|t| t.node_id.is_some() && t.status.state <= TaskState::Running)
                        .cloned()
                        .collect();
                    if !placed.is_empty() {
                        let mut t = (*placed[k as usize % placed.len()]).clone();
                        t.status.state = TaskState::Failed;
                        let _ = h.commit(vec![swarm_core::StoreAction::Update(t.into())]);
                    }
                }
            }
            h.settle(&mut s);
            for e in h.events() {
                s.handle_event(&e);
            }
            prop_assert!(s.poll_actions(h.now).is_empty(), "settled scheduler still had work");
        }
    }
}
