//! Certificate signing requests, from the node's side: a CSR carries only the node's public key
//! (and proof of possession); the CA decides the subject.

use rcgen::{CertificateParams, DistinguishedName};

use super::key::{signing, PrivateKey};
use crate::Error;

/// A PKCS#10 CSR (DER) for `key`, with an empty subject: the CA overrides it anyway.
pub fn make_csr(key: &PrivateKey) -> Result<Vec<u8>, Error> {
    let pair = key.signing_pair()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&pair).map_err(signing)?;
    Ok(csr.der().to_vec())
}
