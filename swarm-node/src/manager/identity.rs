//! `node.json`: who this node is in its swarm (node id, raft id, cluster id, addresses, role,
//! and for a worker the managers it last knew).
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
//!
//! Files written before multi-host support lack `role`, `listen_addr` and `managers`: they are
//! read as a manager's, and their checksum covers the older fields only. Every file written now
//! has all of them, and the checksum covers them too.

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<LocalRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listen_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    managers: Option<Vec<KnownManager>>,
    /// CRC32C of the other fields (see `NodeIdentity::checksum`), as 8 hex digits.
    checksum: String,
}

/// The role this node runs as (what its certificate says once there is a CA).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalRole {
    /// Raft member, store, leader loops, API for cluster state; also runs tasks.
    #[default]
    Manager,
    /// Runs tasks only; follows the managers through the dispatcher.
    Worker,
}

impl LocalRole {
    fn as_str(self) -> &'static str {
        match self {
            LocalRole::Manager => "manager",
            LocalRole::Worker => "worker",
        }
    }
}

/// A manager this node knows of: where it is and who its certificate must name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownManager {
    /// The manager's node id, when known (the address given to `swarm join` comes without).
    pub node_id: Option<Id>,
    /// Its advertised address, `host:port`.
    pub addr: String,
}

/// This node's identity in its swarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node id (the node object's id; the CN of its certificate once there is a CA).
    pub node_id: Id,
    /// The raft member id (0 for a worker, which is no raft member).
    pub raft_id: u64,
    /// The cluster object's id.
    pub cluster_id: Id,
    /// The address other nodes reach this one on (`--advertise-addr`, `host:port`).
    pub addr: String,
    /// The role it runs as.
    pub role: LocalRole,
    /// The address its swarm listener binds (`--listen-addr`), when fixed by init or join.
    pub listen_addr: Option<String>,
    /// For a worker: the managers it last knew (it reconnects to them after a restart); a
    /// manager keeps this empty (its store knows them).
    pub managers: Vec<KnownManager>,
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
        let multihost = file.role.is_some();
        let id = NodeIdentity {
            node_id: file.node_id,
            raft_id: file.raft_id,
            cluster_id: file.cluster_id,
            addr: file.addr,
            role: file.role.unwrap_or_default(),
            listen_addr: file.listen_addr,
            managers: file.managers.unwrap_or_default(),
        };
        let expected = id.checksum(multihost);
        if file.checksum != expected {
            return Err(bad(format!(
                "fails its checksum (it holds {}, its fields give {expected}): it was damaged or edited",
                file.checksum,
            )));
        }
        Ok(Some(id))
    }

    /// A manager's identity as `swarm init` makes it.
    pub fn new_manager(node_id: Id, raft_id: u64, cluster_id: Id, addr: String) -> NodeIdentity {
        NodeIdentity {
            node_id,
            raft_id,
            cluster_id,
            addr,
            role: LocalRole::Manager,
            listen_addr: None,
            managers: Vec::new(),
        }
    }

    /// CRC32C over the fields, each length-prefixed, as 8 lowercase hex digits. `multihost`:
    /// the file has the role, listen address and managers (every file written now), which are
    /// covered too.
    fn checksum(&self, multihost: bool) -> String {
        let mut crc = 0u32;
        let mut add = |field: &[u8]| {
            crc = crc32c::crc32c_append(crc, &(field.len() as u64).to_le_bytes());
            crc = crc32c::crc32c_append(crc, field);
        };
        add(self.node_id.to_string().as_bytes());
        add(&self.raft_id.to_le_bytes());
        add(self.cluster_id.to_string().as_bytes());
        add(self.addr.as_bytes());
        if multihost {
            add(self.role.as_str().as_bytes());
            add(self.listen_addr.as_deref().unwrap_or("").as_bytes());
            add(&(self.managers.len() as u64).to_le_bytes());
            for m in &self.managers {
                add(m
                    .node_id
                    .map(|i| i.to_string())
                    .unwrap_or_default()
                    .as_bytes());
                add(m.addr.as_bytes());
            }
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
            role: Some(self.role),
            listen_addr: self.listen_addr.clone(),
            managers: Some(self.managers.clone()),
            checksum: self.checksum(true),
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
        let id = NodeIdentity::new_manager(
            Id::from_u128(7),
            42,
            Id::from_u128(9),
            "127.0.0.1:2377".into(),
        );
        id.store(dir.path()).unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(id));
        let worker = NodeIdentity {
            raft_id: 0,
            role: LocalRole::Worker,
            listen_addr: Some("0.0.0.0:2377".into()),
            managers: vec![KnownManager {
                node_id: Some(Id::from_u128(8)),
                addr: "10.0.0.1:2377".into(),
            }],
            ..NodeIdentity::new_manager(
                Id::from_u128(7),
                0,
                Id::from_u128(9),
                "10.0.0.2:2377".into(),
            )
        };
        worker.store(dir.path()).unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(worker));
        NodeIdentity::remove(dir.path()).unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), None);
        std::fs::write(NodeIdentity::path(dir.path()), b"{").unwrap();
        assert!(NodeIdentity::load(dir.path()).is_err());
    }

    #[test]
    fn an_edited_field_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut id = NodeIdentity::new_manager(
            Id::from_u128(7),
            42,
            Id::from_u128(9),
            "127.0.0.1:2377".into(),
        );
        id.managers.push(KnownManager {
            node_id: Some(Id::from_u128(8)),
            addr: "10.0.0.1:2377".into(),
        });
        id.store(dir.path()).unwrap();
        let text = std::fs::read_to_string(NodeIdentity::path(dir.path())).unwrap();
        for (from, to) in [
            ("42", "43"),
            ("127.0.0.1", "127.0.0.2"),
            ("\"manager\"", "\"worker\""),
            ("10.0.0.1", "10.0.0.9"),
        ] {
            std::fs::write(NodeIdentity::path(dir.path()), text.replacen(from, to, 1)).unwrap();
            let e = NodeIdentity::load(dir.path()).unwrap_err().to_string();
            assert!(e.contains("checksum"), "{e}");
        }
    }

    #[test]
    fn a_file_from_before_multihost_reads_as_a_manager() {
        let dir = tempfile::tempdir().unwrap();
        let id = NodeIdentity::new_manager(
            Id::from_u128(7),
            42,
            Id::from_u128(9),
            "127.0.0.1:2377".into(),
        );
        let old = serde_json::json!({
            "node_id": id.node_id,
            "raft_id": 42,
            "cluster_id": id.cluster_id,
            "addr": "127.0.0.1:2377",
            "checksum": id.checksum(false),
        });
        std::fs::write(NodeIdentity::path(dir.path()), old.to_string()).unwrap();
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(id));
    }
}
