//! Sealing, key hierarchy and autolock for swarm (not built yet).
//!
//! This pure crate will seal records with XChaCha20-Poly1305, hold the DEK/KEK hierarchy, parse and
//! stretch unlock keys (`SWMKEY-1-...`, argon2id) and drive autolock transitions.
#![warn(missing_docs, unreachable_pub)]
