//! Sealing, key hierarchy and autolock for swarm managers. **Pure**: no I/O, no files, no clock, and
//! no randomness that is not passed in (`&mut impl rand_core::CryptoRngCore`).
//!
//! * Records (raft log entries, snapshot chunks, wrapped keys) are sealed with XChaCha20-Poly1305, a
//!   fresh 24-byte random nonce each, under a versioned header that names the key and the record's
//!   [`RecordPlace`]; the whole header is authenticated, so a record cannot be modified, moved to
//!   another index, swapped or replayed without a typed [`Error`].
//! * Key hierarchy: a [`Dek`] per manager seals the raft log and snapshots; a [`Kek`] wraps the DEK and
//!   the node's TLS private key. Autolock off: the KEK is stored beside what it wraps. Autolock on: the
//!   KEK is the cluster [`UnlockKey`] (`SWMKEY-1-...`) stretched with argon2id ([`KdfParams`]), never
//!   stored.
//! * [`KeyManager`] is the state machine for DEK rotation, KEK rotation and autolock; it returns the
//!   [`KeyFile`] to write and never touches a disk itself. swarm-raft and swarm-node only call it.
//! * Key material ([`Dek`], [`Kek`], [`UnlockKey`], [`SecretBytes`]) is zeroized on drop, prints as
//!   `[REDACTED]`, and is not `Serialize` (this crate does not depend on serde at all): it becomes
//!   bytes only through sealing, wrapping or [`KeyFile::encode`].
//!
//! ```
//! use swarm_secrets::{KeyManager, NewKek, RecordPlace, Startup, KeyFile};
//! # use rand_chacha::rand_core::SeedableRng;
//! # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
//! let (keys, file) = KeyManager::new(NewKek::Stored, &mut rng)?;
//! let on_disk = file.encode()?; // swarm-raft writes this atomically, then:
//! let mut keys = keys;
//! keys.handle_persisted(file.generation);
//!
//! let place = RecordPlace::LogEntry { index: 1, term: 1 };
//! let sealed = keys.seal(&place, b"raft entry", &mut rng)?;
//!
//! // After a restart:
//! let Startup::Unlocked(keys) = KeyManager::restart(KeyFile::decode(&on_disk)?)? else { unreachable!() };
//! assert_eq!(keys.open(&place, &sealed)?.expose(), b"raft entry");
//! # Ok::<(), swarm_secrets::Error>(())
//! ```
//!
//! # Layout
//!
//! * [`record`]: the sealed record format (v1), [`RecordHeader::peek`].
//! * `place`: [`RecordPlace`] and [`KeyPurpose`], and their canonical encoding.
//! * `keys`: [`Dek`], [`Kek`], [`KeyId`].
//! * `unlock_key`: [`UnlockKey`] parsing and formatting.
//! * [`kdf`]: argon2id stretching, [`KdfParams`] (chosen cost and why), [`Salt`].
//! * `key_file`: [`KeyFile`], what a manager stores on disk, and its encoding.
//! * `manager`: [`KeyManager`], the state machine; `startup`: [`Startup`], [`LockedKeys`], [`NewKek`];
//!   `status`: [`KeyStatus`].
//! * `secret`: [`SecretBytes`].
//! * `error`: [`Error`], [`UnlockKeyFormatError`].
//! * `fuzzing` (feature `fuzzing`): entry points shared by the fuzz targets and the corpus replay
//!   test.
//! * `codec` (private): bounds-checked readers for the hand-written formats.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod codec;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod kdf;
mod key_file;
mod keys;
mod manager;
mod place;
pub mod record;
mod secret;
mod startup;
mod status;
mod unlock_key;

pub use error::{Error, UnlockKeyFormatError};
pub use kdf::{KdfParams, Salt};
pub use key_file::{
    KeyFile, PendingDek, StoredKek, WrappedSecret, KEY_FILE_MAGIC, KEY_FILE_VERSION,
};
pub use keys::{Dek, Kek, KeyId, KEY_LEN};
pub use manager::KeyManager;
pub use place::{KeyPurpose, RecordPlace};
pub use rand_core;
pub use record::{RecordHeader, RECORD_VERSION};
pub use secret::SecretBytes;
pub use startup::{LockedKeys, NewKek, Startup};
pub use status::{DekPhase, KeyStatus};
pub use unlock_key::{UnlockKey, UNLOCK_KEY_PREFIX};
