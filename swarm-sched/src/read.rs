//! [`ClusterRead`]: what swarm-sched reads of the cluster state, as a trait, so an embedder can
//! schedule over its own node and task lists instead of mirroring them into a
//! [`swarm_core::Store`].
//!
//! [`Store`] implements it with its indexes. An embedder implements the four required methods
//! (all nodes, services and tasks, and one task by id); the other methods have default bodies
//! that scan, which an implementation with indexes may override.
//!
//! # Contract
//! - One value of the trait is one consistent view: the scheduler reads it while it rebuilds its
//!   state and expects every read to see the same state (for a `Store`, hold its read lock, as
//!   `SharedStore::view` does).
//! - Iteration order does not change what the scheduler decides (it sorts what it needs), but a
//!   deterministic order (by id, as the store has) keeps runs reproducible.
//! - Every task's `service_id` and `node_id` name objects of the same view, or the task is treated
//!   as an orphan: a task on an unknown node holds nothing, a task of an unknown service still
//!   occupies its node.
//! - The defaults of the by-id and by-index reads must agree with the iterators: an override that
//!   answers differently breaks the scheduler's view.

use std::sync::Arc;

use swarm_core::{Cluster, Id, Node, Service, Store, Task};

/// A boxed iterator over shared objects of one kind, borrowed from the view.
pub type Objects<'a, T> = Box<dyn Iterator<Item = &'a Arc<T>> + 'a>;

/// Read access to the cluster state the scheduler (and the orchestrators' decisions) depend on.
/// See the module docs for the contract.
pub trait ClusterRead {
    /// Every node.
    fn nodes(&self) -> Objects<'_, Node>;

    /// Every service.
    fn services(&self) -> Objects<'_, Service>;

    /// Every task, of every state.
    fn tasks(&self) -> Objects<'_, Task>;

    /// The task with this id.
    fn task(&self, id: &Id) -> Option<&Arc<Task>>;

    /// The node with this id. Default: a scan of [`ClusterRead::nodes`].
    fn node(&self, id: &Id) -> Option<&Arc<Node>> {
        self.nodes().find(|n| n.id == *id)
    }

    /// The service with this id. Default: a scan of [`ClusterRead::services`].
    fn service(&self, id: &Id) -> Option<&Arc<Service>> {
        self.services().find(|s| s.id == *id)
    }

    /// The tasks of one service. Default: a filter of [`ClusterRead::tasks`].
    fn tasks_by_service<'a>(&'a self, service: &Id) -> Objects<'a, Task> {
        let service = *service;
        Box::new(self.tasks().filter(move |t| t.service_id == service))
    }

    /// The tasks assigned to one node. Default: a filter of [`ClusterRead::tasks`].
    fn tasks_by_node<'a>(&'a self, node: &Id) -> Objects<'a, Task> {
        let node = *node;
        Box::new(self.tasks().filter(move |t| t.node_id == Some(node)))
    }

    /// The cluster object, if there is one. Default: none (cluster-wide settings at their
    /// defaults).
    fn cluster(&self) -> Option<&Arc<Cluster>> {
        None
    }
}

impl ClusterRead for Store {
    fn nodes(&self) -> Objects<'_, Node> {
        Box::new(self.iter::<Node>())
    }

    fn services(&self) -> Objects<'_, Service> {
        Box::new(self.iter::<Service>())
    }

    fn tasks(&self) -> Objects<'_, Task> {
        Box::new(self.iter::<Task>())
    }

    fn task(&self, id: &Id) -> Option<&Arc<Task>> {
        self.get::<Task>(id)
    }

    fn node(&self, id: &Id) -> Option<&Arc<Node>> {
        self.get::<Node>(id)
    }

    fn service(&self, id: &Id) -> Option<&Arc<Service>> {
        self.get::<Service>(id)
    }

    fn tasks_by_service<'a>(&'a self, service: &Id) -> Objects<'a, Task> {
        Box::new(Store::tasks_by_service(self, service))
    }

    fn tasks_by_node<'a>(&'a self, node: &Id) -> Objects<'a, Task> {
        Box::new(Store::tasks_by_node(self, node))
    }

    fn cluster(&self) -> Option<&Arc<Cluster>> {
        Store::cluster(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, service, task, tasks, Harness};

    /// Only the required methods: the defaults answer for everything else.
    struct Lists<'s>(&'s Store);

    impl ClusterRead for Lists<'_> {
        fn nodes(&self) -> Objects<'_, Node> {
            Box::new(self.0.iter::<Node>())
        }
        fn services(&self) -> Objects<'_, Service> {
            Box::new(self.0.iter::<Service>())
        }
        fn tasks(&self) -> Objects<'_, Task> {
            Box::new(self.0.iter::<Task>())
        }
        fn task(&self, id: &Id) -> Option<&Arc<Task>> {
            self.0.get::<Task>(id)
        }
    }

    fn ids<'a>(it: Objects<'a, Task>) -> Vec<Id> {
        let mut v: Vec<Id> = it.map(|t| t.id).collect();
        v.sort();
        v
    }

    /// Property: the default (scanning) reads answer exactly what the store's indexed reads
    /// answer. Setup: two services, three nodes, tasks on two of the nodes and one unassigned.
    #[test]
    fn default_reads_agree_with_the_store_indexes() {
        let mut h = Harness::new();
        let nodes: Vec<Node> = (1..=3).map(node).collect();
        let (a, b) = (service(10, 3), service(11, 1));
        let mut tasks = tasks(&a, 100, 3);
        for (t, n) in tasks.iter_mut().zip([0, 0, 2]) {
            t.node_id = Some(nodes[n].id);
        }
        tasks.push(task(&b, 1, 200));
        h.create(nodes.clone());
        h.create([a.clone(), b.clone()]);
        h.create(tasks.clone());
        let store = &h.store;
        let lists = Lists(store);
        for s in [&a, &b] {
            assert_eq!(
                ids(lists.tasks_by_service(&s.id)),
                ids(ClusterRead::tasks_by_service(store, &s.id))
            );
            assert_eq!(lists.service(&s.id).map(|x| x.id), Some(s.id));
        }
        for n in &nodes {
            assert_eq!(
                ids(lists.tasks_by_node(&n.id)),
                ids(ClusterRead::tasks_by_node(store, &n.id))
            );
            assert_eq!(lists.node(&n.id).map(|x| x.id), Some(n.id));
        }
        assert_eq!(ids(lists.tasks_by_node(&nodes[0].id)).len(), 2);
        assert!(ids(lists.tasks_by_node(&nodes[1].id)).is_empty());
        assert_eq!(ids(lists.tasks_by_service(&b.id)), vec![tasks[3].id]);
        assert_eq!(lists.task(&tasks[3].id).map(|t| t.id), Some(tasks[3].id));
        assert!(lists.cluster().is_none());
    }
}
