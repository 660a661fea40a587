//! The agent's status reporter: coalesces controllers' status changes per task and delivers them in
//! batches (every `batch_interval`, or at once when `batch_max` tasks are pending) over the current
//! session. Undelivered statuses wait for the next session, which also gets the latest status of
//! every task again (resynchronisation).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::dispatch::{StatusBatch, TaskStatusUpdate};
use swarm_core::{Id, TaskStatus};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::controller::ReportMsg;
use crate::dispatcher::Session;

/// The session the reporter delivers on (`None` while disconnected), with a counter that changes
/// on every new session.
pub(crate) type SessionSlot = Option<(u64, Arc<dyn Session>)>;

pub(crate) struct Reporter {
    pub(crate) node_id: Id,
    pub(crate) interval: Duration,
    pub(crate) max: usize,
    pub(crate) rx: mpsc::UnboundedReceiver<ReportMsg>,
    pub(crate) session: watch::Receiver<SessionSlot>,
}

#[derive(Default)]
struct Pending {
    latest: HashMap<Id, TaskStatus>,
    order: Vec<Id>,
    dirty: HashSet<Id>,
    forget: HashSet<Id>,
}

impl Pending {
    fn mark(&mut self, id: Id) {
        if self.dirty.insert(id) {
            self.order.push(id);
        }
    }

    fn batch(&self, node_id: Id) -> StatusBatch {
        StatusBatch {
            node_id: Some(node_id),
            updates: self
                .order
                .iter()
                .filter_map(|id| {
                    self.latest.get(id).map(|s| TaskStatusUpdate {
                        task_id: *id,
                        status: s.clone(),
                    })
                })
                .collect(),
        }
    }

    fn delivered(&mut self) {
        self.order.clear();
        self.dirty.clear();
        for id in self.forget.drain() {
            self.latest.remove(&id);
        }
    }
}

impl Reporter {
    pub(crate) async fn run(mut self) {
        let mut p = Pending::default();
        let mut deadline: Option<Instant> = None;
        let mut session_gen = None;
        // Once the agent loop is gone the last session stays readable; keep delivering on it
        // until every controller has ended.
        let mut session_open = true;
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else {
                        // Every controller has ended: deliver what is left, then stop.
                        self.flush(&mut p).await;
                        return;
                    };
                    match msg {
                        ReportMsg::Status(id, status) => {
                            p.latest.insert(id, status);
                            p.forget.remove(&id);
                            p.mark(id);
                        }
                        ReportMsg::Forget(id) => {
                            if p.dirty.contains(&id) {
                                p.forget.insert(id);
                            } else {
                                p.latest.remove(&id);
                            }
                        }
                    }
                    if p.order.len() >= self.max {
                        deadline = Some(Instant::now());
                    } else if deadline.is_none() && !p.order.is_empty() {
                        deadline = Some(Instant::now() + self.interval);
                    }
                }
                _ = sleep => {
                    deadline = None;
                    if !self.flush(&mut p).await {
                        // Retry when a session comes (the select below) or after an interval.
                        deadline = Some(Instant::now() + self.interval);
                    }
                }
                changed = self.session.changed(), if session_open => {
                    if changed.is_err() {
                        session_open = false;
                        continue;
                    }
                    let gen = self.session.borrow().as_ref().map(|(g, _)| *g);
                    if gen.is_some() && gen != session_gen {
                        session_gen = gen;
                        // New session: resend the latest status of every task.
                        // In id order: one order every run (a simulation replays it).
                        let mut ids: Vec<Id> = p.latest.keys().copied().collect();
                        ids.sort_unstable();
                        for id in ids {
                            p.mark(id);
                        }
                        if !p.order.is_empty() {
                            deadline = Some(Instant::now());
                        }
                    }
                }
            }
        }
    }

    async fn flush(&mut self, p: &mut Pending) -> bool {
        if p.order.is_empty() {
            return true;
        }
        let session = self.session.borrow().as_ref().map(|(_, s)| s.clone());
        let Some(session) = session else {
            return false;
        };
        for chunk in p.batch(self.node_id).updates.chunks(self.max.max(1)) {
            let batch = StatusBatch {
                node_id: Some(self.node_id),
                updates: chunk.to_vec(),
            };
            if let Err(e) = session.report(batch).await {
                tracing::debug!(error = %e, "status report failed; kept for the next session");
                return false;
            }
        }
        p.delivered();
        true
    }
}
