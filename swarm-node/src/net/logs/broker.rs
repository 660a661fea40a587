//! The manager's side of [`crate::net::logs`]: the nodes listening here, the open
//! subscriptions, and the routes serving them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use swarm_core::Id;
use swarm_net::rpc::{CallContext, Code, ItemSender, Router, Status};
use swarm_runtime::{LogOptions, LogRecord, LogRecords, RuntimeError};
use tokio::sync::{mpsc, watch};

use super::{
    ListenMessage, ListenRequest, LogEnd, LogSubscription, PublishRequest, PublishResponse,
    WireRecord, ANSWER_WAIT, LISTEN, LISTENER_BUFFER, LISTENER_WAIT, PUBLISH, SUBSCRIPTION_BUFFER,
};

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
