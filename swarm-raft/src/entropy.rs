//! The production [`EntropySource`]: the operating system's RNG.

use std::sync::Arc;

use rand::RngCore;
use swarm_core::{Entropy, EntropySource};

/// The operating system's random source (`getrandom`), the default behind every
/// [`Entropy`] handle a daemon or a [`crate::RaftConfig`] starts with.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl EntropySource for OsEntropy {
    fn fill(&self, dest: &mut [u8]) {
        rand::rngs::OsRng.fill_bytes(dest);
    }
}

/// An [`Entropy`] handle over the operating system's RNG (production).
pub fn os() -> Entropy {
    Entropy::new(Arc::new(OsEntropy))
}

#[cfg(test)]
mod tests {
    use rand::RngCore;

    #[test]
    fn os_entropy_is_not_seeded_and_draws() {
        let mut e = super::os();
        assert!(!e.is_seeded());
        // Two 128-bit draws from the OS are equal with probability 2^-128.
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        e.fill_bytes(&mut a);
        e.fill_bytes(&mut b);
        assert_ne!(a, b);
    }
}
