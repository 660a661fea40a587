//! The node's side of the manager network: what swarm-node serves and calls over swarm-net's QUIC
//! RPC (mutual TLS, one listener per node on `--listen-addr`, default port 2377).
//!
//! # Layout
//! - [`raft`]: swarm-raft's `Transport` over QUIC, and the raft methods a manager serves.
//! - [`ca`]: the CA server on managers (join by token, certificate status, renewal, root
//!   rotation) and the node side of joining and renewing.
//! - [`dispatch`]: the dispatcher over QUIC (sessions, heartbeats, assignments, status) and the
//!   worker's `Dispatcher` client with manager failover.
//! - [`logs`]: task logs across hosts (nodes publish their tasks' lines to the managers that ask).
//! - [`mesh`]: the routing mesh across hosts (the mesh view stream, byte streams to remote
//!   tasks).
//! - [`membership`]: a manager joining the raft cluster (SwarmKit's `RaftMembership.Join`).
//! - [`node`]: a manager's and a worker's network roles composed from the above.
//! - [`stack`]: the node's one listener and client, and the slot routes find the manager in.
pub mod ca;
pub mod dispatch;
pub mod logs;
pub mod membership;
pub mod mesh;
pub mod node;
pub mod raft;
pub mod settings;
pub mod stack;
