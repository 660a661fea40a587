//! The cluster PKI, pure: root CA, node certificates from CSRs, renewal schedule, certificate states,
//! the deny set of removed nodes, and root rotation. Time is a [`swarm_core::Timestamp`] argument and
//! randomness an RNG argument; the only randomness drawn inside is ring's, for key generation and
//! signature nonces (see [`key`]).
//!
//! # Layout
//! - [`key`]: [`PrivateKey`], zeroizing and redacted.
//! - [`seal`]: wrapping keys with the node's KEK before they touch disk ([`KeySlot`]).
//! - [`ca`]: [`RootCa`], issuing ([`RootCa::issue`]) and cross-signing.
//! - [`csr`]: [`make_csr`], the node's side of issuing.
//! - [`join`]: admitting a joiner ([`admit`]) and accepting the issued chain ([`accept_issued`]).
//! - [`info`]: [`CertInfo`], what the PKI reads from a certificate.
//! - [`bundle`]: PEM root bundles (what a join token's digest covers).
//! - [`renewal`]: when a node renews ([`RenewalSchedule`]), backoff on failure.
//! - [`state`]: [`CertState`] and the manager's [`CertRecord`] of a node's certificate.
//! - [`rotation`]: [`RootRotation`], cross-signing and batched node renewal.
//! - [`deny`]: [`DenySet`], removed nodes refused until expiry + 7 days.
//! - [`material`]: [`TlsMaterial`], the chain + key + roots the RPC layer consumes.
//! - `testing` (feature `testing`): `TestPki`, a CA for tests.

pub mod bundle;
pub mod ca;
pub mod csr;
pub mod deny;
pub mod info;
pub mod join;
pub mod key;
pub mod material;
pub mod renewal;
pub mod rotation;
pub mod seal;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use ca::{
    IssuedCert, RootCa, CERT_BACKDATE, DEFAULT_NODE_CERT_VALIDITY, MIN_NODE_CERT_VALIDITY,
    ROOT_CA_VALIDITY,
};
pub use csr::make_csr;
pub use deny::{DenySet, DENY_MARGIN};
pub use info::{is_signed_by, CertInfo};
pub use join::{accept_issued, admit, verify_chain, NODE_ID_ATTEMPTS};
pub use key::PrivateKey;
pub use material::TlsMaterial;
pub use renewal::{renewal_backoff, renewal_time, RenewalSchedule};
pub use rotation::{NodeCertStatus, RootRotation, RotationStep, ROTATE_BATCH, ROTATE_INTERVAL};
pub use seal::KeySlot;
pub use state::{CertRecord, CertState, SIGNING_RETRY};
