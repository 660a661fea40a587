//! The dispatcher's status committer: turns the agents' [`StatusBatch`]es into task updates,
//! batched (every `interval`, or at once when `max` tasks are pending; SwarmKit: 100 ms / 10 000).
//!
//! Per task only the latest status is kept. An update is dropped when the task is gone, is not on
//! the reporting node, or would move the task's observed state backwards (the store would refuse
//! the whole batch). A proposal refused because a task changed in between (version conflict with
//! the orchestrator) is re-staged from the current store and retried.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::action::MAX_ACTIONS_PER_BATCH;
use swarm_core::dispatch::StatusBatch;
use swarm_core::{CommitError, Id, Proposer, SharedStore, StoreError, Task, TaskStatus};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Attempts per chunk when proposals conflict with concurrent writers.
const RETRIES: usize = 5;

/// Counters of the committer, for tests and metrics.
#[derive(Debug, Default)]
pub struct StatusStats {
    /// Batches received from agents.
    pub batches: AtomicU64,
    /// Task updates committed.
    pub committed: AtomicU64,
    /// Updates dropped because they would move a task backwards.
    pub regressions: AtomicU64,
    /// Updates dropped for another reason (unknown task, wrong node, commit failure).
    pub dropped: AtomicU64,
}

pub(crate) enum StatusMsg {
    Batch(Id, StatusBatch),
    Flush(oneshot::Sender<()>),
}

struct Pending {
    latest: HashMap<Id, (Id, TaskStatus)>,
    order: Vec<Id>,
}

pub(crate) struct Committer {
    pub(crate) store: SharedStore,
    pub(crate) proposer: Arc<dyn Proposer>,
    pub(crate) interval: Duration,
    pub(crate) max: usize,
    pub(crate) stats: Arc<StatusStats>,
    pub(crate) rx: mpsc::UnboundedReceiver<StatusMsg>,
}

impl Committer {
    /// Runs until every sender is gone, flushing what is pending at the end.
    pub(crate) async fn run(mut self) {
        let mut p = Pending {
            latest: HashMap::new(),
            order: Vec::new(),
        };
        let mut deadline: Option<Instant> = None;
        loop {
            let due = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(StatusMsg::Batch(node, batch)) => {
                        self.stats.batches.fetch_add(1, Ordering::Relaxed);
                        self.merge(&mut p, node, batch);
                        if p.order.len() >= self.max {
                            self.flush(&mut p).await;
                            deadline = None;
                        } else if deadline.is_none() && !p.order.is_empty() {
                            deadline = Some(Instant::now() + self.interval);
                        }
                    }
                    Some(StatusMsg::Flush(ack)) => {
                        self.flush(&mut p).await;
                        deadline = None;
                        let _ = ack.send(());
                    }
                    None => {
                        self.flush(&mut p).await;
                        return;
                    }
                },
                _ = due => {
                    self.flush(&mut p).await;
                    deadline = None;
                }
            }
        }
    }

    fn merge(&self, p: &mut Pending, node: Id, batch: StatusBatch) {
        for u in batch.updates {
            match p.latest.get_mut(&u.task_id) {
                Some((n, s)) => {
                    if !s.state.can_transition_to(u.status.state) {
                        self.stats.regressions.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    *n = node;
                    *s = u.status;
                }
                None => {
                    p.order.push(u.task_id);
                    p.latest.insert(u.task_id, (node, u.status));
                }
            }
        }
    }

    async fn flush(&self, p: &mut Pending) {
        let order = std::mem::take(&mut p.order);
        let mut latest = std::mem::take(&mut p.latest);
        let items: Vec<(Id, Id, TaskStatus)> = order
            .into_iter()
            .filter_map(|id| latest.remove(&id).map(|(n, s)| (id, n, s)))
            .collect();
        for chunk in items.chunks(MAX_ACTIONS_PER_BATCH) {
            self.commit_chunk(chunk).await;
        }
    }

    async fn commit_chunk(&self, chunk: &[(Id, Id, TaskStatus)]) {
        for attempt in 1..=RETRIES {
            let staged = self.store.prepare(|tx| {
                let (mut regressions, mut dropped) = (0u64, 0u64);
                for (id, node, status) in chunk {
                    let Some(t) = tx.get::<Task>(id) else {
                        dropped += 1;
                        continue;
                    };
                    if t.node_id != Some(*node) {
                        dropped += 1;
                        continue;
                    }
                    if !t.status.state.can_transition_to(status.state) {
                        regressions += 1;
                        continue;
                    }
                    if t.status == *status {
                        continue;
                    }
                    let mut nt = (*t).clone();
                    nt.status = status.clone();
                    tx.update(nt)?;
                }
                Ok::<_, StoreError>((regressions, dropped))
            });
            let ((regressions, dropped), actions) = match staged {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "staging task status updates failed");
                    self.stats
                        .dropped
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    return;
                }
            };
            let n = actions.len() as u64;
            if n == 0 {
                self.count(regressions, dropped, 0);
                return;
            }
            match self.proposer.propose(actions).await {
                Ok(_) => {
                    self.count(regressions, dropped, n);
                    return;
                }
                Err(CommitError::Rejected(e)) if attempt < RETRIES => {
                    tracing::debug!(error = %e, attempt, "task status batch conflicted; retrying");
                }
                Err(e) => {
                    tracing::warn!(error = %e, updates = n, "task status updates were not committed");
                    self.count(regressions, dropped + n, 0);
                    return;
                }
            }
        }
    }

    fn count(&self, regressions: u64, dropped: u64, committed: u64) {
        self.stats
            .regressions
            .fetch_add(regressions, Ordering::Relaxed);
        self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        self.stats.committed.fetch_add(committed, Ordering::Relaxed);
    }
}
