//! `node.json`: who this node is in its swarm (node id, raft id, cluster id, address).
//!
//! The file is written atomically once `swarm init` has committed the cluster and node objects, and
//! removed by `swarm leave --force`; its presence is what "this node is part of a swarm" means
//! across restarts. A raft directory without it is the debris of an interrupted init and is
//! removed. It holds no secret (the unlock key is never stored by a manager).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use swarm_core::Id;

use super::ManagerError;

/// File name of the identity in the data directory.
pub const IDENTITY_FILE: &str = "node.json";

/// This node's identity in its swarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node id (the node object's id; the CN of its certificate once there is a CA).
    pub node_id: Id,
    /// The raft member id.
    pub raft_id: u64,
    /// The cluster object's id.
    pub cluster_id: Id,
    /// The address given at init (`--advertise-addr`), kept for display.
    pub addr: String,
}

impl NodeIdentity {
    /// The path of the identity file in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(IDENTITY_FILE)
    }

    /// Reads the identity, `None` if this node is not part of a swarm.
    pub fn load(data_dir: &Path) -> Result<Option<NodeIdentity>, ManagerError> {
        let path = Self::path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ManagerError::io("read", &path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ManagerError::Storage(format!(
                "{} is not a valid identity file ({e}); if this node should leave its swarm, remove the data directory",
                path.display()
            )))
    }

    /// Writes the identity atomically.
    pub fn store(&self, data_dir: &Path) -> Result<(), ManagerError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| ManagerError::Storage(format!("encoding the identity: {e}")))?;
        swarm_raft::files::atomic_write(&Self::path(data_dir), &bytes)
            .map_err(|e| ManagerError::Storage(e.to_string()))
    }

    /// Removes the identity file (leaving the swarm).
    pub fn remove(data_dir: &Path) -> Result<(), ManagerError> {
        let path = Self::path(data_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ManagerError::io("remove", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_missing_means_not_in_a_swarm() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), None);
        let id = NodeIdentity {
            node_id: Id::from_u128(7),
            raft_id: 42,
            cluster_id: Id::from_u128(9),
            addr: "127.0.0.1:2377".into(),
        };
        id.store(dir.path()).unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(id));
        NodeIdentity::remove(dir.path()).unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), None);
        std::fs::write(NodeIdentity::path(dir.path()), b"{").unwrap();
        assert!(NodeIdentity::load(dir.path()).is_err());
    }
}
