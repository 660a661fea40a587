//! The cluster object: `docker swarm update`, autolock and the unlock key.
//!
//! As in SwarmKit, autolock is a field of the cluster spec and the unlock key lives in the cluster
//! object (`unlock_keys`, subsystem `manager`): turning autolock on generates a key, turning it off
//! drops it, and `rotateManagerUnlockKey` replaces it. The daemon watches the cluster object and
//! re-wraps its keys when the flag or the key changes; this layer only writes the object.

use std::sync::Arc;

use rand_core::OsRng;
use swarm_core::objects::cluster::{ClusterSpec, EncryptionKey, RootCa, DEFAULT_CLUSTER_NAME};
use swarm_core::validate::{validate_cluster_spec, MIN_NODE_CERT_EXPIRY};
use swarm_core::{Cluster, SecretData, Version};
use swarm_net::JoinToken;
use swarm_secrets::UnlockKey;
use zeroize::Zeroizing;

use super::{random_bytes, Control, ControlError};

/// `EncryptionKey::subsystem` of the autolock unlock key.
pub const MANAGER_SUBSYSTEM: &str = "manager";
/// Bytes of an unlock key.
const UNLOCK_KEY_LEN: usize = 32;

/// What `docker swarm update` / `docker swarm join-token --rotate` / `docker swarm unlock-key
/// --rotate` ask to rotate besides the spec change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// `rotateWorkerToken`.
    pub worker_token: bool,
    /// `rotateManagerToken`.
    pub manager_token: bool,
    /// `rotateManagerUnlockKey`.
    pub manager_unlock_key: bool,
}

impl Control {
    /// The cluster object.
    pub fn cluster(&self) -> Result<Arc<Cluster>, ControlError> {
        self.store()
            .view(|s| s.cluster().cloned())
            .ok_or_else(|| ControlError::not_found("cluster", DEFAULT_CLUSTER_NAME))
    }

    /// `docker swarm update`: replaces the cluster spec at `version` and applies `rotation`.
    pub async fn update_cluster(
        &self,
        version: u64,
        spec: ClusterSpec,
        rotation: Rotation,
    ) -> Result<(), ControlError> {
        if spec.ca.node_cert_expiry < MIN_NODE_CERT_EXPIRY {
            // SwarmKit's wording (Go's spelling of one hour).
            return Err(ControlError::InvalidArgument(
                "minimum certificate expiry time is: 1h0m0s".into(),
            ));
        }
        validate_cluster_spec(&spec)?;
        self.commit(|tx| {
            let cur = tx
                .committed()
                .cluster()
                .cloned()
                .ok_or_else(|| ControlError::not_found("cluster", DEFAULT_CLUSTER_NAME))?;
            if spec.annotations.name != cur.spec.annotations.name {
                return Err(ControlError::InvalidArgument(
                    "modification of cluster name is not allowed".into(),
                ));
            }
            let mut c = (*cur).clone();
            c.spec = spec;
            if rotation.worker_token {
                c.root_ca.join_tokens.worker = new_join_token(&cur.root_ca)?;
            }
            if rotation.manager_token {
                c.root_ca.join_tokens.manager = new_join_token(&cur.root_ca)?;
            }
            c.unlock_keys = next_unlock_keys(
                &cur.unlock_keys,
                c.spec.encryption.auto_lock_managers,
                rotation.manager_unlock_key,
            );
            c.meta.version = Version(version);
            tx.update(c)?;
            Ok(())
        })
        .await
    }

    /// `docker swarm unlock-key`: the current unlock key as `SWMKEY-1-...`, or `None` when autolock
    /// is off. Only managers may read it.
    pub fn unlock_key(&self) -> Result<Option<Zeroizing<String>>, ControlError> {
        let cluster = self.cluster()?;
        if !cluster.spec.encryption.auto_lock_managers {
            return Ok(None);
        }
        Ok(cluster
            .unlock_keys
            .iter()
            .find(|k| k.subsystem == MANAGER_SUBSYSTEM)
            .and_then(|k| format_unlock_key(&k.key)))
    }
}

/// A fresh join token for the cluster's root CA: a new random secret, the digest of the root CA
/// bundle (the same digest the current tokens carry while the root is unchanged).
fn new_join_token(root: &RootCa) -> Result<String, ControlError> {
    if root.ca_cert_pem.trim().is_empty() {
        return Err(ControlError::Internal(
            "cannot rotate the join token: the cluster has no root CA certificate yet".into(),
        ));
    }
    let token = JoinToken::generate(root.ca_cert_pem.as_bytes(), &mut OsRng);
    // A String is what the cluster object stores; the temporary text is wiped on drop.
    let text = token.expose_text();
    Ok(String::from(text.as_str()))
}

/// SwarmKit's rule: without autolock no manager key is kept; with autolock a missing key is
/// generated and a rotation replaces it (with a higher lamport time). Other subsystems' keys stay.
fn next_unlock_keys(cur: &[EncryptionKey], autolock: bool, rotate: bool) -> Vec<EncryptionKey> {
    let mut keys: Vec<EncryptionKey> = Vec::with_capacity(cur.len() + 1);
    let mut have_manager_key = false;
    for k in cur {
        if k.subsystem == MANAGER_SUBSYSTEM {
            if !autolock {
                continue;
            }
            have_manager_key = true;
            if rotate {
                keys.push(EncryptionKey {
                    subsystem: MANAGER_SUBSYSTEM.into(),
                    key: SecretData::new(random_bytes(UNLOCK_KEY_LEN)),
                    lamport_time: k.lamport_time.saturating_add(1),
                });
                continue;
            }
        }
        keys.push(k.clone());
    }
    if autolock && !have_manager_key {
        let lamport = cur.iter().map(|k| k.lamport_time).max().unwrap_or(0);
        keys.push(EncryptionKey {
            subsystem: MANAGER_SUBSYSTEM.into(),
            key: SecretData::new(random_bytes(UNLOCK_KEY_LEN)),
            lamport_time: lamport.saturating_add(1),
        });
    }
    keys
}

/// `SWMKEY-1-` + unpadded standard base64 of the 32 key bytes.
pub(crate) fn format_unlock_key(key: &SecretData) -> Option<Zeroizing<String>> {
    let bytes: [u8; UNLOCK_KEY_LEN] = key.expose().try_into().ok()?;
    Some(UnlockKey::from_bytes(bytes).expose_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_need_a_root_ca_and_keep_its_digest() {
        let empty = RootCa::default();
        assert!(matches!(
            new_join_token(&empty),
            Err(ControlError::Internal(m)) if m.contains("no root CA certificate")
        ));
        let root = RootCa {
            ca_cert_pem: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into(),
            ..Default::default()
        };
        let a = JoinToken::parse(&new_join_token(&root).unwrap()).unwrap();
        let b = JoinToken::parse(&new_join_token(&root).unwrap()).unwrap();
        assert_eq!(a.ca_digest(), b.ca_digest());
        assert_eq!(
            a.ca_digest(),
            &swarm_net::token::ca_digest(root.ca_cert_pem.as_bytes())
        );
        assert_ne!(*a.expose_text(), *b.expose_text());
    }

    #[test]
    fn unlock_key_lifecycle() {
        let on = next_unlock_keys(&[], true, false);
        assert_eq!(on.len(), 1);
        let text = format_unlock_key(&on[0].key).expect("32 bytes");
        assert!(text.starts_with("SWMKEY-1-"));
        assert!(UnlockKey::parse(&text).is_ok());
        // Keeping autolock on keeps the key.
        assert_eq!(next_unlock_keys(&on, true, false), on);
        // Rotation replaces it.
        let rotated = next_unlock_keys(&on, true, true);
        assert_ne!(rotated[0].key, on[0].key);
        assert!(rotated[0].lamport_time > on[0].lamport_time);
        // Turning autolock off drops it.
        assert!(next_unlock_keys(&rotated, false, false).is_empty());
    }
}
