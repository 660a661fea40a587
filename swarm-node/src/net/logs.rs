//! Task logs across hosts (SwarmKit's log broker, reshaped for swarm-net's call kinds): a manager
//! answering `docker service logs` or `docker task logs` for a task on another node gets the lines
//! from that node.
//!
//! # Protocol
//! swarm-net calls go from a node to a manager (workers serve no listener), so, as SwarmKit's
//! agent does with `ListenSubscriptions` / `PublishLogs`, the node holding the logs dials out:
//! - [`LISTEN`] (server streaming, `Access::Node`): a node opens it on **every** manager it knows
//!   and keeps it open; the manager streams [`ListenMessage`]s down it: a [`LogSubscription`]
//!   (one task, with `since`, `tail` and `follow`) or the cancellation of one.
//! - [`PUBLISH`] (unary, `Access::Node`): the node sends a subscription's lines in batches (at
//!   most [`MAX_BATCH_RECORDS`] records, [`MAX_BATCH_BYTES`] of text), one call at a time per
//!   subscription, the last with its [`LogEnd`].
//!
//! # Who may see what
//! - The node publishes only for subscriptions it received on its listen stream, only to the
//!   manager that sent them, and only to managers: its listen calls name `Role::Manager` (and the
//!   manager's node id when known), so the client closes a connection whose certificate says
//!   otherwise, and TLS only accepts certificates of its cluster's root.
//! - The node serves only its own tasks: a subscription naming another node is refused, and so is a
//!   task its agent does not control (SwarmKit's agent checks the same); a task it has no logs for
//!   (its runtime never ran it or already removed it) ends with no lines, as the local path does.
//! - The manager accepts a batch only from the node the subscription was sent to (the caller's
//!   certificate, never a field of the request) and only for that subscription's task.
//!
//! # Any manager answers
//! Every node (workers, and every manager for its own tasks) listens on every manager in its
//! manager list (a worker's from its dispatcher session, a manager's from the store), so each
//! manager, leader or follower, holds a listen stream from every other node and asks it directly:
//! no forwarding to the leader, and nothing to redo on a leader change. A node whose listen stream
//! to a manager is not open (yet) is waited for [`LISTENER_WAIT`], then its part answers
//! "not available".
//!
//! # Bounded memory
//! The manager queues at most [`LISTENER_BUFFER`] control messages per node (a full queue refuses
//! the subscription) and [`SUBSCRIPTION_BUFFER`] batches per subscription: a publish call waits
//! while its subscriber (the HTTP client) is slow, and the node, publishing one batch at a time
//! per subscription, stops reading its runtime meanwhile. A node serves at most
//! [`MAX_SUBSCRIPTIONS`] subscriptions per manager at once.
//!
//! # Ends
//! A subscription ends when the task's output ends (or at once without `follow`), when the
//! subscriber drops its stream (the node is told to cancel, and its next publish is refused), or
//! when the node's listen stream ends (the node is down, unreachable past the connection's idle
//! timeout, or restarting): then the subscriber's stream yields an error naming the node, which the
//! API writes as Docker's "Error grabbing logs" frame, never a silent hang.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use swarm_core::{Id, Timestamp};
use swarm_net::rpc::{
    Access, CallContext, Client, Code, ItemSender, Peer, Router, ServerStreaming, Status, Unary,
};
use swarm_net::Role;
use swarm_runtime::{LogOptions, LogRecord, LogRecords, LogStream, Runtime, RuntimeError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::net::dispatch::WeightedManager;

/// Most records in one [`PUBLISH`] call.
pub const MAX_BATCH_RECORDS: usize = 256;
/// Most line bytes in one [`PUBLISH`] call (a batch is sent before it would pass this).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Longest line sent; longer ones are cut (on a character boundary).
pub const MAX_LINE: usize = 256 << 10;
/// Control messages a manager queues for one node's listen stream.
pub const LISTENER_BUFFER: usize = 256;
/// Batches a manager queues for one subscription before its publish calls wait.
pub const SUBSCRIPTION_BUFFER: usize = 8;
/// Subscriptions a node serves at once for one manager.
pub const MAX_SUBSCRIPTIONS: usize = 512;
/// How long a subscription waits for the node's listen stream to this manager to be open.
pub const LISTENER_WAIT: Duration = Duration::from_secs(3);
/// How long a node may take to answer a subscription (its first, possibly empty, batch).
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long one publish call may wait for its subscriber to take the previous lines.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a node re-reads its manager list.
const MANAGERS_EVERY: Duration = Duration::from_secs(1);
/// Longest pause between two attempts to open a listen stream.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A node's standing request for log subscriptions: see the module docs.
pub const LISTEN: ServerStreaming<ListenRequest, ListenMessage> =
    ServerStreaming::new("logs.listen", Access::Node, 64, 64 << 10);
/// A batch of a subscription's lines.
pub const PUBLISH: Unary<PublishRequest, PublishResponse> =
    Unary::new("logs.publish", Access::Node, 2 << 20, 64);

/// The request opening [`LISTEN`]; the node is the caller's certificate's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenRequest {}

/// One task's logs, as a manager asks a node for them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSubscription {
    /// Chosen by the manager; quoted in every publish.
    pub id: u64,
    /// The node the manager believes runs the task.
    pub node_id: Id,
    /// The task.
    pub task_id: Id,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Of those, only the last `tail`.
    pub tail: Option<u64>,
    /// Keep sending lines as they are written, until the task's output ends.
    pub follow: bool,
}

impl LogSubscription {
    fn options(&self) -> LogOptions {
        LogOptions {
            since: self.since,
            tail: self.tail.map(|t| usize::try_from(t).unwrap_or(usize::MAX)),
            follow: self.follow,
        }
    }
}

/// An item of the [`LISTEN`] stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenMessage {
    /// Send this task's lines.
    Subscribe(LogSubscription),
    /// The subscriber went away: stop sending subscription `id`.
    Cancel {
        /// The subscription.
        id: u64,
    },
}

/// One line on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    /// When it was written, if the runtime knows.
    pub time: Option<Timestamp>,
    /// Standard error (else standard output).
    pub stderr: bool,
    /// The line.
    pub line: String,
}

impl WireRecord {
    fn from_record(r: LogRecord) -> WireRecord {
        let mut line = r.line;
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        WireRecord {
            time: r.time,
            stderr: r.stream == LogStream::Stderr,
            line,
        }
    }

    fn into_record(self) -> LogRecord {
        LogRecord {
            time: self.time,
            stream: if self.stderr {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            },
            line: self.line,
        }
    }
}

/// How a subscription ended, on the node's side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEnd {
    /// Every line was sent (the output ended; or, without follow, the lines kept now).
    Done,
    /// The node has no logs of the task (never ran it here, or already removed).
    NoLogs,
    /// The node refuses: the task is not its own.
    Refused(String),
    /// Reading the logs failed.
    Failed(String),
}

/// A batch of a subscription's lines (and with `end`, its last).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The subscription.
    pub subscription: u64,
    /// Its task.
    pub task_id: Id,
    /// Lines, oldest first.
    pub records: Vec<WireRecord>,
    /// Set on the last call.
    pub end: Option<LogEnd>,
}

/// The answer to [`PUBLISH`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {}

// ---------------------------------------------------------------------------------------------
// Manager side.

struct Listener {
    generation: u64,
    tx: mpsc::Sender<ListenMessage>,
}

struct Sub {
    node: Id,
    task: Id,
    listener: u64,
    listener_tx: mpsc::Sender<ListenMessage>,
    tx: mpsc::Sender<Vec<LogRecord>>,
    end: EndSlot,
}

/// How a subscription ended, as its stream reads it once every sender is gone (`None`: every
/// line delivered).
type EndSlot = Arc<Mutex<Option<SubEnd>>>;

enum SubEnd {
    /// The node has no logs of the task.
    NoLogs,
    /// The part failed: the stream's last item says why.
    Failed(String),
}

/// [`LogBroker::subscribe`]: the node has no logs of the task (never ran it, or removed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node {node} has no logs of task {task}")]
pub struct NoLogsThere {
    /// The node asked.
    pub node: Id,
    /// The task.
    pub task: Id,
}

#[derive(Default)]
struct State {
    next_id: u64,
    listeners: HashMap<Id, Listener>,
    subs: HashMap<u64, Sub>,
}

struct Inner {
    state: Mutex<State>,
    /// Bumped whenever a listener registers.
    registered: watch::Sender<u64>,
}

/// A manager's side: the nodes listening here and the open subscriptions. Cheap to clone. See the
/// module docs.
#[derive(Clone)]
pub struct LogBroker {
    inner: Arc<Inner>,
}

impl Default for LogBroker {
    fn default() -> Self {
        LogBroker::new()
    }
}

impl std::fmt::Debug for LogBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("LogBroker")
            .field("listeners", &st.listeners.len())
            .field("subscriptions", &st.subs.len())
            .finish()
    }
}

/// Why a subscription could not be sent to its node.
enum NotSent {
    /// No listen stream from the node (yet).
    NoListener,
    /// The node's control queue is full.
    Busy,
}

fn failed_stream(node: Id, task: Id, reason: String) -> LogRecords {
    Box::pin(futures_util::stream::iter([Err(remote_error(
        node, task, reason,
    ))]))
}

/// The stream of a task whose node the store lists down: one error, at once (no wait for a
/// listen stream that cannot come).
pub fn node_down(node: Id, task: Id) -> LogRecords {
    failed_stream(
        node,
        task,
        format!("node {node} is not available: it is down"),
    )
}

fn remote_error(node: Id, task: Id, reason: String) -> RuntimeError {
    RuntimeError::Io {
        op: format!("reading the logs of task {task} on node {node}"),
        source: std::io::Error::other(reason),
    }
}

impl LogBroker {
    /// A broker with no listener.
    pub fn new() -> LogBroker {
        LogBroker {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                registered: watch::channel(0).0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `node` has a listen stream open here.
    pub fn listening(&self, node: &Id) -> bool {
        self.state().listeners.contains_key(node)
    }

    /// How many subscriptions are open (for tests and metrics).
    pub fn open_subscriptions(&self) -> usize {
        self.state().subs.len()
    }

    /// Task `task`'s lines from `node`, selected by `opts`. Waits up to [`LISTENER_WAIT`] for the
    /// node's listen stream and [`ANSWER_WAIT`] for its answer; `Err` when the node has no logs
    /// of the task; every failure (node not available, refused, lost) is the stream's last item,
    /// an error naming the node. Dropping the stream cancels the subscription.
    pub async fn subscribe(
        &self,
        node: Id,
        task: Id,
        opts: LogOptions,
    ) -> Result<LogRecords, NoLogsThere> {
        let mut registered = self.inner.registered.subscribe();
        let deadline = tokio::time::Instant::now() + LISTENER_WAIT;
        loop {
            registered.borrow_and_update();
            match self.try_subscribe(node, task, opts) {
                Ok((rx, end, guard)) => return answer(rx, end, guard, node, task).await,
                Err(NotSent::Busy) => {
                    return Ok(failed_stream(
                        node,
                        task,
                        format!("node {node} has too many log requests queued; try again"),
                    ))
                }
                Err(NotSent::NoListener) => {}
            }
            let waited = tokio::time::timeout_at(deadline, registered.changed()).await;
            if !matches!(waited, Ok(Ok(()))) {
                return Ok(failed_stream(
                    node,
                    task,
                    format!(
                        "node {node} is not available: it has no log stream open with this \
                         manager (down, unreachable or still connecting)"
                    ),
                ));
            }
        }
    }

    fn try_subscribe(&self, node: Id, task: Id, opts: LogOptions) -> Result<Opened, NotSent> {
        let mut st = self.state();
        let (generation, listener_tx) = match st.listeners.get(&node) {
            Some(l) => (l.generation, l.tx.clone()),
            None => return Err(NotSent::NoListener),
        };
        st.next_id += 1;
        let id = st.next_id;
        let sub = LogSubscription {
            id,
            node_id: node,
            task_id: task,
            since: opts.since,
            tail: opts.tail.map(|t| u64::try_from(t).unwrap_or(u64::MAX)),
            follow: opts.follow,
        };
        match listener_tx.try_send(ListenMessage::Subscribe(sub)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(NotSent::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                st.listeners.remove(&node);
                return Err(NotSent::NoListener);
            }
        }
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let end = Arc::new(Mutex::new(None));
        st.subs.insert(
            id,
            Sub {
                node,
                task,
                listener: generation,
                listener_tx,
                tx,
                end: end.clone(),
            },
        );
        drop(st);
        let guard = SubGuard {
            broker: self.clone(),
            id,
        };
        Ok((rx, end, guard))
    }

    /// Registers `node`'s listen stream (replacing an older one); the messages for it come out of
    /// the returned receiver until the guard is dropped.
    fn register(&self, node: Id) -> (mpsc::Receiver<ListenMessage>, ListenerGuard) {
        let (tx, rx) = mpsc::channel(LISTENER_BUFFER);
        let generation = {
            let mut st = self.state();
            st.next_id += 1;
            let generation = st.next_id;
            st.listeners.insert(node, Listener { generation, tx });
            generation
        };
        self.inner.registered.send_modify(|n| *n += 1);
        (
            rx,
            ListenerGuard {
                broker: self.clone(),
                node,
                generation,
            },
        )
    }

    /// The listen stream `generation` of `node` ended: the subscriptions sent down it end with an
    /// error.
    fn unregister(&self, node: Id, generation: u64) {
        let mut st = self.state();
        if st
            .listeners
            .get(&node)
            .is_some_and(|l| l.generation == generation)
        {
            st.listeners.remove(&node);
        }
        let lost: Vec<u64> = st
            .subs
            .iter()
            .filter(|(_, s)| s.node == node && s.listener == generation)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(sub) = st.subs.remove(&id) {
                *sub.end.lock().unwrap_or_else(|e| e.into_inner()) = Some(SubEnd::Failed(format!(
                    "node {node} is no longer connected to this manager (down, unreachable or \
                     restarting): its logs end here"
                )));
            }
        }
    }

    /// A batch from `caller` (its certificate's node id). See the module docs for the checks.
    pub async fn publish(&self, caller: Id, req: PublishRequest) -> Result<(), Status> {
        let (tx, end) = {
            let st = self.state();
            let Some(sub) = st.subs.get(&req.subscription) else {
                return Err(Status::new(
                    Code::NotFound,
                    format!(
                        "log subscription {} is not open on this manager (cancelled or ended)",
                        req.subscription
                    ),
                ));
            };
            if sub.node != caller {
                return Err(Status::new(
                    Code::PermissionDenied,
                    format!(
                        "log subscription {} was sent to node {}, not to the caller {caller}",
                        req.subscription, sub.node
                    ),
                ));
            }
            if sub.task != req.task_id {
                return Err(Status::new(
                    Code::InvalidArgument,
                    format!(
                        "log subscription {} is for task {}, not {}",
                        req.subscription, sub.task, req.task_id
                    ),
                ));
            }
            (sub.tx.clone(), sub.end.clone())
        };
        // The first call (possibly empty) is the node's answer; empty ones are harmless after.
        if req.end.is_none() || !req.records.is_empty() {
            let records = req
                .records
                .into_iter()
                .map(WireRecord::into_record)
                .collect();
            if tx.send(records).await.is_err() {
                return Err(Status::new(
                    Code::NotFound,
                    format!("log subscription {} was cancelled", req.subscription),
                ));
            }
        }
        if let Some(how) = req.end {
            let reason = match how {
                LogEnd::Done => None,
                LogEnd::NoLogs => Some(SubEnd::NoLogs),
                LogEnd::Refused(m) => Some(SubEnd::Failed(format!("node {caller} refused: {m}"))),
                LogEnd::Failed(m) => Some(SubEnd::Failed(format!("node {caller}: {m}"))),
            };
            *end.lock().unwrap_or_else(|e| e.into_inner()) = reason;
            self.state().subs.remove(&req.subscription);
        }
        Ok(())
    }
}

/// Ends a listener's registration when its call ends.
struct ListenerGuard {
    broker: LogBroker,
    node: Id,
    generation: u64,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.broker.unregister(self.node, self.generation);
    }
}

/// Cancels a subscription when its stream is dropped.
struct SubGuard {
    broker: LogBroker,
    id: u64,
}

impl Drop for SubGuard {
    fn drop(&mut self) {
        let removed = self.broker.state().subs.remove(&self.id);
        if let Some(sub) = removed {
            // Full or closed: the node learns at its next publish, which is refused.
            let _ = sub
                .listener_tx
                .try_send(ListenMessage::Cancel { id: self.id });
        }
    }
}

/// A subscription sent: its batches, how it ended, and what cancels it.
type Opened = (mpsc::Receiver<Vec<LogRecord>>, EndSlot, SubGuard);

fn take_end(end: &EndSlot) -> Option<SubEnd> {
    end.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Waits for the node's answer to a subscription, then streams the rest.
async fn answer(
    mut rx: mpsc::Receiver<Vec<LogRecord>>,
    end: EndSlot,
    guard: SubGuard,
    node: Id,
    task: Id,
) -> Result<LogRecords, NoLogsThere> {
    let first = match tokio::time::timeout(ANSWER_WAIT, rx.recv()).await {
        Ok(Some(batch)) => batch,
        Ok(None) => match take_end(&end) {
            Some(SubEnd::NoLogs) => return Err(NoLogsThere { node, task }),
            Some(SubEnd::Failed(reason)) => return Ok(failed_stream(node, task, reason)),
            None => Vec::new(),
        },
        Err(_) => {
            return Ok(failed_stream(
                node,
                task,
                format!("node {node} did not answer within {ANSWER_WAIT:?}"),
            ))
        }
    };
    struct St {
        rx: mpsc::Receiver<Vec<LogRecord>>,
        pending: std::collections::VecDeque<LogRecord>,
        end: EndSlot,
        done: bool,
        _guard: SubGuard,
    }
    let st = St {
        rx,
        pending: first.into(),
        end,
        done: false,
        _guard: guard,
    };
    Ok(Box::pin(futures_util::stream::unfold(
        st,
        move |mut st| async move {
            loop {
                if let Some(r) = st.pending.pop_front() {
                    return Some((Ok(r), st));
                }
                if st.done {
                    return None;
                }
                match st.rx.recv().await {
                    Some(batch) => st.pending.extend(batch),
                    None => {
                        // Every sender is gone: the subscription was closed or its node lost.
                        st.done = true;
                        if let Some(SubEnd::Failed(reason)) = take_end(&st.end) {
                            return Some((Err(remote_error(node, task, reason)), st));
                        }
                    }
                }
            }
        },
    )))
}

/// Adds the [`LISTEN`] and [`PUBLISH`] routes served by `broker`.
pub fn logs_routes(router: Router, broker: LogBroker) -> Router {
    let b = broker.clone();
    router
        .server_streaming(
            &LISTEN,
            move |ctx: CallContext, _req: ListenRequest, mut out: ItemSender<ListenMessage>| {
                let broker = b.clone();
                async move {
                    let node = caller(&ctx)?;
                    let (mut rx, _guard) = broker.register(node);
                    tracing::debug!(%node, "log listener open");
                    while let Some(msg) = rx.recv().await {
                        out.send(&msg).await?;
                    }
                    Ok(())
                }
            },
        )
        .unary(&PUBLISH, move |ctx: CallContext, req: PublishRequest| {
            let broker = broker.clone();
            async move {
                let node = caller(&ctx)?;
                broker.publish(node, req).await?;
                Ok(PublishResponse {})
            }
        })
}

fn caller(ctx: &CallContext) -> Result<Id, Status> {
    ctx.peer.map(|p| p.identity.node_id).ok_or_else(|| {
        Status::new(
            Code::Unauthenticated,
            "log calls need a node certificate of this cluster",
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Node side.

/// Whether this node's agent controls a task.
pub type OwnsTask = Arc<dyn Fn(&Id) -> bool + Send + Sync>;
/// The managers a node listens on (its own node id is skipped).
pub type ManagerList = Arc<dyn Fn() -> Vec<WeightedManager> + Send + Sync>;

/// Where a node reads its tasks' lines: its runtime (`impl TaskLogs for Arc<dyn Runtime>`), or a
/// test's source.
#[async_trait::async_trait]
pub trait TaskLogs: Send + Sync {
    /// As [`Runtime::log_stream`]: [`RuntimeError::NotFound`] when the task is not here.
    async fn log_stream(&self, task: &Id, opts: LogOptions) -> Result<LogRecords, RuntimeError>;
}

#[async_trait::async_trait]
impl TaskLogs for Arc<dyn Runtime> {
    async fn log_stream(&self, task: &Id, opts: LogOptions) -> Result<LogRecords, RuntimeError> {
        self.as_ref().log_stream(task, opts).await
    }
}

/// What a node serves logs from.
#[derive(Clone)]
pub struct LogSource {
    /// This node.
    pub node_id: Id,
    /// Its runtime (the lines).
    pub runtime: Arc<dyn TaskLogs>,
    /// Its agent's tasks (which tasks are its own).
    pub owns: OwnsTask,
}

impl std::fmt::Debug for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl LogSource {
    /// Opens `sub`'s lines, or says how it ends at once: refused when it names another node or a
    /// task this node's agent does not control (and the runtime has), no logs when the runtime
    /// has none.
    pub async fn open(&self, sub: &LogSubscription) -> Result<LogRecords, LogEnd> {
        if sub.node_id != self.node_id {
            return Err(LogEnd::Refused(format!(
                "the subscription names node {}; this is node {}",
                sub.node_id, self.node_id
            )));
        }
        let owned = (self.owns)(&sub.task_id);
        let opts = if owned {
            sub.options()
        } else {
            // Only to tell "not here at all" from "here, but not ours": nothing is read.
            LogOptions {
                tail: Some(0),
                ..LogOptions::default()
            }
        };
        match self.runtime.log_stream(&sub.task_id, opts).await {
            Err(RuntimeError::NotFound { .. }) => Err(LogEnd::NoLogs),
            Err(e) => Err(LogEnd::Failed(e.to_string())),
            Ok(_) if !owned => Err(LogEnd::Refused(format!(
                "task {} is not a task of node {}",
                sub.task_id, self.node_id
            ))),
            Ok(lines) => Ok(lines),
        }
    }
}

/// A node's side: listen streams to every manager, serving their subscriptions. See the module
/// docs. Stop it with [`LogPublisher::stop`] (dropping it aborts the same work).
pub struct LogPublisher {
    stop: watch::Sender<bool>,
    main: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogPublisher").finish_non_exhaustive()
    }
}

impl Drop for LogPublisher {
    fn drop(&mut self) {
        if let Some(main) = self.main.take() {
            main.abort();
        }
    }
}

impl LogPublisher {
    /// Serves `source` to the managers `managers` lists, calling with `client`.
    pub fn start(client: Arc<Client>, source: LogSource, managers: ManagerList) -> LogPublisher {
        let (stop, mut stop_rx) = watch::channel(false);
        let main = tokio::spawn(async move {
            let mut listening: HashMap<SocketAddr, (Peer, JoinHandle<()>)> = HashMap::new();
            loop {
                let mut want: HashMap<SocketAddr, Peer> = HashMap::new();
                for m in managers() {
                    if m.node_id == Some(source.node_id) {
                        continue;
                    }
                    want.entry(m.addr).or_insert(Peer {
                        addr: m.addr,
                        role: Role::Manager,
                        node_id: m.node_id,
                    });
                }
                listening.retain(|addr, (peer, task)| {
                    let keep = want.get(addr) == Some(peer) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for (addr, peer) in want {
                    if !listening.contains_key(&addr) {
                        let task = tokio::spawn(listen_loop(client.clone(), peer, source.clone()));
                        listening.insert(addr, (peer, task));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(MANAGERS_EVERY) => {}
                    _ = stop_rx.wait_for(|s| *s) => break,
                }
            }
            for (_, (_, task)) in listening {
                task.abort();
            }
        });
        LogPublisher {
            stop,
            main: Some(main),
        }
    }

    /// Stops listening and every subscription being served.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(main) = self.main.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), main).await;
        }
    }
}

/// Aborts the tasks it holds when dropped (the listen loop's subscriptions).
#[derive(Default)]
struct Serving(HashMap<u64, JoinHandle<()>>);

impl Drop for Serving {
    fn drop(&mut self) {
        for (_, t) in self.0.drain() {
            t.abort();
        }
    }
}

/// Keeps a listen stream open on `peer` (reopened after a pause when it breaks) and serves what it
/// asks.
async fn listen_loop(client: Arc<Client>, peer: Peer, source: LogSource) {
    let mut pause = Duration::from_millis(200);
    loop {
        match client
            .server_streaming(&peer, &LISTEN, &ListenRequest {}, None)
            .await
        {
            Ok(mut stream) => {
                let mut serving = Serving::default();
                loop {
                    match stream.next().await {
                        Some(Ok(ListenMessage::Subscribe(sub))) => {
                            pause = Duration::from_millis(200);
                            serving.0.retain(|_, t| !t.is_finished());
                            let id = sub.id;
                            let task = if serving.0.len() >= MAX_SUBSCRIPTIONS {
                                let end = LogEnd::Failed(format!(
                                    "node {} is already serving {MAX_SUBSCRIPTIONS} log streams \
                                     to this manager",
                                    source.node_id
                                ));
                                let client = client.clone();
                                tokio::spawn(async move {
                                    let _ = send(&client, &peer, &sub, Vec::new(), Some(end)).await;
                                })
                            } else {
                                tokio::spawn(serve(client.clone(), peer, source.clone(), sub))
                            };
                            serving.0.insert(id, task);
                        }
                        Some(Ok(ListenMessage::Cancel { id })) => {
                            if let Some(t) = serving.0.remove(&id) {
                                t.abort();
                            }
                        }
                        Some(Err(e)) => {
                            tracing::debug!(manager = %peer.addr, error = %e, "log listen stream broke");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => {
                tracing::debug!(manager = %peer.addr, error = %e, "cannot open a log listen stream");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

async fn send(
    client: &Client,
    peer: &Peer,
    sub: &LogSubscription,
    records: Vec<WireRecord>,
    end: Option<LogEnd>,
) -> Result<(), swarm_net::rpc::RpcError> {
    let req = PublishRequest {
        subscription: sub.id,
        task_id: sub.task_id,
        records,
        end,
    };
    client
        .unary(peer, &PUBLISH, &req, PUBLISH_TIMEOUT)
        .await
        .map(|_| ())
}

/// Serves one subscription: its lines in batches, one publish at a time, then its end.
async fn serve(client: Arc<Client>, peer: Peer, source: LogSource, sub: LogSubscription) {
    let mut lines = match source.open(&sub).await {
        Ok(lines) => lines,
        Err(end) => {
            let _ = send(&client, &peer, &sub, Vec::new(), Some(end)).await;
            return;
        }
    };
    // The answer: the subscription is served (the manager waits for it before streaming).
    if send(&client, &peer, &sub, Vec::new(), None).await.is_err() {
        return;
    }
    loop {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let mut end = None;
        // Wait for a line, then take what is ready without waiting, up to the batch limits.
        let mut next = Some(lines.next().await);
        while let Some(item) = next.take() {
            match item {
                None => end = Some(LogEnd::Done),
                Some(Err(e)) => end = Some(LogEnd::Failed(e.to_string())),
                Some(Ok(r)) => {
                    let r = WireRecord::from_record(r);
                    bytes += r.line.len();
                    batch.push(r);
                    if batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES - MAX_LINE {
                        next = lines.next().now_or_never();
                    }
                }
            }
        }
        let ended = end.is_some();
        if let Err(e) = send(&client, &peer, &sub, batch, end).await {
            tracing::debug!(subscription = sub.id, error = %e, "log subscription abandoned");
            return;
        }
        if ended {
            return;
        }
    }
}
