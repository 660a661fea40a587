//! [`Entropy`]: the randomness an embedder injects, the RNG counterpart of [`crate::Clock`].
//!
//! Code that needs random bytes at run time (ids, tokens, jitter, election timeouts) takes an
//! [`Entropy`] handle from its configuration instead of reading a global RNG. The embedder decides
//! where the bytes come from: production passes the operating system's RNG (an
//! [`EntropySource`] implemented outside the pure crates, e.g. `swarm_raft::OsEntropy`); a
//! deterministic simulation passes [`Entropy::seeded`], so one seed fixes every draw.
//!
//! This crate only defines the seam and the seeded source: it never reads the OS RNG itself.

use std::fmt;
use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};

/// Where an [`Entropy`] handle draws its bytes from. Implementations must be cryptographically
/// secure: the bytes become ids, join-token secrets and keys.
pub trait EntropySource: Send + Sync {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]);
}

/// A ChaCha20 stream from a 64-bit seed: reproducible, for simulations and tests.
struct Seeded(Mutex<ChaCha20Rng>);

impl EntropySource for Seeded {
    fn fill(&self, dest: &mut [u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fill_bytes(dest);
    }
}

/// A shared, cloneable source of random bytes (see the module docs). Clones draw from the same
/// stream; [`Entropy::fork`] makes an independent one.
#[derive(Clone)]
pub struct Entropy {
    source: Arc<dyn EntropySource>,
    seeded: bool,
}

impl Entropy {
    /// A handle over `source` (production: the operating system's RNG).
    pub fn new(source: Arc<dyn EntropySource>) -> Entropy {
        Entropy {
            source,
            seeded: false,
        }
    }

    /// A reproducible stream: ChaCha20 keyed by `seed`. Not for production keys (a 64-bit seed is
    /// guessable); for simulations and tests.
    pub fn seeded(seed: u64) -> Entropy {
        Entropy {
            source: Arc::new(Seeded(Mutex::new(ChaCha20Rng::seed_from_u64(seed)))),
            seeded: true,
        }
    }

    /// Whether this handle is [`Entropy::seeded`] (or forked from one): a simulation.
    pub fn is_seeded(&self) -> bool {
        self.seeded
    }

    /// An independent handle for one component, so that its draws do not shift another's: a
    /// seeded handle forks a seeded stream keyed by 32 bytes drawn from this one (reproducible
    /// when the forks are made in a fixed order); any other source is shared as it is.
    pub fn fork(&self) -> Entropy {
        if !self.seeded {
            return self.clone();
        }
        let mut key = [0u8; 32];
        self.source.fill(&mut key);
        Entropy {
            source: Arc::new(Seeded(Mutex::new(ChaCha20Rng::from_seed(key)))),
            seeded: true,
        }
    }

    /// A fresh seed for an RNG that a component owns (e.g. a `StdRng`), drawn from this handle.
    pub fn seed(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        self.source.fill(&mut key);
        key
    }
}

impl fmt::Debug for Entropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.seeded {
            "Entropy(seeded)"
        } else {
            "Entropy(source)"
        })
    }
}

impl RngCore for Entropy {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.source.fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.source.fill(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.source.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.source.fill(dest);
        Ok(())
    }
}

/// Every source behind an [`Entropy`] is required to be cryptographically secure.
impl CryptoRng for Entropy {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_are_reproducible() {
        let (mut a, mut b) = (Entropy::seeded(7), Entropy::seeded(7));
        assert_eq!(a.next_u64(), b.next_u64());
        let (mut fa, mut fb) = (a.fork(), b.fork());
        assert_eq!(fa.next_u64(), fb.next_u64());
        // A fork is a different stream from its parent.
        assert_ne!(a.next_u64(), fa.next_u64());
        assert_ne!(Entropy::seeded(7).next_u64(), Entropy::seeded(8).next_u64());
        // Clones share one stream.
        let mut c = Entropy::seeded(1);
        let mut d = c.clone();
        assert_ne!(c.next_u64(), d.next_u64());
        assert!(c.is_seeded());
        assert_eq!(format!("{c:?}"), "Entropy(seeded)");
    }

    struct Zeros;
    impl EntropySource for Zeros {
        fn fill(&self, dest: &mut [u8]) {
            dest.fill(0);
        }
    }

    #[test]
    fn a_custom_source_is_used_and_shared_by_fork() {
        let e = Entropy::new(Arc::new(Zeros));
        assert!(!e.is_seeded());
        assert_eq!(e.fork().next_u64(), 0);
        assert_eq!(e.seed(), [0u8; 32]);
    }
}
