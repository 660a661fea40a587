//! The store-backed dispatcher over a `LocalProposer`: each node is streamed only its own tasks
//! and only the secrets those tasks reference (withdrawn once no task there needs them); status
//! reports are committed in batches and never move a task backwards; a node whose session ended
//! is marked down after `down_after`.

use std::sync::Arc;
use std::time::Duration;

use swarm_core::dispatch::{AssignmentSet, NodeRegistration, StatusBatch, TaskStatusUpdate};
use swarm_core::objects::node::NodeState;
use swarm_core::objects::service::{FileTarget, SecretReference};
use swarm_core::testing::{id, node, secret, service, task};
use swarm_core::{
    Id, LocalProposer, ManualClock, Node, Proposer, SharedStore, Task, TaskState, TaskStatus,
    WatchFilter,
};
use swarm_node::dispatcher::{DispatcherOptions, StoreDispatcher};
use swarm_runtime::{Dispatcher, Session};

const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    store: SharedStore,
    proposer: Arc<dyn Proposer>,
    dispatcher: StoreDispatcher,
}

fn fixture() -> Fixture {
    let store = SharedStore::default();
    let proposer: Arc<dyn Proposer> = Arc::new(LocalProposer::new(
        store.clone(),
        Arc::new(ManualClock::new(Default::default())),
    ));
    let options = DispatcherOptions {
        batch_interval: Duration::from_millis(10),
        batch_max: 10_000,
        down_after: Duration::from_millis(50),
        ..DispatcherOptions::default()
    };
    let dispatcher = StoreDispatcher::new(store.clone(), proposer.clone(), options);
    Fixture {
        store,
        proposer,
        dispatcher,
    }
}

fn with_secret(mut t: Task, secret: Id) -> Task {
    let mut spec = (*t.spec).clone();
    spec.container.secrets = vec![SecretReference {
        secret_id: secret,
        secret_name: "s".into(),
        target: FileTarget {
            name: "s".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        },
    }];
    t.spec = Arc::new(spec);
    t
}

fn on(mut t: Task, n: u128, state: TaskState) -> Task {
    t.node_id = Some(id(n));
    t.status.state = state;
    t
}

async fn propose(f: &Fixture, actions: Vec<swarm_core::StoreAction>) {
    f.proposer.propose(actions).await.expect("committed");
}

async fn set_state(f: &Fixture, task: Id, state: TaskState) {
    swarm_core::update(&f.store, f.proposer.as_ref(), |tx| {
        let mut t = (*tx.get::<Task>(&task).expect("task")).clone();
        t.status.state = state;
        tx.update(t)
    })
    .await
    .expect("updated");
}

async fn next(s: &Arc<dyn Session>) -> AssignmentSet {
    tokio::time::timeout(WAIT, s.next_assignments())
        .await
        .expect("a set in time")
        .expect("session alive")
}

fn registration(n: u128) -> NodeRegistration {
    NodeRegistration {
        node_id: id(n),
        description: node(n).description.unwrap_or_default(),
    }
}

#[tokio::test]
async fn a_node_gets_only_its_tasks_and_the_secrets_they_reference() {
    let f = fixture();
    let svc = service(10, "web", 3);
    let mine = on(
        with_secret(task(100, &svc, 1), id(500)),
        1,
        TaskState::Assigned,
    );
    let plain = on(task(101, &svc, 2), 1, TaskState::Running);
    let other = on(
        with_secret(task(102, &svc, 3), id(501)),
        2,
        TaskState::Assigned,
    );
    let unconfirmed = on(
        with_secret(task(103, &svc, 4), id(502)),
        1,
        TaskState::Pending,
    );
    propose(
        &f,
        vec![
            node(1).into(),
            node(2).into(),
            secret(500, "a", b"alpha").into(),
            secret(501, "b", b"beta").into(),
            secret(502, "c", b"gamma").into(),
            svc.clone().into(),
            mine.into(),
            plain.into(),
            other.into(),
            unconfirmed.into(),
        ]
        .into_iter()
        .map(swarm_core::StoreAction::Create)
        .collect(),
    )
    .await;
    let s = f.dispatcher.open_session(registration(1)).await.unwrap();
    let full = next(&s).await;
    assert!(full.full);
    assert_eq!(full.sequence, 1);
    let ids: Vec<Id> = full.tasks.iter().map(|t| t.id).collect();
    assert_eq!(
        ids,
        vec![id(100), id(101)],
        "own tasks at assigned or later only"
    );
    let secrets: Vec<Id> = full.secrets.iter().map(|s| s.id).collect();
    assert_eq!(secrets, vec![id(500)], "only secrets of its tasks");
    assert!(f
        .store
        .view(|st| st.get::<Node>(&id(1)).unwrap().status.state == NodeState::Ready));

    // The scheduler confirms the pending task: it arrives with its secret.
    set_state(&f, id(103), TaskState::Assigned).await;
    let d = next(&s).await;
    assert!(!d.full);
    assert_eq!(d.sequence, 2);
    assert_eq!(
        d.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![id(103)]
    );
    assert_eq!(
        d.secrets.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![id(502)]
    );

    // The task using secret 500 completes: the secret is withdrawn (no task needs it now).
    set_state(&f, id(100), TaskState::Complete).await;
    let d = next(&s).await;
    assert_eq!(d.sequence, 3);
    assert_eq!(d.removed_secrets, vec![id(500)]);
    assert!(d.secrets.is_empty());

    // A change on another node's task is not streamed; removing one of ours is.
    set_state(&f, id(102), TaskState::Running).await;
    propose(
        &f,
        vec![swarm_core::StoreAction::Remove(swarm_core::ObjectRef {
            kind: swarm_core::ObjectKind::Task,
            id: id(101),
        })],
    )
    .await;
    let d = next(&s).await;
    assert_eq!(d.sequence, 4);
    assert_eq!(d.removed_tasks, vec![id(101)]);
    assert!(d.tasks.is_empty());
}

#[tokio::test]
async fn status_reports_are_committed_and_regressions_dropped() {
    let f = fixture();
    let svc = service(10, "web", 1);
    let t = on(task(100, &svc, 1), 1, TaskState::Assigned);
    propose(
        &f,
        vec![node(1).into(), svc.clone().into(), t.into()]
            .into_iter()
            .map(swarm_core::StoreAction::Create)
            .collect(),
    )
    .await;
    let s = f.dispatcher.open_session(registration(1)).await.unwrap();
    let _ = next(&s).await;
    let report = |state: TaskState| StatusBatch {
        node_id: Some(id(1)),
        updates: vec![TaskStatusUpdate {
            task_id: id(100),
            status: TaskStatus {
                state,
                message: state.as_str().into(),
                ..TaskStatus::default()
            },
        }],
    };
    s.report(report(TaskState::Running)).await.unwrap();
    s.report(report(TaskState::Starting)).await.unwrap();
    f.dispatcher.flush().await;
    let state = f
        .store
        .view(|st| st.get::<Task>(&id(100)).unwrap().status.state);
    assert_eq!(state, TaskState::Running);
    assert!(
        f.dispatcher
            .stats()
            .regressions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // A later regression against the store is dropped too; a forward move commits.
    s.report(report(TaskState::Preparing)).await.unwrap();
    s.report(report(TaskState::Failed)).await.unwrap();
    f.dispatcher.flush().await;
    let state = f
        .store
        .view(|st| st.get::<Task>(&id(100)).unwrap().status.state);
    assert_eq!(state, TaskState::Failed);

    // A node cannot report on another node's task.
    let other = on(task(101, &svc, 2), 2, TaskState::Assigned);
    propose(&f, vec![swarm_core::StoreAction::Create(other.into())]).await;
    s.report(StatusBatch {
        node_id: Some(id(1)),
        updates: vec![TaskStatusUpdate {
            task_id: id(101),
            status: TaskStatus {
                state: TaskState::Running,
                ..TaskStatus::default()
            },
        }],
    })
    .await
    .unwrap();
    f.dispatcher.flush().await;
    let state = f
        .store
        .view(|st| st.get::<Task>(&id(101)).unwrap().status.state);
    assert_eq!(state, TaskState::Assigned);
}

#[tokio::test]
async fn unknown_nodes_are_refused_and_dead_sessions_mark_the_node_down() {
    let f = fixture();
    assert!(f.dispatcher.open_session(registration(9)).await.is_err());
    propose(&f, vec![swarm_core::StoreAction::Create(node(1).into())]).await;
    let s = f.dispatcher.open_session(registration(1)).await.unwrap();
    let _ = next(&s).await;
    assert!(f.dispatcher.is_connected(id(1)));
    let watcher = f.store.watch(WatchFilter::all());
    drop(s);
    let down = async {
        loop {
            if f.store
                .view(|st| st.get::<Node>(&id(1)).unwrap().status.state == NodeState::Down)
            {
                return;
            }
            if watcher.recv_many().await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, down).await.expect("marked down");
    let n = f.store.view(|st| st.get::<Node>(&id(1)).cloned().unwrap());
    assert_eq!(n.status.message, "heartbeat failure");

    // A new session brings it back, and a newer session ends the older one.
    let s1 = f.dispatcher.open_session(registration(1)).await.unwrap();
    let _ = next(&s1).await;
    assert!(f
        .store
        .view(|st| st.get::<Node>(&id(1)).unwrap().status.state == NodeState::Ready));
    let s2 = f.dispatcher.open_session(registration(1)).await.unwrap();
    let _ = next(&s2).await;
    assert!(tokio::time::timeout(WAIT, s1.next_assignments())
        .await
        .unwrap()
        .is_err());
    assert!(s1.report(StatusBatch::default()).await.is_err());
    f.dispatcher.close().await;
}

/// Remote sessions' deadlines are enforced by one sweeper: heartbeats keep a session alive
/// across many `down_after` periods (each re-filed deadline checked again), and once they stop
/// the session ends and the node is marked down; another node's live session is untouched.
#[tokio::test]
async fn heartbeats_keep_remote_sessions_alive_until_they_stop() {
    let store = SharedStore::default();
    let proposer: Arc<dyn Proposer> = Arc::new(LocalProposer::new(
        store.clone(),
        Arc::new(ManualClock::new(Default::default())),
    ));
    // Generous against a loaded machine: a heartbeat every 100 ms, expiry after 2 s.
    let options = DispatcherOptions {
        batch_interval: Duration::from_millis(10),
        down_after: Duration::from_secs(2),
        heartbeat_period: Duration::from_millis(100),
        ..DispatcherOptions::default()
    };
    let d = StoreDispatcher::new(store.clone(), proposer.clone(), options);
    proposer
        .propose(vec![
            swarm_core::StoreAction::Create(node(1).into()),
            swarm_core::StoreAction::Create(node(2).into()),
        ])
        .await
        .expect("committed");
    let s1 = d.open_remote(registration(1)).await.expect("session 1");
    let s2 = d.open_remote(registration(2)).await.expect("session 2");
    let _ = next(&s1.session).await;
    let _ = next(&s2.session).await;
    // Both beat for three expiry periods.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < until {
        d.heartbeat(id(1), s1.id).expect("session 1 alive");
        d.heartbeat(id(2), s2.id).expect("session 2 alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.is_connected(id(1)) && d.is_connected(id(2)));
    // Node 1 stops; node 2 goes on until node 1 is down.
    let down = async {
        loop {
            d.heartbeat(id(2), s2.id).expect("session 2 alive");
            if store.view(|st| st.get::<Node>(&id(1)).unwrap().status.state == NodeState::Down) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), down)
        .await
        .expect("node 1 marked down");
    assert!(!d.is_connected(id(1)));
    assert!(d.heartbeat(id(1), s1.id).is_err(), "its session ended");
    assert!(d.is_connected(id(2)));
    assert_eq!(
        store.view(|st| st.get::<Node>(&id(2)).unwrap().status.state),
        NodeState::Ready
    );
    d.close().await;
}

/// A dispatcher whose manager no longer leads marks no node down when its sessions end: the
/// nodes are registering with the new leader meanwhile, and a forwarded "down" landing after
/// their "ready" left every node down with live sessions (found by the cluster simulation,
/// `sim_cluster::partitions_only`). Once leading again, a dead session marks its node down.
#[tokio::test]
async fn a_dispatcher_that_does_not_lead_marks_no_node_down() {
    let f = fixture();
    propose(&f, vec![swarm_core::StoreAction::Create(node(1).into())]).await;
    let s = f.dispatcher.open_session(registration(1)).await.unwrap();
    let _ = next(&s).await;
    f.dispatcher.set_leading(false);
    drop(s);
    // Twenty times `down_after`: long past the moment a leading dispatcher marks it down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = |f: &Fixture| {
        f.store
            .view(|st| st.get::<Node>(&id(1)).unwrap().status.state)
    };
    assert_eq!(state(&f), NodeState::Ready);

    f.dispatcher.set_leading(true);
    let s = f.dispatcher.open_session(registration(1)).await.unwrap();
    let _ = next(&s).await;
    drop(s);
    let watcher = f.store.watch(WatchFilter::all());
    let down = async {
        while state(&f) != NodeState::Down {
            if watcher.recv_many().await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, down).await.expect("marked down");
    f.dispatcher.close().await;
}
