//! [`KeyFile`]: what a manager keeps on disk for its keys, and its byte encoding.
//!
//! swarm-raft writes [`KeyFile::encode`]'s bytes to one file (atomically: write a temporary file,
//! fsync, rename) whenever [`crate::KeyManager`] returns a new `KeyFile`, and hands
//! [`KeyFile::decode`]'s result to [`crate::KeyManager::restart`] on start. Which fields are present in
//! which state is described on [`crate::KeyManager`].
//!
//! Encoding, version 1 (integers big-endian, blobs as `u32` length + bytes):
//!
//! ```text
//! "SWKF" | version u8 = 1 | generation u64 | flags u8 | kek id u32
//! | autolock on:  argon2id memory_kib u32, iterations u32, parallelism u32, salt [16]
//!   autolock off: the KEK itself [32]
//! | current DEK, wrapped (blob)
//! | if pending:   boundary u64, pending DEK, wrapped (blob)
//! | secret count u32, then per secret: purpose (place encoding), wrapped secret (blob)
//! ```
//!
//! flags: bit 0 autolock, bit 1 pending DEK present, bit 2 DEK rotation requested; other bits must be
//! zero. Nothing may follow the last secret.
//!
//! The wrapped blobs are sealed records (see [`crate::record`]) and so authenticated; the clear fields
//! (generation, flags, boundary, salt, parameters) are not. Someone who can rewrite this file can at
//! worst make the node refuse to start or retire an old DEK early, which they could equally achieve by
//! deleting files; they cannot learn or substitute a key.

use std::fmt;

use crate::codec::{put_len_prefixed, Reader};
use crate::kdf::{KdfParams, Salt, SALT_LEN};
use crate::keys::{Kek, KeyId, KEY_LEN};
use crate::place::KeyPurpose;
use crate::Error;

/// First four bytes of a key file.
pub const KEY_FILE_MAGIC: [u8; 4] = *b"SWKF";
/// The key file version this build writes and reads.
pub const KEY_FILE_VERSION: u8 = 1;

const FLAG_AUTOLOCK: u8 = 1;
const FLAG_PENDING: u8 = 2;
const FLAG_ROTATION_REQUESTED: u8 = 4;

/// Everything a manager stores for its keys: wrapped DEKs, how to get the KEK back, wrapped secrets.
///
/// Fields are public so the on-disk state can be inspected and tested; [`crate::KeyManager::restart`]
/// re-validates a hand-built value just as it validates a decoded one.
#[derive(Debug, Clone)]
pub struct KeyFile {
    /// Increases by one with every change; [`crate::KeyManager::handle_persisted`] takes it back.
    pub generation: u64,
    /// How the KEK is obtained on restart.
    pub kek: StoredKek,
    /// Id of the KEK everything below is wrapped with (tells a wrong unlock key from a tampered file).
    pub kek_id: KeyId,
    /// The current DEK, wrapped with purpose [`KeyPurpose::RaftDek`].
    pub dek_current: Vec<u8>,
    /// The pending DEK during a rotation.
    pub dek_pending: Option<PendingDek>,
    /// A DEK rotation was asked for and has not started yet (set when autolock is turned on).
    pub dek_rotation_requested: bool,
    /// Other secrets wrapped with the same KEK (the TLS private key), re-wrapped on every KEK change so
    /// a KEK rotation is one atomic file write. Sorted by purpose, no duplicates.
    pub secrets: Vec<WrappedSecret>,
}

/// How the KEK is kept: in the file (autolock off) or derived from the unlock key (autolock on).
#[derive(Clone)]
pub enum StoredKek {
    /// Autolock off: the KEK itself, stored beside what it wraps.
    Plain(Kek),
    /// Autolock on: only the argon2id parameters and salt; the KEK comes from the unlock key.
    UnlockKey {
        /// Argon2id cost used for this file.
        kdf: KdfParams,
        /// This manager's salt.
        salt: Salt,
    },
}

impl fmt::Debug for StoredKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(_) => f.write_str("Plain([REDACTED])"),
            Self::UnlockKey { kdf, salt } => f
                .debug_struct("UnlockKey")
                .field("kdf", kdf)
                .field("salt", salt)
                .finish(),
        }
    }
}

/// The pending DEK of a rotation and the log index a snapshot must cover before the old one retires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDek {
    /// The pending DEK, wrapped with purpose [`KeyPurpose::RaftDekPending`].
    pub wrapped: Vec<u8>,
    /// Highest log index sealed with the old DEK.
    pub boundary: u64,
}

/// A secret wrapped with the KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedSecret {
    /// What it is (never a reserved DEK purpose).
    pub purpose: KeyPurpose,
    /// The wrapped bytes.
    pub wrapped: Vec<u8>,
}

impl KeyFile {
    /// Whether autolock is on (the KEK must come from the unlock key).
    pub fn autolock(&self) -> bool {
        matches!(self.kek, StoredKek::UnlockKey { .. })
    }

    /// The bytes to write to disk.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&KEY_FILE_MAGIC);
        out.push(KEY_FILE_VERSION);
        out.extend_from_slice(&self.generation.to_be_bytes());
        let mut flags = 0;
        if self.autolock() {
            flags |= FLAG_AUTOLOCK;
        }
        if self.dek_pending.is_some() {
            flags |= FLAG_PENDING;
        }
        if self.dek_rotation_requested {
            flags |= FLAG_ROTATION_REQUESTED;
        }
        out.push(flags);
        out.extend_from_slice(&self.kek_id.to_be_bytes());
        match &self.kek {
            StoredKek::Plain(kek) => out.extend_from_slice(kek.material().bytes()),
            StoredKek::UnlockKey { kdf, salt } => {
                out.extend_from_slice(&kdf.memory_kib().to_be_bytes());
                out.extend_from_slice(&kdf.iterations().to_be_bytes());
                out.extend_from_slice(&kdf.parallelism().to_be_bytes());
                out.extend_from_slice(salt.as_bytes());
            }
        }
        put_len_prefixed(&mut out, "wrapped DEK", &self.dek_current)?;
        if let Some(pending) = &self.dek_pending {
            out.extend_from_slice(&pending.boundary.to_be_bytes());
            put_len_prefixed(&mut out, "wrapped DEK", &pending.wrapped)?;
        }
        let count = u32::try_from(self.secrets.len()).map_err(|_| Error::TooLarge {
            what: "secret count",
            len: self.secrets.len(),
            max: u32::MAX as usize,
        })?;
        out.extend_from_slice(&count.to_be_bytes());
        for secret in &self.secrets {
            secret.purpose.encode_into(&mut out)?;
            put_len_prefixed(&mut out, "wrapped secret", &secret.wrapped)?;
        }
        Ok(out)
    }

    /// Parses key file bytes. Any byte string yields a `KeyFile` or a typed error.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |reason| Error::MalformedKeyFile { reason };
        const SHORT: &str = "the file is truncated";
        let mut r = Reader::new(bytes);
        if r.array::<4>() != Some(KEY_FILE_MAGIC) {
            return Err(bad("it does not start with the key file magic `SWKF`"));
        }
        let version = r.u8().ok_or(bad(SHORT))?;
        if version != KEY_FILE_VERSION {
            return Err(Error::UnknownVersion {
                what: "key file",
                found: version,
                supported: KEY_FILE_VERSION,
            });
        }
        let generation = r.u64().ok_or(bad(SHORT))?;
        let flags = r.u8().ok_or(bad(SHORT))?;
        if flags & !(FLAG_AUTOLOCK | FLAG_PENDING | FLAG_ROTATION_REQUESTED) != 0 {
            return Err(bad("unknown flag bits are set"));
        }
        let kek_id = KeyId::from_u32(r.u32().ok_or(bad(SHORT))?);
        let kek = if flags & FLAG_AUTOLOCK != 0 {
            let (m, t, p) = (
                r.u32().ok_or(bad(SHORT))?,
                r.u32().ok_or(bad(SHORT))?,
                r.u32().ok_or(bad(SHORT))?,
            );
            let kdf = KdfParams::new(m, t, p)
                .map_err(|_| bad("the argon2id parameters are out of the accepted range"))?;
            let salt = Salt::from_bytes(r.array::<SALT_LEN>().ok_or(bad(SHORT))?);
            StoredKek::UnlockKey { kdf, salt }
        } else {
            let kek = Kek::from_bytes(r.array::<KEY_LEN>().ok_or(bad(SHORT))?);
            if kek.id() != kek_id {
                return Err(bad("the stored KEK does not match its key id"));
            }
            StoredKek::Plain(kek)
        };
        let dek_current = r.len_prefixed().ok_or(bad(SHORT))?.to_vec();
        let dek_pending = if flags & FLAG_PENDING != 0 {
            let boundary = r.u64().ok_or(bad(SHORT))?;
            let wrapped = r.len_prefixed().ok_or(bad(SHORT))?.to_vec();
            Some(PendingDek { wrapped, boundary })
        } else {
            None
        };
        let count = r.u32().ok_or(bad(SHORT))?;
        let mut secrets: Vec<WrappedSecret> = Vec::new();
        for _ in 0..count {
            let purpose = KeyPurpose::decode(&mut r).map_err(bad)?;
            let wrapped = r.len_prefixed().ok_or(bad(SHORT))?.to_vec();
            if purpose.is_reserved() {
                return Err(bad("a stored secret uses a reserved DEK purpose"));
            }
            if secrets.last().is_some_and(|prev| prev.purpose >= purpose) {
                return Err(bad(
                    "stored secrets are not sorted by purpose or are duplicated",
                ));
            }
            secrets.push(WrappedSecret { purpose, wrapped });
        }
        if r.remaining() != 0 {
            return Err(bad("unexpected bytes after the last secret"));
        }
        Ok(Self {
            generation,
            kek,
            kek_id,
            dek_current,
            dek_pending,
            dek_rotation_requested: flags & FLAG_ROTATION_REQUESTED != 0,
            secrets,
        })
    }
}
