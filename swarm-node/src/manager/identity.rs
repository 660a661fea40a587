//! `node.json`: who this node is in its swarm (node id, raft id, cluster id, address).
//!
//! The file is written atomically once `swarm init` has committed the cluster and node objects, and
//! removed by `swarm leave --force`; its presence is what "this node is part of a swarm" means
//! across restarts. It holds no secret (the unlock key is never stored by a manager).
//!
//! **A start never deletes state it cannot prove is debris.** `node.json` carries a CRC32C of its
//! fields (a damaged or hand-edited file is refused), and the manager cross-checks it against the
//! raft membership and the store before serving (see `Manager::open`). Init and leave write the
//! marker [`TRANSITION_FILE`] first and remove it last: a raft directory without `node.json` is
//! removed at start only while that marker says an init or leave was interrupted; otherwise the
//! start is refused and the operator told what to restore or remove.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use swarm_core::Id;

use super::ManagerError;

/// File name of the identity in the data directory.
pub const IDENTITY_FILE: &str = "node.json";
/// Marker present while `swarm init` or `swarm leave` changes the data directory: a raft
/// directory without `node.json` is then the debris of the interrupted change.
pub const TRANSITION_FILE: &str = "transition.pending";

/// What `node.json` holds on disk: the identity and a checksum of its fields.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    node_id: Id,
    raft_id: u64,
    cluster_id: Id,
    addr: String,
    /// CRC32C of the other fields (see `NodeIdentity::checksum`), as 8 hex digits.
    checksum: String,
}

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
        let bad = |why: String| {
            ManagerError::Storage(format!(
                "{} {why}; the node will not start on an identity it cannot trust. Restore the file from a backup; nothing was changed",
                path.display()
            ))
        };
        let file: IdentityFile = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("is not a valid identity file ({e})")))?;
        let id = NodeIdentity {
            node_id: file.node_id,
            raft_id: file.raft_id,
            cluster_id: file.cluster_id,
            addr: file.addr,
        };
        if file.checksum != id.checksum() {
            return Err(bad(format!(
                "fails its checksum (it holds {}, its fields give {}): it was damaged or edited",
                file.checksum,
                id.checksum()
            )));
        }
        Ok(Some(id))
    }

    /// CRC32C over the fields, each length-prefixed, as 8 lowercase hex digits.
    fn checksum(&self) -> String {
        let mut crc = 0u32;
        for field in [
            self.node_id.to_string().as_bytes(),
            &self.raft_id.to_le_bytes(),
            self.cluster_id.to_string().as_bytes(),
            self.addr.as_bytes(),
        ] {
            crc = crc32c::crc32c_append(crc, &(field.len() as u64).to_le_bytes());
            crc = crc32c::crc32c_append(crc, field);
        }
        format!("{crc:08x}")
    }

    /// Writes the identity atomically.
    pub fn store(&self, data_dir: &Path) -> Result<(), ManagerError> {
        let file = IdentityFile {
            node_id: self.node_id,
            raft_id: self.raft_id,
            cluster_id: self.cluster_id,
            addr: self.addr.clone(),
            checksum: self.checksum(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
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

    #[test]
    fn an_edited_field_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let id = NodeIdentity {
            node_id: Id::from_u128(7),
            raft_id: 42,
            cluster_id: Id::from_u128(9),
            addr: "127.0.0.1:2377".into(),
        };
        id.store(dir.path()).unwrap();
        let text = std::fs::read_to_string(NodeIdentity::path(dir.path())).unwrap();
        for (from, to) in [("42", "43"), ("127.0.0.1", "127.0.0.2")] {
            std::fs::write(NodeIdentity::path(dir.path()), text.replacen(from, to, 1)).unwrap();
            let e = NodeIdentity::load(dir.path()).unwrap_err().to_string();
            assert!(e.contains("checksum"), "{e}");
        }
    }
}
