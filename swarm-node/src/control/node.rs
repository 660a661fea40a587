//! Nodes: `docker node update` (labels, availability, role) and `docker node rm`.
//!
//! Rules (SEMANTICS.md, "Nodes"): demoting the last manager, or a manager whose loss would break the
//! quorum of reachable managers, is refused; a manager must be demoted before removal; a node that
//! is not down is removed only with `force`. Removal orphans the node's unfinished tasks in the same
//! transaction, as SwarmKit does.
//!
//! With a [`RaftView`] (multi-host daemon) the raft membership decides, as in SwarmKit: a demotion
//! asks [`RaftView::can_remove`] for the node's member, and a node is "a member of the raft
//! cluster" when a member names it. Without one (single host, tests) the store's `role` and
//! `manager_status` stand in.

use std::sync::Arc;

use swarm_core::objects::node::{NodeRole, NodeSpec, NodeState, Reachability};
use swarm_core::{Node, ObjectKind, TaskState, TaskStatus, Version};

use super::resolve::resolve;
use super::{Control, ControlError};
use crate::backend::RaftView;

impl Control {
    /// `docker node update`: replaces the node's spec (name, labels, role, availability).
    pub async fn update_node(
        &self,
        input: &str,
        version: u64,
        spec: NodeSpec,
    ) -> Result<(), ControlError> {
        let raft = self.access.raft.clone();
        self.commit(|tx| {
            let cur = resolve::<Node>(tx.committed(), input)?;
            if cur.spec.desired_role == NodeRole::Manager && spec.desired_role == NodeRole::Worker {
                check_demotion(&tx.list::<Node>(), &cur, raft.as_deref())?;
            }
            let mut n = (*cur).clone();
            n.spec = spec;
            n.meta.version = Version(version);
            tx.update(n)?;
            Ok(())
        })
        .await
    }

    /// `docker node rm [--force]`.
    pub async fn remove_node(&self, input: &str, force: bool) -> Result<(), ControlError> {
        let now = self.now();
        let raft = self.access.raft.clone();
        self.commit(|tx| {
            let cur = resolve::<Node>(tx.committed(), input)?;
            let member = match raft.as_deref() {
                Some(r) => r.members().iter().any(|m| m.node_id == Some(cur.id)),
                None => cur.spec.desired_role == NodeRole::Manager || cur.role == NodeRole::Manager,
            };
            if member {
                return Err(ControlError::FailedPrecondition(format!(
                    "node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                    cur.id
                )));
            }
            if !force && cur.status.state == NodeState::Ready {
                return Err(ControlError::FailedPrecondition(format!(
                    "node {} is not down and can't be removed",
                    cur.id
                )));
            }
            for task in tx.tasks_by_node(&cur.id) {
                if task.status.state < TaskState::Complete {
                    let mut t = (*task).clone();
                    t.status = TaskStatus {
                        timestamp: now,
                        state: TaskState::Orphaned,
                        message: "Task belonged to a node that has been deleted".into(),
                        ..Default::default()
                    };
                    tx.update(t)?;
                }
            }
            tx.remove(ObjectKind::Node, &cur.id)?;
            Ok(())
        })
        .await
    }
}

/// Refuses to demote the last manager, or one whose loss leaves too few reachable managers (asked
/// of `raft` when there is one, judged from the store's manager statuses otherwise).
fn check_demotion(
    nodes: &[Arc<Node>],
    target: &Node,
    raft: Option<&dyn RaftView>,
) -> Result<(), ControlError> {
    let managers: Vec<&Arc<Node>> = nodes
        .iter()
        .filter(|n| n.spec.desired_role == NodeRole::Manager)
        .collect();
    if managers.len() <= 1 {
        return Err(ControlError::FailedPrecondition(
            "attempting to demote the last manager of the swarm".into(),
        ));
    }
    if let Some(raft) = raft {
        let member = raft
            .members()
            .into_iter()
            .find(|m| m.node_id == Some(target.id));
        if let Some(m) = member {
            raft.can_remove(m.raft_id).map_err(|reason| {
                ControlError::FailedPrecondition(format!(
                    "can't remove member from the raft: {reason}"
                ))
            })?;
        }
        return Ok(());
    }
    let unreachable = |n: &Node| {
        n.manager_status
            .as_ref()
            .is_some_and(|m| m.reachability == Reachability::Unreachable)
    };
    let remaining = managers.len() - 1;
    let reachable_after = managers
        .iter()
        .filter(|n| n.id != target.id && !unreachable(n))
        .count();
    if reachable_after < remaining / 2 + 1 {
        return Err(ControlError::FailedPrecondition(
            "can't remove member from the raft: this would result in a loss of quorum".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::objects::node::ManagerStatus;
    use swarm_core::testing;

    fn manager(n: u128, reach: Reachability) -> Arc<Node> {
        let mut node = testing::node(n);
        node.spec.desired_role = NodeRole::Manager;
        node.role = NodeRole::Manager;
        node.manager_status = Some(ManagerStatus {
            reachability: reach,
            ..Default::default()
        });
        Arc::new(node)
    }

    #[test]
    fn demotion_rules() {
        let one = vec![manager(1, Reachability::Reachable)];
        assert!(check_demotion(&one, &one[0], None).is_err());
        let three = vec![
            manager(1, Reachability::Reachable),
            manager(2, Reachability::Reachable),
            manager(3, Reachability::Unreachable),
        ];
        // Demoting 1 leaves {2 reachable, 3 unreachable}: quorum of 2 is 2, only 1 reachable.
        assert!(check_demotion(&three, &three[0], None).is_err());
        // Demoting the unreachable one leaves two reachable managers.
        assert!(check_demotion(&three, &three[2], None).is_ok());
    }
}
