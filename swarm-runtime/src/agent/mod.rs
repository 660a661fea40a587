//! The worker [`Agent`]: keeps a session with the dispatcher, reconciles one controller per
//! assigned task, and reports status changes in batches.
//!
//! Behaviour an operator relies on:
//! - **Tasks outlive the connection.** When the dispatcher is unreachable, tasks keep running and
//!   their status changes are kept; the agent reconnects with backoff, gets a full assignment set,
//!   stops and removes tasks absent from it, starts new ones, and resends the latest status of
//!   every task it still runs.
//! - **Secrets stay in memory.** Secrets and configs are held only in this process (zeroized when
//!   dropped) and given to the runtime, which writes them to tmpfs and deletes them once the task
//!   ends; the agent forgets one when the dispatcher withdraws it.
//! - **Bad input hurts one task.** A task whose secret was not sent, whose template is wrong or
//!   whose runtime rejects it is reported `rejected` with the reason; the rest carry on.

mod build;
mod reporter;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::dispatch::{AssignmentSet, NodeRegistration};
use swarm_core::objects::node::NodeDescription;
use swarm_core::{Config, Id, Secret, Task, TaskStatus};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::reporter::{Reporter, SessionSlot};
use crate::controller::{flag_set, Controller, ReportMsg, StatusMap, StatusTx};
use crate::dispatcher::{Dispatcher, Session};
use crate::runtime::Runtime;

pub use self::build::template_context;

/// How an [`Agent`] behaves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's id.
    pub node_id: Id,
    /// What the node reports when it registers (hostname and platform feed templates).
    pub description: NodeDescription,
    /// Longest a status change waits before it is sent (SwarmKit: 100 ms).
    pub batch_interval: Duration,
    /// Pending task statuses that trigger an immediate send (SwarmKit: 10 000).
    pub batch_max: usize,
    /// First reconnect delay; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// How long a task that is a routing-mesh backend (its service publishes ingress ports) keeps
    /// running after it is told to stop, before its stop signal: the mesh has stopped sending it
    /// new connections by then, and the ones in flight get this long to finish. Docker waits
    /// 2 s for its gossip to converge; on one node the mesh sees the change at once. Default
    /// 500 ms; zero stops at once.
    pub mesh_drain: Duration,
}

impl AgentConfig {
    /// Defaults: 100 ms / 10 000 batches, reconnect after 100 ms backing off to 5 s.
    pub fn new(node_id: Id, description: NodeDescription) -> AgentConfig {
        AgentConfig {
            node_id,
            description,
            batch_interval: Duration::from_millis(100),
            batch_max: 10_000,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            mesh_drain: Duration::from_millis(500),
        }
    }
}

#[derive(Default)]
struct Shared {
    statuses: StatusMap,
    connected: AtomicBool,
    secrets: AtomicUsize,
    controllers: AtomicUsize,
}

/// A running agent. Dropping it stops its loops but leaves tasks running; call [`Agent::stop`] to
/// shut its tasks down too.
pub struct Agent {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    main: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("connected", &self.is_connected())
            .field("tasks", &self.shared.controllers.load(Ordering::Relaxed))
            .finish()
    }
}

impl Agent {
    /// Starts an agent on the current tokio runtime.
    pub fn spawn(
        config: AgentConfig,
        runtime: Arc<dyn Runtime>,
        dispatcher: Arc<dyn Dispatcher>,
    ) -> Agent {
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let (session_tx, session_rx) = watch::channel(None);
        let reporter = Reporter {
            node_id: config.node_id,
            interval: config.batch_interval,
            max: config.batch_max.max(1),
            rx: report_rx,
            session: session_rx,
        };
        let reporter = tokio::spawn(reporter.run());
        let main = AgentLoop {
            config,
            runtime,
            dispatcher,
            shared: shared.clone(),
            controllers: HashMap::new(),
            secrets: HashMap::new(),
            configs: HashMap::new(),
            report_tx,
            session_tx,
            stop_rx,
        };
        let main = tokio::spawn(async move {
            main.run().await;
            // The reporter ends once every controller (each holds a sender) has ended.
            let _ = reporter.await;
        });
        Agent {
            shared,
            stop_tx,
            main: Some(main),
        }
    }

    /// The latest status the agent produced for `task` (reported or still pending).
    pub fn task_status(&self, task: Id) -> Option<TaskStatus> {
        self.shared
            .statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&task)
            .cloned()
    }

    /// Whether a dispatcher session is open.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// How many secrets the agent holds in memory.
    pub fn secrets_held(&self) -> usize {
        self.shared.secrets.load(Ordering::SeqCst)
    }

    /// How many tasks the agent is controlling.
    pub fn task_count(&self) -> usize {
        self.shared.controllers.load(Ordering::SeqCst)
    }

    /// Stops the agent: every task is shut down (stop signal, grace period, kill) and removed from
    /// the runtime, its last status is sent if a session is open, and the loops end.
    pub async fn stop(mut self) {
        let _ = self.stop_tx.send(true);
        if let Some(main) = self.main.take() {
            let _ = main.await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(main) = self.main.take() {
            main.abort();
        }
    }
}

struct Handle {
    desired: watch::Sender<Arc<Task>>,
    removed: watch::Sender<bool>,
    join: JoinHandle<()>,
}

struct AgentLoop {
    config: AgentConfig,
    runtime: Arc<dyn Runtime>,
    dispatcher: Arc<dyn Dispatcher>,
    shared: Arc<Shared>,
    controllers: HashMap<Id, Handle>,
    secrets: HashMap<Id, Secret>,
    configs: HashMap<Id, Config>,
    report_tx: mpsc::UnboundedSender<ReportMsg>,
    session_tx: watch::Sender<SessionSlot>,
    stop_rx: watch::Receiver<bool>,
}

impl AgentLoop {
    async fn run(mut self) {
        let mut generation = 0u64;
        let mut backoff = self.config.reconnect_min;
        let mut stop = self.stop_rx.clone();
        loop {
            let registration = NodeRegistration {
                node_id: self.config.node_id,
                description: self.config.description.clone(),
            };
            let opened = tokio::select! {
                r = self.dispatcher.open_session(registration) => r,
                _ = flag_set(&mut stop) => break,
            };
            match opened {
                Ok(session) => {
                    backoff = self.config.reconnect_min;
                    generation += 1;
                    self.shared.connected.store(true, Ordering::SeqCst);
                    self.session_tx
                        .send_replace(Some((generation, session.clone())));
                    if self.serve(session).await {
                        // Stop tasks while the session is still open so their last statuses go out.
                        self.stop_all().await;
                        self.shared.connected.store(false, Ordering::SeqCst);
                        return;
                    }
                    self.shared.connected.store(false, Ordering::SeqCst);
                    self.session_tx.send_replace(None);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dispatcher session failed to open");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = flag_set(&mut stop) => break,
                    }
                    backoff = (backoff * 2).min(self.config.reconnect_max);
                }
            }
        }
        self.stop_all().await;
    }

    /// Serves one session; returns true when the agent was told to stop.
    async fn serve(&mut self, session: Arc<dyn Session>) -> bool {
        let mut stop = self.stop_rx.clone();
        let mut last_seq = 0u64;
        loop {
            let next = tokio::select! {
                n = session.next_assignments() => n,
                _ = flag_set(&mut stop) => return true,
            };
            match next {
                Ok(set) => {
                    if !set.full && set.sequence != last_seq + 1 {
                        tracing::warn!(
                            expected = last_seq + 1,
                            got = set.sequence,
                            "assignment sequence gap; reopening the session"
                        );
                        return false;
                    }
                    last_seq = set.sequence;
                    self.apply(set);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dispatcher session ended");
                    return false;
                }
            }
        }
    }

    fn apply(&mut self, set: AssignmentSet) {
        if set.full {
            self.secrets.clear();
            self.configs.clear();
        }
        for s in set.secrets {
            self.secrets.insert(s.id, s);
        }
        for c in set.configs {
            self.configs.insert(c.id, c);
        }
        for id in &set.removed_secrets {
            self.secrets.remove(id);
        }
        for id in &set.removed_configs {
            self.configs.remove(id);
        }
        if set.full {
            let keep: std::collections::HashSet<Id> = set.tasks.iter().map(|t| t.id).collect();
            let gone: Vec<Id> = self
                .controllers
                .keys()
                .filter(|id| !keep.contains(id))
                .copied()
                .collect();
            for id in gone {
                self.remove(id);
            }
        }
        for id in &set.removed_tasks {
            self.remove(*id);
        }
        for t in set.tasks {
            self.upsert(t);
        }
        self.shared
            .secrets
            .store(self.secrets.len(), Ordering::SeqCst);
        self.shared
            .controllers
            .store(self.controllers.len(), Ordering::SeqCst);
    }

    fn upsert(&mut self, task: Arc<Task>) {
        if let Some(h) = self.controllers.get(&task.id) {
            h.desired.send_replace(task);
            return;
        }
        if task.status.state.is_terminal() {
            return;
        }
        let config = build::task_config(
            &task,
            self.config.node_id,
            &self.config.description,
            &self.secrets,
            &self.configs,
        );
        let status = StatusTx::new(
            task.id,
            task.status.clone(),
            self.report_tx.clone(),
            self.shared.statuses.clone(),
        );
        let (desired_tx, desired_rx) = watch::channel(task.clone());
        let (removed_tx, removed_rx) = watch::channel(false);
        let controller = Controller {
            task: task.clone(),
            config,
            runtime: self.runtime.clone(),
            status,
            desired: desired_rx,
            removed: removed_rx,
            drain: self.config.mesh_drain,
        };
        let join = tokio::spawn(controller.run());
        self.controllers.insert(
            task.id,
            Handle {
                desired: desired_tx,
                removed: removed_tx,
                join,
            },
        );
    }

    fn remove(&mut self, id: Id) {
        if let Some(h) = self.controllers.remove(&id) {
            let _ = h.removed.send(true);
            let statuses = self.shared.statuses.clone();
            tokio::spawn(async move {
                let _ = h.join.await;
                statuses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        }
    }

    async fn stop_all(&mut self) {
        let handles: Vec<Handle> = self.controllers.drain().map(|(_, h)| h).collect();
        for h in &handles {
            let _ = h.removed.send(true);
        }
        for h in handles {
            let _ = h.join.await;
        }
        self.secrets.clear();
        self.configs.clear();
        self.shared.secrets.store(0, Ordering::SeqCst);
        self.shared.controllers.store(0, Ordering::SeqCst);
    }
}
