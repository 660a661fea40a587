//! The manager's key hierarchy on disk: swarm-secrets' [`KeyManager`] plus the `keys` file it
//! persists (written atomically before any record is sealed with a new key).
//!
//! Autolock off: the KEK is stored in the key file and the node starts unlocked. Autolock on: the
//! key file holds only the argon2id salt and parameters; [`Keyring::load`] refuses with
//! [`StartError::Locked`] until the unlock key is given, and a wrong key is refused with
//! [`StartError::WrongUnlockKey`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rand::rngs::StdRng;
use rand::SeedableRng;
use swarm_secrets::{
    KdfParams, KeyFile, KeyManager, KeyStatus, NewKek, RecordPlace, SecretBytes, Startup, UnlockKey,
};

use crate::disk::{Disk, OsDisk};
use crate::error::{KeyChangeError, StartError, StorageFault};
use crate::files::{atomic_write_on, read_optional_on};

/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "keys";

/// A [`KeyManager`] bound to its key file. `seal`/`open` take a shared lock; transitions an
/// exclusive one, and write the next key file before they return.
pub struct Keyring {
    manager: RwLock<KeyManager>,
    path: PathBuf,
    rng: Mutex<StdRng>,
    disk: Arc<dyn Disk>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .field("status", &self.status())
            .finish()
    }
}

impl Keyring {
    /// Opens the key file in `dir`, or creates one (autolock on if `create_with` is given).
    ///
    /// An existing key file with autolock on needs `unlock`; without it the answer is
    /// [`StartError::Locked`], with a wrong one [`StartError::WrongUnlockKey`].
    pub fn load(
        dir: &Path,
        unlock: Option<&UnlockKey>,
        create_with: Option<&UnlockKey>,
        kdf: KdfParams,
    ) -> Result<Keyring, StartError> {
        Keyring::load_on(Arc::new(OsDisk), dir, unlock, create_with, kdf)
    }

    /// [`Keyring::load`] on `disk` (the key file is written there too).
    pub fn load_on(
        disk: Arc<dyn Disk>,
        dir: &Path,
        unlock: Option<&UnlockKey>,
        create_with: Option<&UnlockKey>,
        kdf: KdfParams,
    ) -> Result<Keyring, StartError> {
        let path = dir.join(KEY_FILE);
        let mut rng = StdRng::from_entropy();
        let keys_err = |source| StorageFault::Keys {
            file: path.clone(),
            source,
        };
        let manager = match read_optional_on(&*disk, &path)? {
            Some(bytes) => {
                let file = KeyFile::decode(&bytes).map_err(keys_err)?;
                match KeyManager::restart(file).map_err(keys_err)? {
                    Startup::Unlocked(m) => *m,
                    Startup::Locked(locked) => {
                        let key = unlock.ok_or(StartError::Locked)?;
                        locked.unlock(key).map_err(StartError::WrongUnlockKey)?
                    }
                }
            }
            None => {
                let kek = match create_with {
                    Some(key) => NewKek::UnlockKey { key, kdf },
                    None => NewKek::Stored,
                };
                let (mut m, file) = KeyManager::new(kek, &mut rng).map_err(keys_err)?;
                write_key_file(&*disk, &path, &file)?;
                m.handle_persisted(file.generation);
                m
            }
        };
        Ok(Keyring {
            manager: RwLock::new(manager),
            path,
            rng: Mutex::new(rng),
            disk,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyManager> {
        self.manager.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals a record with the current sealing DEK.
    pub fn seal(
        &self,
        place: &RecordPlace,
        plaintext: &[u8],
        rng: &mut StdRng,
    ) -> Result<Vec<u8>, swarm_secrets::Error> {
        self.read().seal(place, plaintext, rng)
    }

    /// Opens a record sealed by a DEK this manager holds.
    pub fn open(
        &self,
        place: &RecordPlace,
        record: &[u8],
    ) -> Result<SecretBytes, swarm_secrets::Error> {
        self.read().open(place, record)
    }

    /// The disk the key file is on.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// A summary for status output and tests (ids only, no key material).
    pub fn status(&self) -> KeyStatus {
        self.read().status()
    }

    /// Runs a transition and persists the key file it returns (if any), then reports it durable.
    fn transition(
        &self,
        f: impl FnOnce(&mut KeyManager, &mut StdRng) -> Result<Option<KeyFile>, swarm_secrets::Error>,
    ) -> Result<(), KeyChangeError> {
        let mut m = self.manager.write().unwrap_or_else(|e| e.into_inner());
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = f(&mut m, &mut rng)? {
            write_key_file(&*self.disk, &self.path, &file)?;
            m.handle_persisted(file.generation);
        }
        Ok(())
    }

    /// Turns autolock on (or rotates the unlock key): re-wraps the DEKs with a KEK stretched from
    /// `key`. The log keeps being written throughout; only the key file changes.
    pub fn set_unlock_key(&self, key: &UnlockKey, kdf: KdfParams) -> Result<(), KeyChangeError> {
        self.transition(|m, rng| m.rotate_kek(NewKek::UnlockKey { key, kdf }, rng).map(Some))
    }

    /// Turns autolock off: a fresh random KEK is stored beside the DEKs it wraps.
    pub fn disable_autolock(&self) -> Result<(), KeyChangeError> {
        self.transition(|m, rng| m.rotate_kek(NewKek::Stored, rng).map(Some))
    }

    /// Whether a DEK rotation should begin.
    pub fn needs_dek_rotation(&self) -> bool {
        self.read().needs_dek_rotation()
    }

    /// Asks for a DEK rotation (it begins at the next [`Keyring::begin_dek_rotation`]).
    pub fn request_dek_rotation(&self) -> Result<(), KeyChangeError> {
        self.transition(|m, rng| m.request_dek_rotation(rng).map(Some))
    }

    /// Starts sealing with a fresh DEK; records up to `last_written_index` keep the old one.
    pub fn begin_dek_rotation(&self, last_written_index: u64) -> Result<(), KeyChangeError> {
        self.transition(|m, rng| m.begin_dek_rotation(last_written_index, rng).map(Some))
    }

    /// Reports that no record at or below `covered_index` will be read again (a snapshot covers it
    /// and the log before it is purged); may retire the old DEK.
    pub fn handle_snapshot(&self, covered_index: u64) -> Result<(), KeyChangeError> {
        self.transition(|m, rng| m.handle_snapshot(covered_index, rng))
    }
}

fn write_key_file(disk: &dyn Disk, path: &Path, file: &KeyFile) -> Result<(), StorageFault> {
    let bytes = file.encode().map_err(|source| StorageFault::Keys {
        file: path.to_path_buf(),
        source,
    })?;
    atomic_write_on(disk, path, &bytes)
}
