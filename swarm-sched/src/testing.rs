//! Fixtures for tests, benches and simulations (feature `testing`).
//!
//! Builders with sensible defaults and ids derived from numbers ([`id`]), plus [`Harness`]: a
//! [`Store`] with a watch, a virtual clock and a commit helper, which drives any swarm-sched
//! component the way `swarm-node` does (events in, actions out, actions committed, their events fed
//! back). Orchestrator code (issue 3, part B) is welcome to reuse all of it: enable the feature in
//! `[dev-dependencies]` (`swarm-sched = { workspace = true, features = ["testing"] }`) for
//! integration tests; unit tests inside the crate see it without the feature.
//!
//! Everything here is deterministic and never sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::action::split_into_batches;
use swarm_core::objects::service::ServiceMode;
use swarm_core::{
    Annotations, Batch, Event, Id, Meta, Node, Object, Service, ServiceSpec, Store, StoreAction,
    StoreError, Task, TaskState, TaskStatus, Timestamp, Version, WatchFilter, Watcher,
};

use crate::Scheduler;

/// A deterministic id from a number (swarm-core's fixture).
pub use swarm_core::testing::id;

/// One CPU in nano-CPUs.
pub const CPU: i64 = 1_000_000_000;
/// One GiB in bytes.
pub const GIB: i64 = 1 << 30;

/// Node `n`: swarm-core's fixture node (ready, active worker, hostname `node-<n>`, linux/x86_64,
/// 4 CPUs, 8 GiB, no labels) with address `10.<n / 256 % 256>.<n % 256>.1`.
pub fn node(n: u128) -> Node {
    let mut node = swarm_core::testing::node(n);
    node.status.addr = format!("10.{}.{}.1", n / 256 % 256, n % 256);
    node
}

/// [`node`] with node labels (`node.labels.<k>`).
pub fn labeled_node(n: u128, labels: &[(&str, &str)]) -> Node {
    let mut node = node(n);
    node.spec.annotations.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    node
}

/// Service `n` named `svc-<n>`: replicated with `replicas`, default task spec, spec version 1.
pub fn service(n: u128, replicas: u64) -> Service {
    Service {
        id: id(n),
        meta: Meta::default(),
        spec: ServiceSpec {
            annotations: Annotations::named(format!("svc-{n}")),
            mode: ServiceMode::Replicated { replicas },
            ..ServiceSpec::default()
        },
        spec_version: Version(1),
        previous_spec: None,
        previous_spec_version: None,
        endpoint: Default::default(),
        update_status: None,
        job_status: None,
    }
}

/// Task `n` of `svc` in `slot`: new, desired running, no node, the service's current task spec.
pub fn task(svc: &Service, slot: u64, n: u128) -> Task {
    Task {
        id: id(n),
        meta: Meta::default(),
        service_id: svc.id,
        service_annotations: svc.spec.annotations.clone(),
        slot,
        node_id: None,
        spec: Arc::new(svc.spec.task.clone()),
        spec_version: svc.spec_version,
        status: TaskStatus::default(),
        desired_state: TaskState::Running,
        job_iteration: None,
        assigned_secrets: Vec::new(),
        assigned_configs: Vec::new(),
        networks: Vec::new(),
        ports: Vec::new(),
    }
}

/// Tasks `first..first + count` of `svc`, slots 1.., sharing one spec allocation.
pub fn tasks(svc: &Service, first: u128, count: u64) -> Vec<Task> {
    let spec = Arc::new(svc.spec.task.clone());
    (0..count)
        .map(|i| {
            let mut t = task(svc, i + 1, first + u128::from(i));
            t.spec = spec.clone();
            t
        })
        .collect()
}

/// A store with a watch on everything, a virtual clock, and helpers to commit and to run a
/// [`Scheduler`] to quiescence.
#[derive(Debug)]
pub struct Harness {
    /// The store (read it freely; change it only through [`Harness::commit`]).
    pub store: Store,
    watcher: Watcher,
    /// The virtual clock: batch timestamps and the `now` handed to components.
    pub now: Timestamp,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// An empty store at time 1 000 000 s.
    pub fn new() -> Harness {
        let mut store = Store::new();
        let watcher = store.watch(WatchFilter::all());
        Harness {
            store,
            watcher,
            now: Timestamp::from_secs(1_000_000),
        }
    }

    /// Moves the virtual clock forward.
    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
    }

    /// Commits `actions` as the driver proposes them (batches of at most
    /// `MAX_ACTIONS_PER_BATCH` actions and `MAX_PROPOSAL_BYTES` bytes, see
    /// [`split_into_batches`]), stamped `now`. Stops at the first refused batch and returns it with
    /// the error. The actions are handed to the store without a copy (see
    /// [`Store::apply_or_give_back`]).
    pub fn commit(
        &mut self,
        actions: Vec<StoreAction>,
    ) -> Result<(), (Vec<StoreAction>, StoreError)> {
        for chunk in split_into_batches(actions) {
            let batch = Batch {
                index: self.store.index() + 1,
                timestamp: self.now,
                actions: chunk,
            };
            if let Err(r) = self.store.apply_or_give_back(batch) {
                return Err((r.actions, r.error));
            }
        }
        Ok(())
    }

    /// Creates objects (one commit). Panics if the store refuses them: fixtures must be valid.
    pub fn create<O: Into<Object>>(&mut self, objs: impl IntoIterator<Item = O>) {
        let actions = objs
            .into_iter()
            .map(|o| StoreAction::Create(o.into()))
            .collect();
        if let Err((_, e)) = self.commit(actions) {
            panic!("fixture refused by the store: {e}");
        }
    }

    /// Every event since the last drain.
    pub fn events(&mut self) -> Vec<Event> {
        self.watcher.drain().unwrap_or_default()
    }

    /// Feeds pending events to `s`, polls it and commits its actions; repeats until it has nothing
    /// to say (at most 100 rounds). Returns the number of actions committed.
    pub fn settle(&mut self, s: &mut Scheduler) -> usize {
        let mut total = 0;
        for _ in 0..100 {
            for e in self.events() {
                s.handle_event(&e);
            }
            let actions = s.poll_actions(self.now);
            if actions.is_empty() {
                break;
            }
            total += actions.len();
            if let Err((rejected, _)) = self.commit(actions) {
                s.handle_rejected(&self.store, &rejected);
            }
        }
        total
    }

    /// The task with id `id`.
    pub fn task(&self, id: &Id) -> Option<Arc<Task>> {
        self.store.get::<Task>(id).cloned()
    }

    /// Active tasks (assigned..running, desired at most complete) per node id.
    pub fn load(&self) -> BTreeMap<Id, usize> {
        let mut m = BTreeMap::new();
        for t in self.store.iter::<Task>() {
            if let (Some(n), true) = (t.node_id, t.status.state.is_active_on_node()) {
                if t.desired_state <= TaskState::Complete {
                    *m.entry(n).or_insert(0) += 1;
                }
            }
        }
        m
    }
}
