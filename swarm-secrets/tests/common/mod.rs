//! Helpers shared by the integration tests: hex, deterministic RNGs, cheap KDF parameters.
#![allow(dead_code)]

use swarm_secrets::rand_core::{CryptoRng, Error as RngError, RngCore, SeedableRng};
use swarm_secrets::KdfParams;

/// A seeded CSPRNG, so every test run sees the same keys and nonces.
pub fn rng(seed: u64) -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::seed_from_u64(seed)
}

/// Argon2id parameters cheap enough for tests that stretch many times (never use outside tests).
pub fn test_kdf() -> KdfParams {
    KdfParams::new(8, 1, 1).unwrap()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    assert_eq!(text.len() & 1, 0, "odd hex length: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// An "RNG" that hands out exactly the given bytes (a known nonce), then panics. Tests only: it lets a
/// known-answer vector fix the nonce of one seal.
pub struct FixedBytes {
    bytes: Vec<u8>,
}

impl FixedBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }
}

impl RngCore for FixedBytes {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(
            dest.len() <= self.bytes.len(),
            "FixedBytes ran out of bytes"
        );
        let rest = self.bytes.split_off(dest.len());
        dest.copy_from_slice(&self.bytes);
        self.bytes = rest;
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedBytes {}
