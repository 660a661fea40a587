//! The manager's dispatcher over the store: swarm-runtime's [`Dispatcher`] and [`Session`]
//! implemented by reading the replicated store and proposing through raft.
//!
//! - **Sessions.** `open_session` checks that the node is a member (its node object exists), marks
//!   it `ready` with the description it registered, and starts a streamer: a `view_and_watch` of
//!   the node's tasks and of secrets and configs, turned into a full [`AssignmentSet`] and then
//!   incremental ones on each commit marker (see [`crate::manager::assign`] for what is sent). A
//!   newer session of the same node ends the older one.
//! - **Status.** `report` hands each [`StatusBatch`] to the status committer (see
//!   `manager::status`), which commits them as task updates every `batch_interval` or
//!   `batch_max` tasks, dropping updates that would move a task backwards.
//! - **Liveness.** The in-process session carries no heartbeats: the session itself is the
//!   heartbeat. When a node's last session ends and no new one opens within `down_after` (three
//!   heartbeat periods, as SEMANTICS says), the node is marked `down` ("heartbeat failure"), which
//!   makes the orchestrator reschedule its replicated tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::dispatch::{AssignmentSet, NodeRegistration, StatusBatch};
use swarm_core::objects::node::NodeState;
use swarm_core::{
    CommitError, Id, Node, Object, ObjectKind, Proposer, SharedStore, StoreError, WatchFilter,
};
use swarm_runtime::{DispatchError, Dispatcher, Session};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::manager::assign::NodeAssignments;
pub use crate::manager::status::StatusStats;
use crate::manager::status::{Committer, StatusMsg};

/// Dispatcher tunables.
#[derive(Clone, Debug)]
pub struct DispatcherOptions {
    /// Longest a status update waits before it is committed (100 ms).
    pub batch_interval: Duration,
    /// Pending task updates that trigger an immediate commit (10 000).
    pub batch_max: usize,
    /// How long after its session ended a node is marked down (15 s: three 5 s heartbeats).
    pub down_after: Duration,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            batch_interval: Duration::from_millis(100),
            batch_max: 10_000,
            down_after: Duration::from_secs(15),
        }
    }
}

#[derive(Default)]
struct NodeEntry {
    generation: u64,
    live: bool,
    down_timer: Option<JoinHandle<()>>,
    /// Ends the current session's streamer.
    close: Option<watch::Sender<bool>>,
}

struct Inner {
    store: SharedStore,
    proposer: Arc<dyn Proposer>,
    options: DispatcherOptions,
    nodes: Mutex<HashMap<Id, NodeEntry>>,
    status_tx: Mutex<Option<mpsc::UnboundedSender<StatusMsg>>>,
    stats: Arc<StatusStats>,
    closed: AtomicBool,
    committer: Mutex<Option<JoinHandle<()>>>,
}

/// The store-backed dispatcher. Cheap to clone. See the module docs.
#[derive(Clone)]
pub struct StoreDispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StoreDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDispatcher")
            .field("nodes", &self.nodes().len())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl StoreDispatcher {
    /// A dispatcher over `store`, committing through `proposer`. Starts its status committer on
    /// the current tokio runtime.
    pub fn new(
        store: SharedStore,
        proposer: Arc<dyn Proposer>,
        options: DispatcherOptions,
    ) -> StoreDispatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(StatusStats::default());
        let committer = Committer {
            store: store.clone(),
            proposer: proposer.clone(),
            interval: options.batch_interval,
            max: options.batch_max.max(1),
            stats: stats.clone(),
            rx,
        };
        let handle = tokio::spawn(committer.run());
        StoreDispatcher {
            inner: Arc::new(Inner {
                store,
                proposer,
                options,
                nodes: Mutex::new(HashMap::new()),
                status_tx: Mutex::new(Some(tx)),
                stats,
                closed: AtomicBool::new(false),
                committer: Mutex::new(Some(handle)),
            }),
        }
    }

    fn nodes(&self) -> MutexGuard<'_, HashMap<Id, NodeEntry>> {
        self.inner.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counters of the status committer.
    pub fn stats(&self) -> &StatusStats {
        &self.inner.stats
    }

    /// Whether `node` has a live session.
    pub fn is_connected(&self, node: Id) -> bool {
        self.nodes().get(&node).is_some_and(|n| n.live)
    }

    /// Commits every status update received so far; returns once they are committed (or dropped).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        let sent = self
            .inner
            .status_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|tx| tx.send(StatusMsg::Flush(ack)).is_ok());
        if sent {
            let _ = done.await;
        }
    }

    /// Ends every session, refuses new ones, commits pending status updates and stops the
    /// committer. Nodes are not marked down (the daemon is going away, not the node).
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        for (_, mut n) in self.nodes().drain() {
            n.live = false;
            if let Some(t) = n.down_timer.take() {
                t.abort();
            }
            if let Some(c) = n.close.take() {
                let _ = c.send(true);
            }
        }
        self.inner
            .status_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let committer = self
            .inner
            .committer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(c) = committer {
            let _ = c.await;
        }
    }

    /// Sets the node's status (and description), retrying on conflicting writes.
    async fn set_node_state(
        &self,
        node: Id,
        state: NodeState,
        message: &str,
        registration: Option<&NodeRegistration>,
    ) -> Result<(), CommitError> {
        let mut last = None;
        for _ in 0..5 {
            let staged = self.inner.store.prepare(|tx| {
                let Some(n) = tx.get::<Node>(&node) else {
                    return Err(StoreError::NotFound {
                        kind: ObjectKind::Node,
                        id: node,
                    });
                };
                let mut nn = (*n).clone();
                nn.status.state = state;
                nn.status.message = message.to_string();
                if nn.status.addr.is_empty() {
                    nn.status.addr = "127.0.0.1".into();
                }
                if let Some(r) = registration {
                    let mut d = r.description.clone();
                    // Engine labels come from the operator's configuration, not the agent.
                    if let Some(old) = &n.description {
                        if d.engine.labels.is_empty() {
                            d.engine.labels = old.engine.labels.clone();
                        }
                    }
                    nn.description = Some(d);
                }
                if nn != *n {
                    tx.update(nn)?;
                }
                Ok(())
            });
            let ((), actions) = staged.map_err(CommitError::Rejected)?;
            if actions.is_empty() {
                return Ok(());
            }
            match self.inner.proposer.propose(actions).await {
                Ok(_) => return Ok(()),
                Err(e @ CommitError::Rejected(StoreError::VersionConflict { .. })) => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(CommitError::Stopped))
    }

    fn session_ended(&self, node: Id, generation: u64) {
        if self.inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut nodes = self.nodes();
        let Some(entry) = nodes.get_mut(&node) else {
            return;
        };
        if entry.generation != generation || !entry.live {
            return;
        }
        entry.live = false;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.clone();
        let after = self.inner.options.down_after;
        entry.down_timer = Some(rt.spawn(async move {
            tokio::time::sleep(after).await;
            let still_gone = me
                .nodes()
                .get(&node)
                .is_some_and(|n| n.generation == generation && !n.live);
            if still_gone && !me.inner.closed.load(Ordering::SeqCst) {
                tracing::info!(node = %node, "node missed its heartbeats: marking it down");
                if let Err(e) = me
                    .set_node_state(node, NodeState::Down, "heartbeat failure", None)
                    .await
                {
                    tracing::warn!(node = %node, error = %e, "could not mark the node down");
                }
            }
        }));
    }
}

#[async_trait]
impl Dispatcher for StoreDispatcher {
    async fn open_session(
        &self,
        registration: NodeRegistration,
    ) -> Result<Arc<dyn Session>, DispatchError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(DispatchError::Unreachable {
                reason: "the dispatcher is shutting down".into(),
            });
        }
        let node = registration.node_id;
        let known = self.inner.store.view(|s| s.get::<Node>(&node).is_some());
        if !known {
            return Err(DispatchError::Refused {
                reason: format!("node {node} is not a member of this swarm"),
            });
        }
        self.set_node_state(node, NodeState::Ready, "", Some(&registration))
            .await
            .map_err(|e| DispatchError::Unreachable {
                reason: format!("could not register the node: {e}"),
            })?;
        let (close_tx, close_rx) = watch::channel(false);
        let generation = {
            let mut nodes = self.nodes();
            let entry = nodes.entry(node).or_default();
            entry.generation += 1;
            entry.live = true;
            if let Some(t) = entry.down_timer.take() {
                t.abort();
            }
            if let Some(old) = entry.close.replace(close_tx) {
                let _ = old.send(true);
            }
            entry.generation
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(stream(self.inner.store.clone(), node, tx, close_rx));
        let m = crate::metrics::global();
        m.dispatcher_sessions.inc();
        m.dispatcher_sessions_opened.inc();
        Ok(Arc::new(StoreSession {
            dispatcher: self.clone(),
            node,
            generation,
            rx: tokio::sync::Mutex::new(rx),
        }))
    }
}

/// Streams `node`'s assignments until the session or the dispatcher closes.
async fn stream(
    store: SharedStore,
    node: Id,
    tx: mpsc::UnboundedSender<AssignmentSet>,
    mut close: watch::Receiver<bool>,
) {
    let filter = || {
        WatchFilter::kinds(&[ObjectKind::Task, ObjectKind::Secret, ObjectKind::Config])
            .with_predicate(move |o| match o {
                Object::Task(t) => t.node_id == Some(node),
                _ => true,
            })
    };
    let mut a = NodeAssignments::new(node);
    let mut sequence = 1;
    let (full, mut watcher) = store.view_and_watch(filter(), |s| a.full(s, sequence));
    if tx.send(full).is_err() {
        return;
    }
    loop {
        let events = tokio::select! {
            e = watcher.recv_many() => e,
            _ = tx.closed() => return,
            _ = close.wait_for(|c| *c) => return,
        };
        let received = std::time::Instant::now();
        match events {
            Ok(events) => {
                let mut commit = false;
                for e in &events {
                    a.handle_event(e);
                    commit |= matches!(
                        e,
                        swarm_core::Event::Commit { .. } | swarm_core::Event::Reset { .. }
                    );
                }
                if events
                    .iter()
                    .any(|e| matches!(e, swarm_core::Event::Reset { .. }))
                {
                    sequence += 1;
                    let seq = sequence;
                    let set = store.view(|s| a.full(s, seq));
                    if tx.send(set).is_err() {
                        return;
                    }
                    continue;
                }
                if commit {
                    let seq = sequence + 1;
                    if let Some(set) = store.view(|s| a.take_delta(s, seq)) {
                        sequence = seq;
                        if tx.send(set).is_err() {
                            return;
                        }
                        crate::metrics::global()
                            .dispatcher_assignment_seconds
                            .observe(received.elapsed().as_secs_f64());
                    }
                }
            }
            Err(e) => {
                // Lagged: resynchronise with a fresh full set on a fresh watch.
                tracing::debug!(node = %node, error = %e, "assignment watch restarted");
                sequence += 1;
                let seq = sequence;
                let (full, w) = store.view_and_watch(filter(), |s| a.full(s, seq));
                watcher = w;
                if tx.send(full).is_err() {
                    return;
                }
            }
        }
    }
}

struct StoreSession {
    dispatcher: StoreDispatcher,
    node: Id,
    generation: u64,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<AssignmentSet>>,
}

impl StoreSession {
    fn current(&self) -> bool {
        !self.dispatcher.inner.closed.load(Ordering::SeqCst)
            && self
                .dispatcher
                .nodes()
                .get(&self.node)
                .is_some_and(|n| n.generation == self.generation)
    }
}

#[async_trait]
impl Session for StoreSession {
    async fn next_assignments(&self) -> Result<AssignmentSet, DispatchError> {
        self.rx
            .lock()
            .await
            .recv()
            .await
            .ok_or(DispatchError::SessionClosed)
    }

    async fn report(&self, batch: StatusBatch) -> Result<(), DispatchError> {
        if !self.current() {
            return Err(DispatchError::SessionClosed);
        }
        crate::metrics::global().dispatcher_status_reports.inc();
        let sent = self
            .dispatcher
            .inner
            .status_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|tx| tx.send(StatusMsg::Batch(self.node, batch)).is_ok());
        if sent {
            Ok(())
        } else {
            Err(DispatchError::SessionClosed)
        }
    }
}

impl Drop for StoreSession {
    fn drop(&mut self) {
        crate::metrics::global().dispatcher_sessions.dec();
        self.dispatcher.session_ended(self.node, self.generation);
    }
}
