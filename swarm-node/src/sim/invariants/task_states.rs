//! Task states never go backwards: in each manager's store, a task's observed state
//! (`status.state`) only moves forward (new -> pending -> assigned -> ... -> running -> a final
//! state), across leader changes, snapshots and restarts.
//!
//! Input: every manager sample; the last state seen per (manager, task) is kept, and a later
//! sample showing an earlier state is a violation. A task that disappears (reaped, service
//! removed) is forgotten when it is gone.

use std::collections::BTreeMap;

use swarm_core::{Id, Store, Task, TaskState};

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
        self.store(s.host, s.store)
    }

    /// Checks `host`'s `store`; see [`TaskStates::observe`].
    pub fn store(&mut self, host: &str, store: &Store) -> Vec<String> {
        let seen = self.seen.entry(host.to_string()).or_default();
        let mut found = Vec::new();
        let mut now = BTreeMap::new();
        for t in store.iter::<Task>() {
            let state = t.status.state;
            if let Some(before) = seen.get(&t.id) {
                if state < *before {
                    found.push(format!(
                        "task_states: on {} task {} went back from {before:?} to {state:?} (store index {})",
                        host,
                        t.id,
                        store.index()
                    ));
                }
            }
            now.insert(t.id, state.max(seen.get(&t.id).copied().unwrap_or(state)));
        }
        *seen = now;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::testing::{service, task};
    use swarm_core::{Batch, StoreAction, Timestamp};

    fn put(store: &mut Store, index: u64, t: Task, create: bool) {
        let action = if create {
            StoreAction::Create(t.into())
        } else {
            StoreAction::Update(t.into())
        };
        store
            .apply(Batch {
                index,
                timestamp: Timestamp(index),
                actions: vec![action],
            })
            .unwrap();
    }

    #[test]
    fn a_state_seen_earlier_than_before_is_reported_unless_restarted() {
        let svc = service(1, "web", 1);
        let mut t = task(2, &svc, 1);
        t.status.state = TaskState::Running;
        let mut running = Store::new();
        put(&mut running, 1, t.clone(), true);
        let mut pending = Store::new();
        t.status.state = TaskState::Pending;
        put(&mut pending, 1, t, true);

        let mut states = TaskStates::default();
        assert!(states.store("m0", &pending).is_empty());
        assert!(states.store("m0", &running).is_empty(), "forward");
        let v = states.store("m0", &pending);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("went back"), "{v:?}");
        // Another manager, or m0 after a restart (replaying its log), starts afresh.
        assert!(states.store("m1", &pending).is_empty());
        states.restarted("m0");
        assert!(states.store("m0", &pending).is_empty());
    }
}
