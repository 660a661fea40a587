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
//! - [`http_client`]: a hyper HTTP/1.1 client for the API socket (the CLI subcommands, tests).
//! - `testing` (feature `testing`): an in-process `Backend` double and a small HTTP client.
//! - [`daemon`]: [`daemon::Daemon`], a Manager and a Worker composed, implementing the Backend.
//! - [`manager`]: raft, store, leader loops, autolock; [`dispatcher`]: the store-backed dispatcher.
//! - [`worker`]: the agent and its runtime; [`config`]: daemon settings and defaults.
//! - [`backup`]: offline backup and restore of a node's data directory.
//! - `fuzzing` (feature `fuzzing`): the request-body fuzz target's entry point.
//! - `sim` (feature `sim`): whole clusters on turmoil's virtual time with injected faults and
//!   invariant checks.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod api;
pub mod backend;
pub mod backup;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dispatcher;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http_client;
pub mod manager;
pub mod mesh;
pub mod metrics;
pub mod net;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;
