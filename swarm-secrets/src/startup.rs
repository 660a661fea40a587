//! What a manager's keys look like at start ([`Startup`], [`LockedKeys`]) and which KEK to switch to
//! ([`NewKek`]); the transitions themselves live on [`KeyManager`].

use crate::kdf::{KdfParams, Salt};
use crate::key_file::KeyFile;
use crate::manager::KeyManager;
use crate::{Error, UnlockKey};

/// Which KEK a [`KeyManager`] should use from now on.
#[derive(Debug)]
pub enum NewKek<'a> {
    /// Autolock off: a fresh random KEK, stored in the key file beside what it wraps.
    Stored,
    /// Autolock on: the KEK is argon2id(unlock key, fresh salt) and is never stored.
    UnlockKey {
        /// The cluster unlock key.
        key: &'a UnlockKey,
        /// Argon2id cost ([`KdfParams::RECOMMENDED`] outside tests).
        kdf: KdfParams,
    },
}

impl<'a> NewKek<'a> {
    /// Autolock on with the recommended argon2id cost.
    pub fn unlock_key(key: &'a UnlockKey) -> Self {
        Self::UnlockKey {
            key,
            kdf: KdfParams::RECOMMENDED,
        }
    }
}

/// What [`KeyManager::restart`] found.
#[derive(Debug)]
pub enum Startup {
    /// Autolock off: ready to seal and open.
    Unlocked(Box<KeyManager>),
    /// Autolock on: the manager must refuse to serve until [`LockedKeys::unlock`] succeeds.
    Locked(LockedKeys),
}

/// A key file with autolock on, waiting for the unlock key.
#[derive(Debug)]
pub struct LockedKeys {
    file: KeyFile,
    kdf: KdfParams,
    salt: Salt,
}

impl LockedKeys {
    pub(crate) fn new(file: KeyFile, kdf: KdfParams, salt: Salt) -> Self {
        Self { file, kdf, salt }
    }

    /// What a locked manager answers to every request (Docker's wording).
    pub const MESSAGE: &'static str =
        "swarm is encrypted and needs to be unlocked before it can be used";

    /// Stretches `key` (argon2id, deliberately slow) and opens the key file with it. On
    /// [`Error::WrongUnlockKey`] the keys stay locked and another key may be tried.
    pub fn unlock(&self, key: &UnlockKey) -> Result<KeyManager, Error> {
        let kek = key.stretch(&self.kdf, &self.salt)?;
        if kek.id() != self.file.kek_id {
            return Err(Error::WrongUnlockKey);
        }
        KeyManager::from_file(self.file.clone(), kek)
    }

    /// The key file being unlocked.
    pub fn key_file(&self) -> &KeyFile {
        &self.file
    }
}
