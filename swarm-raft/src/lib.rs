//! Consensus for swarm (not built yet).
//!
//! This crate will run `openraft` with the `swarm-core` store as its state machine and batches of
//! `StoreAction`s as log entries, over a segmented write-ahead log whose every record is sealed by
//! `swarm-secrets`. It will implement `swarm_core::Proposer`, manager membership (join, promote, demote,
//! remove) and force-new-cluster. Nothing is implemented yet: see the "Consensus over an encrypted,
//! crash-safe log" issue.
#![warn(missing_docs, unreachable_pub)]
