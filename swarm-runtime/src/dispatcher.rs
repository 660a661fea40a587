//! The [`Dispatcher`] seam between a node's agent and the cluster's dispatcher, and
//! [`LocalDispatcher`], an in-process implementation over channels (QUIC comes later, in swarm-net).
//!
//! The agent opens a [`Session`] with a [`NodeRegistration`], then concurrently reads
//! [`AssignmentSet`]s and reports [`StatusBatch`]es until the session fails; then it opens a new one
//! (which starts with a full set). The message types live in [`swarm_core::dispatch`] so that the
//! manager's dispatcher and the worker's agent share them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::dispatch::{AssignmentSet, NodeRegistration, StatusBatch, TaskStatusUpdate};
use swarm_core::{Config, Id, Secret, Task, TaskStatus};
use thiserror::Error;
use tokio::sync::{mpsc, Notify};

/// Why a dispatcher call failed. Every error ends the session; the agent opens a new one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DispatchError {
    /// The dispatcher cannot be reached (network down, no leader).
    #[error(
        "the dispatcher is unreachable: {reason}; the agent keeps its tasks running and retries"
    )]
    Unreachable {
        /// Why.
        reason: String,
    },
    /// The dispatcher closed this session (leader change, newer session for this node).
    #[error("the dispatcher closed the session; the agent opens a new one and resynchronises")]
    SessionClosed,
    /// The dispatcher refused the node (removed from the cluster, bad certificate).
    #[error("the dispatcher refused this node: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
}

/// A connection to the cluster's dispatcher, as the agent sees it.
///
/// # To ensure correctness
/// An implementation must:
/// 1. Start every session with a full [`AssignmentSet`] (`full == true`, sequence 1) describing
///    everything the node must run, then send incremental sets with consecutive sequence numbers.
/// 2. Send a task's secrets and configs in the same set as the task, or an earlier one; never
///    send a secret or config that none of the node's tasks references.
/// 3. Fail `next_assignments` (rather than block forever) once the session is dead, so that the
///    agent reconnects; `report` fails too on a dead session.
/// 4. Return `Ok` from `report` only once the dispatcher has taken the batch (the agent resends
///    the latest status of every task on its next session otherwise).
#[async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Registers the node and opens a session.
    async fn open_session(
        &self,
        registration: NodeRegistration,
    ) -> Result<Arc<dyn Session>, DispatchError>;
}

/// One session of one node. Both methods may run concurrently.
#[async_trait]
pub trait Session: Send + Sync {
    /// The next assignment set (the first is full).
    async fn next_assignments(&self) -> Result<AssignmentSet, DispatchError>;
    /// Delivers a batch of status updates.
    async fn report(&self, batch: StatusBatch) -> Result<(), DispatchError>;
}

#[derive(Default)]
struct NodeState {
    registration: Option<NodeRegistration>,
    generation: u64,
    sender: Option<mpsc::UnboundedSender<AssignmentSet>>,
    sequence: u64,
    tasks: BTreeMap<Id, Arc<Task>>,
    secrets: BTreeMap<Id, Secret>,
    configs: BTreeMap<Id, Config>,
}

#[derive(Default)]
struct LocalState {
    unreachable: bool,
    nodes: HashMap<Id, NodeState>,
    statuses: HashMap<Id, TaskStatus>,
    regressions: Vec<TaskStatusUpdate>,
    batches: u64,
}

struct LocalInner {
    state: Mutex<LocalState>,
    changed: Notify,
}

/// An in-process dispatcher: the manager side holds the [`LocalDispatcher`] and tells it what each
/// node must run; agents get it as their [`Dispatcher`]. It keeps each node's current assignments
/// (so that every new session starts with a full set), records the latest status of every task
/// (refusing, like the store, any that goes backwards), and can be made unreachable or drop a
/// node's session to test resynchronisation.
#[derive(Clone)]
pub struct LocalDispatcher {
    inner: Arc<LocalInner>,
}

impl Default for LocalDispatcher {
    fn default() -> Self {
        LocalDispatcher::new()
    }
}

impl std::fmt::Debug for LocalDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("LocalDispatcher")
            .field("nodes", &s.nodes.len())
            .field("unreachable", &s.unreachable)
            .finish()
    }
}

impl LocalDispatcher {
    /// An empty dispatcher.
    pub fn new() -> LocalDispatcher {
        LocalDispatcher {
            inner: Arc::new(LocalInner {
                state: Mutex::new(LocalState::default()),
                changed: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LocalState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies an incremental change to `node`'s assignments and streams it if the node is
    /// connected. `set.full` and `set.sequence` are ignored.
    pub fn update(&self, node: Id, set: AssignmentSet) {
        let mut s = self.lock();
        let n = s.nodes.entry(node).or_default();
        for x in &set.secrets {
            n.secrets.insert(x.id, x.clone());
        }
        for x in &set.configs {
            n.configs.insert(x.id, x.clone());
        }
        for t in &set.tasks {
            n.tasks.insert(t.id, t.clone());
        }
        for id in &set.removed_tasks {
            n.tasks.remove(id);
        }
        for id in &set.removed_secrets {
            n.secrets.remove(id);
        }
        for id in &set.removed_configs {
            n.configs.remove(id);
        }
        if let Some(tx) = &n.sender {
            n.sequence += 1;
            let msg = AssignmentSet {
                sequence: n.sequence,
                full: false,
                ..set
            };
            if tx.send(msg).is_err() {
                n.sender = None;
            }
        }
    }

    /// Assigns (or updates) tasks on `node`, with the secrets and configs they need.
    pub fn assign(
        &self,
        node: Id,
        tasks: Vec<Arc<Task>>,
        secrets: Vec<Secret>,
        configs: Vec<Config>,
    ) {
        self.update(
            node,
            AssignmentSet {
                tasks,
                secrets,
                configs,
                ..AssignmentSet::default()
            },
        );
    }

    /// Makes the dispatcher unreachable (sessions fail, new ones are refused) or reachable again.
    pub fn set_unreachable(&self, unreachable: bool) {
        let mut s = self.lock();
        s.unreachable = unreachable;
        if unreachable {
            for n in s.nodes.values_mut() {
                n.sender = None;
                n.generation += 1;
            }
        }
        drop(s);
        self.inner.changed.notify_waiters();
    }

    /// Closes `node`'s current session (the agent reconnects and gets a full set).
    pub fn disconnect(&self, node: Id) {
        let mut s = self.lock();
        if let Some(n) = s.nodes.get_mut(&node) {
            n.sender = None;
            n.generation += 1;
        }
    }

    /// Whether `node` has an open session.
    pub fn is_connected(&self, node: Id) -> bool {
        self.lock()
            .nodes
            .get(&node)
            .is_some_and(|n| n.sender.is_some())
    }

    /// What `node` registered with, if it did.
    pub fn registration(&self, node: Id) -> Option<NodeRegistration> {
        self.lock()
            .nodes
            .get(&node)
            .and_then(|n| n.registration.clone())
    }

    /// The latest status reported for `task`.
    pub fn status(&self, task: Id) -> Option<TaskStatus> {
        self.lock().statuses.get(&task).cloned()
    }

    /// Status updates refused because they went backwards (should stay empty).
    pub fn regressions(&self) -> Vec<TaskStatusUpdate> {
        self.lock().regressions.clone()
    }

    /// How many status batches were received.
    pub fn batches(&self) -> u64 {
        self.lock().batches
    }

    /// Waits until `pred` holds over the latest statuses, or `timeout` passes; returns whether it
    /// held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&HashMap<Id, TaskStatus>) -> bool,
    ) -> bool {
        let wait = async {
            loop {
                let notified = self.inner.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if pred(&self.lock().statuses) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Waits until `node` has an open session.
    pub async fn wait_connected(&self, node: Id, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.inner.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.is_connected(node) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

#[async_trait]
impl Dispatcher for LocalDispatcher {
    async fn open_session(
        &self,
        registration: NodeRegistration,
    ) -> Result<Arc<dyn Session>, DispatchError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let node = registration.node_id;
        let generation = {
            let mut s = self.lock();
            if s.unreachable {
                return Err(DispatchError::Unreachable {
                    reason: "the local dispatcher is set unreachable".into(),
                });
            }
            let n = s.nodes.entry(node).or_default();
            n.registration = Some(registration);
            n.generation += 1;
            n.sequence = 1;
            let full = AssignmentSet {
                sequence: 1,
                full: true,
                tasks: n.tasks.values().cloned().collect(),
                secrets: n.secrets.values().cloned().collect(),
                configs: n.configs.values().cloned().collect(),
                ..AssignmentSet::default()
            };
            // The receiver is alive: it is in our hands.
            let _ = tx.send(full);
            n.sender = Some(tx);
            n.generation
        };
        self.inner.changed.notify_waiters();
        Ok(Arc::new(LocalSession {
            dispatcher: self.clone(),
            node,
            generation,
            rx: tokio::sync::Mutex::new(rx),
        }))
    }
}

struct LocalSession {
    dispatcher: LocalDispatcher,
    node: Id,
    generation: u64,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<AssignmentSet>>,
}

#[async_trait]
impl Session for LocalSession {
    async fn next_assignments(&self) -> Result<AssignmentSet, DispatchError> {
        self.rx
            .lock()
            .await
            .recv()
            .await
            .ok_or(DispatchError::SessionClosed)
    }

    async fn report(&self, batch: StatusBatch) -> Result<(), DispatchError> {
        {
            let mut s = self.dispatcher.lock();
            if s.unreachable {
                return Err(DispatchError::Unreachable {
                    reason: "the local dispatcher is set unreachable".into(),
                });
            }
            let current = s.nodes.get(&self.node).map(|n| n.generation);
            if current != Some(self.generation) {
                return Err(DispatchError::SessionClosed);
            }
            s.batches += 1;
            for u in batch.updates {
                match s.statuses.get(&u.task_id) {
                    Some(old) if !old.state.can_transition_to(u.status.state) => {
                        s.regressions.push(u);
                    }
                    _ => {
                        s.statuses.insert(u.task_id, u.status);
                    }
                }
            }
        }
        self.dispatcher.inner.changed.notify_waiters();
        Ok(())
    }
}
