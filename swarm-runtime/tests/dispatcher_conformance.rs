//! [`LocalDispatcher`] passes the `Dispatcher`/`Session` conformance suite
//! (`swarm_runtime::testing::dispatch`); swarm-node runs it against its store-backed dispatcher.

use std::sync::Arc;

use async_trait::async_trait;
use swarm_core::dispatch::{AssignmentSet, NodeRegistration};
use swarm_core::{Id, Secret, Task, TaskStatus};
use swarm_runtime::testing::dispatch::{run_all, DispatcherFixture};
use swarm_runtime::testing::unique_id;
use swarm_runtime::{Dispatcher, LocalDispatcher};

struct Local(LocalDispatcher);

#[async_trait]
impl DispatcherFixture for Local {
    fn dispatcher(&self) -> Arc<dyn Dispatcher> {
        Arc::new(self.0.clone())
    }
    async fn node(&self) -> NodeRegistration {
        NodeRegistration {
            node_id: unique_id(),
            description: Default::default(),
        }
    }
    async fn assign(&self, node: Id, task: Task, secrets: Vec<Secret>) {
        self.0
            .assign(node, vec![Arc::new(task)], secrets, Vec::new());
    }
    async fn unassign(&self, node: Id, task: Id) {
        self.0.update(
            node,
            AssignmentSet {
                removed_tasks: vec![task],
                ..AssignmentSet::default()
            },
        );
    }
    async fn end_session(&self, node: Id) {
        self.0.disconnect(node);
    }
    async fn recorded_status(&self, task: Id) -> Option<TaskStatus> {
        self.0.status(task)
    }
}

/// Property: the in-process dispatcher keeps every clause of the Dispatcher contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dispatcher_conforms() {
    run_all(&Local(LocalDispatcher::new())).await;
}
