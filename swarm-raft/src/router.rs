//! An in-memory [`Transport`] for tests and benchmarks: every manager of a cluster in one process,
//! with faults you can aim (openraft's test router is the model).
//!
//! * [`Router::block`] drops every message from one node to another (one way); [`Router::isolate`]
//!   and [`Router::partition`] block both ways; [`Router::heal`] removes every fault.
//! * [`Router::block_appends`] drops only the appends (and heartbeats) from one node to another:
//!   the receiver stops applying new entries while every other message still goes through.
//! * [`Router::set_delay`] delays messages from one node to another.
//! * A node that is not registered (stopped, or locked) is unreachable.
//!
//! A blocked reply direction drops the reply after the request was handled, as a real network can.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::network::{RaftReply, RaftRpc, Transport, TransportError};
use crate::node::RaftNode;
use crate::types::{ManagerNode, NodeId};

#[derive(Default)]
struct Faults {
    blocked: HashSet<(NodeId, NodeId)>,
    appends_blocked: HashSet<(NodeId, NodeId)>,
    delay: HashMap<(NodeId, NodeId), Duration>,
}

#[derive(Default)]
struct Inner {
    nodes: Mutex<HashMap<NodeId, RaftNode>>,
    faults: Mutex<Faults>,
}

/// The in-memory network. Cloning shares it.
#[derive(Clone, Default)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

impl Router {
    /// An empty network.
    pub fn new() -> Router {
        Router::default()
    }

    /// The transport node `from` sends through.
    pub fn endpoint(&self, from: NodeId) -> Arc<dyn Transport> {
        Arc::new(Endpoint {
            from,
            router: self.clone(),
        })
    }

    /// Makes `node` reachable.
    pub fn register(&self, node: RaftNode) {
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.id(), node);
    }

    /// Makes `id` unreachable (stopped) and returns its handle.
    pub fn unregister(&self, id: NodeId) -> Option<RaftNode> {
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every message from `from` to `to`.
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.faults().blocked.insert((from, to));
    }

    /// Stops dropping messages from `from` to `to`.
    pub fn unblock(&self, from: NodeId, to: NodeId) {
        self.faults().blocked.remove(&(from, to));
    }

    /// Drops every append (entries and heartbeats) from `from` to `to`; other messages pass.
    pub fn block_appends(&self, from: NodeId, to: NodeId) {
        self.faults().appends_blocked.insert((from, to));
    }

    /// Stops dropping appends from `from` to `to`.
    pub fn unblock_appends(&self, from: NodeId, to: NodeId) {
        self.faults().appends_blocked.remove(&(from, to));
    }

    /// Cuts `id` off from `others`, both ways.
    pub fn isolate(&self, id: NodeId, others: &[NodeId]) {
        let mut f = self.faults();
        for &o in others.iter().filter(|o| **o != id) {
            f.blocked.insert((id, o));
            f.blocked.insert((o, id));
        }
    }

    /// Cuts every link between group `a` and group `b`, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        let mut f = self.faults();
        for &x in a {
            for &y in b {
                f.blocked.insert((x, y));
                f.blocked.insert((y, x));
            }
        }
    }

    /// Delays every message from `from` to `to` by `d` (zero removes the delay).
    pub fn set_delay(&self, from: NodeId, to: NodeId, d: Duration) {
        if d.is_zero() {
            self.faults().delay.remove(&(from, to));
        } else {
            self.faults().delay.insert((from, to), d);
        }
    }

    /// Removes every fault.
    pub fn heal(&self) {
        let mut f = self.faults();
        f.blocked.clear();
        f.appends_blocked.clear();
        f.delay.clear();
    }

    fn link(&self, from: NodeId, to: NodeId) -> Result<Option<Duration>, TransportError> {
        let f = self.faults();
        if f.blocked.contains(&(from, to)) {
            return Err(TransportError::Unreachable(
                to,
                format!("link {from} -> {to} is cut"),
            ));
        }
        Ok(f.delay.get(&(from, to)).copied())
    }
}

struct Endpoint {
    from: NodeId,
    router: Router,
}

#[async_trait]
impl Transport for Endpoint {
    async fn call(
        &self,
        target: NodeId,
        _node: &ManagerNode,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        if matches!(rpc, RaftRpc::AppendEntries(_))
            && self
                .router
                .faults()
                .appends_blocked
                .contains(&(self.from, target))
        {
            return Err(TransportError::Unreachable(
                target,
                format!("appends {} -> {target} are dropped", self.from),
            ));
        }
        if let Some(d) = self.router.link(self.from, target)? {
            tokio::time::sleep(d).await;
        }
        let node = self
            .router
            .inner
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target)
            .cloned();
        let node = node.ok_or_else(|| TransportError::Unreachable(target, "not running".into()))?;
        let reply = node.handle_rpc(rpc).await;
        if let Some(d) = self.router.link(target, self.from)? {
            tokio::time::sleep(d).await;
        }
        Ok(reply)
    }
}
