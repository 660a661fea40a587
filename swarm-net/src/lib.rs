//! Transport and PKI for swarm.
//!
//! The cluster root CA (ECDSA P-256), node certificate issuance from CSRs and its renewal schedule,
//! join tokens (`SWMTKN-1-<CA digest>-<secret>`), and the peer identity (node id, role, cluster)
//! read from a node certificate. The PKI and tokens are pure: time and randomness are arguments.
//! The RPC layer carries typed calls between nodes over QUIC (quinn + rustls mutual TLS, ring only).
//!
//! # Layout
//! - [`identity`]: [`Role`], [`NodeIdentity`] and [`NodeIdentity::from_cert`].
//! - [`pki`]: root CA, issuing, [`pki::TlsMaterial`], and (feature `testing`) `pki::testing`.
//! - [`token`]: [`JoinToken`], [`JoinTokens`].
//! - [`error`]: [`Error`], the crate's one error type.
//! - `fuzzing` (feature `fuzzing`): the checks the fuzz targets run.
//! - [`rpc`]: QUIC RPC: frames, method descriptors and the authorization table, server, client
//!   with its connection pool, TLS credentials swapped without dropping calls.
//! - `sim` (feature `turmoil`): quinn over turmoil's simulated UDP, for runs on virtual time;
//!   `siglen`: inside a simulation, ECDSA signatures of one length (so runs of a seed replay).
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod identity;
pub mod pki;
pub mod rpc;
mod siglen;
#[cfg(feature = "turmoil")]
pub mod sim;
pub mod token;

pub use error::{Error, TokenFormatError};
pub use identity::{NodeIdentity, Role};
pub use token::{JoinToken, JoinTokens};
