//! Liveness after healing: once every fault is healed, every service converges to its spec within
//! a bound of virtual time: as many tasks desired running and running as it has replicas, each
//! on a node that is ready, and no other task of it desired running.
//!
//! Input: the leader's store, polled by the healing phase until [`pending`] finds nothing or the
//! bound passes; what is still pending then is the violation, with the tasks of each pending
//! service counted by state and node state, and every node's state and availability.

use swarm_core::objects::node::NodeState;
use swarm_core::{Node, Service, ServiceMode, Store, TaskState};

/// What keeps `store` from being converged: one line per service (or node) not there yet; empty
/// when converged.
pub fn pending(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for s in store.iter::<Service>() {
        let ServiceMode::Replicated { replicas } = s.spec.mode else {
            continue;
        };
        let mut running = 0u64;
        let mut desired = 0u64;
        let mut states = std::collections::BTreeMap::new();
        for t in store.tasks_by_service(&s.id) {
            if t.desired_state > TaskState::Running {
                continue;
            }
            desired += 1;
            let node = t
                .node_id
                .and_then(|n| store.get::<Node>(&n))
                .map(|n| format!("{:?}", n.status.state));
            *states
                .entry(format!(
                    "{:?} on {}",
                    t.status.state,
                    node.as_deref().unwrap_or("no node")
                ))
                .or_insert(0) += 1;
            let on_ready_node = t.node_id.is_some_and(|n| {
                store
                    .get::<Node>(&n)
                    .is_some_and(|n| n.status.state == NodeState::Ready)
            });
            if t.status.state == TaskState::Running && on_ready_node {
                running += 1;
            }
        }
        if running != replicas || desired != replicas {
            out.push(format!(
                "service {:?}: {replicas} replicas wanted, {desired} tasks desired running, {running} running on ready nodes ({states:?}); spec version {}, update status {:?}; {}",
                s.spec.annotations.name,
                s.spec_version.0,
                s.update_status.as_ref().map(|u| (u.state, u.message.as_str())),
                slots(store, s),
            ));
        }
    }
    if !out.is_empty() {
        let nodes: Vec<String> = store
            .iter::<Node>()
            .map(|n| {
                format!(
                    "{} {:?} {:?}",
                    n.hostname(),
                    n.status.state,
                    n.spec.availability
                )
            })
            .collect();
        out.push(format!("nodes: {}", nodes.join(", ")));
    }
    out
}

/// `s`'s tasks per slot, each with its spec version, desired and observed state and node (its
/// hostname and state), tasks told to stop included: which slot holds what after healing.
fn slots(store: &Store, s: &Service) -> String {
    let mut by_slot: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for t in store.tasks_by_service(&s.id) {
        let node = t.node_id.and_then(|n| store.get::<Node>(&n)).map_or_else(
            || "no node".to_string(),
            |n| format!("{} {:?}", n.hostname(), n.status.state),
        );
        by_slot.entry(t.slot).or_default().push(format!(
            "{} v{} desired {:?} observed {:?} on {node}",
            t.id, t.spec_version.0, t.desired_state, t.status.state
        ));
    }
    by_slot
        .iter()
        .map(|(slot, tasks)| format!("slot {slot}: [{}]", tasks.join("; ")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_store_is_converged() {
        assert!(pending(&Store::new()).is_empty());
    }

    #[test]
    fn a_service_without_its_tasks_is_pending() {
        let mut store = Store::new();
        store
            .apply(swarm_core::Batch {
                index: 1,
                timestamp: swarm_core::Timestamp(1),
                actions: vec![swarm_core::StoreAction::Create(
                    swarm_core::testing::service(1, "web", 2).into(),
                )],
            })
            .unwrap();
        let p = pending(&store);
        assert_eq!(p.len(), 2, "the service and the node list: {p:?}");
        assert!(p[0].contains("2 replicas wanted, 0 tasks"), "{p:?}");
    }
}
