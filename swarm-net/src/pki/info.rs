//! [`CertInfo`]: the facts about a certificate that the PKI decides on (validity, CA flag, keys and
//! key identifiers), and signature checks between two certificates.

use swarm_core::Timestamp;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use crate::Error;

/// What the PKI reads from a certificate. Parsing does not verify any signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// Whether basic constraints say `CA:TRUE`.
    pub is_ca: bool,
    /// The subject's public key as a DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// The subject key identifier extension, if present.
    pub subject_key_id: Option<Vec<u8>>,
    /// The authority key identifier's key id, if present: which CA key signed this certificate.
    pub authority_key_id: Option<Vec<u8>>,
    /// The serial number's big-endian bytes.
    pub serial: Vec<u8>,
}

impl CertInfo {
    /// Reads a DER certificate. Trailing bytes are refused.
    pub fn parse(der: &[u8]) -> Result<CertInfo, Error> {
        let cert = parse(der)?;
        let mut subject_key_id = None;
        let mut authority_key_id = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
                }
                _ => {}
            }
        }
        Ok(CertInfo {
            not_before: timestamp(cert.validity().not_before),
            not_after: timestamp(cert.validity().not_after),
            is_ca: cert.is_ca(),
            public_key_der: cert.public_key().raw.to_vec(),
            subject_key_id,
            authority_key_id,
            serial: cert.raw_serial().to_vec(),
        })
    }

    /// Whether `now` lies within the validity window (both ends inclusive).
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Whether `child_der`'s signature verifies with `issuer_der`'s public key and `child_der` names
/// `issuer_der`'s subject as its issuer. Unparsable input is `false`.
pub fn is_signed_by(child_der: &[u8], issuer_der: &[u8]) -> bool {
    let (Ok(child), Ok(issuer)) = (parse(child_der), parse(issuer_der)) else {
        return false;
    };
    child.issuer().as_raw() == issuer.subject().as_raw()
        && child.verify_signature(Some(issuer.public_key())).is_ok()
}

pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Error> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| Error::MalformedCertificate {
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(Error::MalformedCertificate {
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// A certificate time as a [`Timestamp`] (times before 1970 clamp to the epoch).
fn timestamp(t: ASN1Time) -> Timestamp {
    Timestamp::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
}
