//! Never more running tasks for a slot than the update order allows: in each manager's store, a
//! replica slot (a node, for a global service) holds at most one task that is running and meant
//! to run (observed `running`, desired `running`) when the service updates and rolls back
//! stop-first; and, whatever the order, never two such tasks of the same spec version (two tasks
//! created for one slot from one spec: an orchestrator that acted twice). Start-first allows the
//! old task and its replacement, and one more per update that interrupts a start-first update
//! still replacing the slot (see `allowed`), so it is bounded by versions only.
//!
//! Input: every manager sample. A task told to stop (desired `shutdown`, `remove`) no longer
//! counts even while its node has not stopped it yet: the orchestrator replaced it (its node went
//! down, or the updater stopped it first), and which tasks it means to run is what this checks.
//! The stop-first bound applies to a slot holding a task of the current or previous spec version
//! (both made under a known stop-first order): a stop-first update shuts a slot's other tasks down
//! before its own task starts, so such a task never runs beside another one meant to run. A slot
//! holding only tasks of older versions may be what a start-first update, interrupted by the
//! stop-first ones since, left behind (its old task and its replacement, both running until the
//! updater takes the slot again): their order is no longer known, so only versions bound them
//! (defect 14: a start-first update, then a stop-first one and a scale, seed 604).
//! Not checked: the wall-time overlap of an old task still running on a node that was down and the
//! replacement the orchestrator started meanwhile (SwarmKit's behaviour too).
//! A removed service's slots are bounded by versions only: the index that removes it may still
//! show a start-first update's old task and replacement both running (defect 13).

use std::collections::BTreeMap;

use swarm_core::objects::service::UpdateOrder;
use swarm_core::{Id, Service, Store, Task, TaskState};

use super::ManagerSample;

/// A slot: service, slot number, node (a global service's slot).
type SlotKey = (Id, u64, Option<Id>);

/// Counts slot checks; keeps no state between samples.
#[derive(Debug, Default)]
pub struct UpdateOrderSlots {
    checked: usize,
}

impl UpdateOrderSlots {
    /// Checks one sample; the violations it shows.
    pub fn observe(&mut self, s: &ManagerSample<'_>) -> Vec<String> {
        self.store(s.host, s.store)
    }

    /// Slots checked so far (over every sample).
    pub fn checked(&self) -> usize {
        self.checked
    }

    /// Checks `host`'s `store`; see the module docs.
    pub fn store(&mut self, host: &str, store: &Store) -> Vec<String> {
        let mut slots: BTreeMap<SlotKey, Vec<(Id, u64)>> = BTreeMap::new();
        // Each task as a violation names it: id, node, and when it was created and last written
        // (virtual seconds), so a failing seed says where the duplicate came from.
        let describe = |t: &Task| {
            let secs = |ts: swarm_core::Timestamp| {
                ts.0.saturating_sub(crate::sim::SIM_EPOCH.0) as f64 / 1e9
            };
            format!(
                "{} on {} created {:.3}s written {:.3}s at index {}",
                t.id,
                t.node_id.map_or("no node".to_string(), |n| n.to_string()),
                secs(t.meta.created_at),
                secs(t.meta.updated_at),
                t.meta.version.0
            )
        };
        for t in store.iter::<Task>() {
            if t.status.state == TaskState::Running && t.desired_state == TaskState::Running {
                // A global service's slot is its node.
                let node = if t.slot == 0 { t.node_id } else { None };
                slots
                    .entry((t.service_id, t.slot, node))
                    .or_default()
                    .push((t.id, t.spec_version.0));
            }
        }
        let mut found = Vec::new();
        for ((service_id, slot, node), tasks) in &slots {
            self.checked += 1;
            let service = store.get::<Service>(service_id);
            let name = service.map_or("(removed)", |s| s.spec.annotations.name.as_str());
            let at = match node {
                Some(n) => format!("node {n}"),
                None => format!("slot {slot}"),
            };
            // Never two tasks of one spec version meant to run in one slot, whatever the order.
            let mut versions: BTreeMap<u64, Vec<Id>> = BTreeMap::new();
            for (id, version) in tasks {
                versions.entry(*version).or_default().push(*id);
            }
            for (version, same) in &versions {
                if same.len() > 1 {
                    found.push(format!(
                        "update_order: on {host} (store index {}) service {name:?} {at} has {} tasks of spec version {version} running and desired running ({})",
                        store.index(),
                        same.len(),
                        same.iter()
                            .filter_map(|id| store.get::<Task>(id))
                            .map(|t| describe(t))
                            .collect::<Vec<_>>()
                            .join("; "),
                    ));
                }
            }
            // A removed service has no order to bound by any more (its last update may have been
            // start-first, its tasks not stopped yet): only the per-version check applies.
            // The order bound speaks for the tasks made under the current and previous specs
            // only: tasks of older versions were made under an order no longer known (defect 14).
            let known = |s: &Service| {
                tasks.iter().any(|(_, v)| {
                    *v == s.spec_version.0 || s.previous_spec_version.is_some_and(|p| p.0 == *v)
                })
            };
            let bound = service.filter(|s| known(s)).and_then(|s| allowed(s));
            if let Some(allowed) = bound {
                if tasks.len() > allowed {
                    found.push(format!(
                        "update_order: on {host} (store index {}) service {name:?} {at} has {} tasks running and desired running ({}), its update order allows {allowed}",
                        store.index(),
                        tasks.len(),
                        tasks
                            .iter()
                            .map(|(id, v)| format!("{id} of spec version {v}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ));
                }
            }
        }
        found
    }
}

/// Running tasks a slot of `s` may hold in all: one if its current and previous specs update and
/// roll back stop-first; no bound (`None`) otherwise. Start-first keeps a slot's old task serving
/// until its replacement runs, and an update that starts while a start-first one is still
/// replacing the slot leaves the old task and the first replacement both meant to run (each now
/// out of date) until the newest runs: one more task per interrupted update (seed 59, a single
/// store index). What start-first still forbids is checked per spec version (above).
fn allowed(s: &Service) -> Option<usize> {
    let start_first = |spec: &swarm_core::ServiceSpec| {
        spec.update.order == UpdateOrder::StartFirst
            || spec.rollback.order == UpdateOrder::StartFirst
    };
    if start_first(&s.spec) || s.previous_spec.as_ref().is_some_and(start_first) {
        None
    } else {
        Some(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::testing::{service, task};
    use swarm_core::{Batch, StoreAction, Timestamp};

    fn store_with(svc: &Service, tasks: Vec<Task>) -> Store {
        let mut store = Store::new();
        let mut actions = vec![StoreAction::Create(svc.clone().into())];
        actions.extend(tasks.into_iter().map(|t| StoreAction::Create(t.into())));
        store
            .apply(Batch {
                index: 1,
                timestamp: Timestamp(1),
                actions,
            })
            .unwrap();
        store
    }

    fn running(n: u128, svc: &Service, slot: u64, desired: TaskState) -> Task {
        let mut t = task(n, svc, slot);
        t.status.state = TaskState::Running;
        t.desired_state = desired;
        t
    }

    #[test]
    fn stop_first_allows_one_start_first_bounds_versions_and_stopped_tasks_do_not_count() {
        let mut svc = service(1, "web", 2);
        let mut two = vec![
            running(2, &svc, 1, TaskState::Running),
            running(3, &svc, 1, TaskState::Running),
            running(4, &svc, 2, TaskState::Running),
        ];
        // An old and a new spec version in slot 1.
        two[1].spec_version = swarm_core::Version(7);
        let mut check = UpdateOrderSlots::default();
        let v = check.store("m0", &store_with(&svc, two.clone()));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("slot 1 has 2 tasks running"), "{v:?}");
        // The old task told to stop: one task meant to run.
        let mut replaced = two.clone();
        replaced[0].desired_state = TaskState::Shutdown;
        assert!(check.store("m0", &store_with(&svc, replaced)).is_empty());
        // Start-first: two versions are allowed, and three after an interrupted update...
        svc.spec.update.order = UpdateOrder::StartFirst;
        assert!(check.store("m0", &store_with(&svc, two.clone())).is_empty());
        let mut three = two.clone();
        let mut third = running(5, &svc, 1, TaskState::Running);
        third.spec_version = swarm_core::Version(9);
        three.push(third);
        assert!(check.store("m0", &store_with(&svc, three)).is_empty());
        // ...but never two tasks of one version (defect 9's duplicates).
        let mut same = two;
        same[1].spec_version = same[0].spec_version;
        let v = check.store("m0", &store_with(&svc, same));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("2 tasks of spec version"), "{v:?}");
        assert!(check.checked() > 0);
    }

    #[test]
    fn stop_first_bounds_only_slots_with_a_task_of_the_current_or_previous_spec() {
        let mut svc = service(1, "web", 1);
        svc.spec_version = swarm_core::Version(20);
        let mut tasks = vec![
            running(2, &svc, 1, TaskState::Running),
            running(3, &svc, 1, TaskState::Running),
        ];
        // An interrupted start-first update's old task and replacement, two specs ago.
        tasks[0].spec_version = swarm_core::Version(7);
        tasks[1].spec_version = swarm_core::Version(9);
        let mut check = UpdateOrderSlots::default();
        let v = check.store("m0", &store_with(&svc, tasks.clone()));
        assert!(v.is_empty(), "{v:?}");
        // One of them made under the previous (stop-first) spec: bounded.
        svc.previous_spec_version = Some(swarm_core::Version(9));
        let v = check.store("m0", &store_with(&svc, tasks));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("allows 1"), "{v:?}");
    }

    #[test]
    fn a_removed_service_is_bounded_by_versions_only() {
        let svc = service(1, "web", 2);
        let mut tasks = vec![
            running(2, &svc, 1, TaskState::Running),
            running(3, &svc, 1, TaskState::Running),
        ];
        tasks[1].spec_version = swarm_core::Version(7);
        // The tasks without their service (it was just removed): old and new running in slot 1.
        let without_service = |tasks: Vec<Task>| {
            let mut store = Store::new();
            store
                .apply(Batch {
                    index: 1,
                    timestamp: Timestamp(1),
                    actions: tasks
                        .into_iter()
                        .map(|t| StoreAction::Create(t.into()))
                        .collect(),
                })
                .unwrap();
            store
        };
        let mut check = UpdateOrderSlots::default();
        let v = check.store("m0", &without_service(tasks.clone()));
        assert!(v.is_empty(), "{v:?}");
        // Two tasks of one version are still found.
        tasks[1].spec_version = tasks[0].spec_version;
        let v = check.store("m0", &without_service(tasks));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("(removed)"), "{v:?}");
    }
}
