//! The cluster CA over swarm-net: the server managers run (join by token, certificate status,
//! renewal), the signer the leader runs (signing, role changes, root rotation), and the node's side
//! of joining and renewing, with its certificates on disk.
//!
//! # Protocol (SEMANTICS.md "PKI and join", "Multi-host protocol")
//! 1. A joiner calls [`GET_ROOT_CA`] without verifying the server (5 s per try, 5 tries 2 s apart),
//!    hashes the bundle and pins it against the join token's digest: a mismatch stops the join
//!    before any CSR is sent.
//! 2. It calls [`ISSUE_NODE_CERTIFICATE`] `{CSR, token, availability}` over a connection that now
//!    verifies the manager against the pinned root. The server reads the cluster's *current*
//!    tokens from the store on every call (a rotated token is refused at once), compares the
//!    presented one with both in constant time, draws a random node id and commits a Node object
//!    (role from the token, certificate `Pending`). The answer is the node id.
//! 3. It polls [`NODE_CERTIFICATE_STATUS`] (5 s per call, backoff 1 s .. 30 s on errors); the server
//!    holds the call until the certificate is final (issued, failed, or marked for rotation) or
//!    [`server::STATUS_HOLD`] passes. The node accepts only a chain for its own key that chains
//!    to the pinned roots.
//! 4. Renewal is the same [`ISSUE_NODE_CERTIFICATE`] call made with the node's current, valid
//!    certificate: no token, the node id and cluster come from the certificate, state `Renew`.
//!
//! # Followers
//! Every manager serves these methods from its replicated store and commits through its
//! [`swarm_core::Proposer`], which raft forwards to the leader; nothing is proxied. The signer
//! runs on the leader only ([`CaServer::spawn`] starts and stops it with leadership).
//!
//! # Layout
//! - [`server`]: [`CaServer`], the method handlers and the deny set of removed nodes.
//! - [`signer`]: [`run_signer`], signing, role-change reissue and root rotation.
//! - [`bootstrap`]: [`new_cluster_ca`] for `swarm init`, [`start_root_rotation`], conversions
//!   between the store's records and swarm-net's PKI types.
//! - [`join`](mod@join): [`join()`], [`renew`], [`run_renewal`], the node's side.
//! - [`storage`]: [`CertDir`], a node's certificates on disk, its key sealed.

pub mod bootstrap;
pub mod join;
pub mod server;
pub mod signer;
pub mod storage;
#[cfg(test)]
mod test_support;

use serde::{Deserialize, Serialize};
use swarm_core::objects::node::{IssuanceState, NodeAvailability};
use swarm_core::Id;
use swarm_net::rpc::{Access, Unary};

pub use bootstrap::{new_cluster_ca, start_root_rotation, CaError, NewClusterCa};
pub use join::{
    join, renew, renewal_speedup_from_env, run_renewal, JoinError, Joined, ManagerList,
    RenewalTarget, RENEWAL_SPEEDUP_ENV,
};
pub use server::CaServer;
pub use signer::run_signer;
pub use storage::{CertDir, CertStoreError};

/// Largest root bundle answered (the old and the new root during a rotation fit easily).
const MAX_BUNDLE: u32 = 256 * 1024;

/// `GetRootCACertificate`: the root bundle the join tokens pin, PEM. No certificate needed.
pub const GET_ROOT_CA: Unary<(), RootCaAnswer> = Unary::new(
    "ca.get_root_ca_certificate",
    Access::Anonymous,
    16,
    MAX_BUNDLE,
);

/// `IssueNodeCertificate`: a join (with a token) or, called with a valid client certificate, a
/// renewal. Answers the node id.
pub const ISSUE_NODE_CERTIFICATE: Unary<IssueRequest, IssueAnswer> = Unary::new(
    "ca.issue_node_certificate",
    Access::Anonymous,
    16 * 1024,
    256,
);

/// `NodeCertificateStatus`: long-poll for a node's certificate.
pub const NODE_CERTIFICATE_STATUS: Unary<StatusRequest, StatusAnswer> = Unary::new(
    "ca.node_certificate_status",
    Access::Anonymous,
    256,
    MAX_BUNDLE,
);

/// The answer of [`GET_ROOT_CA`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCaAnswer {
    /// The root certificate bundle, PEM, byte for byte what the join tokens' digest covers.
    pub bundle_pem: String,
}

/// The request of [`ISSUE_NODE_CERTIFICATE`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest {
    /// The node's certificate signing request, DER.
    pub csr: Vec<u8>,
    /// The join token (`SWMTKN-1-...`); `None` for a renewal.
    pub token: Option<String>,
    /// The availability the node asks to join with.
    pub availability: NodeAvailability,
}

impl std::fmt::Debug for IssueRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never printed.
        f.debug_struct("IssueRequest")
            .field("csr_len", &self.csr.len())
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("availability", &self.availability)
            .finish()
    }
}

/// The answer of [`ISSUE_NODE_CERTIFICATE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueAnswer {
    /// The node id the certificate will name.
    pub node_id: Id,
}

/// The request of [`NODE_CERTIFICATE_STATUS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    /// The node asked about.
    pub node_id: Id,
}

/// The answer of [`NODE_CERTIFICATE_STATUS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// Where issuance is.
    pub state: IssuanceState,
    /// Why signing failed, when `state` is failed.
    pub error: String,
    /// The last chain issued (DER, leaf first); empty before the first.
    pub chain: Vec<Vec<u8>>,
    /// The roots nodes must trust now (DER): the cluster root, plus the new root during a root
    /// rotation. This is how a node learns a new root.
    pub roots: Vec<Vec<u8>>,
}

/// Whether a status is one the long-poll answers at once.
pub fn is_final(state: IssuanceState) -> bool {
    matches!(
        state,
        IssuanceState::Issued | IssuanceState::Failed | IssuanceState::Rotate
    )
}
