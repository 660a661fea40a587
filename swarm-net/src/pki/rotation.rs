//! Root CA rotation, as SwarmKit does it.
//!
//! 1. [`RootRotation::start`]: a new root (new key) and a *cross-signed* copy of it, signed by the
//!    old root. From then on the signer is the new key, and every chain it issues carries the
//!    cross-signed certificate as intermediate, so a peer that trusts only the old root and one that
//!    trusts only the new root both verify it. Nodes are told to trust both roots.
//! 2. [`RootRotation::poll`], called periodically with every node's certificate status: every 3 s it
//!    marks up to 30 nodes whose certificate was not issued by the new key as `Rotate` (counting the
//!    ones still rotating against the 30), so renewals reach the signer in bounded batches.
//! 3. When every node holds an issued certificate from the new key, `poll` answers
//!    [`RotationStep::Converged`] and [`RootRotation::finish`] returns the new root alone (no
//!    intermediate) and new join tokens pinning it; the old root is dropped from the trust set.
//!
//! The join tokens stay those of the old root until the end, since joiners fetch the old bundle.

use std::collections::BTreeSet;
use std::time::Duration;

use rand_core::CryptoRngCore;
use swarm_core::{Id, Timestamp};

use super::ca::RootCa;
use super::info::CertInfo;
use super::key::PrivateKey;
use super::state::CertState;
use crate::token::JoinTokens;
use crate::Error;

/// Most nodes in the `Rotate` state at once.
pub const ROTATE_BATCH: usize = 30;
/// Time between two batches.
pub const ROTATE_INTERVAL: Duration = Duration::from_secs(3);

/// One node's certificate as the rotation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCertStatus {
    /// The node.
    pub node_id: Id,
    /// Its certificate's state.
    pub state: CertState,
    /// The key id of the CA key that signed its current certificate (`None` if it has none yet).
    pub issuer_key_id: Option<Vec<u8>>,
}

/// What [`RootRotation::poll`] asks the caller to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum RotationStep {
    /// Mark these nodes `Rotate` (in the store, so that they learn it and renew).
    Rotate(Vec<Id>),
    /// Nothing to do before `until` (a batch was just sent, or nodes are still renewing).
    Wait {
        /// When to poll again.
        until: Timestamp,
    },
    /// Every node holds a certificate from the new root: call [`RootRotation::finish`].
    Converged,
}

/// A root rotation in progress.
#[derive(Clone, Debug)]
pub struct RootRotation {
    old_root: Vec<u8>,
    signer: RootCa,
    new_key_id: Option<Vec<u8>>,
    next_batch: Timestamp,
}

impl RootRotation {
    /// Starts rotating from `current` to a new root for `new_key`, created and cross-signed at `now`.
    pub fn start(
        current: &RootCa,
        new_key: PrivateKey,
        now: Timestamp,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<RootRotation, Error> {
        let new = RootCa::generate(new_key, now, rng)?;
        let cross = current.cross_sign(&new, now, rng)?;
        let new_key_id = CertInfo::parse(new.cert_der())?.subject_key_id;
        Ok(RootRotation {
            old_root: current.cert_der().to_vec(),
            signer: new.with_intermediates(vec![cross]),
            new_key_id,
            next_batch: now,
        })
    }

    /// The CA that signs during the rotation: the new key, chains ending in the cross-signed root.
    pub fn signer(&self) -> &RootCa {
        &self.signer
    }

    /// The certificate of the new root, cross-signed by the old one.
    pub fn cross_signed(&self) -> &[u8] {
        self.signer
            .intermediates()
            .first()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The roots every node trusts during the rotation: old and new.
    pub fn trusted_roots(&self) -> Vec<Vec<u8>> {
        vec![self.old_root.clone(), self.signer.cert_der().to_vec()]
    }

    /// Whether a certificate's issuer key id is the new root's.
    pub fn is_from_new_root(&self, issuer_key_id: Option<&[u8]>) -> bool {
        issuer_key_id.is_some() && issuer_key_id == self.new_key_id.as_deref()
    }

    /// Decides the next step from every node's certificate status at `now`.
    pub fn poll(&mut self, now: Timestamp, nodes: &[NodeCertStatus]) -> RotationStep {
        let converged = |n: &NodeCertStatus| {
            n.state == CertState::Issued && self.is_from_new_root(n.issuer_key_id.as_deref())
        };
        if nodes.iter().all(converged) {
            return RotationStep::Converged;
        }
        if now < self.next_batch {
            return RotationStep::Wait {
                until: self.next_batch,
            };
        }
        let in_flight = nodes
            .iter()
            .filter(|n| n.state == CertState::Rotate)
            .count();
        let room = ROTATE_BATCH.saturating_sub(in_flight);
        // Only issued certificates are marked: pending, renewing or failed ones are already on their
        // way to the signer, which now issues from the new root. Sorted for a reproducible order.
        let todo: BTreeSet<Id> = nodes
            .iter()
            .filter(|n| n.state == CertState::Issued && !converged(n))
            .map(|n| n.node_id)
            .collect();
        self.next_batch = now.plus(ROTATE_INTERVAL);
        let batch: Vec<Id> = todo.into_iter().take(room).collect();
        if batch.is_empty() {
            return RotationStep::Wait {
                until: self.next_batch,
            };
        }
        RotationStep::Rotate(batch)
    }

    /// Ends a converged rotation: the new root alone, and new join tokens pinning it. The caller
    /// must have seen [`RotationStep::Converged`].
    pub fn finish(self, rng: &mut (impl CryptoRngCore + ?Sized)) -> (RootCa, JoinTokens) {
        let root = self.signer.with_intermediates(Vec::new());
        let tokens = JoinTokens::generate(root.bundle_pem().as_bytes(), rng);
        (root, tokens)
    }
}
