//! [`SecretBytes`]: a byte buffer for secret payloads (opened records, unwrapped keys, TLS private keys).
//!
//! It zeroizes its whole allocation on drop, prints as `[REDACTED]`, and implements neither `Serialize`
//! nor `PartialEq`: the only way to the bytes is the explicit [`SecretBytes::expose`], and the only way
//! to persist them is to seal or wrap them.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret bytes that are wiped from memory when dropped and never printed.
///
/// ```
/// use swarm_secrets::SecretBytes;
/// let s = SecretBytes::new(b"hunter2".to_vec());
/// assert_eq!(format!("{s:?} {s}"), "[REDACTED] [REDACTED]");
/// assert_eq!(s.expose(), b"hunter2");
/// ```
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes` without copying them, so no unwiped copy is left behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Copies `bytes` into a new secret buffer. The caller remains responsible for wiping its own copy.
    pub fn copy_from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// The secret bytes. Named so that every place that reads a secret is easy to find.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of secret bytes (not secret itself).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Mutable access for in-place decryption inside this crate.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Compares two byte strings in time that depends only on their lengths, for key comparisons.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_in_debug_and_display() {
        let s = SecretBytes::copy_from(b"top secret");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([REDACTED])");
        assert_eq!(s.len(), 10);
    }

    #[test]
    fn zeroize_clears_the_buffer() {
        let mut s = SecretBytes::copy_from(b"abc");
        s.zeroize();
        assert!(s.is_empty());
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
