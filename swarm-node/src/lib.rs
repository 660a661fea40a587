//! # swarm-node: the swarm daemon (in progress)
//!
//! Composes the swarm crates into a Manager (raft, store, orchestrators, scheduler, dispatcher,
//! control API) and a Worker (agent and runtime), and serves the Docker Engine API's swarm endpoints
//! on a Unix socket so the ordinary `docker` CLI drives it.
//!
//! # Layout
//! - [`backend`]: the seam between the Docker API layer and the daemon.
//! - [`api`]: the Docker Engine API (axum over a Unix socket); [`control`]: typed control
//!   operations (validate, resolve, stage, propose) under it.
//! - `testing` (feature `testing`): an in-process `Backend` double and a small HTTP client.
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod backend;
pub mod control;
#[cfg(feature = "testing")]
pub mod testing;
