//! The signer, run on the leader only: signs the CSRs of nodes whose certificate is pending or
//! renewing (and retries failed ones every [`SIGNING_RETRY`]), reissues when a node's desired role
//! differs from its certificate's (promote, demote), starts a root rotation when
//! `spec.ca.force_rotate` changes, and drives a rotation to its end: nodes whose certificate is not
//! from the new root are marked `Rotate` [`ROTATE_BATCH`] at a time every [`ROTATE_INTERVAL`];
//! when every node holds a certificate from the new root, the new root replaces the old and both
//! join tokens are regenerated.
//!
//! swarm-net's `RootRotation` keeps its batch clock in memory and cannot be rebuilt from the store
//! after a leader change, so the batching here reads the rotation from the cluster object and keeps
//! only the next batch time locally (a new leader starts a batch at once).
//!
//! A pass looks only at the nodes that changed since the last one (fed to [`SignerState::note`]
//! from the signer's store watch) and at failed signings whose retry is due; every node is read
//! only on the first pass, after the watch lagged or the store was reset from a snapshot, and
//! while a root rotation is in progress (whose convergence is a property of every node). At
//! 10,000 nodes a full-cluster join made the former clone-and-scan-every-node pass O(nodes^2),
//! 5-10 % of the leader's CPU (docs/BENCHMARKS.md, session `scale2`; session 11 for after).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand_core::CryptoRngCore;
use swarm_core::objects::node::{IssuanceState, Node};
use swarm_core::{
    update, Cluster, Event, Id, Object, ObjectKind, Proposer, SharedStore, Timestamp, WatchFilter,
};
use swarm_net::pki::{
    CertInfo, MIN_NODE_CERT_VALIDITY, ROTATE_BATCH, ROTATE_INTERVAL, SIGNING_RETRY,
};
use swarm_net::NodeIdentity;
use tokio::sync::watch;

use super::bootstrap::{
    finish_root_rotation, net_role, signer_key_id, signing_ca, start_root_rotation, CaError,
};

/// How often the signer looks again without a store change (failed retries, rotation batches).
pub const SIGNER_TICK: Duration = Duration::from_millis(500);
/// Most certificates signed in one pass (one proposal).
pub const SIGN_BATCH: usize = 50;

/// The signer's memory between passes.
#[derive(Debug, Default)]
pub struct SignerState {
    failed_at: HashMap<Id, Timestamp>,
    next_batch: Option<Timestamp>,
    /// The nodes the next pass looks at; `None`: every node (the first pass, or after
    /// [`SignerState::rescan`]).
    dirty: Option<BTreeSet<Id>>,
}

impl SignerState {
    /// Notes the store events seen since the last pass: the nodes they create or change are
    /// looked at on the next pass, removed nodes are forgotten, and a reset (a snapshot
    /// installed) makes the next pass read every node.
    pub fn note(&mut self, events: &[Event]) {
        for ev in events {
            match ev {
                Event::Created(Object::Node(n))
                | Event::Updated {
                    new: Object::Node(n),
                    ..
                } => {
                    if let Some(dirty) = &mut self.dirty {
                        dirty.insert(n.id);
                    }
                }
                Event::Removed(Object::Node(n)) => {
                    self.failed_at.remove(&n.id);
                    if let Some(dirty) = &mut self.dirty {
                        dirty.remove(&n.id);
                    }
                }
                Event::Reset { .. } => self.rescan(),
                _ => {}
            }
        }
    }

    /// Makes the next pass read every node (the watch lagged, or nothing is known yet).
    pub fn rescan(&mut self) {
        self.dirty = None;
    }

    /// The nodes a pass at `now` looks at: the noted ones and the failed ones due for a retry
    /// (every node id in `store` after a rescan). Leaves the noted set empty.
    fn take_candidates(&mut self, store: &SharedStore, now: Timestamp) -> BTreeSet<Id> {
        let mut ids = match self.dirty.replace(BTreeSet::new()) {
            Some(dirty) => dirty,
            None => {
                let ids: BTreeSet<Id> = store.view(|s| s.iter::<Node>().map(|n| n.id).collect());
                self.failed_at.retain(|id, _| ids.contains(id));
                ids
            }
        };
        ids.extend(
            self.failed_at
                .iter()
                .filter(|(_, at)| now >= at.plus(SIGNING_RETRY))
                .map(|(id, _)| *id),
        );
        ids
    }
}

/// Runs the signer until `stop` turns true (or its sender is dropped). Run it on the leader only.
/// `now` is the clock certificates are issued at; `rng` draws serial numbers and new tokens.
pub async fn run_signer<R: CryptoRngCore + Send>(
    store: SharedStore,
    proposer: Arc<dyn Proposer>,
    mut stop: watch::Receiver<bool>,
    now: impl Fn() -> Timestamp + Send,
    mut rng: R,
) {
    let mut state = SignerState::default();
    let filter = WatchFilter::kinds(&[ObjectKind::Node, ObjectKind::Cluster]);
    let mut watcher = store.watch(filter.clone());
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(e) = sign_pass(&store, &*proposer, now(), &mut rng, &mut state).await {
            tracing::warn!(error = %e, "CA signer pass failed; retrying");
        }
        tokio::select! {
            r = stop.changed() => if r.is_err() { return },
            ev = watcher.recv_many() => match ev {
                Ok(events) => state.note(&events),
                Err(_) => {
                    watcher = store.watch(filter.clone());
                    state.rescan();
                }
            },
            _ = tokio::time::sleep(SIGNER_TICK) => {}
        }
    }
}

/// One pass of the signer at `now` (public for tests and simulations, which drive it step by step).
pub async fn sign_pass(
    store: &SharedStore,
    proposer: &dyn Proposer,
    now: Timestamp,
    rng: &mut (impl CryptoRngCore + ?Sized),
    state: &mut SignerState,
) -> Result<(), CaError> {
    let Some(cluster) = store.view(|s| s.cluster().cloned()) else {
        return Ok(());
    };
    if cluster.spec.ca.force_rotate != cluster.root_ca.last_forced_rotation {
        let mut next = (*cluster).clone();
        start_root_rotation(&mut next.root_ca, now, rng)?;
        next.root_ca.last_forced_rotation = cluster.spec.ca.force_rotate;
        propose_cluster(store, proposer, next).await?;
        state.next_batch = None;
        tracing::info!("root CA rotation started");
        return Ok(());
    }
    let ca = signing_ca(&cluster.root_ca)?;
    let validity = cluster.spec.ca.node_cert_expiry.max(MIN_NODE_CERT_VALIDITY);
    let candidates = state.take_candidates(store, now);

    // Sign.
    let mut signed = Vec::new();
    for id in candidates {
        let Some(node) = store.view(|s| s.get::<Node>(&id).cloned()) else {
            state.failed_at.remove(&id);
            continue;
        };
        let Some(cert) = &node.certificate else {
            continue;
        };
        let due = match cert.state {
            IssuanceState::Pending | IssuanceState::Renew => true,
            IssuanceState::Failed => state
                .failed_at
                .get(&node.id)
                .is_none_or(|at| now >= at.plus(SIGNING_RETRY)),
            IssuanceState::Issued | IssuanceState::Rotate => {
                cert.role != node.spec.desired_role && !cert.csr.is_empty()
            }
        };
        if !due {
            continue;
        }
        if signed.len() >= SIGN_BATCH {
            // Still due: the next pass (at once, since this one commits) takes it.
            if let Some(dirty) = &mut state.dirty {
                dirty.insert(id);
            }
            continue;
        }
        let role = node.spec.desired_role;
        let identity = NodeIdentity {
            node_id: node.id,
            role: net_role(role),
            cluster_id: cluster.id,
        };
        let mut next = (*node).clone();
        let mut rec = cert.clone();
        match ca.issue(&cert.csr, &identity, validity, now, rng) {
            Ok(issued) => {
                state.failed_at.remove(&node.id);
                rec.chain = issued.chain;
                rec.role = role;
                rec.state = IssuanceState::Issued;
                rec.error.clear();
            }
            Err(e) => {
                tracing::warn!(node = %node.id, error = %e, "signing a node certificate failed");
                state.failed_at.insert(node.id, now);
                rec.state = IssuanceState::Failed;
                rec.error = e.to_string();
            }
        }
        if Some(&rec) != node.certificate.as_ref() {
            next.certificate = Some(rec);
            signed.push((cert.csr.clone(), next));
        }
    }
    if !signed.is_empty() {
        update(store, proposer, |tx| {
            for (csr, node) in signed {
                // Skip a node removed, or whose CSR changed, since it was read.
                let Some(cur) = tx.get::<Node>(&node.id) else {
                    continue;
                };
                if cur.certificate.as_ref().map(|c| &c.csr) != Some(&csr) {
                    continue;
                }
                tx.update(node)?;
            }
            Ok(())
        })
        .await?;
        // The store changed: the rotation step reads it fresh on the next pass.
        return Ok(());
    }

    // Rotation: judged over every node, but only while one is in progress.
    if cluster.root_ca.root_rotation.is_some() {
        let nodes: Vec<Arc<Node>> = store.view(|s| s.iter::<Node>().cloned().collect());
        rotation_step(store, proposer, &cluster, &nodes, now, rng, state).await?;
    }
    Ok(())
}

async fn rotation_step(
    store: &SharedStore,
    proposer: &dyn Proposer,
    cluster: &Cluster,
    nodes: &[Arc<Node>],
    now: Timestamp,
    rng: &mut (impl CryptoRngCore + ?Sized),
    state: &mut SignerState,
) -> Result<(), CaError> {
    let new_key_id = signer_key_id(&cluster.root_ca)?;
    let from_new = |n: &Node| {
        n.certificate
            .as_ref()
            .and_then(|c| c.chain.first())
            .and_then(|leaf| CertInfo::parse(leaf).ok())
            .and_then(|i| i.authority_key_id)
            .is_some_and(|k| Some(k) == new_key_id)
    };
    let with_cert: Vec<&Arc<Node>> = nodes.iter().filter(|n| n.certificate.is_some()).collect();
    let converged = with_cert.iter().all(|n| {
        n.certificate.as_ref().map(|c| c.state) == Some(IssuanceState::Issued) && from_new(n)
    });
    if converged {
        let mut next = cluster.clone();
        finish_root_rotation(&mut next.root_ca, rng)?;
        propose_cluster(store, proposer, next).await?;
        state.next_batch = None;
        tracing::info!("root CA rotation finished; join tokens regenerated");
        return Ok(());
    }
    if state.next_batch.is_some_and(|t| now < t) {
        return Ok(());
    }
    state.next_batch = Some(now.plus(ROTATE_INTERVAL));
    let in_flight = with_cert
        .iter()
        .filter(|n| n.certificate.as_ref().map(|c| c.state) == Some(IssuanceState::Rotate))
        .count();
    let room = ROTATE_BATCH.saturating_sub(in_flight);
    let mut todo: Vec<Id> = with_cert
        .iter()
        .filter(|n| {
            n.certificate.as_ref().map(|c| c.state) == Some(IssuanceState::Issued) && !from_new(n)
        })
        .map(|n| n.id)
        .collect();
    todo.sort();
    todo.truncate(room);
    if todo.is_empty() {
        return Ok(());
    }
    update(store, proposer, |tx| {
        for id in &todo {
            let Some(cur) = tx.get::<Node>(id) else {
                continue;
            };
            let mut next = (*cur).clone();
            if let Some(c) = next.certificate.as_mut() {
                if c.state == IssuanceState::Issued {
                    c.state = IssuanceState::Rotate;
                    tx.update(next)?;
                }
            }
        }
        Ok(())
    })
    .await?;
    Ok(())
}

async fn propose_cluster(
    store: &SharedStore,
    proposer: &dyn Proposer,
    next: Cluster,
) -> Result<(), CaError> {
    update(store, proposer, |tx| tx.update(next)).await?;
    Ok(())
}

#[cfg(test)]
#[path = "signer_tests.rs"]
mod tests;
