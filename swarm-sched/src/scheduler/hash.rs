//! A small, fast, deterministic hasher for the scheduler's id-keyed maps.
//!
//! The default SipHash is built to resist hash flooding by untrusted keys; the scheduler's keys are
//! object ids minted by the cluster itself, and hashing them is on the hot path of every placement.
//! This is the Fx multiply-rotate scheme with a final avalanche so the low bits (the bucket index)
//! depend on every input byte. No randomness: iteration order of these maps is never relied upon for
//! output (outputs are always produced in sorted order), but determinism keeps runs reproducible.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Fx-style hasher with a murmur3 finaliser.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3 fmix64: spreads high-bit entropy into the low bits used for bucketing.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds [`FxHasher`]s.
pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
/// A `HashMap` with [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, FxBuild>;
/// A `HashSet` with [`FxHasher`].
pub(crate) type FxSet<K> = HashSet<K, FxBuild>;

/// A node or service id as two integers, ordered exactly like the id's bytes. Ordered collections
/// on the hot path (eligibility indexes, the batch queue) compare these inline instead of calling
/// `memcmp` on 25-byte ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct IdKey(u128, u128);

impl IdKey {
    /// The key of `id`.
    pub(crate) fn of(id: &swarm_core::Id) -> IdKey {
        let mut hi = [0u8; 16];
        let mut lo = [0u8; 16];
        for (i, &b) in id.as_str().as_bytes().iter().enumerate() {
            match i {
                0..=15 => hi[i] = b,
                16..=31 => lo[i - 16] = b,
                _ => break,
            }
        }
        IdKey(u128::from_be_bytes(hi), u128::from_be_bytes(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::IdKey;
    use swarm_core::Id;

    #[test]
    fn id_keys_order_like_ids() {
        let ids: Vec<Id> = [0u128, 1, 35, 36, 1 << 70, u128::MAX / 3, u128::MAX]
            .iter()
            .map(|&n| Id::from_u128(n))
            .collect();
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), IdKey::of(a).cmp(&IdKey::of(b)), "{a} vs {b}");
            }
        }
    }
}
