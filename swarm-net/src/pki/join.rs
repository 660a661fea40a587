//! Joining, both sides, as pure steps.
//!
//! Manager side, [`admit`]: a joiner's `IssueNodeCertificate {CSR, token}` is accepted only with one
//! of the cluster's current tokens (compared in constant time), which also decides its role; the
//! manager draws a random node id (retrying on collision, 3 retries) and records the CSR as
//! [`CertState::Pending`](super::CertState::Pending) for the signer.
//!
//! Node side, [`accept_issued`]: the chain fetched back is accepted only if its key is the node's own
//! (the CSR was ours), it chains to the roots pinned from the join token, and it is valid now.

use rand_core::CryptoRngCore;
use rcgen::CertificateSigningRequestParams;
use swarm_core::{Id, Timestamp};

use super::info::{is_signed_by, CertInfo};
use super::key::PrivateKey;
use super::material::TlsMaterial;
use super::state::CertRecord;
use crate::identity::NodeIdentity;
use crate::token::{JoinToken, JoinTokens};
use crate::Error;

/// Node ids drawn before giving up: the first plus 3 retries on collision.
pub const NODE_ID_ATTEMPTS: usize = 4;
/// Longest chain accepted (leaf + intermediates); a rotation chain has 2.
pub const MAX_CHAIN_LEN: usize = 4;

/// Admits a joiner presenting `token` with `csr` into cluster `cluster_id`: a new node id not
/// `taken`, the role the token grants, and a pending certificate record.
pub fn admit(
    tokens: &JoinTokens,
    token: &JoinToken,
    csr: Vec<u8>,
    cluster_id: Id,
    taken: impl Fn(&Id) -> bool,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<CertRecord, Error> {
    let role = tokens.role_of(token)?;
    // Refuse a bad CSR now, while the joiner is waiting for an answer, rather than leave a record
    // that can only fail.
    CertificateSigningRequestParams::from_der(&csr.as_slice().into()).map_err(|e| {
        Error::MalformedCsr {
            reason: e.to_string(),
        }
    })?;
    let node_id = (0..NODE_ID_ATTEMPTS)
        .map(|_| Id::generate(rng))
        .find(|id| !taken(id))
        .ok_or(Error::NodeIdExhausted {
            attempts: NODE_ID_ATTEMPTS,
        })?;
    let identity = NodeIdentity {
        node_id,
        role,
        cluster_id,
    };
    Ok(CertRecord::pending(identity, csr))
}

/// Checks that `chain` (leaf first) leads to one of `roots` through its own intermediates, every
/// certificate on the path being valid at `now`, and returns the leaf's identity.
pub fn verify_chain(
    chain: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: Timestamp,
) -> Result<NodeIdentity, Error> {
    let untrusted = |reason: &str| Error::UntrustedCertificate {
        reason: reason.to_string(),
    };
    let leaf = chain
        .first()
        .ok_or_else(|| untrusted("the chain is empty"))?;
    if chain.len() > MAX_CHAIN_LEN {
        return Err(untrusted("the chain is longer than 4 certificates"));
    }
    let identity = NodeIdentity::from_cert(leaf)?;
    let mut current = leaf;
    for _ in 0..chain.len() {
        if !CertInfo::parse(current)?.is_valid_at(now) {
            return Err(untrusted(
                "a certificate in the chain is expired or not yet valid",
            ));
        }
        if let Some(root) = roots.iter().find(|r| is_signed_by(current, r)) {
            if !CertInfo::parse(root)?.is_valid_at(now) {
                return Err(untrusted("the root CA is expired or not yet valid"));
            }
            return Ok(identity);
        }
        current = chain[1..]
            .iter()
            .find(|c| CertInfo::parse(c).is_ok_and(|i| i.is_ca) && is_signed_by(current, c))
            .ok_or_else(|| untrusted("the chain does not lead to a trusted root"))?;
    }
    Err(untrusted("the chain does not lead to a trusted root"))
}

/// The node's acceptance of an issued chain: it must hold `key`'s public key (so it answers our
/// CSR, not someone else's), chain to the pinned `roots` and be valid at `now`.
pub fn accept_issued(
    chain: Vec<Vec<u8>>,
    key: PrivateKey,
    roots: Vec<Vec<u8>>,
    now: Timestamp,
) -> Result<TlsMaterial, Error> {
    verify_chain(&chain, &roots, now)?;
    TlsMaterial::new(chain, key, roots)
}
