//! Secrets only ever sent to nodes with a task that references them: what the dispatchers send
//! each node is replayed into a model of what that node holds, and after every assignment set each
//! secret the node holds must be referenced by a task it holds that is assigned to it (its
//! `node_id`) and that the scheduler confirmed (observed state `assigned` or later).
//!
//! Input: every assignment set a manager's dispatcher hands to a session (`sim::tap`, called by
//! `manager::feed::stream`), per stream: a full set replaces what the node holds, a delta adds and
//! removes. The tasks a node holds are the versions it was sent (the dispatcher does not echo the
//! node's own status reports back), so a task that stopped on the node still counts until it is
//! withdrawn; the secret must be withdrawn no later than the task.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use swarm_core::dispatch::AssignmentSet;
use swarm_core::{Id, Task, TaskState};

/// What each stream's node holds, by stream.
#[derive(Debug, Default)]
pub struct SecretsSent {
    streams: BTreeMap<u64, Held>,
    sets: usize,
    secrets: usize,
}

#[derive(Debug)]
struct Held {
    node: Id,
    tasks: BTreeMap<Id, Arc<Task>>,
    secrets: BTreeSet<Id>,
}

impl SecretsSent {
    /// One set sent on `stream` to `node`; the violations it shows.
    pub fn observe(&mut self, stream: u64, node: Id, set: &AssignmentSet) -> Vec<String> {
        self.sets += 1;
        self.secrets += set.secrets.len();
        let held = self.streams.entry(stream).or_insert_with(|| Held {
            node,
            tasks: BTreeMap::new(),
            secrets: BTreeSet::new(),
        });
        if set.full {
            held.tasks.clear();
            held.secrets.clear();
        }
        for id in &set.removed_secrets {
            held.secrets.remove(id);
        }
        held.secrets.extend(set.secrets.iter().map(|s| s.id));
        for id in &set.removed_tasks {
            held.tasks.remove(id);
        }
        for t in &set.tasks {
            held.tasks.insert(t.id, t.clone());
        }
        let mut found = Vec::new();
        for secret in &held.secrets {
            let referenced = held.tasks.values().any(|t| {
                t.node_id == Some(held.node)
                    && t.status.state >= TaskState::Assigned
                    && t.spec
                        .container
                        .secrets
                        .iter()
                        .any(|r| r.secret_id == *secret)
            });
            if !referenced {
                found.push(format!(
                    "secrets_sent: node {} holds secret {secret} (set {} of its session) but none of its {} tasks assigned to it references it",
                    held.node,
                    set.sequence,
                    held.tasks.len()
                ));
            }
        }
        found
    }

    /// Assignment sets observed.
    pub fn sets(&self) -> usize {
        self.sets
    }

    /// Secrets sent (counted per set).
    pub fn secrets(&self) -> usize {
        self.secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::objects::secret::{SecretData, SecretSpec};
    use swarm_core::objects::service::SecretReference;
    use swarm_core::testing::{service, task};
    use swarm_core::{Annotations, Secret};

    fn secret(n: u128) -> Secret {
        Secret {
            id: Id::from_u128(n),
            meta: Default::default(),
            spec: SecretSpec {
                annotations: Annotations::named("pw"),
                data: SecretData::new(b"x".to_vec()),
                templating: None,
            },
        }
    }

    #[test]
    fn a_secret_without_a_referencing_task_on_the_node_is_reported() {
        let node = Id::from_u128(50);
        let svc = service(1, "web", 1);
        let mut t = task(2, &svc, 1);
        t.node_id = Some(node);
        t.status.state = TaskState::Assigned;
        let mut spec = (*t.spec).clone();
        spec.container.secrets.push(SecretReference {
            secret_id: Id::from_u128(9),
            secret_name: "pw".into(),
            target: Default::default(),
        });
        t.spec = Arc::new(spec);
        let mut check = SecretsSent::default();
        let ok = AssignmentSet {
            sequence: 1,
            full: true,
            tasks: vec![Arc::new(t)],
            secrets: vec![secret(9)],
            ..AssignmentSet::default()
        };
        assert!(check.observe(1, node, &ok).is_empty());
        // The task withdrawn, the secret kept: a leak.
        let leak = AssignmentSet {
            sequence: 2,
            removed_tasks: vec![Id::from_u128(2)],
            ..AssignmentSet::default()
        };
        let v = check.observe(1, node, &leak);
        assert_eq!(v.len(), 1, "{v:?}");
        // Both withdrawn: fine; a secret sent with no task at all: reported.
        let both = AssignmentSet {
            sequence: 3,
            removed_secrets: vec![Id::from_u128(9)],
            ..AssignmentSet::default()
        };
        assert!(check.observe(1, node, &both).is_empty());
        let alone = AssignmentSet {
            sequence: 1,
            full: true,
            secrets: vec![secret(9)],
            ..AssignmentSet::default()
        };
        assert_eq!(check.observe(2, node, &alone).len(), 1);
        assert_eq!((check.sets(), check.secrets()), (4, 2));
    }
}
