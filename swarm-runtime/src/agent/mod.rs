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
//! - **Tasks outlive the agent when the runtime can keep them.** Before it first asks for
//!   assignments the agent calls [`Runtime::recover`] for its node: the runtime adopts what a
//!   previous run left (a `docker` container keeps running across a daemon restart). Adopted
//!   tasks in the first full assignment set carry on (status, logs and health checks resume);
//!   the others are stopped and removed.
//! - **Stopping is bounded.** [`Agent::stop`] gives its tasks their longest stop grace period
//!   plus the mesh drain, [`KILL_WAIT`] and [`STOP_MARGIN`]; what is still stopping then is
//!   logged by task id and abandoned, so a stuck runtime cannot hang the node's exit.
//! - **Bad input hurts one task.** A task whose secret was not sent, whose template is wrong or
//!   whose runtime rejects it is reported `rejected` with the reason; the rest carry on.

mod build;
mod reporter;

use std::collections::{HashMap, HashSet};
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
use crate::runtime::{Runtime, KILL_WAIT};

/// What [`Agent::stop`] allows beyond its tasks' stop grace period, the mesh drain and
/// [`KILL_WAIT`]: engine calls, removing containers, sending the last statuses.
pub const STOP_MARGIN: Duration = Duration::from_secs(3);

/// Longest [`Runtime::recover`] may take before the agent goes on without it.
const RECOVER_WAIT: Duration = Duration::from_secs(60);

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
    /// Stamps the task statuses the agent reports: the wall clock by default, a virtual clock in
    /// simulations.
    pub clock: swarm_core::SharedClock,
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
            clock: swarm_core::SharedClock::new(crate::controller::WallClock),
        }
    }
}

#[derive(Default)]
struct Shared {
    statuses: StatusMap,
    /// The tasks with a controller, from assignment until the controller has removed the task.
    held: std::sync::Mutex<HashSet<Id>>,
    connected: AtomicBool,
    secrets: AtomicUsize,
    controllers: AtomicUsize,
}

/// Which tasks an [`Agent`] controls now: a task is held from the moment its controller starts
/// (assignment, or adoption after a restart) until the controller has stopped and removed it. Cheap to clone; outlives the agent (then it holds nothing new).
#[derive(Clone)]
pub struct AgentTasks(Arc<Shared>);

impl AgentTasks {
    /// Whether the agent controls `task` (assigned to this node, or adopted from the runtime,
    /// and not yet removed).
    pub fn holds(&self, task: &Id) -> bool {
        self.0.held().contains(task)
    }
}

impl std::fmt::Debug for AgentTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTasks").finish_non_exhaustive()
    }
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<Id>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running agent. Dropping it aborts its loops; each task's controller, losing its agent, then
/// stops and removes its task in the background, unawaited and unbounded. Call [`Agent::stop`]
/// for a stop that waits, within its deadline. (To leave tasks running for the next start to
/// adopt, end the process instead.)
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
            recovered: None,
            removing: Vec::new(),
        };
        let main = tokio::spawn(async move {
            main.run().await;
            // The reporter ends once every controller (each holds a sender) has ended; it gets a
            // bounded moment to deliver the last statuses.
            let mut reporter = reporter;
            if tokio::time::timeout(STOP_MARGIN, &mut reporter)
                .await
                .is_err()
            {
                tracing::warn!("the last task statuses were not delivered within {STOP_MARGIN:?}");
                reporter.abort();
            }
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

    /// A cloneable view of the tasks this agent controls, for what serves them outside the
    /// agent (a node's log publisher serves only its own tasks' logs).
    pub fn tasks(&self) -> AgentTasks {
        AgentTasks(self.shared.clone())
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
    /// the runtime, its last status is sent if a session is open, and the loops end. Bounded:
    /// after the longest stop grace period of its tasks plus the mesh drain, [`KILL_WAIT`] and
    /// [`STOP_MARGIN`], the tasks still stopping are logged and left (see the module docs).
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
    /// The task's stop grace period (what its stop may take).
    grace: Duration,
}

/// A task being stopped and removed after its assignment went away.
struct Removal {
    task: Id,
    grace: Duration,
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
    /// Tasks `recover` found, until the first full assignment set says which to keep.
    recovered: Option<HashSet<Id>>,
    /// Tasks being stopped because they are no longer assigned.
    removing: Vec<Removal>,
}

impl AgentLoop {
    async fn run(mut self) {
        let mut generation = 0u64;
        let mut backoff = self.config.reconnect_min;
        let mut stop = self.stop_rx.clone();
        self.recover().await;
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

    /// Asks the runtime for what a previous run of the node left; see the module docs.
    async fn recover(&mut self) {
        let node = self.config.node_id;
        match tokio::time::timeout(RECOVER_WAIT, self.runtime.recover(&node)).await {
            Ok(Ok(found)) => {
                if !found.is_empty() {
                    tracing::info!(
                        tasks = found.len(),
                        "the runtime holds tasks from a previous run of this node"
                    );
                }
                self.recovered = Some(found.into_iter().map(|r| r.task).collect());
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the runtime could not recover this node's tasks")
            }
            Err(_) => tracing::warn!("the runtime's recover took over {RECOVER_WAIT:?}; skipped"),
        }
    }

    /// Stops and removes recovered tasks the first full assignment set does not keep.
    fn drop_unassigned_recovered(&mut self, set: &AssignmentSet) {
        let Some(recovered) = self.recovered.take() else {
            return;
        };
        let keep: HashSet<Id> = set
            .tasks
            .iter()
            .filter(|t| !t.status.state.is_terminal())
            .map(|t| t.id)
            .collect();
        for task in recovered.into_iter().filter(|t| !keep.contains(t)) {
            tracing::info!(task = %task, "removing a recovered task this node is no longer assigned");
            let runtime = self.runtime.clone();
            let join = tokio::spawn(async move {
                if let Err(e) = runtime.shutdown(&task).await {
                    tracing::warn!(task = %task, error = %e, "stopping a recovered task failed");
                }
                if let Err(e) = runtime.remove(&task).await {
                    tracing::warn!(task = %task, error = %e, "removing a recovered task failed");
                }
            });
            self.removing.push(Removal {
                task,
                // Unknown here; the runtime knows it, the stop deadline assumes the default.
                grace: Duration::from_secs(10),
                join,
            });
        }
    }

    fn apply(&mut self, set: AssignmentSet) {
        self.removing.retain(|r| !r.join.is_finished());
        if set.full {
            self.drop_unassigned_recovered(&set);
        }
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
            let mut gone: Vec<Id> = self
                .controllers
                .keys()
                .filter(|id| !keep.contains(id))
                .copied()
                .collect();
            // In id order: one order every run (a simulation replays it).
            gone.sort_unstable();
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
            self.config.clock.clone(),
        );
        let grace = task.spec.container.effective_stop_grace_period();
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
        self.shared.held().insert(task.id);
        self.controllers.insert(
            task.id,
            Handle {
                desired: desired_tx,
                removed: removed_tx,
                join,
                grace,
            },
        );
    }

    fn remove(&mut self, id: Id) {
        if let Some(h) = self.controllers.remove(&id) {
            let _ = h.removed.send(true);
            let shared = self.shared.clone();
            let join = tokio::spawn(async move {
                let _ = h.join.await;
                shared
                    .statuses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                shared.held().remove(&id);
            });
            self.removing.push(Removal {
                task: id,
                grace: h.grace,
                join,
            });
        }
    }

    /// Stops every task, and waits for those being removed, until the stop deadline (see
    /// [`Agent::stop`]); what is still stopping then is logged and abandoned.
    async fn stop_all(&mut self) {
        let handles: Vec<(Id, Handle)> = self.controllers.drain().collect();
        for (_, h) in &handles {
            let _ = h.removed.send(true);
        }
        let mut pending: Vec<Removal> = handles
            .into_iter()
            .map(|(task, h)| Removal {
                task,
                grace: h.grace,
                join: h.join,
            })
            .collect();
        pending.append(&mut self.removing);
        let grace = pending.iter().map(|r| r.grace).max().unwrap_or_default();
        let budget = grace + self.config.mesh_drain + KILL_WAIT + STOP_MARGIN;
        let deadline = tokio::time::Instant::now() + budget;
        let mut late = Vec::new();
        // The agent ends: it holds no task any more, whatever is still stopping.
        self.shared.held().clear();
        for mut r in pending {
            if tokio::time::timeout_at(deadline, &mut r.join)
                .await
                .is_err()
            {
                r.join.abort();
                late.push(r.task);
            }
        }
        if !late.is_empty() {
            tracing::warn!(
                tasks = ?late,
                "tasks still stopping {budget:?} after the agent was told to stop; leaving them"
            );
        }
        self.secrets.clear();
        self.configs.clear();
        self.shared.secrets.store(0, Ordering::SeqCst);
        self.shared.controllers.store(0, Ordering::SeqCst);
    }
}
