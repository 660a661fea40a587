//! Transport and PKI for swarm (not built yet).
//!
//! This crate will hold the cluster root CA (ECDSA P-256), node certificate issuance and renewal, join
//! tokens (`SWMTKN-1-<CA digest>-<secret>`), and QUIC transport (quinn + rustls with mutual TLS) carrying
//! typed RPC frames, with the peer's node id, role and cluster taken from its certificate. Nothing is
//! implemented yet: multi-host operation is a later issue.
#![warn(missing_docs, unreachable_pub)]
