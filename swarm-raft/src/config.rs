//! Configuration of a manager's raft node, with SwarmKit-compatible defaults where they exist and
//! the faster timing of this project (SEMANTICS.md, "Raft defaults").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Entropy;
use swarm_secrets::KdfParams;

use crate::disk::Disk;
use crate::error::StartError;
use crate::types::NodeId;

/// Raft tunables. Defaults: heartbeat 100 ms, election timeout 600-1200 ms randomized, a snapshot
/// every 10 000 entries keeping 500 entries for slow followers, snapshot chunks of 3 MiB (messages
/// stay under 4 MiB), 64 MiB segments.
///
/// # Election timing (ours, not SwarmKit's)
/// SwarmKit elects after 10 ticks of 1 s (failover >= 10 s). Ours targets failover under 2 s
/// (p99, kill of the leader's process to a write through another manager, issue 15): the first
/// follower to time out fires at the smaller of two draws, and a write then still needs the
/// vote, the new leader's first commit and the forwarded proposal (0.3-0.5 s in a loaded debug
/// build). With 1-2 s that measured p99 2.47 s; with 600-1200 ms the first election starts at
/// most ~1.15 s after the last heartbeat in 99 % of failovers. The lower bound stays 6
/// heartbeats: a follower must miss 6 in a row before it disrupts a leader, and voters refuse
/// a candidate for one such timeout after their last heartbeat (the leader lease).
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Smallest election timeout.
    pub election_timeout_min: Duration,
    /// Largest election timeout (exclusive); each timeout is drawn uniformly between the two.
    pub election_timeout_max: Duration,
    /// Take a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log below a snapshot, for slow followers.
    pub keep_logs_after_snapshot: u64,
    /// Largest snapshot chunk sent in one message.
    pub snapshot_chunk_bytes: u64,
    /// How long the leader waits for a follower to take one snapshot chunk (openraft's
    /// `install_snapshot_timeout`, per chunk, 200 ms by default there). A chunk is up to
    /// `snapshot_chunk_bytes` (3 MiB) and the last one also installs the snapshot into the
    /// follower's store, so the default, 10 s, lets a 3 MiB chunk cross a ~2.5 Mbit/s link or a
    /// loaded manager install a large store; a timed-out chunk is retried, so too short a value
    /// means a snapshot that never arrives, too long only a slower retry on a dead follower.
    pub install_snapshot_timeout: Duration,
    /// Largest number of entries in one append message.
    pub max_payload_entries: u64,
    /// How long a proposal may wait for a leader and a quorum before failing with `NoQuorum`.
    pub propose_timeout: Duration,
    /// A leader that has not heard from a quorum for this long steps down. Default: the largest
    /// election timeout plus one heartbeat (after which a majority elsewhere may have elected
    /// another leader).
    pub step_down_after: Duration,
    /// Size at which the WAL starts a new segment.
    pub segment_bytes: u64,
    /// How far ahead of its write position the WAL extends its active segment with written zeros,
    /// so that commit fsyncs overwrite allocated blocks (see [`crate::WalOptions::prealloc_bytes`];
    /// default 1 MiB, 0 turns it off).
    pub wal_prealloc_bytes: u64,
    /// Group commit on the leader: at most this many log entries of proposals are in flight at
    /// once; proposals arriving meanwhile are merged into the next entry (one append, one fsync,
    /// one replication message for all of them). 1 packs the most per entry; 2 (the default)
    /// keeps the log busy while answers travel back. At least 1.
    pub proposal_pipeline: usize,
    /// Where the data directory's files are: the real filesystem ([`crate::disk::OsDisk`], the
    /// default) or, in simulation tests, a `SimDisk` (feature `sim`).
    pub disk: Arc<dyn Disk>,
    /// Where the election timeouts are drawn from: the operating system's RNG by default
    /// ([`crate::entropy::os`]); a simulation passes a seeded [`Entropy`] so one seed fixes them.
    pub entropy: Entropy,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(600),
            election_timeout_max: Duration::from_millis(1200),
            snapshot_every: 10_000,
            keep_logs_after_snapshot: 500,
            snapshot_chunk_bytes: 3 * 1024 * 1024,
            install_snapshot_timeout: Duration::from_secs(10),
            max_payload_entries: 300,
            propose_timeout: Duration::from_secs(10),
            step_down_after: Duration::from_millis(1300),
            segment_bytes: 64 * 1024 * 1024,
            wal_prealloc_bytes: crate::wal::DEFAULT_PREALLOC_BYTES,
            proposal_pipeline: 2,
            disk: crate::disk::os(),
            entropy: crate::entropy::os(),
        }
    }
}

impl RaftConfig {
    /// How long a voter refuses other candidates after it last heard from its leader (openraft's
    /// leader lease, set to the smallest election timeout by [`RaftConfig::to_openraft`]). A
    /// leader also refuses votes for this long after it was elected.
    pub fn leader_lease(&self) -> Duration {
        self.election_timeout_min
    }

    /// openraft's configuration for these settings.
    pub fn to_openraft(&self) -> Result<openraft::Config, StartError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.snapshot_chunk_bytes > 4 * 1024 * 1024 - 64 * 1024 {
            return Err(StartError::Config(
                "snapshot_chunk_bytes must leave messages under 4 MiB".into(),
            ));
        }
        let c = openraft::Config {
            cluster_name: "swarm".into(),
            heartbeat_interval: ms(self.heartbeat),
            // Elections are timed by swarm-raft's watchdog (uniform in [min, max) since the last
            // contact with a leader), not by openraft, whose timer is disabled below. openraft
            // derives its leader lease (followers refuse votes while it runs) from its
            // `election_timeout_max`; setting that to our *minimum* keeps the lease shorter than any
            // election timeout, so the first election after a leader dies can succeed. With the
            // lease at our maximum, the first attempt would always be refused and failover would
            // take two timeouts (3-4 s with the 1-2 s defaults).
            election_timeout_min: ms(self.election_timeout_min) * 3 / 4,
            election_timeout_max: ms(self.election_timeout_min),
            enable_elect: false,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes,
            install_snapshot_timeout: ms(self.install_snapshot_timeout).max(1),
            max_payload_entries: self.max_payload_entries,
            ..Default::default()
        };
        c.validate().map_err(|e| StartError::Config(e.to_string()))
    }
}

/// Everything a manager needs to start its raft node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This manager's raft id.
    pub id: NodeId,
    /// Its address on the manager network (given to peers through membership).
    pub addr: String,
    /// Data directory: `keys`, `raft-state`, `wal/`, `snap/`.
    pub data_dir: PathBuf,
    /// Raft tunables.
    pub raft: RaftConfig,
    /// Argon2id cost for stretching unlock keys ([`KdfParams::RECOMMENDED`] outside tests).
    pub kdf: KdfParams,
}

impl NodeConfig {
    /// A configuration with default tunables.
    pub fn new(id: NodeId, addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            addr: addr.into(),
            data_dir: data_dir.into(),
            raft: RaftConfig::default(),
            kdf: KdfParams::RECOMMENDED,
        }
    }
}
