//! # swarm-raft: consensus for swarm managers
//!
//! [openraft](https://docs.rs/openraft/0.9) with the swarm-core [`swarm_core::Store`] as its state
//! machine and batches of [`swarm_core::StoreAction`]s ([`Proposal`]) as log entries, over a
//! segmented, crash-safe write-ahead log whose every record is sealed by swarm-secrets, with sealed
//! snapshots. [`RaftNode`] implements [`swarm_core::Proposer`]: followers forward proposals to the
//! leader, which stamps the batch time; a batch the store refuses is refused on every replica and
//! answered with `CommitError::Rejected`.
//!
//! Data directory of a manager:
//! ```text
//! keys          swarm-secrets key file (DEKs wrapped by the KEK; the KEK too unless autolock)
//! raft-state    vote + last purged log id (CRC-checked, replaced atomically)
//! wal/*.wal     log segments (see wal::frame for the format)
//! wal/committed the highest committed log id, two alternating slots (see wal::committed)
//! snap/snapshot.snap   the current snapshot, sealed in chunks (see snapshot)
//! ```
//!
//! # Layout
//! - [`types`]: openraft type configuration ([`TypeConfig`], [`Proposal`], [`Applied`]).
//! - [`wal`]: the write-ahead log ([`wal::frame`]: the segment format) with group commit.
//! - [`log_store`]: openraft's `RaftLogStorage` over the WAL; [`files`]: atomic files, `raft-state`,
//!   owner-only modes; `integrity`: start-up checks that nothing committed is missing.
//! - [`snapshot`]: snapshot file and payload formats; [`state_machine`]: openraft's
//!   `RaftStateMachine` over the store.
//! - [`keyring`], [`autolock`]: keys on disk, autolock and key rotation.
//! - [`network`]: the [`Transport`] seam and openraft's network over it; `router` (feature
//!   `testing`): the in-memory transport with fault injection.
//! - [`node`]: [`RaftNode`] (start, propose, reads, RPC handling); `batcher`: group commit of
//!   concurrent proposals into shared entries; [`membership`]: add, demote, remove,
//!   force-new-cluster, the election and step-down watchdog; [`prevote`]: the pre-vote round
//!   before each election; [`transfer`]: leadership transfer.
//! - [`disk`]: the storage seam every file of the data directory goes through ([`disk::OsDisk`]
//!   in production; `SimDisk`, feature `sim`, for crash tests and simulation).
//! - [`config`], [`error`], `fuzzing` (feature `fuzzing`: the fuzz targets' entry points),
//!   `testing` (feature `testing`: an in-process cluster harness).
//!
//! # Features
//! - `testing`: `testing::TestCluster`, the in-memory `Router` transport, and `RaftNode::raft`
//!   (the raw openraft handle) for tests and benchmarks.
//! - `sim`: `disk::SimDisk`, an in-memory disk with a crash model (implied by `testing`).
//! - `fuzzing`: the entry points the fuzz targets and the corpus replay test call.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod autolock;
mod batcher;
mod codec;
pub mod config;
pub mod disk;
pub mod entropy;
pub mod error;
pub mod files;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod integrity;
pub mod keyring;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod node;
pub mod prevote;
#[cfg(feature = "testing")]
pub mod router;
pub mod snapshot;
pub mod state_machine;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transfer;
pub mod types;
pub mod wal;

pub use config::{NodeConfig, RaftConfig};
pub use entropy::OsEntropy;
pub use error::{KeyChangeError, MembershipError, StartError, StorageFault, WaitError};
pub use keyring::Keyring;
pub use network::{RaftReply, RaftRpc, TimeoutNow, Transport, TransportError};
pub use node::{NodeStatus, RaftNode, StartOptions, StatusWatch, SystemClock};
pub use prevote::{PreVote, PreVoteReply};
#[cfg(feature = "testing")]
pub use router::Router;
pub use types::{Applied, NodeId, Proposal, TypeConfig};
pub use wal::{OpenReport, Wal, WalOptions, WalStats};
