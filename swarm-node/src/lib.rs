//! # swarm-node: the swarm daemon (in progress)
//!
//! Composes the swarm crates into a Manager (raft, store, orchestrators, scheduler, dispatcher,
//! control API) and a Worker (agent and runtime), and serves the Docker Engine API's swarm endpoints
//! on a Unix socket so the ordinary `docker` CLI drives it.
//!
//! # Layout
//! - [`backend`]: the seam between the Docker API layer and the daemon.
#![warn(missing_docs, unreachable_pub)]

pub mod backend;
