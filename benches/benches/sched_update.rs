//! Orchestration benchmarks (swarm-sched, issue 3 part B).
//!
//! - `rolling_update_10k`: a rolling update of 10 000 replicas on 100 nodes, parallelism 100,
//!   driven to "update completed" on the virtual clock by `swarm_sched::orchestrator::sim::Sim`
//!   (orchestrator + scheduler + simulated agents + store apply, all on one thread). Target: <= 1 s.
//! - `node_failure_1k`: 1 000 nodes running 10 000 replicas; one node goes down; the orchestrator
//!   handles the events and ticks once (its tasks are replaced). Target: <= 10 ms, the
//!   orchestrator's share (the scheduler placing the replacements is measured in its own bench).
//! - `full_pass_10k`: the first tick after becoming leader on the same store (reference figure).
//!
//! Run: `cargo bench -p swarm-benches --bench sched_update`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use swarm_core::objects::node::NodeState;
use swarm_core::objects::service::{UpdateConfig, UpdateState};
use swarm_core::{Batch, Node, Store, StoreAction, StoreSnapshot, Timestamp, WatchFilter};
use swarm_sched::orchestrator::sim::{Sim, SimRng};
use swarm_sched::testing::{id, node, service};
use swarm_sched::Orchestrator;

const SVC: u128 = 1_000_000;

/// `nodes` nodes running `replicas` replicas of one service (image v1), settled.
fn cluster(nodes: u128, replicas: u64, parallelism: u64) -> Sim {
    let mut sim = Sim::new(42);
    sim.create((1..=nodes).map(node));
    let mut s = service(SVC, replicas);
    s.spec.task.container.image = "v1".into();
    s.spec.update = UpdateConfig {
        parallelism,
        ..UpdateConfig::default()
    };
    sim.create([s]);
    assert_eq!(sim.running_tasks(&id(SVC)).len() as u64, replicas);
    sim
}

fn rolling_update(c: &mut Criterion) {
    let mut g = c.benchmark_group("sched_update");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("rolling_update_10k", |b| {
        b.iter_batched(
            || cluster(100, 10_000, 100),
            |mut sim| {
                sim.update_spec(&id(SVC), |s| s.task.container.image = "v2".into());
                sim.advance(Duration::from_secs(10));
                let done = sim.service(&id(SVC)).update_status.map(|u| u.state);
                assert_eq!(done, Some(UpdateState::Completed));
                sim
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// A store of 1 000 nodes and 10 000 running replicas, as a snapshot to restore per iteration.
fn big_store() -> StoreSnapshot {
    let sim = cluster(1_000, 10_000, 1);
    sim.h.store.snapshot()
}

fn restored(snap: &StoreSnapshot) -> Store {
    let mut store = Store::new();
    store.restore(snap.clone());
    store
}

fn node_failure(c: &mut Criterion) {
    let snap = big_store();
    let now = Timestamp::from_secs(2_000_000);
    let mut g = c.benchmark_group("sched_update");
    g.sample_size(20);
    g.bench_function("node_failure_1k", |b| {
        b.iter_batched(
            || {
                let mut store = restored(&snap);
                let mut orch = Orchestrator::new();
                let mut rng = SimRng::new(1);
                // Leader start-up (not measured): the full pass, committed.
                let actions = orch.tick(&store, now, &mut rng);
                let index = store.index() + 1;
                store
                    .apply(Batch {
                        index,
                        timestamp: now,
                        actions,
                    })
                    .expect("full pass commits");
                let watcher = store.watch(WatchFilter::all());
                let mut down: Node = (**store.get::<Node>(&id(500)).expect("node 500")).clone();
                down.status.state = NodeState::Down;
                let index = store.index() + 1;
                store
                    .apply(Batch {
                        index,
                        timestamp: now,
                        actions: vec![StoreAction::Update(down.into())],
                    })
                    .expect("node update commits");
                let events = watcher.drain().unwrap_or_default();
                (store, orch, rng, events)
            },
            |(store, mut orch, mut rng, events)| {
                orch.handle_events(&events);
                let actions = orch.tick(&store, now, &mut rng);
                // 10 tasks told to shut down + 10 replacements.
                assert_eq!(actions.len(), 20);
                (store, orch, actions)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("full_pass_10k", |b| {
        b.iter_batched(
            || (restored(&snap), Orchestrator::new(), SimRng::new(1)),
            |(store, mut orch, mut rng)| {
                let actions = orch.tick(&store, now, &mut rng);
                (store, orch, actions)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, rolling_update, node_failure);
criterion_main!(benches);
