//! The swarm daemon (not built yet).
//!
//! This crate will compose the swarm crates into a Manager (raft, store, orchestrators, scheduler,
//! dispatcher, CA signer, control API) and a Worker (agent and runtime), and serve the Docker Engine API's
//! swarm endpoints on a Unix socket so the ordinary `docker` CLI drives it.
#![warn(missing_docs, unreachable_pub)]
