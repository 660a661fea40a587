//! The invariants a simulated run checks, one per file. Each keeps what it has seen and reports
//! violations as text with the virtual time they were seen at; [`Checks`] holds them all and is
//! fed by the managers' observers (`observe.rs`), the workload driver and the healing phase.
//!
//! Checked while running: [`leader_per_term`], [`stores_agree`], [`task_states`],
//! [`update_order`] (from the managers' samples) and [`secrets_sent`] (from what the dispatchers
//! send, `sim::tap`). Checked after
//! healing: [`acked_writes`], [`convergence`] (and the others keep running).

pub mod acked_writes;
pub mod convergence;
pub mod leader_per_term;
pub mod secrets_sent;
pub mod stores_agree;
pub mod task_states;
pub mod update_order;

use std::time::Duration;

use swarm_core::Store;
use swarm_raft::NodeStatus;

/// One sample of a manager: its raft status and its store at one moment.
#[derive(Debug)]
pub struct ManagerSample<'a> {
    /// The manager's host name.
    pub host: &'a str,
    /// Virtual time of the sample.
    pub at: Duration,
    /// Its raft status.
    pub raft: &'a NodeStatus,
    /// Its store (read under the store's lock: one consistent state).
    pub store: &'a Store,
    /// SHA-256 of the store's snapshot encoding at `store.index()`.
    pub digest: [u8; 32],
}

/// Every invariant of a run, and the violations found so far.
#[derive(Debug, Default)]
pub struct Checks {
    /// At most one leader per term.
    pub leaders: leader_per_term::LeaderPerTerm,
    /// Same applied index, same store.
    pub stores: stores_agree::StoresAgree,
    /// Task states never go backwards.
    pub tasks: task_states::TaskStates,
    /// No more tasks running in a slot than the update order allows.
    pub slots: update_order::UpdateOrderSlots,
    /// Secrets only sent to nodes with a task that references them.
    pub secrets: secrets_sent::SecretsSent,
    /// What the workload was told, checked against the healed stores.
    pub acked: acked_writes::AckedWrites,
    /// Violations, each `"<virtual seconds> <invariant>: <what>"`.
    pub violations: Vec<String>,
    /// Findings that are not violations in this configuration (a term shared by two leaders
    /// outside strict mode), same format.
    pub notes: Vec<String>,
}

impl Checks {
    /// Feeds one manager sample to the running invariants.
    pub fn on_sample(&mut self, s: &ManagerSample<'_>) {
        let mut found = Vec::new();
        if let Some(shared) = self.leaders.observe(s) {
            if self.leaders.is_violation() {
                found.push(shared);
            } else {
                self.notes
                    .push(format!("{:.3}s {shared}", s.at.as_secs_f64()));
            }
        }
        found.extend(self.stores.observe(s));
        found.extend(self.tasks.observe(s));
        found.extend(self.slots.observe(s));
        for v in found {
            self.violation(s.at, &v);
        }
    }

    /// A manager host's process (re)started: its store replays from its snapshot.
    pub fn restarted(&mut self, host: &str) {
        self.tasks.restarted(host);
    }

    /// Records a violation seen at `at`.
    pub fn violation(&mut self, at: Duration, what: &str) {
        self.violations
            .push(format!("{:.3}s {what}", at.as_secs_f64()));
    }
}
