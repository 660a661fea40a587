//! The dispatcher a manager's own agent uses: the in-process [`StoreDispatcher`] while this
//! manager leads (no network hop, and what a single-host swarm always uses), the networked
//! dispatcher of the leader otherwise (as any worker), so that every node's session lives on
//! the leader, which alone tracks liveness (a node whose session lives elsewhere would be marked
//! unknown, then down, by a new leader).
//!
//! A local session ends (its `next_assignments` answers `Unreachable`) as soon as this manager
//! stops leading; the agent then opens its next session, which goes to the new leader.

use std::sync::Arc;

use async_trait::async_trait;
use swarm_core::dispatch::{AssignmentSet, NodeRegistration, StatusBatch};
use swarm_raft::RaftNode;
use swarm_runtime::{DispatchError, Dispatcher, Session};

use crate::dispatcher::StoreDispatcher;
use crate::net::dispatch::NetDispatcher;

/// See the module docs.
pub struct AgentDispatcher {
    local: StoreDispatcher,
    remote: Option<NetDispatcher>,
    raft: RaftNode,
}

impl std::fmt::Debug for AgentDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentDispatcher")
            .field("remote", &self.remote.is_some())
            .finish_non_exhaustive()
    }
}

impl AgentDispatcher {
    /// Local sessions from `local` while `raft` leads; `remote` otherwise (without one, always
    /// local).
    pub fn new(local: StoreDispatcher, remote: Option<NetDispatcher>, raft: RaftNode) -> Self {
        AgentDispatcher {
            local,
            remote,
            raft,
        }
    }
}

#[async_trait]
impl Dispatcher for AgentDispatcher {
    async fn open_session(
        &self,
        registration: NodeRegistration,
    ) -> Result<Arc<dyn Session>, DispatchError> {
        match &self.remote {
            Some(remote) if !self.raft.status().leads() => remote.open_session(registration).await,
            Some(_) => {
                let inner = self.local.open_session(registration).await?;
                Ok(Arc::new(LeaderSession {
                    inner,
                    raft: self.raft.clone(),
                }))
            }
            None => self.local.open_session(registration).await,
        }
    }
}

/// A local session that ends when this manager stops leading.
struct LeaderSession {
    inner: Arc<dyn Session>,
    raft: RaftNode,
}

#[async_trait]
impl Session for LeaderSession {
    async fn next_assignments(&self) -> Result<AssignmentSet, DispatchError> {
        let mut status = self.raft.watch_status();
        let lost = async move {
            loop {
                if !status.current().leads() {
                    return;
                }
                if !status.changed().await {
                    return;
                }
            }
        };
        tokio::select! {
            r = self.inner.next_assignments() => r,
            () = lost => Err(DispatchError::Unreachable {
                reason: "this manager no longer leads; the next session goes to the leader".into(),
            }),
        }
    }

    async fn report(&self, batch: StatusBatch) -> Result<(), DispatchError> {
        self.inner.report(batch).await
    }
}
