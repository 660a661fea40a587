//! The node's side of [`crate::net::logs`]: listen streams to every manager, serving the
//! subscriptions they send from this node's runtime, for its own tasks only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use swarm_core::Id;
use swarm_net::rpc::{Client, Peer};
use swarm_net::Role;
use swarm_runtime::{LogOptions, LogRecords, Runtime, RuntimeError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    ListenMessage, ListenRequest, LogEnd, LogSubscription, PublishRequest, WireRecord, LISTEN,
    MANAGERS_EVERY, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_LINE, MAX_SUBSCRIPTIONS, PUBLISH,
    PUBLISH_TIMEOUT, RETRY_MAX,
};
use crate::net::dispatch::WeightedManager;

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
                // Ordered: the listen loops start in one order every run (a simulation replays
                // it).
                let mut want: BTreeMap<SocketAddr, Peer> = BTreeMap::new();
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
                    listening.entry(addr).or_insert_with(|| {
                        let task = tokio::spawn(listen_loop(client.clone(), peer, source.clone()));
                        (peer, task)
                    });
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

/// The first pause before reopening a listen stream.
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Keeps a listen stream open on `peer` (reopened after a pause when it breaks) and serves what it
/// asks.
async fn listen_loop(client: Arc<Client>, peer: Peer, source: LogSource) {
    let mut pause = FIRST_RETRY;
    loop {
        match client
            .server_streaming(&peer, &LISTEN, &ListenRequest {}, None)
            .await
        {
            Ok(mut stream) => {
                let opened = tokio::time::Instant::now();
                let mut serving = Serving::default();
                loop {
                    match stream.next().await {
                        Some(Ok(ListenMessage::Subscribe(sub))) => {
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
                // A stream that lived a while broke by accident (a manager restarting): come
                // back quickly. One refused at once keeps backing off.
                if opened.elapsed() >= RETRY_MAX {
                    pause = FIRST_RETRY;
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
