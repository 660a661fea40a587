//! The store-backed [`StoreDispatcher`] passes the `Dispatcher`/`Session` conformance suite
//! (`swarm_runtime::testing::dispatch`), as swarm-runtime's `LocalDispatcher` does. Assignments
//! are tasks committed to the store through a `LocalProposer`; statuses are read back from the
//! store after the dispatcher's committer flushed them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::dispatch::NodeRegistration;
use swarm_core::objects::node::NodeDescription;
use swarm_core::{
    Id, LocalProposer, ManualClock, Object, ObjectKind, ObjectRef, Proposer, Secret, SharedStore,
    StoreAction, Task, TaskStatus,
};
use swarm_node::dispatcher::{DispatcherOptions, StoreDispatcher};
use swarm_runtime::testing::dispatch::{run_all, DispatcherFixture};
use swarm_runtime::testing::unique_number;
use swarm_runtime::Dispatcher;

struct Store {
    store: SharedStore,
    proposer: Arc<dyn Proposer>,
    dispatcher: StoreDispatcher,
}

impl Store {
    async fn propose(&self, actions: Vec<StoreAction>) {
        self.proposer
            .propose(actions)
            .await
            .unwrap_or_else(|e| panic!("fixture change refused: {e}"));
    }
}

#[async_trait]
impl DispatcherFixture for Store {
    fn dispatcher(&self) -> Arc<dyn Dispatcher> {
        Arc::new(self.dispatcher.clone())
    }
    async fn node(&self) -> NodeRegistration {
        // The store dispatcher accepts members only: the node object comes first.
        let node = swarm_core::testing::node(unique_number());
        let reg = NodeRegistration {
            node_id: node.id,
            description: node.description.clone().unwrap_or_default(),
        };
        self.propose(vec![StoreAction::Create(Object::from(node))])
            .await;
        reg
    }
    async fn assign(&self, _node: Id, task: Task, secrets: Vec<Secret>) {
        let service = swarm_core::testing::service(0, &task.service_annotations.name, 1);
        let service = swarm_core::Service {
            id: task.service_id,
            ..service
        };
        let mut actions = vec![StoreAction::Create(Object::from(service))];
        actions.extend(
            secrets
                .into_iter()
                .map(|s| StoreAction::Create(Object::from(s))),
        );
        actions.push(StoreAction::Create(Object::from(task)));
        self.propose(actions).await;
    }
    async fn unassign(&self, _node: Id, task: Id) {
        self.propose(vec![StoreAction::Remove(ObjectRef {
            kind: ObjectKind::Task,
            id: task,
        })])
        .await;
    }
    async fn end_session(&self, node: Id) {
        // A newer session of the same node ends the current one.
        let reg = NodeRegistration {
            node_id: node,
            description: NodeDescription::default(),
        };
        self.dispatcher
            .open_session(reg)
            .await
            .unwrap_or_else(|e| panic!("a member's newer session was refused: {e}"));
    }
    async fn recorded_status(&self, task: Id) -> Option<TaskStatus> {
        self.dispatcher.flush().await;
        self.store
            .view(|s| s.get::<Task>(&task).map(|t| t.status.clone()))
    }
}

/// Property: the store-backed dispatcher keeps every clause of the Dispatcher contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_dispatcher_conforms() {
    let store = SharedStore::default();
    let proposer: Arc<dyn Proposer> = Arc::new(LocalProposer::new(
        store.clone(),
        Arc::new(ManualClock::new(Default::default())),
    ));
    let options = DispatcherOptions {
        batch_interval: Duration::from_millis(10),
        ..DispatcherOptions::default()
    };
    let dispatcher = StoreDispatcher::new(store.clone(), proposer.clone(), options);
    let fixture = Store {
        store,
        proposer,
        dispatcher: dispatcher.clone(),
    };
    run_all(&fixture).await;
    dispatcher.close().await;
}
