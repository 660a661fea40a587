//! Join tokens in SwarmKit's exact format, and the cluster's pair of them.
//!
//! `SWMTKN-1-<digest>-<secret>`: `digest` is the SHA-256 of the root CA bundle (the PEM bytes a
//! manager serves) as a base36 number zero-padded to 50 characters; `secret` is 16 random bytes as a
//! base36 number zero-padded to 25. Worker and manager tokens share the digest and differ in the
//! secret. A joining node fetches the bundle without verification, checks it against the digest
//! ([`JoinToken::pin_bundle`]), and from then on trusts only those roots. Managers compare the
//! presented secret in constant time ([`JoinTokens::role_of`]).
//!
//! Parsing is strict (one token, one spelling): lowercase base36 only, exact lengths, values within
//! their field. Surrounding ASCII whitespace is ignored, since a pasted token often ends in a newline.

use std::fmt;

use rand_core::CryptoRngCore;
use ring::digest::{digest, SHA256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::identity::Role;
use crate::{Error, TokenFormatError};

/// The text every version-1 join token starts with.
pub const TOKEN_PREFIX: &str = "SWMTKN-1-";
/// Characters of the CA digest part.
pub const DIGEST_CHARS: usize = 50;
/// Characters of the secret part.
pub const SECRET_CHARS: usize = 25;
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// The SHA-256 of a root CA bundle, as a join token pins it.
pub fn ca_digest(bundle: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bundle).as_ref());
    out
}

/// A join token: the pinned CA digest and the secret. Debug shows the digest only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct JoinToken {
    digest: [u8; 32],
    secret: [u8; 16],
}

impl JoinToken {
    /// A new token for the CA `bundle` with a fresh secret from `rng`.
    pub fn generate(bundle: &[u8], rng: &mut (impl CryptoRngCore + ?Sized)) -> JoinToken {
        let mut secret = [0u8; 16];
        rng.fill_bytes(&mut secret);
        JoinToken::from_parts(ca_digest(bundle), secret)
    }

    /// A token from its digest and secret bytes. The caller should wipe its own copy of the secret.
    pub fn from_parts(digest: [u8; 32], secret: [u8; 16]) -> JoinToken {
        JoinToken { digest, secret }
    }

    /// Parses `SWMTKN-1-<50 base36>-<25 base36>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<JoinToken, Error> {
        JoinToken::parse_bytes(text.as_bytes())
    }

    /// Like [`JoinToken::parse`], for raw bytes (a file, a socket, a fuzzer): any byte string gives a
    /// token or a typed error.
    pub fn parse_bytes(text: &[u8]) -> Result<JoinToken, Error> {
        let text = text.trim_ascii();
        let parts: Vec<&[u8]> = text.split(|b| *b == b'-').collect();
        if parts.first() != Some(&&b"SWMTKN"[..]) {
            return Err(TokenFormatError::MissingPrefix.into());
        }
        if parts.len() >= 2 && parts[1] != b"1" {
            return Err(TokenFormatError::UnsupportedVersion {
                found: String::from_utf8_lossy(parts[1]).chars().take(16).collect(),
            }
            .into());
        }
        if parts.len() != 4 {
            return Err(TokenFormatError::WrongPartCount { parts: parts.len() }.into());
        }
        if parts[2].len() != DIGEST_CHARS {
            return Err(TokenFormatError::DigestLength {
                chars: parts[2].len(),
            }
            .into());
        }
        if parts[3].len() != SECRET_CHARS {
            return Err(TokenFormatError::SecretLength {
                chars: parts[3].len(),
            }
            .into());
        }
        let mut digest = [0u8; 32];
        decode36(parts[2], &mut digest, "digest")?;
        let mut secret = Zeroizing::new([0u8; 16]);
        decode36(parts[3], &mut *secret, "secret")?;
        Ok(JoinToken::from_parts(digest, *secret))
    }

    /// The token's text (secret: show it only to the operator who asked).
    pub fn expose_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(TOKEN_PREFIX.len() + 76));
        out.push_str(TOKEN_PREFIX);
        out.push_str(&encode36(&self.digest, DIGEST_CHARS));
        out.push('-');
        let secret = Zeroizing::new(encode36(&self.secret, SECRET_CHARS));
        out.push_str(&secret);
        out
    }

    /// The pinned CA digest.
    pub fn ca_digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The pinned CA digest in the token's base36 spelling.
    pub fn ca_digest_text(&self) -> String {
        encode36(&self.digest, DIGEST_CHARS)
    }

    /// Checks a CA bundle fetched unverified from a manager against the digest, and returns its
    /// certificates (DER) to pin as the only trusted roots.
    pub fn pin_bundle(&self, bundle: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let found = ca_digest(bundle);
        if !constant_time_eq(&found, &self.digest) {
            return Err(Error::CaDigestMismatch {
                expected: self.ca_digest_text(),
                found: encode36(&found, DIGEST_CHARS),
            });
        }
        crate::pki::bundle::parse_pem(bundle)
    }

    /// Constant-time equality of digest and secret.
    fn ct_eq(&self, other: &JoinToken) -> bool {
        let a = constant_time_eq(&self.digest, &other.digest);
        let b = constant_time_eq(&self.secret, &other.secret);
        a & b
    }
}

impl PartialEq for JoinToken {
    /// Constant-time comparison.
    fn eq(&self, other: &JoinToken) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for JoinToken {}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOKEN_PREFIX}{}-[REDACTED]", self.ca_digest_text())
    }
}

impl std::str::FromStr for JoinToken {
    type Err = Error;
    fn from_str(s: &str) -> Result<JoinToken, Error> {
        JoinToken::parse(s)
    }
}

/// The cluster's current worker and manager join tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinTokens {
    worker: JoinToken,
    manager: JoinToken,
}

impl JoinTokens {
    /// Fresh worker and manager tokens for the CA `bundle`.
    pub fn generate(bundle: &[u8], rng: &mut (impl CryptoRngCore + ?Sized)) -> JoinTokens {
        JoinTokens {
            worker: JoinToken::generate(bundle, rng),
            manager: JoinToken::generate(bundle, rng),
        }
    }

    /// The token that joins a node with `role`.
    pub fn token(&self, role: Role) -> &JoinToken {
        match role {
            Role::Worker => &self.worker,
            Role::Manager => &self.manager,
        }
    }

    /// Replaces the `role` token's secret (`docker swarm join-token --rotate`); the old one stops
    /// working at once.
    pub fn rotate(&mut self, role: Role, rng: &mut (impl CryptoRngCore + ?Sized)) {
        let digest = *self.worker.ca_digest();
        let mut secret = Zeroizing::new([0u8; 16]);
        rng.fill_bytes(&mut *secret);
        let token = JoinToken::from_parts(digest, *secret);
        match role {
            Role::Worker => self.worker = token,
            Role::Manager => self.manager = token,
        }
    }

    /// The role a presented token joins as, or [`Error::InvalidToken`]. Both tokens are always
    /// compared in constant time, so the answer's timing says nothing about the secrets.
    pub fn role_of(&self, presented: &JoinToken) -> Result<Role, Error> {
        let worker = self.worker.ct_eq(presented);
        let manager = self.manager.ct_eq(presented);
        match (worker, manager) {
            (true, _) => Ok(Role::Worker),
            (false, true) => Ok(Role::Manager),
            (false, false) => Err(Error::InvalidToken),
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `bytes` (big-endian) as a base36 number, zero-padded to `width` characters.
fn encode36(bytes: &[u8], width: usize) -> String {
    let mut n = Zeroizing::new(bytes.to_vec());
    let mut digits = Zeroizing::new(Vec::with_capacity(width));
    while n.iter().any(|b| *b != 0) {
        // Long division of the whole number by 36; the remainder is the next digit.
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.iter().rev().map(|d| char::from(*d)).collect()
}

/// Decodes lowercase base36 `text` into `out` (big-endian), refusing other characters and values
/// that do not fit.
fn decode36(text: &[u8], out: &mut [u8], part: &'static str) -> Result<(), TokenFormatError> {
    out.fill(0);
    for &c in text {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            _ => return Err(TokenFormatError::BadCharacter { part }),
        };
        // out = out * 36 + d, least significant byte last.
        let mut carry = u32::from(d);
        for b in out.iter_mut().rev() {
            let cur = u32::from(*b) * 36 + carry;
            *b = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            out.fill(0);
            return Err(TokenFormatError::OutOfRange {
                part,
                bits: (out.len() * 8) as u32,
            });
        }
    }
    Ok(())
}
