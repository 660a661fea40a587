//! The [`Dispatcher`]/[`Session`] conformance suite: the clauses written on [`Dispatcher`],
//! checked against any implementation. This crate runs it against [`crate::LocalDispatcher`]
//! (`tests/dispatcher_conformance.rs`); swarm-node against its store-backed dispatcher.
//!
//! An implementer provides a [`DispatcherFixture`]: how to make a node the dispatcher accepts,
//! how to assign a task (with the secret it references) to a node and take it off again, how to
//! end a node's session from the dispatcher's side, and how to read back the status the
//! dispatcher recorded. A broken clause panics with the clause and what was seen.
//!
//! Clauses checked (numbers as on [`Dispatcher`]):
//! 1. A session starts with a full set, sequence 1, holding what the node must run; changes
//!    follow as incremental sets with consecutive sequence numbers
//!    ([`session_starts_full_then_changes_in_sequence`]).
//! 2. A task's secrets come in the same set as the task or an earlier one, and every secret sent
//!    is referenced by a task of the node ([`secrets_travel_with_their_tasks`]).
//! 3. Once the dispatcher ended a session, `next_assignments` and `report` fail instead of
//!    blocking, and the next session starts full again ([`ended_session_fails_and_resyncs`]).
//! 4. `report` returns `Ok` only once the dispatcher took the batch: the status is then what the
//!    dispatcher records ([`reported_status_is_recorded`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::dispatch::{AssignmentSet, NodeRegistration, StatusBatch, TaskStatusUpdate};
use swarm_core::objects::service::{FileTarget, SecretReference};
use swarm_core::{Id, Secret, Task, TaskState, TaskStatus};

use super::unique_number;
use crate::dispatcher::{Dispatcher, Session};

/// Longest the suite waits for one assignment set or one call.
pub const WAIT: Duration = Duration::from_secs(10);

/// How the suite drives one dispatcher implementation.
#[async_trait]
pub trait DispatcherFixture: Send + Sync {
    /// The dispatcher under test.
    fn dispatcher(&self) -> Arc<dyn Dispatcher>;

    /// A node the dispatcher accepts a session from (made a member if the dispatcher needs it).
    async fn node(&self) -> NodeRegistration;

    /// Makes `task` (its `node_id` set to `node`, observed `assigned`, desired `running`) and the
    /// `secrets` it references part of what `node` must run. Returns once the dispatcher knows.
    async fn assign(&self, node: Id, task: Task, secrets: Vec<Secret>);

    /// Takes `task` off `node` (the node must forget it).
    async fn unassign(&self, node: Id, task: Id);

    /// Ends `node`'s current session from the dispatcher's side (a leader change, a newer
    /// session of the node, a dropped stream).
    async fn end_session(&self, node: Id);

    /// The status the dispatcher recorded for `task` (after committing what `report` took).
    async fn recorded_status(&self, task: Id) -> Option<TaskStatus>;
}

/// A task of `node`, observed `assigned`, desired `running`, referencing `secret`.
pub fn assigned_task(node: Id, secret: &Secret) -> Task {
    let n = unique_number();
    let service = swarm_core::testing::service(n, &format!("conformance-{n}"), 1);
    let mut task = swarm_core::testing::task(unique_number(), &service, 1);
    task.node_id = Some(node);
    task.status.state = TaskState::Assigned;
    let mut spec = (*task.spec).clone();
    spec.container.secrets.push(SecretReference {
        secret_id: secret.id,
        secret_name: secret.spec.annotations.name.clone(),
        target: FileTarget {
            name: "conformance".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        },
    });
    task.spec = Arc::new(spec);
    task
}

/// A fresh secret with a unique name.
pub fn fresh_secret() -> Secret {
    let n = unique_number();
    swarm_core::testing::secret(n, &format!("conformance-{n}"), b"payload")
}

async fn open(f: &dyn DispatcherFixture, reg: &NodeRegistration) -> Arc<dyn Session> {
    match tokio::time::timeout(WAIT, f.dispatcher().open_session(reg.clone())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("a member node's session was refused: {e}"),
        Err(_) => panic!("open_session did not answer within {WAIT:?}"),
    }
}

async fn next(session: &dyn Session, what: &str) -> AssignmentSet {
    match tokio::time::timeout(WAIT, session.next_assignments()).await {
        Ok(Ok(set)) => set,
        Ok(Err(e)) => panic!("{what}: the session failed: {e}"),
        Err(_) => panic!("{what}: no assignment set within {WAIT:?}"),
    }
}

/// Reads sets until `pred` holds for one, checking consecutive sequence numbers on the way;
/// returns every set read (the last one satisfies `pred`).
async fn until(
    session: &dyn Session,
    last_sequence: &mut u64,
    what: &str,
    pred: impl Fn(&AssignmentSet) -> bool,
) -> Vec<AssignmentSet> {
    let mut seen = Vec::new();
    loop {
        let set = next(session, what).await;
        assert!(
            !set.full,
            "clause 1: {what}: a full set arrived mid-session"
        );
        assert_eq!(
            set.sequence,
            *last_sequence + 1,
            "clause 1: {what}: sequence {} after {}",
            set.sequence,
            last_sequence
        );
        *last_sequence = set.sequence;
        let done = pred(&set);
        seen.push(set);
        if done {
            return seen;
        }
    }
}

fn task_ids(set: &AssignmentSet) -> BTreeSet<Id> {
    set.tasks.iter().map(|t| t.id).collect()
}

/// Clause 1: full first set (sequence 1) with the node's tasks, then consecutive increments
/// carrying new tasks and removals.
pub async fn session_starts_full_then_changes_in_sequence(f: &dyn DispatcherFixture) {
    let reg = f.node().await;
    let node = reg.node_id;
    let s1 = fresh_secret();
    let t1 = assigned_task(node, &s1);
    f.assign(node, t1.clone(), vec![s1]).await;
    let session = open(f, &reg).await;
    let first = next(session.as_ref(), "the first set").await;
    assert!(first.full, "clause 1: the first set is not full");
    assert_eq!(first.sequence, 1, "clause 1: the first set's sequence");
    assert!(
        task_ids(&first).contains(&t1.id),
        "clause 1: the full set lacks the task assigned before the session"
    );
    let mut seq = 1;
    let s2 = fresh_secret();
    let t2 = assigned_task(node, &s2);
    f.assign(node, t2.clone(), vec![s2]).await;
    until(session.as_ref(), &mut seq, "a new task", |s| {
        task_ids(s).contains(&t2.id)
    })
    .await;
    f.unassign(node, t2.id).await;
    until(session.as_ref(), &mut seq, "a removed task", |s| {
        s.removed_tasks.contains(&t2.id)
    })
    .await;
}

/// Clause 2: a task's secret arrives with it or before it; no secret is sent that no task of
/// the node references.
pub async fn secrets_travel_with_their_tasks(f: &dyn DispatcherFixture) {
    let reg = f.node().await;
    let node = reg.node_id;
    let session = open(f, &reg).await;
    let first = next(session.as_ref(), "the first set").await;
    let mut seq = first.sequence;
    let mut sets = vec![first];
    let secret = fresh_secret();
    let task = assigned_task(node, &secret);
    f.assign(node, task.clone(), vec![secret.clone()]).await;
    sets.extend(
        until(session.as_ref(), &mut seq, "the task", |s| {
            task_ids(s).contains(&task.id)
        })
        .await,
    );
    let mut secrets_so_far = BTreeSet::new();
    let mut referenced = BTreeSet::new();
    for set in &sets {
        secrets_so_far.extend(set.secrets.iter().map(|s| s.id));
        for t in &set.tasks {
            referenced.extend(t.spec.container.secrets.iter().map(|r| r.secret_id));
        }
        if task_ids(set).contains(&task.id) {
            assert!(
                secrets_so_far.contains(&secret.id),
                "clause 2: the task arrived (sequence {}) before its secret",
                set.sequence
            );
        }
    }
    for s in &secrets_so_far {
        assert!(
            referenced.contains(s),
            "clause 2: secret {s} was sent but no task of the node references it"
        );
    }
}

/// A member node with one assigned task and an open session whose full set was read.
async fn node_with_a_task(f: &dyn DispatcherFixture) -> (NodeRegistration, Task, Arc<dyn Session>) {
    let reg = f.node().await;
    let secret = fresh_secret();
    let task = assigned_task(reg.node_id, &secret);
    f.assign(reg.node_id, task.clone(), vec![secret]).await;
    let session = open(f, &reg).await;
    next(session.as_ref(), "the first set").await;
    (reg, task, session)
}

/// Clause 3: a session the dispatcher ended fails both calls (no blocking), and the node's next
/// session starts with a full set holding its tasks.
pub async fn ended_session_fails_and_resyncs(f: &dyn DispatcherFixture) {
    let (reg, task, session) = node_with_a_task(f).await;
    let node = reg.node_id;
    f.end_session(node).await;
    match tokio::time::timeout(WAIT, session.next_assignments()).await {
        Ok(Err(_)) => {}
        Ok(Ok(set)) => panic!(
            "clause 3: an ended session still delivered a set (sequence {})",
            set.sequence
        ),
        Err(_) => panic!("clause 3: next_assignments blocked on an ended session"),
    }
    let batch = StatusBatch {
        node_id: Some(node),
        updates: Vec::new(),
    };
    match tokio::time::timeout(WAIT, session.report(batch)).await {
        Ok(Err(_)) => {}
        Ok(Ok(())) => panic!("clause 3: report succeeded on an ended session"),
        Err(_) => panic!("clause 3: report blocked on an ended session"),
    }
    let again = open(f, &reg).await;
    let first = next(again.as_ref(), "the new session's first set").await;
    assert!(
        first.full && first.sequence == 1,
        "clause 3: a new session must start with a full set at sequence 1"
    );
    assert!(
        task_ids(&first).contains(&task.id),
        "clause 3: the new session's full set lacks the node's task"
    );
}

/// Clause 4: once `report` returned `Ok`, the dispatcher records the reported status.
pub async fn reported_status_is_recorded(f: &dyn DispatcherFixture) {
    let (reg, task, session) = node_with_a_task(f).await;
    let node = reg.node_id;
    let status = TaskStatus {
        state: TaskState::Running,
        message: "started".into(),
        ..task.status.clone()
    };
    let batch = StatusBatch {
        node_id: Some(node),
        updates: vec![TaskStatusUpdate {
            task_id: task.id,
            status: status.clone(),
        }],
    };
    match tokio::time::timeout(WAIT, session.report(batch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("clause 4: report on a live session failed: {e}"),
        Err(_) => panic!("clause 4: report did not answer within {WAIT:?}"),
    }
    let recorded = f.recorded_status(task.id).await;
    assert_eq!(
        recorded.as_ref().map(|s| (s.state, s.message.as_str())),
        Some((TaskState::Running, "started")),
        "clause 4: the dispatcher took the batch but records {recorded:?}"
    );
}

/// Every case, in order.
pub async fn run_all(f: &dyn DispatcherFixture) {
    session_starts_full_then_changes_in_sequence(f).await;
    secrets_travel_with_their_tasks(f).await;
    ended_session_fails_and_resyncs(f).await;
    reported_status_is_recorded(f).await;
}
