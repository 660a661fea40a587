//! Task states never go backwards: in each manager's store, a task's observed state
//! (`status.state`) only moves forward (new -> pending -> assigned -> ... -> running -> a final
//! state), across leader changes, snapshots and restarts.
//!
//! Input: every manager sample; the last state seen per (manager, task) is kept, and a later
//! sample showing an earlier state is a violation. A task that disappears (reaped, service
//! removed) is forgotten when it is gone.

use std::collections::BTreeMap;

use swarm_core::{Id, Task, TaskState};

use super::ManagerSample;

/// Last state seen, by manager host and task.
#[derive(Debug, Default)]
pub struct TaskStates {
    seen: BTreeMap<String, BTreeMap<Id, TaskState>>,
}

impl TaskStates {
    /// Forgets what `host` showed: its process restarted, and its store replays the log from its
    /// snapshot again (states it passed through before are seen again, legitimately).
    pub fn restarted(&mut self, host: &str) {
        self.seen.remove(host);
    }

    /// Checks one sample; the violations it shows.
    pub fn observe(&mut self, s: &ManagerSample<'_>) -> Vec<String> {
        let seen = self.seen.entry(s.host.to_string()).or_default();
        let mut found = Vec::new();
        let mut now = BTreeMap::new();
        for t in s.store.iter::<Task>() {
            let state = t.status.state;
            if let Some(before) = seen.get(&t.id) {
                if state < *before {
                    found.push(format!(
                        "task_states: on {} task {} went back from {before:?} to {state:?} (store index {})",
                        s.host,
                        t.id,
                        s.store.index()
                    ));
                }
            }
            now.insert(t.id, state.max(seen.get(&t.id).copied().unwrap_or(state)));
        }
        *seen = now;
        found
    }
}
