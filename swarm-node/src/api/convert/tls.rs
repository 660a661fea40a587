//! Docker's `TLSInfo` (`GET /swarm`, `/info`, `docker node inspect`) from the cluster's root CA.
//!
//! `TrustRoot` is the root CA PEM; `CertIssuerSubject` and `CertIssuerPublicKey` are the root
//! certificate's subject name and SubjectPublicKeyInfo as base64 DER, which is how Docker shows
//! the issuer of the node certificates. The PEM is checked with swarm-net's bundle parser, then
//! the two fields are cut out of the DER with a minimal, bounds-checked walk (no signature is
//! verified: these are facts to display).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bollard::models;

/// `TLSInfo` for the root CA `pem` (the first certificate of the bundle). A PEM that does not
/// parse shows as `TrustRoot` only.
pub(crate) fn tls_info_out(pem: &str) -> models::TlsInfo {
    let issuer = swarm_net::pki::bundle::parse_pem(pem.as_bytes())
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .and_then(|der| subject_and_spki(&der));
    models::TlsInfo {
        trust_root: Some(pem.to_string()),
        cert_issuer_subject: issuer.as_ref().map(|(s, _)| STANDARD.encode(s)),
        cert_issuer_public_key: issuer.as_ref().map(|(_, k)| STANDARD.encode(k)),
    }
}

/// One DER element: (tag, whole element including its header, contents).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in der.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let whole = der.get(..end)?;
    Some((tag, whole, &whole[header..]))
}

/// The raw subject Name and SubjectPublicKeyInfo of a DER certificate.
fn subject_and_spki(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    const SEQUENCE: u8 = 0x30;
    let (tag, _, cert) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, _, tbs) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // version [0] (optional), serial, signature, issuer, validity, subject, subjectPublicKeyInfo.
    let mut fields = Vec::with_capacity(7);
    let mut rest = tbs;
    while fields.len() < 7 && !rest.is_empty() {
        let (tag, whole, _) = element(rest)?;
        fields.push((tag, whole));
        rest = &rest[whole.len()..];
    }
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let subject = fields.get(skip + 4)?;
    let spki = fields.get(skip + 5)?;
    (subject.0 == SEQUENCE && spki.0 == SEQUENCE).then(|| (subject.1.to_vec(), spki.1.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The root CA of the Docker 20.10 fixture `swarm-inspect.json` and the two fields Docker
    /// showed for it.
    const ROOT: &str = "-----BEGIN CERTIFICATE-----\nMIIBajCCARCgAwIBAgIUfi1zxXgLO2AEoaksRGsoFm24Ue4wCgYIKoZIzj0EAwIw\nEzERMA8GA1UEAxMIc3dhcm0tY2EwHhcNMjYxMjA2MjMzMzAwWhcNNDYxMjAxMjMz\nMzAwWjATMREwDwYDVQQDEwhzd2FybS1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\nA0IABE1osOJ55wEGxGSxQzoumwc44+CuVKN4SCcQgjDW+/4pGYm3ZvAIWXI5mJdX\nQlLXLuFPMashRpdRGwa0P7Ih8L+jQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNVHRMB\nAf8EBTADAQH/MB0GA1UdDgQWBBRgPetgYix7zoDggB7n8J+D+fJwOTAKBggqhkjO\nPQQDAgNIADBFAiEAkXtGR94UbOs7+fierqMr3kSEGXErc6eCE+mvrCfH4FgCIFC9\nC/Sijrhbf9guhTtRebUjFVrmP+YOdAaSWf/F1OpS\n-----END CERTIFICATE-----\n";

    #[test]
    fn matches_docker_for_its_root() {
        let info = tls_info_out(ROOT);
        assert_eq!(
            info.cert_issuer_subject.as_deref(),
            Some("MBMxETAPBgNVBAMTCHN3YXJtLWNh")
        );
        assert_eq!(
            info.cert_issuer_public_key.as_deref(),
            Some("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETWiw4nnnAQbEZLFDOi6bBzjj4K5Uo3hIJxCCMNb7/ikZibdm8AhZcjmYl1dCUtcu4U8xqyFGl1EbBrQ/siHwvw==")
        );
        assert_eq!(info.trust_root.as_deref(), Some(ROOT));
    }

    #[test]
    fn garbage_shows_trust_root_only() {
        for pem in [
            "",
            "not a pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let info = tls_info_out(pem);
            assert_eq!(info.cert_issuer_subject, None);
            assert_eq!(info.cert_issuer_public_key, None);
        }
        // Truncated DER never panics.
        let der = swarm_net::pki::bundle::parse_pem(ROOT.as_bytes())
            .unwrap()
            .remove(0);
        for n in 0..der.len() {
            let _ = subject_and_spki(&der[..n]);
        }
    }
}
