//! The cluster PKI, pure: root CA, node certificates from CSRs, renewal schedule, certificate states,
//! the deny set of removed nodes, and root rotation. Time is a [`swarm_core::Timestamp`] argument and
//! randomness an RNG argument; the only randomness drawn inside is ring's, for key generation and
//! signature nonces (see [`key`]).
//!
//! # Layout
//! - [`key`]: [`PrivateKey`], zeroizing and redacted.
//! - [`ca`]: [`RootCa`], issuing ([`RootCa::issue`]) and cross-signing.
//! - [`csr`]: [`make_csr`], the node's side of issuing.
//! - [`info`]: [`CertInfo`], what the PKI reads from a certificate.
//! - [`bundle`]: PEM root bundles (what a join token's digest covers).
//! - [`material`]: [`TlsMaterial`], the chain + key + roots the RPC layer consumes.
//! - `testing` (feature `testing`): `TestPki`, a CA for tests.

pub mod bundle;
pub mod ca;
pub mod csr;
pub mod info;
pub mod key;
pub mod material;
#[cfg(feature = "testing")]
pub mod testing;

pub use ca::{
    IssuedCert, RootCa, CERT_BACKDATE, DEFAULT_NODE_CERT_VALIDITY, MIN_NODE_CERT_VALIDITY,
    ROOT_CA_VALIDITY,
};
pub use csr::make_csr;
pub use info::{is_signed_by, CertInfo};
pub use key::PrivateKey;
pub use material::TlsMaterial;
