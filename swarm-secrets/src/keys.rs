//! The two symmetric key types, [`Dek`] and [`Kek`], and their public [`KeyId`].
//!
//! * A **DEK** (data encryption key) seals raft log entries and snapshots.
//! * A **KEK** (key encryption key) wraps DEKs and other secrets such as the node's TLS private key.
//!   With autolock off it is random and stored beside what it wraps; with autolock on it is stretched
//!   from the cluster unlock key and never stored (see [`crate::KeyManager`]).
//!
//! Both are 32 random bytes for XChaCha20-Poly1305, zeroized on drop, printed as `[REDACTED]`, and not
//! `Serialize`: the only ways to bytes are sealing ([`Dek::seal`]) and wrapping ([`Kek::wrap`], or the
//! key file written by the key manager).
//!
//! A key's id is the first 4 bytes of `SHA-256("swarm-secrets/key-id/v1" || role || key)`, where role
//! is 1 for a DEK and 2 for a KEK. It is written in clear in every record header so the right key can
//! be picked during a rotation and a retired key reported as such. Revealing 32 bits of a hash of a
//! 256-bit random key leaves 224 bits unknown, so the id does not weaken the key.

use std::fmt;

use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::place::{KeyPurpose, RecordPlace};
use crate::record;
use crate::{Error, SecretBytes};

/// Length in bytes of every DEK, KEK and unlock key.
pub const KEY_LEN: usize = 32;

/// Public identifier of a key, stored in clear in record headers (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(u32);

impl KeyId {
    /// Builds an id from its numeric value (as found in a record header).
    pub const fn from_u32(value: u32) -> Self {
        Self(value)
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }

    pub(crate) fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:08x})", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

#[derive(Clone, Copy)]
enum Role {
    Dek = 1,
    Kek = 2,
}

/// 32 secret bytes plus their id; the common part of [`Dek`] and [`Kek`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct KeyMaterial {
    #[zeroize(skip)]
    id: KeyId,
    bytes: [u8; KEY_LEN],
}

impl KeyMaterial {
    fn new(role: Role, bytes: [u8; KEY_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"swarm-secrets/key-id/v1")
            .chain_update([role as u8])
            .chain_update(bytes)
            .finalize();
        let id = KeyId(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]));
        Self { id, bytes }
    }

    fn generate(role: Role, rng: &mut (impl CryptoRngCore + ?Sized)) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        let key = Self::new(role, bytes);
        bytes.zeroize();
        key
    }

    pub(crate) fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// A cipher instance; it zeroizes its copy of the key when dropped.
    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

/// A data encryption key: seals and opens records (raft log entries, snapshots).
///
/// ```
/// use swarm_secrets::{Dek, RecordPlace};
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
/// # use rand_chacha::rand_core::SeedableRng;
/// let dek = Dek::generate(&mut rng);
/// let place = RecordPlace::LogEntry { index: 7, term: 2 };
/// let sealed = dek.seal(&place, b"entry", &mut rng)?;
/// assert_eq!(dek.open(&place, &sealed)?.expose(), b"entry");
/// assert!(dek.open(&RecordPlace::LogEntry { index: 8, term: 2 }, &sealed).is_err());
/// # Ok::<(), swarm_secrets::Error>(())
/// ```
#[derive(Clone)]
pub struct Dek(KeyMaterial);

impl Dek {
    /// A fresh random key.
    pub fn generate(rng: &mut (impl CryptoRngCore + ?Sized)) -> Self {
        Self(KeyMaterial::generate(Role::Dek, rng))
    }

    /// A key from known bytes (test vectors, or bytes unwrapped by the caller). The caller should wipe
    /// its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(KeyMaterial::new(Role::Dek, bytes))
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.0.id
    }

    /// Seals `plaintext` for `place` with a fresh random nonce (see [`crate::record`] for the format).
    pub fn seal(
        &self,
        place: &RecordPlace,
        plaintext: &[u8],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, Error> {
        record::seal(&self.0, place, plaintext, rng)
    }

    /// Opens a record sealed by this key for `place`. Returns the whole plaintext or an error, never a
    /// part of it.
    pub fn open(&self, place: &RecordPlace, record: &[u8]) -> Result<SecretBytes, Error> {
        record::open(|id| (id == self.0.id).then_some(&self.0), place, record)
    }

    pub(crate) fn material(&self) -> &KeyMaterial {
        &self.0
    }
}

/// A key encryption key: wraps DEKs and other secrets (the node's TLS private key).
#[derive(Clone)]
pub struct Kek(KeyMaterial);

impl Kek {
    /// A fresh random key (autolock off: it is stored in the key file).
    pub fn generate(rng: &mut (impl CryptoRngCore + ?Sized)) -> Self {
        Self(KeyMaterial::generate(Role::Kek, rng))
    }

    /// A key from known bytes (test vectors, the stored KEK, or the argon2id output).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(KeyMaterial::new(Role::Kek, bytes))
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.0.id
    }

    /// Wraps `secret` for `purpose`: a sealed record whose place is
    /// [`RecordPlace::WrappedKey`]`{ purpose }`.
    pub fn wrap(
        &self,
        purpose: &KeyPurpose,
        secret: &[u8],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, Error> {
        let place = RecordPlace::WrappedKey {
            purpose: purpose.clone(),
        };
        record::seal(&self.0, &place, secret, rng)
    }

    /// Unwraps bytes produced by [`Kek::wrap`] with the same purpose.
    pub fn unwrap(&self, purpose: &KeyPurpose, wrapped: &[u8]) -> Result<SecretBytes, Error> {
        let place = RecordPlace::WrappedKey {
            purpose: purpose.clone(),
        };
        record::open(|id| (id == self.0.id).then_some(&self.0), &place, wrapped)
    }

    /// Wraps a DEK under `purpose` (the current or pending slot).
    pub(crate) fn wrap_dek(
        &self,
        purpose: &KeyPurpose,
        dek: &Dek,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, Error> {
        self.wrap(purpose, dek.0.bytes(), rng)
    }

    /// Unwraps a DEK; an authentic wrap of something that is not 32 bytes is a malformed key file.
    pub(crate) fn unwrap_dek(&self, purpose: &KeyPurpose, wrapped: &[u8]) -> Result<Dek, Error> {
        let secret = self.unwrap(purpose, wrapped)?;
        let bytes: [u8; KEY_LEN] =
            secret
                .expose()
                .try_into()
                .map_err(|_| Error::MalformedKeyFile {
                    reason: "a wrapped DEK is not 32 bytes long",
                })?;
        Ok(Dek::from_bytes(bytes))
    }

    pub(crate) fn material(&self) -> &KeyMaterial {
        &self.0
    }
}

macro_rules! redacted {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[REDACTED]")
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[REDACTED]")
            }
        }
    )*};
}
redacted!(Dek, Kek);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_role_and_bytes() {
        let a = Dek::from_bytes([1; 32]);
        assert_eq!(a.id(), Dek::from_bytes([1; 32]).id());
        assert_ne!(a.id(), Dek::from_bytes([2; 32]).id());
        assert_ne!(a.id(), Kek::from_bytes([1; 32]).id());
    }

    #[test]
    fn keys_print_redacted() {
        let d = Dek::from_bytes([7; 32]);
        let k = Kek::from_bytes([7; 32]);
        for s in [
            format!("{d:?}"),
            format!("{d}"),
            format!("{k:?}"),
            format!("{k}"),
        ] {
            assert_eq!(s, "[REDACTED]");
        }
        assert_eq!(format!("{:?}", KeyId::from_u32(0xab)), "KeyId(000000ab)");
    }

    #[test]
    fn dek_unwrap_requires_32_bytes() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([0; 32]);
        use rand_chacha::rand_core::SeedableRng;
        let kek = Kek::from_bytes([3; 32]);
        let wrapped = kek.wrap(&KeyPurpose::RaftDek, b"short", &mut rng).unwrap();
        assert!(matches!(
            kek.unwrap_dek(&KeyPurpose::RaftDek, &wrapped),
            Err(Error::MalformedKeyFile { .. })
        ));
    }
}
