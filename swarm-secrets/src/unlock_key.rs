//! [`UnlockKey`]: the cluster unlock key, `SWMKEY-1-` + unpadded standard base64 of 32 random bytes.
//!
//! Parsing is strict so that one key has exactly one spelling: the prefix is case-sensitive, the body
//! must be exactly 43 characters of the standard alphabet with no `=` padding, and the two unused low
//! bits of the last character must be zero. Leading and trailing ASCII whitespace is ignored, since a
//! pasted key often carries a newline.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf::{KdfParams, Salt};
use crate::keys::{Kek, KEY_LEN};
use crate::secret::constant_time_eq;
use crate::{Error, UnlockKeyFormatError};

/// The text every unlock key starts with.
pub const UNLOCK_KEY_PREFIX: &str = "SWMKEY-1-";
/// Base64 characters after the prefix (32 bytes, unpadded).
const BODY_CHARS: usize = 43;

/// The cluster unlock key. With autolock on, it is stretched into each manager's KEK and never stored
/// by the manager.
///
/// ```
/// use swarm_secrets::UnlockKey;
/// let key: UnlockKey = "SWMKEY-1-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".parse()?;
/// assert_eq!(format!("{key:?}"), "[REDACTED]");
/// assert_eq!(&*key.expose_text(), "SWMKEY-1-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8");
/// # Ok::<(), swarm_secrets::Error>(())
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct UnlockKey([u8; KEY_LEN]);

impl UnlockKey {
    /// A fresh random unlock key.
    pub fn generate(rng: &mut (impl CryptoRngCore + ?Sized)) -> Self {
        let mut key = Self([0; KEY_LEN]);
        rng.fill_bytes(&mut key.0);
        key
    }

    /// An unlock key from its 32 bytes. The caller should wipe its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses `SWMKEY-1-<43 base64 chars>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Like [`UnlockKey::parse`], for raw bytes (a file, a socket, a fuzzer). Any byte string yields a
    /// key or a typed error.
    pub fn parse_bytes(text: &[u8]) -> Result<Self, Error> {
        let text = text.trim_ascii();
        let body = text
            .strip_prefix(UNLOCK_KEY_PREFIX.as_bytes())
            .ok_or(UnlockKeyFormatError::MissingPrefix)?;
        if !body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        {
            return Err(UnlockKeyFormatError::BadEncoding.into());
        }
        if body.len() != BODY_CHARS {
            return Err(UnlockKeyFormatError::WrongLength { chars: body.len() }.into());
        }
        // Room for the decoder's worst-case estimate, so it never reallocates and leaves a copy behind.
        let mut decoded = Zeroizing::new(Vec::with_capacity(KEY_LEN + 3));
        STANDARD_NO_PAD
            .decode_vec(body, &mut decoded)
            .map_err(|_| UnlockKeyFormatError::BadEncoding)?;
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| UnlockKeyFormatError::WrongLength { chars: body.len() })?;
        Ok(Self(bytes))
    }

    /// The key as `SWMKEY-1-...` text, to show an operator once. Wiped when dropped.
    pub fn expose_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(
            UNLOCK_KEY_PREFIX.len() + BODY_CHARS + 1,
        ));
        text.push_str(UNLOCK_KEY_PREFIX);
        STANDARD_NO_PAD.encode_string(self.0, &mut text);
        text
    }

    /// Stretches the key with argon2id into a KEK (costly by design: see [`crate::kdf`]).
    pub fn stretch(&self, params: &KdfParams, salt: &Salt) -> Result<Kek, Error> {
        params.stretch(&self.0, salt)
    }
}

impl FromStr for UnlockKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// Constant-time comparison.
impl PartialEq for UnlockKey {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for UnlockKey {}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}
