//! Object identifiers: 25 lowercase base36 characters, as SwarmKit generates them.
//!
//! An [`Id`] is a small `Copy` value (25 bytes inline) so that indexes, maps and scheduler hot paths
//! never allocate for it. Ids are generated from 128 bits of caller-supplied randomness
//! ([`Id::generate`]); this crate never reads a global RNG.

use std::fmt;

use rand_core::RngCore;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Number of characters in an object id.
pub const ID_LEN: usize = 25;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A swarm object id: exactly 25 characters of `[0-9a-z]`. Ordered like its string (byte by
/// byte).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id([u8; ID_LEN]);

impl Id {
    /// The id's bytes as big-endian integers (16 + 8 + 1 bytes): they order exactly like the bytes,
    /// and comparing them is a few register compares instead of a `memcmp` call, which matters in
    /// the store's B-trees (a search compares up to 11 keys per level).
    #[inline]
    fn order_key(&self) -> (u128, u64, u8) {
        let b = &self.0;
        let mut hi = [0u8; 16];
        hi.copy_from_slice(&b[..16]);
        let mut mid = [0u8; 8];
        mid.copy_from_slice(&b[16..24]);
        (u128::from_be_bytes(hi), u64::from_be_bytes(mid), b[24])
    }
}

impl Ord for Id {
    #[inline]
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl PartialOrd for Id {
    #[inline]
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string is not a valid [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The string does not have exactly 25 characters.
    #[error("invalid id {input:?}: an id has exactly 25 characters, this one has {len}")]
    Length {
        /// The rejected input (truncated to 64 characters).
        input: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The string contains a character outside `[0-9a-z]`.
    #[error("invalid id {input:?}: ids use only lowercase letters and digits")]
    Character {
        /// The rejected input (truncated to 64 characters).
        input: String,
    },
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Id {
    /// Generates a fresh id from 128 random bits drawn from `rng`, encoded in base36 and
    /// zero-padded to 25 characters (128 bits need at most 25 base36 digits).
    pub fn generate<R: RngCore + ?Sized>(rng: &mut R) -> Id {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let mut n = u128::from_be_bytes(bytes);
        let mut out = [b'0'; ID_LEN];
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(n % 36) as usize];
            n /= 36;
        }
        Id(out)
    }

    /// Parses a full 25-character id.
    pub fn parse(s: &str) -> Result<Id, IdError> {
        let b = s.as_bytes();
        if b.len() != ID_LEN {
            return Err(IdError::Length {
                input: clip(s),
                len: b.len(),
            });
        }
        let mut out = [0u8; ID_LEN];
        for (o, &c) in out.iter_mut().zip(b) {
            if !(c.is_ascii_digit() || c.is_ascii_lowercase()) {
                return Err(IdError::Character { input: clip(s) });
            }
            *o = c;
        }
        Ok(Id(out))
    }

    /// Builds an id from a seed number, for tests and simulations that want readable, ordered ids
    /// (`Id::from_u128(7)` is `"000000000000000000000000007"` in base36).
    pub fn from_u128(mut n: u128) -> Id {
        let mut out = [b'0'; ID_LEN];
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(n % 36) as usize];
            n /= 36;
        }
        Id(out)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // The bytes are always ASCII base36 digits: every constructor checks or produces them.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The id's 25 ASCII bytes (for hashing and keys on hot paths).
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Whether this id starts with `prefix` (the `docker` CLI accepts unique id prefixes).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.as_str().starts_with(prefix)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.as_str())
    }
}

impl std::str::FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Id, IdError> {
        Id::parse(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Fixed-size tuple: 25 bytes in bincode, no length prefix.
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let raw = <[u8; ID_LEN]>::deserialize(d)?;
        let s = std::str::from_utf8(&raw).map_err(|_| de::Error::custom("id is not ASCII"))?;
        Id::parse(s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn generated_ids_are_25_base36_chars_and_differ() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let a = Id::generate(&mut rng);
        let b = Id::generate(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), ID_LEN);
        assert!(Id::parse(a.as_str()).is_ok());
    }

    #[test]
    fn parse_rejects_bad_ids() {
        assert!(matches!(
            Id::parse("abc"),
            Err(IdError::Length { len: 3, .. })
        ));
        assert!(matches!(
            Id::parse("ABCDEFGHIJKLMNOPQRSTUVWXY"),
            Err(IdError::Character { .. })
        ));
        assert!(matches!(
            Id::parse("é2345678901234567890123"),
            Err(IdError::Character { .. }) | Err(IdError::Length { .. })
        ));
    }

    #[test]
    fn from_u128_is_ordered() {
        assert!(Id::from_u128(1) < Id::from_u128(2));
        assert_eq!(Id::from_u128(35).as_str(), "000000000000000000000000z");
    }

    #[test]
    fn order_is_the_string_order() {
        // Ids that differ at every position, in each of the three integer parts of the key.
        let mut ids: Vec<Id> = Vec::new();
        for pos in 0..ID_LEN {
            for c in ["0", "9", "a", "z"] {
                let mut s = "m".repeat(ID_LEN);
                s.replace_range(pos..=pos, c);
                ids.push(Id::parse(&s).unwrap());
            }
        }
        ids.push(Id::from_u128(0));
        ids.push(Id::parse(&"z".repeat(ID_LEN)).unwrap());
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), a.as_str().cmp(b.as_str()), "{a} vs {b}");
                assert_eq!(a.partial_cmp(b), Some(a.as_str().cmp(b.as_str())));
            }
        }
    }

    #[test]
    fn bincode_round_trip_is_25_bytes() {
        let id = Id::from_u128(12345);
        let bytes = bincode::serialize(&id).unwrap();
        assert_eq!(bytes.len(), ID_LEN);
        assert_eq!(bincode::deserialize::<Id>(&bytes).unwrap(), id);
        let mut bad = bytes.clone();
        bad[0] = b'A';
        assert!(bincode::deserialize::<Id>(&bad).is_err());
    }
}
