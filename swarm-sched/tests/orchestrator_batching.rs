//! Huge-but-allowed task counts are created in bounded steps: at most
//! [`MAX_NEW_TASKS_PER_TICK`] new tasks per tick across all services, each tick's actions
//! proposed in batches of at most 200 actions and 1.5 MiB (SEMANTICS: "One proposal <= 1.5 MiB;
//! batches split every 200 changes"), until every slot has its task. The driver is played by
//! hand: events in, tick, split, commit, as `swarm-node`'s manager loop does.

use std::collections::BTreeSet;

use swarm_core::action::{
    encode_actions, split_into_batches, MAX_ACTIONS_PER_BATCH, MAX_PROPOSAL_BYTES,
};
use swarm_core::{Batch, Service, ServiceMode, StoreAction, Task};
use swarm_sched::orchestrator::sim::SimRng;
use swarm_sched::orchestrator::MAX_NEW_TASKS_PER_TICK;
use swarm_sched::testing::{id, node, service, Harness};
use swarm_sched::Orchestrator;

/// One driver round: feed events, tick, check and commit every proposal. Returns the tasks the
/// tick created.
fn round(h: &mut Harness, orch: &mut Orchestrator, rng: &mut SimRng) -> usize {
    for e in h.events() {
        orch.handle_event(&e);
    }
    let actions = orch.tick(&h.store, h.now, rng);
    let created = actions
        .iter()
        .filter(|a| matches!(a, StoreAction::Create(_)))
        .count();
    for chunk in split_into_batches(actions) {
        assert!(
            chunk.len() <= MAX_ACTIONS_PER_BATCH,
            "{} actions",
            chunk.len()
        );
        let bytes = encode_actions(&chunk).len();
        assert!(bytes <= MAX_PROPOSAL_BYTES, "a proposal of {bytes} bytes");
        let batch = Batch {
            index: h.store.index() + 1,
            timestamp: h.now,
            actions: chunk,
        };
        h.store
            .apply(batch)
            .expect("the store accepts the proposal");
    }
    created
}

fn slots_of(h: &Harness, service: u128) -> BTreeSet<u64> {
    h.store
        .iter::<Task>()
        .filter(|t| t.service_id == id(service))
        .map(|t| t.slot)
        .collect()
}

/// 100,000 replicas (the default cap) take five full ticks, then nothing more is created; every
/// slot 1..=100,000 has exactly one task.
#[test]
fn a_100k_replica_service_converges_over_bounded_ticks() {
    let mut h = Harness::new();
    h.create([node(1), node(2)]);
    h.create([service(1, 100_000)]);
    let mut orch = Orchestrator::new();
    let mut rng = SimRng::new(7);
    let per_tick: Vec<usize> = (0..7).map(|_| round(&mut h, &mut orch, &mut rng)).collect();
    let full = MAX_NEW_TASKS_PER_TICK as usize;
    assert_eq!(per_tick, vec![full, full, full, full, full, 0, 0]);
    assert_eq!(h.store.iter::<Task>().count(), 100_000);
    assert_eq!(slots_of(&h, 1), (1..=100_000).collect());
}

/// The budget is per tick, not per service: two services and a replicated job asking for
/// 15,000 tasks each share it, and all converge.
#[test]
fn services_share_one_budget_per_tick() {
    let mut h = Harness::new();
    h.create([node(1)]);
    let mut job: Service = service(3, 0);
    job.spec.mode = ServiceMode::ReplicatedJob {
        max_concurrent: 15_000,
        total_completions: 15_000,
    };
    h.create([service(1, 15_000), service(2, 15_000), job]);
    let mut orch = Orchestrator::new();
    let mut rng = SimRng::new(7);
    let per_tick: Vec<usize> = (0..4).map(|_| round(&mut h, &mut orch, &mut rng)).collect();
    assert!(
        per_tick.iter().all(|n| *n as u64 <= MAX_NEW_TASKS_PER_TICK),
        "{per_tick:?}"
    );
    assert_eq!(per_tick.iter().sum::<usize>(), 45_000, "{per_tick:?}");
    assert_eq!(per_tick[3], 0, "{per_tick:?}");
    assert_eq!(slots_of(&h, 1), (1..=15_000).collect());
    assert_eq!(slots_of(&h, 2), (1..=15_000).collect());
    assert_eq!(slots_of(&h, 3), (0..15_000).collect());
}
