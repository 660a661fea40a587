//! A virtual-clock simulation of a leader running the [`Orchestrator`] and the [`Scheduler`], with
//! simulated agents (feature `testing`).
//!
//! [`Sim`] owns a [`Harness`] (store, watch, clock). [`Sim::settle`] runs rounds until nothing
//! changes: events go to both loops, the scheduler's and the orchestrator's actions are committed,
//! then the simulated agents move the tasks on their nodes. [`Sim::advance`] moves the clock forward,
//! stopping at every deadline the orchestrator asks for on the way. Nothing sleeps and the same
//! seed gives the same run.
//!
//! Agents (one per node that is not down): a task placed on the node and desired `ready` is
//! prepared (`ready`); desired `running`, it starts (`running`) unless [`Sim::on_start`] says it
//! fails, completes or is rejected; desired past `running`, it is stopped (`shutdown`).

use std::collections::BTreeSet;
use std::time::Duration;

use rand_core::{impls, Error, RngCore};
use swarm_core::objects::node::NodeState;
use swarm_core::{Event, Id, Node, Object, Service, StoreAction, Task, TaskState, Timestamp};

use super::Orchestrator;
use crate::testing::Harness;
use crate::Scheduler;

/// A small deterministic RNG (SplitMix64) for task ids in simulations.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }
}

impl RngCore for SimRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        impls::fill_bytes_via_next(self, dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// What a simulated agent makes of a task it starts: `None` runs it, `Some(state)` ends it in
/// `state` instead (failed, complete, rejected).
pub type StartHook = Box<dyn FnMut(&Task) -> Option<TaskState>>;

/// Called with the store after every commit (invariant checks).
pub type CommitHook = Box<dyn FnMut(&swarm_core::Store)>;

/// Counts of what a simulation committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Actions from the orchestrator.
    pub orchestrator_actions: usize,
    /// Actions from the scheduler.
    pub scheduler_actions: usize,
    /// Actions from the simulated agents.
    pub agent_actions: usize,
    /// Settle rounds run.
    pub rounds: usize,
}

/// The simulation. See the module docs.
pub struct Sim {
    /// Store, watch and clock.
    pub h: Harness,
    /// The orchestration loop under test.
    pub orch: Orchestrator,
    /// The scheduler placing the orchestrator's tasks.
    pub sched: Scheduler,
    /// Task id source.
    pub rng: SimRng,
    /// Totals so far.
    pub stats: SimStats,
    on_start: Option<StartHook>,
    after_commit: Option<CommitHook>,
    agent_dirty: BTreeSet<Id>,
    /// Nodes whose agents do not act (hung, but not reported down).
    pub frozen: BTreeSet<Id>,
    /// Every event seen, when recording (see [`Sim::record_events`]).
    pub recorded: Option<Vec<Event>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.h.now)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Rounds after which [`Sim::settle`] gives up (the loops did not converge).
pub const MAX_ROUNDS: usize = 10_000;

impl Sim {
    /// An empty cluster with RNG seed `seed`.
    pub fn new(seed: u64) -> Sim {
        let h = Harness::new();
        let mut sched = Scheduler::new();
        sched.handle_reset(&h.store);
        Sim {
            h,
            orch: Orchestrator::new(),
            sched,
            rng: SimRng::new(seed),
            stats: SimStats::default(),
            on_start: None,
            after_commit: None,
            agent_dirty: BTreeSet::new(),
            frozen: BTreeSet::new(),
            recorded: None,
        }
    }

    /// Keeps every event from now on in [`Sim::recorded`].
    pub fn record_events(&mut self) {
        self.recorded = Some(Vec::new());
    }

    /// Decides what happens to tasks agents start (see [`StartHook`]).
    pub fn on_start(&mut self, hook: impl FnMut(&Task) -> Option<TaskState> + 'static) {
        self.on_start = Some(Box::new(hook));
    }

    /// Runs `hook` on the store after every commit.
    pub fn after_commit(&mut self, hook: impl FnMut(&swarm_core::Store) + 'static) {
        self.after_commit = Some(Box::new(hook));
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.h.now
    }

    /// Commits actions written by the test (service or node changes), then settles.
    pub fn apply(&mut self, actions: Vec<StoreAction>) {
        if let Err((_, e)) = self.h.commit(actions) {
            panic!("test action refused by the store: {e}");
        }
        if let Some(hook) = self.after_commit.as_mut() {
            hook(&self.h.store);
        }
        self.settle();
    }

    /// `docker service update`: applies `f` to a copy of the service's spec and writes it as the
    /// control API would ([`crate::apply_service_update`]), then settles.
    pub fn update_spec(&mut self, id: &Id, f: impl FnOnce(&mut swarm_core::ServiceSpec)) {
        let now = self.h.now;
        self.update_service(id, |s| {
            let mut spec = s.spec.clone();
            f(&mut spec);
            *s = crate::apply_service_update(s, spec, now);
        });
    }

    /// `docker service rollback` ([`crate::rollback_service`]), then settles.
    pub fn rollback(&mut self, id: &Id) -> Result<(), crate::RollbackError> {
        let Some(s) = self.h.store.get::<Service>(id) else {
            return Ok(());
        };
        let s = crate::rollback_service(s, self.h.now)?;
        self.apply(vec![StoreAction::Update(s.into())]);
        Ok(())
    }

    /// Lets node `id`'s agent act again (see [`Sim::frozen`]), then settles.
    pub fn unfreeze(&mut self, id: &Id) {
        self.frozen.remove(id);
        let ids: Vec<Id> = self.h.store.tasks_by_node(id).map(|t| t.id).collect();
        self.agent_dirty.extend(ids);
        self.settle();
    }

    /// The service `id` as stored.
    pub fn service(&self, id: &Id) -> Service {
        match self.h.store.get::<Service>(id) {
            Some(s) => (**s).clone(),
            None => panic!("no service {id}"),
        }
    }

    /// Creates objects, then settles.
    pub fn create<O: Into<Object>>(&mut self, objs: impl IntoIterator<Item = O>) {
        self.apply(
            objs.into_iter()
                .map(|o| StoreAction::Create(o.into()))
                .collect(),
        );
    }

    /// Rewrites service `id` with `f` (at its current version), then settles.
    pub fn update_service(&mut self, id: &Id, f: impl FnOnce(&mut Service)) {
        let mut s = match self.h.store.get::<Service>(id) {
            Some(s) => (**s).clone(),
            None => panic!("no service {id}"),
        };
        f(&mut s);
        self.apply(vec![StoreAction::Update(s.into())]);
    }

    /// Rewrites node `id` with `f`, then settles.
    pub fn update_node(&mut self, id: &Id, f: impl FnOnce(&mut Node)) {
        let mut n = match self.h.store.get::<Node>(id) {
            Some(n) => (**n).clone(),
            None => panic!("no node {id}"),
        };
        f(&mut n);
        self.apply(vec![StoreAction::Update(n.into())]);
    }

    /// Moves task `id` to observed `state` (as its agent would report), then settles.
    pub fn set_task_state(&mut self, id: &Id, state: TaskState) {
        let Some(t) = self.h.store.get::<Task>(id) else {
            return;
        };
        let mut t = (**t).clone();
        t.status.state = state;
        t.status.timestamp = self.h.now;
        if state == TaskState::Failed {
            t.status.err = "task: non-zero exit (1)".into();
            t.status.exit_code = Some(1);
        }
        self.apply(vec![StoreAction::Update(t.into())]);
    }

    /// Tasks of `service` (any state).
    pub fn tasks_of(&self, service: &Id) -> Vec<Task> {
        self.h
            .store
            .tasks_by_service(service)
            .map(|t| (**t).clone())
            .collect()
    }

    /// Tasks of `service` that are live: desired at most running and not stopped.
    pub fn live_tasks(&self, service: &Id) -> Vec<Task> {
        let mut v = self.tasks_of(service);
        v.retain(|t| t.desired_state <= TaskState::Running && t.status.state <= TaskState::Running);
        v
    }

    /// Tasks of `service` observed running with desired state running.
    pub fn running_tasks(&self, service: &Id) -> Vec<Task> {
        let mut v = self.tasks_of(service);
        v.retain(|t| t.desired_state == TaskState::Running && t.status.state == TaskState::Running);
        v
    }

    /// Runs rounds until no component has anything to do at the current time.
    pub fn settle(&mut self) {
        for _ in 0..MAX_ROUNDS {
            self.stats.rounds += 1;
            if self.round() == 0 {
                return;
            }
        }
        panic!(
            "simulation did not settle within {MAX_ROUNDS} rounds at {:?}",
            self.h.now
        );
    }

    /// Moves the clock forward by `d`, ticking at every orchestrator deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let target = Timestamp(
            self.h
                .now
                .as_nanos()
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        );
        self.settle();
        while let Some(next) = self.orch.next_deadline() {
            if next > target {
                break;
            }
            if next > self.h.now {
                self.h.now = next;
            }
            self.settle();
            if self.orch.next_deadline() == Some(next) && next <= self.h.now {
                // A deadline that does not move on is a bug in the loop, not a reason to spin.
                panic!("deadline {next:?} did not move after a tick");
            }
        }
        self.h.now = target;
        self.settle();
    }

    fn feed(&mut self) {
        let events = self.h.events();
        for e in &events {
            self.sched.handle_event(e);
            self.orch.handle_event(e);
            match e {
                Event::Created(Object::Task(t))
                | Event::Updated {
                    new: Object::Task(t),
                    ..
                } => {
                    self.agent_dirty.insert(t.id);
                }
                Event::Updated {
                    new: Object::Node(n),
                    ..
                }
                | Event::Created(Object::Node(n))
                    if n.status.state != NodeState::Down =>
                {
                    let ids: Vec<Id> = self.h.store.tasks_by_node(&n.id).map(|t| t.id).collect();
                    self.agent_dirty.extend(ids);
                }
                _ => {}
            }
        }
        if let Some(rec) = self.recorded.as_mut() {
            rec.extend(events);
        }
    }

    fn commit_from(&mut self, actions: Vec<StoreAction>, who: u8) -> usize {
        let n = actions.len();
        if n == 0 {
            return 0;
        }
        match who {
            0 => self.stats.scheduler_actions += n,
            1 => self.stats.orchestrator_actions += n,
            _ => self.stats.agent_actions += n,
        }
        if let Err((rejected, _)) = self.h.commit(actions) {
            match who {
                0 => self.sched.handle_rejected(&self.h.store, &rejected),
                1 => self.orch.handle_commit_failed(),
                _ => {}
            }
        }
        if let Some(hook) = self.after_commit.as_mut() {
            hook(&self.h.store);
        }
        n
    }

    /// One round: scheduler, orchestrator, agents. Returns the number of actions committed.
    fn round(&mut self) -> usize {
        let mut n = 0;
        self.feed();
        let a = self.sched.poll_actions(self.h.now);
        n += self.commit_from(a, 0);
        self.feed();
        let a = self.orch.tick(&self.h.store, self.h.now, &mut self.rng);
        n += self.commit_from(a, 1);
        self.feed();
        let a = self.agents();
        n += self.commit_from(a, 2);
        n
    }

    /// The simulated agents' status reports for the tasks that changed.
    fn agents(&mut self) -> Vec<StoreAction> {
        let mut out = Vec::new();
        for id in std::mem::take(&mut self.agent_dirty) {
            let Some(t) = self.h.store.get::<Task>(&id) else {
                continue;
            };
            let Some(node) = t.node_id.and_then(|n| self.h.store.get::<Node>(&n)) else {
                continue;
            };
            if node.status.state == NodeState::Down
                || t.status.state < TaskState::Assigned
                || self.frozen.contains(&node.id)
            {
                continue;
            }
            let st = t.status.state;
            let next = if t.desired_state > TaskState::Running {
                (st <= TaskState::Running).then_some(TaskState::Shutdown)
            } else if t.desired_state == TaskState::Running && st < TaskState::Running {
                let hook = self.on_start.as_mut().and_then(|h| h(t));
                Some(hook.unwrap_or(TaskState::Running))
            } else if t.desired_state == TaskState::Ready && st < TaskState::Ready {
                Some(TaskState::Ready)
            } else {
                None
            };
            if let Some(state) = next {
                let mut t = (**t).clone();
                t.status.state = state;
                t.status.timestamp = self.h.now;
                t.status.message = state.as_str().into();
                if state == TaskState::Failed {
                    t.status.err = "task: non-zero exit (1)".into();
                    t.status.exit_code = Some(1);
                }
                out.push(StoreAction::Update(t.into()));
            }
        }
        out
    }
}
