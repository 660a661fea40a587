//! [`PrivateKey`]: an ECDSA P-256 private key (PKCS#8 DER), zeroized on drop and redacted in Debug.
//!
//! Key generation is the one place in `pki` whose randomness is not an argument: ring, the only
//! crypto backend, draws key material (and ECDSA signing nonces) from the operating system and does
//! not let a caller supply an RNG. Everything that decides *what* is issued and *when* (serial
//! numbers, validity, renewal times, tokens, rotation batches) still takes its randomness and time as
//! arguments; only the bytes of keys and signatures differ from run to run.

use std::fmt;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use zeroize::{Zeroize, Zeroizing};

use crate::Error;

/// An ECDSA P-256 private key as PKCS#8 DER. Clones are independent copies, each wiped on drop.
#[derive(Clone)]
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
}

impl PrivateKey {
    /// A fresh key from the operating system's random source (see the module docs for why this is not
    /// an injected RNG).
    pub fn generate() -> Result<PrivateKey, Error> {
        let pair = SigningPair(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(signing)?);
        Ok(PrivateKey {
            pkcs8: Zeroizing::new(pair.0.serialize_der()),
        })
    }

    /// Loads a PKCS#8 DER ECDSA P-256 key (as written by [`PrivateKey::pkcs8_der`]).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, Error> {
        let key = PrivateKey {
            pkcs8: Zeroizing::new(der.to_vec()),
        };
        // Parse once now so that a bad key is refused when it is loaded, not at first signature.
        key.signing_pair()?;
        Ok(key)
    }

    /// The key as PKCS#8 DER (secret: seal it before it touches disk).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Result<Vec<u8>, Error> {
        use rcgen::PublicKeyData;
        Ok(self.signing_pair()?.0.subject_public_key_info())
    }

    /// The key in rcgen's form, for signing; wiped when dropped.
    pub(crate) fn signing_pair(&self) -> Result<SigningPair, Error> {
        KeyPair::from_pkcs8_der_and_sign_algo(
            &self.pkcs8.as_slice().into(),
            &PKCS_ECDSA_P256_SHA256,
        )
        .map(SigningPair)
        .map_err(|e| Error::MalformedKey {
            reason: e.to_string(),
        })
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([REDACTED])")
    }
}

impl PartialEq for PrivateKey {
    /// Constant-time comparison of the encodings.
    fn eq(&self, other: &PrivateKey) -> bool {
        crate::token::constant_time_eq(&self.pkcs8, &other.pkcs8)
    }
}

impl Eq for PrivateKey {}

/// rcgen's key pair, whose serialized copy of the key is wiped on drop.
pub(crate) struct SigningPair(pub(crate) KeyPair);

impl Drop for SigningPair {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl rcgen::PublicKeyData for SigningPair {
    fn der_bytes(&self) -> &[u8] {
        rcgen::PublicKeyData::der_bytes(&self.0)
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen::PublicKeyData::algorithm(&self.0)
    }
}

/// Certificates and CSRs are signed through this: one ECDSA signature, or inside a simulation
/// one of a fixed length (`crate::siglen`).
impl rcgen::SigningKey for SigningPair {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        crate::siglen::draw(|| rcgen::SigningKey::sign(&self.0, msg))
    }
}

/// Maps an rcgen failure to [`Error::Signing`].
pub(crate) fn signing(e: rcgen::Error) -> Error {
    Error::Signing {
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_and_debug_is_redacted() {
        let key = PrivateKey::generate().unwrap();
        let again = PrivateKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
        assert_eq!(key, again);
        assert_eq!(format!("{key:?}"), "PrivateKey([REDACTED])");
        assert_eq!(
            key.public_key_der().unwrap(),
            again.public_key_der().unwrap()
        );
        assert_ne!(key, PrivateKey::generate().unwrap());
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bad in [&b""[..], b"\x30\x03\x02\x01\x00", &[0xffu8; 64]] {
            assert!(matches!(
                PrivateKey::from_pkcs8_der(bad),
                Err(Error::MalformedKey { .. })
            ));
        }
    }
}
