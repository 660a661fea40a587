//! Fixed-length ECDSA signatures inside a simulation (feature `turmoil`).
//!
//! ring signs ECDSA P-256 with a nonce from the operating system, and the DER encoding of a
//! signature is 70, 71 or 72 bytes depending on the leading bits of its two integers. Those
//! signatures travel in certificates, CSRs, the store (the CA certificate and every node's chain)
//! and every TLS handshake (CertificateVerify), so a simulated run's datagrams differed in size
//! from one run of a seed to the next; a flight or a raft message that crossed a packet boundary
//! in one run and not the other gave a different number of datagrams, hence different draws of
//! turmoil's seeded RNG, and the runs parted (docs/SIMULATION.md, "Determinism").
//!
//! Inside a turmoil simulation, [`fixed_length`] is true and the signers (the PKI's
//! `SigningPair` for certificates and CSRs, [`FixedLenKey`] for TLS) sign again until the
//! encoding has the longest length, 72 bytes (both integers 33 bytes: about one signature in
//! four). Every signature is still a valid, freshly drawn ECDSA signature. Outside a simulation
//! (every production path) nothing changes: one signature, whatever its length.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

/// The DER length of an ECDSA P-256 signature whose `r` and `s` both have their top bit set.
pub(crate) const P256_DER_LEN: usize = 72;

/// Signatures are drawn at most this many times (the chance of none of the longest length in
/// 256 draws is about 4^-256 times 3^256: nil); the last one is returned otherwise.
const MAX_DRAWS: usize = 256;

/// True inside a turmoil simulation (feature `turmoil`): signatures then have a fixed length.
pub(crate) fn fixed_length() -> bool {
    #[cfg(feature = "turmoil")]
    {
        turmoil::in_simulation()
    }
    #[cfg(not(feature = "turmoil"))]
    {
        false
    }
}

/// Runs `sign` once, or (inside a simulation) until its signature is [`P256_DER_LEN`] bytes.
pub(crate) fn draw<E>(mut sign: impl FnMut() -> Result<Vec<u8>, E>) -> Result<Vec<u8>, E> {
    let mut sig = sign()?;
    if !fixed_length() {
        return Ok(sig);
    }
    for _ in 1..MAX_DRAWS {
        if sig.len() == P256_DER_LEN {
            break;
        }
        sig = sign()?;
    }
    Ok(sig)
}

/// A rustls signing key whose ECDSA P-256 signatures have a fixed length inside a simulation.
pub(crate) struct FixedLenKey(pub(crate) Arc<dyn SigningKey>);

impl fmt::Debug for FixedLenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FixedLenKey").field(&self.0).finish()
    }
}

impl SigningKey for FixedLenKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let inner = self.0.choose_scheme(offered)?;
        if inner.scheme() == SignatureScheme::ECDSA_NISTP256_SHA256 {
            Some(Box::new(FixedLenSigner(inner)))
        } else {
            Some(inner)
        }
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        self.0.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.0.algorithm()
    }
}

struct FixedLenSigner(Box<dyn Signer>);

impl fmt::Debug for FixedLenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FixedLenSigner").field(&self.0).finish()
    }
}

impl Signer for FixedLenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        draw(|| self.0.sign(message))
    }

    fn scheme(&self) -> SignatureScheme {
        self.0.scheme()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_simulation_one_signature_is_drawn() {
        let mut calls = 0;
        let sig: Result<Vec<u8>, ()> = draw(|| {
            calls += 1;
            Ok(vec![0; 70])
        });
        assert_eq!(sig.unwrap().len(), 70);
        assert_eq!(calls, 1);
    }

    #[cfg(feature = "turmoil")]
    #[test]
    fn inside_a_simulation_certificates_csrs_and_tls_signatures_have_one_length() {
        use crate::pki::{make_csr, PrivateKey, RootCa};
        let mut sim = turmoil::Builder::new().build();
        sim.client("signer", async {
            let mut rng = rand_core::OsRng;
            let now = crate::pki::testing::system_now();
            for _ in 0..16 {
                let key = PrivateKey::generate().unwrap();
                let csr = make_csr(&key).unwrap();
                // The CSR's signature is its last element: a BIT STRING of 0 unused bits.
                assert_eq!(signature_len(&csr), P256_DER_LEN);
                let root =
                    RootCa::generate(PrivateKey::generate().unwrap(), now, &mut rng).unwrap();
                assert_eq!(signature_len(root.cert_der()), P256_DER_LEN);
                #[allow(deprecated)]
                let provider = rustls::crypto::ring::default_provider();
                let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.pkcs8_der().to_vec().into());
                let key = FixedLenKey(provider.key_provider.load_private_key(der).unwrap());
                let signer = key
                    .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
                    .unwrap();
                assert_eq!(signer.sign(b"message").unwrap().len(), P256_DER_LEN);
            }
            Ok(())
        });
        sim.run().unwrap();
    }

    /// The length of the signature that ends a DER certificate or CSR (`SEQUENCE { tbs, alg,
    /// BIT STRING sig }`): the BIT STRING's content minus its unused-bits byte.
    #[cfg(feature = "turmoil")]
    fn signature_len(der: &[u8]) -> usize {
        /// One TLV at `at`: (start of its content, end of its content).
        fn tlv(der: &[u8], at: usize) -> (usize, usize) {
            let first = usize::from(der[at + 1]);
            if first < 0x80 {
                return (at + 2, at + 2 + first);
            }
            let n = first & 0x7f;
            let len = der[at + 2..at + 2 + n]
                .iter()
                .fold(0usize, |l, b| (l << 8) | usize::from(*b));
            (at + 2 + n, at + 2 + n + len)
        }
        let (body, _) = tlv(der, 0);
        let (_, tbs_end) = tlv(der, body);
        let (_, alg_end) = tlv(der, tbs_end);
        assert_eq!(der[alg_end], 0x03, "a BIT STRING follows the algorithm");
        let (sig, sig_end) = tlv(der, alg_end);
        sig_end - sig - 1
    }
}
