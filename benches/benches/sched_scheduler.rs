//! swarm-sched scheduler benchmarks.
//!
//! 1. SwarmKit's scheduler benchmark shapes (`manager/scheduler/scheduler_test.go`): N nodes, M
//!    pending tasks, every task its own service (so batching cannot help). Timed like SwarmKit's
//!    `benchScheduler` (its timer starts before the transaction creating nodes and tasks commits):
//!    from a scheduler watching a store that holds only the services, through the commits creating
//!    the nodes and the tasks (`Store::apply` in batches of 200, events queued), to "every
//!    assignment committed": the scheduler handles the creation events, places, its actions are
//!    applied to the `Store` in batches of 200 and the resulting events are fed back
//!    (`Harness::settle`). Setup is building the objects in memory (as `Object`s, as SwarmKit
//!    builds its objects before its timer starts) and committing the services: SwarmKit's shape
//!    has no service objects at all (its tasks name no service), so their commits are not part of
//!    its timed region either. The `third` shape puts a constraint on every task that only every
//!    third node satisfies (SwarmKit uses a network plugin filter for the same effect).
//! 2. `spread`: one service, 100 000 tasks onto 10 000 nodes with 2 constraints and a 2-level
//!    spread, timed the same way.
//! 3. `node_down`: 1 000 nodes running 10 000 tasks; one node goes down. `full` times the
//!    orchestrator (part B) plus the scheduler until the store is quiet again; `scheduler` times only
//!    the scheduler's share: placing the replacement tasks the orchestrator already created.
//!
//! Run: `cargo bench -p swarm-benches --bench sched_scheduler` (a filter such as `swarmkit/1k_nodes`
//! runs one group). Big shapes use 10 flat samples and short warm-ups.
//!
//! The binary uses mimalloc as its global allocator (the libraries choose none): the timed regions
//! allocate and free a few objects per task, and with glibc's malloc the cost per task grew with
//! the heap (its free-chunk consolidation and first-touch faults). `swarm-sched`'s example
//! `sched_profile` (glibc) and `sched_profile_mimalloc` measure the same region with each allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use swarm_core::objects::node::NodeState;
use swarm_core::{Event, Node, Object, Service, StoreAction};
use swarm_sched::orchestrator::sim::{Sim, SimRng};
use swarm_sched::testing::{id, labeled_node, node, service, task, tasks, Harness};
use swarm_sched::{Orchestrator, Scheduler};

/// N nodes, M single-task services and their tasks, built in memory but not committed yet.
struct SwarmkitShape {
    nodes: Vec<Object>,
    services: Vec<Object>,
    tasks: Vec<Object>,
}

fn swarmkit_shape(nodes: usize, count: usize, third: bool) -> SwarmkitShape {
    let nodes: Vec<Node> = (0..nodes)
        .map(|i| {
            if third && i % 3 == 0 {
                labeled_node(i as u128 + 1, &[("net", "special")])
            } else {
                node(i as u128 + 1)
            }
        })
        .collect();
    let services: Vec<Service> = (0..count)
        .map(|i| {
            let mut svc = service(1_000_000 + i as u128, 1);
            if third {
                svc.spec.task.placement.constraints = vec!["node.labels.net==special".into()];
            }
            svc
        })
        .collect();
    let tasks = services
        .iter()
        .enumerate()
        .map(|(i, svc)| task(svc, 1, 10_000_000 + i as u128).into())
        .collect();
    SwarmkitShape {
        nodes: nodes.into_iter().map(Object::from).collect(),
        services: services.into_iter().map(Object::from).collect(),
        tasks,
    }
}

/// Setup: the services committed, a fresh scheduler watching; nodes and tasks still in memory.
fn prepare(shape: SwarmkitShape) -> (Harness, Scheduler, Vec<Object>, Vec<Object>) {
    let mut h = Harness::new();
    h.create(shape.services);
    h.events();
    let mut s = Scheduler::new();
    s.handle_reset(&h.store);
    (h, s, shape.nodes, shape.tasks)
}

/// The timed region: commit nodes and tasks to the store the scheduler watches, then settle.
fn commit_and_schedule(
    (mut h, s, nodes, tasks): (Harness, Scheduler, Vec<Object>, Vec<Object>),
) -> (Harness, Scheduler) {
    h.create(nodes);
    h.create(tasks);
    schedule_all((h, s))
}

fn schedule_all((mut h, mut s): (Harness, Scheduler)) -> (Harness, Scheduler) {
    let n = h.settle(&mut s);
    assert!(n > 0 && s.stats().unassigned == 0, "everything placed");
    (h, s)
}

fn swarmkit(c: &mut Criterion) {
    let shapes: &[(&str, usize, usize, bool)] = &[
        ("1k_nodes_1k_tasks", 1_000, 1_000, false),
        ("1k_nodes_10k_tasks", 1_000, 10_000, false),
        ("1k_nodes_100k_tasks", 1_000, 100_000, false),
        ("100k_nodes_1k_tasks", 100_000, 1_000, false),
        ("100k_nodes_100k_tasks", 100_000, 100_000, false),
        ("5k_nodes_100k_tasks_third_eligible", 5_000, 100_000, true),
    ];
    let mut g = c.benchmark_group("swarmkit");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    for &(name, nodes, count, third) in shapes {
        g.throughput(Throughput::Elements(count as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || prepare(swarmkit_shape(nodes, count, third)),
                commit_and_schedule,
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// 10 000 nodes in 4 datacenters x 10 racks; 90% are `tier=app`; one service of 100 000 tasks
/// constrained to `tier==app` workers, spread over dc then rack.
fn spread_shape() -> (Harness, Scheduler) {
    let mut h = Harness::new();
    let nodes: Vec<Node> = (0..10_000u128)
        .map(|i| {
            let dc = format!("dc{}", i % 4);
            let rack = format!("r{}", (i / 4) % 10);
            let tier = if i % 10 == 0 { "db" } else { "app" };
            labeled_node(i + 1, &[("dc", &dc), ("rack", &rack), ("tier", tier)])
        })
        .collect();
    h.create(nodes);
    let mut svc = service(1_000_000, 100_000);
    svc.spec.task.placement.constraints =
        vec!["node.labels.tier==app".into(), "node.role==worker".into()];
    svc.spec.task.placement.preferences = vec!["node.labels.dc".into(), "node.labels.rack".into()];
    h.create([svc.clone()]);
    let mut s = Scheduler::new();
    s.handle_reset(&h.store);
    h.create(tasks(&svc, 10_000_000, 100_000));
    (h, s)
}

fn spread(c: &mut Criterion) {
    let mut g = c.benchmark_group("spread");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(100_000));
    g.bench_function(
        "one_service_100k_tasks_10k_nodes_2_constraints_2_levels",
        |b| b.iter_batched(spread_shape, schedule_all, BatchSize::PerIteration),
    );
    g.finish();
}

/// 1 000 nodes, 10 services x 1 000 replicas, all running (simulated agents), then the loops are
/// detached from the simulation so the timed part has no agents.
fn running_cluster() -> (Harness, Orchestrator, Scheduler) {
    let mut sim = Sim::new(7);
    sim.create((1..=1_000u128).map(node).collect::<Vec<_>>());
    sim.create(
        (0..10u128)
            .map(|i| service(100 + i, 1_000))
            .collect::<Vec<_>>(),
    );
    sim.settle();
    (sim.h, sim.orch, sim.sched)
}

/// Node 1 goes down (committed, events not yet handled).
fn node_down(h: &mut Harness) {
    let mut n = (**h.store.get::<Node>(&id(1)).expect("node 1")).clone();
    n.status.state = NodeState::Down;
    h.commit(vec![StoreAction::Update(Object::Node(n.into()))])
        .unwrap_or_else(|(_, e)| panic!("{e}"));
}

/// Runs orchestrator and scheduler until neither has anything to commit.
fn reconcile(h: &mut Harness, o: &mut Orchestrator, s: &mut Scheduler, rng: &mut SimRng) -> usize {
    let mut total = 0;
    for _ in 0..100 {
        let events: Vec<Event> = h.events();
        o.handle_events(&events);
        for e in &events {
            s.handle_event(e);
        }
        let mut actions = o.tick(&h.store, h.now, rng);
        actions.extend(s.poll_actions(h.now));
        if actions.is_empty() {
            break;
        }
        total += actions.len();
        if let Err((rejected, _)) = h.commit(actions) {
            s.handle_rejected(&h.store, &rejected);
            o.handle_commit_failed();
        }
    }
    total
}

fn node_failure(c: &mut Criterion) {
    let mut g = c.benchmark_group("node_down");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(3));
    let base = running_cluster();
    let snapshot = base.0.store.snapshot();
    // Rebuild a fresh copy of the settled cluster for every iteration (loops re-read the store).
    let fresh = move || {
        let mut h = Harness::new();
        h.store.restore(snapshot.clone());
        h.events();
        let mut o = Orchestrator::new();
        o.handle_became_leader();
        let mut s = Scheduler::new();
        s.handle_reset(&h.store);
        let mut rng = SimRng::new(1);
        reconcile(&mut h, &mut o, &mut s, &mut rng);
        (h, o, s, rng)
    };
    let fresh2 = fresh.clone();
    g.bench_function("full_1k_nodes_10k_tasks", |b| {
        b.iter_batched(
            || {
                let (mut h, o, s, rng) = fresh();
                node_down(&mut h);
                (h, o, s, rng)
            },
            |(mut h, mut o, mut s, mut rng)| {
                let n = reconcile(&mut h, &mut o, &mut s, &mut rng);
                assert!(n > 0);
                (h, o, s)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("scheduler_1k_nodes_10k_tasks", |b| {
        b.iter_batched(
            || {
                let (mut h, mut o, mut s, mut rng) = fresh2();
                node_down(&mut h);
                // The orchestrator reacts (replacements created); the scheduler has not seen it.
                let events = h.events();
                o.handle_events(&events);
                let actions = o.tick(&h.store, h.now, &mut rng);
                assert!(!actions.is_empty());
                h.commit(actions).unwrap_or_else(|(_, e)| panic!("{e}"));
                for e in &events {
                    s.handle_event(e);
                }
                (h, s)
            },
            |(mut h, mut s)| {
                let n = h.settle(&mut s);
                assert!(n > 0);
                (h, s)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, swarmkit, spread, node_failure);
criterion_main!(benches);
