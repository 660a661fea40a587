//! [`CaServer`]: the CA methods every manager serves, and the deny set of removed nodes.
//!
//! Handlers read the replicated store and commit through the [`Proposer`]; on a follower the
//! proposal is forwarded to the leader by raft, so a follower serves joins, renewals and status
//! long-polls itself (nothing is proxied). Signing happens on the leader only ([`CaServer::spawn`]
//! runs [`super::run_signer`] while this manager leads).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand_core::CryptoRngCore;
use swarm_core::objects::node::{IssuanceState, Node, NodeCertificate, NodeSpec, NodeStatus};
use swarm_core::Entropy;
use swarm_core::{
    update, Annotations, Clock, Event, Id, Meta, ObjectKind, Proposer, SharedStore, Store,
    StoreError, Timestamp, WatchFilter,
};
use swarm_net::pki::{CertInfo, DenySet, NODE_ID_ATTEMPTS};
use swarm_net::rpc::{CallContext, Code, PeerInfo, PeerPolicy, Router, Status};
use swarm_net::JoinToken;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bootstrap::{current_tokens, node_role, trusted_roots};
use super::{
    is_final, IssueAnswer, IssueRequest, RootCaAnswer, StatusAnswer, StatusRequest, GET_ROOT_CA,
    ISSUE_NODE_CERTIFICATE, NODE_CERTIFICATE_STATUS,
};

/// How long the server holds a status call whose certificate is not final before answering the
/// current state (below the client's 5 s per-call timeout, so the answer arrives).
pub const STATUS_HOLD: Duration = Duration::from_millis(4500);

/// The CA methods of one manager. Cheap to share (`Arc`).
pub struct CaServer {
    store: SharedStore,
    proposer: Arc<dyn Proposer>,
    leader: watch::Receiver<bool>,
    clock: Arc<dyn Clock>,
    entropy: Entropy,
    deny: Arc<RwLock<DenySet>>,
}

impl std::fmt::Debug for CaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaServer")
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

fn status(code: Code, message: impl Into<String>) -> Status {
    Status::new(code, message)
}

fn commit_status(e: swarm_core::CommitError) -> Status {
    status(Code::Unavailable, e.to_string())
}

impl CaServer {
    /// A CA server reading `store`, committing through `proposer`; `leader` says whether this
    /// manager is the raft leader (for [`CaServer::spawn`]); `clock` is the time the deny set is
    /// checked against.
    pub fn new(
        store: SharedStore,
        proposer: Arc<dyn Proposer>,
        leader: watch::Receiver<bool>,
        clock: Arc<dyn Clock>,
        entropy: Entropy,
    ) -> Arc<CaServer> {
        Arc::new(CaServer {
            store,
            proposer,
            leader,
            clock,
            entropy,
            deny: Arc::new(RwLock::new(DenySet::new())),
        })
    }

    /// The deny set of removed nodes; pass it as the RPC server's `ServerOptions::policy` (it
    /// implements `PeerPolicy`) so a removed node's certificate is refused on every call.
    pub fn deny_set(&self) -> Arc<RwLock<DenySet>> {
        self.deny.clone()
    }

    /// The admission rule to pass as the RPC server's `ServerOptions::policy`: a removed node is
    /// refused on every call, by the deny set (removals seen while this manager runs) and by the
    /// store, so that the refusal survives a restart of every manager: a worker certificate
    /// whose node id has no node object in a store that holds the cluster is a removed node's
    /// (`docker node rm` deletes the object; a joining node's object is committed before its
    /// certificate is signed). Manager certificates are left to the deny set and to raft's
    /// membership check (a manager is demoted before it can be removed, and a manager that is
    /// still joining has an empty store).
    pub fn policy(self: &Arc<Self>) -> Arc<dyn PeerPolicy> {
        Arc::new(RemovedNodes {
            deny: self.deny.clone(),
            store: self.store.clone(),
        })
    }

    /// Adds the CA methods to `router`.
    pub fn routes(self: &Arc<Self>, router: Router) -> Router {
        let (a, b, c) = (self.clone(), self.clone(), self.clone());
        router
            .unary(&GET_ROOT_CA, move |_ctx, ()| {
                let me = a.clone();
                async move { me.root_ca() }
            })
            .unary(&ISSUE_NODE_CERTIFICATE, move |ctx, req| {
                let me = b.clone();
                async move { me.issue(ctx, req).await }
            })
            .unary(&NODE_CERTIFICATE_STATUS, move |_ctx, req| {
                let me = c.clone();
                async move { me.certificate_status(req).await }
            })
    }

    /// Runs this manager's CA background work until `stop` turns true: the deny set fed from node
    /// removals (on every manager), and [`super::run_signer`] while `leader` is true (started
    /// when this manager becomes leader, stopped when it loses leadership).
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let deny = tokio::spawn(me.clone().feed_deny_set(stop.clone()));
            me.lead_while_leader(stop).await;
            let _ = deny.await;
        })
    }

    async fn lead_while_leader(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut leader = self.leader.clone();
        loop {
            if *stop.borrow() {
                return;
            }
            if *leader.borrow_and_update() {
                let (tx, rx) = watch::channel(false);
                let clock = self.clock.clone();
                let signer = tokio::spawn(super::run_signer(
                    self.store.clone(),
                    self.proposer.clone(),
                    rx,
                    move || clock.now(),
                    self.entropy.fork(),
                ));
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = leader.changed() => {}
                }
                let _ = tx.send(true);
                let _ = signer.await;
            } else {
                tokio::select! {
                    r = stop.changed() => if r.is_err() { return },
                    r = leader.changed() => if r.is_err() { return },
                }
            }
        }
    }

    async fn feed_deny_set(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let watcher = self.store.watch(WatchFilter::kinds(&[ObjectKind::Node]));
            loop {
                let events = tokio::select! {
                    _ = stop.changed() => return,
                    e = watcher.recv_many() => e,
                };
                let Ok(events) = events else { break };
                let mut deny = self.deny.write().unwrap_or_else(|e| e.into_inner());
                for ev in events {
                    if let Event::Removed(swarm_core::Object::Node(node)) = ev {
                        deny.handle_removed(node.id, cert_not_after(&node));
                    }
                }
                deny.prune(self.clock.now());
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    fn root_ca(&self) -> Result<RootCaAnswer, Status> {
        let cluster = self
            .store
            .view(|s| s.cluster().cloned())
            .ok_or_else(|| status(Code::Unavailable, "the swarm has no cluster object yet"))?;
        Ok(RootCaAnswer {
            bundle_pem: cluster.root_ca.ca_cert_pem.clone(),
        })
    }

    async fn issue(&self, ctx: CallContext, req: IssueRequest) -> Result<IssueAnswer, Status> {
        if req.csr.is_empty() {
            return Err(status(Code::InvalidArgument, "the request carries no CSR"));
        }
        match ctx.peer {
            Some(peer) => self.renewal(peer.identity, req).await,
            None => self.admission(req, &mut self.entropy.clone()).await,
        }
    }

    async fn renewal(
        &self,
        who: swarm_net::NodeIdentity,
        req: IssueRequest,
    ) -> Result<IssueAnswer, Status> {
        if self
            .deny
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_denied(&who.node_id, self.clock.now())
        {
            return Err(status(
                Code::Unauthenticated,
                format!("node {} was removed from the swarm", who.node_id),
            ));
        }
        let id = who.node_id;
        let cluster_id = self.store.view(|s| s.cluster().map(|c| c.id));
        if cluster_id != Some(who.cluster_id) {
            return Err(status(
                Code::PermissionDenied,
                format!("the certificate of {id} is not of this swarm"),
            ));
        }
        update(&self.store, &*self.proposer, |tx| {
            let node = tx.get::<Node>(&id).ok_or(StoreError::NotFound {
                kind: ObjectKind::Node,
                id,
            })?;
            let mut node = (*node).clone();
            let role = node.spec.desired_role;
            let mut cert = node.certificate.take().unwrap_or_default();
            cert.role = role;
            cert.csr = req.csr;
            cert.state = IssuanceState::Renew;
            cert.error.clear();
            cert.cn = id.to_string();
            node.certificate = Some(cert);
            tx.update(node)
        })
        .await
        .map_err(|e| match e {
            swarm_core::CommitError::Rejected(StoreError::NotFound {
                kind: ObjectKind::Node,
                ..
            }) => status(
                Code::NotFound,
                format!("node {id} is not a member of this swarm (removed?)"),
            ),
            other => commit_status(other),
        })?;
        Ok(IssueAnswer { node_id: id })
    }

    async fn admission(
        &self,
        req: IssueRequest,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<IssueAnswer, Status> {
        let Some(text) = req.token.as_deref() else {
            return Err(status(
                Code::InvalidArgument,
                "a valid join token is necessary to join this cluster",
            ));
        };
        let presented =
            JoinToken::parse(text).map_err(|e| status(Code::InvalidArgument, e.to_string()))?;
        let cluster = self
            .store
            .view(|s| s.cluster().cloned())
            .ok_or_else(|| status(Code::Unavailable, "the swarm has no cluster object yet"))?;
        // The tokens are read from the store on every call: a rotated token fails at once.
        let (worker, manager) =
            current_tokens(&cluster.root_ca).map_err(|e| status(Code::Internal, e.to_string()))?;
        // Both compared, each in constant time.
        let is_worker = worker == presented;
        let is_manager = manager == presented;
        let role = match (is_worker, is_manager) {
            (true, _) => swarm_net::Role::Worker,
            (false, true) => swarm_net::Role::Manager,
            (false, false) => {
                return Err(status(
                    Code::InvalidArgument,
                    swarm_net::Error::InvalidToken.to_string(),
                ))
            }
        };
        let role = node_role(role);
        let candidates: Vec<Id> = (0..NODE_ID_ATTEMPTS).map(|_| Id::generate(rng)).collect();
        let csr = req.csr;
        let availability = req.availability;
        let id = update(&self.store, &*self.proposer, move |tx| {
            let last = candidates[candidates.len() - 1];
            let id = candidates
                .into_iter()
                .find(|id| tx.get::<Node>(id).is_none())
                .ok_or(StoreError::AlreadyExists {
                    kind: ObjectKind::Node,
                    id: last,
                })?;
            let node = Node {
                id,
                meta: Meta::default(),
                spec: NodeSpec {
                    annotations: Annotations::default(),
                    desired_role: role,
                    availability,
                },
                description: None,
                status: NodeStatus::default(),
                manager_status: None,
                role,
                certificate: Some(NodeCertificate {
                    role,
                    csr,
                    state: IssuanceState::Pending,
                    error: String::new(),
                    chain: Vec::new(),
                    cn: id.to_string(),
                }),
            };
            tx.create(node)?;
            Ok(id)
        })
        .await
        .map_err(commit_status)?;
        tracing::info!(node = %id, role = role.as_str(), "node admitted by join token");
        Ok(IssueAnswer { node_id: id })
    }

    async fn certificate_status(&self, req: StatusRequest) -> Result<StatusAnswer, Status> {
        let deadline = tokio::time::Instant::now() + STATUS_HOLD;
        let id = req.node_id;
        let (mut answer, watcher) = self
            .store
            .view_and_watch(waiter_filter(id), |s| answer_for(s, &id));
        loop {
            let current = answer?;
            if is_final(current.state) {
                return Ok(current);
            }
            match tokio::time::timeout_at(deadline, watcher.recv()).await {
                Err(_) | Ok(Err(_)) => return Ok(current),
                Ok(Ok(_)) => answer = self.store.view(|s| answer_for(s, &id)),
            }
        }
    }
}

/// [`CaServer::policy`].
struct RemovedNodes {
    deny: Arc<RwLock<DenySet>>,
    store: SharedStore,
}

impl PeerPolicy for RemovedNodes {
    fn check(&self, peer: &PeerInfo, now: Timestamp) -> Result<(), Status> {
        self.deny.check(peer, now)?;
        let who = &peer.identity;
        if who.role != swarm_net::Role::Worker {
            return Ok(());
        }
        let removed = self.store.view(|s| {
            s.cluster().is_some_and(|c| c.id == who.cluster_id)
                && s.get::<Node>(&who.node_id).is_none()
        });
        if removed {
            return Err(status(
                Code::Unauthenticated,
                format!("node {} was removed from the swarm", who.node_id),
            ));
        }
        Ok(())
    }
}

/// What wakes a status call waiting on node `id`: changes to that node and to the cluster object
/// (a root rotation changes the roots of the answer), never another node's. With thousands of
/// joiners waiting at once, an unfiltered watch would wake every waiter on every node's change.
fn waiter_filter(id: Id) -> WatchFilter {
    WatchFilter::kinds(&[ObjectKind::Node, ObjectKind::Cluster]).with_predicate(move |o| match o {
        swarm_core::Object::Node(node) => node.id == id,
        _ => true,
    })
}

fn answer_for(store: &Store, id: &Id) -> Result<StatusAnswer, Status> {
    let node = store
        .get::<Node>(id)
        .ok_or_else(|| status(Code::NotFound, format!("node {id} not found")))?;
    let cert = node.certificate.as_ref().ok_or_else(|| {
        status(
            Code::NotFound,
            format!("node {id} has no certificate record"),
        )
    })?;
    let cluster = store
        .cluster()
        .ok_or_else(|| status(Code::Unavailable, "the swarm has no cluster object yet"))?;
    let roots =
        trusted_roots(&cluster.root_ca).map_err(|e| status(Code::Internal, e.to_string()))?;
    Ok(StatusAnswer {
        state: cert.state,
        error: cert.error.clone(),
        chain: cert.chain.clone(),
        roots,
    })
}

/// When a removed node's last certificate expires (now-ish if it had none: nothing to deny long).
fn cert_not_after(node: &Node) -> Timestamp {
    node.certificate
        .as_ref()
        .and_then(|c| c.chain.first())
        .and_then(|leaf| CertInfo::parse(leaf).ok())
        .map(|i| i.not_after)
        .unwrap_or(Timestamp::ZERO)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
