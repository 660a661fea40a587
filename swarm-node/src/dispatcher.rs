//! The manager's dispatcher over the store: swarm-runtime's [`Dispatcher`] and [`Session`]
//! implemented by reading the replicated store and proposing through raft.
//!
//! - **Sessions.** `open_session` checks that the node is a member (its node object exists), marks
//!   it `ready` with the description it registered (one proposal for all the registrations
//!   queued when the previous one finished: `register`), and starts a streamer: the node's tasks read
//!   from the store as a full [`AssignmentSet`], then incremental ones from the commits touching
//!   the node, which the dispatcher's one store watch routes to it (`manager::feed`; see
//!   [`crate::manager::assign`] for what is sent). A newer session of the same node ends the
//!   older one.
//! - **Status.** `report` hands each [`StatusBatch`] to the status committer (see
//!   `manager::status`), which commits them as task updates every `batch_interval` or
//!   `batch_max` tasks, dropping updates that would move a task backwards.
//! - **Liveness.** The in-process session carries no heartbeats: the session itself is the
//!   heartbeat. When a node's last session ends and no new one opens within `down_after` (three
//!   heartbeat periods, as SEMANTICS says), the node is marked `down` ("heartbeat failure"), which
//!   makes the orchestrator reschedule its replicated tasks. A remote session (opened with
//!   [`StoreDispatcher::open_remote`], as the QUIC server in `net::dispatch` does) must also
//!   [`heartbeat`](StoreDispatcher::heartbeat) every period (`heartbeat_period` ± 10 %, chosen
//!   here and returned to the caller); when none arrives for `down_after` its session is ended
//!   and the node marked down at once. If its session ends first (the connection lost), the node
//!   is still marked down when the heartbeat is overdue, not `down_after` after the end. Every
//!   node's deadlines are enforced by one sweeper task over a min-heap (`manager::deadlines`),
//!   not by a task per node; a heartbeat only moves the node's deadline in the node table.
//!   Expiry is judged against this manager's own ability to process heartbeats (`grace`): when
//!   it starts leading, or its sweeper wakes more than a second late (the process starved),
//!   every node gets a fresh `down_after` before any heartbeat expiry takes effect.
//! - **Leader change.** [`StoreDispatcher::mark_nodes_unknown`] (called once this manager leads)
//!   marks every node without a session `unknown`, then `down` if it does not register within
//!   twice `down_after`. Both markings go in batches of nodes per proposal (`marking`).
//! - **Registration.** More than `registration_limit` sessions of one node within
//!   `registration_window` (3 in 8 s) are refused as `Unreachable` (the agent backs off).
//! - **Assignments** are batched: a change is sent once the store has been quiet for
//!   `assignment_quiet` (100 ms) or `assignment_max_changes` (100) of the node's tasks changed
//!   (the secrets and configs they bring ride along; other nodes' changes never count).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::dispatch::{AssignmentSet, NodeRegistration, StatusBatch};
use swarm_core::objects::node::NodeState;
use swarm_core::{CommitError, Id, Node, Proposer, SharedStore, Task};
use swarm_runtime::{DispatchError, Dispatcher, Session};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::manager::deadlines::{Deadline, DeadlineKind, Deadlines};
use grace::Grace;

mod grace;
mod marking;
mod register;
mod sweep;
use crate::manager::feed::{stream, AssignmentFeed, Batching};
pub use crate::manager::status::StatusStats;
use crate::manager::status::{Committer, StatusMsg};

/// Dispatcher tunables.
#[derive(Clone, Debug)]
pub struct DispatcherOptions {
    /// Longest a status update waits before it is committed (100 ms).
    pub batch_interval: Duration,
    /// Pending task updates that trigger an immediate commit (10 000).
    pub batch_max: usize,
    /// How long after its session ended (or its last heartbeat, for remote sessions) a node is
    /// marked down (15 s: three 5 s heartbeats).
    pub down_after: Duration,
    /// The heartbeat period told to remote nodes, before the ± 10 % jitter (5 s). Keep it well
    /// below `down_after` (SwarmKit: a third of it), or remote sessions expire between beats.
    pub heartbeat_period: Duration,
    /// Sessions one node may open within `registration_window` (3).
    pub registration_limit: usize,
    /// See `registration_limit` (8 s).
    pub registration_window: Duration,
    /// An assignment change is sent once the store was quiet this long (100 ms)...
    pub assignment_quiet: Duration,
    /// ...or once this many of the node's tasks changed since the last set (100).
    pub assignment_max_changes: usize,
    /// Draws the heartbeat jitter (the operating system's RNG by default).
    pub entropy: swarm_core::Entropy,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            batch_interval: Duration::from_millis(100),
            batch_max: 10_000,
            down_after: Duration::from_secs(15),
            heartbeat_period: Duration::from_secs(5),
            registration_limit: 3,
            registration_window: Duration::from_secs(8),
            assignment_quiet: Duration::from_millis(100),
            assignment_max_changes: 100,
            entropy: swarm_raft::entropy::os(),
        }
    }
}

#[derive(Default)]
struct NodeEntry {
    generation: u64,
    live: bool,
    /// When the node is to be marked down (no session), if it is.
    down_at: Option<tokio::time::Instant>,
    /// Ends the current session's streamer.
    close: Option<watch::Sender<bool>>,
    /// When recent sessions were opened (rate limit).
    registrations: VecDeque<tokio::time::Instant>,
    /// Remote sessions: when the session expires without a heartbeat.
    heartbeat_deadline: Option<tokio::time::Instant>,
}

/// What [`StoreDispatcher::open_remote`] gives the network server.
pub struct RemoteSession {
    /// The session: its assignment sets, and `report` (as in process).
    pub session: Arc<dyn Session>,
    /// The session's id, to quote in heartbeats and status reports.
    pub id: u64,
    /// The first heartbeat period (jittered).
    pub period: Duration,
}

impl std::fmt::Debug for RemoteSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSession")
            .field("id", &self.id)
            .field("period", &self.period)
            .finish()
    }
}

struct Inner {
    store: SharedStore,
    proposer: Arc<dyn Proposer>,
    options: DispatcherOptions,
    nodes: Mutex<HashMap<Id, NodeEntry>>,
    status_tx: Mutex<Option<mpsc::UnboundedSender<StatusMsg>>>,
    /// Registrations to the batching writer (`register`); taken on close.
    register_tx: Mutex<Option<mpsc::UnboundedSender<register::Registration>>>,
    stats: Arc<StatusStats>,
    closed: AtomicBool,
    /// Whether this dispatcher's manager leads ([`StoreDispatcher::set_leading`]): only then are
    /// nodes marked down.
    leading: AtomicBool,
    committer: Mutex<Option<JoinHandle<()>>>,
    /// The one store watch every session's streamer is fed from.
    feed: AssignmentFeed,
    feed_stop: watch::Sender<bool>,
    /// Every node's liveness deadlines, enforced by one sweeper task.
    deadlines: Mutex<Deadlines>,
    /// Wakes the sweeper (an earlier deadline, the close, the drop).
    sweeper: Arc<Notify>,
    /// When heartbeat expiries may take effect again (`grace`).
    grace: Mutex<Grace>,
}

/// Sends `msg` to the task behind `tx` unless it was closed (taken) or is gone.
fn send_to<T>(tx: &Mutex<Option<mpsc::UnboundedSender<T>>>, msg: T) -> bool {
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|tx| tx.send(msg).is_ok())
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The sweeper holds only a weak reference: let it see that this is gone.
        self.sweeper.notify_one();
    }
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
        let (register_tx, register_rx) = mpsc::unbounded_channel();
        tokio::spawn(register::run(store.clone(), proposer.clone(), register_rx));
        let (feed_stop, feed_stop_rx) = watch::channel(false);
        let (feed, _) = AssignmentFeed::start(store.clone(), feed_stop_rx);
        let d = StoreDispatcher {
            inner: Arc::new(Inner {
                store,
                proposer,
                options,
                nodes: Mutex::new(HashMap::new()),
                status_tx: Mutex::new(Some(tx)),
                register_tx: Mutex::new(Some(register_tx)),
                stats,
                closed: AtomicBool::new(false),
                leading: AtomicBool::new(true),
                committer: Mutex::new(Some(handle)),
                feed,
                feed_stop,
                deadlines: Mutex::new(Deadlines::default()),
                sweeper: Arc::new(Notify::new()),
                grace: Mutex::new(Grace::default()),
            }),
        };
        tokio::spawn(sweep::sweep(
            Arc::downgrade(&d.inner),
            d.inner.sweeper.clone(),
        ));
        d
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
        let sent = send_to(&self.inner.status_tx, StatusMsg::Flush(ack));
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
            if let Some(c) = n.close.take() {
                let _ = c.send(true);
            }
        }
        self.inner.feed_stop.send_replace(true);
        self.inner.sweeper.notify_one();
        self.inner
            .status_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.inner
            .register_tx
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

    /// Sets the node ready with `registration`'s description, in a proposal shared with the
    /// registrations arriving at the same time (`register`); returns once it committed.
    async fn register_node(
        &self,
        node: Id,
        registration: NodeRegistration,
    ) -> Result<(), CommitError> {
        let (reply, done) = oneshot::channel();
        let registration = register::Registration {
            node,
            registration,
            reply,
        };
        let sent = send_to(&self.inner.register_tx, registration);
        if !sent {
            return Err(CommitError::Stopped);
        }
        done.await.unwrap_or(Err(CommitError::Stopped))
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
        // A remote node is down once its heartbeats are overdue: its session ending (the
        // connection lost, noticed only at the idle timeout) does not restart the clock. A local
        // session is its own heartbeat: down `down_after` after it ended.
        let at = entry
            .heartbeat_deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + self.inner.options.down_after);
        self.arm_down(&mut nodes, node, generation, at);
    }

    /// Marks `node` down at `at` unless a session of a generation other than `generation`
    /// opened (or this one is live again) meanwhile. Takes the node table's lock guard.
    fn arm_down(
        &self,
        nodes: &mut HashMap<Id, NodeEntry>,
        node: Id,
        generation: u64,
        at: tokio::time::Instant,
    ) {
        if let Some(e) = nodes.get_mut(&node) {
            e.down_at = Some(at);
        }
        self.push_deadline(Deadline {
            at,
            node,
            generation,
            kind: DeadlineKind::Down,
        });
    }

    fn push_deadline(&self, d: Deadline) {
        let earliest = self
            .inner
            .deadlines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(d);
        if earliest {
            self.inner.sweeper.notify_one();
        }
    }

    /// Tells the dispatcher whether its manager leads (a dispatcher starts leading: in-process
    /// and single-manager use). A manager that lost the leadership keeps its dispatcher, whose
    /// sessions then end; it must not mark their nodes down, since they are registering with
    /// the new leader meanwhile and a forwarded "down" would land after their "ready" (found by
    /// the cluster simulation: every node stayed down with live sessions). So while not leading,
    /// due deadlines are dropped and no node is marked down; the next leadership marks every
    /// node without a session unknown anyway ([`Self::mark_nodes_unknown`]).
    ///
    /// A manager that starts leading grants every node a fresh `down_after` before any heartbeat
    /// expiry takes effect, as SwarmKit does (`grace`).
    pub fn set_leading(&self, leading: bool) {
        self.set_leading_at(leading, tokio::time::Instant::now());
    }

    fn set_leading_at(&self, leading: bool, now: tokio::time::Instant) {
        let was = self.inner.leading.swap(leading, Ordering::SeqCst);
        if leading {
            if !was {
                self.grace().grant(now, self.inner.options.down_after);
            }
            self.inner.sweeper.notify_one();
        }
    }

    fn grace(&self) -> MutexGuard<'_, Grace> {
        self.inner.grace.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Dispatcher for StoreDispatcher {
    async fn open_session(
        &self,
        registration: NodeRegistration,
    ) -> Result<Arc<dyn Session>, DispatchError> {
        let (session, _) = self.open(registration, false).await?;
        Ok(session)
    }
}

impl StoreDispatcher {
    /// Opens a session for a node across the network: as `open_session`, and the session expires
    /// unless [`heartbeat`](Self::heartbeat) is called within `down_after` of the last one (then
    /// the node is marked down at once). `registration.node_id` must come from the caller's
    /// certificate.
    pub async fn open_remote(
        &self,
        registration: NodeRegistration,
    ) -> Result<RemoteSession, DispatchError> {
        let (session, id) = self.open(registration, true).await?;
        Ok(RemoteSession {
            session,
            id,
            period: self.jittered_period(),
        })
    }

    /// A heartbeat of `node`'s session `session`: pushes its expiry back by `down_after` and
    /// returns the period to wait before the next one (`heartbeat_period` ± 10 %).
    pub fn heartbeat(&self, node: Id, session: u64) -> Result<Duration, DispatchError> {
        self.heartbeat_at(node, session, tokio::time::Instant::now())
    }

    fn heartbeat_at(
        &self,
        node: Id,
        session: u64,
        now: tokio::time::Instant,
    ) -> Result<Duration, DispatchError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(DispatchError::SessionClosed);
        }
        {
            let mut nodes = self.nodes();
            let entry = nodes
                .get_mut(&node)
                .filter(|e| e.generation == session && e.live)
                .ok_or(DispatchError::SessionClosed)?;
            entry.heartbeat_deadline = Some(now + self.inner.options.down_after);
        }
        Ok(self.jittered_period())
    }

    /// Takes a status batch of `node`'s session `session`. Updates for tasks that are not
    /// assigned to `node` in the store (unknown, or on another node) are refused: not committed,
    /// and their ids returned so that the caller can tell the agent. The rest goes to the
    /// committer.
    pub fn report_remote(
        &self,
        node: Id,
        session: u64,
        batch: StatusBatch,
    ) -> Result<Vec<Id>, DispatchError> {
        let current = !self.inner.closed.load(Ordering::SeqCst)
            && self
                .nodes()
                .get(&node)
                .is_some_and(|n| n.generation == session && n.live);
        if !current {
            return Err(DispatchError::SessionClosed);
        }
        let (accepted, refused): (Vec<_>, Vec<_>) = self.inner.store.view(|s| {
            batch.updates.into_iter().partition(|u| {
                s.get::<Task>(&u.task_id)
                    .is_some_and(|t| t.node_id == Some(node))
            })
        });
        let refused: Vec<Id> = refused.into_iter().map(|u| u.task_id).collect();
        if !refused.is_empty() {
            tracing::warn!(node = %node, refused = refused.len(), "status updates for tasks not assigned to the node refused");
        }
        if !accepted.is_empty() {
            self.send_status(
                node,
                StatusBatch {
                    node_id: Some(node),
                    updates: accepted,
                },
            )?;
        }
        Ok(refused)
    }

    /// After this manager became leader: every node without a live session here (but `except`)
    /// is marked `unknown`, then `down` ("heartbeat failure") unless it registers within twice
    /// `down_after`. Returns how many nodes were marked.
    pub async fn mark_nodes_unknown(&self, except: Option<Id>) -> usize {
        let ids: Vec<Id> = self.inner.store.view(|s| {
            s.iter::<Node>()
                .map(|n| n.id)
                .filter(|id| Some(*id) != except)
                .collect()
        });
        // The generation of every node without a live session now: a node whose session opens
        // before its batch commits is left out of it (and not armed to go down).
        let quiet: HashMap<Id, u64> = {
            let mut nodes = self.nodes();
            ids.iter()
                .filter_map(|id| {
                    let e = nodes.entry(*id).or_default();
                    (!e.live).then_some((*id, e.generation))
                })
                .collect()
        };
        let candidates: Vec<Id> = ids
            .into_iter()
            .filter(|id| quiet.contains_key(id))
            .collect();
        let unchanged = |d: &StoreDispatcher, node: Id| {
            d.nodes()
                .get(&node)
                .is_some_and(|e| !e.live && Some(&e.generation) == quiet.get(&node))
        };
        let marked = self
            .mark_nodes(
                &candidates,
                NodeState::Unknown,
                "Node moved to unknown state due to leadership change in cluster",
                unchanged,
            )
            .await;
        let at = tokio::time::Instant::now() + self.inner.options.down_after * 2;
        let mut nodes = self.nodes();
        for node in &marked {
            if let Some(&generation) = quiet.get(node) {
                self.arm_down(&mut nodes, *node, generation, at);
            }
        }
        marked.len()
    }

    fn jittered_period(&self) -> Duration {
        use rand_core::RngCore;
        let base = self.inner.options.heartbeat_period;
        // 0.9 .. 1.1 of the period.
        let r = f64::from(self.inner.options.entropy.clone().next_u32()) / f64::from(u32::MAX);
        base.mul_f64(0.9 + 0.2 * r)
    }

    fn send_status(&self, node: Id, batch: StatusBatch) -> Result<(), DispatchError> {
        crate::metrics::global().dispatcher_status_reports.inc();
        let sent = send_to(&self.inner.status_tx, StatusMsg::Batch(node, batch));
        if sent {
            Ok(())
        } else {
            Err(DispatchError::SessionClosed)
        }
    }

    async fn open(
        &self,
        registration: NodeRegistration,
        remote: bool,
    ) -> Result<(Arc<dyn Session>, u64), DispatchError> {
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
        {
            let opts = &self.inner.options;
            let now = tokio::time::Instant::now();
            let mut nodes = self.nodes();
            let entry = nodes.entry(node).or_default();
            while entry
                .registrations
                .front()
                .is_some_and(|t| now.duration_since(*t) >= opts.registration_window)
            {
                entry.registrations.pop_front();
            }
            if entry.registrations.len() >= opts.registration_limit {
                return Err(DispatchError::Unreachable {
                    reason: format!(
                        "node {node} registered more than {} times in {:?}; retry later",
                        opts.registration_limit, opts.registration_window
                    ),
                });
            }
            entry.registrations.push_back(now);
        }
        self.register_node(node, registration)
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
            entry.down_at = None;
            if let Some(old) = entry.close.replace(close_tx) {
                let _ = old.send(true);
            }
            entry.heartbeat_deadline = None;
            if remote {
                let at = tokio::time::Instant::now() + self.inner.options.down_after;
                entry.heartbeat_deadline = Some(at);
                self.push_deadline(Deadline {
                    at,
                    node,
                    generation: entry.generation,
                    kind: DeadlineKind::Heartbeat,
                });
            }
            entry.generation
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let batching = Batching {
            quiet: self.inner.options.assignment_quiet,
            max: self.inner.options.assignment_max_changes.max(1),
        };
        // Registered before the streamer reads its full set (see `manager::feed`).
        let registration = self.inner.feed.register(node);
        tokio::spawn(stream(
            self.inner.store.clone(),
            registration,
            node,
            tx,
            close_rx,
            batching,
        ));
        let m = crate::metrics::global();
        m.dispatcher_sessions.inc();
        m.dispatcher_sessions_opened.inc();
        Ok((
            Arc::new(StoreSession {
                dispatcher: self.clone(),
                node,
                generation,
                rx: tokio::sync::Mutex::new(rx),
            }),
            generation,
        ))
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
        self.dispatcher.send_status(self.node, batch)
    }
}

impl Drop for StoreSession {
    fn drop(&mut self) {
        crate::metrics::global().dispatcher_sessions.dec();
        self.dispatcher.session_ended(self.node, self.generation);
    }
}
