//! Storing private keys: a node's TLS key and the root CA key are wrapped with the node's KEK
//! (swarm-secrets: XChaCha20-Poly1305, bound to the key's purpose) before they touch disk. With
//! autolock on, the KEK comes from the unlock key, so a stolen disk yields no usable key.

use rand_core::CryptoRngCore;
use swarm_secrets::{Kek, KeyPurpose};

use super::key::PrivateKey;
use crate::Error;

/// Which stored key a wrapped blob is; bound into the seal, so one cannot be opened as the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySlot {
    /// The node's TLS private key.
    NodeTls,
    /// The cluster root CA's signing key (managers only).
    RootCa,
}

impl KeySlot {
    fn purpose(self) -> KeyPurpose {
        match self {
            KeySlot::NodeTls => KeyPurpose::TlsPrivateKey,
            KeySlot::RootCa => KeyPurpose::Named("swarm-net/root-ca-key".into()),
        }
    }
}

impl PrivateKey {
    /// The key sealed with `kek` for `slot`: safe to write to disk.
    pub fn wrap(
        &self,
        kek: &Kek,
        slot: KeySlot,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, Error> {
        Ok(kek.wrap(&slot.purpose(), self.pkcs8_der(), rng)?)
    }

    /// Opens a key sealed by [`PrivateKey::wrap`] with the same KEK and slot.
    pub fn unwrap(kek: &Kek, slot: KeySlot, wrapped: &[u8]) -> Result<PrivateKey, Error> {
        let bytes = kek.unwrap(&slot.purpose(), wrapped)?;
        PrivateKey::from_pkcs8_der(bytes.expose())
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    #[test]
    fn wrapped_key_opens_only_with_its_kek_and_slot() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let kek = Kek::generate(&mut rng);
        let key = PrivateKey::generate().unwrap();
        let wrapped = key.wrap(&kek, KeySlot::RootCa, &mut rng).unwrap();
        // The PKCS#8 bytes do not appear in the sealed blob.
        assert!(!wrapped
            .windows(key.pkcs8_der().len())
            .any(|w| w == key.pkcs8_der()));
        assert_eq!(
            PrivateKey::unwrap(&kek, KeySlot::RootCa, &wrapped).unwrap(),
            key
        );
        assert!(matches!(
            PrivateKey::unwrap(&kek, KeySlot::NodeTls, &wrapped),
            Err(Error::KeyStorage(_))
        ));
        assert!(matches!(
            PrivateKey::unwrap(&Kek::generate(&mut rng), KeySlot::RootCa, &wrapped),
            Err(Error::KeyStorage(_))
        ));
    }
}
