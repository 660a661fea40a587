//! A node's certificates on disk: `<data_dir>/certificates/`.
//!
//! - `swarm-node.crt`: the chain, PEM (public).
//! - `swarm-root-ca.crt`: the trusted roots, PEM (public).
//! - `swarm-node.key.sealed`: the node's private key, sealed with a KEK ([`PrivateKey::wrap`],
//!   XChaCha20-Poly1305 bound to the TLS-key purpose); never written in plaintext.
//! - `swarm-node.kek`: the 32-byte KEK, mode 0600. SwarmKit keeps a worker's TLS key unencrypted
//!   in a 0600 file when autolock is off; keeping the KEK in a 0600 file next to a sealed key is
//!   equivalent against other users and keeps one on-disk format for workers and managers.
//!
//! **Known gap (autolock):** the daemon (`net::node::save_material` / `load_material`) seals
//! every node's key with this local KEK, managers with autolock included. Autolock therefore
//! covers the raft log and snapshots (the store, the root CA key in the cluster object, secrets)
//! but not the manager's own TLS key: a stolen disk yields that key, not the cluster's data.
//! SwarmKit seals a manager's TLS key with the unlock key; doing so here needs the key loaded
//! after `swarm unlock` and re-sealed on `--autolock` changes and unlock-key rotation.
//! [`CertDir::save`] and [`CertDir::load`] already take the KEK as an argument for that.
//!
//! Every file is written with [`swarm_raft::files::atomic_write`] (temporary file, fsync, rename,
//! directory fsync; mode 0600).

use std::path::{Path, PathBuf};

use rand_core::CryptoRngCore;
use swarm_net::pki::bundle::{parse_pem, to_pem};
use swarm_net::pki::{KeySlot, PrivateKey, TlsMaterial};
use swarm_raft::files::atomic_write;
use swarm_raft::StorageFault;
use swarm_secrets::Kek;
use zeroize::Zeroizing;

/// Directory under the data directory.
pub const CERT_DIR: &str = "certificates";
/// The chain file.
pub const CHAIN_FILE: &str = "swarm-node.crt";
/// The roots file.
pub const ROOTS_FILE: &str = "swarm-root-ca.crt";
/// The sealed key file.
pub const KEY_FILE: &str = "swarm-node.key.sealed";
/// The local KEK file.
pub const KEK_FILE: &str = "swarm-node.kek";

/// Why certificates could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertStoreError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] StorageFault),
    /// A file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file's content is not what was written (corrupt, or sealed with another KEK).
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A node's certificate directory.
#[derive(Clone, Debug)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// The certificate directory of the node whose data directory is `data_dir`.
    pub fn new(data_dir: &Path) -> CertDir {
        CertDir {
            dir: data_dir.join(CERT_DIR),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn create(&self) -> Result<(), CertStoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| CertStoreError::Read {
            path: self.dir.clone(),
            source: e,
        })
    }

    /// Writes `material`: chain and roots in PEM, the key sealed with `kek`. The key file is
    /// written last, so a crash leaves either the old key (with possibly the new chain, which the
    /// load refuses as a mismatch) or the whole new set.
    pub fn save(
        &self,
        material: &TlsMaterial,
        kek: &Kek,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<(), CertStoreError> {
        self.create()?;
        atomic_write(
            &self.dir.join(CHAIN_FILE),
            to_pem(material.chain()).as_bytes(),
        )?;
        atomic_write(
            &self.dir.join(ROOTS_FILE),
            to_pem(material.roots()).as_bytes(),
        )?;
        let sealed = material
            .key()
            .wrap(kek, KeySlot::NodeTls, rng)
            .map_err(|e| self.corrupt(KEY_FILE, e.to_string()))?;
        atomic_write(&self.dir.join(KEY_FILE), &sealed)?;
        Ok(())
    }

    /// Reads back what [`CertDir::save`] wrote; `Ok(None)` when no certificate is stored.
    pub fn load(&self, kek: &Kek) -> Result<Option<TlsMaterial>, CertStoreError> {
        let Some(chain) = self.read_opt(CHAIN_FILE)? else {
            return Ok(None);
        };
        let roots = self
            .read_opt(ROOTS_FILE)?
            .ok_or_else(|| self.corrupt(ROOTS_FILE, "missing next to the chain".into()))?;
        let sealed = self
            .read_opt(KEY_FILE)?
            .ok_or_else(|| self.corrupt(KEY_FILE, "missing next to the chain".into()))?;
        let chain = parse_pem(&chain).map_err(|e| self.corrupt(CHAIN_FILE, e.to_string()))?;
        let roots = parse_pem(&roots).map_err(|e| self.corrupt(ROOTS_FILE, e.to_string()))?;
        let key = PrivateKey::unwrap(kek, KeySlot::NodeTls, &sealed)
            .map_err(|e| self.corrupt(KEY_FILE, e.to_string()))?;
        TlsMaterial::new(chain, key, roots)
            .map(Some)
            .map_err(|e| self.corrupt(CHAIN_FILE, e.to_string()))
    }

    /// The node's local KEK from [`KEK_FILE`] (mode 0600), created on first use.
    pub fn local_kek(
        &self,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Kek, CertStoreError> {
        if let Some(bytes) = self.read_opt(KEK_FILE)? {
            let bytes = Zeroizing::new(bytes);
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                self.corrupt(KEK_FILE, format!("{} bytes, expected 32", bytes.len()))
            })?;
            return Ok(Kek::from_bytes(key));
        }
        self.create()?;
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *key);
        atomic_write(&self.dir.join(KEK_FILE), &*key)?;
        Ok(Kek::from_bytes(*key))
    }

    fn read_opt(&self, name: &str) -> Result<Option<Vec<u8>>, CertStoreError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CertStoreError::Read { path, source: e }),
        }
    }

    fn corrupt(&self, name: &str, reason: String) -> CertStoreError {
        CertStoreError::Corrupt {
            path: self.dir.join(name),
            reason,
        }
    }
}
