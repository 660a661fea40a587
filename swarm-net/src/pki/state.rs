//! Certificate issuance states and the manager's record of one node's certificate.
//!
//! A joining node's CSR enters [`CertState::Pending`]; a node renewing with a valid certificate enters
//! [`CertState::Renew`]; the signer (on the leader) turns either into [`CertState::Issued`] or
//! [`CertState::Failed`], and retries failures every [`SIGNING_RETRY`]. During a root rotation the
//! manager marks nodes [`CertState::Rotate`]: the node then renews at once (its renewal arrives as
//! `Renew`). The record is pure data plus transitions; the store keeps it, the signer loop drives it.

use std::time::Duration;

use rand_core::CryptoRngCore;
use swarm_core::Timestamp;

use super::ca::RootCa;
use super::deny::DenySet;
use super::info::CertInfo;
use crate::identity::NodeIdentity;
use crate::Error;

/// How long the signer waits before retrying a failed signing.
pub const SIGNING_RETRY: Duration = Duration::from_secs(10);

/// Where a node's certificate is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertState {
    /// A joiner's CSR waits for the signer.
    Pending,
    /// A certificate was issued; the node can fetch it.
    Issued,
    /// A renewal CSR waits for the signer.
    Renew,
    /// A root rotation asked the node to renew now.
    Rotate,
    /// Signing failed; retried after [`SIGNING_RETRY`].
    Failed,
}

/// The manager's record of one node's certificate.
///
/// Calling contract: create with [`CertRecord::pending`] on a join; feed `handle_*` inputs as node
/// requests and rotation marks arrive; the signer calls [`CertRecord::needs_signing`] and then
/// [`CertRecord::sign`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRecord {
    identity: NodeIdentity,
    csr: Vec<u8>,
    state: CertState,
    chain: Option<Vec<Vec<u8>>>,
    failed_at: Option<Timestamp>,
    failure: Option<String>,
}

impl CertRecord {
    /// A joiner's CSR, to be issued as `identity` (the CA chose the node id; the role comes from the
    /// token used).
    pub fn pending(identity: NodeIdentity, csr: Vec<u8>) -> CertRecord {
        CertRecord {
            identity,
            csr,
            state: CertState::Pending,
            chain: None,
            failed_at: None,
            failure: None,
        }
    }

    /// Who the next certificate will name.
    pub fn identity(&self) -> NodeIdentity {
        self.identity
    }

    /// The current state.
    pub fn state(&self) -> CertState {
        self.state
    }

    /// The last chain issued, leaf first.
    pub fn chain(&self) -> Option<&[Vec<u8>]> {
        self.chain.as_deref()
    }

    /// The last signing failure's message, while in [`CertState::Failed`].
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The key id of the CA key that signed the current certificate (from its authority key
    /// identifier), for root rotation to tell old-root certificates from new ones.
    pub fn issuer_key_id(&self) -> Option<Vec<u8>> {
        let leaf = self.chain.as_ref()?.first()?;
        CertInfo::parse(leaf).ok()?.authority_key_id
    }

    /// The node asked to renew with a new CSR (its certificate still valid). The role may have
    /// changed since the last certificate (promotion, demotion).
    pub fn handle_renewal(&mut self, identity: NodeIdentity, csr: Vec<u8>) {
        self.identity = identity;
        self.csr = csr;
        self.state = CertState::Renew;
        self.failed_at = None;
        self.failure = None;
    }

    /// A root rotation marked this node: it should renew now. Only an issued certificate is marked;
    /// one already waiting for the signer will be issued by the new root anyway.
    pub fn handle_rotate(&mut self) {
        if self.state == CertState::Issued {
            self.state = CertState::Rotate;
        }
    }

    /// Whether the signer should sign this record at `now`.
    #[must_use]
    pub fn needs_signing(&self, now: Timestamp) -> bool {
        match self.state {
            CertState::Pending | CertState::Renew => true,
            CertState::Failed => self
                .failed_at
                .is_none_or(|at| now >= at.plus(SIGNING_RETRY)),
            CertState::Issued | CertState::Rotate => false,
        }
    }

    /// Signs the stored CSR with `ca` for `validity`, unless the node is in `deny`. Success moves to
    /// [`CertState::Issued`]; failure to [`CertState::Failed`] (retried later) and is returned.
    pub fn sign(
        &mut self,
        ca: &RootCa,
        validity: Duration,
        deny: &DenySet,
        now: Timestamp,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<(), Error> {
        let result = deny
            .check(&self.identity.node_id, now)
            .and_then(|()| ca.issue(&self.csr, &self.identity, validity, now, rng));
        match result {
            Ok(issued) => {
                self.chain = Some(issued.chain);
                self.state = CertState::Issued;
                self.failed_at = None;
                self.failure = None;
                Ok(())
            }
            Err(e) => {
                self.state = CertState::Failed;
                self.failed_at = Some(now);
                self.failure = Some(e.to_string());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::identity::Role;
    use crate::pki::testing::TestPki;
    use crate::pki::{make_csr, PrivateKey, DEFAULT_NODE_CERT_VALIDITY};

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn join_sign_renew_rotate_cycle() {
        let mut pki = TestPki::new(3, NOW);
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let deny = DenySet::new();
        let who = pki.identity(Role::Worker);
        let csr = make_csr(&PrivateKey::generate().unwrap()).unwrap();
        let mut rec = CertRecord::pending(who, csr.clone());
        assert_eq!(rec.state(), CertState::Pending);
        assert!(rec.needs_signing(NOW));
        rec.sign(pki.ca(), DEFAULT_NODE_CERT_VALIDITY, &deny, NOW, &mut rng)
            .unwrap();
        assert_eq!(rec.state(), CertState::Issued);
        assert!(!rec.needs_signing(NOW));
        let leaf = &rec.chain().unwrap()[0];
        assert_eq!(NodeIdentity::from_cert(leaf).unwrap(), who);
        let root_ski = CertInfo::parse(&pki.root_der()).unwrap().subject_key_id;
        assert_eq!(rec.issuer_key_id(), root_ski);

        rec.handle_rotate();
        assert_eq!(rec.state(), CertState::Rotate);
        assert!(!rec.needs_signing(NOW));

        // Promotion: the renewal names the new role.
        let promoted = NodeIdentity {
            role: Role::Manager,
            ..who
        };
        rec.handle_renewal(promoted, csr);
        assert_eq!(rec.state(), CertState::Renew);
        rec.handle_rotate();
        assert_eq!(
            rec.state(),
            CertState::Renew,
            "a waiting renewal is not re-marked"
        );
        rec.sign(pki.ca(), DEFAULT_NODE_CERT_VALIDITY, &deny, NOW, &mut rng)
            .unwrap();
        let leaf = &rec.chain().unwrap()[0];
        assert_eq!(NodeIdentity::from_cert(leaf).unwrap().role, Role::Manager);
    }

    #[test]
    fn failures_are_recorded_and_retried_after_ten_seconds() {
        let mut pki = TestPki::new(4, NOW);
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let who = pki.identity(Role::Worker);
        let mut rec = CertRecord::pending(who, b"not a csr".to_vec());
        let err = rec
            .sign(
                pki.ca(),
                DEFAULT_NODE_CERT_VALIDITY,
                &DenySet::new(),
                NOW,
                &mut rng,
            )
            .unwrap_err();
        assert!(matches!(err, Error::MalformedCsr { .. }));
        assert_eq!(rec.state(), CertState::Failed);
        assert!(rec
            .failure()
            .unwrap()
            .contains("certificate signing request"));
        assert!(!rec.needs_signing(NOW.plus(Duration::from_secs(9))));
        assert!(rec.needs_signing(NOW.plus(SIGNING_RETRY)));

        // A removed node is refused even with a good CSR.
        let mut deny = DenySet::new();
        deny.handle_removed(who.node_id, NOW.plus(DEFAULT_NODE_CERT_VALIDITY));
        let csr = make_csr(&PrivateKey::generate().unwrap()).unwrap();
        rec.handle_renewal(who, csr);
        assert_eq!(
            rec.sign(pki.ca(), DEFAULT_NODE_CERT_VALIDITY, &deny, NOW, &mut rng),
            Err(Error::NodeRemoved {
                node_id: who.node_id
            })
        );
        assert_eq!(rec.state(), CertState::Failed);
        assert!(rec.chain().is_none());
    }
}
